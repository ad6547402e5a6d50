"""fold-batch-norm on real TF-made models whose batch norms were unfolded again (see rewrites.unfold)."""

from __future__ import annotations

import numpy as np
import pytest
from rewrites import counts, load, rel_error, run, unfold, weighted_ops

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
    conv_out = output(g, dw)
    extra = Tensor("extra", conv_out.dtype, conv_out.shape)
    g.add_op(Op("RELU"), [conv_out], [extra])
    g.outputs.append(extra)
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
    original = load("cnn_int8")
    model = load("cnn_int8")
    g = model.main
    dw = weighted_ops(g, "DEPTHWISE_CONV_2D")[0]
    weight = input_at(g, dw, 1)
    out = output(g, dw)
    channels = out.shape[-1]
    factor = np.linspace(0.5, 1.5, channels)
    from npupass.ir.types import DType, Quantization

    mid_quant = Quantization(out.quant.scale / 1.0, out.quant.zero_point)
    mid = Tensor(out.name + "/conv", DType.INT8, out.shape, quant=mid_quant)
    # the conv's output range shrinks by the factor's largest value, so the MUL restores it
    dw_quant = Quantization(out.quant.scale / factor.max(), out.quant.zero_point)
    mid.quant = dw_quant
    g.set_output(dw, 0, mid)
    c_scale = factor.max() / 127
    const = new_constant("factor", np.round(factor / c_scale), DType.INT8, Quantization([c_scale], [0]))
    g.add_op(
        Op("MUL", {"fused_activation_function": "NONE"}, "MulOptions", version=2, name="factor"), [mid, const], [out]
    )
    before_outputs = run(model)
    result = run_passes(model, "fold-batch-norm")
    assert result.passes[0].rewrites == {"fold-scale": 1}
    assert counts(model) == counts(original)
    new_weight = input_at(g, dw, 1)
    assert np.array_equal(new_weight.data, weight.data)  # the int8 values did not change
    np.testing.assert_allclose(
        new_weight.quant.scale, weight.quant.scale * np.round(factor / c_scale) * c_scale, rtol=1e-6
    )
    after_outputs = run(model)
    for x, y in zip(before_outputs, after_outputs, strict=True):
        assert np.abs(x.astype(int) - y.astype(int)).max() <= 1


def test_batch_norm_that_cannot_fold_becomes_a_depthwise_conv() -> None:
    """The conv's output has a second reader, so MUL + ADD cannot fold; they become one 1x1 depthwise."""
    _, model = _unfolded("cnn_float", "mul-add", ("DEPTHWISE_CONV_2D",))
    g = model.main
    dw = weighted_ops(g, "DEPTHWISE_CONV_2D")[0]
    conv_out = output(g, dw)
    extra = Tensor("extra", conv_out.dtype, conv_out.shape)
    g.add_op(Op("RELU"), [conv_out], [extra])
    g.outputs.append(extra)
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
