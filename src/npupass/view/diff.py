"""What changed between two models: ops removed, added and changed, and tensors whose type,
quantization or data changed. Ops are matched by type and output name, then by type and inputs
(a conv that took over a fused activation's output keeps its inputs), then the leftover ops of one
type in execution order."""

from __future__ import annotations

from typing import Any

import numpy as np

from npupass.ir.graph import Graph, Model, Op, Tensor
from npupass.ir.quant import same_quant_values
from npupass.summary import appended_summary
from npupass.tflite_schema import non_default_options
from npupass.view.data import op_label


def _names(ts: list[Tensor | None]) -> tuple[str, ...]:
    return tuple(t.name if t is not None else "" for t in ts)


def _tensor_changes(a: Tensor, b: Tensor) -> list[str]:
    what = []
    if a.dtype is not b.dtype:
        what.append(f"dtype {a.dtype}->{b.dtype}")
    if a.shape != b.shape:
        what.append(f"shape {list(a.shape or [])}->{list(b.shape or [])}")
    if not same_quant_values(a.quant, b.quant):
        what.append("quantization")
    if a.is_constant != b.is_constant:
        what.append("constant" if b.is_constant else "no longer constant")
    elif a.is_constant and b.is_constant:
        x, y = np.asarray(a.data), np.asarray(b.data)
        nan_ok = x.dtype.kind in "fc" and y.dtype.kind in "fc"
        if x.shape != y.shape or not np.array_equal(x, y, equal_nan=nan_ok):
            what.append("data")
    return what


def match_ops(a: Graph, b: Graph) -> tuple[list[tuple[Op, Op]], list[Op], list[Op]]:
    """(pairs, ops only in a, ops only in b). Keys, in turn: type and output name; type and input
    names; the leftover ops of a type in order when both sides have as many. Among several
    candidates for one key the one with the same options (then the earliest) wins."""
    a_ops, b_ops = a.ops, b.ops
    pairs: dict[Op, Op] = {}
    matched: set[Op] = set()
    keys = (
        (lambda g, op: (op.type, op_label(g, op))),
        (lambda g, op: (op.type, _names(g.inputs_of(op)))),
    )
    for key in keys:
        table: dict[object, list[Op]] = {}
        for op in b_ops:
            if op not in matched:
                table.setdefault(key(b, op), []).append(op)
        for op in a_ops:
            if op in pairs:
                continue
            candidates = [c for c in table.get(key(a, op), []) if c not in matched]
            if candidates:
                best = min(candidates, key=lambda c: (c.options != op.options, b_ops.index(c)))
                pairs[op] = best
                matched.add(best)
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
            if x.name != y.name:
                what.append(f"input {slot} '{x.name}'->'{y.name}'")
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
    """The difference of every subgraph (paired by index), and for b's ops: "added" or "changed"."""
    result: dict[str, Any] = {
        "a": title_a,
        "b": title_b,
        "removed": [],
        "added": [],
        "changed": [],
        "tensors_changed": [],
        "op_counts": {"a": sum(len(g.ops) for g in a.subgraphs), "b": sum(len(g.ops) for g in b.subgraphs)},
    }
    if len(a.subgraphs) != len(b.subgraphs):
        result["subgraphs"] = {"a": len(a.subgraphs), "b": len(b.subgraphs)}
    marks: dict[Op, str] = {}
    for index, (ga, gb) in enumerate(zip(a.subgraphs, b.subgraphs, strict=False)):
        where = {"subgraph": index} if len(a.subgraphs) > 1 else {}
        pairs, removed, added = match_ops(ga, gb)
        result["removed"] += [_entry(ga, op) | where for op in removed]
        result["added"] += [_entry(gb, op) | where for op in added]
        marks.update({op: "added" for op in added})
        for op_a, op_b in pairs:
            what = _op_changes(ga, op_a, gb, op_b)
            if what:
                result["changed"].append(_entry(gb, op_b) | where | {"what": what})
                marks[op_b] = "changed"
        for t, other in _pair_tensors(ga, gb):
            changes = _tensor_changes(t, other)
            if changes:
                result["tensors_changed"].append({"name": t.name, "what": changes} | where)
    if a.appended != b.appended:
        change = f"{_appended_text(a.appended)} -> {_appended_text(b.appended)}"
        result["changed"].append({"type": "FILE", "name": "bytes appended after the flatbuffer", "what": [change]})
    return result, marks


def _pair_tensors(a: Graph, b: Graph) -> list[tuple[Tensor, Tensor]]:
    """Tensors of a and b with the same name; the k-th of several with one name (often the empty name)
    pairs with the k-th in b, in file order."""
    by_name: dict[str, list[Tensor]] = {}
    for t in b.tensors:
        by_name.setdefault(t.name, []).append(t)
    seen: dict[str, int] = {}
    pairs = []
    for t in a.tensors:
        k = seen[t.name] = seen.get(t.name, -1) + 1
        candidates = by_name.get(t.name, [])
        if k < len(candidates):
            pairs.append((t, candidates[k]))
    return pairs


def _appended_text(data: bytes) -> str:
    if not data:
        return "none"
    info = appended_summary(data)
    files = info["zip_files"] if info else None
    return f"{len(data):,} bytes" + (f" (zip: {', '.join(f['name'] for f in files)})" if files else "")
