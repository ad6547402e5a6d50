"""The preservation report: what pruning and clustering bought, before and after each pass.

Per weight tensor (named by the op that reads it, or the original op a rewrite came from): the
fraction of zeros and the distinct values, per tensor and at most in one output channel. A weight
is looked at behind DEQUANTIZE / QUANTIZE / DENSIFY, and sparse storage is decoded, so a pass that
re-encodes a weight is judged on the values the op computes with. `problems` names every pass that
lost zeros, or grew the value set of an int8 weight.

It plugs into the PassManager as a Verifier (start / after) and can wrap another Verifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from npupass.ir.analysis import label
from npupass.ir.graph import Model, Tensor
from npupass.ir.ops import WEIGHTED_OPS

if TYPE_CHECKING:
    from npupass.passes.manager import Pass, Verifier


@dataclass(frozen=True)
class WeightStats:
    zeros: float
    unique: int
    unique_per_channel_max: int
    dtype: str

    def to_json(self) -> dict[str, Any]:
        return {
            "zeros": round(self.zeros, 6),
            "unique": self.unique,
            "unique_per_channel_max": self.unique_per_channel_max,
            "dtype": self.dtype,
        }


def _dense_view(t: Tensor) -> Tensor:
    """`t` itself, or for sparse storage a dense copy (what DENSIFY gives the op)."""
    if t.sparsity is None or t.data is None or t.shape is None:
        return t
    from npupass.passes.encode_sparsity import decode

    dense = decode(np.asarray(t.data), t.sparsity, tuple(t.shape))
    return Tensor(t.name, t.dtype, t.shape, dense, quant=t.quant)


def snapshot(model: Model) -> dict[str, WeightStats]:
    """Stats of every weight of the main graph, keyed by the op it belongs to."""
    from npupass.ir.analysis import weight_source, weight_stats

    graph = model.main
    result: dict[str, WeightStats] = {}
    for op in graph.ops:
        where = WEIGHTED_OPS.get(op.type)
        if where is None:
            continue
        inputs = graph.inputs_of(op)
        source = weight_source(graph, inputs[where.weight] if where.weight < len(inputs) else None)
        if source is None or source.data is None:
            continue
        stats = weight_stats(_dense_view(source), where.axis)
        if stats is None:
            continue
        origins = op.provenance.get("from") or []
        key = origins[0] if origins else label(graph, op)  # a rewritten op keeps its original name
        result.setdefault(
            key, WeightStats(stats["zeros"], stats["unique"], stats["unique_per_channel_max"], str(source.dtype))
        )
    return result


@dataclass
class PreservationReport:
    """Snapshots of the weights: "input", then one after every pass that changed the model."""

    inner: Verifier | None = None
    stages: list[str] = field(default_factory=list)
    snapshots: list[dict[str, WeightStats]] = field(default_factory=list)

    def start(self, model: Model) -> None:
        self.stages, self.snapshots = ["input"], [snapshot(model)]
        if self.inner is not None:
            self.inner.start(model)

    def after(self, pass_: Pass, model: Model) -> str | None:
        self.stages.append(pass_.name)
        self.snapshots.append(snapshot(model))
        return self.inner.after(pass_, model) if self.inner is not None else None

    @property
    def weights(self) -> list[str]:
        names: list[str] = []
        for snap in self.snapshots:
            names += [n for n in snap if n not in names]
        return names

    @property
    def problems(self) -> list[str]:
        """Every pass that turned zeros into values or grew an int8 weight's set of values."""
        found = []
        for i in range(1, len(self.snapshots)):
            for name, before in self.snapshots[i - 1].items():
                after = self.snapshots[i].get(name)
                if after is None:
                    continue
                if after.zeros + 1e-9 < before.zeros:
                    found.append(f"{self.stages[i]}: {name} went from {before.zeros:.1%} to {after.zeros:.1%} zeros")
                if before.dtype == after.dtype == "INT8" and after.unique > before.unique:
                    found.append(f"{self.stages[i]}: {name} went from {before.unique} to {after.unique} int8 values")
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "stages": list(self.stages),
            "weights": [
                {"op": name, "stages": [s[name].to_json() if name in s else None for s in self.snapshots]}
                for name in self.weights
            ],
            "problems": self.problems,
        }
