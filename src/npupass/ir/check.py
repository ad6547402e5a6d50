"""Structural well-formedness of a Graph, naming the offending node for every fault found."""

from __future__ import annotations

import networkx as nx
import numpy as np

from npupass.errors import IRCheckError
from npupass.ir.graph import Graph, GraphCycleError, Op, Tensor
from npupass.ir.ops import is_known
from npupass.ir.types import DType

_STATEFUL_DTYPES = (DType.RESOURCE, DType.VARIANT)


def describe(graph: Graph, node: Op | Tensor) -> str:
    """How a node is named in messages: tensors by name, ops by type and first output."""
    if isinstance(node, Tensor):
        return f"tensor '{node.name}'"
    label = f"{node.type} '{node.name}'" if node.name else node.type
    outs = graph.outputs_of(node) if node in graph.nx else []
    return f"{label} (output '{outs[0].name}')" if outs else label


def problems(graph: Graph) -> list[str]:
    """Every structural fault of `graph`, as messages; empty when it is well formed.

    Linear in the graph's size: each node is first tested against a cheap "well formed" condition,
    and only a node that fails it is examined for messages.
    """
    found: list[str] = []
    g = graph.nx
    pred, succ = g._pred, g._succ
    ops: list[Op] = []
    tensors: list[Tensor] = []
    for node, readers in succ.items():  # plain loops: generators cost more than the tests here
        if isinstance(node, Op):
            ops.append(node)
            for v in readers:
                if isinstance(v, Op):
                    found.extend(_bad_edges(node, [v for v in readers if isinstance(v, Op)]))
                    break
        else:
            tensors.append(node)
            for v in readers:
                if not isinstance(v, Op):
                    found.extend(_bad_edges(node, [v for v in readers if not isinstance(v, Op)]))
                    break
    if not found:
        try:
            _ = graph.ops  # raises on a cycle (cached until the next mutation)
        except GraphCycleError:
            cycle = nx.find_cycle(g)
            cycle_ops = [describe(graph, u) for u, *_ in cycle if isinstance(u, Op)]
            found.append(f"cycle through {' -> '.join(cycle_ops)}")
    for name, ends in (("input", graph.inputs), ("output", graph.outputs)):
        for t in ends:
            if t not in g:
                found.append(f"graph {name} tensor '{t.name}' is not in the graph")
    known: dict[str, bool] = {}
    for op in ops:
        kind = known.get(op.type)
        if kind is None:
            kind = known[op.type] = is_known(op.type) or op.type == "CUSTOM"
        # well formed: input slots (with the omitted ones) are 0..n-1 once each, outputs 0..m-1
        slots = [d["slot"] for edges in pred[op].values() for d in edges.values()]
        if op.omitted_inputs:
            slots.extend(op.omitted_inputs)
        outs = [d["slot"] for edges in succ[op].values() for d in edges.values() if "intermediate" not in d]
        if not kind or sorted(slots) != list(range(len(slots))) or sorted(outs) != list(range(len(outs))):
            found.extend(_op_problems(graph, op))
    graph_inputs = {id(t) for t in graph.inputs}
    names: set[str] = set()
    duplicates: list[str] = []
    for t in tensors:
        if t.name and t.name in names:  # an empty name is no name: files leave tensors unnamed
            duplicates.append(t.name)
        names.add(t.name)
        producers = pred[t]
        is_input = id(t) in graph_inputs
        # well formed, the common cases: an activation with one producer, or a constant or graph
        # input with none; a plain shape; per-tensor quantization; data of the right type and shape
        if len(producers) == 1:
            suspect = t.data is not None or is_input or len(next(iter(producers.values()))) != 1
        else:
            suspect = bool(producers) or (t.data is None and not is_input)
        q = t.quant
        shape = t.shape
        if q is not None and q.scale.size:
            n = q.scale.size
            if q.zero_point.size not in (0, n) or (
                n > 1 and shape is not None and not (0 <= q.axis < len(shape) and shape[q.axis] == n)
            ):
                suspect = True
        if suspect or (shape and min(shape) < 0) or (t.data is not None and data_problem(t) is not None):
            found.extend(_tensor_problems(graph, t, is_input))
    found.extend(f"two tensors are named '{name}'" for name in dict.fromkeys(duplicates))
    op_names = [op.name for op in ops if op.name]
    if len(set(op_names)) != len(op_names):
        seen: set[str] = set()
        for name in op_names:
            if name in seen:
                found.append(f"two ops are named '{name}'")
            seen.add(name)
    return found


def _bad_edges(node: Op | Tensor, ends: list[Op | Tensor]) -> list[str]:
    return [f"edge {node!r} -> {v!r} does not join a tensor and an op" for v in ends]


def check(graph: Graph) -> None:
    """Raise IRCheckError listing every structural fault of `graph`."""
    found = problems(graph)
    if found:
        raise IRCheckError(found)


def _op_problems(graph: Graph, op: Op) -> list[str]:
    found = []
    if not is_known(op.type) and op.type != "CUSTOM":
        found.append(f"{describe(graph, op)} has unknown op type")
    in_slots = [d["slot"] for edges in graph.nx._pred[op].values() for d in edges.values()]
    if len(set(in_slots)) != len(in_slots):
        found.append(f"{describe(graph, op)} has two tensors on one input slot")
    if set(in_slots) & op.omitted_inputs:
        found.append(f"{describe(graph, op)} has a tensor on an input slot marked omitted")
    filled = set(in_slots) | op.omitted_inputs
    if filled != set(range(len(filled))):
        missing = sorted(set(range(max(filled) + 1)) - filled)
        found.append(f"{describe(graph, op)} has no tensor on input slot(s) {missing}")
    out_slots = [
        d["slot"] for edges in graph.nx._succ[op].values() for d in edges.values() if not d.get("intermediate")
    ]
    if sorted(out_slots) != list(range(len(out_slots))):
        found.append(f"{describe(graph, op)} has output slots {sorted(out_slots)}, expected 0..{len(out_slots) - 1}")
    return found


def _writer(graph: Graph, t: Tensor) -> Op:
    """An op that writes `t` (as output or intermediate)."""
    op: Op = next(iter(graph.nx._pred[t]))
    return op


def _tensor_problems(graph: Graph, t: Tensor, is_graph_input: bool) -> list[str]:
    found = []
    name = f"tensor '{t.name}'"
    n_producers = sum(len(edges) for edges in graph.nx._pred[t].values())
    if n_producers > 1:
        found.append(f"{name} has {n_producers} producers")
    if n_producers and is_graph_input:
        found.append(f"{name} is a graph input but is produced by {describe(graph, _writer(graph, t))}")
    if t.is_constant and n_producers:
        found.append(f"{name} has constant data but is produced by {describe(graph, _writer(graph, t))}")
    if (
        not n_producers
        and not is_graph_input
        and t.data is None
        and not t.is_variable
        and t.dtype not in _STATEFUL_DTYPES
        and graph.nx._succ[t]
        and not all(op.type == "CUSTOM" for op in graph.nx._succ[t])  # scratch memory, as in Vela's output
    ):
        reader = graph.consumers(t)[0][0]
        found.append(
            f"{name} is read by {describe(graph, reader)} but has no producer, no data and is not a graph input"
        )
    if t.shape is not None and any(d < 0 for d in t.shape):
        found.append(f"{name} has a negative dimension in shape {list(t.shape)}")
    q = t.quant
    if q is not None and q.is_affine:
        if q.zero_point.size not in (0, q.scale.size):
            found.append(f"{name} has {q.scale.size} scales but {q.zero_point.size} zero points")
        if q.per_axis and t.shape is not None:
            if not 0 <= q.axis < len(t.shape):
                found.append(f"{name} is quantized along axis {q.axis} but has rank {len(t.shape)}")
            elif t.shape[q.axis] != q.scale.size:
                size = t.shape[q.axis]
                found.append(
                    f"{name} has {q.scale.size} scales for axis {q.axis} of size {size} (shape {list(t.shape)})"
                )
    problem = data_problem(t)
    if problem:
        found.append(problem)
    return found


def data_problem(t: Tensor) -> str | None:
    """Why `t.data` cannot be the bytes of `t` (wrong numpy type or shape), or None when it can."""
    if t.data is None:
        return None
    expected = t.dtype.numpy if t.dtype.numpy is not None else np.dtype(np.uint8)
    if t.data.dtype != expected:
        return f"tensor '{t.name}' has {t.data.dtype.str} data for {t.dtype} (expected {expected.str})"
    dense = t.sparsity is None and t.dtype.numpy is not None
    if dense and t.shape is not None and tuple(t.data.shape) != t.shape:
        return f"tensor '{t.name}' has data of shape {list(t.data.shape)} for tensor shape {list(t.shape)}"
    return None
