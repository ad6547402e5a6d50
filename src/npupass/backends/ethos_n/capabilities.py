"""What Arm Ethos-N78 runs: the support library's three levels, as a table of named constraints.

Each constraint is a function whose docstring is the sentence users see; it returns the detail of a
violation ("kernel is 4x4") or None. Its level says what a violation means, as in Arm's support
library (ARM-software/ethos-n-driver-stack, driver/support_library/src/SupportQueries.cpp, 25.03):
Supported, EstimateOnly (the compiler can estimate performance but not build it; Arm NN runs the op
on the CPU) or Unsupported. Where SUPPORTED.md and SupportQueries.cpp disagree, the code is followed
(see SUPPORTED_MD_DISAGREES). Constraints marked `source="armnn"` come from the Arm NN backend that
maps TFLite ops onto the library (armnn-ethos-n-backend/EthosNLayerSupport.cpp, EthosNTensorUtils.cpp).

One `OpParams` per op (geometry, tensors, quantization) serves the checker and the report, and the
geometry is the same code legalize-ethos-n uses to rewrite (backends/ethos_n/geometry.py).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from npupass.backends.ethos_n.geometry import explicit_padding, max_pool_stride1_problem, max_pool_stride2_problem
from npupass.ir.graph import Graph, Op, Tensor
from npupass.ir.ops import WEIGHTED_OPS, same_padding
from npupass.ir.types import DType
from npupass.passes.pattern import fused_activation


class Level(enum.IntEnum):
    SUPPORTED = 0
    ESTIMATE_ONLY = 1
    UNSUPPORTED = 2

    def __str__(self) -> str:
        return {0: "Supported", 1: "EstimateOnly", 2: "Unsupported"}[self.value]


@dataclass(frozen=True)
class Variant:
    """An Ethos-N78 configuration (CapabilitiesInternal.cpp, GetEthosN78FwHwCapabilities)."""

    name: str
    engines: int
    igs_per_engine: int
    ogs_per_engine: int
    emcs_per_engine: int
    sram_bytes: int
    ple_lanes: int
    max_ple_size: int = 4096
    brick_group: tuple[int, int, int] = (8, 8, 16)  # H, W, C

    @property
    def srams(self) -> int:
        return self.engines * self.emcs_per_engine

    @property
    def max_depth(self) -> int:
        """Channels of an 8 x 8 x C chunk that fit in SRAM (IsTensorDepthSupported)."""
        return self.sram_bytes // 64


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("1TOPS_2PLE_RATIO", 2, 4, 4, 4, 448 * 1024, 1),
        Variant("1TOPS_4PLE_RATIO", 2, 4, 4, 4, 448 * 1024, 2),
        Variant("2TOPS_2PLE_RATIO", 4, 2, 4, 2, 768 * 1024, 1),
        Variant("2TOPS_4PLE_RATIO", 4, 2, 4, 2, 768 * 1024, 2),
        Variant("4TOPS_2PLE_RATIO", 4, 4, 4, 4, 1024 * 1024, 2),
        Variant("4TOPS_4PLE_RATIO", 8, 2, 2, 2, 1024 * 1024, 2),
        Variant("8TOPS_2PLE_RATIO", 8, 2, 4, 2, 2048 * 1024, 2),
    )
}

CONV_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"})
WEIGHTED = CONV_OPS | {"FULLY_CONNECTED"}
POOL_OPS = frozenset({"MAX_POOL_2D", "AVERAGE_POOL_2D"})
ELEMENTWISE = frozenset({"ADD", "MUL"})
RELUS = frozenset({"RELU", "RELU6", "RELU_N1_TO_1"})
# Ops the library has a query for, through Arm NN's TFLite mapping.
NPU_OPS = (
    WEIGHTED
    | POOL_OPS
    | ELEMENTWISE
    | RELUS
    | {"CONCATENATION", "SPLIT", "SPLIT_V", "MEAN", "PAD", "PADV2", "RESHAPE", "LEAKY_RELU", "LOGISTIC", "TANH"}
    | {"QUANTIZE", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "TRANSPOSE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"}
)
# Ops Arm NN's Ethos-N backend passes to IsEstimateOnlySupported (EthosNLayerSupport.cpp).
ESTIMATE_ONLY_OPS = frozenset(
    {"ARG_MAX", "ARG_MIN", "BATCH_TO_SPACE_ND", "CAST", "DIV", "SUB", "MAXIMUM", "MINIMUM", "FLOOR", "GATHER"}
    | {"EQUAL", "NOT_EQUAL", "LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL", "LOGICAL_AND", "LOGICAL_OR"}
    | {"LOGICAL_NOT", "ABS", "EXP", "NEG", "RSQRT", "SQRT", "LOG", "SIN", "L2_NORMALIZATION", "PRELU", "FILL"}
    | {"LOCAL_RESPONSE_NORMALIZATION", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "SUM", "SHAPE", "SLICE", "RANK"}
    | {"SPACE_TO_BATCH_ND", "PACK", "STRIDED_SLICE", "HARD_SWISH", "GELU", "UNIDIRECTIONAL_SEQUENCE_LSTM", "LSTM"}
)
KERNEL_SIZES = frozenset({1, 2, 3, 5, 7, 9})
IDENTITY_WEIGHT_VALUE = 128  # requantize runs as an identity conv with weight 1/128 (Utils.hpp)

SUPPORTED_MD_DISAGREES = {
    "max-pool-3x3-parity": "SUPPORTED.md: VALID needs even inputs and SAME odd; the code: VALID odd, padded even",
    "depthwise-multiplier": "SUPPORTED.md: multiplier > 1 is not supported; the code: it is, with 1 input channel",
    "depthwise-square-kernel": "SUPPORTED.md: the kernel need not be square; the code: depthwise kernels must be",
    "depthwise-1x1-stride": "SUPPORTED.md does not say; the code rejects a 1x1 depthwise with stride > 1",
    "conv-padding": "SUPPORTED.md: SAME and VALID; the code: any padding up to 7 a side, more only if SAME",
    "transpose-conv-large-kernel-padding": "SUPPORTED.md does not say; the code: a kernel > 7 needs SAME padding",
    "concat-channels": "SUPPORTED.md: channel concat needs multiples of 16; the code: only the legacy compiler",
}


# --- the parameters of one op ------------------------------------------------------------------------------
@dataclass
class OpParams:
    """What the checker (and the report) need of one op: tensors, quantization, geometry."""

    graph: Graph
    op: Op
    variant: Variant
    activations: list[Tensor] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)

    @classmethod
    def of(cls, graph: Graph, op: Op, variant: Variant) -> OpParams:
        inputs = [t for t in graph.inputs_of(op) if t is not None and not t.is_constant]
        return cls(graph, op, variant, inputs, graph.outputs_of(op))

    @property
    def type(self) -> str:
        return self.op.type

    def input(self, slot: int) -> Tensor | None:
        inputs = self.graph.inputs_of(self.op)
        return inputs[slot] if slot < len(inputs) else None

    @property
    def x(self) -> Tensor:
        slot = WEIGHTED_OPS[self.type].input if self.type in WEIGHTED_OPS else 0
        t = self.input(slot)
        assert t is not None
        return t

    @property
    def y(self) -> Tensor:
        return self.outputs[0]

    @property
    def weight(self) -> Tensor | None:
        return self.input(WEIGHTED_OPS[self.type].weight) if self.type in WEIGHTED_OPS else None

    @property
    def bias(self) -> Tensor | None:
        return self.input(WEIGHTED_OPS[self.type].bias) if self.type in WEIGHTED_OPS else None

    @cached_property
    def kernel(self) -> tuple[int, int]:
        o = self.op.options
        if self.type in POOL_OPS:
            return int(o["filter_height"]), int(o["filter_width"])
        w = self.weight
        assert w is not None and w.shape is not None
        return w.shape[1], w.shape[2]

    @property
    def stride(self) -> tuple[int, int]:
        return int(self.op.options.get("stride_h", 1)), int(self.op.options.get("stride_w", 1))

    @property
    def hw(self) -> tuple[int, int]:
        shape = self.x.shape or (1, 1, 1, 1)
        return (shape[1], shape[2]) if len(shape) == 4 else (1, 1)

    @cached_property
    def padding(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right), as Arm NN's TFLite parser makes explicit (for TRANSPOSE_CONV,
        SAME padding computed on the output, as the library does). A VALID conv or pool reading a PAD
        of height and width only gets that padding: Arm NN folds such a PAD into the op after it."""
        h, w = self.hw
        if self.type == "TRANSPOSE_CONV":
            h, w = self.y.shape[1], self.y.shape[2]  # type: ignore[index]
        padding = self.op.options.get("padding", "VALID")
        if padding == "VALID" and (folded := _folded_pad(self.graph, self.x)) is not None:
            return folded
        return explicit_padding(padding, h, w, *self.kernel, *self.stride)


def _folded_pad(graph: Graph, x: Tensor) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of a PAD writing `x` (read by nothing else) that pads only height and width."""
    pad = graph.producer(x)
    if pad is None or pad.type != "PAD" or len(graph.consumers(x)) != 1:
        return None
    amounts = graph.inputs_of(pad)[1] if len(graph.inputs_of(pad)) > 1 else None
    if amounts is None or amounts.data is None or amounts.data.shape != (4, 2):
        return None
    rows = [[int(v) for v in row] for row in np.asarray(amounts.data)]
    if rows[0] != [0, 0] or rows[3] != [0, 0]:
        return None
    return rows[1][0], rows[1][1], rows[2][0], rows[2][1]


def _scale(t: Tensor) -> float:
    assert t.quant is not None
    return float(t.quant.scale[0]) if t.quant.scale.size else 0.0  # a min/max-only record has no scale


def _zp(t: Tensor) -> int:
    assert t.quant is not None
    return int(t.quant.zero_point[0]) if t.quant.zero_point.size else 0


def _is_int8(t: Tensor) -> bool:
    return t.dtype in (DType.INT8, DType.UINT8) and t.quant is not None and t.quant.is_affine


# --- the table ----------------------------------------------------------------------------------------------
Check = Callable[[OpParams], "str | None"]


@dataclass(frozen=True)
class Constraint:
    name: str
    level: Level
    ops: frozenset[str]
    check: Check
    source: str  # "SupportQueries.cpp" or "armnn"

    @property
    def sentence(self) -> str:
        return " ".join((self.check.__doc__ or "").split())


CONSTRAINTS: list[Constraint] = []
ALL = frozenset({"*"})


def constraint(
    level: Level, ops: frozenset[str] | set[str], source: str = "SupportQueries.cpp"
) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CONSTRAINTS.append(Constraint(fn.__name__.replace("_", "-"), level, frozenset(ops), fn, source))
        return fn

    return register


U, E = Level.UNSUPPORTED, Level.ESTIMATE_ONLY


# general tensor rules ---------------------------------------------------------------------------------------
@constraint(U, ALL, source="armnn")
def data_type(p: OpParams) -> str | None:
    """Inputs and outputs must be int8 or uint8 quantized tensors."""
    bad = [t for t in p.activations + p.outputs if not _is_int8(t)]
    return f"'{bad[0].name}' is {bad[0].dtype}{'' if bad[0].quant else ' unquantized'}" if bad else None


@constraint(U, ALL, source="armnn")
def rank(p: OpParams) -> str | None:
    """Tensors must have at most 4 dimensions."""
    bad = [t for t in p.activations + p.outputs if t.shape is not None and len(t.shape) > 4]
    return f"'{bad[0].name}' has {len(bad[0].shape or ())}" if bad else None


@constraint(U, ALL)
def batch_size(p: OpParams) -> str | None:
    """Batch size must be 1."""
    bad = [t for t in p.activations if t.shape and len(t.shape) >= 2 and t.shape[0] != 1]
    return f"'{bad[0].name}' has batch {bad[0].shape[0]}" if bad and bad[0].shape else None


@constraint(U, ALL)
def per_tensor_activations(p: OpParams) -> str | None:
    """Inputs and outputs must be quantized per tensor (one scale and zero point)."""
    bad = [t for t in p.activations + p.outputs if t.quant is not None and t.quant.per_axis]
    return f"'{bad[0].name}' has {bad[0].quant.scale.size} scales" if bad else None  # type: ignore[union-attr]


@constraint(U, ALL)
def zero_point_range(p: OpParams) -> str | None:
    """Zero points must lie in the range of the tensor's type."""
    for t in p.activations + p.outputs:
        if _is_int8(t):
            low, high = (-128, 127) if t.dtype is DType.INT8 else (0, 255)
            if not low <= _zp(t) <= high:
                return f"'{t.name}' has zero point {_zp(t)}"
    return None


@constraint(U, ALL)
def tensor_depth(p: OpParams) -> str | None:
    """An 8 x 8 x C block of every tensor must fit in SRAM: C <= SRAM / 64 unless the tensor is 1 wide."""
    for t in p.activations + p.outputs:
        shape = t.shape
        if shape and len(shape) == 4 and shape[2] != 1 and shape[3] > p.variant.max_depth:
            return f"'{t.name}' has {shape[3]} channels > {p.variant.max_depth} for {p.variant.name}"
    return None


# weighted ops ------------------------------------------------------------------------------------------------
@constraint(U, WEIGHTED)
def weights_type(p: OpParams) -> str | None:
    """Weights must be int8 or uint8 quantized constants."""
    w = p.weight
    if w is None:
        return "weights are missing"
    if not w.is_constant:
        return f"weights '{w.name}' are not constant"
    return None if _is_int8(w) else f"weights '{w.name}' are {w.dtype}"


@constraint(U, WEIGHTED)
def bias_type(p: OpParams) -> str | None:
    """The bias must be an int32 quantized constant."""
    b = p.bias
    if b is not None and (b.dtype is not DType.INT32 or not b.is_constant or b.quant is None):
        return f"bias '{b.name}' is {b.dtype}"
    return None


@constraint(U, WEIGHTED, source="armnn")
def bias_scale(p: OpParams) -> str | None:
    """The bias scale must be within 1% of input scale x weight scale (Arm NN then uses the product)."""
    w, b = p.weight, p.bias
    if b is None or b.quant is None or w is None or w.quant is None or p.x.quant is None:
        return None
    expected = np.float32(_scale(p.x)) * w.quant.scale.astype(np.float32)
    have, expected = np.broadcast_arrays(b.quant.scale.astype(np.float32), expected)
    worst = float(np.max(np.abs(have - expected) / np.abs(expected)))
    return f"they differ by {worst:.2%}" if worst > 0.01 else None


@constraint(E, WEIGHTED)
def bias_zero_point(p: OpParams) -> str | None:
    """The bias zero point must be 0."""
    b = p.bias
    if b is not None and b.quant is not None and np.any(b.quant.zero_point != 0):
        return f"it is {int(b.quant.zero_point[np.flatnonzero(b.quant.zero_point)[0]])}"
    return None


@constraint(U, CONV_OPS)
def weights_quantization_axis(p: OpParams) -> str | None:
    """Per-channel weight scales must run along the output channels."""
    w = p.weight
    if w is None or w.quant is None or not w.quant.per_axis:
        return None
    want = WEIGHTED_OPS[p.type].axis
    return f"they run along axis {w.quant.axis}, not {want}" if w.quant.axis != want else None


@constraint(U, {"FULLY_CONNECTED"})
def fc_per_tensor(p: OpParams) -> str | None:
    """FULLY_CONNECTED weights and bias must be quantized per tensor (no per-channel scales)."""
    for t in (p.weight, p.bias):
        if t is not None and t.quant is not None and t.quant.per_axis:
            return f"'{t.name}' has {t.quant.scale.size} scales"
    return None


@constraint(U, {"CONV_2D", "DEPTHWISE_CONV_2D"}, source="armnn")
def dilation(p: OpParams) -> str | None:
    """Dilation is not supported."""
    o = p.op.options
    d = (o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1))
    return f"it is {d[0]}x{d[1]}" if d != (1, 1) else None


@constraint(E, CONV_OPS)
def conv_kernel_size(p: OpParams) -> str | None:
    """Kernel height and width must be 1, 2, 3, 5, 7 or 9."""
    kh, kw = p.kernel
    return f"kernel is {kh}x{kw}" if kh not in KERNEL_SIZES or kw not in KERNEL_SIZES else None


@constraint(E, {"DEPTHWISE_CONV_2D"})
def depthwise_square_kernel(p: OpParams) -> str | None:
    """A depthwise kernel must be square."""
    kh, kw = p.kernel
    return f"kernel is {kh}x{kw}" if kh != kw else None


@constraint(E, {"CONV_2D", "DEPTHWISE_CONV_2D"})
def conv_stride(p: OpParams) -> str | None:
    """Strides must be equal in height and width, and 1 or 2."""
    sh, sw = p.stride
    return f"stride is {sh}x{sw}" if sh != sw or sh not in (1, 2) else None


@constraint(E, {"CONV_2D", "DEPTHWISE_CONV_2D"})
def conv_large_kernel_stride(p: OpParams) -> str | None:
    """A kernel larger than 7 needs stride 1."""
    kh, kw = p.kernel
    return f"kernel {kh}x{kw} with stride {p.stride[0]}" if max(kh, kw) > 7 and max(p.stride) > 1 else None


@constraint(E, CONV_OPS)
def conv_padding(p: OpParams) -> str | None:
    """Padding must be at most 7 on each side, unless it is SAME padding."""
    pad = p.padding
    if max(pad) <= 7:
        return None
    h, w = p.hw if p.type != "TRANSPOSE_CONV" else p.y.shape[1:3]  # type: ignore[index]
    kh, kw = p.kernel
    for prefer_after in (True, False):
        top, bottom = _same(h, kh, p.stride[0], prefer_after)
        left, right = _same(w, kw, p.stride[1], prefer_after)
        if pad == (top, bottom, left, right):
            return None
    return f"padding {list(pad)}"


def _same(size: int, kernel: int, stride: int, prefer_after: bool) -> tuple[int, int]:
    before, after = same_padding(size, kernel, stride)
    return (before, after) if prefer_after else (after, before)


@constraint(E, {"DEPTHWISE_CONV_2D"})
def depthwise_multiplier(p: OpParams) -> str | None:
    """A channel multiplier above 1 needs an input with 1 channel."""
    m = int(p.op.options.get("depth_multiplier", 1) or 1)
    channels = (p.x.shape or (0,))[-1]
    if m > 1 and channels != 1:
        return f"multiplier {m} on {channels} input channels"
    return None


@constraint(E, {"DEPTHWISE_CONV_2D"})
def depthwise_1x1_stride(p: OpParams) -> str | None:
    """A 1x1 depthwise conv must have stride 1."""
    return f"stride {p.stride[0]}" if p.kernel == (1, 1) and max(p.stride) > 1 else None


@constraint(E, {"TRANSPOSE_CONV"})
def transpose_conv_stride(p: OpParams) -> str | None:
    """TRANSPOSE_CONV must have stride 2 in height and width."""
    return f"stride is {p.stride[0]}x{p.stride[1]}" if p.stride != (2, 2) else None


@constraint(E, {"TRANSPOSE_CONV"})
def transpose_conv_large_kernel_padding(p: OpParams) -> str | None:
    """A TRANSPOSE_CONV kernel larger than 7 needs SAME padding."""
    return f"kernel {p.kernel[0]}x{p.kernel[1]} VALID" if max(p.kernel) > 7 and p.padding == (0, 0, 0, 0) else None


@constraint(E, WEIGHTED)
def overall_scale(p: OpParams) -> str | None:
    """Input scale x weight scale / output scale must be below 65536."""
    w = p.weight
    if w is None or w.quant is None or p.x.quant is None or p.y.quant is None:
        return None
    worst = float(np.max(np.float32(_scale(p.x)) * w.quant.scale.astype(np.float32) / np.float32(_scale(p.y))))
    return f"it is {worst:g}" if not worst < 65536.0 else None


# elementwise, concat, split ----------------------------------------------------------------------------------
@constraint(E, ELEMENTWISE)
def no_broadcast(p: OpParams) -> str | None:
    """ADD and MUL inputs must have the same shape: the NPU does not broadcast (legalize-ethos-n turns
    a per-channel constant into a 1x1 depthwise conv where that is bit-exact)."""
    inputs = [t for t in p.graph.inputs_of(p.op) if t is not None]
    shapes = {tuple(t.shape or ()) for t in inputs}
    if len(shapes) > 1:
        const = next((t for t in inputs if t.is_constant), None)
        return f"shapes {' and '.join(str(list(t.shape or ())) for t in inputs)}" + (
            f" (constant '{const.name}')" if const is not None else ""
        )
    return None


@constraint(U, ELEMENTWISE)
def same_input_type(p: OpParams) -> str | None:
    """Both inputs must have the same element type."""
    inputs = [t for t in p.graph.inputs_of(p.op) if t is not None]
    types = {t.dtype for t in inputs}
    return " and ".join(str(t) for t in sorted(types, key=str)) if len(types) > 1 else None


def _requantize_ok(s_in: float, s_out: float) -> bool:
    """The library requantizes with an identity conv: s_in * (1/128) / s_out must lie in [0, 1)."""
    multiplier = np.float32(s_in) * np.float32(1.0 / IDENTITY_WEIGHT_VALUE) / np.float32(s_out)
    return bool(0.0 <= multiplier < 1.0)


@constraint(E, {"CONCATENATION"})
def concat_requantize(p: OpParams) -> str | None:
    """The output scale must be bigger than every input scale / 128."""
    for t in p.activations:
        if t.quant is not None and p.y.quant is not None and not _requantize_ok(_scale(t), _scale(p.y)):
            return f"input '{t.name}' scale {_scale(t):g}, output {_scale(p.y):g}"
    return None


@constraint(E, {"CONCATENATION"})
def concat_axis(p: OpParams) -> str | None:
    """Concatenation along the batch axis is not supported."""
    rank_ = len(p.y.shape or (0, 0, 0, 0))
    return "axis 0" if int(p.op.options.get("axis", -1)) % max(rank_, 1) == 0 and rank_ == 4 else None


@constraint(U, {"SPLIT", "SPLIT_V"})
def split_axis(p: OpParams) -> str | None:
    """Split along the batch axis is not supported."""
    axis_t = p.input(0 if p.type == "SPLIT" else 2)
    rank = len(p.y.shape or ()) or 4
    if axis_t is not None and axis_t.data is not None and int(np.asarray(axis_t.data).reshape(-1)[0]) % rank == 0:
        return "axis 0"
    return None


@constraint(E, {"QUANTIZE"})
def requantize_scale(p: OpParams) -> str | None:
    """A requantize's output scale must be bigger than its input scale / 128."""
    if p.x.quant is None or p.y.quant is None:
        return None
    return None if _requantize_ok(_scale(p.x), _scale(p.y)) else f"input {_scale(p.x):g}, output {_scale(p.y):g}"


# pooling and mean --------------------------------------------------------------------------------------------
@constraint(U, POOL_OPS | {"MEAN", "RESHAPE", "PAD", "PADV2"} | RELUS)
def same_quantization(p: OpParams) -> str | None:
    """The output must have the input's quantization."""
    if p.x.quant is None or p.y.quant is None:
        return None
    if (_scale(p.x), _zp(p.x)) != (_scale(p.y), _zp(p.y)):
        return f"input {_scale(p.x):g}/{_zp(p.x)}, output {_scale(p.y):g}/{_zp(p.y)}"
    return None


@constraint(E, {"AVERAGE_POOL_2D"})
def avg_pool_form(p: OpParams) -> str | None:
    """AVERAGE_POOL_2D must be 3x3 stride 1 SAME, or a 7x7 or 8x8 pool over the whole input."""
    (kh, kw), (h, w) = p.kernel, p.hw
    if p.padding == (0, 0, 0, 0) and (kh, kw) == (h, w):
        return None if kh == kw and kh in (7, 8) else f"a {kh}x{kw} mean"
    if (kh, kw) == (3, 3) and p.stride == (1, 1) and p.padding == (1, 1, 1, 1):
        return None
    return f"pool {kh}x{kw} stride {p.stride[0]}x{p.stride[1]} padding {list(p.padding)}"


@constraint(E, {"AVERAGE_POOL_2D"})
def avg_pool_3x3_sram(p: OpParams) -> str | None:
    """A 3x3 average pool's input and output planes must fit in one SRAM bank."""
    if p.kernel != (3, 3) or p.stride != (1, 1):
        return None
    v, (h, w) = p.variant, p.hw
    plane = -(-h // 8) * 8 * (-(-w // 8) * 8)
    stripes = 2 if (p.x.shape or (0, 0, 0, 0))[-1] > v.srams else 1
    per_sram = -(-v.sram_bytes // v.srams)
    need = stripes * 2 * plane + v.max_ple_size
    return f"{need:,} bytes > {per_sram:,}" if need > per_sram else None


@constraint(E, {"MAX_POOL_2D"})
def max_pool_stride(p: OpParams) -> str | None:
    """MAX_POOL_2D strides must be 1x1 or 2x2."""
    return None if p.stride in ((1, 1), (2, 2)) else f"stride {p.stride[0]}x{p.stride[1]}"


@constraint(E, {"MAX_POOL_2D"})
def max_pool_stride2_form(p: OpParams) -> str | None:
    """A stride-2 max pool must be 1x1, 2x2 (VALID on even inputs, SAME on odd) or 3x3 (VALID on odd
    inputs, SAME on even, at most 417 wide)."""
    if p.stride != (2, 2):
        return None
    kh, kw = p.kernel
    if kh != kw:
        return f"pool {kh}x{kw}"
    return max_pool_stride2_problem(kh, p.padding, *p.hw)


@constraint(E, {"MAX_POOL_2D"})
def max_pool_stride1_size(p: OpParams) -> str | None:
    """A stride-1 max pool must be VALID up to 9x9 or SAME up to 17x17."""
    if p.stride != (1, 1):
        return None
    mode = "VALID" if p.padding == (0, 0, 0, 0) else "SAME"
    return max_pool_stride1_problem(*p.kernel, mode)


@constraint(E, {"MAX_POOL_2D"})
def max_pool_stride1_sram(p: OpParams) -> str | None:
    """A stride-1 max pool's pooled dimensions must fit in SRAM (the limit depends on the variant)."""
    if p.stride != (1, 1):
        return None
    v = p.variant
    per_tensor = (v.sram_bytes - v.max_ple_size) // 2
    limit = per_tensor // (v.brick_group[1] * v.brick_group[2]) // v.brick_group[1] * v.brick_group[1]
    (kh, kw), (h, w) = p.kernel, p.hw
    if (kw > 1 and w > limit) or (kh > 1 and h > limit):
        return f"input {h}x{w}, limit {limit} for {v.name}"
    return None


@constraint(E, {"MAX_POOL_2D"})
def pool_not_larger_than_input(p: OpParams) -> str | None:
    """The input must not be smaller than the pool."""
    (kh, kw), (h, w) = p.kernel, p.hw
    return f"pool {kh}x{kw} on {h}x{w}" if h < kh or w < kw else None


def _mean_axes(p: OpParams) -> set[int] | None:
    axes = p.input(1)
    if axes is None or axes.data is None:
        return None
    rank = len(p.x.shape or ()) or 4
    return {int(a) % rank for a in np.asarray(axes.data).reshape(-1)}


@constraint(U, {"MEAN"}, source="armnn")
def mean_keep_dims(p: OpParams) -> str | None:
    """MEAN must keep the reduced dimensions (keep_dims)."""
    return None if p.op.options.get("keep_dims") else "keep_dims is false"


@constraint(U, {"MEAN"}, source="armnn")
def mean_axes(p: OpParams) -> str | None:
    """MEAN must reduce exactly height and width."""
    axes = _mean_axes(p)
    return None if axes == {1, 2} else f"axes {sorted(axes) if axes is not None else 'not constant'}"


@constraint(U, {"MEAN"})
def mean_size(p: OpParams) -> str | None:
    """MEAN is supported over 7x7 and 8x8 only."""
    h, w = p.hw
    return None if (h, w) in ((7, 7), (8, 8)) else f"input is {h}x{w}"


# pad, activations, others --------------------------------------------------------------------------------------
def _paddings(p: OpParams) -> np.ndarray | None:
    t = p.input(1)
    return None if t is None or t.data is None else np.asarray(t.data, dtype=np.int64).reshape(-1, 2)


@constraint(U, {"PAD", "PADV2"}, source="armnn")
def pad_hw_only(p: OpParams) -> str | None:
    """PAD may pad height and width only."""
    pads = _paddings(p)
    if pads is None or pads.shape[0] != 4:
        return "paddings are not a constant for 4 dimensions"
    return f"paddings {pads.tolist()}" if pads[0].any() or pads[3].any() else None


@constraint(U, {"PAD", "PADV2"})
def pad_at_most_7(p: OpParams) -> str | None:
    """PAD may add at most 7 on each side."""
    pads = _paddings(p)
    return f"paddings {pads.tolist()}" if pads is not None and pads.max(initial=0) > 7 else None


@constraint(U, {"PADV2"}, source="armnn")
def pad_with_zero(p: OpParams) -> str | None:
    """PAD must pad with zero (the zero point)."""
    value = p.input(2)
    if value is None or value.data is None:
        return "the pad value is not a constant"
    v = int(np.asarray(value.data).reshape(-1)[0])
    return None if v == _zp(p.x) else f"pads with {v}, zero point {_zp(p.x)}"


@constraint(U, {"LOGISTIC"})
def sigmoid_output(p: OpParams) -> str | None:
    """LOGISTIC's output must have scale 1/256 and the type's minimum as zero point."""
    want = (1 / 256, -128 if p.y.dtype is DType.INT8 else 0)
    have = (_scale(p.y), _zp(p.y))
    return (
        None if np.float32(have[0]) == np.float32(want[0]) and have[1] == want[1] else f"it has {have[0]:g}/{have[1]}"
    )


@constraint(U, {"TANH"})
def tanh_output(p: OpParams) -> str | None:
    """TANH's output must have scale 1/128 and the middle of the type as zero point."""
    want = (1 / 128, 0 if p.y.dtype is DType.INT8 else 128)
    have = (_scale(p.y), _zp(p.y))
    return (
        None if np.float32(have[0]) == np.float32(want[0]) and have[1] == want[1] else f"it has {have[0]:g}/{have[1]}"
    )


@constraint(E, {"LEAKY_RELU"})
def leaky_relu_alpha(p: OpParams) -> str | None:
    """LEAKY_RELU's alpha must lie strictly between 0 and 1."""
    alpha = float(p.op.options.get("alpha", 0.0))
    return None if 0.0 < alpha < 1.0 else f"alpha {alpha:g}"


@constraint(E, {"DEPTH_TO_SPACE"})
def depth_to_space_block(p: OpParams) -> str | None:
    """DEPTH_TO_SPACE must have block size 2."""
    block = int(p.op.options.get("block_size", 0))
    return None if block == 2 else f"block size {block}"


@constraint(E, {"SPACE_TO_DEPTH"})
def space_to_depth(p: OpParams) -> str | None:
    """SPACE_TO_DEPTH is EstimateOnly (the library estimates it but does not compile it)."""
    return "always"


@constraint(U, {"TRANSPOSE"})
def transpose_batch(p: OpParams) -> str | None:
    """TRANSPOSE must keep the batch axis first."""
    perm = p.input(1)
    if perm is None or perm.data is None:
        return "the permutation is not a constant"
    order = [int(a) for a in np.asarray(perm.data).reshape(-1)]
    return None if order and order[0] == 0 else f"permutation {order}"


@constraint(U, {"RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"})
def resize_factor(p: OpParams) -> str | None:
    """RESIZE must produce 2n or 2n - 1 rows and columns from n."""
    (h, w), out = p.hw, p.y.shape or (0, 0, 0, 0)
    ok = out[1] in (2 * h, 2 * h - 1) and out[2] in (2 * w, 2 * w - 1)
    return None if ok else f"{h}x{w} to {out[1]}x{out[2]}"


@constraint(E, ESTIMATE_ONLY_OPS, source="armnn")
def estimate_only_op(p: OpParams) -> str | None:
    """Arm NN only estimates this op type on Ethos-N; it runs on the CPU."""
    return p.type


@constraint(U, ALL, source="armnn")
def known_op(p: OpParams) -> str | None:
    """Ethos-N has no operation for this op type."""
    return None if p.type in NPU_OPS or p.type in ESTIMATE_ONLY_OPS else p.type


# --- checking -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    constraint: str
    level: Level
    message: str

    def to_json(self) -> dict[str, str]:
        return {"constraint": self.constraint, "level": str(self.level), "message": self.message}


def applies(c: Constraint, op_type: str) -> bool:
    if c.ops == ALL:
        return True
    return op_type in c.ops


def check_op(graph: Graph, op: Op, variant: Variant) -> list[Finding]:
    """Every constraint `op` violates on `variant` (empty: Supported)."""
    p = OpParams.of(graph, op, variant)
    findings = []
    for c in CONSTRAINTS:
        if not applies(c, op.type):
            continue
        if c.ops == ALL and c.name != "known-op" and op.type not in NPU_OPS | ESTIMATE_ONLY_OPS:
            continue  # an op Ethos-N does not have: one reason is enough
        detail = c.check(p)
        if detail is not None:
            findings.append(Finding(c.name, c.level, f"{c.sentence.rstrip('.')}: {detail}"))
    if fused_activation(op) in ("TANH", "SIGN_BIT"):
        findings.append(
            Finding("fused-activation", Level.UNSUPPORTED, f"fused {fused_activation(op)} is not supported")
        )
    return findings


def level_of(findings: list[Finding]) -> Level:
    return max((f.level for f in findings), default=Level.SUPPORTED)


def predicate(variant: Variant) -> Callable[[Graph, Op], list[str]]:
    """For npupass.passes.partition: an op goes to the NPU only when Supported."""
    return lambda graph, op: [f.message for f in check_op(graph, op, variant)]
