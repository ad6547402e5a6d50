"""fold-fake-quant: turn a float graph carrying fake-quant into a real int8 graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from npupass.errors import NpupassError
from npupass.ir.graph import Graph, Model, Op, Tensor
from npupass.ir.types import DType, Quantization
from npupass.passes.manager import Context, Pass, PipelineError, label, register
from npupass.passes.pattern import (
    CLAMPING_OPS,
    WEIGHTED_OPS,
    fused_activation,
    input_at,
    new_constant,
    output,
    same_quant_values,
)

INT8_MIN, INT8_MAX = -128, 127


class MissingQuantizationError(NpupassError):
    """An activation has no fake-quant range to take its quantization from."""


def quantization(scale: Any, zero_point: Any, axis: int = 0) -> Quantization:
    return Quantization(np.asarray(scale, dtype=np.float32), np.asarray(zero_point, dtype=np.int64), axis)


def fake_quant_params(lo: float, hi: float, num_bits: int, narrow_range: bool) -> Quantization:
    """TensorFlow's FakeQuant nudging of [lo, hi] to an 8-bit grid with an exact zero, as int8."""
    if num_bits != 8:
        raise PipelineError(f"a {num_bits}-bit FAKE_QUANT clamps to fewer levels than int8 holds; only 8 bits fold")
    if not hi > lo:
        raise PipelineError(f"FAKE_QUANT range [{lo:g}, {hi:g}] is empty")
    qmin, qmax = (1 if narrow_range else 0), (1 << num_bits) - 1
    scale = (hi - lo) / (qmax - qmin) if hi > lo else 1.0
    zero_point = int(np.clip(np.round(qmin - lo / scale), qmin, qmax))
    return quantization([scale], [zero_point - 128])


def as_int8(q: Quantization, dtype: DType) -> Quantization:
    """The quantization of a UINT8 or INT8 tensor restated for INT8 (UINT8 zero points shift by 128)."""
    zero_point = q.zero_point if q.zero_point.size else np.zeros(q.scale.size, dtype=np.int64)
    return quantization(q.scale, zero_point - (128 if dtype is DType.UINT8 else 0), q.axis)


def quantize_values(values: np.ndarray, q: Quantization) -> np.ndarray:
    """round(values / scale) + zero_point saturated to int8, per axis where q is per-axis."""
    shape = [1] * values.ndim
    if q.per_axis:
        shape[q.axis] = -1
    scale = q.scale.astype(np.float64).reshape(shape if q.per_axis else ())
    zp = q.zero_point.astype(np.float64).reshape(shape if q.per_axis and q.zero_point.size > 1 else ())
    return np.clip(np.round(values.astype(np.float64) / scale) + zp, INT8_MIN, INT8_MAX).astype(np.int8)


# Ops whose int8 kernels compute on the raw integers, so their output keeps the input's quantization.
SAME_QUANT_OPS = frozenset(
    {
        "MAX_POOL_2D",
        "RESHAPE",
        "SQUEEZE",
        "EXPAND_DIMS",
        "TRANSPOSE",
        "STRIDED_SLICE",
        "SLICE",
        "PAD",
        "PADV2",
        "GATHER",
        "SPACE_TO_DEPTH",
        "DEPTH_TO_SPACE",
        "SPLIT",
        "SPLIT_V",
        "BATCH_TO_SPACE_ND",
        "SPACE_TO_BATCH_ND",
        "RESIZE_NEAREST_NEIGHBOR",
        "AVERAGE_POOL_2D",
    }
)
# Ops whose output stays within the input's range: without a fake-quant of its own, the output takes
# the input's quantization (PyTorch's quantized pooling does the same), but may differ when given one.
INHERIT_QUANT_OPS = frozenset({"MEAN", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1"})
# Ops whose int8 kernels accept exactly one output quantization.
FIXED_OUTPUT_QUANT: dict[str, tuple[float, int]] = {
    "SOFTMAX": (1.0 / 256, -128),
    "LOGISTIC": (1.0 / 256, -128),
    "TANH": (1.0 / 128, 0),
}
# Operator versions the TF converter writes for the int8 kernels (read from its full-int8 output).
INT8_VERSIONS: dict[str, int] = {
    "CONV_2D": 3,
    "DEPTHWISE_CONV_2D": 3,
    "FULLY_CONNECTED": 4,
    "ADD": 2,
    "SUB": 2,
    "MUL": 2,
    "AVERAGE_POOL_2D": 2,
    "MAX_POOL_2D": 2,
    "MEAN": 2,
    "CONCATENATION": 2,
    "SOFTMAX": 2,
    "LOGISTIC": 2,
    "TANH": 2,
    "PAD": 2,
    "QUANTIZE": 2,
    "DEQUANTIZE": 2,
    "RELU": 2,
    "RELU6": 2,
    "TRANSPOSE_CONV": 2,
    "STRIDED_SLICE": 2,
    "MINIMUM": 2,
    "MAXIMUM": 2,
    "RESIZE_BILINEAR": 3,
    "RESIZE_NEAREST_NEIGHBOR": 2,
}


@dataclass
class FakeQuant:
    """A fake-quant of float tensor `source`: a QUANTIZE read only by DEQUANTIZEs, or a FAKE_QUANT;
    `results` are the float tensors it produces."""

    source: Tensor
    quant: Quantization
    ops: list[Op]
    results: list[Tensor]


def find_fake_quants(graph: Graph) -> list[FakeQuant]:
    found = []
    for op in graph.ops:
        if op.type == "FAKE_QUANT":
            src = graph.inputs_of(op)[0]
            o = op.options
            if "min" not in o or "max" not in o:
                raise PipelineError(f"{label(graph, op)} has no min/max")
            q = fake_quant_params(
                float(o["min"]), float(o["max"]), int(o.get("num_bits", 8)), bool(o.get("narrow_range"))
            )
            if src is not None:
                found.append(FakeQuant(src, q, [op], [output(graph, op)]))
        elif op.type == "QUANTIZE":
            src, tq = graph.inputs_of(op)[0], output(graph, op)
            if src is None or not src.dtype.is_float or tq.quant is None or tq.dtype not in (DType.INT8, DType.UINT8):
                continue
            readers = graph.consumer_ops(tq)
            if not readers or any(r.type != "DEQUANTIZE" for r in readers) or graph.is_graph_output(tq):
                continue
            results = [output(graph, r) for r in readers]
            found.append(FakeQuant(src, as_int8(tq.quant, tq.dtype), [op, *readers], results))
    return found


@dataclass
class _Fold:
    """Folding one graph: which tensors get which int8 quantization, and the I/O boundary tensors."""

    graph: Graph
    ctx: Context
    io: str
    quant: dict[Tensor, Quantization] = field(default_factory=dict)
    replaced: dict[Tensor, Tensor] = field(default_factory=dict)
    """Fake-quantized float tensors already folded -> the int8 tensor that stands for them."""
    ranged: set[Tensor] = field(default_factory=set)
    integer_ends: set[Tensor] = field(default_factory=set)
    """Graph inputs and outputs that were integers in the model itself: they stay integers."""
    """Tensors whose range a fake-quant set (rather than propagation)."""

    def run(self) -> None:
        fake_quants = find_fake_quants(self.graph)
        if not fake_quants and not self._float_activations():
            return  # already an integer graph
        self.integer_boundaries()
        for fq in fake_quants:
            while fq.source in self.replaced:  # a fake-quant of a fake-quant (a requantization)
                fq.source = self.replaced[fq.source]
            if fq.source.is_constant:
                self.fold_weight(fq)
            else:
                self.fold_activation(fq)
        self.fold_dequantized_constants()
        self.propagate()
        self.require_quantization()
        self.quantize_constants()
        self.retype()
        self.requantize_where_needed()
        self.float_outputs()
        self.make_clipping_explicit()

    def integer_boundaries(self) -> None:
        """A model that takes int8/uint8 inputs (DEQUANTIZE right after the input) or gives them
        (QUANTIZE right before the output): the graph computes on those integers directly. A uint8
        end keeps one QUANTIZE between uint8 and the graph's int8."""
        g = self.graph
        for op in list(g.iter_ops()):
            src = g.inputs_of(op)[0] if g.inputs_of(op) else None
            if op.type == "DEQUANTIZE" and src is not None and src in g.inputs and src.quant is not None:
                result = output(g, op)
                if src.dtype is DType.INT8:
                    self.quant[src] = src.quant
                    self.integer_ends.add(src)
                    self._bypass([op], [result], src)
                elif src.dtype is DType.UINT8:
                    q = as_int8(src.quant, src.dtype)
                    op.type, op.version = "QUANTIZE", INT8_VERSIONS["QUANTIZE"]  # uint8 -> int8
                    self.quant[result] = q
                    self.ranged.add(result)
                else:
                    continue
                self.ctx.rewrote("integer-input", [], [label(g, op)] if op in g.nx else [])
            elif op.type == "QUANTIZE" and src is not None and src.dtype.is_float and not src.is_constant:
                result = output(g, op)
                if not g.is_graph_output(result) or result.quant is None:
                    continue
                if result.dtype is DType.INT8:
                    self.quant[src] = result.quant
                    self.ranged.add(src)
                    self.integer_ends.add(src)
                    g.remove_op(op)
                    g.outputs = [src if t is result else t for t in g.outputs]
                    src.name = result.name
                    g.drop_unused(result)
                elif result.dtype is DType.UINT8:
                    self.quant[src] = as_int8(result.quant, result.dtype)
                    self.ranged.add(src)  # the QUANTIZE stays: int8 -> uint8
                else:
                    continue
                self.ctx.rewrote("integer-output", [], [])

    # -- weights ----------------------------------------------------------------------------------
    def fold_weight(self, fq: FakeQuant) -> None:
        """W -> QUANTIZE(s, zp) -> DEQUANTIZE ==> the int8 constant QUANTIZE would compute."""
        src = fq.source
        assert src.data is not None
        ints = quantize_values(np.asarray(src.data, dtype=np.float64), fq.quant)
        weight = new_constant(src.name, ints, DType.INT8, fq.quant)
        readers = self._readers(fq.results)
        origins = self.ctx.origins(self.graph, [*readers, *fq.ops])
        self._bypass(fq.ops, fq.results, weight)
        self.ctx.rewrote("weight-fake-quant", readers, origins)  # the ops that read the int8 weight now

    def fold_dequantized_constants(self) -> None:
        """int8 / uint8 / int32 constant -> DEQUANTIZE ==> the constant itself (already quantized
        weights and biases); uint8 becomes int8 with zero points shifted by 128."""
        g = self.graph
        for op in list(g.iter_ops()):
            if op.type != "DEQUANTIZE":
                continue
            src = g.inputs_of(op)[0]
            if src is None or not src.is_constant or src.quant is None:
                continue
            if src.dtype is DType.INT32:
                stored = new_constant(src.name, np.asarray(src.data), DType.INT32, src.quant)
            elif src.dtype in (DType.INT8, DType.UINT8):
                data = np.asarray(src.data)
                if src.dtype is DType.UINT8:
                    data = (data.astype(np.int16) - 128).astype(np.int8)
                stored = new_constant(src.name, data, DType.INT8, as_int8(src.quant, src.dtype))
            else:
                continue
            readers = self._readers([output(g, op)])
            origins = self.ctx.origins(g, [*readers, op])
            self._bypass([op], [output(g, op)], stored)
            self.ctx.rewrote("dequantized-constant", readers, origins)

    # -- activations ------------------------------------------------------------------------------
    def fold_activation(self, fq: FakeQuant) -> None:
        """x -> QUANTIZE -> DEQUANTIZE (or FAKE_QUANT) ==> x itself, quantized as the pair says.

        Readers of the fake-quantized value read the int8 tensor instead. Where that value is a graph
        output, io="float" keeps a DEQUANTIZE to it; io="int8" makes the int8 tensor the output,
        under the output's name.
        """
        g = self.graph
        origins = self.ctx.origins(g, fq.ops)
        value, kept = self._int8_value(fq)
        self.ranged.add(value)
        outputs = [r for r in fq.results if g.is_graph_output(r)]
        left = [t for op in fq.ops if op is not kept for t in (*g.inputs_of(op), *g.outputs_of(op)) if t is not None]
        position = g.position(fq.ops[-1])
        for op in fq.ops:
            if op is not kept:
                g.remove_op(op)
        new_ops = [kept] if kept is not None else []
        for result in fq.results:
            self.replaced[result] = value
            for reader, slot in g.consumers(result):
                g.set_input(reader, slot, value)
        for result in outputs:
            if self.io == "float":
                dq = Op("DEQUANTIZE", version=INT8_VERSIONS["DEQUANTIZE"], name=f"{result.name}/dequantize")
                new_ops.append(g.add_op(dq, [value], [result], place=position))
            else:
                g.outputs = [value if t is result else t for t in g.outputs]
                if value not in g.inputs:
                    value.name = result.name  # the int8 output keeps the output's public name
        g.drop_unused(*left)
        self.ctx.rewrote("fake-quant" if fq.ops[0].type == "FAKE_QUANT" else "activation-fake-quant", new_ops, origins)

    def _int8_value(self, fq: FakeQuant) -> tuple[Tensor, Op | None]:
        """The tensor holding fq's source as int8 with fq's quantization, and the fq op kept to make it.

        That is the source itself, except: at a float graph input (io="float") a QUANTIZE makes it,
        and a source already quantized differently (a requantization) gets a QUANTIZE to the new scale.
        """
        g, src, q = self.graph, fq.source, fq.quant
        at_float_input = src in g.inputs and self.io == "float"
        if not at_float_input:
            previous = self.quant.setdefault(src, q)
            if same_quant_values(previous, q):
                return src, None
        first = fq.ops[0]
        if at_float_input and first.type == "QUANTIZE":
            value, quantize = output(g, first), first
        else:
            value = Tensor(f"{src.name}/int8", DType.INT8, src.shape, quant=q, shape_signature=src.shape_signature)
            quantize = Op("QUANTIZE", name=f"{value.name}/quantize")
            g.add_op(quantize, [src], [value], place=first)
        value.dtype, value.quant = DType.INT8, q
        quantize.version = max(quantize.version, INT8_VERSIONS["QUANTIZE"])
        self.quant[value] = q
        return value, quantize if quantize is first else None

    def _readers(self, tensors: list[Tensor]) -> list[Op]:
        """The ops reading `tensors`, each once, in creation order."""
        return list(dict.fromkeys(op for t in tensors for op in self.graph.consumer_ops(t)))

    def _bypass(self, ops: list[Op], results: list[Tensor], replacement: Tensor) -> None:
        """Remove `ops`; whatever read `results` reads `replacement` (graph outputs too)."""
        g = self.graph
        left = [t for op in ops for t in (*g.inputs_of(op), *g.outputs_of(op)) if t is not None]
        for op in ops:
            g.remove_op(op)
        for result in results:
            g.replace_uses(result, replacement)
        g.drop_unused(*left)

    def _float_activations(self) -> list[Tensor]:
        g = self.graph
        return [
            t
            for t in g.tensors
            if t.dtype.is_float and not t.is_constant and t not in g.inputs and not g.is_graph_output(t)
        ]

    def propagate(self) -> None:
        """Ops computing on raw integers pass their input's quantization on (and back); ops with
        one fixed int8 output quantization get it."""
        g = self.graph
        ops = g.ops
        for _ in range(len(ops) + 1):
            changed = False
            for op in ops:
                ins = [t for t in g.inputs_of(op)[:1] if t is not None]
                outs = g.outputs_of(op)
                if op.type in FIXED_OUTPUT_QUANT:
                    scale, zp = FIXED_OUTPUT_QUANT[op.type]
                    fixed = quantization([scale], [zp])
                    for t in outs:
                        if t not in self.quant or not same_quant_values(self.quant[t], fixed):
                            self.quant[t] = fixed
                            changed = True
                if (op.type not in SAME_QUANT_OPS and op.type not in INHERIT_QUANT_OPS) or not ins:
                    continue
                x = ins[0]
                if x in self.quant:
                    for t in outs:
                        if t not in self.quant:
                            self.quant[t] = self.quant[x]
                            changed = True
                elif op.type in SAME_QUANT_OPS and outs and outs[0] in self.quant and x.dtype.is_float:
                    self.quant[x] = self.quant[outs[0]]
                    changed = True
            if not changed:
                return

    def require_quantization(self) -> None:
        g = self.graph
        for t in g.tensors:
            if t.dtype.is_float and not t.is_constant and t not in self.quant and g.nx.degree(t):
                at_boundary = self.io == "float" and (t in g.inputs or g.is_graph_output(t))
                if at_boundary:
                    continue
                writer = g.producer(t)
                where = f" (written by {label(g, writer)})" if writer is not None else " (a graph input)"
                raise MissingQuantizationError(
                    f"tensor '{t.name}'{where} has no fake-quant range; fold-fake-quant needs a FAKE_QUANT or "
                    "QUANTIZE/DEQUANTIZE pair on every activation (it does not calibrate)"
                )

    # -- constants --------------------------------------------------------------------------------
    def quantize_constants(self) -> None:
        """Float weights of weighted ops become symmetric per-channel int8; float biases become int32
        with scale = input scale x weight scale per channel; other float constants int8 per-tensor."""
        g = self.graph
        for op in g.ops:
            if op.type in WEIGHTED_OPS:
                input_slot, weight_slot, bias_slot, axis = WEIGHTED_OPS[op.type]
                weight = input_at(g, op, weight_slot)
                if weight is not None and weight.dtype.is_float and weight.data is not None:
                    g.set_input(op, weight_slot, _quantize_weight(weight, axis))
                    g.drop_unused(weight)
                    self.ctx.rewrote("float-weight", [op], [label(g, op)])
                    weight = input_at(g, op, weight_slot)
                if weight is not None and weight.quant is not None and np.any(weight.quant.zero_point != 0):
                    raise PipelineError(
                        f"{label(g, op)}: weight '{weight.name}' has zero point "
                        f"{int(weight.quant.zero_point.flat[0])}; int8 {op.type} needs symmetric weights (zero point 0)"
                    )
                bias = input_at(g, op, bias_slot)
                x = input_at(g, op, input_slot)
                if bias is not None and bias.dtype.is_float and bias.data is not None and weight is not None:
                    if x is None or x not in self.quant or weight.quant is None:
                        raise PipelineError(f"{label(g, op)}: cannot quantize its bias without input and weight scales")
                    g.set_input(op, bias_slot, _quantize_bias(bias, self.quant[x], weight.quant))
                    g.drop_unused(bias)
                    self.ctx.rewrote("bias", [op], [label(g, op)])
            x = g.inputs_of(op)[0]
            for slot, t in enumerate(g.inputs_of(op)):
                if t is not None and t.is_constant and t.dtype.is_float and op.type not in ("DEQUANTIZE",):
                    if op.type in ("PADV2", "MINIMUM", "MAXIMUM") and x is not None and x in self.quant:
                        # compared with or padded into the raw integers: the input's quantization
                        q = self.quant[x]
                        data = quantize_values(np.asarray(t.data, dtype=np.float64), q)
                        g.set_input(op, slot, new_constant(t.name, data, DType.INT8, q))
                    else:
                        g.set_input(op, slot, _quantize_constant(t))
                    g.drop_unused(t)
                    self.ctx.rewrote("float-constant", [op], [label(g, op)])

    # -- types and boundaries ---------------------------------------------------------------------
    def retype(self) -> None:
        g = self.graph
        for t, q in self.quant.items():
            at_float_end = self.io == "float" and (t in g.inputs or g.is_graph_output(t))
            if t in g.nx and (not at_float_end or t in self.integer_ends):
                t.dtype, t.quant = DType.INT8, q
        for op in g.iter_ops():
            outs = g.outputs_of(op)
            if outs and outs[0].dtype is DType.INT8 and op.type in INT8_VERSIONS:
                op.version = max(op.version, INT8_VERSIONS[op.type])

    def requantize_where_needed(self) -> None:
        """Ops that compute on raw integers need one quantization in and out (CONCATENATION: on every
        input): where the fake-quant ranges differ, a QUANTIZE requantizes."""
        g = self.graph
        for op in g.ops:
            if op.type in SAME_QUANT_OPS:
                x, out = g.inputs_of(op)[0], output(g, op)
                if x is not None and _int8(x) and _int8(out) and not same_quant_values(x.quant, out.quant):
                    raw = Tensor(
                        f"{out.name}/raw", DType.INT8, out.shape, quant=x.quant, shape_signature=out.shape_signature
                    )
                    g.set_output(op, 0, raw)
                    self._add_requantize(op, raw, out)
            elif op.type == "CONCATENATION":
                out = output(g, op)
                for slot, x in enumerate(g.inputs_of(op)):
                    if x is not None and _int8(x) and _int8(out) and not same_quant_values(x.quant, out.quant):
                        same = Tensor(f"{x.name}/to_{out.name}", DType.INT8, x.shape, quant=out.quant)
                        g.set_input(op, slot, same)
                        self._add_requantize(op, x, same)

    def _add_requantize(self, op: Op, src: Tensor, dst: Tensor) -> None:
        requantize = Op("QUANTIZE", version=INT8_VERSIONS["QUANTIZE"], name=f"{dst.name}/requantize")
        self.graph.add_op(requantize, [src], [dst], place=op)  # before `op` when it feeds it
        self.ctx.rewrote("requantize", [requantize], [label(self.graph, op)])

    def float_outputs(self) -> None:
        """io="float": a graph output computed in int8 (with no fake-quant of its own) gets a DEQUANTIZE;
        its other readers read the int8 value."""
        g = self.graph
        if self.io != "float":
            return
        for t in list(g.outputs):
            writer = g.producer(t)
            if t not in self.quant or writer is None or writer.type == "QUANTIZE" or t in self.integer_ends:
                continue
            q8 = Tensor(f"{t.name}/int8", DType.INT8, t.shape, quant=self.quant[t], shape_signature=t.shape_signature)
            g.set_output(writer, g.outputs_of(writer).index(t), q8)
            for reader, slot in g.consumers(t):
                g.set_input(reader, slot, q8)
            dq = Op("DEQUANTIZE", version=INT8_VERSIONS["DEQUANTIZE"], name=f"{t.name}/dequantize")
            g.add_op(dq, [q8], [t], place=writer)
            self.ctx.rewrote("float-output", [dq], [label(g, writer)])

    def make_clipping_explicit(self) -> None:
        """An op whose fake-quant range is exactly [0, 6] or starts at 0 clips like RELU6 or RELU: say so
        in its fused activation (the same numbers), so later requantization keeps the clip."""
        g = self.graph
        for op in g.iter_ops():
            if fused_activation(op) != "NONE" or op.type not in CLAMPING_OPS or op.type in SAME_QUANT_OPS:
                continue
            t = output(g, op)
            if t not in self.ranged:
                continue
            if t.dtype is not DType.INT8 or t.quant is None or t.quant.per_axis:
                continue
            scale, zp = float(t.quant.scale[0]), int(t.quant.zero_point[0])
            if zp != INT8_MIN:
                continue
            top = (INT8_MAX - zp) * scale
            op.options["fused_activation_function"] = "RELU6" if abs(top - 6.0) <= scale / 2 else "RELU"
            self.ctx.rewrote("implicit-activation", [op], [label(g, op)])


def _int8(t: Tensor) -> bool:
    return t.dtype is DType.INT8 and t.quant is not None and t.quant.is_affine


def _quantize_weight(w: Tensor, axis: int) -> Tensor:
    """Symmetric int8 per output channel, scale = max|w| / 127 (the grid QAT trains weights on)."""
    values = np.asarray(w.data, dtype=np.float64)
    moved = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
    scale = np.abs(moved).max(axis=1) / INT8_MAX
    scale[scale == 0] = 1.0
    q = quantization(scale, np.zeros(scale.size, dtype=np.int64), axis)
    return new_constant(w.name, quantize_values(values, q), DType.INT8, q)


def _quantize_bias(b: Tensor, x: Quantization, w: Quantization) -> Tensor:
    scale = float(x.scale[0]) * w.scale.astype(np.float64)
    values = np.asarray(b.data, dtype=np.float64)
    ints = np.clip(np.round(values / scale), -(2**31), 2**31 - 1).astype(np.int32)
    q = quantization(scale, np.zeros(scale.size, dtype=np.int64), 0)
    return new_constant(b.name, ints, DType.INT32, q)


def _quantize_constant(t: Tensor) -> Tensor:
    """Asymmetric int8 over [min(v, 0), max(v, 0)]: a constant operand is its own calibration data."""
    values = np.asarray(t.data, dtype=np.float64)
    lo, hi = min(float(values.min(initial=0.0)), 0.0), max(float(values.max(initial=0.0)), 0.0)
    scale = (hi - lo) / 255 if hi > lo else 1.0
    zp = int(np.clip(np.round(INT8_MIN - lo / scale), INT8_MIN, INT8_MAX))
    q = quantization([scale], [zp])
    return new_constant(t.name, quantize_values(values, q), DType.INT8, q)


@register
class FoldFakeQuant(Pass):
    """Turn fake-quant into real int8 quantization.

    FAKE_QUANT(min, max, num_bits, narrow_range) and QUANTIZE -> DEQUANTIZE on an activation x
    ==> x itself as int8 with that scale and zero point (UINT8 zero points shift by 128).
    QUANTIZE -> DEQUANTIZE on a float weight ==> the int8 weight QUANTIZE computes (per-axis stays
    per-axis); float weights without fake-quant ==> symmetric per-channel int8, scale max|w| / 127.
    Bias b ==> int32 round(b / (s_in * s_w[c])). An int8 range of exactly [0, 6] or [0, x] is the
    clip a Q/DQ pair implies; it becomes the op's fused RELU6 / RELU. io="float" keeps a QUANTIZE at
    each float input and adds a DEQUANTIZE at each output; io="int8" makes inputs and outputs int8.
    An activation without a fake-quant range stops the pass with an error naming it.
    """

    name = "fold-fake-quant"
    summary = "turn FAKE_QUANT and QUANTIZE->DEQUANTIZE pairs into a fully-int8 graph (weights, int32 bias)"
    requires = frozenset({"no-ir-only-ops"})
    guarantees = frozenset({"no-fake-quant"})
    max_steps = 1
    min_within = 0.999
    io_choices: ClassVar[tuple[str, ...]] = ("float", "int8")

    def __init__(self, io: str = "float") -> None:
        if io not in self.io_choices:
            raise PipelineError(f"fold-fake-quant: io must be float or int8, not '{io}'")
        self.io = io

    def run(self, model: Model, ctx: Context) -> None:
        for graph in model.subgraphs:
            _Fold(graph, ctx, self.io).run()
