"""encode-clusters: clustered int8 weights re-scaled per channel so that channels share one palette.

A clustered layer holds k centroids C_j; folding a batch norm multiplies output channel c by g_c, so
channel c holds the values C_j * g_c, and int8 quantization rounds them per channel (or with one
scale for the tensor). Vela's weight compressor uses a palette of at most 32 values per layer, so
16 values per channel that differ between channels compress by nothing. With per-channel scales

    s'_c = S / a_c,    q'_c,i = P_k(c,i),    s'_c * q'_c,i ~= s_c * q_c,i

where a_c aligns channel c to a common frame (a_c = g_ref / g_c, recovered from the values
themselves) and P = round(m / S) is one int8 palette of the aligned centroids m, every channel
stores values from the same <= k non-zero integers (plus 0). Where the channels already hold one
palette exactly (same integers, any scales) nothing moves: the dequantized weights are bit-identical.
The int32 bias is re-expressed in the new bias scales (s_in * s'_c).

Only int8 CONV_2D / DEPTHWISE_CONV_2D weights with zero points 0 are rewritten (FULLY_CONNECTED
weights are one palette already: no batch norm folds into them per channel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npupass.ir.graph import Graph, Op, Tensor
from npupass.ir.quant import saturate_int32
from npupass.ir.types import DType, Quantization
from npupass.passes.manager import Context, Pass, PipelineError, label, register
from npupass.passes.pattern import WEIGHTED_OPS, new_constant

PER_CHANNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
TOP_VALUES = 4  # a channel's largest values anchor its alignment (least rounding error)
VELA_PALETTE = 32  # Vela's weight compressor takes a palette of at most this many values per layer
# How far (in the channel's weight steps, roughly) an aligned value may sit from a palette value and still
# join it: the rounding of the value plus that of the alignment. Tried in turn, the smallest that works wins.
SLACKS = (2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)
DEFAULT_TOLERANCE = 3.0


@dataclass
class Palette:
    """The shared palette of one layer: integer per aligned cluster, and the per-channel mapping."""

    scales: np.ndarray  # s'_c (float64)
    ints: np.ndarray  # the new int8 weights
    values: int  # distinct non-zero integers
    exact: bool  # dequantized weights bit-identical to before


def channel_values(q: np.ndarray, axis: int) -> list[np.ndarray]:
    """Distinct non-zero integers of each channel along `axis`."""
    rows = np.moveaxis(q, axis, 0).reshape(q.shape[axis], -1)
    return [np.unique(r[r != 0]).astype(np.int64) for r in rows]


def shared_palette(
    q: np.ndarray, scales: np.ndarray, axis: int, max_values: int, tolerance: float = DEFAULT_TOLERANCE
) -> Palette | str:
    """Per-channel scales and integers sharing one palette, or why the layer has none (tried with
    the usual rounding slack, then wider ones up to `tolerance` for layers whose values per channel pin
    the alignment less well: a wider slack merges values further apart, which moves the outputs more)."""
    result: Palette | str = ""
    distinct = channel_values(q, axis)
    slacks = [s for s in SLACKS if s < tolerance] + [tolerance]
    if _unclustered(q, axis, distinct) is not None:
        slacks = slacks[:1]  # nothing repeats: a wider slack would only merge unrelated values
    for slack in slacks:
        result = _shared_palette(q, scales, axis, max_values, slack, distinct)
        if isinstance(result, Palette) or result.startswith("not clustered") or "per channel, limit" in result:
            return result  # a palette, or a verdict no slack changes
    return result


def _shared_palette(
    q: np.ndarray, scales: np.ndarray, axis: int, max_values: int, slack: float, distinct: list[np.ndarray]
) -> Palette | str:
    """One attempt of shared_palette (`distinct`: channel_values of q).

    Each channel is aligned to the union of the channels aligned before it: a candidate factor maps
    one of its largest values onto a value of the union (same sign), and the factor that lands the
    most of its values within rounding (half a step each side) of union values wins."""
    channels = q.shape[axis]
    most = max((v.size for v in distinct), default=0)
    if most == 0:
        return "all weights are zero"
    if most > max_values:
        unclustered = _unclustered(q, axis, distinct)
        if unclustered is not None:
            return unclustered
        if most <= VELA_PALETTE:  # a near miss: a larger max_values takes it, and Vela still palettes it
            return f"{most} distinct values per channel, limit {max_values}"
        return f"not clustered: {most} distinct values per channel"
    order = sorted(range(channels), key=lambda c: (-distinct[c].size, -int(np.abs(distinct[c]).max(initial=0)), c))
    ref = order[0]
    # the union in the reference frame: centre (real value) and half-width (half a step) per cluster
    centres: list[float] = list(scales[ref] * distinct[ref].astype(np.float64))
    widths: list[float] = [scales[ref] / 2] * distinct[ref].size
    align = np.ones(channels)  # a_c: aligned value = a_c * s_c * q
    member: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * channels
    member[ref] = np.arange(distinct[ref].size)
    for c in order[1:]:
        vals = distinct[c]
        if vals.size == 0:
            continue
        real = scales[c] * vals.astype(np.float64)
        cu, wu = np.array(centres), np.array(widths)
        anchors = real[np.argsort(-np.abs(vals))[:TOP_VALUES]]
        factors = (cu[None, :] / anchors[:, None]).reshape(-1)
        factors = factors[factors > 0]
        if factors.size == 0:
            return _unclustered(q, axis, distinct) or "channels do not share cluster signs"
        aligned = factors[:, None] * real[None, :]  # [factor, value]
        half = factors[:, None] * (scales[c] / 2)
        # rounding moves each value by up to half a step, and the factor by the anchors' rounding
        gap = np.abs(aligned[:, :, None] - cu[None, None, :]) - slack * (half[:, :, None] + wu[None, None, :])
        hits = (gap <= 1e-12 * np.abs(cu).max()).any(axis=2)
        score = hits.sum(axis=1)
        residual = np.where(hits, np.abs(aligned[:, :, None] - cu[None, None, :]).min(axis=2), 0).sum(axis=1)
        best = int(np.lexsort((residual, -score))[0])
        a = float(factors[best])
        align[c] = a
        index = np.empty(vals.size, dtype=np.int64)
        for i in range(vals.size):
            g = gap[best, i]
            if g.min() <= 1e-12 * np.abs(cu).max():
                k = int(np.argmin(np.abs(aligned[best, i] - cu)))
                # the cluster keeps the more precise estimate (the narrower interval)
                if half[best, 0] < widths[k]:
                    centres[k], widths[k] = float(aligned[best, i]), float(half[best, 0])
            else:
                k = len(centres)
                centres.append(float(aligned[best, i]))
                widths.append(float(half[best, 0]))
            index[i] = k
        member[c] = index
        if len(centres) > max_values:
            return _unclustered(q, axis, distinct) or (
                f"clusters differ between channels: {len(centres)} values after aligning the channel scales, "
                f"limit {max_values}"
            )
    m = np.array(centres)
    exact_frame = bool(np.all(np.abs(m / scales[ref] - np.round(m / scales[ref])) < 1e-6))
    peak = float(np.abs(m).max())
    big = exact_frame and peak / scales[ref] <= 127
    step = scales[ref] if big else peak / 127  # S: keep the reference channel's grid when it fits
    palette = np.clip(np.round(m / step), -127, 127).astype(np.int64)
    new_scales = step / align  # s'_c = S / a_c
    new_scales = np.where([v.size == 0 for v in distinct], scales, new_scales)
    moved = np.moveaxis(q.astype(np.int64), axis, 0).reshape(channels, -1)
    out = np.zeros_like(moved)
    for c in range(channels):
        vals = distinct[c]
        if vals.size:
            lookup = palette[member[c]]
            pos = np.searchsorted(vals, moved[c])
            nz = moved[c] != 0
            out[c, nz] = lookup[pos[nz]]
    ints = np.moveaxis(out.reshape(np.moveaxis(q, axis, 0).shape), 0, axis).astype(np.int8)
    before = np.moveaxis(q.astype(np.float64), axis, -1) * scales.astype(np.float32)
    after = np.moveaxis(ints.astype(np.float64), axis, -1) * new_scales.astype(np.float32)
    used = np.unique(ints[ints != 0]).size
    return Palette(new_scales, ints, used, bool(np.array_equal(before, after)))


def _unclustered(q: np.ndarray, axis: int, distinct: list[np.ndarray]) -> str | None:
    """ "not clustered: ..." when the channels' weights are (almost) all different from each other, as in a
    layer clustering never touched (tfmot does not cluster DepthwiseConv2D): a 3x3 depthwise channel holds
    at most 9 values, under any limit, yet nothing repeats."""
    per_channel = q.size // max(q.shape[axis], 1)
    nonzero = [int(np.count_nonzero(r)) for r in np.moveaxis(q, axis, 0).reshape(q.shape[axis], -1)]
    repeats = sum(n - v.size for n, v in zip(nonzero, distinct, strict=True))
    if per_channel > 1 and repeats <= 0.1 * sum(nonzero):
        layer = np.unique(q[q != 0]).size
        return f"not clustered: {layer} distinct values, hardly any weight repeats a value of its channel"
    return None


@register
class EncodeClusters(Pass):
    """int8 W with per-channel clusters C_j * g_c  ==>  W' = P_k with scales s'_c = S / a_c.

    Requires an int8 graph (weights read directly as int8). Guarantees: zeros stay zeros, every
    rewritten layer holds at most `max_values` distinct non-zero int8 values shared by all channels,
    and layers whose channels already share a palette come out bit-identical."""

    name = "encode-clusters"
    summary = "int8: per-channel scales so a clustered layer's channels share one small palette (Vela)"
    max_steps = 2
    min_within = 0.99

    def __init__(self, max_values: int = 16, tolerance: float = DEFAULT_TOLERANCE) -> None:
        """`max_values`: distinct non-zero values the shared palette may hold (up to Vela's 32 still
        compresses); layers with more per channel are declined with the count found. `tolerance`: how far,
        in weight steps, a channel's aligned value may be from the palette value it joins (wider takes
        more layers and moves outputs more; `npupass compile` reports by how many output steps)."""
        if not 1 <= int(max_values) <= 127:
            raise PipelineError(f"encode-clusters max_values must be 1..127, not {max_values}")
        if not 1.0 <= float(tolerance) <= max(SLACKS):
            raise PipelineError(f"encode-clusters tolerance must be 1..{max(SLACKS):g} steps, not {tolerance}")
        self.max_values = int(max_values)
        self.tolerance = float(tolerance)

    def run_on_graph(self, graph: Graph, ctx: Context) -> None:
        for op in graph.ops:
            if op.type not in PER_CHANNEL_OPS:
                continue
            where = WEIGHTED_OPS[op.type]
            inputs = graph.inputs_of(op)
            x, w = inputs[where.input], inputs[where.weight]
            bias = inputs[where.bias] if where.bias < len(inputs) else None
            if w is None or not w.is_constant or w.sparsity is not None or w.dtype is not DType.INT8:
                continue
            problem = _problem(graph, op, x, w, bias)
            what = f"{label(graph, op)} weight '{w.name}'"
            if problem is not None:
                ctx.decline("shared-palette", f"{what} not re-scaled: {problem}", op)
                continue
            assert w.quant is not None and w.shape is not None
            channels = w.shape[where.axis]
            scales = np.broadcast_to(w.quant.scale.astype(np.float64), (channels,)).copy()
            q = np.asarray(w.data)
            before = np.unique(q[q != 0]).size
            result = shared_palette(q, scales, where.axis, self.max_values, self.tolerance)
            if isinstance(result, str):
                ctx.decline("shared-palette", f"{what} not re-scaled: {result}", op)
                continue
            if result.exact and np.array_equal(result.ints, q) and w.quant.per_axis:
                continue  # already one palette: nothing to do
            if result.values >= before and w.quant.per_axis:
                ctx.decline("shared-palette", f"{what} not re-scaled: it already holds {before} values", op)
                continue
            origins = ctx.origins(graph, [op])
            _replace_weights(graph, op, w, bias, x, result, where.axis)
            ctx.rewrote("shared-palette", [op], origins)


def _problem(graph: Graph, op: Op, x: Tensor | None, w: Tensor, bias: Tensor | None) -> str | None:
    if w.quant is None or not w.quant.is_affine or np.any(w.quant.zero_point != 0):
        return "its int8 weight is not symmetric-quantized"
    if w.quant.per_axis and w.quant.axis != WEIGHTED_OPS[op.type].axis:
        return f"its weight is quantized along axis {w.quant.axis}, not the output channels"
    if x is None or x.quant is None or not x.quant.is_affine:
        return "its input is not quantized"
    if bias is not None and (not bias.is_constant or bias.dtype is not DType.INT32 or bias.quant is None):
        return "its bias is not a constant int32"
    users = {c for c, _ in graph.consumers(w)}
    if len(users) > 1:
        return f"the weight is shared with {len(users) - 1} other op(s)"
    return None


def _replace_weights(
    graph: Graph, op: Op, w: Tensor, bias: Tensor | None, x: Tensor | None, p: Palette, axis: int
) -> None:
    where = WEIGHTED_OPS[op.type]
    scales32 = p.scales.astype(np.float32)
    zeros = np.zeros(scales32.size, dtype=np.int64)
    new_w = new_constant(w.name, p.ints, DType.INT8, Quantization(scales32, zeros, axis))
    graph.set_input(op, where.weight, new_w)
    if bias is not None and x is not None and x.quant is not None and bias.quant is not None:
        old = np.broadcast_to(bias.quant.scale.astype(np.float64), scales32.shape)
        new_scale = float(x.quant.scale[0]) * scales32.astype(np.float64)
        ints = saturate_int32(np.round(np.asarray(bias.data, dtype=np.float64) * old / new_scale))
        new_b = new_constant(bias.name, ints, DType.INT32, Quantization(new_scale.astype(np.float32), zeros, 0))
        graph.set_input(op, where.bias, new_b)
        graph.drop_unused(bias)
    graph.drop_unused(w)
