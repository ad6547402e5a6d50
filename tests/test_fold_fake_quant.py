"""fold-fake-quant against the TF converter's own full-int8 conversion of the same QAT models.

B = the QAT model converted without optimizations (float, UINT8 QUANTIZE->DEQUANTIZE fake-quant);
A = the converter's full-int8 result. npupass must turn B into A's numbers and A's op count.
"""

from __future__ import annotations

import numpy as np
import pytest
from rewrites import MODELS, counts, load, run

from npupass.errors import NpupassError
from npupass.ir import check
from npupass.ir.graph import Op
from npupass.ir.types import DType, Quantization
from npupass.passes import DEFAULT_PIPELINE, PipelineError, run_passes
from npupass.passes.fold_fake_quant import MissingQuantizationError
from npupass.passes.pattern import output

INT8_IO = {"fold-fake-quant": {"io": "int8"}}


def _steps(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(
        [np.abs(x.astype(np.int64) - y.astype(np.int64)).reshape(-1) for x, y in zip(a, b, strict=True)]
    )


@pytest.mark.parametrize("name", ["qat_cnn", "qat_mobilenet_v2_035_96", "pruned_qat_cnn", "clustered_qat_cnn"])
def test_fake_quant_model_becomes_the_converters_int8_model(name: str) -> None:
    a = load(f"{name}_int8")
    model = load(f"{name}_fq")
    assert counts(model)["QUANTIZE"] > 10 or name != "qat_mobilenet_v2_035_96"
    result = run_passes(model, DEFAULT_PIPELINE, options=INT8_IO)
    check(model.main)
    assert sum(counts(model).values()) == sum(counts(a).values())
    assert counts(model) == counts(a)
    assert not {"QUANTIZE", "DEQUANTIZE", "FAKE_QUANT"} & set(counts(model))
    assert all(t.dtype in (DType.INT8, DType.INT32) for t in model.main.tensors)
    seeds = tuple(range(4))
    ours, theirs = run(model, seeds), run(a, seeds)
    steps = _steps(theirs, ours)
    assert np.mean(steps <= 1) >= 0.999
    for x, y in zip(theirs, ours, strict=True):
        rows = x.reshape(len(seeds), -1)
        assert np.array_equal(rows.argmax(axis=1), y.reshape(len(seeds), -1).argmax(axis=1))
    fold = result.passes[2]
    assert fold.name == "fold-fake-quant" and fold.rewrites["weight-fake-quant"] == fold.rewrites["bias"]


def test_float_io_keeps_quantize_and_dequantize_at_the_ends() -> None:
    a = load("qat_cnn_int8_floatio")
    model = load("qat_cnn_fq")
    run_passes(model, "fold-fake-quant")
    assert counts(model) == counts(a)
    ops = model.main.ops
    assert (ops[0].type, ops[-1].type) == ("QUANTIZE", "DEQUANTIZE")
    b = load("qat_cnn_fq")
    for x, y in zip(run(a, ranges_from=b), run(model, ranges_from=b), strict=True):
        scale = float(output(a.main, a.main.ops[-1]).quant.scale[0]) if False else None
        assert scale is None
        assert np.abs(x - y).max() <= 1e-6


def test_fake_quant_ops_fold_like_qdq_pairs() -> None:
    """FAKE_QUANT(min, max) in place of every activation QUANTIZE->DEQUANTIZE gives the same model."""
    a = load("qat_cnn_int8")
    model = load("qat_cnn_fq")
    g = model.main
    replaced = 0
    for q in [op for op in g.ops if op.type == "QUANTIZE"]:
        src, tq = g.inputs_of(q)[0], output(g, q)
        if src.is_constant or src in g.inputs:
            continue
        (dq,) = g.consumer_ops(tq)
        scale, zp = float(tq.quant.scale[0]), int(tq.quant.zero_point[0])
        result = output(g, dq)
        g.remove_op(q)
        g.remove_op(dq)
        g.drop_unused(tq)
        options = {"min": (0 - zp) * scale, "max": (255 - zp) * scale, "num_bits": 8, "narrow_range": False}
        g.add_op(Op("FAKE_QUANT", options, "FakeQuantOptions", name=f"fq{replaced}"), [src], [result])
        replaced += 1
    assert replaced == 7
    b_outputs = run(model, ranges_from=load("qat_cnn_fq"))
    result = run_passes(model, "fold-fake-quant", options=INT8_IO)
    assert result.passes[0].rewrites["fake-quant"] == 7
    assert counts(model) == counts(a)
    steps = _steps(run(a), run(model))
    assert steps.max() <= 1
    assert len(b_outputs) == 1


def test_activation_without_fake_quant_stops_with_its_name() -> None:
    model = load("qat_cnn_fq")
    g = model.main
    mean = next(op for op in g.ops if op.type == "MEAN")
    (q,) = g.consumer_ops(output(g, mean))
    (dq,) = g.consumer_ops(output(g, q))
    g.replace_uses(output(g, dq), output(g, mean))
    g.remove_op(q)
    g.remove_op(dq)
    with pytest.raises(MissingQuantizationError) as err:
        run_passes(model, "fold-fake-quant")
    assert str(err.value) == (
        f"tensor '{output(g, mean).name}' (written by MEAN '{output(g, mean).name}') has no fake-quant range; "
        "fold-fake-quant needs a FAKE_QUANT or QUANTIZE/DEQUANTIZE pair on every activation (it does not calibrate)"
    )


def test_float_model_is_refused() -> None:
    with pytest.raises(NpupassError, match=r"^tensor '.*' \(written by PAD '.*'\) has no fake-quant range"):
        run_passes(load("cnn_float"), "fold-fake-quant")


def test_integer_model_is_left_alone() -> None:
    model = load("cnn_int8")
    before = counts(model)
    result = run_passes(model, "fold-fake-quant")
    assert not result.changed and counts(model) == before


def test_q_range_of_0_to_6_keeps_its_clip_as_relu6() -> None:
    """A QUANTIZE whose range is exactly [0, 6] clips like RELU6: the int8 op says so."""
    model = load("qat_cnn_fq")
    g = model.main
    dw = next(op for op in g.ops if op.type == "DEPTHWISE_CONV_2D")
    dw.options["fused_activation_function"] = "NONE"
    (q,) = g.consumer_ops(output(g, dw))
    tq = output(g, q)
    tq.quant = Quantization([6.0 / 255], [0])
    b_outputs = run(model, ranges_from=model)
    b_float_in = load("qat_cnn_fq")
    result = run_passes(model, "fold-fake-quant")
    assert result.passes[0].rewrites["implicit-activation"] == 1
    assert dw.options["fused_activation_function"] == "RELU6"
    ours = run(model, ranges_from=b_float_in)
    out_scale = float(output(g, g.ops[-1]).quant.scale[0]) if g.ops[-1].type != "DEQUANTIZE" else None
    scale = out_scale or float(g.inputs_of(g.ops[-1])[0].quant.scale[0])
    assert np.abs(b_outputs[0] - ours[0]).max() <= scale * 1.01


def test_needs_batch_norms_folded_first() -> None:
    model = load("qat_cnn_fq")
    g = model.main
    conv = next(op for op in g.ops if op.type == "CONV_2D")
    out = output(g, conv)
    from npupass.ir.graph import Tensor
    from npupass.passes.pattern import new_constant

    mid = Tensor("pre_bn", out.dtype, out.shape)
    g.set_output(conv, 0, mid)
    ones = [new_constant(f"p{i}", np.ones(out.shape[-1])) for i in range(4)]
    g.add_op(Op("BATCH_NORM", {"epsilon": 0.0}, name="bn"), [mid, *ones], [out])
    with pytest.raises(PipelineError) as err:
        run_passes(model, "fold-fake-quant")
    assert str(err.value) == (
        "pass fold-fake-quant requires no-ir-only-ops, but BATCH_NORM 'bn' is an IR-only op; "
        "run fold-batch-norm before it"
    )


def test_fixtures_exist() -> None:
    for name in ("qat_cnn_fq", "qat_cnn_int8", "qat_mobilenet_v2_035_96_fq", "qat_mobilenet_v2_035_96_int8"):
        assert (MODELS / f"{name}.tflite").stat().st_size > 0
