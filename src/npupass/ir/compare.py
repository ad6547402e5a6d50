"""Structural comparison of two models: what a lossless round trip must keep identical."""

from __future__ import annotations

from typing import Any

import numpy as np

from npupass.ir.graph import Graph, Model, Op, Signature, Tensor
from npupass.ir.types import Quantization, Sparsity


def _array_bytes(a: np.ndarray | None) -> Any:
    return None if a is None else (a.dtype.str, a.shape, a.tobytes())


def _quant_key(q: Quantization | None) -> Any:
    if q is None:
        return None
    return (
        _array_bytes(q.scale),
        _array_bytes(q.zero_point),
        q.axis,
        _array_bytes(q.min),
        _array_bytes(q.max),
        q.details_type,
        q.details,
    )


def _sparsity_key(s: Sparsity | None) -> Any:
    if s is None:
        return None
    dims = [(d.format, d.dense_size, _array_bytes(d.segments), _array_bytes(d.indices)) for d in s.dim_metadata]
    return (s.traversal_order, s.block_map, dims)


def _tensor_key(t: Tensor) -> dict[str, Any]:
    return {
        "name": t.name,
        "dtype": t.dtype,
        "shape": t.shape,
        "shape_signature": t.shape_signature,
        "data": _array_bytes(t.data),
        "quantization": _quant_key(t.quant),
        "sparsity": _sparsity_key(t.sparsity),
        "is_variable": t.is_variable,
        "has_rank": t.has_rank,
        "variant_subtypes": t.variant_subtypes,
    }


def _op_key(graph: Graph, op: Op) -> dict[str, Any]:
    return {
        "type": op.type,
        "version": op.version,
        "options_type": op.options_type,
        "options": op.options,
        "custom_code": op.custom_code,
        "custom_options": op.custom_options,
        "inputs": [None if t is None else t.name for t in graph.inputs_of(op)],
        "outputs": [t.name for t in graph.outputs_of(op)],
        "intermediates": [t.name for t in graph.intermediates_of(op)],
        "mutating_variable_inputs": op.mutating_variable_inputs,
    }


def _diff_dicts(where: str, a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [f"{where}: {key} differs" for key in a if a[key] != b[key]]


def structural_differences(a: Model, b: Model) -> list[str]:
    """Every difference between `a` and `b` in ops, options, tensors, data, quantization and metadata."""
    found: list[str] = []
    for attr in ("version", "description", "metadata", "legacy_metadata_buffers"):
        if getattr(a, attr) != getattr(b, attr):
            found.append(f"model {attr} differs")
    if len(a.subgraphs) != len(b.subgraphs):
        return [*found, f"{len(a.subgraphs)} vs {len(b.subgraphs)} subgraphs"]
    for index, (ga, gb) in enumerate(zip(a.subgraphs, b.subgraphs, strict=True)):
        where = f"subgraph {index}"
        if ga.name != gb.name:
            found.append(f"{where}: name differs")
        ta, tb = ga.tensors, gb.tensors
        if len(ta) != len(tb):
            found.append(f"{where}: {len(ta)} vs {len(tb)} tensors")
        else:
            for tx, ty in zip(ta, tb, strict=True):
                found += _diff_dicts(f"{where} tensor '{tx.name}'", _tensor_key(tx), _tensor_key(ty))
        if [t.name for t in ga.inputs] != [t.name for t in gb.inputs]:
            found.append(f"{where}: graph inputs differ")
        if [t.name for t in ga.outputs] != [t.name for t in gb.outputs]:
            found.append(f"{where}: graph outputs differ")
        oa, ob = ga.ops, gb.ops
        if len(oa) != len(ob):
            found.append(f"{where}: {len(oa)} vs {len(ob)} ops")
        else:
            for i, (x, y) in enumerate(zip(oa, ob, strict=True)):
                found += _diff_dicts(f"{where} op {i} ({x.type})", _op_key(ga, x), _op_key(gb, y))
    if [_signature_key(a, s) for s in a.signatures] != [_signature_key(b, s) for s in b.signatures]:
        found.append("signatures differ")
    return found


def _signature_key(model: Model, s: Signature) -> Any:
    names = [(n, t.name) for n, t in s.input_tensors(model)], [(n, t.name) for n, t in s.output_tensors(model)]
    return (s.key, s.subgraph_index, names)
