"""What the viewers show, as plain data: every op and tensor exactly as the IR holds them, laid out.

The terminal view, `--json`, the HTML page and the DOT export all render this one structure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from npupass.ir.graph import Graph, Model, Op, Tensor
from npupass.ir.types import Quantization
from npupass.passes.pattern import WEIGHTED_OPS
from npupass.tflite_schema import non_default_options
from npupass.view.layout import NODE_H, NODE_W, layout

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


def weight_source(graph: Graph, t: Tensor | None) -> Tensor | None:
    """The constant a weight comes from: itself, or behind DEQUANTIZE, QUANTIZE -> DEQUANTIZE or DENSIFY."""
    for _ in range(3):
        if t is None or t.is_constant:
            return t
        writer = graph.producer(t)
        if writer is None or writer.type not in ("DEQUANTIZE", "QUANTIZE", "DENSIFY"):
            return None
        t = graph.inputs_of(writer)[0]
    return None


def weight_stats(t: Tensor, axis: int) -> dict[str, Any] | None:
    """Zero fraction and distinct values of a constant: per tensor and most in one channel (sparse
    storage: the stored values plus the zeros it leaves out; no per-channel count)."""
    if t.data is None or t.shape is None or t.dtype.numpy is None:
        return None
    if t.sparsity is not None:
        stored = np.asarray(t.data)
        total = int(np.prod(t.shape))
        if total == 0:
            return None
        zeros = total - int(np.count_nonzero(stored))
        return {
            "zeros": zeros / total,
            "unique": int(np.unique(np.append(stored, stored.dtype.type(0))).size),
            "unique_per_channel_max": 0,
        }
    values = np.asarray(t.data)
    if values.size == 0 or values.shape != t.shape:
        return None
    rows = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1) if values.ndim > axis else values.reshape(1, -1)
    if values.dtype.itemsize == 1 and values.dtype.kind in "iu":  # int8/uint8: count, do not sort
        offset = rows.astype(np.int64) - int(np.iinfo(values.dtype).min)
        counts = np.bincount((np.arange(rows.shape[0])[:, None] * 256 + offset).ravel(), minlength=rows.shape[0] * 256)
        present = counts.reshape(rows.shape[0], 256) > 0
        unique, per_channel = int(present.any(axis=0).sum()), int(present.sum(axis=1).max())
    else:
        ordered = np.sort(rows, axis=1)
        per_channel = int(((np.diff(ordered, axis=1) != 0).sum(axis=1) + 1).max())
        unique = int(np.unique(ordered).size)
    return {
        "zeros": float(np.count_nonzero(values == 0) / values.size),
        "unique": unique,
        "unique_per_channel_max": per_channel if values.ndim > axis else 0,
    }


def op_label(graph: Graph, op: Op) -> str:
    if op.name:
        return op.name
    outs = graph.outputs_of(op)
    return outs[0].name if outs else op.type


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
) -> dict[str, Any]:
    """Everything the viewers show for `model`.

    `placement` maps ops to {"target": "NPU"|"CPU", "reason": ...}; `metrics` maps op names (as in
    the view) to {metric: value}; `changed` marks ops "added" or "changed" by a pipeline; `diff` is
    what npupass.view.diff computed.
    """
    metric_names = sorted({m for values in (metrics or {}).values() for m in values})
    return {
        "format_version": FORMAT_VERSION,
        "title": title,
        "source_format": model.source_format,
        "metrics": metric_names,
        "subgraphs": [subgraph_data(g, i, placement, metrics, changed) for i, g in enumerate(model.subgraphs)],
        "diff": diff,
    }
