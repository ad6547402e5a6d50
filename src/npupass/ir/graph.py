"""The IR: a Model of Graphs, each a bipartite networkx.MultiDiGraph of Op and Tensor nodes.

Edges run tensor -> op (the op reads the tensor at input `slot`) and op -> tensor (the op writes
the tensor at output `slot`), so ADD(x, x) is two edges. Connectivity lives only in the networkx
graph: nothing caches consumer lists. Op and Tensor objects are the nodes themselves (identity
hashed), so `graph.nx.predecessors(op)` yields Tensors.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator, Sequence
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
    seq: int = field(default_factory=_next_seq, repr=False)

    def __repr__(self) -> str:
        return f"Op({self.type}{' ' + repr(self.name) if self.name else ''})"


Node = Op | Tensor


class Graph:
    """One subgraph: ops and tensors in a bipartite MultiDiGraph, plus ordered graph inputs/outputs."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.nx: nx.MultiDiGraph = nx.MultiDiGraph()
        self.inputs: list[Tensor] = []
        self.outputs: list[Tensor] = []
        self.debug_metadata_index = -1

    # --- building -------------------------------------------------------------------------
    def add_tensor(self, tensor: Tensor) -> Tensor:
        self.nx.add_node(tensor)
        return tensor

    def add_op(
        self,
        op: Op,
        inputs: Sequence[Tensor | None],
        outputs: Sequence[Tensor],
        intermediates: Sequence[Tensor] = (),
    ) -> Op:
        """Add `op` reading `inputs` (None = omitted optional input) and writing `outputs`."""
        self.nx.add_node(op)
        op.omitted_inputs = {slot for slot, t in enumerate(inputs) if t is None}
        for slot, t in enumerate(inputs):
            if t is not None:
                self.nx.add_edge(self.add_tensor(t), op, key=slot, slot=slot)
        for slot, t in enumerate(outputs):
            self.nx.add_edge(op, self.add_tensor(t), key=slot, slot=slot)
        for slot, t in enumerate(intermediates):
            self.nx.add_edge(op, self.add_tensor(t), key=("intermediate", slot), slot=slot, intermediate=True)
        return op

    # --- queries --------------------------------------------------------------------------
    # The hot helpers read networkx's adjacency dicts (_pred/_succ: node -> neighbour -> key -> data)
    # directly: the public edge views cost several times more on 10,000-op graphs.
    @property
    def ops(self) -> list[Op]:
        """Ops in execution order: a topological order that keeps creation (file) order where it can.

        Raises GraphCycleError when the ops form a cycle.
        """
        pred, succ = self.nx._pred, self.nx._succ
        waiting: dict[Op, int] = {}
        ready: list[tuple[int, int, Op]] = []
        for op in self.iter_ops():
            n = sum(1 for t in pred[op] if pred[t])
            waiting[op] = n
            if n == 0:
                ready.append((op.seq, id(op), op))
        heapq.heapify(ready)
        order = []
        while ready:
            op = heapq.heappop(ready)[2]
            order.append(op)
            for t in succ[op]:
                for reader in succ[t]:
                    waiting[reader] -= 1
                    if waiting[reader] == 0:
                        heapq.heappush(ready, (reader.seq, id(reader), reader))
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
        return sorted(uses, key=lambda use: (use[0].seq, use[1]))

    def consumer_ops(self, tensor: Tensor) -> list[Op]:
        return sorted(self.nx._succ[tensor], key=lambda op: op.seq)

    def inputs_of(self, op: Op) -> list[Tensor | None]:
        """Input tensors by slot; None where the optional input is omitted."""
        edges = [(data["slot"], t) for t, keyed in self.nx._pred[op].items() for data in keyed.values()]
        size = max([s for s, _ in edges] + [*op.omitted_inputs], default=-1) + 1
        result: list[Tensor | None] = [None] * size
        for slot, t in edges:
            result[slot] = t
        return result

    def outputs_of(self, op: Op) -> list[Tensor]:
        return self._written_by(op, intermediate=False)

    def intermediates_of(self, op: Op) -> list[Tensor]:
        return self._written_by(op, intermediate=True)

    def _written_by(self, op: Op, intermediate: bool) -> list[Tensor]:
        edges = [
            (data["slot"], t)
            for t, keyed in self.nx._succ[op].items()
            for data in keyed.values()
            if bool(data.get("intermediate")) == intermediate
        ]
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
        """Make `op` read `tensor` at `slot` (None omits an optional input)."""
        for t, _, key, data in list(self.nx.in_edges(op, keys=True, data=True)):
            if data["slot"] == slot:
                self.nx.remove_edge(t, op, key=key)
        op.omitted_inputs.discard(slot)
        if tensor is None:
            op.omitted_inputs.add(slot)
        else:
            self.nx.add_edge(self.add_tensor(tensor), op, key=slot, slot=slot)

    def set_output(self, op: Op, slot: int, tensor: Tensor) -> None:
        """Make `op` write `tensor` at output `slot` (the tensor it wrote there stays, unwritten)."""
        for t, keyed in list(self.nx._succ[op].items()):
            for key, data in list(keyed.items()):
                if data["slot"] == slot and not data.get("intermediate"):
                    self.nx.remove_edge(op, t, key=key)
        self.nx.add_edge(op, self.add_tensor(tensor), key=slot, slot=slot)

    def drop_unused(self, *tensors: Tensor) -> None:
        """Remove those of `tensors` that no op touches and that are not graph inputs or outputs."""
        for t in tensors:
            if t in self.nx and self.nx.degree(t) == 0 and t not in self.inputs and not self.is_graph_output(t):
                self.nx.remove_node(t)

    def replace_uses(self, old: Tensor, new: Tensor) -> None:
        """Rewire every consumer of `old`, and graph outputs, to `new`."""
        for op, slot in self.consumers(old):
            self.set_input(op, slot, new)
        self.outputs = [new if t is old else t for t in self.outputs]

    def remove_op(self, op: Op) -> None:
        """Remove `op` and its edges; its tensors stay (remove_dead collects unused ones)."""
        self.nx.remove_node(op)

    def replace_op(self, old: Op, new: Op) -> Op:
        """Put `new` in place of `old`, with the same inputs, outputs and position in the order."""
        inputs, outputs, inter = self.inputs_of(old), self.outputs_of(old), self.intermediates_of(old)
        new.seq = old.seq
        self.remove_op(old)
        return self.add_op(new, inputs, outputs, inter)

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
                self.nx.remove_node(t)
        return len(dead)

    def __repr__(self) -> str:
        n_ops = sum(1 for _ in self.iter_ops())
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
