"""fold-batch-norm on real TF-made models whose batch norms were unfolded again (see rewrites.unfold)."""

from __future__ import annotations

import numpy as np
import pytest
from rewrites import add_reader, counts, load, rel_error, run, unfold, weighted_ops

from npupass.ir import check
from npupass.ir.graph import Op, Tensor
from npupass.passes import run_passes
from npupass.passes.pattern import input_at, new_constant, output


def _unfolded(name: str, form: str, types: tuple[str, ...] = ()) -> tuple:
    original = load(name)
    model = load(name)
    rng = np.random.default_rng(7)
    for op in weighted_ops(model.main, *types):
        if form != "batch-norm" or op.options["fused_activation_function"] == "NONE":
            unfold(model.main, op, rng, form)
    return original, model


@pytest.mark.parametrize("form", ["mul-add", "div-mul-add", "batch-norm"])
def test_fold_batch_norm_fires_on_every_weighted_op(form: str) -> None:
    original, model = _unfolded("cnn_float", form, () if form != "batch-norm" else ("CONV_2D", "DEPTHWISE_CONV_2D"))
    before = counts(model)
    result = run_passes(model, "fold-batch-norm")
    assert counts(model) == counts(original), (before, counts(model))
    check(model.main)
    assert rel_error(run(original), run(model)) <= 1e-5
    rewrites = result.passes[0].rewrites
    if form == "batch-norm":
        # 2 CONV_2D with fused activations are skipped by unfold (a BATCH_NORM has none): 1 conv + 1 depthwise
        assert rewrites == {"batch-norm-to-affine": 2, "fold-scale": 2, "fold-shift": 2}
    else:
        assert rewrites["fold-scale"] == (14 if form == "div-mul-add" else 7)
        assert rewrites["fold-shift"] == 7
    assert result.passes[0].declines == []


def test_fold_keeps_the_pruned_zeros() -> None:
    original, model = _unfolded("pruned_cnn_float", "mul-add")
    zeros_before = [
        int(np.count_nonzero(input_at(original.main, op, 1).data == 0)) for op in weighted_ops(original.main)
    ]
    run_passes(model, "fold-batch-norm")
    zeros_after = [int(np.count_nonzero(input_at(model.main, op, 1).data == 0)) for op in weighted_ops(model.main)]
    assert zeros_after == zeros_before


def test_unfolded_model_and_folded_model_agree() -> None:
    original, model = _unfolded("mobilenet_v2_035_96_float", "mul-add")
    unfolded_outputs = run(model)
    assert rel_error(run(original), unfolded_outputs) <= 1e-5  # the test's own unfolding is right
    result = run_passes(model, "fold-batch-norm")
    assert counts(model) == counts(original)
    assert rel_error(unfolded_outputs, run(model)) <= 1e-5
    assert result.passes[0].rewrites == {"fold-scale": 53, "fold-shift": 53}


DW = "cnn_1/depthwise_conv2d_1/depthwise1"  # the depthwise conv's output in cnn_float


def test_guard_two_consumers() -> None:
    _, model = _unfolded("cnn_float", "mul", ("DEPTHWISE_CONV_2D",))
    g = model.main
    dw = weighted_ops(g, "DEPTHWISE_CONV_2D")[0]
    add_reader(g, output(g, dw))
    before = counts(model)
    weight = input_at(g, dw, 1)
    result = run_passes(model, "fold-batch-norm")
    assert counts(model) == before
    assert input_at(g, dw, 1) is weight
    assert [d.message for d in result.passes[0].declines] == [
        f"MUL '{DW}/mul' not folded into DEPTHWISE_CONV_2D '{DW}/conv': DEPTHWISE_CONV_2D output has 2 consumers",
    ]


def test_guard_graph_output() -> None:
    _, model = _unfolded("cnn_float", "mul", ("DEPTHWISE_CONV_2D",))
    g = model.main
    dw = weighted_ops(g, "DEPTHWISE_CONV_2D")[0]
    g.outputs.append(output(g, dw))
    before = counts(model)
    result = run_passes(model, "fold-batch-norm")
    assert counts(model) == before
    messages = [d.message for d in result.passes[0].declines]
    assert messages == [
        f"MUL '{DW}/mul' not folded into DEPTHWISE_CONV_2D '{DW}/conv': "
        f"DEPTHWISE_CONV_2D output '{DW}/conv' is a graph output"
    ]


def test_sparse_weight_behind_densify_is_not_folded() -> None:
    model = load("sparse_fc_float")
    g = model.main
    fc = weighted_ops(g, "FULLY_CONNECTED")[0]
    fc.options["fused_activation_function"] = "NONE"
    out = output(g, fc)
    mid = Tensor(out.name + "/fc", out.dtype, out.shape)
    g.set_output(fc, 0, mid)
    scale = new_constant("scale", np.full(out.shape[-1], 2.0))
    g.add_op(Op("MUL", {"fused_activation_function": "RELU"}, "MulOptions", name="scale"), [mid, scale], [out])
    before = counts(model)
    result = run_passes(model, "fold-batch-norm")
    assert counts(model) == before
    weight = input_at(g, fc, 1)
    assert [d.message for d in result.passes[0].declines] == [
        f"MUL 'scale' not folded into FULLY_CONNECTED '{mid.name}': weight '{weight.name}' is not a constant "
        "(written by DENSIFY)"
    ]


def test_guard_shared_weight() -> None:
    _, model = _unfolded("cnn_float", "mul", ("DEPTHWISE_CONV_2D",))
    g = model.main
    dw = weighted_ops(g, "DEPTHWISE_CONV_2D")[0]
    twin_out = Tensor("twin", output(g, dw).dtype, output(g, dw).shape)
    twin = Op("DEPTHWISE_CONV_2D", dict(dw.options), dw.options_type, name="twin")
    g.add_op(twin, g.inputs_of(dw), [twin_out])
    g.outputs.append(twin_out)
    before = counts(model)
    weight = input_at(g, dw, 1)
    result = run_passes(model, "fold-batch-norm")
    assert counts(model) == before
    assert input_at(g, dw, 1) is weight and input_at(g, twin, 1) is weight
    assert [d.message for d in result.passes[0].declines] == [
        f"MUL '{DW}/mul' not folded into DEPTHWISE_CONV_2D '{DW}/conv': "
        f"weight '{weight.name}' is shared with 1 other op"
    ]


def test_int8_scale_folds_into_weight_scales() -> None:
    """In an int8 graph a positive per-channel MUL goes into the weight scales: int8 weights unchanged."""
    from npupass.ir.types import DType, Quantization

    original = load("cnn_int8")
    model = load("cnn_int8")
    g = model.main
    dw = weighted_ops(g, "DEPTHWISE_CONV_2D")[0]
    weight = input_at(g, dw, 1)
    out = output(g, dw)
    factor = np.linspace(0.5, 1.5, out.shape[-1])
    c_scale = factor.max() / 127
    const = new_constant("factor", np.round(factor / c_scale), DType.INT8, Quantization([c_scale], [0]))
    # the conv's range divided by the smallest factor: carried through the MUL it covers the output's
    smallest = float(np.round(factor / c_scale).min() * c_scale)
    conv_quant = Quantization(out.quant.scale / smallest, out.quant.zero_point)
    mid = Tensor(out.name + "/conv", DType.INT8, out.shape, quant=conv_quant)
    g.set_output(dw, 0, mid)
    mul = Op("MUL", {"fused_activation_function": "NONE"}, "MulOptions", version=2, name="factor")
    g.add_op(mul, [mid, const], [out])
    before_outputs = run(model)
    result = run_passes(model, "fold-batch-norm")
    assert result.passes[0].rewrites == {"fold-scale": 1}
    assert counts(model) == counts(original)
    new_weight = input_at(g, dw, 1)
    assert np.array_equal(new_weight.data, weight.data)  # the int8 values did not change
    np.testing.assert_allclose(
        new_weight.quant.scale, weight.quant.scale * np.round(factor / c_scale) * c_scale, rtol=1e-6
    )
    for x, y in zip(before_outputs, run(model), strict=True):
        assert np.abs(x.astype(int) - y.astype(int)).max() <= 1


def test_batch_norm_that_cannot_fold_becomes_a_depthwise_conv() -> None:
    """The conv's output has a second reader, so MUL + ADD cannot fold; they become one 1x1 depthwise."""
    _, model = _unfolded("cnn_float", "mul-add", ("DEPTHWISE_CONV_2D",))
    g = model.main
    dw = weighted_ops(g, "DEPTHWISE_CONV_2D")[0]
    add_reader(g, output(g, dw))
    before, before_outputs = counts(model), run(model)
    weight = input_at(g, dw, 1)
    result = run_passes(model, "fold-batch-norm")
    after = counts(model)
    assert after["DEPTHWISE_CONV_2D"] == before["DEPTHWISE_CONV_2D"] + 1
    assert (after["MUL"], after["ADD"]) == (before["MUL"] - 1, before["ADD"] - 1)
    assert input_at(g, dw, 1) is weight
    assert result.passes[0].rewrites == {"affine-to-depthwise": 1}
    assert [d.message for d in result.passes[0].declines] == [
        f"MUL '{DW}/mul' not folded into DEPTHWISE_CONV_2D '{DW}/conv': DEPTHWISE_CONV_2D output has 2 consumers",
    ]
    assert rel_error(before_outputs, run(model)) <= 1e-5


def _transpose_conv_model(with_bias: bool):
    """A one-op TRANSPOSE_CONV model built through the IR (LiteRT runs it as the reference)."""
    from npupass.ir import DType, Graph, Model, Signature
    from npupass.tflite_schema import default_options

    rng = np.random.default_rng(3)
    g = Graph("main")
    x = Tensor("x", DType.FLOAT32, (1, 4, 4, 3))
    y = Tensor("y", DType.FLOAT32, (1, 8, 8, 5))
    shape = new_constant("shape", np.array([1, 8, 8, 5]), DType.INT32)
    weight = new_constant("w", rng.normal(size=(5, 3, 3, 3)))
    bias = new_constant("b", rng.normal(size=5)) if with_bias else None
    options = default_options("TransposeConvOptions") | {"padding": "SAME", "stride_w": 2, "stride_h": 2}
    g.add_op(Op("TRANSPOSE_CONV", options, "TransposeConvOptions", version=3), [shape, weight, x, bias], [y])
    g.inputs, g.outputs = [x], [y]
    return Model([g], signatures=[Signature("serving_default", 0, [("x", 0)], [("y", 0)])])


@pytest.mark.parametrize("with_bias", [True, False])
def test_fold_into_transpose_conv(with_bias: bool) -> None:
    original = _transpose_conv_model(with_bias)
    model = _transpose_conv_model(with_bias)
    g = model.main
    (tconv,) = g.ops
    unfold(g, tconv, np.random.default_rng(5), "mul-add")
    assert counts(model) == {"TRANSPOSE_CONV": 1, "MUL": 1, "ADD": 1}
    result = run_passes(model, "fold-batch-norm")
    assert counts(model) == {"TRANSPOSE_CONV": 1}
    assert result.passes[0].rewrites == {"fold-scale": 1, "fold-shift": 1}
    assert input_at(g, tconv, 3) is not None  # the shift became a bias where there was none
    assert rel_error(run(original), run(model)) <= 1e-5


def test_scalar_factor_folds_into_every_channel() -> None:
    original = load("cnn_float")
    model = load("cnn_float")
    g = model.main
    fc = weighted_ops(g, "FULLY_CONNECTED")[-1]
    out = output(g, fc)
    mid = Tensor(out.name + "/fc", out.dtype, out.shape)
    g.set_output(fc, 0, mid)
    weight = input_at(g, fc, 1)
    g.set_input(fc, 1, new_constant(weight.name, np.asarray(weight.data) * 4.0))
    quarter = new_constant("quarter", np.array(4.0))
    g.add_op(Op("DIV", {"fused_activation_function": "NONE"}, "DivOptions", name="div4"), [mid, quarter], [out])
    result = run_passes(model, "fold-batch-norm")
    assert result.passes[0].rewrites == {"fold-scale": 1}
    assert counts(model) == counts(original)
    assert rel_error(run(original), run(model)) <= 1e-5


def test_int8_shift_folds_into_int32_bias() -> None:
    """int8 conv -> ADD(per-channel constant): b_int32' = b_int32 + round(d / (s_in * s_w))."""
    from npupass.ir.types import DType, Quantization

    original = load("cnn_int8")
    model = load("cnn_int8")
    g = model.main
    dw = weighted_ops(g, "DEPTHWISE_CONV_2D")[0]
    out = output(g, dw)
    # twice the output's range, so that shifted by +-0.5 it still covers it: the fold saturates alike
    mid = Tensor(
        out.name + "/conv", DType.INT8, out.shape, quant=Quantization(out.quant.scale * 2, out.quant.zero_point)
    )
    g.set_output(dw, 0, mid)
    channels = out.shape[-1]
    shift = np.linspace(-0.5, 0.5, channels)
    d_scale = 0.5 / 127
    const = new_constant("shift", np.round(shift / d_scale), DType.INT8, Quantization([d_scale], [0]))
    add = Op(
        "ADD", {"fused_activation_function": "NONE", "pot_scale_int16": True}, "AddOptions", version=2, name="shift"
    )
    g.add_op(add, [mid, const], [out])
    bias = input_at(g, dw, 2)
    before_outputs = run(model)
    result = run_passes(model, "fold-batch-norm")
    assert result.passes[0].rewrites == {"fold-shift": 1}
    assert counts(model) == counts(original)
    new_bias = input_at(g, dw, 2)
    expected = np.asarray(bias.data) + np.round(np.round(shift / d_scale) * d_scale / bias.quant.scale.astype(float))
    assert np.array_equal(new_bias.data, expected.astype(np.int32))
    steps = max(
        int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(before_outputs, run(model), strict=True)
    )
    assert steps <= 1


def test_shared_biases_are_folded_into_fresh_copies() -> None:
    """The TF converter shares equal bias constants between convs (50 shared inputs in MobileNetV2);
    a fold writes a new bias, so sharing one does not block it."""
    model = load("mobilenet_v2_035_96_float")
    g = model.main
    rng = np.random.default_rng(1)
    scaled = 0
    for op in weighted_ops(g):
        if op.options["fused_activation_function"] != "NONE":
            continue
        out = output(g, op)
        mid = Tensor(out.name + "/pre_scale", out.dtype, out.shape)
        g.set_output(op, 0, mid)
        factor = new_constant(f"{out.name}/factor", rng.uniform(0.5, 2.0, out.shape[-1]))
        g.add_op(Op("MUL", {"fused_activation_function": "NONE"}, "MulOptions"), [mid, factor], [out])
        scaled += 1
    biases = [input_at(g, op, 2) for op in weighted_ops(g)]
    shared = [b for b in biases if b is not None and len(g.consumers(b)) > 1]
    assert len(shared) > 10
    before_outputs = run(model)
    result = run_passes(model, "fold-batch-norm")
    assert result.passes[0].rewrites == {"fold-scale": scaled}
    assert result.passes[0].declines == []
    assert rel_error(before_outputs, run(model)) <= 1e-5


def test_pre_activation_batch_norms_become_depthwise_convs() -> None:
    """Keras pre-activation ResNet: the converter leaves three batch norms as MUL + ADD (one after
    the stem conv, whose output also feeds the skip; two after residual ADDs)."""
    original = load("preact_resnet_float")
    model = load("preact_resnet_float")
    assert counts(model) == {"CONV_2D": 5, "ADD": 5, "MUL": 3, "MEAN": 1, "FULLY_CONNECTED": 1}
    result = run_passes(model, "fold-batch-norm,fuse-activations")
    assert counts(model) == {"CONV_2D": 5, "DEPTHWISE_CONV_2D": 3, "ADD": 2, "MEAN": 1, "FULLY_CONNECTED": 1}
    assert result.passes[0].rewrites == {"affine-to-depthwise": 3}
    depthwise = [op for op in model.main.ops if op.type == "DEPTHWISE_CONV_2D"]
    assert [op.options["fused_activation_function"] for op in depthwise] == ["RELU"] * 3
    assert rel_error(run(original), run(model)) <= 1e-5


def test_int8_pre_activation_batch_norms_become_depthwise_convs() -> None:
    original = load("preact_resnet_int8")
    model = load("preact_resnet_int8")
    run_passes(model, "fold-batch-norm")
    assert counts(model) == {"CONV_2D": 5, "DEPTHWISE_CONV_2D": 3, "ADD": 2, "MEAN": 1, "FULLY_CONNECTED": 1}
    for op in model.main.ops:
        if op.type == "DEPTHWISE_CONV_2D":
            weight = input_at(model.main, op, 1)
            assert set(np.abs(weight.data).reshape(-1).tolist()) == {127}  # each factor held exactly
    seeds = tuple(range(20))
    steps = np.concatenate(
        [np.abs(x.astype(int) - y.astype(int)) for x, y in zip(run(original, seeds), run(model, seeds), strict=True)]
    )
    assert np.mean(steps <= 1) >= 0.99 and steps.max() <= 2


def test_int8_fold_declines_when_the_intermediate_saturates() -> None:
    """conv (range r) -> ADD(+0.5) -> out (range r): the conv's int8 output clips at r before the ADD,
    which folding the shift into the bias would lose."""
    from npupass.ir.types import DType, Quantization

    model = load("cnn_int8")
    g = model.main
    dw = weighted_ops(g, "DEPTHWISE_CONV_2D")[0]
    out = output(g, dw)
    mid = Tensor(out.name + "/conv", DType.INT8, out.shape, quant=out.quant)
    g.set_output(dw, 0, mid)
    const = new_constant("shift", np.full(out.shape[-1], 127), DType.INT8, Quantization([0.5 / 127], [0]))
    g.add_op(
        Op("ADD", {"fused_activation_function": "NONE"}, "AddOptions", version=2, name="shift"), [mid, const], [out]
    )
    before = counts(model)
    result = run_passes(model, "fold-batch-norm")
    assert counts(model) == before
    assert [d.message for d in result.passes[0].declines] == [
        f"ADD 'shift' not folded into DEPTHWISE_CONV_2D '{mid.name}': "
        f"'{mid.name}' saturates inside the range of '{out.name}', which a fold would not"
    ]
