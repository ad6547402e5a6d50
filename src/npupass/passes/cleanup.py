"""cleanup: dead ops and tensors, ops that do nothing (identity RESHAPE / TRANSPOSE / CAST) and
chains of them, and constants nothing reads (the buffers a writer would otherwise keep)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npupass.ir.graph import Graph, Model, Op, Tensor
from npupass.ir.types import DType
from npupass.passes.manager import Context, Match, Replacement, RewritePass, Rule, register
from npupass.passes.pattern import input_at, new_constant, output, same_quant


@dataclass
class IdentityMatch(Match):
    source: Tensor
    result: Tensor


def _perm(graph: Graph, op: Op) -> list[int] | None:
    perm = input_at(graph, op, 1)
    if perm is None or perm.data is None:
        return None
    return [int(p) for p in np.asarray(perm.data).reshape(-1)]


class RemoveIdentity(Rule[IdentityMatch]):
    """RESHAPE(x) to x's own shape, TRANSPOSE(x, [0, 1, ..., n-1]), CAST(x) to x's own type ==> x,
    when input and output are quantized alike. (A graph output is kept: its tensor is the model's.)"""

    name = "remove-identity"
    anchors = frozenset({"RESHAPE", "TRANSPOSE", "CAST"})
    verb = "removed with"

    def match(self, graph: Graph, op: Op) -> IdentityMatch | None:
        x, outputs = input_at(graph, op, 0), graph.outputs_of(op)
        if x is None or len(outputs) != 1:
            return None
        y = outputs[0]
        if op.type == "TRANSPOSE":
            perm = _perm(graph, op)
            if perm is None or perm != list(range(len(perm))):
                return None
        elif op.type == "CAST" and x.dtype is not y.dtype:
            return None
        if x.shape is None or x.shape != y.shape or (x.shape_signature or x.shape) != (y.shape_signature or y.shape):
            return None
        return IdentityMatch([op], x, y)

    def check(self, graph: Graph, m: IdentityMatch) -> str | None:
        if not same_quant(m.source, m.result):
            return "input and output are quantized differently"
        return None

    def describe(self, graph: Graph, m: IdentityMatch) -> str:
        return f"{m.ops[0].type} '{m.result.name}' not removed"

    def rewrite(self, graph: Graph, m: IdentityMatch) -> Replacement:
        return Replacement(m.ops, [], rewire={m.result: m.source})


class CollapseChain(Rule[Match]):
    """RESHAPE(RESHAPE(x)) ==> RESHAPE(x); TRANSPOSE(TRANSPOSE(x, p), q) ==> TRANSPOSE(x, p[q]),
    when the inner result has no other reader (remove-identity then takes an identity result)."""

    name = "collapse-chain"
    anchors = frozenset({"RESHAPE", "TRANSPOSE"})
    verb = "collapsed with"

    def match(self, graph: Graph, op: Op) -> Match | None:
        x = input_at(graph, op, 0)
        inner = graph.producer(x) if x is not None else None
        if inner is None or inner.type != op.type or len(graph.outputs_of(inner)) != 1:
            return None
        if op.type == "TRANSPOSE" and (_perm(graph, op) is None or _perm(graph, inner) is None):
            return None
        return Match([op, inner])

    def check(self, graph: Graph, m: Match) -> str | None:
        outer, inner = m.ops
        x, mid = input_at(graph, inner, 0), output(graph, inner)
        assert x is not None
        if not same_quant(x, mid) or not same_quant(mid, output(graph, outer)):
            return "the chain requantizes"
        if outer.type == "RESHAPE" and output(graph, outer).shape is None:
            return "the result's shape is unknown"
        return None

    def rewrite(self, graph: Graph, m: Match) -> Replacement:
        outer, inner = m.ops
        x, result = input_at(graph, inner, 0), output(graph, outer)
        assert x is not None
        if outer.type == "RESHAPE":
            shape = graph.inputs_of(outer)[1:]
            new = Op("RESHAPE", dict(outer.options), outer.options_type, outer.version, name=outer.name)
            return Replacement([inner, outer], [(new, [x, *shape], [result])])
        p, q = _perm(graph, inner), _perm(graph, outer)
        assert p is not None and q is not None
        perm = new_constant(f"{result.name}/perm", np.array([p[i] for i in q]), DType.INT32)
        new = Op("TRANSPOSE", dict(outer.options), outer.options_type, outer.version, name=outer.name)
        return Replacement([inner, outer], [(new, [x, perm], [result])])


@register
class Cleanup(RewritePass):
    """Remove what does nothing: identity RESHAPE, TRANSPOSE (perm 0..n-1) and CAST (same type),
    RESHAPE and TRANSPOSE chains collapsed to one op, then ops nothing needed depends on (no graph
    output, no side effect) and tensors and constant buffers nothing touches."""

    name = "cleanup"
    summary = "remove dead ops/tensors, unused constants, identity RESHAPE/TRANSPOSE/CAST; collapse chains"
    rules = (RemoveIdentity(), CollapseChain())

    def run(self, model: Model, ctx: Context) -> None:
        super().run(model, ctx)
        for graph in model.subgraphs:
            tensors = graph.nx.number_of_nodes() - graph.num_ops
            dead = graph.remove_dead()
            if dead:
                ctx.rewrites["dead-op"] += dead
            gone = tensors - (graph.nx.number_of_nodes() - graph.num_ops)
            if gone:
                ctx.rewrites["unused-tensor"] += gone
