"""encode-clusters: a clustered int8 layer's channels share one palette of <= 16 non-zero values,
bit-identical where the channels already held one palette exactly."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from npupass.backends.tflite import serialize_tflite
from npupass.frontends import load_model
from npupass.passes import PipelineError, run_passes
from npupass.passes.encode_clusters import Palette, shared_palette
from npupass.passes.pattern import WEIGHTED_OPS
from npupass.verify.litert import LiteRTModel, make_inputs

MODELS = Path(__file__).parent / "models"


def distinct(model_path_or_model: object) -> list[int]:
    model = load_model(model_path_or_model) if isinstance(model_path_or_model, Path) else model_path_or_model
    g = model.main  # type: ignore[attr-defined]
    return [
        int(np.unique(np.asarray(g.inputs_of(op)[WEIGHTED_OPS[op.type].weight].data)).size)
        for op in g.ops
        if op.type in WEIGHTED_OPS
    ]


def max_steps(a: bytes, b: bytes) -> int:
    ma, mb = LiteRTModel(a), LiteRTModel(b)
    worst = 0
    for seed in range(3):
        x = make_inputs(ma.inputs, seed)
        for ya, yb in zip(ma.run(x), mb.run(x), strict=True):
            worst = max(worst, int(np.abs(ya.astype(np.int64) - yb.astype(np.int64)).max()))
    return worst


@pytest.mark.parametrize(
    ("name", "before", "rewrites", "steps"),
    [
        ("clustered_mbv2s_int8.tflite", [26, 50, 46, 16, 28, 55, 16, 37, 16], 6, 1),
        ("clustered_mbv2s_int8_pt.tflite", [109, 183, 177, 164, 210, 188, 171, 219, 16], 8, 2),
    ],
)
def test_clustered_layers_share_one_palette(name: str, before: list[int], rewrites: int, steps: int) -> None:
    model = load_model(MODELS / name)
    original = serialize_tflite(model)
    assert distinct(model) == before
    result = run_passes(model, "encode-clusters")
    assert dict(result.passes[0].rewrites) == {"shared-palette": rewrites}
    assert not result.passes[0].declines
    assert distinct(model) == [16] * 9  # 16 clusters, no zero among them
    g = model.main
    for op in g.ops:
        if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = g.inputs_of(op)[1]
            assert w.quant.per_axis and w.quant.axis == WEIGHTED_OPS[op.type].axis
    assert max_steps(original, serialize_tflite(model)) == steps


def test_one_palette_in_different_scales_is_kept_bit_exact() -> None:
    palette = np.array([-120, -60, 30, 90, 120])
    channel = palette[[0, 1, 2, 3, 4, 2]]
    q = np.stack([channel, channel // 2]).astype(np.int8)  # channel 1: the same reals, half the integers
    scales = np.array([0.01, 0.02])
    result = shared_palette(q, scales, 0, 16)
    assert isinstance(result, Palette)
    assert result.exact and result.values == 5
    assert np.array_equal(result.ints[1], q[0]) and result.scales.astype(np.float32)[1] == np.float32(0.01)


def test_unclustered_layers_are_left_alone_with_the_reason() -> None:
    model = load_model(MODELS / "cnn_int8.tflite")
    before = serialize_tflite(model)
    result = run_passes(model, "encode-clusters")
    assert not result.changed and serialize_tflite(model) == before
    messages = [d.message for d in result.passes[0].declines]
    assert len(messages) == 4
    # what was found, not a guess: small channels whose weights all differ, or far more values than any palette
    found = [m.split("not re-scaled: ", 1)[1] for m in messages]
    assert all(
        re.fullmatch(r"not clustered: \d+ distinct values, hardly any weight repeats a value of its channel", m)
        for m in found[:3]
    ), found
    assert found[3] == "not clustered: 69 distinct values per channel"


def test_options_and_float_models() -> None:
    model = load_model(MODELS / "clustered_cnn_float.tflite")
    result = run_passes(model, "encode-clusters")  # float weights: the clusters are kept as they are
    assert not result.changed
    with pytest.raises(PipelineError, match=r"max_values must be 1\.\.127"):
        run_passes(model, "encode-clusters", options={"encode-clusters": {"max_values": 0}})
