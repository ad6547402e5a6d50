"""fuse-gelu and lower-erf: the exact GELU as one op, and any other ERF (an IR-only op the ONNX
frontend makes from Erf) as a polynomial of TFLite ops."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from npupass.ir.graph import Graph, Op, Tensor
from npupass.passes.manager import Match, Replacement, RewritePass, Rule, register
from npupass.passes.pattern import NoMatch, const, either, match, new_constant, op, output, same_shape_problem, var

# erf(x / sqrt 2): the argument as DIV by sqrt 2 or MUL by 1 / sqrt 2
_ERF = op(
    "ERF",
    either(
        op("DIV", var("x"), const(equals=math.sqrt(2), rtol=1e-3), exact_arity=True),
        op("MUL", var("x"), const(equals=1 / math.sqrt(2), rtol=1e-3), commutative=True, exact_arity=True),
    ),
    name="erf",
)
_ONE_PLUS_ERF = op("ADD", _ERF, const(equals=1.0), commutative=True, exact_arity=True)
_HALF = const(equals=0.5)
# x * 0.5 * (1 + erf(x / sqrt 2)), as (x * (1 + erf)) * 0.5 or (x * 0.5) * (1 + erf)
_GELU = [
    op("MUL", op("MUL", var("x"), _ONE_PLUS_ERF, commutative=True), _HALF, commutative=True, exact_arity=True),
    op("MUL", op("MUL", var("x"), _HALF, commutative=True), _ONE_PLUS_ERF, commutative=True, exact_arity=True),
]


@dataclass
class GeluMatch(Match):
    x: Tensor


class FuseGelu(Rule[GeluMatch]):
    """x * 0.5 * (1 + erf(x / sqrt 2)) ==> GELU(x) (approximate=False): PyTorch's exact GELU, which
    TFLite has as one op and no ERF for."""

    name = "fuse-gelu"
    anchors = frozenset({"MUL"})
    verb = "turned into GELU with"

    def match(self, graph: Graph, op: Op) -> GeluMatch | None:
        for pattern in _GELU:
            found = match(pattern, graph, op)
            if not isinstance(found, NoMatch):
                return GeluMatch(found.matched[::-1], found.tensor("x"))
        return None

    def check(self, graph: Graph, m: GeluMatch) -> str | None:
        if not m.x.dtype.is_float:
            return f"{m.x.dtype} input"
        return same_shape_problem(m.x, output(graph, m.ops[0]))

    def describe(self, graph: Graph, m: GeluMatch) -> str:
        return f"x * 0.5 * (1 + erf(x / sqrt 2)) on '{m.x.name}' not turned into GELU"

    def rewrite(self, graph: Graph, m: GeluMatch) -> Replacement:
        last = m.ops[0]
        gelu = Op("GELU", {"approximate": False}, "GeluOptions", name=last.name)
        # data order: the replacement refuses when an intermediate (the ERF's output, say) is read
        # elsewhere or is a graph output
        return Replacement(m.ops[::-1], [(gelu, [m.x], [output(graph, last)])])


@register
class FuseGeluPass(RewritePass):
    """x * 0.5 * (1 + erf(x / sqrt 2)) ==> GELU(x), in either association of the products, with the
    division by sqrt 2 as DIV or MUL. Guards (the framework's): no intermediate is read outside the
    chain or is a graph output."""

    name = "fuse-gelu"
    summary = "x * 0.5 * (1 + erf(x / sqrt 2)) -> GELU"
    rtol = 1e-5
    rules = (FuseGelu(),)


# Abramowitz & Stegun 7.1.26: erf(x) = sign(x) (1 - t (a1 + t (a2 + ... t a5)) exp(-x^2)), with
# t = 1 / (1 + p |x|); absolute error <= 1.5e-7.
_P = 0.3275911
_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


class LowerErf(Rule[Match]):
    """ERF(x) ==> sign(x) (1 - t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) exp(-x^2)),
    t = 1 / (1 + p |x|), in ABS, MUL, ADD, DIV, SUB, EXP, NEG and SIGN (|error| <= 1.5e-7)."""

    name = "lower-erf"
    anchors = frozenset({"ERF"})
    verb = "lowered with"

    def match(self, graph: Graph, op: Op) -> Match | None:
        return Match([op])

    def check(self, graph: Graph, m: Match) -> str | None:
        x = graph.inputs_of(m.ops[0])[0]
        if x is None or not x.dtype.is_float:
            return "ERF of a non-float tensor"
        return None

    def rewrite(self, graph: Graph, m: Match) -> Replacement:
        erf = m.ops[0]
        x, result = graph.inputs_of(erf)[0], output(graph, erf)
        assert x is not None
        base = result.name
        new: list[tuple[Op, list[Tensor | None], list[Tensor]]] = []

        def step(kind: str, *inputs: Tensor | float, out: Tensor | None = None) -> Tensor:
            ins: list[Tensor | None] = [
                t if isinstance(t, Tensor) else new_constant(f"{base}/erf_c", np.array([t], np.float32)) for t in inputs
            ]
            y = out or Tensor(f"{base}/erf_{kind.lower()}", x.dtype, x.shape, shape_signature=x.shape_signature)
            options = {"fused_activation_function": "NONE"} if kind in ("ADD", "SUB", "MUL", "DIV") else {}
            table = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions", "DIV": "DivOptions"}.get(kind)
            new.append((Op(kind, options, table, name=y.name), ins, [y]))
            return y

        a = step("ABS", x)
        t = step("DIV", 1.0, step("ADD", step("MUL", a, _P), 1.0))
        h = step("MUL", t, _A[4])
        for coefficient in reversed(_A[:4]):
            h = step("MUL", step("ADD", h, coefficient), t)
        decay = step("EXP", step("NEG", step("MUL", x, x)))
        magnitude = step("SUB", 1.0, step("MUL", h, decay))
        step("MUL", step("SIGN", x), magnitude, out=result)
        return Replacement([erf], list(new))


@register
class LowerErfPass(RewritePass):
    """ERF ==> a polynomial of TFLite ops (TFLite has no ERF). Run after fuse-gelu."""

    name = "lower-erf"
    summary = "ERF -> sign(x) (1 - t P(t) exp(-x^2)) in TFLite ops (A&S 7.1.26)"
    guarantees = frozenset({"no-erf"})
    rtol = 1e-5
    rules = (LowerErf(),)
