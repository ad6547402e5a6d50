"""Passes keep what pruning and clustering bought: zeros stay zeros, and the set of weight values
per tensor does not grow, after every pass of the default pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from rewrites import load, unfold, weighted_ops

from npupass.ir.graph import Graph
from npupass.ir.types import DType
from npupass.passes import DEFAULT_PIPELINE, run_passes
from npupass.passes.fold_fake_quant import as_int8, quantize_values
from npupass.passes.pattern import WEIGHTED_OPS, input_at, producer_of


def effective_weights(graph: Graph) -> list[np.ndarray]:
    """Per weighted op, in order: the weight values the op computes with (int8 where a fake-quant
    rounds them, as that QUANTIZE would)."""
    result = []
    for op in weighted_ops(graph):
        w = input_at(graph, op, WEIGHTED_OPS[op.type].weight)
        dq = producer_of(graph, w, "DEQUANTIZE")
        if dq is not None:
            tq = graph.inputs_of(dq)[0]
            q = producer_of(graph, tq, "QUANTIZE")
            src = graph.inputs_of(q)[0]
            result.append(quantize_values(np.asarray(src.data, dtype=np.float64), as_int8(tq.quant, tq.dtype)))
        else:
            result.append(np.asarray(w.data))
    return result


def raw_weights(graph: Graph) -> list[np.ndarray]:
    """Per weighted op: the stored constant (the float weights pruning and clustering produced)."""
    result = []
    for op in weighted_ops(graph):
        w = input_at(graph, op, WEIGHTED_OPS[op.type].weight)
        while not w.is_constant:
            w = graph.inputs_of(graph.producer(w))[0]
        result.append(np.asarray(w.data))
    return result


def _with_work(name: str):
    """The model, and for a float model a version with its batch norms unfolded and activations
    unfused again, so that fold-batch-norm and fuse-activations have work to do."""
    model = load(name)
    if not name.endswith("_fq"):
        rng = np.random.default_rng(2)
        for op in weighted_ops(model.main):
            unfold(model.main, op, rng, "mul-add", negative=False)
    return model


@pytest.mark.parametrize(
    ("name", "io"),
    [
        ("pruned_qat_cnn_fq", "int8"),
        ("clustered_qat_cnn_fq", "int8"),
        ("pruned_cnn_float", None),
        ("clustered_cnn_float", None),
    ],
)
def test_zeros_and_value_sets_survive_every_pass(name: str, io: str | None) -> None:
    model = _with_work(name)
    pruned = [w == 0 for w in raw_weights(model.main)]
    before = effective_weights(model.main)
    passes = DEFAULT_PIPELINE.split(",") if io else ["fold-batch-norm", "fuse-activations"]
    rewrites = 0
    for p in passes:
        result = run_passes(model, p, options={"fold-fake-quant": {"io": io}} if p == "fold-fake-quant" else None)
        rewrites += sum(result.passes[0].rewrites.values())
        after = effective_weights(model.main)
        assert len(after) == len(before)
        for zeros, b, a in zip(pruned, before, after, strict=True):
            assert a.shape == b.shape
            assert np.all(a[zeros] == 0), f"{p} turned pruned zeros into values"
            assert np.count_nonzero(a == 0) == np.count_nonzero(b == 0), p
            if io:  # int8: the set of values per weight does not grow
                assert np.unique(a).size <= np.unique(b).size, p
    assert rewrites >= 10  # the passes did work on these weights
    if io:
        assert all(w.dtype == np.int8 for w in after)
        assert all(t.dtype in (DType.INT8, DType.INT32) for t in model.main.tensors)


def test_pruned_fixtures_are_pruned_and_clustered_fixtures_clustered() -> None:
    for name in ("pruned_cnn_float", "pruned_qat_cnn_fq"):
        weights = raw_weights(load(name).main)
        assert sum(int(np.count_nonzero(w == 0)) for w in weights) >= 0.5 * sum(w.size for w in weights)
    for name in ("clustered_cnn_float", "clustered_qat_cnn_fq"):
        graph = load(name).main
        for op, w in zip(weighted_ops(graph), raw_weights(graph), strict=True):
            axis = WEIGHTED_OPS[op.type].axis
            per_channel = [np.unique(np.take(w, c, axis=axis)).size for c in range(w.shape[axis])]
            assert max(per_channel) <= 16  # 16 clusters, rescaled per channel by the folded batch norm
