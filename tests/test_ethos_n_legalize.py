"""legalize-ethos-n: exact rewrites, checked bit for bit in LiteRT."""

from __future__ import annotations

import numpy as np
import pytest
from ethos_n_graphs import Graph, act, const, model, op, q, single
from rewrites import counts, load

from npupass.backends.ethos_n.legalize import INT8_VALUES
from npupass.backends.tflite import serialize_tflite
from npupass.ir import check
from npupass.ir.kernels import add_int8, depthwise_int8, mul_int8
from npupass.ir.types import DType
from npupass.passes import run_passes
from npupass.verify.litert import LiteRTModel

ALL_VALUES = np.arange(-128, 128, dtype=np.int8).reshape(1, 16, 16, 1)


def outputs(data: bytes, channels: int) -> np.ndarray:
    return LiteRTModel(data).run([np.tile(ALL_VALUES, (1, 1, 1, channels))])[0]


@pytest.mark.parametrize("seed", range(6))
def test_integer_emulation_matches_litert(seed: int) -> None:
    """The kernels the affine rule proves with are LiteRT's, on all 256 inputs of 8 channels."""
    rng = np.random.default_rng(seed)
    c, xs, xz = 8, float(rng.uniform(0.005, 0.2)), int(rng.integers(-128, 128))
    x, y = act("x", (1, 16, 16, c), xs, xz), act("y", (1, 16, 16, c), float(rng.uniform(0.005, 0.2)), 5)
    cv, cs, cz = rng.integers(-100, 100, c), float(rng.uniform(0.002, 0.05)), int(rng.integers(-20, 20))
    for kind, emulate in (("MUL", mul_int8), ("ADD", add_int8)):
        g, _ = single(kind, [x, const("c", cv, DType.INT8, q(cs, cz))], y)
        want = emulate(INT8_VALUES, (xs, xz), cv.reshape(1, -1), (cs, cz), y, "NONE")
        assert np.array_equal(outputs(serialize_tflite(model(g)), c).reshape(256, c), want)
    ws, wv, bv = (
        rng.uniform(0.001, 0.05, c).astype(np.float32),
        rng.integers(-127, 128, c),
        rng.integers(-5000, 5000, c),
    )
    w = const("w", wv.reshape(1, 1, 1, c), DType.INT8, q(list(ws), 0, 3))
    b = const("b", bv, DType.INT32, q(list(np.float32(xs) * ws), 0))
    g, _ = single("DEPTHWISE_CONV_2D", [x, w, b], y, padding="VALID", stride_h=1, stride_w=1, depth_multiplier=1)
    want = depthwise_int8(INT8_VALUES.reshape(256, 1, 1), (xs, xz), wv.reshape(1, 1, 1, c), ws, bv, y, "NONE")
    assert np.array_equal(outputs(serialize_tflite(model(g)), c).reshape(256, c), np.asarray(want).reshape(256, c))


def test_lone_add_becomes_an_exact_depthwise() -> None:
    g, _ = single(
        "ADD",
        [act("x", (1, 16, 16, 4), 0.05, -3), const("d", [10, -20, 30, 0], DType.INT8, q(0.02, 0))],
        act("y", (1, 16, 16, 4), 0.06, 2),
        fused_activation_function="RELU6",
    )
    m = model(g)
    before = serialize_tflite(m)
    result = run_passes(m, "legalize-ethos-n")
    assert result.passes[0].rewrites == {"affine-to-depthwise-exact": 1}
    assert [o.type for o in g.ops] == ["DEPTHWISE_CONV_2D"]
    assert g.ops[0].options["fused_activation_function"] == "RELU6"
    check(g)
    assert np.array_equal(outputs(before, 4), outputs(serialize_tflite(m), 4))


def test_pad_folds_only_when_it_is_the_same_padding() -> None:
    for pads, folded in (([[0, 0], [0, 1], [0, 1], [0, 0]], True), ([[0, 0], [1, 1], [1, 1], [0, 0]], False)):
        g = Graph("main")
        x = act("x", (1, 16, 16, 4))
        p = np.array(pads)
        padded = act("p", (1, 16 + int(p[1].sum()), 16 + int(p[2].sum()), 4))
        op(g, "PAD", [x, const("pads", p, DType.INT32)], padded)
        w = const("w", np.ones((1, 3, 3, 4)), DType.INT8, q([0.01] * 4, 0, 3))
        b = const("b", np.zeros(4), DType.INT32, q([0.0005] * 4, 0))
        y = act("y", (1, (padded.shape[1] - 3) // 2 + 1, (padded.shape[2] - 3) // 2 + 1, 4), 0.1)  # type: ignore[index]
        op(g, "DEPTHWISE_CONV_2D", [padded, w, b], y, padding="VALID", stride_h=2, stride_w=2, depth_multiplier=1)
        g.inputs, g.outputs = [x], [y]
        result = run_passes(model(g), "legalize-ethos-n")
        assert (counts(model(g))["PAD"] == 0) is folded
        if not folded:
            assert [d.message for d in result.declines] == [
                "PAD 'p' not folded into DEPTHWISE_CONV_2D 'y': "
                "padding [1, 1, 1, 1] is not the conv's SAME padding [0, 1, 0, 1]"
            ]


def test_fixture_after_legalization() -> None:
    m = load("mbv2_ethos_n_int8")
    before = serialize_tflite(m)
    assert counts(m) == {
        "CONV_2D": 5,
        "ADD": 2,
        "MUL": 2,
        "PAD": 1,
        "DEPTHWISE_CONV_2D": 1,
        "MAX_POOL_2D": 1,
        "MEAN": 1,
        "FULLY_CONNECTED": 1,
        "SOFTMAX": 1,
    }
    result = run_passes(m, "legalize-ethos-n")
    assert result.passes[0].rewrites == {"pad-into-conv": 1, "affine-to-depthwise-exact": 2, "split-max-pool": 1}
    assert counts(m) == {
        "CONV_2D": 5,
        "ADD": 1,
        "MUL": 1,
        "DEPTHWISE_CONV_2D": 3,
        "MAX_POOL_2D": 2,
        "MEAN": 1,
        "FULLY_CONNECTED": 1,
        "SOFTMAX": 1,
    }
    check(m.main)
    a, b = LiteRTModel(before), LiteRTModel(serialize_tflite(m))
    rng = np.random.default_rng(0)
    for _ in range(4):
        x = rng.integers(-128, 128, (1, 64, 64, 3)).astype(np.int8)
        assert np.array_equal(a.run([x])[0], b.run([x])[0])


@pytest.mark.parametrize("name", ["cnn_int8", "preact_resnet_int8", "mobilenet_v2_035_96_int8", "qat_cnn_int8"])
def test_other_int8_fixtures_stay_bit_exact(name: str) -> None:
    m = load(name)
    before = serialize_tflite(m)
    run_passes(m, "legalize-ethos-n")
    a, b = LiteRTModel(before), LiteRTModel(serialize_tflite(m))
    rng = np.random.default_rng(1)
    spec = a.inputs[0]
    x = rng.integers(-128, 128, spec.shape).astype(np.int8)
    for want, got in zip(a.run([x]), b.run([x]), strict=True):
        assert np.array_equal(want, got)
