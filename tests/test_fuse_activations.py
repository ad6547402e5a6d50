"""fuse-activations on real TF-made models whose fused activations were split off again."""

from __future__ import annotations

import numpy as np
import pytest
from rewrites import add_reader, counts, load, rel_error, run, unfuse

from npupass.ir import check
from npupass.ir.graph import Op, Tensor
from npupass.passes import run_passes
from npupass.passes.pattern import new_constant, output


def _fused(graph):
    return [op for op in graph.ops if op.options.get("fused_activation_function", "NONE") != "NONE"]


@pytest.mark.parametrize("name", ["cnn_float", "cnn_int8", "mobilenet_v2_035_96_int8"])
def test_fuse_activation_fires_and_is_bit_exact(name: str) -> None:
    original = load(name)
    model = load(name)
    fused = _fused(model.main)
    for op in fused:
        unfuse(model.main, op)
    assert sum(counts(model).values()) == sum(counts(original).values()) + len(fused)
    result = run_passes(model, "fuse-activations")
    assert counts(model) == counts(original)
    assert result.passes[0].rewrites == {"fuse-activation": len(fused)}
    check(model.main)
    for a, b in zip(run(original), run(model), strict=True):
        assert np.array_equal(a, b)


def _split_first_activation(name: str):
    """The model with its first fused activation split off: (model, graph, activation op, its input)."""
    model = load(name)
    g = model.main
    act = unfuse(g, _fused(g)[0])
    return model, g, act, g.inputs_of(act)[0]


def test_guard_two_consumers() -> None:
    model, g, relu, mid = _split_first_activation("cnn_float")
    add_reader(g, mid, "NEG")
    before = counts(model)
    result = run_passes(model, "fuse-activations")
    assert counts(model) == before
    assert [d.message for d in result.passes[0].declines] == [
        f"CONV_2D '{mid.name}' not fused with RELU6 '{relu.name}': CONV_2D output has 2 consumers"
    ]


def test_guard_graph_output() -> None:
    model, g, relu, mid = _split_first_activation("cnn_float")
    g.outputs.append(mid)
    before = counts(model)
    result = run_passes(model, "fuse-activations")
    assert counts(model) == before
    assert [d.message for d in result.passes[0].declines] == [
        f"CONV_2D '{mid.name}' not fused with RELU6 '{relu.name}': CONV_2D output '{mid.name}' is a graph output"
    ]


def test_int8_different_quantization_is_not_fused() -> None:
    from npupass.ir.types import Quantization

    model, g, relu, mid = _split_first_activation("cnn_int8")
    mid.quant = Quantization(mid.quant.scale * 2, mid.quant.zero_point)
    before = counts(model)
    result = run_passes(model, "fuse-activations")
    assert counts(model) == before
    assert [d.message for d in result.passes[0].declines] == [
        f"CONV_2D '{mid.name}' not fused with RELU6 '{relu.name}': CONV_2D output and RELU6 output are "
        "quantized differently; fusing would change the numbers"
    ]


@pytest.mark.parametrize(
    ("activation", "reason"),
    [
        ("TANH", "LiteRT's CONV_2D kernel does not apply a fused TANH"),
    ],
)
def test_activations_litert_would_ignore_are_not_fused(activation: str, reason: str) -> None:
    model, g, relu, mid = _split_first_activation("cnn_float")
    relu.type = activation
    before = counts(model)
    result = run_passes(model, "fuse-activations")
    assert counts(model) == before
    assert [d.message for d in result.passes[0].declines] == [
        f"CONV_2D '{mid.name}' not fused with {activation} '{relu.name}': {reason}"
    ]


def test_concatenation_keeps_its_activation_separate() -> None:
    model = load("cnn_float")
    g = model.main
    concat = next(op for op in g.ops if op.type == "CONCATENATION")
    out = output(g, concat)
    mid = Tensor(out.name + "/concat", out.dtype, out.shape)
    g.set_output(concat, 0, mid)
    relu = g.add_op(Op("RELU", name="after_concat"), [mid], [out])
    result = run_passes(model, "fuse-activations")
    assert relu in g.nx
    assert [d.message for d in result.passes[0].declines] == [
        f"CONCATENATION '{mid.name}' not fused with RELU 'after_concat': "
        "LiteRT's CONCATENATION kernel does not clamp its output with a fused activation"
    ]


def _clamp(graph, relu6: Op, order: str, low: float = 0.0, high: float = 6.0) -> None:
    """Replace a RELU6 op by MINIMUM/MAXIMUM with scalar constants, in the given order."""
    x, out = graph.inputs_of(relu6)[0], output(graph, relu6)
    graph.remove_op(relu6)
    mid = Tensor(out.name + "/clamp", out.dtype, out.shape)
    first, second = ("MAXIMUM", "MINIMUM") if order == "max-min" else ("MINIMUM", "MAXIMUM")
    bound = {"MAXIMUM": low, "MINIMUM": high}
    graph.add_op(Op(first, name="first"), [x, new_constant(f"{first}/k", np.array(bound[first]))], [mid])
    graph.add_op(Op(second, name="second"), [mid, new_constant(f"{second}/k", np.array(bound[second]))], [out])


@pytest.mark.parametrize(("order", "clamp_rewrites"), [("max-min", 2), ("min-max", 1)])
def test_clamp_becomes_relu6_and_fuses(order: str, clamp_rewrites: int) -> None:
    """MAXIMUM(x, 0) first becomes RELU, then MINIMUM(RELU, 6) becomes RELU6: two rewrites."""
    original = load("cnn_float")
    model = load("cnn_float")
    g = model.main
    conv = _fused(g)[0]
    _clamp(g, unfuse(g, conv), order)
    assert counts(model)["MINIMUM"] == 1
    result = run_passes(model, "fuse-activations")
    assert counts(model) == counts(original)
    assert result.passes[0].rewrites == {"clamp-to-relu": clamp_rewrites, "fuse-activation": 1}
    assert conv.options["fused_activation_function"] == "RELU6"
    for a, b in zip(run(original), run(model), strict=True):
        assert np.array_equal(a, b)


def test_clamp_to_relu_n1_to_1() -> None:
    model = load("cnn_float")
    g = model.main
    conv = _fused(g)[0]
    _clamp(g, unfuse(g, conv), "max-min", -1.0, 1.0)
    before = run(model)
    run_passes(model, "fuse-activations")
    assert conv.options["fused_activation_function"] == "RELU_N1_TO_1"
    for a, b in zip(before, run(model), strict=True):
        assert np.array_equal(a, b)


def _decompose_hard_swish(graph, swish: Op, form: str) -> None:
    """x * relu6(x + 3) / 6 in one of its written forms, in place of HARD_SWISH."""
    x, out = graph.inputs_of(swish)[0], output(graph, swish)
    graph.remove_op(swish)

    def t(name: str) -> Tensor:
        return Tensor(f"{out.name}/{name}", out.dtype, out.shape)

    plus3, r6 = t("plus3"), t("relu6")
    graph.add_op(
        Op("ADD", {"fused_activation_function": "NONE"}, "AddOptions"),
        [x, new_constant("three", np.array(3.0))],
        [plus3],
    )
    graph.add_op(Op("RELU6"), [plus3], [r6])
    if form == "div-after":
        prod = t("prod")
        graph.add_op(Op("MUL", {"fused_activation_function": "NONE"}, "MulOptions"), [x, r6], [prod])
        graph.add_op(
            Op("DIV", {"fused_activation_function": "NONE"}, "DivOptions"),
            [prod, new_constant("six", np.array(6.0))],
            [out],
        )
    else:
        sixth = t("sixth")
        graph.add_op(
            Op("MUL", {"fused_activation_function": "NONE"}, "MulOptions"),
            [r6, new_constant("k", np.array(1 / 6))],
            [sixth],
        )
        graph.add_op(Op("MUL", {"fused_activation_function": "NONE"}, "MulOptions"), [sixth, x], [out])


@pytest.mark.parametrize("form", ["div-after", "sixth-first"])
def test_decomposed_hard_swish_becomes_hard_swish(form: str) -> None:
    original = load("cnn_float")
    model = load("cnn_float")
    g = model.main
    swish = next(op for op in g.ops if op.type == "HARD_SWISH")
    _decompose_hard_swish(g, swish, form)
    decomposed = run(model)
    assert counts(model)["HARD_SWISH"] == 0
    result = run_passes(model, "fuse-activations")
    assert counts(model) == counts(original)
    assert result.passes[0].rewrites == {"hard-swish": 1, "fuse-activation": 1}  # RELU6 into the ADD first
    assert rel_error(decomposed, run(model)) <= 1e-5
    for a, b in zip(run(original), run(model), strict=True):
        assert np.array_equal(a, b)


def test_hard_swish_guard_intermediate_used_twice() -> None:
    model = load("cnn_float")
    g = model.main
    swish = next(op for op in g.ops if op.type == "HARD_SWISH")
    _decompose_hard_swish(g, swish, "div-after")
    prod = next(t for t in g.tensors if t.name.endswith("/prod"))
    g.outputs.append(prod)
    before = counts(model)
    result = run_passes(model, "fuse-activations")
    after = counts(model)
    assert after["HARD_SWISH"] == 0 and after["DIV"] == before["DIV"] == 1
    assert any(d.message.endswith(f"MUL output '{prod.name}' is a graph output") for d in result.passes[0].declines)


def test_broadcasting_clamp_is_not_rewritten() -> None:
    """MAXIMUM(x[1, 10], zeros[1, 1, 1]) is [1, 1, 10]: a RELU would change the output's shape."""
    model = load("cnn_float")
    g = model.main
    (out,) = g.outputs
    wider = Tensor("wider", out.dtype, (1, *out.shape))
    g.add_op(Op("MAXIMUM", name="max0"), [out, new_constant("zeros", np.zeros((1, 1, 1)))], [wider])
    g.outputs = [wider]
    before = counts(model)
    result = run_passes(model, "fuse-activations")
    assert counts(model) == before
    assert [d.message for d in result.passes[0].declines] == [
        f"MAXIMUM '{wider.name}' not turned into a RELU: a broadcast constant makes the shape [1, 1, 10], not [1, 10]"
    ]
