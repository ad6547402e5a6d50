"""constant-fold: ops whose inputs are all constants become constants (ir/evaluate.py's kernels)."""

from __future__ import annotations

from typing import Any

import numpy as np

from npupass.ir.evaluate import KERNELS, evaluate
from npupass.ir.graph import Graph, Op
from npupass.passes.manager import Match, PipelineError, Replacement, RewritePass, Rule, register
from npupass.passes.pattern import new_constant, output

DEFAULT_MAX_ELEMENTS = 1 << 20


class FoldConstantOp(Rule[Match]):
    """OP(c1, c2, ...) with every input a constant ==> the constant OP computes, for the ops
    ir/evaluate.py has kernels for, on plain (unquantized, dense) float and integer data."""

    name = "fold-constant-op"
    anchors = frozenset(KERNELS)
    verb = "folded"

    def __init__(self, max_elements: int = DEFAULT_MAX_ELEMENTS) -> None:
        self.max_elements = max_elements

    def match(self, graph: Graph, op: Op) -> Match | None:
        inputs = graph.inputs_of(op)
        if not inputs or any(t is None or not t.is_constant for t in inputs):
            return None
        return Match([op])

    def check(self, graph: Graph, m: Match) -> str | None:
        op = m.ops[0]
        outputs = graph.outputs_of(op)
        if len(outputs) != 1:
            return f"{op.type} has {len(outputs)} outputs"
        result = outputs[0]
        if graph.is_graph_output(result):
            return f"'{result.name}' is a graph output"
        for t in [*graph.inputs_of(op), result]:
            assert t is not None
            if t.quant is not None and t.quant.is_affine:
                return f"'{t.name}' is quantized"
            if t.sparsity is not None or t.dtype.numpy is None or t.dtype.numpy.kind not in "fiub":
                return f"'{t.name}' is {t.dtype}{' and sparse' if t.sparsity is not None else ''}"
        if result.num_elements is None or result.num_elements > self.max_elements:
            size = "an unknown number of" if result.num_elements is None else f"{result.num_elements:,}"
            return f"the result would have {size} elements (at most {self.max_elements:,} are folded)"
        if op.options.get("fused_activation_function", "NONE") != "NONE":
            return f"{op.type} has fused {op.options['fused_activation_function']}"
        return None

    def rewrite(self, graph: Graph, m: Match) -> Replacement:
        op = m.ops[0]
        result = output(graph, op)
        assert result.dtype.numpy is not None
        options: dict[str, Any] = dict(op.options)
        if op.type == "CAST":
            options["to"] = result.dtype.numpy
        data = [np.asarray(t.data) for t in graph.inputs_of(op) if t is not None]
        value = evaluate(op.type, data, options).astype(result.dtype.numpy)
        if result.shape is not None and tuple(value.shape) != result.shape:
            value = value.reshape(result.shape)  # raises when the file's shape disagrees
        folded = new_constant(result.name, value, result.dtype)
        return Replacement([op], [], rewire={result: folded})


@register
class ConstantFold(RewritePass):
    """OP(constants) ==> constant, for ADD, SUB, MUL, DIV, MAXIMUM, MINIMUM, RESHAPE, TRANSPOSE,
    CONCATENATION, GATHER, CAST, NEG, ABS, SQRT, RSQRT, EXP, SQUARE on unquantized dense data, up to
    `max_elements` elements per result (option; default 1,048,576). A graph output stays computed.
    """

    name = "constant-fold"
    summary = "evaluate ops whose inputs are all constants (size cap: max_elements)"
    rules = (FoldConstantOp(),)

    def __init__(self, max_elements: int = DEFAULT_MAX_ELEMENTS) -> None:
        if not isinstance(max_elements, int) or max_elements < 0:
            raise PipelineError(f"constant-fold: max_elements must be a non-negative integer, not {max_elements!r}")
        self.rules = (FoldConstantOp(max_elements),)  # type: ignore[misc]
