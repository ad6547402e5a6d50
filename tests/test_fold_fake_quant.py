"""fold-fake-quant against the TF converter's own full-int8 conversion of the same QAT models.

B = the QAT model converted without optimizations (float, UINT8 QUANTIZE->DEQUANTIZE fake-quant);
A = the converter's full-int8 result. npupass must turn B into A's numbers and A's op count.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from rewrites import counts, load, run

from npupass.errors import NpupassError
from npupass.ir import check
from npupass.ir.graph import Op, Tensor
from npupass.ir.types import DType, Quantization
from npupass.passes import DEFAULT_PIPELINE, PipelineError, run_passes
from npupass.passes.fold_fake_quant import MissingQuantizationError
from npupass.passes.pattern import input_at, new_constant, output, same_quant
from npupass.verify.passes import output_steps

INT8_IO = {"fold-fake-quant": {"io": "int8"}}


def _mean_and_its_fake_quant(g) -> tuple[Op, Op, Op]:
    """In qat_cnn_fq: the MEAN op and the QUANTIZE and DEQUANTIZE after it."""
    mean = next(op for op in g.ops if op.type == "MEAN")
    (q,) = g.consumer_ops(output(g, mean))
    (dq,) = g.consumer_ops(output(g, q))
    return mean, q, dq


def _steps(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(
        [np.abs(x.astype(np.int64) - y.astype(np.int64)).reshape(-1) for x, y in zip(a, b, strict=True)]
    )


@pytest.mark.parametrize("name", ["qat_cnn", "qat_mobilenet_v2_035_96", "pruned_qat_cnn", "clustered_qat_cnn"])
def test_fake_quant_model_becomes_the_converters_int8_model(name: str) -> None:
    a = load(f"{name}_int8")
    model = load(f"{name}_fq")
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
        assert np.array_equal(x, y)


@pytest.mark.parametrize("io", ["int8", "float"])
def test_fake_quant_ops_fold_like_qdq_pairs(io: str) -> None:
    """FAKE_QUANT(min, max) in place of every activation QUANTIZE->DEQUANTIZE gives the same model."""
    a = load("qat_cnn_int8" if io == "int8" else "qat_cnn_int8_floatio")
    model = load("qat_cnn_fq")
    g = model.main
    replaced = 0
    for q in [op for op in g.ops if op.type == "QUANTIZE"]:
        src, tq = g.inputs_of(q)[0], output(g, q)
        if src.is_constant:
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
    assert replaced == 8
    fq_outputs = run(model, ranges_from=load("qat_cnn_fq"))
    result = run_passes(model, "fold-fake-quant", options={"fold-fake-quant": {"io": io}})
    assert result.passes[0].rewrites["fake-quant"] == 8
    assert counts(model) == counts(a)
    if io == "int8":
        assert _steps(run(a), run(model)).max() <= 1
    else:
        ours = run(model, ranges_from=load("qat_cnn_fq"))
        assert np.array_equal(run(a, ranges_from=load("qat_cnn_fq"))[0], ours[0])
        step = float(model.main.inputs_of(model.main.ops[-1])[0].quant.scale[0])
        assert np.abs(fq_outputs[0] - ours[0]).max() <= step * 1.01


def test_activation_without_fake_quant_stops_with_its_name() -> None:
    model = load("qat_cnn_fq")
    g = model.main
    add = next(op for op in g.ops if op.type == "ADD")
    (q,) = g.consumer_ops(output(g, add))
    (dq,) = g.consumer_ops(output(g, q))
    g.replace_uses(output(g, dq), output(g, add))
    left = [output(g, q), output(g, dq)]
    g.remove_op(q)
    g.remove_op(dq)
    g.drop_unused(*left)
    with pytest.raises(MissingQuantizationError) as err:
        run_passes(model, "fold-fake-quant")
    assert str(err.value) == (
        f"tensor '{output(g, add).name}' (written by ADD '{output(g, add).name}') has no fake-quant range; "
        "fold-fake-quant needs a FAKE_QUANT or QUANTIZE/DEQUANTIZE pair on every activation (it does not calibrate)"
    )


def test_pooling_without_fake_quant_keeps_its_inputs_range() -> None:
    """PyTorch's quantized pooling keeps its input's quantization; so does MEAN without a fake-quant."""
    model = load("qat_cnn_fq")
    g = model.main
    mean, q, dq = _mean_and_its_fake_quant(g)
    g.replace_uses(output(g, dq), output(g, mean))
    left = [output(g, q), output(g, dq)]
    g.remove_op(q)
    g.remove_op(dq)
    g.drop_unused(*left)
    run_passes(model, "fold-fake-quant")
    assert same_quant(g.inputs_of(mean)[0], output(g, mean))


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
    output(g, q).quant = Quantization([6.0 / 255], [0])
    float_outputs = run(model, ranges_from=model)
    float_model = load("qat_cnn_fq")  # for the input ranges, which the int8 model no longer shows
    result = run_passes(model, "fold-fake-quant")
    assert result.passes[0].rewrites["implicit-activation"] == 1
    assert dw.options["fused_activation_function"] == "RELU6"
    dequantize = g.ops[-1]
    assert dequantize.type == "DEQUANTIZE"
    step = float(g.inputs_of(dequantize)[0].quant.scale[0])
    assert np.abs(float_outputs[0] - run(model, ranges_from=float_model)[0]).max() <= step * 1.01


def test_needs_batch_norms_folded_first() -> None:
    model = load("qat_cnn_fq")
    g = model.main
    conv = next(op for op in g.ops if op.type == "CONV_2D")
    out = output(g, conv)
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


def _qdq(g, x: Tensor, scale: float, zero_point: int, name: str) -> Tensor:
    """x -> QUANTIZE(uint8) -> DEQUANTIZE -> new float tensor, as a QAT export writes it."""
    q = Tensor(f"{name}/q", DType.UINT8, x.shape, quant=Quantization([scale], [zero_point]))
    dq = Tensor(f"{name}/dq", DType.FLOAT32, x.shape)
    g.add_op(Op("QUANTIZE", name=f"{name}/quantize"), [x], [q])
    g.add_op(Op("DEQUANTIZE", name=f"{name}/dequantize"), [q], [dq])
    return dq


def _within_one_step(fq_model, model) -> None:
    """Every output of the folded model within one output step of the fake-quant float model."""
    fq_outputs = run(fq_model, ranges_from=fq_model)
    ours = run(model, ranges_from=fq_model)
    for x, y, step in zip(fq_outputs, ours, output_steps(model), strict=True):
        assert step > 0 and np.abs(x - y).max() <= step * 1.01


def test_fake_quantized_value_that_is_also_a_graph_output() -> None:
    """A fake-quantized value read inside the graph and exported: io=float keeps a DEQUANTIZE to the
    output while the graph reads the int8 tensor."""
    model = load("qat_cnn_fq")
    g = model.main
    mean, q, dq = _mean_and_its_fake_quant(g)
    g.outputs.append(output(g, dq))  # the dequantized value
    g.outputs.append(output(g, mean))  # and the value before its fake-quant
    reference = copy.deepcopy(model)
    run_passes(model, "fold-fake-quant")
    check(g)
    assert counts(model)["DEQUANTIZE"] == 3 and counts(model)["QUANTIZE"] == 1
    fc = next(op for op in g.ops if op.type == "FULLY_CONNECTED")
    assert [t.dtype for t in g.inputs_of(fc)] == [DType.INT8, DType.INT8, DType.INT32]
    _within_one_step(reference, model)


def test_fake_quant_of_a_fake_quant_requantizes() -> None:
    model = load("qat_cnn_fq")
    g = model.main
    mean, q, dq = _mean_and_its_fake_quant(g)
    fc = g.consumer_ops(output(g, dq))[0]
    again = _qdq(g, output(g, dq), float(output(g, q).quant.scale[0]) * 1.5, 10, "again")
    g.set_input(fc, 0, again)
    reference = copy.deepcopy(model)
    result = run_passes(model, "fold-fake-quant")
    assert counts(model)["QUANTIZE"] == 2  # the input's and the requantization
    assert result.passes[0].rewrites["activation-fake-quant"] == 9
    _within_one_step(reference, model)


def test_reshape_between_two_ranges_requantizes() -> None:
    model = load("qat_cnn_fq")
    g = model.main
    mean, q, dq = _mean_and_its_fake_quant(g)
    fc = g.consumer_ops(output(g, dq))[0]
    reshaped = Tensor("reshaped", DType.FLOAT32, output(g, dq).shape)
    shape = new_constant("shape", np.array(output(g, dq).shape), DType.INT32)
    g.add_op(Op("RESHAPE", name="reshape"), [output(g, dq), shape], [reshaped])
    g.set_input(fc, 0, _qdq(g, reshaped, float(output(g, q).quant.scale[0]) * 2, 0, "after_reshape"))
    reference = copy.deepcopy(model)
    result = run_passes(model, "fold-fake-quant")
    assert result.passes[0].rewrites["requantize"] == 1
    reshape = next(op for op in g.ops if op.type == "RESHAPE")
    assert same_quant(g.inputs_of(reshape)[0], output(g, reshape))
    _within_one_step(reference, model)


def test_fake_quant_with_fewer_than_8_bits_is_refused() -> None:
    model = load("qat_cnn_fq")
    g = model.main
    x = g.inputs[0]
    (q,) = g.consumer_ops(x)
    (dq,) = g.consumer_ops(output(g, q))
    result = output(g, dq)
    g.remove_op(q)
    g.remove_op(dq)
    options = {"min": -1.0, "max": 1.0, "num_bits": 4, "narrow_range": False}
    g.add_op(Op("FAKE_QUANT", options, "FakeQuantOptions", name="fq4"), [x], [result])
    with pytest.raises(PipelineError, match=r"^a 4-bit FAKE_QUANT clamps to fewer levels than int8 holds"):
        run_passes(model, "fold-fake-quant")


def test_transpose_conv_between_fake_quants() -> None:
    from npupass.ir import Graph, Model, Signature
    from npupass.tflite_schema import default_options

    rng = np.random.default_rng(11)
    g = Graph("main")
    x = Tensor("x", DType.FLOAT32, (1, 4, 4, 3))
    w = rng.normal(size=(5, 3, 3, 3))
    w_scale = np.abs(w).reshape(5, -1).max(axis=1) / 127
    wq = Tensor("w/q", DType.UINT8, w.shape, quant=Quantization(w_scale, np.full(5, 128), 0))
    wdq = Tensor("w/dq", DType.FLOAT32, w.shape)
    g.add_op(Op("QUANTIZE"), [new_constant("w", w)], [wq])
    g.add_op(Op("DEQUANTIZE"), [wq], [wdq])
    y = Tensor("y", DType.FLOAT32, (1, 8, 8, 5))
    options = default_options("TransposeConvOptions") | {"padding": "SAME", "stride_w": 2, "stride_h": 2}
    tconv = Op("TRANSPOSE_CONV", options, "TransposeConvOptions", version=3)
    shape = new_constant("shape", np.array([1, 8, 8, 5]), DType.INT32)
    g.add_op(tconv, [shape, wdq, _qdq(g, x, 2 / 255, 128, "x"), new_constant("b", rng.normal(size=5))], [y])
    g.inputs, g.outputs = [x], [_qdq(g, y, 12 / 255, 128, "y")]
    model = Model([g], signatures=[Signature("serving_default", 0, [("x", 0)], [("y", 0)])])
    reference = copy.deepcopy(model)
    result = run_passes(model, "fold-fake-quant")
    assert result.passes[0].rewrites["bias"] == 1
    assert input_at(g, tconv, 3).dtype is DType.INT32
    _within_one_step(reference, model)


def test_float_input_fake_quantized_straight_to_the_output() -> None:
    """input -> FAKE_QUANT -> output, io=float: the input keeps its name, a QUANTIZE and a DEQUANTIZE
    appear, and the output stays float."""
    from npupass.ir import Graph, Model, Signature

    g = Graph("main")
    x, y = Tensor("x", DType.FLOAT32, (1, 8)), Tensor("y", DType.FLOAT32, (1, 8))
    options = {"min": -1.0, "max": 1.0, "num_bits": 8, "narrow_range": False}
    g.add_op(Op("FAKE_QUANT", options, "FakeQuantOptions", name="fq"), [x], [y])
    g.inputs, g.outputs = [x], [y]
    model = Model([g], signatures=[Signature("serving_default", 0, [("x", 0)], [("y", 0)])])
    reference = copy.deepcopy(model)
    run_passes(model, "fold-fake-quant")
    assert [op.type for op in g.ops] == ["QUANTIZE", "DEQUANTIZE"]
    assert (g.inputs[0].name, g.outputs[0].name) == ("x", "y")
    assert (g.inputs[0].dtype, g.outputs[0].dtype) == (DType.FLOAT32, DType.FLOAT32)
    for a, b in zip(run(reference), run(model), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)  # FAKE_QUANT rounds in float, DEQUANTIZE exactly


def test_concatenation_of_one_tensor_three_times_gets_unique_names() -> None:
    """Each requantization of a value read three times by one CONCATENATION gets its own name (the
    IR hands out fresh names; structure checks after the pass include unique names)."""
    model = load("qat_cnn_fq")
    g = model.main
    mean, q, dq = _mean_and_its_fake_quant(g)
    fc = g.consumer_ops(output(g, dq))[0]
    x = output(g, dq)
    n, c = x.shape
    joined = Tensor("joined", DType.FLOAT32, (n, 3 * c))
    g.add_op(
        Op("CONCATENATION", {"axis": 1, "fused_activation_function": "NONE"}, "ConcatenationOptions"),
        [x, x, x],
        [joined],
    )
    scale = float(output(g, q).quant.scale[0]) * 2
    tail = Tensor("tail", DType.FLOAT32, (n, 3 * c))
    g.add_op(Op("RELU"), [_qdq(g, joined, scale, 0, "joined")], [tail])
    g.outputs.append(_qdq(g, tail, scale, 0, "tail"))
    reference = copy.deepcopy(model)
    result = run_passes(model, "fold-fake-quant")  # checks structure, names included, after the pass
    assert result.passes[0].rewrites["requantize"] == 3
    names = [t.name for t in g.tensors]
    assert len(names) == len(set(names))
    assert fc in g.nx
    _within_one_step(reference, model)


def test_weight_folds_leave_provenance_on_the_ops_that_read_the_weights() -> None:
    model = load("qat_cnn_fq")
    run_passes(model, "fold-fake-quant")
    g = model.main
    weighted = [op for op in g.ops if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert weighted
    for op in weighted:
        assert "fold-fake-quant/weight-fake-quant" in op.provenance["rules"], op
        assert any(name.startswith("QUANTIZE") for name in op.provenance["from"]), op.provenance
