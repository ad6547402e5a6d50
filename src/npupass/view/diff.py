"""What changed between two models: ops removed, added and changed, and tensors whose type,
quantization or data changed. Ops are matched by type and output name, then by type and inputs
(a conv that took over a fused activation's output keeps its inputs), then the leftover ops of one
type in execution order."""

from __future__ import annotations

from typing import Any

import numpy as np

from npupass.ir.graph import Graph, Model, Op, Tensor
from npupass.passes.pattern import same_quant_values
from npupass.tflite_schema import non_default_options
from npupass.view.data import op_label


def _names(ts: list[Tensor | None]) -> tuple[str, ...]:
    return tuple(t.name if t is not None else "" for t in ts)


def _tensor_changes(a: Tensor, b: Tensor) -> list[str]:
    what = []
    if a.dtype is not b.dtype:
        what.append(f"dtype {a.dtype}->{b.dtype}")
    if not same_quant_values(a.quant, b.quant):
        what.append("quantization")
    if a.is_constant and b.is_constant:
        same = a.data is not None and b.data is not None and a.data.shape == b.data.shape
        if not same or not np.array_equal(np.asarray(a.data), np.asarray(b.data)):
            what.append("data")
    return what


def match_ops(a: Graph, b: Graph) -> tuple[list[tuple[Op, Op]], list[Op], list[Op]]:
    """(pairs, ops only in a, ops only in b)."""
    a_ops, b_ops = a.ops, b.ops
    by_output: dict[tuple[str, str], Op] = {}
    by_inputs: dict[tuple[str, tuple[str, ...]], Op] = {}
    for op in b_ops:
        by_output.setdefault((op.type, op_label(b, op)), op)
        by_inputs.setdefault((op.type, _names(b.inputs_of(op))), op)
    matched: set[Op] = set()
    pairs: dict[Op, Op] = {}
    for key_of, table in (
        (lambda op: (op.type, op_label(a, op)), by_output),
        (lambda op: (op.type, _names(a.inputs_of(op))), by_inputs),
    ):
        for op in a_ops:
            if op in pairs:
                continue
            other = table.get(key_of(op))  # type: ignore[arg-type]
            if other is not None and other not in matched:
                pairs[op] = other
                matched.add(other)
    # last: the unmatched ops of one type, in execution order, when both sides have as many
    left_a: dict[str, list[Op]] = {}
    left_b: dict[str, list[Op]] = {}
    for op in a_ops:
        if op not in pairs:
            left_a.setdefault(op.type, []).append(op)
    for op in b_ops:
        if op not in matched:
            left_b.setdefault(op.type, []).append(op)
    for op_type, ops in left_a.items():
        if len(ops) == len(left_b.get(op_type, [])):
            for op, other in zip(ops, left_b[op_type], strict=True):
                pairs[op] = other
                matched.add(other)
    removed = [op for op in a_ops if op not in pairs]
    added = [op for op in b_ops if op not in matched]
    return list(pairs.items()), removed, added


def _op_changes(a: Graph, op_a: Op, b: Graph, op_b: Op) -> list[str]:
    what = []
    opts_a = non_default_options(op_a.options_type, op_a.options)
    opts_b = non_default_options(op_b.options_type, op_b.options)
    for key in sorted(set(opts_a) | set(opts_b)):
        if opts_a.get(key) != opts_b.get(key):
            what.append(f"{key} {opts_a.get(key)}->{opts_b.get(key)}")
    if op_label(a, op_a) != op_label(b, op_b):
        what.append("output")
    ins_a, ins_b = a.inputs_of(op_a), b.inputs_of(op_b)
    if len(ins_a) != len(ins_b):
        what.append("inputs")
    for slot, (x, y) in enumerate(zip(ins_a, ins_b, strict=False)):
        if (x is None) != (y is None):
            what.append(f"input {slot}")
        elif x is not None and y is not None:
            what.extend(f"input {slot} {w}" for w in _tensor_changes(x, y))
    for slot, (x, y) in enumerate(zip(a.outputs_of(op_a), b.outputs_of(op_b), strict=False)):
        what.extend(f"output {slot} {w}" for w in _tensor_changes(x, y))
    return what


def _entry(graph: Graph, op: Op) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": op.type, "name": op_label(graph, op)}
    if op.provenance:
        entry["rules"] = op.provenance.get("rules", [])
        entry["from"] = op.provenance.get("from", [])
    return entry


def diff_models(a: Model, b: Model, title_a: str, title_b: str) -> tuple[dict[str, Any], dict[Op, str]]:
    """The difference of the main graphs, and for b's ops: "added" or "changed" (for the viewers)."""
    ga, gb = a.main, b.main
    pairs, removed, added = match_ops(ga, gb)
    changed = []
    marks: dict[Op, str] = {op: "added" for op in added}
    for op_a, op_b in pairs:
        what = _op_changes(ga, op_a, gb, op_b)
        if what:
            changed.append(_entry(gb, op_b) | {"what": what})
            marks[op_b] = "changed"
    tensors_b = {t.name: t for t in gb.tensors}
    tensors_changed = []
    for t in ga.tensors:
        other = tensors_b.get(t.name)
        if other is not None:
            what = _tensor_changes(t, other)
            if what:
                tensors_changed.append({"name": t.name, "what": what})
    result = {
        "a": title_a,
        "b": title_b,
        "removed": [_entry(ga, op) for op in removed],
        "added": [_entry(gb, op) for op in added],
        "changed": changed,
        "tensors_changed": tensors_changed,
        "op_counts": {"a": len(ga.ops), "b": len(gb.ops)},
    }
    return result, marks
