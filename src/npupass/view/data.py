"""What the viewers show, as plain data: every op and tensor exactly as the IR holds them, laid out.

The terminal view, `--json`, the HTML page and the DOT export all render this one structure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from npupass.ir.analysis import op_name, weight_source, weight_stats
from npupass.ir.graph import Graph, Model, Op, Tensor
from npupass.ir.ops import WEIGHTED_OPS
from npupass.ir.types import Quantization
from npupass.tflite_schema import non_default_options
from npupass.view.layout import NODE_H, NODE_W, layout
from npupass.view.names import short_name

FORMAT_VERSION = 1


def _number(value: float) -> float | str:
    """A float JSON can carry (NaN and infinities as strings)."""
    return value if np.isfinite(value) else str(value)


def quant_data(q: Quantization | None) -> dict[str, Any] | None:
    if q is None or not q.is_affine:
        return None
    return {
        "scale": [_number(float(s)) for s in q.scale],
        "zero_point": [int(z) for z in q.zero_point],
        "axis": int(q.axis) if q.per_axis else None,
    }


def op_label(graph: Graph, op: Op) -> str:
    """The name the viewer shows: the op's name, its first output's, or its type."""
    return op_name(graph, op) or op.type


def _tensor_data(t: Tensor, index: int, stats: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "index": index,
        "name": t.name,
        "dtype": str(t.dtype),
        "shape": list(t.shape) if t.shape is not None else None,
        "constant": t.is_constant,
        "variable": t.is_variable,
        "quant": quant_data(t.quant),
        "sparse_storage": t.sparsity is not None,
        "weights": stats,
    }


def subgraph_data(
    graph: Graph,
    index: int,
    placement: dict[Op, dict[str, str]] | None = None,
    metrics: dict[str, dict[str, float]] | None = None,
    changed: dict[Op, str] | None = None,
) -> dict[str, Any]:
    """One subgraph: ops in execution order with their layout, tensors, edges."""
    ops = graph.ops
    placed, width, height = layout(graph, ops)
    tensors = graph.tensors
    tensor_index = {t: i for i, t in enumerate(tensors)}
    op_index = {op: i for i, op in enumerate(ops)}
    stats: dict[Tensor, dict[str, Any] | None] = {}  # weight tensor -> its statistics
    op_rows = []
    edges = []
    for i, op in enumerate(ops):
        p = placed[op]
        name = op_label(graph, op)
        inputs = graph.inputs_of(op)
        weight_stat = None
        if op.type in WEIGHTED_OPS:
            slots = WEIGHTED_OPS[op.type]
            weight = inputs[slots.weight] if slots.weight < len(inputs) else None
            if weight is not None and weight not in stats:
                source = weight_source(graph, weight)
                stats[weight] = weight_stats(source, slots.axis) if source is not None else None
            weight_stat = stats.get(weight) if weight is not None else None
        op_rows.append(
            {
                "id": i,
                "type": op.type,
                "name": name,
                "short_name": short_name(name),
                "version": op.version,
                "x": round(p.x, 1),
                "y": round(p.y, 1),
                "w": NODE_W,
                "h": NODE_H,
                "inputs": [tensor_index[t] if t is not None else -1 for t in inputs],
                "outputs": [tensor_index[t] for t in graph.outputs_of(op)],
                "options": {k: _jsonable(v) for k, v in non_default_options(op.options_type, op.options).items()},
                "fused_activation": op.options.get("fused_activation_function"),
                "custom_code": op.custom_code,
                "provenance": op.provenance or None,
                "placement": (placement or {}).get(op),
                "metrics": (metrics or {}).get(name, {}),
                "weights": weight_stat,
                "change": (changed or {}).get(op),
            }
        )
        for t in inputs:
            writer = graph.producer(t) if t is not None else None
            if t is not None and writer is not None and writer in op_index:
                edges.append({"from": op_index[writer], "to": i, "tensor": tensor_index[t]})
    return {
        "index": index,
        "name": graph.name,
        "width": round(width, 1),
        "height": round(height, 1),
        "inputs": [tensor_index[t] for t in graph.inputs if t in tensor_index],
        "outputs": [tensor_index[t] for t in graph.outputs if t in tensor_index],
        "ops": op_rows,
        "tensors": [_tensor_data(t, i, stats.get(t)) for i, t in enumerate(tensors)],
        "edges": edges,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def view_data(
    model: Model,
    title: str,
    placement: dict[Op, dict[str, str]] | None = None,
    metrics: dict[str, dict[str, float]] | None = None,
    changed: dict[Op, str] | None = None,
    diff: dict[str, Any] | None = None,
    colour: str | None = None,
) -> dict[str, Any]:
    """Everything the viewers show for `model`.

    `placement` maps ops to {"target": "NPU"|"CPU", "reason": ...}; `metrics` maps op names (as in
    the view) to {metric: value}; `changed` marks ops "added" or "changed" by a pipeline; `diff` is
    what npupass.view.diff computed; `colour` is the HTML page's first colouring ("placement",
    "metric:cycles" ...).
    """
    metric_names = sorted({m for values in (metrics or {}).values() for m in values})
    return {
        "format_version": FORMAT_VERSION,
        "title": title,
        "source_format": model.source_format,
        "metrics": metric_names,
        "subgraphs": [subgraph_data(g, i, placement, metrics, changed) for i, g in enumerate(model.subgraphs)],
        "diff": diff,
        "colour": colour,
    }
