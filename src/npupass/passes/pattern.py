"""Matching helpers shared by the rewrite rules: operand patterns, constants, guards."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from npupass.ir.graph import Graph, Op, Tensor
from npupass.ir.types import DType, Quantization


class Weighted(NamedTuple):
    """Where a weighted op keeps its operands: input slots, and the weight's output-channel axis."""

    input: int
    weight: int
    bias: int
    axis: int


WEIGHTED_OPS: dict[str, Weighted] = {
    "CONV_2D": Weighted(input=0, weight=1, bias=2, axis=0),  # W [O, H, W, I]
    "DEPTHWISE_CONV_2D": Weighted(input=0, weight=1, bias=2, axis=3),  # W [1, H, W, O]
    "FULLY_CONNECTED": Weighted(input=0, weight=1, bias=2, axis=0),  # W [O, I]
    "TRANSPOSE_CONV": Weighted(input=2, weight=1, bias=3, axis=0),  # (output_shape, W [O, H, W, I], x, b)
}

# Ops whose fused_activation_function is a clamp of the output (LiteRT 2.3): the RELU family can
# fuse into them. Others with the field refuse it (CONCATENATION, L2_NORMALIZATION) or apply it
# inside a recurrence (RNN, LSTM, SVDF).
CLAMPING_OPS = frozenset(
    {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "ADD", "SUB", "MUL", "DIV"}
    | {"AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"}
)


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
    scale, zp = _broadcast(q, values.ndim)
    return (values - zp) * scale


def _broadcast(q: Quantization, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    scale = q.scale.astype(np.float64)
    zp = q.zero_point.astype(np.float64) if q.zero_point.size else np.zeros(1)
    if q.per_axis and ndim:
        shape = [1] * ndim
        shape[q.axis] = -1
        return scale.reshape(shape), zp.reshape(shape) if zp.size > 1 else zp
    return scale, zp


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


def same_quant_values(qa: Quantization | None, qb: Quantization | None) -> bool:
    """The same affine quantization (scales, zero points, axis), or both none."""
    if qa is qb:
        return True
    if qa is None or not qa.is_affine or qb is None or not qb.is_affine:
        return (qa is None or not qa.is_affine) and (qb is None or not qb.is_affine)
    # shapes, then values: np.array_equal costs more than the comparison on these tiny arrays
    return (
        qa.scale.shape == qb.scale.shape
        and qa.zero_point.shape == qb.zero_point.shape
        and bool((qa.scale == qb.scale).all())
        and bool((qa.zero_point == qb.zero_point).all())
        and (not qa.per_axis or qa.axis == qb.axis)
    )


def same_quant(a: Tensor, b: Tensor) -> bool:
    """Same element type and the same affine quantization (or both unquantized)."""
    return a.dtype is b.dtype and same_quant_values(a.quant, b.quant)


def is_quantized(t: Tensor) -> bool:
    return t.dtype in (DType.INT8, DType.UINT8, DType.INT16) and t.quant is not None and t.quant.is_affine


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
    position = graph.position(chain[-1])
    for op in chain:
        graph.remove_op(op)
    graph.add_op(new, inputs, [result], place=position)
    graph.drop_unused(*left)


# --- patterns: operand trees that read like the algebra ---------------------------------------------
# `op("ADD", op(WEIGHTED, name="p"), const("d"), commutative=True, name="add")` matches a tensor
# written by an ADD whose operands are a weighted op's output and a constant, in either order, and
# binds the ops and the constant. A failed match says why (NoMatch.reason), for --explain and tests.


@dataclass
class NoMatch:
    """Why a pattern did not match (falsy, so `if not found:` reads naturally)."""

    reason: str

    def __bool__(self) -> bool:
        return False


@dataclass
class Bindings:
    """What a pattern bound: ops, tensors and constant values by name, and the matched ops in data
    order (operands before the ops that read them)."""

    ops: dict[str, Op] = field(default_factory=dict)
    tensors: dict[str, Tensor] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)
    matched: list[Op] = field(default_factory=list)

    def op(self, name: str) -> Op:
        return self.ops[name]

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]

    def value(self, name: str) -> np.ndarray:
        return self.values[name]

    def copy(self) -> Bindings:
        return Bindings(dict(self.ops), dict(self.tensors), dict(self.values), list(self.matched))


class Pattern:
    """Matches a tensor (an operand); extends `b` in place, or returns NoMatch."""

    def match(self, graph: Graph, t: Tensor | None, b: Bindings) -> NoMatch | None:
        raise NotImplementedError


@dataclass
class Var(Pattern):
    """Any tensor; a name bound twice must be the same tensor (x * relu6(x + 3))."""

    name: str | None = None

    def match(self, graph: Graph, t: Tensor | None, b: Bindings) -> NoMatch | None:
        if t is None:
            return NoMatch("operand is omitted")
        if self.name is not None:
            seen = b.tensors.setdefault(self.name, t)
            if seen is not t:
                return NoMatch(f"'{t.name}' is not '{seen.name}'")
        return None


@dataclass
class Const(Pattern):
    """A dense constant (its real values captured); with `equals`, every element that value
    (within relative `rtol`)."""

    name: str | None = None
    equals: float | None = None
    rtol: float = 0.0

    def match(self, graph: Graph, t: Tensor | None, b: Bindings) -> NoMatch | None:
        values = real_values(t) if t is not None else None
        if t is None or values is None:
            return NoMatch(f"'{t.name if t else '?'}' is not a constant")
        if self.equals is not None:
            k = scalar(t)
            if k is None or abs(k - self.equals) > self.rtol * abs(k):
                return NoMatch(f"constant '{t.name}' is not {self.equals:g}")
        if self.name is not None:
            b.tensors[self.name] = t
            b.values[self.name] = values
        return None


@dataclass
class OpPattern(Pattern):
    """A tensor written (as output 0) by an op of one of `types` (any type when empty) whose first
    operands match `operands` (both orders of two when `commutative`), and that passes `where`
    (returns why not, or None). `one_use` / `not_output` constrain the tensor itself: it must have
    exactly one reader, and must not be a graph output (an intermediate a fusion swallows)."""

    types: frozenset[str]
    operands: tuple[Pattern, ...] = ()
    name: str | None = None
    commutative: bool = False
    one_use: bool = False
    not_output: bool = False
    where: Callable[[Graph, Op], str | None] | None = None
    exact_arity: bool = False

    def match(self, graph: Graph, t: Tensor | None, b: Bindings) -> NoMatch | None:
        writer = graph.producer(t) if t is not None else None
        if t is None or writer is None:
            return NoMatch(f"'{t.name if t else '?'}' has no producer")
        if self.not_output and graph.is_graph_output(t):
            return NoMatch(f"'{t.name}' is a graph output")
        if self.one_use and len(graph.nx._succ[t]) != 1:
            return NoMatch(f"'{t.name}' has {len(graph.consumers(t))} consumers")
        if graph.outputs_of(writer)[0] is not t:
            return NoMatch(f"'{t.name}' is not the first output of {writer.type}")
        return self.match_op(graph, writer, b)

    def match_op(self, graph: Graph, op: Op, b: Bindings) -> NoMatch | None:
        """Match at `op` itself (the anchor of a rule)."""
        if self.types and op.type not in self.types:
            return NoMatch(f"{op.type} is not {' or '.join(sorted(self.types))}")
        if self.where is not None:
            reason = self.where(graph, op)
            if reason is not None:
                return NoMatch(reason)
        inputs = graph.inputs_of(op)
        n = len(self.operands)
        if len(inputs) < n or (self.exact_arity and len(inputs) != n):
            return NoMatch(f"{op.type} has {len(inputs)} operands")
        orders = [inputs[:n]]
        if self.commutative and n == 2:
            orders.append([inputs[1], inputs[0]])
        failed: NoMatch | None = None
        for operands in orders:
            trial = b.copy()
            failed = None
            for p, t in zip(self.operands, operands, strict=True):
                failed = p.match(graph, t, trial)
                if failed is not None:
                    break
            if failed is None:
                if self.name is not None:
                    trial.ops[self.name] = op
                trial.matched.append(op)
                b.ops, b.tensors, b.values, b.matched = trial.ops, trial.tensors, trial.values, trial.matched
                return None
        return failed


@dataclass
class Either(Pattern):
    """The first of `choices` that matches."""

    choices: tuple[Pattern, ...]

    def match(self, graph: Graph, t: Tensor | None, b: Bindings) -> NoMatch | None:
        failed: NoMatch | None = None
        for choice in self.choices:
            trial = b.copy()
            failed = choice.match(graph, t, trial)
            if failed is None:
                b.ops, b.tensors, b.values, b.matched = trial.ops, trial.tensors, trial.values, trial.matched
                return None
        return failed


def op(
    types: str | Iterable[str] = (),
    *operands: Pattern,
    name: str | None = None,
    commutative: bool = False,
    one_use: bool = False,
    not_output: bool = False,
    where: Callable[[Graph, Op], str | None] | None = None,
    exact_arity: bool = False,
) -> OpPattern:
    """An op pattern: `op("MUL", var("x"), const("k"), commutative=True)`."""
    kinds = frozenset({types} if isinstance(types, str) else types)
    return OpPattern(kinds, operands, name, commutative, one_use, not_output, where, exact_arity)


def var(name: str | None = None) -> Var:
    return Var(name)


def const(name: str | None = None, equals: float | None = None, rtol: float = 0.0) -> Const:
    return Const(name, equals, rtol)


def either(*choices: Pattern) -> Either:
    return Either(choices)


def intermediate(p: OpPattern) -> OpPattern:
    """`p` as an intermediate a fusion swallows: one reader, not a graph output."""
    return dataclasses.replace(p, one_use=True, not_output=True)


def match(pattern: OpPattern, graph: Graph, anchor: Op) -> Bindings | NoMatch:
    """Match `pattern` with its root at `anchor`: the bindings, or why not."""
    b = Bindings()
    failed = pattern.match_op(graph, anchor, b)
    return b if failed is None else failed


def fused(activation: str = "NONE") -> Callable[[Graph, Op], str | None]:
    """A `where` guard: the op's fused activation is `activation`."""

    def guard(graph: Graph, op: Op) -> str | None:
        found = fused_activation(op)
        return None if found == activation else f"{op.type} has fused {found}"

    return guard


def has_fused_activation(graph: Graph, op: Op) -> str | None:
    """A `where` guard: the op's options have a fused_activation_function field."""
    return None if fused_activation(op) is not None else f"{op.type} has no fused activation"
