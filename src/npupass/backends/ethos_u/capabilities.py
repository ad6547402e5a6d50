"""Which TFLite ops Arm Vela 5.2 places on the Ethos-U55/U65/U85 NPU: a table of named constraints.

Each constraint is a function that returns what breaks it in one op (None when the op meets it), with
the sentence users see and the sentence Vela's own table (`regor.tflite_operator_constraints`) uses for
it. `TABLES[core]` lists, per op type, the constraints Vela checks for it; an op type not in the table
runs on the CPU. Tests compare the table with Vela's, so a Vela upgrade that changes support fails loudly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from npupass.ir.graph import Graph, Op, Tensor
from npupass.ir.ops import same_padding
from npupass.ir.types import DType


@dataclass(frozen=True)
class Core:
    """What differs between the Ethos-U generations for placement."""

    name: str  # Vela's architecture name, EthosU55
    int32_feature_maps: bool
    bool_feature_maps: bool
    int64_bias_limit: int
    weight_sum_limit_16bit: int


CORES = {
    "EthosU55": Core("EthosU55", False, False, 1099511627775, 8323072),
    "EthosU65": Core("EthosU65", False, False, 1099511627775, 8323072),
    "EthosU85": Core("EthosU85", True, True, 281474976710655, 2130706432),
}


class OpView:
    """An op's tensors the way Vela names them: IFMs (non-constant inputs), OFMs, weights and bias."""

    def __init__(self, graph: Graph, op: Op, core: Core) -> None:
        self.graph, self.op, self.core = graph, op, core
        self.inputs = graph.inputs_of(op)
        self.outputs = graph.outputs_of(op)

    @cached_property
    def ifms(self) -> list[Tensor]:
        return [t for t in self.inputs if t is not None and not t.is_constant]

    @property
    def ifm(self) -> Tensor | None:
        return self.ifms[0] if self.ifms else None

    @property
    def ofm(self) -> Tensor | None:
        return self.outputs[0] if self.outputs else None

    @cached_property
    def feature_maps(self) -> list[Tensor]:
        return self.ifms + self.outputs

    def input(self, slot: int) -> Tensor | None:
        return self.inputs[slot] if slot < len(self.inputs) else None

    def option(self, name: str, default: object = None) -> object:
        return self.op.options.get(name, default)


Check = Callable[[OpView], str | None]


@dataclass(frozen=True)
class Constraint:
    name: str
    text: str
    """The sentence users see when an op breaks it."""
    vela: str
    """Vela's sentence for the same rule (regor.tflite_operator_constraints)."""
    check: Check


CONSTRAINTS: dict[str, Constraint] = {}


def constraint(name: str, text: str, vela: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        CONSTRAINTS[name] = Constraint(name, text, vela, check)
        return check

    return register


def _shape(t: Tensor) -> tuple[int, ...]:
    return t.shape or ()


def _names(tensors: list[Tensor]) -> str:
    return ", ".join(f"'{t.name}'" for t in tensors)


def _quantized(t: Tensor) -> bool:
    return t.quant is not None and t.quant.is_affine


def _padded4(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    full = (1,) * (4 - len(shape)) + tuple(shape[-4:])
    return full[0], full[1], full[2], full[3]


# --- generic: every op Vela supports ------------------------------------------------------------------
@constraint(
    "dynamic-shape", "only the batch dimension may be dynamic", "Only the first dimension of tensors can be dynamic."
)
def _dynamic(v: OpView) -> str | None:
    bad = [t for t in v.feature_maps if t.shape_signature and any(d < 0 for d in t.shape_signature[1:])]
    return f"{_names(bad)} has a dynamic dimension after the first" if bad else None


_FM_TYPES = {DType.INT16, DType.INT32, DType.INT64, DType.INT8, DType.UINT8}


@constraint(
    "feature-map-type",
    "feature maps must be integer (int8, uint8, int16, int32, int64): the model is not quantized here",
    'Feature-map dataTypes must be one of {"INT16", "INT32", "INT64", "INT8", "UINT8"}',
)
def _fm_type(v: OpView) -> str | None:
    bad = [t for t in v.feature_maps if t.dtype not in _FM_TYPES]
    return f"{_names(bad)} is {bad[0].dtype}" if bad else None


@constraint(
    "feature-map-type-bool",
    "feature maps must be integer or bool: the model is not quantized here",
    'Feature-map dataTypes must be one of {"BOOL", "INT16", "INT32", "INT64", "INT8", "UINT8"}',
)
def _fm_type_bool(v: OpView) -> str | None:
    bad = [t for t in v.feature_maps if t.dtype not in _FM_TYPES | {DType.BOOL}]
    return f"{_names(bad)} is {bad[0].dtype}" if bad else None


@constraint("constant-shape", "every tensor must have a known shape", "Tensors must have constant shape.")
def _constant_shape(v: OpView) -> str | None:
    bad = [t for t in v.feature_maps if t.shape is None]
    return f"{_names(bad)} has no shape" if bad else None


@constraint("has-ifm", "the op must read a feature map", "Operations must have at least one IFM.")
def _has_ifm(v: OpView) -> str | None:
    return None if any(t is not None for t in v.inputs) else "it has no inputs"


@constraint("has-ofm", "the op must write a feature map", "Operations must have at least one OFM.")
def _has_ofm(v: OpView) -> str | None:
    return None if v.outputs else "it has no outputs"


@constraint("no-64-bit", "64-bit feature maps are not supported", "64-bit feature-maps are not supported.")
def _no_64(v: OpView) -> str | None:
    bad = [t for t in v.feature_maps if t.dtype == DType.INT64]
    return f"{_names(bad)} is INT64" if bad else None


@constraint("no-32-bit", "32-bit feature maps are not supported", "32-bit feature-maps are not supported.")
def _no_32(v: OpView) -> str | None:
    bad = [t for t in v.feature_maps if t.dtype == DType.INT32]
    return f"{_names(bad)} is INT32" if bad else None


@constraint(
    "per-tensor-quantization",
    "feature maps must be quantized per tensor, not per axis",
    "Per-axis quantization is not supported.",
)
def _per_tensor(v: OpView) -> str | None:
    bad = [t for t in v.feature_maps if t.quant is not None and t.quant.per_axis]
    return f"{_names(bad)} is quantized per axis" if bad else None


@constraint(
    "zero-points",
    "int32 tensors need zero point 0 and unsigned ones a non-negative zero point",
    "Zero-points must be 0 for Int32 and non-negative for unsigned dataTypes",
)
def _zero_points(v: OpView) -> str | None:
    for t in v.feature_maps:
        if t.quant is None or not t.quant.zero_point.size:
            continue
        zp = t.quant.zero_point
        if (t.dtype == DType.INT32 and np.any(zp != 0)) or (t.dtype in (DType.UINT8, DType.UINT16) and np.any(zp < 0)):
            return f"'{t.name}' ({t.dtype}) has zero point {int(zp[0])}"
    return None


@constraint(
    "ifm-zero-points",
    "input zero points must fit the type (int8 -128..127, uint8 0..255, uint16 0 or 32768, else 0)",
    "IFM Zero-points must be in the range:\n  - Int8: (-128 <= zp <= 127).\n  - UInt8: (0 <= zp <= 255).\n"
    "  - UInt16: zp must be 0 or 32768.\n  - Other: zp must be 0.",
)
def _ifm_zero_points(v: OpView) -> str | None:
    for t in v.ifms:
        if t.quant is None or not t.quant.zero_point.size:
            continue
        zp = int(t.quant.zero_point[0])
        ok = {DType.INT8: -128 <= zp <= 127, DType.UINT8: 0 <= zp <= 255, DType.UINT16: zp in (0, 32768)}
        if not ok.get(t.dtype, zp == 0):
            return f"'{t.name}' ({t.dtype}) has zero point {zp}"
    return None


@constraint(
    "ofm-zero-points",
    "output zero points must fit the type (signed -128..127, unsigned 0..255 or 32768)",
    "OFM Zero-points must be in the range:\n  - Signed-integer: (-128 <= zp <= 127)\n"
    "  - Unsigned-integer: (0 <= zp <= 255) OR zp == 32768.",
)
def _ofm_zero_points(v: OpView) -> str | None:
    for t in v.outputs:
        if t.quant is None or not t.quant.zero_point.size:
            continue
        zp = int(t.quant.zero_point[0])
        unsigned = t.dtype in (DType.UINT8, DType.UINT16, DType.UINT32, DType.UINT64)
        if not ((0 <= zp <= 255 or zp == 32768) if unsigned else -128 <= zp <= 127):
            return f"'{t.name}' ({t.dtype}) has zero point {zp}"
    return None


@constraint(
    "quantized",
    "inputs, outputs and weights must carry quantization parameters",
    "Input(s), Output and Weight tensors must have quantization parameters.",
)
def _has_quant(v: OpView) -> str | None:
    tensors = v.feature_maps + ([w] if (w := _weights(v)) is not None else [])
    bad = [t for t in tensors if t.dtype in (DType.INT8, DType.UINT8, DType.INT16) and not _quantized(t)]
    return f"{_names(bad)} has no quantization" if bad else None


@constraint(
    "positive-scale",
    "quantization scales must be positive",
    "Quantization scale of any tensor must be positive.",
)
def _positive_scale(v: OpView) -> str | None:
    for t in v.feature_maps:
        if _quantized(t) and t.quant is not None and np.any(t.quant.scale <= 0):
            return f"'{t.name}' has scale {float(t.quant.scale.min()):g}"
    return None


# --- weights and bias -----------------------------------------------------------------------------------
def _weights(v: OpView) -> Tensor | None:
    return v.input(1) if v.op.type in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV") else None


def _bias(v: OpView) -> Tensor | None:
    return v.input(3) if v.op.type == "TRANSPOSE_CONV" else v.input(2)


@constraint("weights-8-bit", "weights must be 8-bit", "Weight tensors must be 8-bit precision")
def _weights_8bit(v: OpView) -> str | None:
    w = _weights(v)
    return f"weights '{w.name}' are {w.dtype}" if w is not None and w.dtype not in (DType.INT8, DType.UINT8) else None


def _weight_sum(v: OpView, limit16: int) -> str | None:
    w = _weights(v)
    ifm = v.ifm
    if w is None or w.data is None or w.quant is None or ifm is None or w.data.dtype.kind not in "iu":
        return None
    limit = limit16 if ifm.dtype == DType.INT16 else 8323072
    zp = w.quant.zero_point if w.quant.zero_point.size else np.zeros(1, np.int64)
    axis = 3 if v.op.type == "DEPTHWISE_CONV_2D" else 0
    if w.data.ndim <= axis or zp.size not in (1, w.data.shape[axis]):
        return None  # malformed weights: the structural checks and Vela speak for them
    if w.data.size // max(w.data.shape[axis], 1) * 255 <= limit:  # no 8-bit channel this small can exceed it
        return None
    data = w.data.astype(np.int64)
    if zp.size > 1:
        zp = zp.reshape([-1 if i == axis else 1 for i in range(data.ndim)])
    sums = np.abs(data - zp).sum(axis=tuple(i for i in range(data.ndim) if i != axis))
    return f"a channel's absolute weight sum is {int(sums.max())}, above {limit}" if sums.max() > limit else None


@constraint(
    "weight-sum",
    "the absolute weights of one output channel must sum to at most 8,323,072",
    "Weigth sum constraints:\n  - IF 8-bit IFM:\n    - The sum of absolute weights cannot exceed 8323072\n"
    "  - IF 16-bit IFM:\n    - The sum of absolute weights cannot exceed 8323072",
)
def _weight_sum_u55(v: OpView) -> str | None:
    return _weight_sum(v, 8323072)


@constraint(
    "weight-sum-u85",
    "the absolute weights of one output channel must sum to at most 8,323,072 (16-bit input: 2,130,706,432)",
    "Weigth sum constraints:\n  - IF 8-bit IFM:\n    - The sum of absolute weights cannot exceed 8323072\n"
    "  - IF 16-bit IFM:\n    - The sum of absolute weights cannot exceed 2130706432",
)
def _weight_sum_u85(v: OpView) -> str | None:
    return _weight_sum(v, 2130706432)


@constraint(
    "bias-channel-axis",
    "the bias must be one value per output channel",
    "Bias values must be stored in the channel axis",
)
def _bias_axis(v: OpView) -> str | None:
    b, ofm = _bias(v), v.ofm
    if b is None or ofm is None or not ofm.shape:
        return None
    shape = _shape(b)
    ok = bool(shape) and shape[-1] == ofm.shape[-1] and all(d == 1 for d in shape[:-1])
    return None if ok else f"bias '{b.name}' has shape {list(shape)}"


@constraint("bias-constant", "the bias must be a constant", "Bias tensors must be constant")
def _bias_constant(v: OpView) -> str | None:
    b = _bias(v)
    return f"bias '{b.name}' is computed at run time" if b is not None and not b.is_constant else None


@constraint("bias-type", "the bias must be int32 or int64", "Bias tensors precision must be Int32 or Int64")
def _bias_type(v: OpView) -> str | None:
    b = _bias(v)
    return f"bias '{b.name}' is {b.dtype}" if b is not None and b.dtype not in (DType.INT32, DType.INT64) else None


def _bias_range(v: OpView, limit: int) -> str | None:
    b = _bias(v)
    if b is None or b.dtype != DType.INT64 or b.data is None:
        return None
    return f"bias '{b.name}' holds {int(np.abs(b.data).max())}" if np.abs(b.data).max() >= limit else None


@constraint(
    "int64-bias-range", "an int64 bias must stay below 2^40 - 1", "Int64 bias must be smaller than 1099511627775"
)
def _bias_range_u55(v: OpView) -> str | None:
    return _bias_range(v, 1099511627775)


@constraint(
    "int64-bias-range-u85", "an int64 bias must stay below 2^48 - 1", "Int64 bias must be smaller than 281474976710655"
)
def _bias_range_u85(v: OpView) -> str | None:
    return _bias_range(v, 281474976710655)


# --- kernels and strides ----------------------------------------------------------------------------------
def _strides(v: OpView) -> tuple[int, int]:
    return int(v.option("stride_w", 1) or 1), int(v.option("stride_h", 1) or 1)  # type: ignore[call-overload]


@constraint(
    "stride-above-3",
    "strides above 3 need no padding and no dilation",
    "Stride>3 is only supported IF (dilation = 1 AND padding = VALID)",
)
def _stride_above_3(v: OpView) -> str | None:
    sw, sh = _strides(v)
    if max(sw, sh) <= 3:
        return None
    dilated = v.option("dilation_w_factor", 1) != 1 or v.option("dilation_h_factor", 1) != 1
    if dilated:
        return f"stride {sw}x{sh} with dilation"
    if v.option("padding") == "SAME" and _same_padding(v) != (0, 0):  # SAME that pads nothing is VALID
        return f"stride {sw}x{sh} with SAME padding of {_same_padding(v)[0]}x{_same_padding(v)[1]}"
    return None


def _same_padding(v: OpView) -> tuple[int, int]:
    """Total (width, height) padding SAME adds to the IFM."""
    ifm, w = v.ifm, v.input(1)
    if ifm is None or len(_shape(ifm)) != 4:
        return (0, 0)
    if v.op.type in ("CONV_2D", "DEPTHWISE_CONV_2D") and w is not None and len(_shape(w)) == 4:
        kh, kw = _shape(w)[1], _shape(w)[2]
    else:
        kw, kh = _kernel(v)
    sw, sh = _strides(v)
    _, ih, iw, _ = _shape(ifm)
    return sum(same_padding(iw, kw, sw)), sum(same_padding(ih, kh, sh))


@constraint("stride-1-to-3", "strides must be 1, 2 or 3", "Kernel stride must be in the range (1,3).")
def _stride_range(v: OpView) -> str | None:
    sw, sh = _strides(v)
    return f"stride {sw}x{sh}" if not (1 <= sw <= 3 and 1 <= sh <= 3) else None


def _kernel(v: OpView) -> tuple[int, int]:
    return int(v.option("filter_width", 1) or 1), int(v.option("filter_height", 1) or 1)  # type: ignore[call-overload]


@constraint(
    "avgpool-kernel",
    "an average pool's kernel must be at most 256x256 (VALID) or 8x8 (SAME)",
    "Kernel constraints:\n  - IF padding=VALID:\n    - Kernel product must be less than or equal to 256*256\n"
    "    - Kernel height must be less than or equal to 256.\n  - ELSE:\n"
    "    - Kernel width and height must be less than or equal to 8",
)
def _avgpool_kernel(v: OpView) -> str | None:
    kw, kh = _kernel(v)
    if v.option("padding") == "VALID":
        return f"kernel {kw}x{kh}" if kw * kh > 256 * 256 or kh > 256 else None
    return f"kernel {kw}x{kh} with SAME padding" if kw > 8 or kh > 8 else None


@constraint(
    "maxpool-kernel",
    "a max pool's kernel must have at most 65,536 elements and height at most 256",
    "kernel product must be less than or equal to 256*256 and kernel height must be less than or equal to 256.",
)
def _maxpool_kernel(v: OpView) -> str | None:
    kw, kh = _kernel(v)
    return f"kernel {kw}x{kh}" if kw * kh > 256 * 256 or kh > 256 else None


@constraint(
    "transpose-conv-shape",
    "a transpose conv's output must be input x stride (SAME) or input x stride + kernel - stride (VALID)",
    "Shape constraints:\n  - IF PADDING=SAME:\n    - OFM must be equal to IFM * stride\n  - ELSE:\n"
    "    - OFM must be equal to IFM * stride + (kernel - stride)",
)
def _tconv_shape(v: OpView) -> str | None:
    ifm, ofm, w = v.input(2), v.ofm, v.input(1)
    if ifm is None or ofm is None or w is None or any(len(_shape(t)) != 4 for t in (ifm, ofm, w)):
        return None
    sw, sh = _strides(v)
    kh, kw = _shape(w)[1], _shape(w)[2]
    _, ih, iw, _ = _shape(ifm)
    _, oh, ow, _ = _shape(ofm)
    if v.option("padding") == "SAME":
        want = (ih * sh, iw * sw)
    else:
        want = (ih * sh + max(kh - sh, 0), iw * sw + max(kw - sw, 0))
    return None if (oh, ow) == want else f"output {oh}x{ow}, expected {want[0]}x{want[1]}"


@constraint(
    "transpose-conv-stride",
    "a transpose conv's stride must be 1x1 or 2x2 (2x1 / 1x2 only over a dimension of size 1)",
    "Stride values WxH must be: 1x1 OR 2x2 OR 2x1 (if IFM height and kernel height is 1) OR 1x2 "
    "(if IFM width and kernel width is 1)",
)
def _tconv_stride(v: OpView) -> str | None:
    sw, sh = _strides(v)
    ifm, w = v.input(2), v.input(1)
    if (sw, sh) in ((1, 1), (2, 2)):
        return None
    if ifm is not None and w is not None and len(_shape(ifm)) == 4 and len(_shape(w)) == 4:
        if (sw, sh) == (2, 1) and _shape(ifm)[1] == 1 and _shape(w)[1] == 1:
            return None
        if (sw, sh) == (1, 2) and _shape(ifm)[2] == 1 and _shape(w)[2] == 1:
            return None
    return f"stride {sw}x{sh}"


# --- fully connected and matmul ---------------------------------------------------------------------------
@constraint(
    "fc-weight-form",
    "fully-connected weights must have the form [O, 1, ..., 1, I]",
    "FullyConnected weights must be on the form O,1,1,..,1,I.",
)
def _fc_form(v: OpView) -> str | None:
    w = v.input(1)
    if w is None or len(_shape(w)) < 2:
        return None
    return None if all(d == 1 for d in _shape(w)[1:-1]) else f"weights have shape {list(_shape(w))}"


def _dynamic_matmul(v: OpView) -> bool:
    return v.op.type == "BATCH_MATMUL" or (v.input(1) is not None and not v.input(1).is_constant)  # type: ignore[union-attr]


@constraint(
    "matmul-reduced-axis",
    "a matmul (or a fully connected op with computed weights) may reduce over at most 65,536 elements",
    "IF Matmul or (FC with dynamic weights): Reduced axis must be less than or equal to 2^16",
)
def _matmul_reduced(v: OpView) -> str | None:
    ifm = v.input(0)
    if not _dynamic_matmul(v) or ifm is None or not ifm.shape:
        return None
    reduced = ifm.shape[-2] if v.op.type == "BATCH_MATMUL" and v.option("adj_x") else ifm.shape[-1]
    return f"it reduces over {reduced}" if reduced > 65536 else None


@constraint(
    "matmul-ofm-depth",
    "a matmul (or a fully connected op with computed weights) may have at most 65,536 output channels",
    "IF Matmul or (FC with dynamic weights): OFM depth must be less than or equal to 2^16",
)
def _matmul_depth(v: OpView) -> str | None:
    ofm = v.ofm
    if not _dynamic_matmul(v) or ofm is None or not ofm.shape:
        return None
    return f"output depth {ofm.shape[-1]}" if ofm.shape[-1] > 65536 else None


@constraint(
    "matmul-int8",
    "a matmul (or a fully connected op with computed weights) needs an int8 input",
    "IF Matmul or (FC with dynamic weights): IFM precision must be Int8",
)
def _matmul_int8(v: OpView) -> str | None:
    ifm = v.input(0)
    return f"input is {ifm.dtype}" if _dynamic_matmul(v) and ifm is not None and ifm.dtype != DType.INT8 else None


# --- parameters -------------------------------------------------------------------------------------------
_PARAM_SLOTS = {
    "MEAN": (1,),
    "PAD": (1,),
    "PADV2": (1,),
    "MIRROR_PAD": (1,),
    "SLICE": (1, 2),
    "STRIDED_SLICE": (1, 2, 3),
    "TRANSPOSE": (1,),
}


@constraint(
    "constant-params",
    "its parameters (axes, paddings, sizes ...) must be constants",
    "Parameter tensors must be constant",
)
def _constant_params(v: OpView) -> str | None:
    bad = [t for s in _PARAM_SLOTS.get(v.op.type, ()) if (t := v.input(s)) is not None and not t.is_constant]
    return f"{_names(bad)} is computed at run time" if bad else None


@constraint("params-int", "its paddings must be int32 or int64", "Params tensor must be Int32 or Int64")
def _params_int(v: OpView) -> str | None:
    p = v.input(1)
    return f"paddings '{p.name}' are {p.dtype}" if p is not None and p.dtype not in (DType.INT32, DType.INT64) else None


# --- reductions ---------------------------------------------------------------------------------------------
def _axes(v: OpView) -> list[int]:
    a, ifm = v.input(1), v.ifm
    if a is None or a.data is None or ifm is None or ifm.shape is None:
        return []
    rank = len(ifm.shape)
    return sorted({int(x) % rank for x in np.asarray(a.data).reshape(-1)})


@constraint("mean-batch-1", "MEAN needs batch 1", "Batch must be 1.")
def _mean_batch(v: OpView) -> str | None:
    ifm = v.ifm
    return (
        f"batch {ifm.shape[0]}" if ifm is not None and ifm.shape and len(ifm.shape) == 4 and ifm.shape[0] != 1 else None
    )


@constraint(
    "mean-depth",
    "MEAN over the channels needs height, width or channels of 1",
    "Reduction over depth is only supported if any of h,w,c == 1",
)
def _mean_depth(v: OpView) -> str | None:
    ifm = v.ifm
    if ifm is None or not ifm.shape or len(ifm.shape) - 1 not in _axes(v):
        return None
    _, h, w, c = _padded4(ifm.shape)
    return None if 1 in (h, w, c) else f"it reduces channels of a {h}x{w}x{c} input"


@constraint(
    "mean-axis-size", "MEAN may reduce an axis of at most 4,095 elements", "Reduced axis must be less than 4096"
)
def _mean_axis(v: OpView) -> str | None:
    ifm = v.ifm
    if ifm is None or not ifm.shape:
        return None
    big = [ifm.shape[a] for a in _axes(v) if ifm.shape[a] >= 4096]
    return f"it reduces an axis of {big[0]}" if big else None


@constraint(
    "mean-type", "MEAN needs an int8, uint8 or int16 input", "IFM precision must be one of: (Int8, UInt8, Int16)"
)
def _mean_type(v: OpView) -> str | None:
    ifm = v.ifm
    return (
        f"input is {ifm.dtype}" if ifm is not None and ifm.dtype not in (DType.INT8, DType.UINT8, DType.INT16) else None
    )


@constraint(
    "mean-elements",
    "MEAN may reduce at most 16,777,216 (int8), 8,388,608 (uint8) or 65,536 (int16) elements",
    "Amount of reduced elements cannot exceed: 16777216(Int8), 8388608(UInt8), 65536(Int16).",
)
def _mean_elements(v: OpView) -> str | None:
    ifm = v.ifm
    if ifm is None or not ifm.shape:
        return None
    n = int(np.prod([ifm.shape[a] for a in _axes(v)])) if _axes(v) else 0
    limit = {DType.INT8: 16777216, DType.UINT8: 8388608, DType.INT16: 65536}.get(ifm.dtype, 0)
    return f"it reduces {n} elements" if limit and n > limit else None


@constraint("argmax-depth", "ARG_MAX needs at most 127 input channels", "IFM depth must be less than or equal to 127.")
def _argmax_depth(v: OpView) -> str | None:
    ifm = v.ifm
    return f"{ifm.shape[-1]} channels" if ifm is not None and ifm.shape and ifm.shape[-1] > 127 else None


@constraint("argmax-axis", "ARG_MAX must run over the channels", "Operation must be performed along the depth axis.")
def _argmax_axis(v: OpView) -> str | None:
    ifm = v.ifm
    if ifm is None or not ifm.shape:
        return None
    return None if _axes(v) in ([len(ifm.shape) - 1], []) else f"axis {_axes(v)}"


# --- element-wise and others ----------------------------------------------------------------------------
def _same_quant(a: Tensor, b: Tensor) -> bool:
    qa, qb = a.quant, b.quant
    if qa is None or qb is None:
        return qa is qb
    return np.array_equal(qa.scale, qb.scale) and np.array_equal(qa.zero_point, qb.zero_point)


@constraint(
    "minmax-same-quantization",
    "both inputs must be quantized like the output",
    "Both Input quantization parameters must match OFM quantization parameters",
)
def _minmax_quant(v: OpView) -> str | None:
    ofm = v.ofm
    bad = [t for t in v.inputs if t is not None and ofm is not None and not _same_quant(t, ofm)]
    return f"{_names(bad)} is quantized differently from the output" if bad else None


@constraint("same-shape", "input and output shapes must match", "IFM and OFM shapes must match")
def _same_shape(v: OpView) -> str | None:
    ifm, ofm = v.ifm, v.ofm
    return f"{list(_shape(ifm))} -> {list(_shape(ofm))}" if ifm and ofm and _shape(ifm) != _shape(ofm) else None


def _same_type_in(v: OpView, allowed: tuple[DType, ...]) -> str | None:
    ifm, ofm = v.ifm, v.ofm
    if ifm is None or ofm is None:
        return None
    return None if ifm.dtype == ofm.dtype and ifm.dtype in allowed else f"{ifm.dtype} -> {ofm.dtype}"


@constraint("int8-only", "input and output must both be int8", "IFM and OFM datatypes must match, and must be Int8")
def _int8_only(v: OpView) -> str | None:
    return _same_type_in(v, (DType.INT8,))


@constraint(
    "int8-uint8-only",
    "input and output must both be int8 or both uint8",
    "IFM and OFM datatypes must match, and must be Int8 or UInt8",
)
def _int8_uint8(v: OpView) -> str | None:
    return _same_type_in(v, (DType.INT8, DType.UINT8))


@constraint(
    "int8-int16-only",
    "input and output must both be int8 or both int16",
    "IFM and OFM datatypes must match, and must be Int8 or Int16",
)
def _int8_int16(v: OpView) -> str | None:
    return _same_type_in(v, (DType.INT8, DType.INT16))


@constraint("rsqrt-type", "RSQRT needs an int8 or int16 input", "IFM must be Int8 or Int16")
def _rsqrt_type(v: OpView) -> str | None:
    ifm = v.ifm
    return f"input is {ifm.dtype}" if ifm is not None and ifm.dtype not in (DType.INT8, DType.INT16) else None


@constraint(
    "softmax-size",
    "SOFTMAX needs input width x height below 65,536",
    "The product of IFM width and height must be less than 65536",
)
def _softmax_size(v: OpView) -> str | None:
    ifm = v.ifm
    if ifm is None or not ifm.shape:
        return None
    _, h, w, _ = _padded4(ifm.shape)
    return f"{w}x{h} = {w * h}" if w * h > 65536 else None  # Vela 5.2 takes exactly 65,536 too


@constraint(
    "split-count", "num_splits must match the number of outputs", "num_splits must match the number of outputs."
)
def _split_count(v: OpView) -> str | None:
    n = v.option("num_splits")
    return f"num_splits {n} for {len(v.outputs)} outputs" if n is not None and n != len(v.outputs) else None


@constraint(
    "strided-slice-volume",
    "a strided slice must select a box with positive strides, striding only over height or width",
    "Slice must represent a volume. Stride must be non-negative (and over W or H).",
)
def _strided_slice(v: OpView) -> str | None:
    s, ifm = v.input(3), v.ifm
    if s is None or s.data is None or ifm is None or not ifm.shape:
        return None
    strides = [int(x) for x in np.asarray(s.data).reshape(-1)]
    if any(x <= 0 for x in strides):
        return f"strides {strides}"
    rank = len(strides)
    allowed = {rank - 3, rank - 2}  # H and W of an N,H,W,C (or H,W,C) layout
    strided = [i for i, x in enumerate(strides) if x != 1]
    if any(i not in allowed for i in strided) or v.option("ellipsis_mask") or v.option("new_axis_mask"):
        return f"strides {strides}"
    return None


@constraint("reverse-axis", "REVERSE_V2's axis attribute is not supported", "Axis attribute is not supported.")
def _reverse_axis(v: OpView) -> str | None:
    return None if v.input(1) is None else "it takes an axis"


@constraint("transpose-rank", "TRANSPOSE needs rank at most 8", "Tensor dimension must be <= 8")
def _transpose_rank(v: OpView) -> str | None:
    ifm = v.ifm
    return f"rank {len(ifm.shape)}" if ifm is not None and ifm.shape and len(ifm.shape) > 8 else None


def _perm(v: OpView) -> list[int] | None:
    p = v.input(1)
    return None if p is None or p.data is None else [int(x) for x in np.asarray(p.data).reshape(-1)]


@constraint(
    "transpose-int32",
    "an int32 TRANSPOSE needs rank <= 4 and one of the NHWC, NWHC or NHCW orders within their size limits",
    "IF IFM is Int32:\n  - Rank must be less than or equal to 4\n  - NHWC: C <= 2^16\n"
    "  - NWHC: N == 1, H <= 2^16, W <= 2^16, C <= 2^14\n  - NHCW: N*H <= 2^16, W <= 2^16, C <= 2^16\n"
    "  - Any other permutation vector is unsupported",
)
def _transpose_int32(v: OpView) -> str | None:
    ifm, perm = v.ifm, _perm(v)
    if ifm is None or ifm.dtype != DType.INT32 or perm is None or not ifm.shape:
        return None
    if len(ifm.shape) > 4:
        return f"rank {len(ifm.shape)}"
    n, h, w, c = _padded4(ifm.shape)
    full = list(range(4 - len(perm))) + [p + 4 - len(perm) for p in perm]
    limits: dict[tuple[int, ...], bool] = {
        (0, 1, 2, 3): c <= 2**16,
        (0, 2, 1, 3): n == 1 and h <= 2**16 and w <= 2**16 and c <= 2**14,
        (0, 1, 3, 2): n * h <= 2**16 and w <= 2**16 and c <= 2**16,
    }
    ok = limits.get(tuple(full))
    return None if ok else f"permutation {perm} of shape {list(ifm.shape)}"


@constraint(
    "transpose-int8",
    "an int8/int16 TRANSPOSE must keep every product of N-2 axes within 65,536 (3-D-like swaps: each of H, W, C)",
    "IF IFM is Int8 or Int16\n  - NHWC: no shape constraints\n  - ELSE IF permutation is: NWHC/NHCW/NCWH/NWCH/NCHW "
    "and the tensor is 3D, or higher-rank with all axes outside H/W/C equal to 1:\n"
    "    - (H, W, C) <= (2^16, 2^16, 2^16)\n"
    "  - ELSE:\n    - Product of any N-2 axes in a rank N tensor must be less than or equal to 2^16. For example, for "
    "rank 4: N*H <= 2^16, N*W <= 2^16, N*C <= 2^16, H*W <= 2^16, H*C <= 2^16, W*C <= 2^16.\n",
)
def _transpose_int8(v: OpView) -> str | None:
    ifm, perm = v.ifm, _perm(v)
    if ifm is None or ifm.dtype not in (DType.INT8, DType.INT16) or perm is None or not ifm.shape:
        return None
    shape, rank = list(ifm.shape), len(ifm.shape)
    if perm == list(range(rank)):
        return None
    if rank >= 3 and all(d == 1 for d in shape[:-3]) and perm[: rank - 3] == list(range(rank - 3)):
        return None if all(d <= 2**16 for d in shape[-3:]) else f"shape {shape}"
    from itertools import combinations

    for axes in combinations(range(rank), max(rank - 2, 1)):
        if int(np.prod([shape[a] for a in axes])) > 2**16:
            return f"axes {list(axes)} of shape {shape} hold more than 65,536 elements"
    return None


def _resize_factors(v: OpView) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]] | None:
    ifm, ofm = v.ifm, v.ofm
    if ifm is None or ofm is None or not ifm.shape or not ofm.shape:
        return None
    return _padded4(ifm.shape), _padded4(ofm.shape)


def _resize_rule(v: OpView, half_pixel_2x: bool) -> str | None:
    shapes = _resize_factors(v)
    if shapes is None:
        return None
    (_, ih, iw, _), (_, oh, ow, _) = shapes
    if 0 in (ih, iw) or (ih == iw == 1) or (ih, iw) == (oh, ow):
        return None
    align = bool(v.option("align_corners"))

    def factor(i: int, o: int) -> float:
        return (o - 1) / (i - 1) if align and i > 1 else o / i

    fh, fw = factor(ih, oh), factor(iw, ow)
    if fh != fw:
        if not ((ow == 1 and fw == 1) or (oh == 1 and fh == 1)):
            return f"scales {fw:g}x{fh:g} (WxH)"
        fh = fw = max(fh, fw)
    if half_pixel_2x and v.option("half_pixel_centers"):
        return None if fh == 2 else f"scale {fh:g} with half-pixel centres (needs 2)"
    return None if fh in (2, 4, 8) else f"scale {fh:g} (needs 2, 4 or 8)"


@constraint(
    "resize-bilinear-scale",
    "RESIZE_BILINEAR must scale by 2, 4 or 8 (2 with half-pixel centres), the same in both dimensions",
    "IF not (IFM H == IFM W == 1) AND not IFM Shape == OFM Shape:\n  - IF W Scale-factor != H Scale-factor:\n"
    "    - OFM W or H must be 1, and scaling in the dim that is must also be 1\n  - IF align corners:\n"
    "    - Scale-factor is defined as OFM H-1 / IFM H-1\n  - ELSE:\n    - Scale-factor is defined as OFM H/IFM H\n"
    "  - IF half pixel centers:\n    - Scale-factor needs to be 2x\n  - Else:\n"
    "    - Scale-factor needs to be one of: 2x/4x/8x\n",
)
def _resize_bilinear(v: OpView) -> str | None:
    return _resize_rule(v, half_pixel_2x=True)


@constraint(
    "resize-nearest-scale",
    "RESIZE_NEAREST_NEIGHBOR must scale by 2, 4 or 8, the same in both dimensions",
    "IF NOT (IFM H == IFM W == 1) AND NOT IFM Shape == OFM Shape:\n  - IF W Scale-factor != H Scale-factor:\n"
    "    - OFM W or H must be 1, and scaling in the dim that is must also be 1\n  - IF align corners:\n"
    "    - Scale-factor is defined as OFM H-1 / IFM H-1\n  - ELSE:\n    - Scale-factor is defined as OFM H / IFM H\n"
    "  - Scale-factor must be one of: 2x/4x/8x\n",
)
def _resize_nearest(v: OpView) -> str | None:
    return _resize_rule(v, half_pixel_2x=False)


@constraint(
    "resize-align-half-pixel",
    "align_corners and half_pixel_centers cannot both be set",
    "align_corners and half_pixel_centers are mutually exclusive.",
)
def _resize_exclusive(v: OpView) -> str | None:
    return "both are set" if v.option("align_corners") and v.option("half_pixel_centers") else None


def _u85_factor(v: OpView) -> tuple[float, float] | None:
    shapes = _resize_factors(v)
    if shapes is None:
        return None
    (_, ih, iw, _), (_, oh, ow, _) = shapes
    if 0 in (ih, iw):
        return None
    align = bool(v.option("align_corners"))
    fh = (oh - 1) / (ih - 1) if align and ih > 1 else oh / ih
    fw = (ow - 1) / (iw - 1) if align and iw > 1 else ow / iw
    return fw, fh


@constraint(
    "resize-scale-limit",
    "a resize may scale by at most 1,024 (2,048 with align_corners)",
    "Scale-factor:\n  - IF align_corners:\n    - Scale-factor can be maximum 2048\n  - ELSE:\n"
    "    - Scale-factor can be maximum 1024.",
)
def _resize_limit(v: OpView) -> str | None:
    f = _u85_factor(v)
    limit = 2048 if v.option("align_corners") else 1024
    return f"scale {max(f):g}" if f is not None and max(f) > limit else None


@constraint(
    "resize-power-of-two",
    "RESIZE_BILINEAR must scale by a power of two",
    "Scale-factor must be an integer power of two.",
)
def _resize_pow2(v: OpView) -> str | None:
    f = _u85_factor(v)
    if f is None:
        return None
    bad = [x for x in f if not (x >= 1 and float(x).is_integer() and (int(x) & (int(x) - 1)) == 0)]
    return f"scale {bad[0]:g}" if bad else None


# --- LSTM ------------------------------------------------------------------------------------------------
@constraint(
    "lstm-no-cifg", "the LSTM must compute its input gate (no CIFG)", "Implicit gate calculation is not supported."
)
def _lstm_cifg(v: OpView) -> str | None:
    return "it has no input-gate weights" if v.input(1) is None else None


@constraint("lstm-no-peephole", "peephole LSTMs are not supported", "Peephole variant is not supported.")
def _lstm_peephole(v: OpView) -> str | None:
    return "it has peephole weights" if any(v.input(s) is not None for s in (9, 10, 11)) else None


@constraint("lstm-no-projection", "projection LSTMs are not supported", "Projection is not supported.")
def _lstm_projection(v: OpView) -> str | None:
    return "it has projection weights" if any(v.input(s) is not None for s in (16, 17)) else None


@constraint("lstm-no-normalization", "layer-normalized LSTMs are not supported", "Gate normalization is not supported.")
def _lstm_norm(v: OpView) -> str | None:
    return "it has gate normalization" if any(v.input(s) is not None for s in (20, 21, 22, 23)) else None


# --- Ethos-U85 only ---------------------------------------------------------------------------------------
@constraint(
    "variable-types",
    "variable handles must be RESOURCE and variable data bool or integer",
    'Variable handle tensors must be Resource. Variable data tensors must be one of {"BOOL", "INT16", "INT32", '
    '"INT64", "INT8", "UINT8"}',
)
def _variable_types(v: OpView) -> str | None:
    tensors = [t for t in [*v.inputs, *v.outputs] if t is not None]
    handles = [t for t in tensors if t.dtype == DType.RESOURCE]
    data = [t for t in tensors if t.dtype != DType.RESOURCE]
    if not handles:
        return "no RESOURCE handle"
    bad = [t for t in data if t.dtype not in _FM_TYPES | {DType.BOOL}]
    return f"{_names(bad)} is {bad[0].dtype}" if bad else None


@constraint("gather-axis", "GATHER's axis must equal batch_dims", "axis must be equal to batch_dims")
def _gather_axis(v: OpView) -> str | None:
    axis, batch = v.option("axis", 0), v.option("batch_dims", 0)
    return f"axis {axis}, batch_dims {batch}" if axis != batch else None


@constraint("scatter-shape-constant", "SCATTER_ND's shape must be a constant", "Shape tensor must be constant")
def _scatter_shape(v: OpView) -> str | None:
    s = v.input(2)
    return "its shape is computed at run time" if s is not None and not s.is_constant else None


@constraint("scatter-index-constant", "SCATTER_ND's indices must be a constant", "Index tensor must be constant")
def _scatter_index(v: OpView) -> str | None:
    i = v.input(0)
    return "its indices are computed at run time" if i is not None and not i.is_constant else None


@constraint("scatter-index-channel-1", "SCATTER_ND's indices must have one channel", "Index tensor must have channel=1")
def _scatter_channel(v: OpView) -> str | None:
    i = v.input(0)
    return f"indices have shape {list(_shape(i))}" if i is not None and _shape(i) and _shape(i)[-1] != 1 else None


@constraint("scatter-index-unique", "SCATTER_ND's indices must be unique", "Index tensor elements must be unique")
def _scatter_unique(v: OpView) -> str | None:
    i = v.input(0)
    if i is None or i.data is None:
        return None
    flat = np.asarray(i.data).reshape(-1)
    return "indices repeat" if np.unique(flat).size != flat.size else None


# --- the tables -------------------------------------------------------------------------------------------
_GENERIC_U55 = [
    "dynamic-shape",
    "feature-map-type",
    "constant-shape",
    "has-ifm",
    "has-ofm",
    "no-64-bit",
    "no-32-bit",
    "per-tensor-quantization",
    "zero-points",
    "quantized",
    "positive-scale",
]
_GENERIC_U85 = [
    "dynamic-shape",
    "feature-map-type-bool",
    "constant-shape",
    "has-ifm",
    "has-ofm",
    "per-tensor-quantization",
    "ifm-zero-points",
    "ofm-zero-points",
    "quantized",
    "positive-scale",
]
_WEIGHTED = ["weights-8-bit", "weight-sum", "bias-channel-axis", "bias-constant", "bias-type", "int64-bias-range"]
_MATMUL = ["matmul-reduced-axis", "matmul-ofm-depth", "matmul-int8"]
_UNQUANTIZED = ("quantized", "positive-scale")
_INT32_OK = ("no-32-bit",)
_NO_ZERO_POINT_RANGES = ("ifm-zero-points", "ofm-zero-points")

# op: (extra constraints, generic ones Vela does not check for it) on Ethos-U55/U65
_U55_OPS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "ABS": ([], ()),
    "EXP": ([], ()),
    "HARD_SWISH": ([], ()),
    "LEAKY_RELU": ([], ()),
    "LOGISTIC": ([], ()),
    "TANH": ([], ()),
    "PRELU": ([], ()),
    "RELU": ([], ()),
    "RELU6": ([], ()),
    "RELU_0_TO_1": ([], ()),
    "RELU_N1_TO_1": ([], ()),
    "CONCATENATION": ([], ()),
    "PACK": ([], ()),
    "UNPACK": ([], ()),
    "TILE": ([], ()),
    "SQUARED_DIFFERENCE": ([], ()),
    "ADD": ([], _INT32_OK),
    "SUB": ([], _INT32_OK),
    "MUL": ([], _INT32_OK),
    "NEG": ([], _INT32_OK),
    "RESHAPE": ([], _INT32_OK),
    "SQUEEZE": ([], _INT32_OK),
    "EXPAND_DIMS": ([], (*_INT32_OK, *_UNQUANTIZED)),
    "QUANTIZE": ([], _UNQUANTIZED),
    "ARGMAX": (["stride-1-to-3", "argmax-depth", "argmax-axis"], (*_INT32_OK, "no-64-bit", *_UNQUANTIZED)),
    "AVERAGE_POOL_2D": (["avgpool-kernel", "stride-above-3"], ("zero-points",)),
    "MAX_POOL_2D": (["maxpool-kernel", "stride-above-3"], ()),
    "BATCH_MATMUL": (_MATMUL, _INT32_OK),
    "CONV_2D": ([*_WEIGHTED, "stride-above-3"], ("per-tensor-quantization",)),
    "DEPTHWISE_CONV_2D": ([*_WEIGHTED, "stride-1-to-3"], ("per-tensor-quantization",)),
    "FULLY_CONNECTED": (
        [*_WEIGHTED, "fc-weight-form", "stride-1-to-3", *_MATMUL],
        ("per-tensor-quantization", *_INT32_OK),
    ),
    "TRANSPOSE_CONV": ([*_WEIGHTED, "transpose-conv-shape", "transpose-conv-stride"], ("per-tensor-quantization",)),
    "ELU": (["same-shape", "int8-only"], ()),
    "GELU": (["same-shape", "int8-uint8-only"], ()),
    "LOG": (["same-shape", "int8-int16-only"], ()),
    "MAXIMUM": (["minmax-same-quantization"], ()),
    "MINIMUM": (["minmax-same-quantization"], ()),
    "MEAN": (["constant-params", "mean-batch-1", "mean-depth", "mean-axis-size", "mean-type", "mean-elements"], ()),
    "MIRROR_PAD": (["constant-params", "params-int"], (*_UNQUANTIZED, *_INT32_OK)),
    "PAD": (["constant-params", "params-int"], _UNQUANTIZED),
    "PADV2": (["constant-params", "params-int"], _UNQUANTIZED),
    "REDUCE_MAX": (["stride-1-to-3"], ()),
    "REDUCE_MIN": (["stride-1-to-3"], ()),
    "SUM": (["stride-1-to-3"], _INT32_OK),
    "RESIZE_BILINEAR": (["resize-bilinear-scale"], ("zero-points",)),
    "RESIZE_NEAREST_NEIGHBOR": (["resize-nearest-scale"], ("zero-points",)),
    "REVERSE_V2": (["reverse-axis"], ()),
    "RSQRT": (["rsqrt-type"], ()),
    "SLICE": (["constant-params"], ()),
    "SOFTMAX": (["softmax-size"], ()),
    "SPLIT": (["split-count"], ()),
    "SPLIT_V": (["split-count"], ()),
    "STRIDED_SLICE": (["constant-params", "strided-slice-volume"], ()),
    "TRANSPOSE": (
        ["constant-params", "transpose-rank", "transpose-int32", "transpose-int8"],
        (*_INT32_OK, *_UNQUANTIZED),
    ),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": (
        ["lstm-no-cifg", "lstm-no-peephole", "lstm-no-projection", "lstm-no-normalization"],
        ("zero-points",),
    ),
}

_U85_CHANGES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "ARGMAX": ([], _UNQUANTIZED),
    "AVERAGE_POOL_2D": (["avgpool-kernel"], ("ifm-zero-points", "ofm-zero-points")),
    "MAX_POOL_2D": (["maxpool-kernel"], ()),
    "BATCH_MATMUL": ([], ()),
    "REDUCE_MAX": ([], ()),
    "REDUCE_MIN": ([], ()),
    "SUM": ([], ()),
    "REVERSE_V2": ([], ()),
    "EXPAND_DIMS": ([], _UNQUANTIZED),
    "QUANTIZE": ([], _UNQUANTIZED),
    "CONV_2D": ([*_WEIGHTED], ("per-tensor-quantization",)),
    "DEPTHWISE_CONV_2D": ([*_WEIGHTED], ("per-tensor-quantization",)),
    "FULLY_CONNECTED": ([*_WEIGHTED, "fc-weight-form"], ("per-tensor-quantization",)),
    "TRANSPOSE_CONV": ([*_WEIGHTED, "transpose-conv-shape"], ("per-tensor-quantization",)),
    "TRANSPOSE": (["constant-params", "transpose-rank"], _UNQUANTIZED),
    "RESIZE_BILINEAR": (
        ["resize-align-half-pixel", "resize-scale-limit", "resize-power-of-two"],
        ("ifm-zero-points", "ofm-zero-points"),
    ),
    "RESIZE_NEAREST_NEIGHBOR": (["resize-align-half-pixel", "resize-scale-limit"], _NO_ZERO_POINT_RANGES),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": (
        ["lstm-no-cifg", "lstm-no-peephole", "lstm-no-projection", "lstm-no-normalization"],
        ("ifm-zero-points", "ofm-zero-points"),
    ),
    "DIV": ([], ("ifm-zero-points", "ofm-zero-points")),
    "CAST": ([], ()),
    "SELECT": ([], _UNQUANTIZED),
    "SELECT_V2": ([], _UNQUANTIZED),
    "EQUAL": ([], ()),
    "NOT_EQUAL": ([], ()),
    "GREATER": ([], ()),
    "GREATER_EQUAL": ([], ()),
    "LESS": ([], ()),
    "LESS_EQUAL": ([], ()),
    "LOGICAL_AND": ([], ()),
    "LOGICAL_OR": ([], ()),
    "LOGICAL_NOT": ([], ()),
    "REDUCE_ALL": ([], _UNQUANTIZED),
    "REDUCE_ANY": ([], _UNQUANTIZED),
    "GATHER": (["gather-axis"], _UNQUANTIZED),
    "SCATTER_ND": (
        ["scatter-shape-constant", "scatter-index-constant", "scatter-index-channel-1", "scatter-index-unique"],
        _UNQUANTIZED,
    ),
    "ASSIGN_VARIABLE": (["variable-types"], (*_UNQUANTIZED, "feature-map-type-bool", "has-ofm", "constant-shape")),
    "READ_VARIABLE": (["variable-types"], (*_UNQUANTIZED, "feature-map-type-bool", "has-ifm", "constant-shape")),
}

_U85_RENAMES = {"weight-sum": "weight-sum-u85", "int64-bias-range": "int64-bias-range-u85"}


def _build(
    generic: list[str], ops: dict[str, tuple[list[str], tuple[str, ...]]], renames: dict[str, str]
) -> dict[str, list[Constraint]]:
    table = {}
    for op, (extra, skipped) in ops.items():
        names = [g for g in generic if g not in skipped] + [renames.get(e, e) for e in extra]
        table[op] = [CONSTRAINTS[n] for n in names]
    return table


_U55_TABLE = _build(_GENERIC_U55, _U55_OPS, {})
_U85_OPS = {op: spec for op, spec in _U55_OPS.items()} | _U85_CHANGES
_U85_OPS["ELU"] = (["same-shape", "int8-only"], ())
_U85_OPS["MEAN"] = _U55_OPS["MEAN"]
for _op in ("MIRROR_PAD", "PAD", "PADV2"):
    _U85_OPS[_op] = (["constant-params", "params-int"], _UNQUANTIZED)

VELA_OP_NAMES = {"ARG_MAX": "ARGMAX"}
"""TFLite builtin names that Vela's table spells differently."""

TABLES: dict[str, dict[str, list[Constraint]]] = {
    "EthosU55": _U55_TABLE,
    "EthosU65": _U55_TABLE,
    "EthosU85": _build(_GENERIC_U85, _U85_OPS, _U85_RENAMES),
}


def npu_reasons(graph: Graph, op: Op, core: str) -> list[str]:
    """Why Vela leaves `op` on the CPU of an Ethos-U `core` (EthosU55/65/85); empty when the NPU takes it."""
    table = TABLES[core]
    name = VELA_OP_NAMES.get(op.type, op.type)
    if name not in table:
        what = f"custom op '{op.custom_code}'" if op.type == "CUSTOM" else op.type
        return [f"{what} is not an operator Vela runs on {core.replace('EthosU', 'Ethos-U')}"]
    view = OpView(graph, op, CORES[core])
    reasons = []
    for c in table[name]:
        detail = c.check(view)
        if detail is not None:
            reasons.append(f"{c.text} ({detail})")
    return reasons
