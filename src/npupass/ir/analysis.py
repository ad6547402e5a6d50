"""Facts about a graph that every layer asks: how ops are named, where a weight comes from and what
it holds, whether the model carries fake quantization, and whether it computes in float."""

from __future__ import annotations

from typing import Any

import numpy as np

from npupass.ir.graph import Graph, Model, Op, Tensor
from npupass.ir.types import DType


def op_name(graph: Graph, op: Op) -> str:
    """The op's name, or its first output's name ("" when it has neither)."""
    if op.name or op not in graph.nx:
        return op.name
    outputs = graph.outputs_of(op)
    return outputs[0].name if outputs else ""


def label(graph: Graph, op: Op) -> str:
    """An op as messages name it: its type and its name, or its first output's name."""
    name = op_name(graph, op)
    return f"{op.type} '{name}'" if name else op.type


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


def fake_quant_problem(model: Model) -> str | None:
    """No FAKE_QUANT, and QUANTIZE/DEQUANTIZE only where float meets a graph input or output."""
    for graph in model.subgraphs:
        for op in graph.iter_ops():
            if op.type == "FAKE_QUANT":
                return f"{label(graph, op)} remains"
            if op.type == "DEQUANTIZE" and _decompresses_weight(graph, op):
                continue
            if op.type == "DEQUANTIZE" and not all(graph.is_graph_output(t) for t in graph.outputs_of(op)):
                return f"{label(graph, op)} is inside the graph"
            if op.type == "QUANTIZE":
                source = graph.inputs_of(op)[0]
                if source is not None and source.dtype.is_float and source not in graph.inputs:
                    return f"{label(graph, op)} is inside the graph"
    return None


def has_fake_quant(model: Model) -> bool:
    """Whether the model still carries fake quantization (what fold-fake-quant folds)."""
    return fake_quant_problem(model) is not None


def _decompresses_weight(graph: Graph, op: Op) -> bool:
    """A DEQUANTIZE of a FLOAT16 constant: weight decompression of a float model, not fake quantization."""
    source = graph.inputs_of(op)[0] if graph.inputs_of(op) else None
    return source is not None and source.is_constant and source.dtype is DType.FLOAT16


FP16_WEIGHTS = "a float model (fp16 weights)"
DYNAMIC_RANGE = "a float model with int8 weights (dynamic-range quantization)"
FLOAT = "a float model with no quantization information"


def float_model(model: Model) -> str | None:
    """What kind of float model this is (FLOAT, FP16_WEIGHTS, DYNAMIC_RANGE), or None when it computes in
    integers or carries fake quantization to fold.

    A model is float when its main graph has float activations and none quantized to integers: a model with
    no float activation at all (an int16/int32 audio front-end) is an integer model.
    """
    if has_fake_quant(model):
        return None
    graph = model.main
    activations = [t for t in graph.tensors if not t.is_constant]
    if any(t.quant is not None and t.quant.is_affine and not t.dtype.is_float for t in activations):
        return None
    if not any(t.dtype.is_float for t in activations):
        return None
    if any(op.type == "DEQUANTIZE" and _decompresses_weight(graph, op) for op in graph.iter_ops()):
        return FP16_WEIGHTS
    weights = [t for t in graph.tensors if t.is_constant and t.dtype in (DType.INT8, DType.UINT8)]
    if any(t.quant is not None and t.quant.is_affine for t in weights):
        return DYNAMIC_RANGE
    return FLOAT


def integer_types(model: Model) -> set[DType]:
    """The integer element types the main graph's quantized activations use."""
    return {
        t.dtype
        for t in model.main.tensors
        if not t.is_constant and not t.dtype.is_float and t.quant is not None and t.quant.is_affine
    }
