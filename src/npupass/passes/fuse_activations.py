"""fuse-activations: activations into their producer's fused_activation_function, clamps as RELUs,
and the decomposed hard-swish as HARD_SWISH."""

from __future__ import annotations

from dataclasses import dataclass

from npupass.ir.graph import Graph, Op, Tensor
from npupass.passes.manager import Match, RewritePass, Rule, register
from npupass.passes.pattern import (
    CLAMPING_OPS,
    constant_operand,
    fused_activation,
    is_quantized,
    output,
    producer_of,
    replace_chain,
    same_quant,
    same_shape_problem,
    scalar,
    sole_use_problem,
)

ACTIVATIONS = frozenset({"RELU", "RELU6", "RELU_N1_TO_1", "TANH"})

# LiteRT 2.3's kernels, measured: the clamping ops apply RELU, RELU6 and RELU_N1_TO_1, but CONV_2D,
# DEPTHWISE_CONV_2D, ADD, MUL and the pools silently ignore a fused TANH and FULLY_CONNECTED refuses it.
CLAMPS = frozenset({"RELU", "RELU6", "RELU_N1_TO_1"})

# Clamp bounds (low, high) of the RELU family; None is unbounded.
CLAMP_OPS: dict[tuple[float | None, float | None], str] = {
    (0.0, None): "RELU",
    (0.0, 6.0): "RELU6",
    (-1.0, 1.0): "RELU_N1_TO_1",
    (0.0, 1.0): "RELU_0_TO_1",
}


def _fuse_into(graph: Graph, producer: Op, consumer: Op, activation: str) -> None:
    """`producer` takes `activation` and writes `consumer`'s output; `consumer` goes."""
    inner, result = output(graph, producer), output(graph, consumer)
    graph.remove_op(consumer)
    graph.set_output(producer, 0, result)
    producer.options["fused_activation_function"] = activation
    graph.drop_unused(inner)


@dataclass
class ActivationMatch(Match):
    producer: Op
    activation: Op


class FuseActivation(Rule):
    """P(...) -> ACT  ==>  P(..., fused_activation_function=ACT), for ACT in RELU, RELU6, RELU_N1_TO_1."""

    name = "fuse-activation"
    anchors = ACTIVATIONS
    verb = "fused with"

    def match(self, graph: Graph, op: Op) -> Match | None:
        producer = producer_of(graph, graph.inputs_of(op)[0])
        if producer is None or fused_activation(producer) is None:
            return None
        return ActivationMatch([producer, op], producer, op)

    def check(self, graph: Graph, m: Match) -> str | None:
        assert isinstance(m, ActivationMatch)
        p, act = m.producer, m.activation
        if act.type not in CLAMPS:
            return f"LiteRT's {p.type} kernel does not apply a fused {act.type}"
        if p.type not in CLAMPING_OPS:
            return f"LiteRT's {p.type} kernel does not clamp its output with a fused activation"
        if fused_activation(p) != "NONE":
            return f"{p.type} already has fused {fused_activation(p)}"
        inner = output(graph, p)
        problem = sole_use_problem(graph, inner, f"{p.type} output")
        if problem:
            return problem
        problem = same_shape_problem(inner, output(graph, act))
        if problem:
            return problem
        if not same_quant(inner, output(graph, act)):
            return f"{p.type} output and {act.type} output are quantized differently; fusing would change the numbers"
        return None

    def rewrite(self, graph: Graph, m: Match) -> list[Op]:
        assert isinstance(m, ActivationMatch)
        _fuse_into(graph, m.producer, m.activation, m.activation.type)
        return [m.producer]


@dataclass
class ClampMatch(Match):
    source: Tensor
    low: float | None
    high: float | None
    replaced: list[Op]


def _bound(graph: Graph, op: Op) -> tuple[float, Tensor] | None:
    """For MINIMUM/MAXIMUM(x, k) with a scalar constant k: (k, x)."""
    found = constant_operand(graph, op)
    if found is None:
        return None
    _, const, other = found
    k = scalar(const)
    return None if k is None else (k, other)


def _bounds_of(graph: Graph, op: Op) -> tuple[float | None, float | None, Tensor] | None:
    """(low, high, x) for RELU(x), MAXIMUM(x, low) or MINIMUM(x, high)."""
    if op.type == "RELU":
        x = graph.inputs_of(op)[0]
        return None if x is None else (0.0, None, x)
    found = _bound(graph, op)
    if found is None:
        return None
    k, x = found
    return (k, None, x) if op.type == "MAXIMUM" else (None, k, x)


class ClampToRelu(Rule):
    """MAXIMUM(x, 0) ==> RELU(x); MINIMUM(MAXIMUM(x, lo), hi) and MAXIMUM(MINIMUM(x, hi), lo) and
    MINIMUM(RELU(x), hi) ==> the RELU-family op with bounds (lo, hi): RELU6, RELU_N1_TO_1, RELU_0_TO_1."""

    name = "clamp-to-relu"
    anchors = frozenset({"MINIMUM", "MAXIMUM"})
    verb = "turned into a RELU with"

    def match(self, graph: Graph, op: Op) -> Match | None:
        outer = _bound(graph, op)
        if outer is None:
            return None
        k, x = outer
        low, high = (k, None) if op.type == "MAXIMUM" else (None, k)
        inner_op = producer_of(graph, x, "RELU", "MAXIMUM" if op.type == "MINIMUM" else "MINIMUM")
        inner = _bounds_of(graph, inner_op) if inner_op is not None else None
        if inner_op is not None and inner is not None:
            inner_low, inner_high, source = inner
            bounds = (inner_low if low is None else low, inner_high if high is None else high)
            if bounds in CLAMP_OPS:
                return ClampMatch([op, inner_op], source, bounds[0], bounds[1], [inner_op, op])
        if (low, high) in CLAMP_OPS:
            return ClampMatch([op], x, low, high, [op])
        return None

    def check(self, graph: Graph, m: Match) -> str | None:
        assert isinstance(m, ClampMatch)
        if len(m.replaced) == 2:
            problem = sole_use_problem(graph, output(graph, m.replaced[0]), f"{m.replaced[0].type} output")
            if problem:
                return problem
        result = output(graph, m.replaced[-1])
        problem = same_shape_problem(m.source, result)
        if problem:
            return problem
        for t in [m.source, *(output(graph, op) for op in m.replaced[:-1])]:
            if not same_quant(t, result):
                return "input and output are quantized differently"
        if is_quantized(result):
            q = result.quant
            assert q is not None
            for bound in (m.low, m.high):
                if bound is not None and abs(bound / float(q.scale[0]) - round(bound / float(q.scale[0]))) > 1e-3:
                    return f"bound {bound:g} is not on the quantization grid"
        return None

    def describe(self, graph: Graph, m: Match) -> str:
        return " + ".join(f"{op.type} '{output(graph, op).name}'" for op in m.ops) + " not turned into a RELU"

    def rewrite(self, graph: Graph, m: Match) -> list[Op]:
        assert isinstance(m, ClampMatch)
        kind = CLAMP_OPS[(m.low, m.high)]
        relu = Op(kind, name=m.replaced[-1].name)
        relu.seq = m.replaced[-1].seq
        replace_chain(graph, m.replaced, relu, [m.source])
        return [relu]


@dataclass
class HardSwishMatch(Match):
    x: Tensor
    replaced: list[Op]


def _relu6_of_x_plus_3(graph: Graph, t: Tensor) -> tuple[Tensor, list[Op]] | None:
    """If t = RELU6(x + 3) (as ADD then RELU6, or ADD with fused RELU6): (x, those ops)."""
    relu6 = producer_of(graph, t, "RELU6", "ADD")
    if relu6 is None:
        return None
    ops = [relu6]
    add = relu6
    if relu6.type == "RELU6":
        add_found = producer_of(graph, graph.inputs_of(relu6)[0], "ADD")
        if add_found is None or fused_activation(add_found) != "NONE":
            return None
        add = add_found
        ops.insert(0, add)
    elif fused_activation(add) != "RELU6":
        return None
    found = constant_operand(graph, add)
    if found is None or scalar(found[1]) != 3.0:
        return None
    return found[2], ops


def _times_one_sixth(graph: Graph, op: Op) -> Tensor | None:
    """If op is DIV(y, 6) or MUL(y, 1/6) (either order) with no fused activation: y."""
    if op.type not in ("MUL", "DIV") or fused_activation(op) != "NONE":
        return None
    found = constant_operand(graph, op, (1,) if op.type == "DIV" else (0, 1))
    if found is None:
        return None
    k = scalar(found[1])
    if k is None or abs(k - (6.0 if op.type == "DIV" else 1.0 / 6.0)) > 1e-6 * abs(k):
        return None
    return found[2]


def _x_times(graph: Graph, op: Op, factor: Tensor) -> Tensor | None:
    """If op = MUL(x, factor) or MUL(factor, x): x."""
    if op.type != "MUL" or fused_activation(op) != "NONE":
        return None
    a, b = graph.inputs_of(op)[:2]
    return b if a is factor else a if b is factor else None


class HardSwish(Rule):
    """x * RELU6(x + 3) / 6, with the division as DIV by 6 or MUL by 1/6, before or after the product,
    ==> HARD_SWISH(x)."""

    name = "hard-swish"
    anchors = frozenset({"MUL", "DIV"})
    verb = "turned into HARD_SWISH with"

    def match(self, graph: Graph, op: Op) -> Match | None:
        # (x * r) / 6, where r = RELU6(x + 3)
        product = _times_one_sixth(graph, op)
        mul = producer_of(graph, product, "MUL")
        if mul is not None and fused_activation(mul) == "NONE":
            for factor in graph.inputs_of(mul)[:2]:
                found = _relu6_of_x_plus_3(graph, factor) if factor is not None else None
                if found and factor is not None and _x_times(graph, mul, factor) is found[0]:
                    return HardSwishMatch([op, mul], found[0], [*found[1], mul, op])
        # x * (r / 6)
        if op.type == "MUL":
            for factor in graph.inputs_of(op)[:2]:
                scaled = producer_of(graph, factor)
                r = _times_one_sixth(graph, scaled) if scaled is not None else None
                found = _relu6_of_x_plus_3(graph, r) if r is not None else None
                if found and scaled is not None and factor is not None and _x_times(graph, op, factor) is found[0]:
                    return HardSwishMatch([op, scaled], found[0], [*found[1], scaled, op])
        return None

    def check(self, graph: Graph, m: Match) -> str | None:
        assert isinstance(m, HardSwishMatch)
        if fused_activation(m.replaced[-1]) != "NONE":
            return f"the final {m.replaced[-1].type} has a fused activation"
        if is_quantized(output(graph, m.replaced[-1])) or not m.x.dtype.is_float:
            return "quantized hard-swish chains round at every step; HARD_SWISH would change the numbers"
        problem = same_shape_problem(m.x, output(graph, m.replaced[-1]))
        if problem:
            return problem
        for op in m.replaced[:-1]:
            problem = sole_use_problem(graph, output(graph, op), f"{op.type} output")
            if problem:
                return problem
        return None

    def describe(self, graph: Graph, m: Match) -> str:
        assert isinstance(m, HardSwishMatch)
        return f"x * relu6(x + 3) / 6 on '{m.x.name}' not turned into HARD_SWISH"

    def rewrite(self, graph: Graph, m: Match) -> list[Op]:
        assert isinstance(m, HardSwishMatch)
        last = m.replaced[-1]
        swish = Op("HARD_SWISH", name=last.name)
        swish.seq = last.seq
        replace_chain(graph, m.replaced, swish, [m.x])
        return [swish]


@register
class FuseActivations(RewritePass):
    """Fuse activations into the op that produces their input.

    P -> RELU|RELU6|RELU_N1_TO_1 ==> P with that fused activation (bit-exact: the clamp moves into
    P's output stage; in quantized graphs only when P's output and the activation's output share one
    quantization). MINIMUM/MAXIMUM clamps ==> RELU, RELU6, RELU_N1_TO_1, RELU_0_TO_1.
    x * RELU6(x + 3) / 6 ==> HARD_SWISH(x) (float graphs).
    """

    name = "fuse-activations"
    summary = "fuse RELU/RELU6/RELU_N1_TO_1 into producers; clamps -> RELU6; x*relu6(x+3)/6 -> HARD_SWISH"
    rules = (ClampToRelu(), HardSwish(), FuseActivation())
