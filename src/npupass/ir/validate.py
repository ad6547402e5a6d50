"""Semantic validation of a Model: the invariants every pass and backend may rely on.

`check` (ir/check.py) says the graph is well-formed; this module says each op makes sense for
TFLite: input/output counts and types, its options table and option values, weight and bias
shapes consistent with the options, shapes that shape inference can propagate, and sane
quantization. The rules come from one declarative table, SIGNATURES (the schema's options tables
and the reference kernels' documented constraints); ops missing from it get the per-tensor
checks only. A violation is one line naming the op and the rule:

    CONV_2D 'x': weight [8,3,3,0] has a zero dimension

The frontends run it once after import and the PassManager after every pass, so a malformed model
is refused before any pass runs, and a pass that breaks an invariant is named.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from npupass.errors import ModelFormatError, UnsupportedFeatureError
from npupass.ir.graph import Graph, Model, Op, Tensor
from npupass.ir.types import DType

FLOATS = frozenset({DType.FLOAT32, DType.FLOAT16})
QUANTIZED = frozenset({DType.INT8, DType.UINT8, DType.INT16})
ACTIVATIONS = FLOATS | QUANTIZED
WEIGHTS = frozenset({DType.FLOAT32, DType.FLOAT16, DType.INT8, DType.UINT8, DType.INT4, DType.INT16})
BIASES = frozenset({DType.FLOAT32, DType.FLOAT16, DType.INT32, DType.INT64})
PADDINGS = ("SAME", "VALID")
ACTIVATION_FUNCTIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT")
# Relative tolerance of bias scale = input scale x weight scale. LiteRT's per-tensor kernels allow 1e-6;
# its per-channel kernels do not check at all, so a valid model may be off by float rounding of either side.
BIAS_SCALE_RTOL = 1e-2
_INT_RANGES = {
    DType.INT8: (-128, 127),
    DType.UINT8: (0, 255),
    DType.INT16: (-32768, 32767),
    DType.UINT16: (0, 65535),
    DType.INT4: (-8, 7),
    DType.UINT4: (0, 15),
    DType.INT32: (-(2**31), 2**31 - 1),
}


MAX_STRIDE = 32767  # strides, dilations, pool sizes: LiteRT keeps them in int16 (depthwise_conv.cc)


@functools.cache
def _option_defaults(options_type: str) -> dict[str, object]:
    from npupass.tflite_schema import default_options

    try:
        return default_options(options_type)
    except (AttributeError, UnsupportedFeatureError):
        return {}


class InvalidModelError(ModelFormatError):
    """The model is well-formed but an op violates its signature; `problems` lists every violation."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"invalid model: {problems[0]}{more}")


Rule = Callable[["OpView"], str | None]


@dataclass(frozen=True)
class Signature:
    """What one op type needs: input/output counts (slots, optional ones included), the options table
    it must carry, option values (enums, integers >= 1), the input types it computes in, and the
    named shape rules that check weights, biases and shapes."""

    inputs: tuple[int, int]
    outputs: tuple[int, int] = (1, 1)
    options: str | None = None
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    positive: tuple[str, ...] = ()
    types: frozenset[DType] | None = None
    """Allowed types of input 0 (None: any)."""
    rules: tuple[Rule, ...] = ()


@dataclass
class OpView:
    """An op with its tensors, as the rules see it; `problem(text)` names the op."""

    graph: Graph
    op: Op
    inputs: list[Tensor | None]
    outputs: list[Tensor]

    def problem(self, text: str) -> str:
        name = self.op.name or (self.outputs[0].name if self.outputs else "")
        return f"{self.op.type} '{name}': {text}" if name else f"{self.op.type}: {text}"

    def input(self, slot: int) -> Tensor | None:
        return self.inputs[slot] if slot < len(self.inputs) else None

    def option(self, key: str, default: object = None) -> object:
        return self.op.options.get(key, default)


# --- helpers ------------------------------------------------------------------------------------------
def _shape(t: Tensor | None) -> tuple[int, ...] | None:
    """A shape the rules can reason about: known, with no dynamic (-1) dimension in its signature.
    A rank-0 activation counts as unknown: converters write [] where they record no shape."""
    if t is None or t.shape is None or (not t.shape and t.data is None):
        return None
    if t.shape_signature is not None and any(d < 0 for d in t.shape_signature):
        return None
    return t.shape


def _show(shape: tuple[int, ...] | None) -> str:
    return "?" if shape is None else "[" + ",".join(map(str, shape)) + "]"


def _non_finite(t: Tensor | None) -> bool:
    """Whether `t` is a float constant holding NaN or infinity."""
    return t is not None and t.data is not None and t.dtype in FLOATS and not np.isfinite(t.data).all()


def _types(types: frozenset[DType]) -> str:
    return ", ".join(sorted(map(str, types)))


def _affine(t: Tensor | None) -> bool:
    return t is not None and t.quant is not None and t.quant.is_affine


def _int_option(v: OpView, key: str) -> int:
    value = v.option(key, 1)
    return value if isinstance(value, int) else 0


def _spatial(size: int, kernel: int, stride: int, dilation: int, padding: object) -> int:
    """TFLite's output size of one spatial dimension (ComputeOutSize)."""
    effective = (kernel - 1) * dilation + 1
    if padding == "SAME":
        return (size + stride - 1) // stride
    return (size - effective + stride) // stride


# --- shape rules --------------------------------------------------------------------------------------
def _weighted(weight_rank: int, out_axis: int) -> Rule:
    """Weight of `weight_rank` with no zero dimension, its per-axis quantization on `out_axis`,
    bias of one value per output channel, output channels as the weight says."""

    def rule(v: OpView) -> str | None:
        w = v.input(1)
        if w is None:
            return v.problem("has no weight (input 1)")
        ws = _shape(w)
        if ws is None:
            return None
        if len(ws) != weight_rank:
            return v.problem(f"weight {_show(ws)} has rank {len(ws)}, expected {weight_rank}")
        if 0 in ws:
            return v.problem(f"weight {_show(ws)} has a zero dimension")
        if w.dtype not in WEIGHTS:
            return v.problem(f"weight '{w.name}' is {w.dtype}, not one of {_types(WEIGHTS)}")
        x, out_t = v.input(0), v.outputs[0] if v.outputs else None
        if x is not None and out_t is not None and out_t.dtype != x.dtype:
            return v.problem(f"output type {out_t.dtype} differs from input type {x.dtype}")
        bias_t = v.input(2)
        if x is not None and bias_t is not None:
            allowed = FLOATS if x.dtype in FLOATS else frozenset({DType.INT32, DType.INT64})
            if bias_t.dtype not in allowed:
                return v.problem(f"bias '{bias_t.name}' is {bias_t.dtype} for {x.dtype} input, not {_types(allowed)}")
        for const in (w, bias_t):
            if _non_finite(const):
                assert const is not None
                return v.problem(f"constant '{const.name}' holds values that are not finite numbers")
        channels = ws[out_axis]
        if w.quant is not None and w.quant.per_axis and w.quant.axis != out_axis and w.shape is not None:
            return v.problem(f"weight is quantized per channel along axis {w.quant.axis}, expected {out_axis}")
        bias = v.input(2)
        bs = _shape(bias)
        if bias is not None and bs is not None and (len(bs) != 1 or bs[0] != channels):
            return v.problem(f"bias {_show(bs)} does not hold one value per output channel ({channels})")
        out = _shape(v.outputs[0]) if v.outputs else None
        if out and out[-1] != channels:
            return v.problem(f"output {_show(out)} has {out[-1]} channels, the weight {_show(ws)} makes {channels}")
        return _quantized_weights(v, w, bias, channels)

    return rule


def _quantized_weights(v: OpView, w: Tensor, bias: Tensor | None, channels: int) -> str | None:
    """A quantized op: input, weight and output quantized; bias scale = input scale x weight scale."""
    x = v.input(0)
    if x is not None and x.dtype in QUANTIZED and not _affine(x):
        return v.problem(f"input '{x.name}' is {x.dtype} without quantization scales")
    if x is None or x.dtype not in QUANTIZED:
        return None
    if not _affine(w):
        return v.problem(f"input is quantized {x.dtype} but weight '{w.name}' ({w.dtype}) is not quantized")
    if v.outputs and not _affine(v.outputs[0]):
        return v.problem(f"input is quantized {x.dtype} but output '{v.outputs[0].name}' is not quantized")
    assert w.quant is not None and x.quant is not None
    if w.quant.scale.size not in (1, channels):
        return v.problem(f"weight has {w.quant.scale.size} scales for {channels} output channels")
    if w.dtype == DType.INT8 and w.quant.per_axis and w.quant.zero_point.any():
        return v.problem("int8 per-channel weight has a non-zero zero point (TFLite's int8 kernels need 0)")
    if bias is None or bias.dtype not in (DType.INT32, DType.INT64) or not _affine(bias):
        return None
    assert bias.quant is not None
    if bias.quant.zero_point.any():
        return v.problem(f"bias '{bias.name}' has a non-zero zero point (TFLite's kernels need 0)")
    if bias.quant.scale.size not in (1, channels):
        return None  # a layout the reader reports (e.g. a rank-1 bias quantized along axis 3)
    x_scale, ws, bs = float(x.quant.scale[0]), w.quant.scale, bias.quant.scale
    if ws.size == 1 and bs.size == 1:  # the common per-tensor case, without numpy's per-call cost
        expected_1, actual_1 = x_scale * float(ws[0]), float(bs[0])
        if abs(actual_1 - expected_1) > BIAS_SCALE_RTOL * abs(expected_1):
            return v.problem(f"bias scale {actual_1:.6g} is not input scale x weight scale ({expected_1:.6g})")
        return None
    n = max(ws.size, bs.size)
    expected = x_scale * np.broadcast_to(ws.astype(np.float64), (n,))
    actual = np.broadcast_to(bs.astype(np.float64), (n,))
    off = np.abs(actual - expected) > BIAS_SCALE_RTOL * np.abs(expected)
    if off.any():
        i = int(np.argmax(off))
        return v.problem(f"bias scale {actual[i]:.6g} is not input scale x weight scale ({expected[i]:.6g})")
    return None


def _spatial_rule(kernel_from_weight: bool) -> Rule:
    """NHWC input and output; output height/width as kernel, strides, dilation and padding make them."""

    def rule(v: OpView) -> str | None:
        x, out = _shape(v.input(0)), _shape(v.outputs[0]) if v.outputs else None
        if x is not None and len(x) != 4:
            return v.problem(f"input {_show(x)} is not 4-D (NHWC)")
        if x is not None and 0 in x:
            return v.problem(f"input {_show(x)} has a zero dimension")
        if out is not None and len(out) != 4:
            return v.problem(f"output {_show(out)} is not 4-D (NHWC)")
        if kernel_from_weight:
            ws = _shape(v.input(1))
            if ws is None or len(ws) != 4:
                return None
            kh, kw = ws[1], ws[2]
            dh, dw = _int_option(v, "dilation_h_factor"), _int_option(v, "dilation_w_factor")
        else:
            kh, kw = _int_option(v, "filter_height"), _int_option(v, "filter_width")
            dh = dw = 1
        if x is None or out is None:
            return None
        if out[0] != x[0]:
            return v.problem(f"output {_show(out)} has another batch than input {_show(x)}")
        sh, sw = _int_option(v, "stride_h"), _int_option(v, "stride_w")
        padding = v.option("padding", "SAME")
        expected = (_spatial(x[1], kh, sh, dh, padding), _spatial(x[2], kw, sw, dw, padding))
        if min(expected) < 1 and min(x[1:3]) > 0:
            return v.problem(f"kernel {kh}x{kw} (dilation {dh}x{dw}) is larger than the input {_show(x)} ({padding})")
        if tuple(out[1:3]) != expected and min(x[1:3]) > 0:
            return v.problem(
                f"output {_show(out)} should be {expected[0]}x{expected[1]} for input {_show(x)}, "
                f"kernel {kh}x{kw}, strides {sh}x{sw}, dilation {dh}x{dw}, padding {padding}"
            )
        return None

    return rule


def _conv_channels(v: OpView) -> str | None:
    x, ws = _shape(v.input(0)), _shape(v.input(1))
    if x is None or ws is None or len(x) != 4 or len(ws) != 4 or 0 in ws:
        return None
    if x[3] % ws[3]:
        return v.problem(f"input has {x[3]} channels, not a multiple of the weight's {ws[3]} {_show(ws)}")
    return None


def _depthwise_channels(v: OpView) -> str | None:
    x, ws = _shape(v.input(0)), _shape(v.input(1))
    if x is None or ws is None or len(x) != 4 or len(ws) != 4 or 0 in ws:
        return None
    if ws[0] != 1:
        return v.problem(f"weight {_show(ws)} must have 1 as its first dimension")
    if x[3] and ws[3] % x[3]:
        return v.problem(f"weight {_show(ws)} has {ws[3]} channels, not a multiple of the input's {x[3]}")
    return None


def _fc_input(v: OpView) -> str | None:
    x, ws = v.input(0), _shape(v.input(1))
    if x is None or ws is None or len(ws) != 2 or x.shape is None:
        return None
    n = x.num_elements or 0
    if _shape(x) is not None and n and n % ws[1]:
        return v.problem(f"input {_show(x.shape)} cannot be rows of {ws[1]} values for weight {_show(ws)}")
    return None


def _pool_channels(v: OpView) -> str | None:
    x, out = _shape(v.input(0)), _shape(v.outputs[0]) if v.outputs else None
    if x is not None and out is not None and len(x) == len(out) == 4 and x[3] != out[3]:
        return v.problem(f"output {_show(out)} has other channels than input {_show(x)}")
    return None


def _broadcast(v: OpView) -> str | None:
    """Binary elementwise ops: inputs of one type whose shapes broadcast to the output's."""
    a, b = v.input(0), v.input(1)
    if a is None or b is None:
        return None
    if a.dtype != b.dtype:
        return v.problem(f"inputs have different types ({a.dtype}, {b.dtype})")
    sa, sb = _shape(a), _shape(b)
    if sa is None or sb is None:
        return None
    try:
        shape = np.broadcast_shapes(sa, sb)
    except ValueError:
        return v.problem(f"input shapes {_show(sa)} and {_show(sb)} do not broadcast")
    out = _shape(v.outputs[0]) if v.outputs else None
    if out is not None and out and tuple(out) != tuple(shape):
        return v.problem(f"output {_show(out)} is not the broadcast shape {_show(tuple(shape))} of the inputs")
    return None


def _add_scales(v: OpView) -> str | None:
    """int8/uint8 ADD/SUB: both inputs go to twice the larger input scale at a left shift of 20, and the
    way back to the output must be a multiplier below 1 (add.cc: QuantizeMultiplierSmallerThanOneExp)."""
    a, b, out = v.input(0), v.input(1), v.outputs[0] if v.outputs else None
    if a is None or b is None or out is None or a.dtype not in (DType.INT8, DType.UINT8):
        return None
    if not (_affine(a) and _affine(b) and _affine(out)):
        return None
    assert a.quant is not None and b.quant is not None and out.quant is not None
    twice_max = 2.0 * max(float(a.quant.scale[0]), float(b.quant.scale[0]))
    if twice_max >= (1 << 20) * float(out.quant.scale[0]):
        scale = float(out.quant.scale[0])
        return v.problem(f"input scale {twice_max / 2:.6g} is too large for output scale {scale:.6g}")
    return None


def _same_shape(v: OpView) -> str | None:
    """Elementwise unary ops: output shape = input shape."""
    x, out = _shape(v.input(0)), _shape(v.outputs[0]) if v.outputs else None
    if x is not None and out is not None and x and out and x != out:
        return v.problem(f"output {_show(out)} differs from input {_show(x)}")
    return None


def _same_type(v: OpView) -> str | None:
    x = v.input(0)
    if x is not None and v.outputs and v.outputs[0].dtype != x.dtype:
        return v.problem(f"output type {v.outputs[0].dtype} differs from input type {x.dtype}")
    return None


def _quantized_io(v: OpView) -> str | None:
    """Integer activations must carry their quantization on both sides."""
    x = v.input(0)
    if x is None or x.dtype not in QUANTIZED or not _affine(x):
        return None
    for out in v.outputs:
        if out.dtype in QUANTIZED and not _affine(out):
            return v.problem(f"input is quantized {x.dtype} but output '{out.name}' is not quantized")
    return None


def _finite_constant(v: OpView) -> str | None:
    """A constant that is quantized (a QAT weight) must hold finite numbers: they become integers."""
    x = v.input(0)
    if _non_finite(x):
        assert x is not None
        return v.problem(f"constant '{x.name}' holds values that are not finite numbers")
    return None


def _quantize(v: OpView) -> str | None:
    out = v.outputs[0] if v.outputs else None
    if out is None:
        return None
    allowed = QUANTIZED | {DType.INT4, DType.INT32}  # TFLM requantizes int16 to int32 (keyword_scrambled)
    if out.dtype not in allowed:
        return v.problem(f"output '{out.name}' is {out.dtype}, not one of {_types(allowed)}")
    if not _affine(out):
        return v.problem(f"output '{out.name}' has no quantization")
    return _same_shape(v)


def _dequantize(v: OpView) -> str | None:
    x = v.input(0)
    out = v.outputs[0] if v.outputs else None
    if x is None or out is None:
        return None
    if not out.dtype.is_float:
        return v.problem(f"output '{out.name}' is {out.dtype}, not a float type")
    if x.dtype not in FLOATS and not _affine(x):
        return v.problem(f"input '{x.name}' ({x.dtype}) has no quantization")
    return _same_shape(v)


def _fake_quant(v: OpView) -> str | None:
    low, high, bits = v.option("min", 0.0), v.option("max", 0.0), v.option("num_bits", 8)
    if not isinstance(low, float | int) or not isinstance(high, float | int) or not math.isfinite(high - low):
        return v.problem("min/max are not finite numbers")
    if not low <= 0.0 <= high or low == high:
        return v.problem(f"range [{low:g}, {high:g}] does not contain 0 with min < max")
    if not isinstance(bits, int) or not 2 <= bits <= 16:
        return v.problem(f"num_bits {bits} is not within 2..16")
    return None


def _concatenation(v: OpView) -> str | None:
    shapes = [_shape(t) for t in v.inputs]
    out = _shape(v.outputs[0]) if v.outputs else None
    if any(s is None for s in shapes) or out is None:
        return None
    rank = len(out)
    axis = v.option("axis", 0)
    if not isinstance(axis, int) or not -rank <= axis < max(rank, 1):
        return v.problem(f"axis {axis} is outside rank {rank}")
    axis %= max(rank, 1)
    total = 0
    for t, s in zip(v.inputs, shapes, strict=True):
        assert s is not None and t is not None
        if len(s) != rank or any(a != b for i, (a, b) in enumerate(zip(s, out, strict=True)) if i != axis):
            return v.problem(f"input '{t.name}' {_show(s)} does not fit output {_show(out)} along axis {axis}")
        total += s[axis] if rank else 0
    if rank and total != out[axis]:
        return v.problem(f"inputs add up to {total} along axis {axis}, the output {_show(out)} has {out[axis]}")
    return None


def _reshape(v: OpView) -> str | None:
    x, out = v.input(0), v.outputs[0] if v.outputs else None
    if x is None or out is None or _shape(x) is None or _shape(out) is None:
        return None
    if x.num_elements != out.num_elements:
        return v.problem(f"input {_show(x.shape)} and output {_show(out.shape)} differ in element count")
    return None


def _pad(v: OpView) -> str | None:
    x, pads, out = _shape(v.input(0)), v.input(1), _shape(v.outputs[0]) if v.outputs else None
    if pads is None or pads.data is None or pads.data.dtype.kind not in "iu" or x is None:
        return None
    if pads.data.shape != (len(x), 2):
        return v.problem(f"paddings {_show(pads.data.shape)} should be [{len(x)},2] for input {_show(x)}")
    if np.any(pads.data < 0):
        return v.problem("paddings are negative")
    expected = tuple(int(d + a + b) for d, (a, b) in zip(x, pads.data.tolist(), strict=True))
    if out is not None and tuple(out) != expected:
        return v.problem(f"output {_show(out)} should be {_show(expected)} for input {_show(x)} with its paddings")
    return None


def _reduce_axes(v: OpView) -> str | None:
    x, axes = _shape(v.input(0)), v.input(1)
    if x is None or axes is None or axes.data is None or axes.data.dtype.kind not in "iu":
        return None
    rank = len(x)
    bad = [int(a) for a in axes.data.reshape(-1) if not -rank <= int(a) < max(rank, 1)]
    if bad:
        return v.problem(f"axis {bad[0]} is outside input {_show(x)}")
    return None


def _batch_matmul(v: OpView) -> str | None:
    """The contracted dimensions agree (after adj_x / adj_y)."""
    a, b = _shape(v.input(0)), _shape(v.input(1))
    if a is None or b is None or len(a) < 2 or len(b) < 2:
        return None
    ka = a[-2] if v.option("adj_x", False) else a[-1]
    kb = b[-1] if v.option("adj_y", False) else b[-2]
    if ka != kb:
        return v.problem(f"inputs {_show(a)} and {_show(b)} contract {ka} against {kb} values")
    return None


def _softmax(v: OpView) -> str | None:
    beta = v.option("beta", 1.0)
    if not isinstance(beta, float | int) or not math.isfinite(beta):
        return v.problem("beta is not a finite number")
    return _same_shape(v)


def _batch_norm(v: OpView) -> str | None:
    x = _shape(v.input(0))
    eps = v.option("epsilon", 0.0)
    if not isinstance(eps, float | int) or not math.isfinite(eps) or eps < 0:
        return v.problem(f"epsilon {eps} is not a finite number >= 0")
    for slot, what in ((1, "gamma"), (2, "beta"), (3, "mean"), (4, "variance")):
        s = _shape(v.input(slot))
        if x and s is not None and s != (x[-1],):
            return v.problem(f"{what} {_show(s)} is not one value per channel ({x[-1]})")
        t = v.input(slot)
        if t is not None and t.data is not None and t.dtype in FLOATS and not np.isfinite(t.data).all():
            return v.problem(f"{what} holds values that are not finite numbers")
    var = v.input(4)
    if (
        var is not None
        and var.data is not None
        and var.dtype in FLOATS
        and (var.data.astype(np.float64) + eps <= 0).any()
    ):
        return v.problem("variance + epsilon is not positive everywhere (the fold divides by its square root)")
    return None


def _densify(v: OpView) -> str | None:
    x = v.input(0)
    if x is None or x.data is None or x.sparsity is None:
        return v.problem("input is not a sparse constant")
    return None


# --- the table ------------------------------------------------------------------------------------------
_CONV_ENUMS: dict[str, tuple[str, ...]] = {"padding": PADDINGS, "fused_activation_function": ACTIVATION_FUNCTIONS}
_ACT_ENUM: dict[str, tuple[str, ...]] = {"fused_activation_function": ACTIVATION_FUNCTIONS}
_BINARY = Signature((2, 2), options=None, types=None, rules=(_broadcast, _quantized_io))
_UNARY = Signature((1, 1), types=ACTIVATIONS, rules=(_same_shape, _same_type, _quantized_io))

SIGNATURES: dict[str, Signature] = {
    "CONV_2D": Signature(
        (2, 3),
        options="Conv2DOptions",
        enums=_CONV_ENUMS,
        positive=("stride_w", "stride_h", "dilation_w_factor", "dilation_h_factor"),
        types=ACTIVATIONS,
        rules=(_weighted(4, 0), _conv_channels, _spatial_rule(True)),
    ),
    "DEPTHWISE_CONV_2D": Signature(
        (2, 3),
        options="DepthwiseConv2DOptions",
        enums=_CONV_ENUMS,
        positive=("stride_w", "stride_h", "dilation_w_factor", "dilation_h_factor"),
        types=ACTIVATIONS,
        rules=(_weighted(4, 3), _depthwise_channels, _spatial_rule(True)),
    ),
    "FULLY_CONNECTED": Signature(
        (2, 3),
        options="FullyConnectedOptions",
        enums={**_ACT_ENUM, "weights_format": ("DEFAULT", "SHUFFLED4x16INT8")},
        types=ACTIVATIONS,
        rules=(_weighted(2, 0), _fc_input),
    ),
    "TRANSPOSE_CONV": Signature(
        (3, 4),
        options="TransposeConvOptions",
        enums=_CONV_ENUMS,
        positive=("stride_w", "stride_h"),
    ),
    "AVERAGE_POOL_2D": Signature(
        (1, 1),
        options="Pool2DOptions",
        enums=_CONV_ENUMS,
        positive=("stride_w", "stride_h", "filter_width", "filter_height"),
        types=ACTIVATIONS,
        rules=(_spatial_rule(False), _pool_channels, _same_type, _quantized_io),
    ),
    "MAX_POOL_2D": Signature(
        (1, 1),
        options="Pool2DOptions",
        enums=_CONV_ENUMS,
        positive=("stride_w", "stride_h", "filter_width", "filter_height"),
        types=ACTIVATIONS,
        rules=(_spatial_rule(False), _pool_channels, _same_type, _quantized_io),
    ),
    "ADD": Signature((2, 2), options="AddOptions", enums=_ACT_ENUM, rules=(*_BINARY.rules, _add_scales)),
    "SUB": Signature((2, 2), options="SubOptions", enums=_ACT_ENUM, rules=(*_BINARY.rules, _add_scales)),
    "MUL": Signature((2, 2), options="MulOptions", enums=_ACT_ENUM, rules=_BINARY.rules),
    "DIV": Signature((2, 2), options="DivOptions", enums=_ACT_ENUM, rules=_BINARY.rules),
    "MAXIMUM": _BINARY,
    "MINIMUM": _BINARY,
    "SQUARED_DIFFERENCE": _BINARY,
    "RELU": _UNARY,
    "RELU6": _UNARY,
    "RELU_N1_TO_1": _UNARY,
    "LOGISTIC": _UNARY,
    "TANH": _UNARY,
    "HARD_SWISH": _UNARY,
    "LEAKY_RELU": Signature((1, 1), options="LeakyReluOptions", types=ACTIVATIONS, rules=_UNARY.rules),
    "BATCH_MATMUL": Signature((2, 2), options="BatchMatMulOptions", rules=(_batch_matmul,)),
    "SOFTMAX": Signature((1, 1), options="SoftmaxOptions", types=ACTIVATIONS, rules=(_softmax, _quantized_io)),
    "QUANTIZE": Signature((1, 1), rules=(_quantize, _finite_constant)),
    "DEQUANTIZE": Signature((1, 1), rules=(_dequantize, _finite_constant)),
    "FAKE_QUANT": Signature((1, 1), options="FakeQuantOptions", rules=(_fake_quant, _same_shape, _finite_constant)),
    "CONCATENATION": Signature(
        (1, 10_000), options="ConcatenationOptions", enums=_ACT_ENUM, rules=(_concatenation, _quantized_io)
    ),
    "RESHAPE": Signature((1, 2), rules=(_reshape,)),
    "PAD": Signature((2, 3), rules=(_pad,)),
    "MEAN": Signature((2, 2), options="ReducerOptions", rules=(_reduce_axes, _quantized_io)),
    "SUM": Signature((2, 2), options="ReducerOptions", rules=(_reduce_axes,)),
    "BATCH_NORM": Signature((5, 5), rules=(_batch_norm,)),
    "DENSIFY": Signature((1, 1), rules=(_densify,)),
}


# Input and output counts of more ops (the reference kernels' NumInputs/NumOutputs checks): an op code
# changed under an op's tensors is refused here instead of by the interpreter after compiling.
_ARITY: dict[tuple[int, int, int, int], tuple[str, ...]] = {
    (1, 1, 1, 1): (
        "ABS", "CEIL", "COS", "EXP", "FLOOR", "LOG", "NEG", "RSQRT", "SIN", "SQRT", "SQUARE", "ELU", "GELU",
        "LOG_SOFTMAX", "L2_NORMALIZATION", "LOGICAL_NOT", "ROUND", "SIGN", "ZEROS_LIKE", "CAST", "SHAPE", "RANK",
        "LOCAL_RESPONSE_NORMALIZATION", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "SQUEEZE", "RELU_0_TO_1",
    ),
    (2, 2, 1, 1): (
        "POW", "FLOOR_DIV", "FLOOR_MOD", "EQUAL", "NOT_EQUAL", "LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL",
        "LOGICAL_AND", "LOGICAL_OR", "PRELU", "TRANSPOSE", "GATHER", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD",
        "REDUCE_ANY", "ARG_MAX", "ARG_MIN", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "EXPAND_DIMS", "TILE",
        "BROADCAST_TO", "MIRROR_PAD", "FILL", "GATHER_ND",
    ),
    (3, 3, 1, 1): ("SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "PADV2", "SLICE", "SELECT", "SELECT_V2"),
    (4, 4, 1, 1): ("STRIDED_SLICE",),
}  # fmt: skip
for (_in_min, _in_max, _out_min, _out_max), _names in _ARITY.items():
    for _name in _names:
        SIGNATURES.setdefault(_name, Signature((_in_min, _in_max), (_out_min, _out_max)))


# --- per-tensor rules -------------------------------------------------------------------------------------
def tensor_problem(t: Tensor) -> str | None:
    """Quantization and sparsity of one tensor: finite scales > 0, zero points within the type,
    sparse storage whose indices stay inside the tensor."""
    q = t.quant
    if q is not None and q.is_affine:
        scale, zp = q.scale, q.zero_point
        if scale.size == 1:  # per-tensor: plain floats, numpy's per-call cost adds up on 10,000-op graphs
            first = float(scale[0])
            if not (first > 0 and math.isfinite(first)):
                return f"tensor '{t.name}': quantization scale {first:g} is not a finite number > 0"
        elif not (np.isfinite(scale).all() and (scale > 0).all()):
            bad = scale[~(np.isfinite(scale) & (scale > 0))]
            return f"tensor '{t.name}': quantization scale {float(bad[0]):g} is not a finite number > 0"
        rank = len(t.shape) if t.shape is not None else 0
        if rank >= 2 and not 0 <= q.axis < rank:  # (a rank-1 bias quantized along axis 3 is the reader's case)
            return f"tensor '{t.name}': quantized along axis {q.axis} of a rank-{rank} tensor"
        limits = _INT_RANGES.get(t.dtype)
        if limits is not None and zp.size:
            low, high = (int(zp[0]), int(zp[0])) if zp.size == 1 else (int(zp.min()), int(zp.max()))
            if low < limits[0] or high > limits[1]:
                worst = low if low < limits[0] else high
                return f"tensor '{t.name}': zero point {worst} is outside {t.dtype} [{limits[0]}, {limits[1]}]"
    if t.sparsity is not None and t.data is not None:
        return _sparsity_problem(t)
    return None


def _sparsity_problem(t: Tensor) -> str | None:
    s = t.sparsity
    assert s is not None and t.data is not None
    name = f"tensor '{t.name}'"
    n = len(s.traversal_order)
    rank = len(t.shape or ())
    if len(s.dim_metadata) != n or sorted(s.traversal_order) != list(range(n)) or n < rank:
        return f"{name}: sparse traversal order {list(s.traversal_order)} does not fit {len(s.dim_metadata)} dimensions"
    if sorted(s.block_map) != sorted(set(s.block_map)) or any(not 0 <= b < rank for b in s.block_map):
        return f"{name}: sparse block map {list(s.block_map)} is not a set of dimensions of rank {rank}"
    if n != rank + len(s.block_map):
        return f"{name}: sparse storage has {n} dimensions for rank {rank} with {len(s.block_map)} block dimensions"
    stored = 1  # elements the storage describes, walked level by level
    for level, d in enumerate(s.dim_metadata):
        if d.format == "DENSE":
            size = _sparse_dim_size(t, s.traversal_order[level])
            if d.dense_size < 1 or (size is not None and d.dense_size != size):
                return f"{name}: sparse dimension {level} has dense size {d.dense_size}, expected {size}"
            stored *= d.dense_size
            continue
        seg, idx = d.segments, d.indices
        if seg is None or idx is None or seg.size != stored + 1:
            return f"{name}: sparse dimension {level} has {0 if seg is None else seg.size} segments for {stored} rows"
        seg = seg.astype(np.int64)
        if seg[0] != 0 or np.any(np.diff(seg) < 0) or seg[-1] != idx.size:
            return f"{name}: sparse dimension {level} has segments that do not index its {idx.size} indices"
        size = _sparse_dim_size(t, s.traversal_order[level])
        if idx.size and (int(idx.min()) < 0 or (size is not None and int(idx.max()) >= size)):
            return f"{name}: sparse dimension {level} has an index outside its size {size}"
        stored = int(idx.size)
    if t.data.size != stored:
        return f"{name}: sparse storage describes {stored} values but holds {t.data.size}"
    return None


def _sparse_dim_size(t: Tensor, dim: int) -> int | None:
    """The size of storage dimension `dim`: a tensor dimension divided by its block size (None for a
    block dimension, whose size its DENSE metadata gives)."""
    s, shape = t.sparsity, t.shape or ()
    assert s is not None
    if dim >= len(shape):
        return None
    if dim in s.block_map:
        block = len(shape) + s.block_map.index(dim)
        level = s.traversal_order.index(block)
        size = s.dim_metadata[level].dense_size
        return shape[dim] // size if size else None
    return shape[dim]


# --- running it -------------------------------------------------------------------------------------------
def op_problems(graph: Graph, op: Op) -> list[str]:
    """Every way `op` violates its signature (empty when it fits, or its type has no signature)."""
    sig = SIGNATURES.get(op.type)
    if sig is None:
        return []
    v = OpView(graph, op, graph.inputs_of(op), graph.outputs_of(op))
    n_in, n_out = len(v.inputs), len(v.outputs)
    if not sig.inputs[0] <= n_in <= sig.inputs[1]:
        return [v.problem(f"has {n_in} inputs, expected {_range(sig.inputs)}")]
    if not sig.outputs[0] <= n_out <= sig.outputs[1]:
        return [v.problem(f"has {n_out} outputs, expected {_range(sig.outputs)}")]
    if any(v.input(i) is None for i in range(sig.inputs[0])):
        return [v.problem("a required input is omitted")]
    if sig.options is not None and op.options_type != sig.options:
        found = op.options_type or "no options"
        return [v.problem(f"carries {found}, expected {sig.options}")]
    for key, allowed in sig.enums.items():
        value = op.options.get(key, allowed[0])
        if value not in allowed:
            return [v.problem(f"option {key}={value} is not one of {', '.join(allowed)}")]
    for key in sig.positive:
        value = op.options.get(key, 1)
        if not isinstance(value, int) or value < 1:
            return [v.problem(f"option {key}={value} must be at least 1")]
        if value > MAX_STRIDE:
            return [v.problem(f"option {key}={value} is larger than {MAX_STRIDE}")]
    if op.options_type is not None:
        defaults = _option_defaults(op.options_type)
        for key, value in op.options.items():  # the reader keeps an enum value it cannot name as a number
            if isinstance(defaults.get(key), str) and not isinstance(value, str):
                return [v.problem(f"option {key}={value} is not a value of its enum")]
    x = v.input(0)
    if sig.types is not None and x is not None and x.dtype not in sig.types:
        return [v.problem(f"input '{x.name}' is {x.dtype}; it computes in {_types(sig.types)}")]
    for rule in sig.rules:
        problem = rule(v)
        if problem is not None:
            return [problem]
    return []


def _range(bounds: tuple[int, int]) -> str:
    return str(bounds[0]) if bounds[0] == bounds[1] else f"{bounds[0]} to {bounds[1]}"


def graph_problems(graph: Graph) -> list[str]:
    """Every semantic violation in `graph`: per op from SIGNATURES, per tensor from tensor_problem."""
    found: list[str] = []
    for node in graph.nx:
        if isinstance(node, Op):
            found.extend(op_problems(graph, node))
        else:
            problem = tensor_problem(node)
            if problem is not None:
                found.append(problem)
    return found


def problems(model: Model) -> list[str]:
    found: list[str] = []
    for index, graph in enumerate(model.subgraphs):
        prefix = f"subgraph {index}: " if index else ""
        found.extend(prefix + p for p in graph_problems(graph))
    return found


def validate(model: Model) -> None:
    """Raise InvalidModelError naming the first violation (and how many more there are)."""
    found = problems(model)
    if found:
        raise InvalidModelError(found)
