"""legalize-ethos-n: rewrite int8 ops Ethos-N78 cannot take into ops it can, with the same integers.

Every rule here is exact in LiteRT's int8 kernels (bit for bit), so the rewritten model is the
same model: the rules that touch arithmetic prove it by evaluating both sides with LiteRT's integer
arithmetic (QuantizeMultiplier, SaturatingRoundingDoublingHighMul, RoundingDivideByPOT) for every
one of the 256 int8 inputs of every channel, and decline when the two differ anywhere.

The Ethos-N geometry facts the rules rely on (SAME padding, the stride-2 max-pool forms) live in
backends/ethos_n/geometry.py, which the capability table reads too; LiteRT's int8 arithmetic lives in
ir/kernels.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from npupass.backends.ethos_n.geometry import (
    NO_PAD,
    explicit_padding,
    max_pool_stride1_problem,
    max_pool_stride2_problem,
)
from npupass.ir.graph import Graph, Op, Tensor
from npupass.ir.kernels import activation_range, add_int8, f32, mul_int8, multiply_half_up, quantize_multiplier
from npupass.ir.ops import same_padding
from npupass.ir.types import DType, Quantization
from npupass.passes.manager import Match, RewritePass, Rule, register
from npupass.passes.pattern import (
    constant_operand,
    fused_activation,
    input_at,
    new_constant,
    output,
    replace_chain,
    same_quant,
    same_shape_problem,
    sole_use_problem,
)
from npupass.tflite_schema import default_options

# --- rules ---------------------------------------------------------------------------------------------------

INT8_VALUES = np.arange(-128, 128, dtype=np.int64).reshape(-1, 1)


def _per_tensor(t: Tensor) -> tuple[float, int] | None:
    q = t.quant
    if t.dtype is not DType.INT8 or q is None or not q.is_affine or q.per_axis:
        return None
    return float(q.scale[0]), int(q.zero_point[0]) if q.zero_point.size else 0


def _channel_ints(t: Tensor, channels: int) -> np.ndarray | None:
    """An int8 constant's integers as one per channel of the last axis (a scalar is broadcast)."""
    if t.data is None or t.dtype is not DType.INT8 or t.sparsity is not None:
        return None
    data = np.asarray(t.data, dtype=np.int64)
    if any(d != 1 for d in data.shape[:-1]) or data.size not in (1, channels):
        return None
    return np.broadcast_to(data.reshape(-1), (channels,)).copy()


@dataclass
class AffineMatch(Match):
    x: Tensor
    last: Op
    target: np.ndarray = field(default_factory=lambda: np.zeros(0))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scales: np.ndarray = field(default_factory=lambda: np.zeros(0))
    biases: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _affine_operands(graph: Graph, op: Op, channels: int) -> tuple[np.ndarray, tuple[float, int]] | None:
    found = constant_operand(graph, op)
    if found is None:
        return None
    ints = _channel_ints(found[1], channels)
    quant = _per_tensor(found[1])
    return (ints, quant) if ints is not None and quant is not None else None


class AffineToDepthwiseExact(Rule):
    """y = MUL(x, c) and/or ADD(y, d) with int8 per-channel constants ==> DEPTHWISE_CONV_2D(x, W, b),
    1x1 stride 1, one int8 weight and one int32 bias per channel, chosen so that every int8 input of
    every channel gives LiteRT's MUL/ADD result exactly. Ethos-N does not broadcast a MUL or ADD;
    it runs the depthwise conv. (fold-batch-norm's affine-to-depthwise rounds once where the pair
    rounded twice, so it may move an output by a step; this rule only fires where nothing moves.)"""

    name = "affine-to-depthwise-exact"
    anchors = frozenset({"MUL", "ADD"})
    verb = "lowered with"

    def match(self, graph: Graph, op: Op) -> Match | None:
        found = constant_operand(graph, op)
        if found is None:
            return None
        x = found[2]
        if op.type == "ADD":  # a pair's ADD is visited after its MUL: alone only if the pair did not fire
            return AffineMatch([op], x, op)
        users = graph.consumer_ops(output(graph, op))
        if len(users) == 1 and users[0].type == "ADD" and fused_activation(op) == "NONE":
            shift = constant_operand(graph, users[0])
            if shift is not None and shift[2] is output(graph, op) and not graph.is_graph_output(output(graph, op)):
                return AffineMatch([op, users[0]], x, users[0])
        return AffineMatch([op], x, op)

    def check(self, graph: Graph, m: Match) -> str | None:
        assert isinstance(m, AffineMatch)
        reason = self._fit(graph, m)
        if reason is not None and len(m.ops) == 2:  # the pair as one op failed: the MUL alone, then the ADD
            pair = (m.ops, m.last)
            m.ops, m.last = [m.ops[0]], m.ops[0]
            if self._fit(graph, m) is not None:
                m.ops, m.last = pair
                return reason
        return reason

    def _fit(self, graph: Graph, m: AffineMatch) -> str | None:
        x, result = m.x, output(graph, m.last)
        if x.shape is None or len(x.shape) != 4:
            return "input is not 4-D (NHWC)"
        xq, oq = _per_tensor(x), _per_tensor(result)
        if xq is None or oq is None:
            return "only per-tensor int8 MUL and ADD are lowered"
        problem = same_shape_problem(x, result)
        if problem:
            return problem
        channels = x.shape[-1]
        target = INT8_VALUES
        slope = np.ones(channels)  # real output steps per input step, per channel
        for op in m.ops:
            operands = _affine_operands(graph, op, channels)
            if operands is None:
                return f"the {op.type} constant is not int8 with one value per channel"
            out = output(graph, op)
            act = fused_activation(op) or "NONE"
            inq = xq if op is m.ops[0] else _per_tensor(output(graph, m.ops[0]))
            assert inq is not None and out.quant is not None
            kernel = mul_int8 if op.type == "MUL" else add_int8
            target = kernel(target, inq, operands[0].reshape(1, -1), operands[1], out, act)
            factor = (operands[0] - operands[1][1]) * operands[1][0] if op.type == "MUL" else 1.0
            slope = slope * inq[0] * factor / float(out.quant.scale[0])
        if len(m.ops) == 2:
            problem = sole_use_problem(graph, output(graph, m.ops[0]), "MUL output")
            if problem:
                return problem
        m.target = np.broadcast_to(target, (256, channels))
        hints = _mul_hints(graph, m, xq) if len(m.ops) == 1 and m.ops[0].type == "MUL" else None
        fit = _fit_depthwise(m.target, slope, xq, result, fused_activation(m.last) or "NONE", hints)
        if isinstance(fit, str):
            return fit
        m.weights, m.scales, m.biases = fit
        return None

    def describe(self, graph: Graph, m: Match) -> str:
        first = f"{m.ops[0].type} '{output(graph, m.ops[0]).name}'"
        return f"{first} not lowered" if len(m.ops) == 1 else f"{first} + ADD not lowered"

    def rewrite(self, graph: Graph, m: Match) -> list[Op]:
        assert isinstance(m, AffineMatch)
        x, channels = m.x, m.weights.size
        xq = _per_tensor(x)
        assert xq is not None
        base = output(graph, m.last).name
        options = default_options("DepthwiseConv2DOptions") | {
            "padding": "VALID",
            "stride_w": 1,
            "stride_h": 1,
            "depth_multiplier": 1,
            "fused_activation_function": fused_activation(m.last) or "NONE",
        }
        dw = Op("DEPTHWISE_CONV_2D", options, "DepthwiseConv2DOptions", version=3, name=m.last.name)
        zeros = np.zeros(channels, dtype=np.int64)
        w_quant = Quantization(m.scales.astype(np.float32), zeros, 3)
        weight = new_constant(f"{base}/depthwise_weight", m.weights.reshape(1, 1, 1, channels), DType.INT8, w_quant)
        # the bias scale the converter and Ethos-N expect: input scale x weight scale, in float32
        b_scale = np.float32(xq[0]) * m.scales.astype(np.float32)
        bias = new_constant(f"{base}/depthwise_bias", m.biases, DType.INT32, Quantization(b_scale, zeros, 0))
        replace_chain(graph, m.ops, dw, [x, weight, bias])
        return [dw]


def _mul_hints(graph: Graph, m: AffineMatch, xq: tuple[float, int]) -> list[tuple[int, float] | None]:
    """Per channel of a lone MUL: the depthwise weight c - zc with a weight scale whose LiteRT
    multiplier is the MUL's own, so both kernels compute the same integers up to their tie rule."""
    mul = m.ops[0]
    out = output(graph, mul)
    assert out.quant is not None and m.x.shape is not None
    operands = _affine_operands(graph, mul, m.x.shape[-1])
    assert operands is not None
    ints, (cs, cz) = operands
    so = f32(out.quant.scale[0])
    real = f32(f32(f32(xq[0]) * f32(cs)) / so)
    wanted = quantize_multiplier(real)
    scale = np.float32(real * so / f32(xq[0]))
    for _ in range(16):  # walk ulps until the depthwise multiplier is the MUL's
        got = quantize_multiplier(float(np.float64(np.float32(xq[0])) * np.float64(scale) / np.float64(so)))
        if got == wanted:
            break
        scale = np.nextafter(scale, np.float32(np.inf) if got < wanted else np.float32(0))
    else:
        return [None] * ints.size
    return [(int(c), float(scale)) if 0 < abs(int(c)) <= 127 else None for c in ints - cz]


def _fit_depthwise(
    target: np.ndarray,
    slopes: np.ndarray,
    xq: tuple[float, int],
    out: Tensor,
    act: str,
    hints: list[tuple[int, float] | None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
    """Per channel, an int8 weight w, float32 scale s_w and int32 bias b whose 1x1 depthwise conv
    reproduces `target` (256 x C, indexed by the int8 input) exactly; or why none was found."""
    assert out.quant is not None
    channels = target.shape[1]
    weights = np.zeros(channels, dtype=np.int64)
    scales = np.zeros(channels, dtype=np.float64)
    biases = np.zeros(channels, dtype=np.int64)
    so, sx = float(np.float32(out.quant.scale[0])), float(np.float32(xq[0]))
    x = INT8_VALUES[:, 0] - xq[1]
    for c in range(channels):
        found = None
        hint = hints[c] if hints is not None else None
        if hint is not None:
            found = _try_line(target[:, c], x, hint[0], hint[1], np.arange(-2, 3), sx, so, out, act)
        found = found or _fit_channel(target[:, c], x, float(slopes[c]), sx, so, out, act)
        if found is None:
            return f"no int8 1x1 depthwise conv reproduces channel {c} bit for bit"
        weights[c], scales[c], biases[c] = found
    return weights, scales, biases


def _try_line(
    t: np.ndarray, x: np.ndarray, w: int, scale: float, biases: np.ndarray, sx: float, so: float, out: Tensor, act: str
) -> tuple[int, float, int] | None:
    """The first bias in `biases` with which weight `w` at `scale` gives `t` exactly, as (w, scale, b)."""
    assert out.quant is not None
    if not scale > 0 or not math.isfinite(scale) or np.abs(biases).max() >= 2**31:
        return None
    m, s = quantize_multiplier(float(np.float64(np.float32(sx)) * np.float64(np.float32(scale)) / np.float64(so)))
    low, high = activation_range(act, out)
    acc = x.reshape(1, -1) * w + biases.reshape(-1, 1).astype(np.int64)
    got = np.clip(multiply_half_up(acc, m, s) + int(out.quant.zero_point[0]), low, high)
    hits = np.flatnonzero(np.all(got == t.reshape(1, -1), axis=1))
    return (w, float(np.float32(scale)), int(biases[hits[0]])) if hits.size else None


# Weights tried per channel (the largest first: finest bias steps), and relative nudges of the
# multiplier: LiteRT's MUL and ADD round ties away from zero where its depthwise kernel rounds them
# up, so a line scaled a hair away from zero is what reproduces their ties.
WEIGHT_CANDIDATES = (127, 126, 125, 123, 119, 113, 101, 89, 64)
NUDGES = (0.0, 1e-5, -1e-5, 3e-5, -3e-5, 1e-4, -1e-4, 3e-4, -3e-4, 1e-3, -1e-3)


def _fit_channel(
    t: np.ndarray, x: np.ndarray, slope: float, sx: float, so: float, out: Tensor, act: str
) -> tuple[int, float, int] | None:
    """(weight, weight scale, bias) of a 1x1 depthwise channel whose output is `t` for every
    input offset `x` (x - zero point), or None."""
    assert out.quant is not None
    zo = int(out.quant.zero_point[0])
    low, high = activation_range(act, out)
    inside = (t > low) & (t < high)
    for w in WEIGHT_CANDIDATES if slope else (1,):
        w_signed = w if slope >= 0 else -w
        step = abs(slope) / w if slope else 2.0**-20  # output steps per unit of the accumulator
        # the bias that puts the line through the unclamped part of the target, then its neighbours
        offset = float(np.mean((t - zo - slope * x)[inside])) if inside.any() else float(t[0] - zo)
        window = np.round(offset / step) + np.arange(-max(4, w // 4), max(4, w // 4) + 1)
        for nudge in NUDGES if slope else (0.0,):
            found = _try_line(t, x, w_signed, float(np.float32(step * (1 + nudge) * so / sx)), window, sx, so, out, act)
            if found is not None:
                return found
    return None


@dataclass
class PadMatch(Match):
    pad: Op
    conv: Op


class PadIntoConv(Rule):
    """PAD(x, [[0,0],[t,b],[l,r],[0,0]]) -> CONV_2D | DEPTHWISE_CONV_2D (VALID) ==> the conv with SAME
    padding, when (t, b, l, r) is exactly the SAME padding of that conv on x and the PAD pads with
    the zero point (integers: the kernels skip the border, which adds (zp - zp) * w = 0)."""

    name = "pad-into-conv"
    anchors = frozenset({"PAD", "PADV2"})
    verb = "folded into"

    def match(self, graph: Graph, op: Op) -> Match | None:
        users = graph.consumer_ops(output(graph, op))
        if len(users) != 1 or users[0].type not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            return None
        if input_at(graph, users[0], 0) is not output(graph, op):
            return None
        return PadMatch([op, users[0]], op, users[0])

    def check(self, graph: Graph, m: Match) -> str | None:
        assert isinstance(m, PadMatch)
        x, padded = input_at(graph, m.pad, 0), output(graph, m.pad)
        paddings = input_at(graph, m.pad, 1)
        problem = sole_use_problem(graph, padded, "PAD output")
        if problem:
            return problem
        if x is None or x.shape is None or len(x.shape) != 4 or not same_quant(x, padded):
            return "PAD input is not 4-D with the output's type and quantization"
        if paddings is None or paddings.data is None or paddings.data.shape != (4, 2):
            return "paddings are not a constant 4 x 2"
        if m.pad.type == "PADV2":
            value = input_at(graph, m.pad, 2)
            zp = int(x.quant.zero_point[0]) if x.quant is not None and x.quant.is_affine else 0
            if value is None or value.data is None or np.asarray(value.data).reshape(-1)[0] != zp:
                return "PADV2 does not pad with the zero point"
        p = np.asarray(paddings.data, dtype=np.int64)
        if p[0].any() or p[3].any():
            return "PAD pads the batch or channel axis"
        o = m.conv.options
        if o.get("padding") != "VALID" or o.get("dilation_h_factor", 1) != 1 or o.get("dilation_w_factor", 1) != 1:
            return f"{m.conv.type} is not VALID and undilated"
        weight = input_at(graph, m.conv, 1)
        if weight is None or weight.shape is None:
            return "weight shape unknown"
        kh, kw = weight.shape[1], weight.shape[2]
        want = (*same_padding(x.shape[1], kh, o["stride_h"]), *same_padding(x.shape[2], kw, o["stride_w"]))
        have = (int(p[1][0]), int(p[1][1]), int(p[2][0]), int(p[2][1]))
        if have != want:
            return f"padding {list(have)} is not the conv's SAME padding {list(want)}"
        return None

    def rewrite(self, graph: Graph, m: Match) -> list[Op]:
        assert isinstance(m, PadMatch)
        x = input_at(graph, m.pad, 0)
        assert x is not None
        left = [t for t in graph.inputs_of(m.pad) if t is not None] + [output(graph, m.pad)]
        graph.remove_op(m.pad)
        graph.set_input(m.conv, 0, x)
        m.conv.options["padding"] = "SAME"
        graph.drop_unused(*left)
        return [m.conv]


@dataclass
class PoolMatch(Match):
    pad: tuple[int, int, int, int] = NO_PAD


class SplitMaxPool(Rule):
    """MAX_POOL_2D(k, stride 2) ==> MAX_POOL_2D(k, stride 1) -> MAX_POOL_2D(1x1, stride 2), when
    Ethos-N does not run the stride-2 form (wrong parity for its 2x2/3x3 kernels, or another size).
    Exact: a stride-2 max pool is the stride-1 max pool sampled at every other position, provided
    both windows start at the same offset (VALID, or SAME with the same padding before)."""

    name = "split-max-pool"
    anchors = frozenset({"MAX_POOL_2D"})
    verb = "rewritten"

    def match(self, graph: Graph, op: Op) -> Match | None:
        o = op.options
        if o.get("stride_h") != 2 or o.get("stride_w") != 2 or o.get("filter_height", 0) < 2:
            return None  # only stride-2 pools with a window to split
        return PoolMatch([op])

    def check(self, graph: Graph, m: Match) -> str | None:
        assert isinstance(m, PoolMatch)
        op = m.ops[0]
        x = input_at(graph, op, 0)
        if x is None or x.shape is None or len(x.shape) != 4:
            return "input is not 4-D"
        o = op.options
        h, w, kh, kw = x.shape[1], x.shape[2], o["filter_height"], o["filter_width"]
        pad = explicit_padding(o["padding"], h, w, kh, kw, 2, 2)
        if kh == kw and max_pool_stride2_problem(kh, pad, h, w) is None:
            return "Ethos-N runs this stride-2 form as it is"
        problem = max_pool_stride1_problem(kh, kw, o["padding"])
        if problem:
            return f"the stride-1 {problem}"
        if o["padding"] == "SAME":
            one = explicit_padding("SAME", h, w, kh, kw, 1, 1)
            if (one[0], one[2]) != (pad[0], pad[2]):
                return f"SAME padding before differs at stride 1 ({one[0]}, {one[2]}) and 2 ({pad[0]}, {pad[2]})"
        m.pad = pad
        return None

    def describe(self, graph: Graph, m: Match) -> str:
        return f"MAX_POOL_2D '{output(graph, m.ops[0]).name}' not split"

    def rewrite(self, graph: Graph, m: Match) -> list[Op]:
        pool = m.ops[0]
        x, result = input_at(graph, pool, 0), output(graph, pool)
        assert x is not None and x.shape is not None
        o = pool.options
        h, w = x.shape[1], x.shape[2]
        if o["padding"] == "VALID":
            h, w = h - o["filter_height"] + 1, w - o["filter_width"] + 1
        mid = Tensor(f"{result.name}/stride1", x.dtype, (x.shape[0], h, w, x.shape[3]), quant=x.quant)
        first = Op(
            "MAX_POOL_2D",
            dict(o) | {"stride_h": 1, "stride_w": 1, "fused_activation_function": "NONE"},
            "Pool2DOptions",
            version=pool.version,
            name=f"{pool.name}/stride1" if pool.name else "",
        )
        second_options = dict(o) | {"padding": "VALID", "filter_height": 1, "filter_width": 1}
        second = Op("MAX_POOL_2D", second_options, "Pool2DOptions", version=pool.version, name=pool.name)
        position = graph.position(pool)
        graph.remove_op(pool)
        graph.add_op(first, [x], [mid], place=position)
        graph.add_op(second, [mid], [result], place=position)
        return [first, second]


@register
class LegalizeEthosN(RewritePass):
    """Rewrite int8 ops Ethos-N78 declines into ops it runs, bit-exact in LiteRT:

    MUL(x, c) [-> ADD(d)] or ADD(x, d) per channel ==> DEPTHWISE_CONV_2D 1x1 with W, b fitted so
    that every int8 input of every channel gives the same integer;
    PAD(SAME amounts, zero point) -> CONV_2D/DEPTHWISE_CONV_2D VALID ==> the conv with SAME;
    (MEAN is left alone: LiteRT's int8 MEAN does not round the integer mean to nearest, measured,
    so no AVERAGE_POOL_2D reproduces it bit for bit.)
    MAX_POOL_2D stride 2 of a form Ethos-N declines ==> MAX_POOL_2D stride 1 -> 1x1 stride 2.
    Guards: intermediates have one consumer and are not graph outputs; constants are int8 per channel.
    """

    name = "legalize-ethos-n"
    summary = (
        "int8 ops Ethos-N declines -> ops it runs, bit-exact: per-channel MUL/ADD -> 1x1 depthwise, "
        "PAD into conv, stride-2 max pool split"
    )
    rules = (PadIntoConv(), AffineToDepthwiseExact(), SplitMaxPool())
