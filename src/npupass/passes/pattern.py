"""Matching helpers shared by the rewrite rules: operands, constants, guards.

Op families and quantization helpers live in the IR (ir.ops, ir.quant); they are re-exported here
for the rules' convenience.
"""

from __future__ import annotations

import numpy as np

from npupass.ir.graph import Graph, Op, Tensor
from npupass.ir.ops import CLAMPING_OPS, WEIGHTED_OPS, Weighted
from npupass.ir.quant import dequantize, is_quantized, same_quant, same_quant_values
from npupass.ir.types import DType, Quantization

__all__ = [
    "CLAMPING_OPS",
    "WEIGHTED_OPS",
    "Weighted",
    "is_quantized",
    "same_quant",
    "same_quant_values",
]


def producer_of(graph: Graph, t: Tensor | None, *types: str) -> Op | None:
    """The op writing `t`, if it has one of `types` (any type when none are given)."""
    if t is None:
        return None
    op = graph.producer(t)
    if op is None or (types and op.type not in types):
        return None
    return op


def input_at(graph: Graph, op: Op, slot: int) -> Tensor | None:
    inputs = graph.inputs_of(op)
    return inputs[slot] if slot < len(inputs) else None


def output(graph: Graph, op: Op) -> Tensor:
    return graph.outputs_of(op)[0]


def sole_use_problem(graph: Graph, t: Tensor, what: str) -> str | None:
    """Why `t` cannot disappear into a fused op: it is a graph output or has other consumers."""
    if graph.is_graph_output(t):
        return f"{what} '{t.name}' is a graph output"
    uses = len(graph.consumers(t))
    if uses != 1:
        return f"{what} has {uses} consumers"
    return None


def shared_problem(graph: Graph, t: Tensor, owner: Op, what: str) -> str | None:
    """Why constant `t` may not be rewritten for `owner` alone: another op reads it too."""
    others = {op for op, _ in graph.consumers(t) if op is not owner}
    if others:
        return f"{what} '{t.name}' is shared with {len(others)} other op{'s' if len(others) > 1 else ''}"
    return None


def same_shape_problem(source: Tensor, result: Tensor) -> str | None:
    """Why `result` cannot be replaced by `source`: a broadcast made it a different shape."""
    if source.shape != result.shape or (source.shape_signature or source.shape) != (
        result.shape_signature or result.shape
    ):
        shape = list(source.shape) if source.shape is not None else "unknown"
        wanted = list(result.shape) if result.shape is not None else "unknown"
        return f"a broadcast constant makes the shape {wanted}, not {shape}"
    return None


def fused_activation(op: Op) -> str | None:
    """The op's fused activation ("NONE", "RELU" ...), or None when its options have no such field."""
    value = op.options.get("fused_activation_function")
    return value if isinstance(value, str) else None


def constant_operand(graph: Graph, op: Op, slots: tuple[int, ...] = (0, 1)) -> tuple[int, Tensor, Tensor] | None:
    """For a binary op with one constant input among `slots`: (constant slot, constant, other input)."""
    inputs = graph.inputs_of(op)
    if len(inputs) != 2 or inputs[0] is None or inputs[1] is None:
        return None
    for slot in slots:
        const, other = inputs[slot], inputs[1 - slot]
        if const is not None and other is not None and const.is_constant and not other.is_constant:
            return slot, const, other
    return None


def real_values(t: Tensor) -> np.ndarray | None:
    """A dense constant's real values as float64 (dequantized when quantized), else None."""
    if t.data is None or t.sparsity is not None or t.dtype.numpy is None or t.dtype.numpy.kind not in "fiu":
        return None
    with np.errstate(invalid="ignore", over="ignore"):  # damaged files: judged by the caller
        values = np.asarray(t.data, dtype=np.float64)
    if t.dtype.is_float:
        return values
    q = t.quant
    if q is None or not q.is_affine:
        return None
    return dequantize(values, q)


def channel_vector(values: np.ndarray, channels: int) -> np.ndarray | None:
    """`values` as one factor per channel of the last axis (length `channels`), or None if it
    varies along any other axis (a scalar is broadcast)."""
    shape = values.shape
    if any(d != 1 for d in shape[:-1]):
        return None
    flat = values.reshape(-1)
    if flat.size == 1:
        return np.full(channels, flat[0], dtype=values.dtype)
    return flat if flat.size == channels else None


def scalar(t: Tensor) -> float | None:
    """The single real value of a constant whose elements are all equal, else None."""
    values = real_values(t)
    if values is None or values.size == 0:
        return None
    first = float(values.reshape(-1)[0])
    return first if np.all(values == first) else None


def new_constant(
    name: str, values: np.ndarray, dtype: DType = DType.FLOAT32, quant: Quantization | None = None
) -> Tensor:
    """A constant tensor holding `values` (converted to `dtype`), read-only like imported data."""
    npdt = dtype.numpy
    assert npdt is not None
    data = np.ascontiguousarray(values, dtype=npdt)
    data.flags.writeable = False
    return Tensor(name, dtype, tuple(data.shape), data, quant=quant, shape_signature=None)


def replace_chain(graph: Graph, chain: list[Op], new: Op, inputs: list[Tensor | None]) -> None:
    """Replace the ops of `chain` (the last one writes the result) by `new` reading `inputs`;
    the chain's intermediate tensors and the constants only it read go too."""
    result = output(graph, chain[-1])
    left = [t for op in chain for t in (*graph.inputs_of(op), *graph.outputs_of(op)) if t is not None]
    for op in chain:
        graph.remove_op(op)
    graph.add_op(new, inputs, [result])
    graph.drop_unused(*left)
