"""Generic NPU/CPU partitioning: which ops an accelerator takes, in which regions, and why the rest stay.

    predicate -> propose regions -> merge without creating cycles -> drop regions not worth offloading -> annotate

A backend supplies `predicate(graph, op)`, the reasons an op cannot run on the accelerator (empty when it
can), and optionally `worth(graph, ops)`, the reason a whole region is not worth offloading (None when it
is). A region is a convex set of accelerator ops: no path leaves it and comes back, so each region can be
compiled as one unit and the regions have an execution order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from npupass.ir.analysis import label
from npupass.ir.graph import Graph, Op

Predicate = Callable[[Graph, Op], list[str]]
Worth = Callable[[Graph, list[Op]], str | None]

NPU, CPU = "NPU", "CPU"


@dataclass
class Placement:
    """Where one op runs: `device` NPU or CPU, its region index on the NPU, the reasons it is on the CPU."""

    device: str
    region: int | None = None
    reasons: list[str] = field(default_factory=list)


@dataclass
class Partition:
    """The result: NPU regions in execution order, and a Placement for every op."""

    regions: list[list[Op]]
    placement: dict[Op, Placement]

    def on_npu(self, op: Op) -> bool:
        return self.placement[op].device == NPU

    @property
    def cpu_ops(self) -> list[Op]:
        return [op for op, p in self.placement.items() if p.device == CPU]

    def view_placement(self) -> dict[Op, dict[str, str]]:
        """The form `npupass view` draws: {op: {"target": "NPU"|"CPU", "reason": ...}}."""
        return {op: {"target": p.device, "reason": "; ".join(p.reasons)} for op, p in self.placement.items()}

    def to_json(self, graph: Graph) -> dict[str, Any]:
        order = {op: i for i, op in enumerate(graph.ops)}
        return {
            "regions": [[order[op] for op in region] for region in self.regions],
            "cpu_ops": [
                {"index": order[op], "op": label(graph, op), "reasons": p.reasons}
                for op, p in sorted(self.placement.items(), key=lambda item: order[item[0]])
                if p.device == CPU
            ],
        }


class _Regions:
    """Union-find over region ids, with the regions each region's ops depend on."""

    def __init__(self) -> None:
        self.parent: list[int] = []

    def new(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, r: int) -> int:
        while self.parent[r] != r:
            self.parent[r] = self.parent[self.parent[r]]
            r = self.parent[r]
        return r

    def union(self, keep: int, other: int) -> None:
        self.parent[self.find(other)] = self.find(keep)


def partition(graph: Graph, predicate: Predicate, worth: Worth | None = None) -> Partition:
    """Partition `graph`'s ops between the accelerator (NPU) and the CPU."""
    ops = graph.ops
    reasons = {op: predicate(graph, op) for op in ops}
    regions = _Regions()
    region_of: dict[Op, int] = {}
    # ancestors[op]: regions with an op above `op`; region_above[r]: regions with an op above one of r's ops.
    # Ids may be stale after merges: read them through regions.find.
    ancestors: dict[Op, set[int]] = {}
    region_above: dict[int, set[int]] = {}

    def upstream(start: set[int]) -> set[int]:
        """`start` and every region above them, treating each region as one unit (it runs all at once)."""
        seen: set[int] = set()
        stack = [regions.find(r) for r in start]
        while stack:
            r = stack.pop()
            if r not in seen:
                seen.add(r)
                stack.extend(regions.find(a) for a in region_above[r])
        return seen

    for op in ops:
        preds = {p for t in graph.inputs_of(op) if t is not None and (p := graph.producer(t)) is not None}
        above: set[int] = set()
        for p in preds:
            above |= ancestors[p]
            if p in region_of:
                above.add(region_of[p])
        ancestors[op] = {regions.find(r) for r in above}
        if reasons[op]:
            continue

        def reached_from_outside(r: int, preds: set[Op] = preds) -> bool:
            # would joining r close a loop: r -> (anything outside r) -> op?
            outside: set[int] = set()
            for p in preds:
                if p in region_of and regions.find(region_of[p]) == r:
                    continue
                outside |= ancestors[p] | ({region_of[p]} if p in region_of else set())
            return r in upstream(outside)

        chosen: list[int] = []
        for r in sorted({regions.find(region_of[p]) for p in preds if p in region_of}):
            if reached_from_outside(r):
                continue
            if any(c in upstream(region_above[r]) or r in upstream(region_above[c]) for c in chosen):
                continue  # one depends on the other: merging could close a loop through the ops between
            chosen.append(r)
        if chosen:
            target = chosen[0]
            for other in chosen[1:]:
                region_above[target] |= region_above.pop(other)
                regions.union(target, other)
        else:
            target = regions.new()
            region_above[target] = set()
        region_of[op] = target
        region_above[target] |= {r for r in ancestors[op] if regions.find(r) != target}

    grouped: dict[int, list[Op]] = {}
    for op in ops:
        if op in region_of:
            grouped.setdefault(regions.find(region_of[op]), []).append(op)
    kept: list[list[Op]] = []
    for members in grouped.values():
        why_not = worth(graph, members) if worth is not None else None
        if why_not is None:
            kept.append(members)
        else:
            for op in members:
                reasons[op] = [why_not]
    position = {op: i for i, op in enumerate(ops)}
    kept.sort(key=lambda members: position[members[0]])
    placement = {op: Placement(CPU, reasons=reasons[op]) for op in ops}
    for index, members in enumerate(kept):
        for op in members:
            placement[op] = Placement(NPU, region=index)
    return Partition(kept, placement)
