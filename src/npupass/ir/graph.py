"""The IR: a Model of Graphs, each a bipartite networkx.MultiDiGraph of Op and Tensor nodes.

Edges run tensor -> op (the op reads the tensor at input `slot`) and op -> tensor (the op writes
the tensor at output `slot`), so ADD(x, x) is two edges. Connectivity lives only in the networkx
graph: nothing caches consumer lists. Op and Tensor objects are the nodes themselves (identity
hashed), so `graph.nx.predecessors(op)` yields Tensors.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from npupass.errors import NpupassError
from npupass.ir.types import DType, Quantization, Sparsity, VariantSubtype

_sequence = itertools.count()


class GraphCycleError(NpupassError):
    """The ops of a graph depend on each other in a cycle, so they have no execution order."""


def _next_seq() -> int:
    return next(_sequence)


@dataclass(eq=False)
class Tensor:
    """A value: an activation (data is None) or a constant (data is a read-only numpy array).

    `shape` is None when the file records no shape. A sparse constant's `data` holds only the
    stored values (see `sparsity`); otherwise `data.shape == shape` wherever the element type
    is byte-sized, and data is the raw uint8 bytes for STRING, INT4 and other packed types.
    """

    name: str
    dtype: DType
    shape: tuple[int, ...] | None
    data: np.ndarray | None = None
    quant: Quantization | None = None
    shape_signature: tuple[int, ...] | None = None
    sparsity: Sparsity | None = None
    is_variable: bool = False
    has_rank: bool = False
    variant_subtypes: list[VariantSubtype] = field(default_factory=list)
    seq: int = field(default_factory=_next_seq, repr=False)

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def num_elements(self) -> int | None:
        if self.shape is None:
            return None
        n = 1
        for d in self.shape:
            n *= d
        return n

    def __repr__(self) -> str:
        return f"Tensor({self.name!r}, {self.dtype}, {list(self.shape) if self.shape is not None else None})"


@dataclass(eq=False)
class Op:
    """An operator. `type` is a canonical TFLite builtin name (CONV_2D) or an IR-only op (BATCH_NORM).

    `options` is a plain dict keyed by the schema's snake_case field names, with enum values as
    their names ("SAME", "RELU6"). `options_type` names the schema table the options belong to
    (e.g. "Conv2DOptions"), None when the op carries no options table. `omitted_inputs` lists the
    input slots deliberately left empty (optional inputs, -1 in TFLite).
    """

    type: str
    options: dict[str, Any] = field(default_factory=dict)
    options_type: str | None = None
    version: int = 1
    name: str = ""
    custom_code: str | None = None
    custom_options: bytes | None = None
    custom_options_format: str = "FLEXBUFFERS"
    omitted_inputs: set[int] = field(default_factory=set)
    mutating_variable_inputs: list[bool] = field(default_factory=list)
    debug_metadata_index: int = -1
    provenance: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Op({self.type}{' ' + repr(self.name) if self.name else ''})"


Node = Op | Tensor


class Graph:
    """One subgraph: ops and tensors in a bipartite MultiDiGraph, plus ordered graph inputs/outputs.

    The graph owns the ops' ordering keys: `add_op` gives each op a key (its position in creation
    order, or the position of the op it is `placed` at, plus a serial number that breaks ties), and
    `ops` is the topological order that follows the keys where it can. The order is computed once
    and cached until the next mutation through this class's methods (after editing `nx` directly,
    call `invalidate()`).
    """

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.nx: nx.MultiDiGraph = nx.MultiDiGraph()
        self.inputs: list[Tensor] = []
        self.outputs: list[Tensor] = []
        self.debug_metadata_index = -1
        self._keys: dict[Op, tuple[int, int]] = {}
        self._next_key = 0
        self._order: list[Op] | None = None
        self._names: dict[bool, Counter[str]] | None = None  # is-op -> name counts, built on first use
        self._suffixes: dict[str, int] = {}
        self.sorts = 0
        """How many times the execution order was computed (the cache's effect is tested)."""
        self.version = 0
        """Counts structural changes made through this class (the PassManager skips re-checking a
        graph no pass changed)."""

    # --- building -------------------------------------------------------------------------
    def add_tensor(self, tensor: Tensor, fresh: bool = False) -> Tensor:
        """Add `tensor` (a no-op when it is in the graph). With `fresh`, a tensor whose name another
        tensor here has is renamed to a fresh name (`fresh_name`).

        Rewrites (`add_op` with `place`, `set_input`, `set_output`, `replace`) add tensors fresh, so
        they never duplicate a name; building a graph keeps names as given (`check` reports twins).
        """
        if tensor not in self.nx:
            if fresh and self._name_counts()[False][tensor.name] > 0:
                tensor.name = self.fresh_name(tensor.name)
            else:
                self._count_name(tensor, 1)
            self.nx.add_node(tensor)
            self.version += 1
        return tensor

    def add_op(
        self,
        op: Op,
        inputs: Sequence[Tensor | None],
        outputs: Sequence[Tensor],
        intermediates: Sequence[Tensor] = (),
        place: Op | int | None = None,
    ) -> Op:
        """Add `op` reading `inputs` (None = omitted optional input) and writing `outputs`.

        `place` (an op of this graph, or a `position` taken before its op was removed) puts `op` at
        that position in the execution order: just after the op there where the data flow allows
        (before it when `op` feeds it). By default `op` goes last.
        """
        if op not in self._keys:
            position = self.position(place) if isinstance(place, Op) else self._next_key if place is None else place
            self._keys[op] = (position, self._next_key)
            self._next_key += 1
            if place is not None and op.name and self._name_counts()[True][op.name] > 0:
                op.name = self.fresh_name(op.name, op=True)
            else:
                self._count_name(op, 1)
        self._changed()
        self.nx.add_node(op)
        op.omitted_inputs = {slot for slot, t in enumerate(inputs) if t is None}
        fresh = place is not None
        for slot, t in enumerate(inputs):
            if t is not None:
                self.nx.add_edge(self.add_tensor(t, fresh), op, key=slot, slot=slot)
        for slot, t in enumerate(outputs):
            self.nx.add_edge(op, self.add_tensor(t, fresh), key=slot, slot=slot)
        for slot, t in enumerate(intermediates):
            self.nx.add_edge(op, self.add_tensor(t, fresh), key=("intermediate", slot), slot=slot, intermediate=True)
        return op

    # --- names ----------------------------------------------------------------------------
    def _name_counts(self) -> dict[bool, Counter[str]]:
        if self._names is None:
            self._names = {True: Counter(), False: Counter()}
            for node in self.nx:
                self._names[isinstance(node, Op)][node.name] += 1
        return self._names

    def _count_name(self, node: Node, delta: int) -> None:
        if self._names is not None:
            self._names[isinstance(node, Op)][node.name] += delta

    def fresh_name(self, base: str, op: bool = False) -> str:
        """`base`, or `base_1`, `base_2` ... : a tensor name (op name with op=True) not in use here.

        The name is reserved, so two calls never hand out the same name."""
        names = self._name_counts()[op]
        name, n = base, self._suffixes.get(base, 0)
        while names[name] > 0:
            n += 1
            name = f"{base}_{n}"
        if n:
            self._suffixes[base] = n  # the next call for `base` starts here: linear, not quadratic
        names[name] += 1  # reserved until the graph forgets it (see forget_names)
        return name

    def rename_twins(self) -> int:
        """Give every named tensor and op whose name an earlier one has a fresh name; returns how many
        were renamed. Frontends call it on files that repeat names (TFLite allows it)."""
        renamed = 0
        ops = sorted(self.iter_ops(), key=self._key)  # creation order: `ops` may meet a cycle
        tensors: list[Node] = list(self.tensors)
        for is_op, nodes in ((False, tensors), (True, list[Node](ops))):
            seen: set[str] = set()
            for node in nodes:
                if node.name and node.name in seen:  # unnamed stays unnamed (a lossless round trip)
                    node.name = self.fresh_name(node.name, op=is_op)
                    renamed += 1
                seen.add(node.name)
        if renamed:
            self.forget_names()
        return renamed

    def forget_names(self) -> None:
        """Recount names from the nodes (after renaming nodes by assignment)."""
        self._names = None

    # --- queries --------------------------------------------------------------------------
    # The hot helpers read networkx's adjacency dicts (_pred/_succ: node -> neighbour -> key -> data)
    # directly: the public edge views cost several times more on 10,000-op graphs.
    @property
    def ops(self) -> list[Op]:
        """Ops in execution order: a topological order that keeps the ordering keys where it can.

        Computed once per mutation. Raises GraphCycleError when the ops form a cycle.
        """
        if self._order is None:
            self._order = self._sort()
        return list(self._order)

    def position(self, op: Op) -> int:
        """`op`'s position key: what `add_op(place=...)` takes to put new ops where `op` is."""
        return self._key(op)[0]

    @property
    def num_ops(self) -> int:
        """How many ops the graph has (without ordering them)."""
        return len(self._keys)

    def invalidate(self) -> None:
        """Forget the cached execution order and names (after editing `nx` directly)."""
        self._changed()
        self._names = None

    def _changed(self) -> None:
        self._order = None
        self.version += 1

    def _key(self, op: Op) -> tuple[int, int]:
        key = self._keys.get(op)
        if key is None:  # added to `nx` directly
            key = self._keys[op] = (self._next_key, self._next_key)
            self._next_key += 1
        return key

    def _sort(self) -> list[Op]:
        self.sorts += 1
        pred, succ = self.nx._pred, self.nx._succ
        ops = [n for n in self.nx if isinstance(n, Op)]
        for op in [op for op in self._keys if op not in pred]:  # removed from `nx` directly
            del self._keys[op]
        ops.sort(key=self._key)
        # Fast path: the key order itself is topological (no op reads what a later op writes), and
        # then it is the order the heap below would produce.
        position = {op: i for i, op in enumerate(ops)}
        if all(position[w] < i for i, op in enumerate(ops) for t in pred[op] for w in pred[t]):
            return ops
        keys = self._keys
        waiting: dict[Op, int] = {}
        ready: list[tuple[tuple[int, int], Op]] = []
        for op in ops:
            n = sum(1 for t in pred[op] if pred[t])
            waiting[op] = n
            if n == 0:
                ready.append((keys[op], op))
        heapq.heapify(ready)
        order = []
        while ready:
            op = heapq.heappop(ready)[1]
            order.append(op)
            for t in succ[op]:
                for reader in succ[t]:
                    waiting[reader] -= 1
                    if waiting[reader] == 0:
                        heapq.heappush(ready, (keys[reader], reader))
        if len(order) < len(waiting):
            raise GraphCycleError(f"the ops of graph '{self.name}' form a cycle")
        return order

    @property
    def tensors(self) -> list[Tensor]:
        """Tensors in creation order (the file's order for imported models)."""
        return sorted((n for n in self.nx if isinstance(n, Tensor)), key=lambda t: t.seq)

    def iter_ops(self) -> Iterator[Op]:
        """Ops in no particular order (cheaper than `ops` when order does not matter)."""
        return (n for n in self.nx if isinstance(n, Op))

    def producer(self, tensor: Tensor) -> Op | None:
        for op, edges in self.nx._pred[tensor].items():
            if any(not data.get("intermediate") for data in edges.values()):
                return op
        return None

    def consumers(self, tensor: Tensor) -> list[tuple[Op, int]]:
        """(op, input slot) for every use of `tensor`, in op creation order."""
        uses = [(op, data["slot"]) for op, edges in self.nx._succ[tensor].items() for data in edges.values()]
        return sorted(uses, key=lambda use: (self._key(use[0]), use[1]))

    def consumer_ops(self, tensor: Tensor) -> list[Op]:
        return sorted(self.nx._succ[tensor], key=self._key)

    def inputs_of(self, op: Op) -> list[Tensor | None]:
        """Input tensors by slot; None where the optional input is omitted."""
        by_slot: dict[int, Tensor] = {}
        for t, keyed in self.nx._pred[op].items():
            for data in keyed.values():
                by_slot[data["slot"]] = t
        n = len(by_slot)
        if not op.omitted_inputs and (n == 0 or max(by_slot) == n - 1):
            return [by_slot[slot] for slot in range(n)]  # the common case: slots 0..n-1
        size = max(max(by_slot, default=-1), max(op.omitted_inputs, default=-1)) + 1
        return [by_slot.get(slot) for slot in range(size)]

    def outputs_of(self, op: Op) -> list[Tensor]:
        return self._written_by(op, intermediate=False)

    def intermediates_of(self, op: Op) -> list[Tensor]:
        return self._written_by(op, intermediate=True)

    def _written_by(self, op: Op, intermediate: bool) -> list[Tensor]:
        written = self.nx._succ[op]
        if len(written) == 1:  # the common case: one tensor on one edge
            ((t, keyed),) = written.items()
            if len(keyed) == 1:
                (data,) = keyed.values()
                return [t] if bool(data.get("intermediate")) == intermediate else []
        edges = [
            (data["slot"], t)
            for t, keyed in self.nx._succ[op].items()
            for data in keyed.values()
            if ("intermediate" in data and data["intermediate"]) == intermediate
        ]
        if len(edges) == 1:
            return [edges[0][1]]
        edges.sort(key=lambda e: e[0])
        return [t for _, t in edges]

    def is_graph_output(self, tensor: Tensor) -> bool:
        return any(t is tensor for t in self.outputs)

    def find_tensor(self, name: str) -> Tensor:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    # --- rewriting ------------------------------------------------------------------------
    def set_input(self, op: Op, slot: int, tensor: Tensor | None) -> None:
        """Make `op` read `tensor` at `slot` (None omits an optional input). The tensor read there
        before leaves the graph when nothing else touches it (so `tensor` may take its name)."""
        self._changed()
        for t, keyed in list(self.nx._pred[op].items()):
            for key, data in list(keyed.items()):
                if data["slot"] == slot:
                    self.nx.remove_edge(t, op, key=key)
                    self.drop_unused(t)
        op.omitted_inputs.discard(slot)
        if tensor is None:
            op.omitted_inputs.add(slot)
        else:
            self.nx.add_edge(self.add_tensor(tensor, fresh=True), op, key=slot, slot=slot)

    def set_output(self, op: Op, slot: int, tensor: Tensor) -> None:
        """Make `op` write `tensor` at output `slot`. The tensor it wrote there stays, unwritten,
        when something reads it or it is a graph output; otherwise it leaves the graph."""
        self._changed()
        for t, keyed in list(self.nx._succ[op].items()):
            for key, data in list(keyed.items()):
                if data["slot"] == slot and not data.get("intermediate"):
                    self.nx.remove_edge(op, t, key=key)
                    self.drop_unused(t)
        self.nx.add_edge(op, self.add_tensor(tensor, fresh=True), key=slot, slot=slot)

    def drop_unused(self, *tensors: Tensor) -> None:
        """Remove those of `tensors` that no op touches and that are not graph inputs or outputs."""
        pred, succ = self.nx._pred, self.nx._succ
        for t in tensors:
            if t in pred and not pred[t] and not succ[t] and t not in self.inputs and not self.is_graph_output(t):
                self._remove_node(t)

    def replace_uses(self, old: Tensor, new: Tensor) -> None:
        """Rewire every consumer of `old`, and graph outputs, to `new`."""
        for op, slot in self.consumers(old):
            self.set_input(op, slot, new)
        self.outputs = [new if t is old else t for t in self.outputs]

    def remove_op(self, op: Op) -> None:
        """Remove `op` and its edges; its tensors stay (remove_dead collects unused ones)."""
        self._keys.pop(op, None)
        self._remove_node(op)

    def _remove_node(self, node: Node) -> None:
        self.nx.remove_node(node)
        self._count_name(node, -1)
        self.version += 1
        if isinstance(node, Op):
            self._order = None

    def replace_op(self, old: Op, new: Op) -> Op:
        """Put `new` in place of `old`, with the same inputs, outputs and position in the order."""
        inputs, outputs, inter = self.inputs_of(old), self.outputs_of(old), self.intermediates_of(old)
        self.add_op(new, [], [], place=old)
        self.remove_op(old)
        return self.add_op(new, inputs, outputs, inter)

    def replace(
        self,
        old: Sequence[Op],
        new: Sequence[tuple[Op, Sequence[Tensor | None], Sequence[Tensor]]],
        place: Op | None = None,
        rewire: Mapping[Tensor, Tensor] | None = None,
    ) -> str | None:
        """Replace the ops `old` by the ops `new`, given as (op, inputs, outputs) in data order.
        `rewire` maps a tensor an old op writes to the tensor its readers read instead (a folded
        constant, or the input of an op that does nothing).

        The new ops go where `place` (default: the last of `old`) was in the execution order; a new
        op without a name takes that op's name. Tensors only the old ops touched leave the graph.
        Refuses, changing nothing, and returns the reason when a tensor an old op writes is read
        outside `old`, or is a graph output, and no new op writes it (a matched intermediate with
        other readers, a graph output that would vanish). Returns None when done.
        """
        old_set = set(old)
        rewire = rewire or {}
        written = {id(t) for _, _, outs in new for t in outs} | {id(t) for t in rewire}
        reads_new = {id(t) for _, ins, _ in new for t in ins if t is not None}
        for op in old:
            for t in self.outputs_of(op):
                if id(t) in written:
                    if t in rewire and self.is_graph_output(t):
                        return f"graph output '{t.name}' would be replaced"
                    continue
                if self.is_graph_output(t):
                    return f"graph output '{t.name}' would vanish"
                outside = [reader for reader in self.nx._succ[t] if reader not in old_set]
                if outside or id(t) in reads_new:
                    reader_type = outside[0].type if outside else "the replacement"
                    return f"'{t.name}' is also read by {reader_type}, outside the match"
        anchor = place if place is not None else old[-1]
        position, name = self.position(anchor), anchor.name
        touched = [t for op in old for t in (*self.inputs_of(op), *self.outputs_of(op)) if t is not None]
        kept = {op: self.intermediates_of(op) for op, _, _ in new if op in old_set}  # an old op kept keeps them
        for op in old:
            self.remove_op(op)
        for t, replacement in rewire.items():
            uses = self.consumers(t)
            for reader, slot in uses:  # detach first, so that `t` leaves and its name is free
                self.set_input(reader, slot, None)
            for reader, slot in uses:
                self.set_input(reader, slot, replacement)
        used = (written - {id(t) for t in rewire}) | reads_new | {id(t) for t in rewire.values()}
        self.drop_unused(*(t for t in touched if id(t) not in used))
        for op, inputs, outputs in new:
            if not op.name and op is new[-1][0]:
                op.name = name
            self.add_op(op, inputs, outputs, kept.get(op, ()), place=position)
        return None

    def remove_dead(self, keep: Iterable[Op] = ()) -> int:
        """Remove every op that nothing needed depends on, then tensors nobody touches; returns ops removed.

        Needed: graph outputs, ops with side effects (ir.ops.has_side_effects), ops without
        outputs, ops in `keep`, and everything those read, transitively (one mark-and-sweep pass).
        """
        from npupass.ir.ops import has_side_effects

        pred = self.nx._pred
        kept = set(keep)
        live: set[Op] = set()
        needed: list[Tensor] = list(self.outputs)
        for op in self.iter_ops():
            if op in kept or not self.outputs_of(op) or has_side_effects(op):
                live.add(op)
                needed.extend(pred[op])
        seen: set[Tensor] = set()
        while needed:
            t = needed.pop()
            if t in seen:
                continue
            seen.add(t)
            for op in pred[t]:
                if op not in live:
                    live.add(op)
                    needed.extend(pred[op])
        dead = [op for op in self.iter_ops() if op not in live]
        for op in dead:
            self.remove_op(op)
        outputs = set(map(id, self.outputs))
        graph_inputs = set(map(id, self.inputs))
        for t in [n for n in self.nx if isinstance(n, Tensor)]:
            if self.nx.degree(t) == 0 and id(t) not in outputs and id(t) not in graph_inputs:
                self._remove_node(t)
        return len(dead)

    def __repr__(self) -> str:
        n_ops = self.num_ops
        return f"Graph({self.name!r}, {n_ops} ops, {self.nx.number_of_nodes() - n_ops} tensors)"


@dataclass(eq=False)
class Signature:
    """A named entry point: public names for a subgraph's inputs and outputs.

    Entries are (name, position in the subgraph's `inputs` / `outputs` list), so a pass that
    rewires a graph output (Graph.replace_uses) keeps the signature pointing at the right tensor.
    """

    key: str
    subgraph_index: int
    inputs: list[tuple[str, int]] = field(default_factory=list)
    outputs: list[tuple[str, int]] = field(default_factory=list)

    def input_tensors(self, model: Model) -> list[tuple[str, Tensor]]:
        graph = model.subgraphs[self.subgraph_index]
        return [(name, graph.inputs[i]) for name, i in self.inputs]

    def output_tensors(self, model: Model) -> list[tuple[str, Tensor]]:
        graph = model.subgraphs[self.subgraph_index]
        return [(name, graph.outputs[i]) for name, i in self.outputs]


@dataclass(eq=False)
class Model:
    """Subgraphs (index 0 is the main graph), signatures and metadata: all a TFLite file holds."""

    subgraphs: list[Graph]
    signatures: list[Signature] = field(default_factory=list)
    metadata: list[tuple[str, bytes]] = field(default_factory=list)
    description: str | None = None
    version: int = 3
    legacy_metadata_buffers: list[bytes] = field(default_factory=list)
    source_format: str = "tflite"
    buffer_storage: str = "inline"
    """Where the source file kept constant buffers: "inline" (in the flatbuffer) or "external" (after it)."""
    canonical: bool = True
    """Whether the graph is in a converter's canonical form (activations fused, batch norms folded); False
    for an op-by-op translation (the ONNX import), which the default pipelines canonicalize."""
    source_path: str | None = None
    """The file the model was read from, if any (reports name it)."""
    appended: bytes = b""
    """Bytes the source file holds after the flatbuffer and its buffers (TFLite Support metadata keeps
    its associated files there, as a zip); the TFLite writer writes them back after the model."""
    notes: list[str] = field(default_factory=list)
    """What the reader changed on the way in that the user should know (e.g. an ONNX opset upgrade)."""
    quant_axis_as_read: list[tuple[Tensor, Quantization, int]] = field(default_factory=list)
    """Rank-1 per-channel tensors whose file said a quantized axis past their rank (a bias that kept its
    4-D weight's axis 3): (tensor, its quantization as read, now along axis 0, the file's axis). The
    writer writes the file's axis back while the tensor keeps that quantization."""
    conversion: dict[str, Any] | None = None
    """How a Keras/SavedModel input was converted (route, converter version, flags); None for other inputs."""

    @property
    def main(self) -> Graph:
        return self.subgraphs[0]

    def metadata_entry(self, name: str) -> bytes | None:
        for key, value in self.metadata:
            if key == name:
                return value
        return None
