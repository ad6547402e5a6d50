"""fuse-activations: activations into their producer's fused_activation_function, clamps as RELUs,
and the decomposed hard-swish as HARD_SWISH."""

from __future__ import annotations

from dataclasses import dataclass

from npupass.ir.graph import Graph, Op, Tensor
from npupass.passes.manager import Match, Replacement, RewritePass, Rule, register
from npupass.passes.pattern import (
    CLAMPING_OPS,
    Bindings,
    NoMatch,
    OpPattern,
    Pattern,
    const,
    either,
    fused,
    fused_activation,
    has_fused_activation,
    is_quantized,
    match,
    op,
    output,
    same_quant,
    same_shape_problem,
    scalar,
    sole_use_problem,
    var,
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


@dataclass
class ActivationMatch(Match):
    producer: Op
    activation: Op


# ACT(P(...)) where P's options carry a fused activation
_ACTIVATION = op(ACTIVATIONS, op((), name="p", where=has_fused_activation), name="act")


class FuseActivation(Rule[ActivationMatch]):
    """P(...) -> ACT  ==>  P(..., fused_activation_function=ACT), for ACT in RELU, RELU6, RELU_N1_TO_1."""

    name = "fuse-activation"
    anchors = ACTIVATIONS
    verb = "fused with"

    def match(self, graph: Graph, op: Op) -> ActivationMatch | None:
        found = match(_ACTIVATION, graph, op)
        if isinstance(found, NoMatch):
            return None
        return ActivationMatch([found.op("p"), op], found.op("p"), op)

    def check(self, graph: Graph, m: ActivationMatch) -> str | None:
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

    def rewrite(self, graph: Graph, m: ActivationMatch) -> Replacement:
        p = m.producer
        return Replacement(
            [p, m.activation],
            [(p, graph.inputs_of(p), [output(graph, m.activation), *graph.outputs_of(p)[1:]])],
            place=p,
            options={p: {"fused_activation_function": m.activation.type}},
        )


@dataclass
class ClampMatch(Match):
    source: Tensor
    low: float | None
    high: float | None
    replaced: list[Op]


# MINIMUM / MAXIMUM with a constant, in either order; the inner op of a two-sided clamp
_BOUND = {
    kind: op(kind, var("x"), const("k"), commutative=True, exact_arity=True, name="outer")
    for kind in ("MINIMUM", "MAXIMUM")
}
_INNER = {
    outer: either(
        op("RELU", var("source"), name="inner"),
        op(inner, var("source"), const("j"), commutative=True, exact_arity=True, name="inner"),
    )
    for outer, inner in (("MINIMUM", "MAXIMUM"), ("MAXIMUM", "MINIMUM"))
}


def _inner_bounds(b: Bindings) -> tuple[float | None, float | None] | None:
    """(low, high) of the inner op: RELU (0, inf), MAXIMUM(x, j) (j, inf), MINIMUM(x, j) (-inf, j)."""
    inner = b.op("inner")
    if inner.type == "RELU":
        return 0.0, None
    j = scalar(b.tensor("j"))
    if j is None:
        return None
    return (j, None) if inner.type == "MAXIMUM" else (None, j)


class ClampToRelu(Rule[ClampMatch]):
    """MAXIMUM(x, 0) ==> RELU(x); MINIMUM(MAXIMUM(x, lo), hi) and MAXIMUM(MINIMUM(x, hi), lo) and
    MINIMUM(RELU(x), hi) ==> the RELU-family op with bounds (lo, hi): RELU6, RELU_N1_TO_1, RELU_0_TO_1."""

    name = "clamp-to-relu"
    anchors = frozenset({"MINIMUM", "MAXIMUM"})
    verb = "turned into a RELU with"

    def match(self, graph: Graph, op: Op) -> ClampMatch | None:
        outer = match(_BOUND[op.type], graph, op)
        k = scalar(outer.tensor("k")) if not isinstance(outer, NoMatch) else None
        if isinstance(outer, NoMatch) or k is None or outer.tensor("x").is_constant:
            return None
        low, high = (k, None) if op.type == "MAXIMUM" else (None, k)
        b = outer.copy()
        if _INNER[op.type].match(graph, outer.tensor("x"), b) is None and not b.tensor("source").is_constant:
            inner = _inner_bounds(b)
            if inner is not None:
                bounds = (inner[0] if low is None else low, inner[1] if high is None else high)
                if bounds in CLAMP_OPS:
                    inner_op = b.op("inner")
                    return ClampMatch([op, inner_op], b.tensor("source"), *bounds, [inner_op, op])
        if (low, high) in CLAMP_OPS:
            return ClampMatch([op], outer.tensor("x"), low, high, [op])
        return None

    def check(self, graph: Graph, m: ClampMatch) -> str | None:
        if len(m.replaced) == 2:
            problem = sole_use_problem(graph, output(graph, m.replaced[0]), f"{m.replaced[0].type} output")
            if problem:
                return problem
        result = output(graph, m.replaced[-1])
        problem = same_shape_problem(m.source, result)
        if problem:
            return problem
        for t in [m.source, *(output(graph, step) for step in m.replaced[:-1])]:
            if not same_quant(t, result):
                return "input and output are quantized differently"
        if is_quantized(result):
            q = result.quant
            assert q is not None
            for bound in (m.low, m.high):
                if bound is not None and abs(bound / float(q.scale[0]) - round(bound / float(q.scale[0]))) > 1e-3:
                    return f"bound {bound:g} is not on the quantization grid"
        return None

    def describe(self, graph: Graph, m: ClampMatch) -> str:
        return " + ".join(f"{op.type} '{output(graph, op).name}'" for op in m.ops) + " not turned into a RELU"

    def rewrite(self, graph: Graph, m: ClampMatch) -> Replacement:
        relu = Op(CLAMP_OPS[(m.low, m.high)], name=m.replaced[-1].name)
        return Replacement(m.replaced, [(relu, [m.source], [output(graph, m.replaced[-1])])])


@dataclass
class HardSwishMatch(Match):
    x: Tensor
    replaced: list[Op]


# RELU6(x + 3): an ADD then RELU6, or an ADD with fused RELU6
_RELU6_X_PLUS_3 = either(
    op("RELU6", op("ADD", var("x"), const(equals=3.0), commutative=True, exact_arity=True, where=fused("NONE"))),
    op("ADD", var("x"), const(equals=3.0), commutative=True, exact_arity=True, where=fused("RELU6")),
)


def _divided_by_6(y: Pattern, name: str | None = None) -> list[Pattern]:
    """DIV(y, 6) or MUL(y, 1/6) (either order), no fused activation."""
    sixth = {"where": fused("NONE"), "exact_arity": True, "name": name}
    return [
        op("DIV", y, const(equals=6.0, rtol=1e-6), **sixth),  # type: ignore[arg-type]
        op("MUL", y, const(equals=1 / 6, rtol=1e-6), commutative=True, **sixth),  # type: ignore[arg-type]
    ]


# (x * r) / 6 and x * (r / 6), where r = RELU6(x + 3)
_PRODUCT = op("MUL", var("x"), _RELU6_X_PLUS_3, commutative=True, exact_arity=True, where=fused("NONE"))
_HARD_SWISH = [
    *_divided_by_6(_PRODUCT, name="last"),
    op("MUL", var("x"), either(*_divided_by_6(_RELU6_X_PLUS_3)), commutative=True, where=fused("NONE"), name="last"),
]


class HardSwish(Rule[HardSwishMatch]):
    """x * RELU6(x + 3) / 6, with the division as DIV by 6 or MUL by 1/6, before or after the product,
    ==> HARD_SWISH(x)."""

    name = "hard-swish"
    anchors = frozenset({"MUL", "DIV"})
    verb = "turned into HARD_SWISH with"

    def match(self, graph: Graph, op: Op) -> HardSwishMatch | None:
        for pattern in _HARD_SWISH:
            assert isinstance(pattern, OpPattern)
            found = match(pattern, graph, op)
            if not isinstance(found, NoMatch):
                return HardSwishMatch([op, found.matched[-2]], found.tensor("x"), found.matched)
        return None

    def check(self, graph: Graph, m: HardSwishMatch) -> str | None:
        if fused_activation(m.replaced[-1]) != "NONE":
            return f"the final {m.replaced[-1].type} has a fused activation"
        if is_quantized(output(graph, m.replaced[-1])) or not m.x.dtype.is_float:
            return "quantized hard-swish chains round at every step; HARD_SWISH would change the numbers"
        problem = same_shape_problem(m.x, output(graph, m.replaced[-1]))
        if problem:
            return problem
        for step in m.replaced[:-1]:
            problem = sole_use_problem(graph, output(graph, step), f"{step.type} output")
            if problem:
                return problem
        return None

    def describe(self, graph: Graph, m: HardSwishMatch) -> str:
        return f"x * relu6(x + 3) / 6 on '{m.x.name}' not turned into HARD_SWISH"

    def rewrite(self, graph: Graph, m: HardSwishMatch) -> Replacement:
        last = m.replaced[-1]
        swish = Op("HARD_SWISH", name=last.name)
        return Replacement(m.replaced, [(swish, [m.x], [output(graph, last)])])


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
