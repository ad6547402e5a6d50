"""A layered top-to-bottom layout of a graph's ops: rank by longest path, order by barycenters."""

from __future__ import annotations

from dataclasses import dataclass

from npupass.ir.graph import Graph, Op

NODE_W, NODE_H, GAP_X, GAP_Y = 180.0, 44.0, 30.0, 36.0


@dataclass
class Placed:
    x: float  # left
    y: float  # top
    rank: int


def layout(graph: Graph, ops: list[Op], sweeps: int = 4) -> tuple[dict[Op, Placed], float, float]:
    """Positions for `ops` (in execution order), and the drawing's width and height."""
    preds: dict[Op, list[Op]] = {op: [] for op in ops}
    for op in ops:
        for t in graph.inputs_of(op):
            writer = graph.producer(t) if t is not None else None
            if writer is not None and writer in preds:
                preds[op].append(writer)
    succs: dict[Op, list[Op]] = {op: [] for op in ops}
    for op, ps in preds.items():
        for p in ps:
            succs[p].append(op)
    rank: dict[Op, int] = {}
    for op in ops:  # execution order is topological
        rank[op] = 1 + max((rank[p] for p in preds[op]), default=-1)
    # ops fed only by constants (weight QUANTIZE/DEQUANTIZE chains) sit just above their first reader
    constant_fed: set[Op] = set()
    for op in ops:
        if all(p in constant_fed for p in preds[op]) and not any(t in graph.inputs for t in graph.inputs_of(op)):
            constant_fed.add(op)
    for op in reversed(ops):
        if op in constant_fed and succs[op]:
            rank[op] = max(0, min(rank[s] for s in succs[op]) - 1)
    layers: list[list[Op]] = [[] for _ in range(max(rank.values(), default=-1) + 1)]
    for op in ops:
        layers[rank[op]].append(op)
    position = {op: float(i) for layer in layers for i, op in enumerate(layer)}
    for sweep in range(sweeps):  # down with predecessors, up with successors
        order = layers if sweep % 2 == 0 else layers[::-1]
        neighbours = preds if sweep % 2 == 0 else succs
        for layer in order:
            keyed = []
            for op in layer:
                near = [position[n] for n in neighbours[op]]
                keyed.append((sum(near) / len(near) if near else position[op], position[op], op))
            keyed.sort(key=lambda k: (k[0], k[1]))
            for i, (_, _, op) in enumerate(keyed):
                position[op] = float(i)
            layer[:] = [k[2] for k in keyed]
    widest = max((len(layer) for layer in layers), default=1)
    width = widest * (NODE_W + GAP_X) + GAP_X
    placed = {}
    for r, layer in enumerate(layers):
        offset = (width - len(layer) * (NODE_W + GAP_X) + GAP_X) / 2
        for i, op in enumerate(layer):
            placed[op] = Placed(offset + i * (NODE_W + GAP_X), GAP_Y + r * (NODE_H + GAP_Y), r)
    height = GAP_Y + len(layers) * (NODE_H + GAP_Y)
    return placed, width, height
