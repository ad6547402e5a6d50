"""The semantic validator (ir/validate.py): every fixture passes, each rule names the op and the rule."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS

from npupass.backends.tflite import write_tflite
from npupass.cli import main
from npupass.frontends import load_model
from npupass.frontends.tflite import read_tflite
from npupass.ir.graph import Graph, Model, Op, Tensor
from npupass.ir.types import DType, Quantization
from npupass.ir.validate import SIGNATURES, InvalidModelError, problems, validate
from npupass.passes import PASSES, PassManager, PipelineError
from npupass.passes.manager import Context, Pass

FIXTURES = sorted(p.name for p in MODELS.glob("*.tflite")) + sorted(p.name for p in MODELS.glob("*.onnx"))


@pytest.mark.parametrize("name", FIXTURES)
def test_every_fixture_is_valid(name: str) -> None:
    assert problems(load_model(MODELS / name)) == []


def _op(graph: Graph, op_type: str, index: int = 0) -> Op:
    return [op for op in graph.ops if op.type == op_type][index]


def _edited(edit: Callable[[Graph], None], name: str = "cnn_int8.tflite") -> list[str]:
    model = read_tflite(MODELS / name)
    edit(model.main)
    return problems(model)


CONV = (
    "CONV_2D 'cnn_1/re_lu_1/Relu6;cnn_1/batch_normalization_1/batchnorm/add_1;cnn_1/conv2d_1/convolution;"
    "cnn_1/batch_normalization_1/batchnorm/sub1'"
)


def test_zero_dimension_weight() -> None:
    def edit(g: Graph) -> None:
        w = g.inputs_of(_op(g, "CONV_2D"))[1]
        assert w is not None
        w.shape, w.data = (16, 3, 3, 0), np.zeros((16, 3, 3, 0), np.int8)

    assert _edited(edit) == [f"{CONV}: weight [16,3,3,0] has a zero dimension"]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("stride_w", 0, "option stride_w=0 must be at least 1"),
        ("dilation_h_factor", -1, "option dilation_h_factor=-1 must be at least 1"),
        ("padding", 7, "option padding=7 is not one of SAME, VALID"),
        ("fused_activation_function", 99, "option fused_activation_function=99 is not one of NONE, RELU, "
         "RELU_N1_TO_1, RELU6, TANH, SIGN_BIT"),
    ],
)  # fmt: skip
def test_conv_options(key: str, value: object, message: str) -> None:
    def edit(g: Graph) -> None:
        _op(g, "CONV_2D").options[key] = value

    assert _edited(edit) == [f"{CONV}: {message}"]


def test_an_op_code_changed_under_its_options_is_named() -> None:
    def edit(g: Graph) -> None:
        _op(g, "CONV_2D").type = "DEPTHWISE_CONV_2D"

    assert _edited(edit) == [f"DEPTHWISE_CONV_2D {CONV[8:]}: carries Conv2DOptions, expected DepthwiseConv2DOptions"]


def test_output_shape_must_follow_strides_and_padding() -> None:
    def edit(g: Graph) -> None:
        _op(g, "CONV_2D").options["stride_h"] = 1

    assert _edited(edit) == [
        f"{CONV}: output [1,16,16,16] should be 32x16 for input [1,34,34,3], kernel 3x3, strides 1x2, "
        "dilation 1x1, padding VALID"
    ]


def test_bias_must_hold_one_value_per_channel_and_its_scale_follow_input_and_weight() -> None:
    def shorter(g: Graph) -> None:
        b = g.inputs_of(_op(g, "CONV_2D"))[2]
        assert b is not None and b.data is not None and b.quant is not None
        b.shape, b.data = (8,), b.data[:8]
        b.quant = Quantization(b.quant.scale[:8], b.quant.zero_point[:8])

    assert _edited(shorter) == [f"{CONV}: bias [8] does not hold one value per output channel (16)"]

    def rescaled(g: Graph) -> None:
        b = g.inputs_of(_op(g, "CONV_2D"))[2]
        assert b is not None and b.quant is not None
        b.quant = Quantization(b.quant.scale * 3, b.quant.zero_point)

    (found,) = _edited(rescaled)
    assert found.startswith(f"{CONV}: bias scale ") and "is not input scale x weight scale" in found


@pytest.mark.parametrize(
    ("scale", "zero_point", "message"),
    [
        (0.0, 0, "quantization scale 0 is not a finite number > 0"),
        (float("nan"), 0, "quantization scale nan is not a finite number > 0"),
        (float("inf"), 0, "quantization scale inf is not a finite number > 0"),
        (-0.5, 0, "quantization scale -0.5 is not a finite number > 0"),
        (0.5, 128, "zero point 128 is outside INT8 [-128, 127]"),
        (0.5, -192, "zero point -192 is outside INT8 [-128, 127]"),
    ],
)
def test_quantization_must_be_sane(scale: float, zero_point: int, message: str) -> None:
    def edit(g: Graph) -> None:
        g.inputs[0].quant = Quantization([scale], [zero_point])

    assert _edited(edit) == [f"tensor 'serving_default_image:0': {message}"]


def test_int8_per_channel_weights_are_symmetric() -> None:
    def edit(g: Graph) -> None:
        w = g.inputs_of(_op(g, "CONV_2D"))[1]
        assert w is not None and w.quant is not None
        w.quant = Quantization(w.quant.scale, np.arange(16) - 8, 0)

    assert _edited(edit) == [
        f"{CONV}: int8 per-channel weight has a non-zero zero point (TFLite's int8 kernels need 0)"
    ]


def test_elementwise_shapes_must_broadcast() -> None:
    def edit(g: Graph) -> None:
        a = g.inputs_of(_op(g, "ADD"))[1]
        assert a is not None
        a.shape = (1, 16, 16, 5)

    found = _edited(edit)
    assert "ADD 'cnn_1/add_1/Add': input shapes [1,16,16,16] and [1,16,16,5] do not broadcast" in found


def test_missing_required_input_and_counts() -> None:
    def edit(g: Graph) -> None:
        fc = _op(g, "FULLY_CONNECTED")
        g.set_input(fc, 1, None)

    (found,) = _edited(edit)
    assert found == "FULLY_CONNECTED 'cnn_1/dense_1/MatMul;cnn_1/dense_1/Relu': a required input is omitted"


def test_a_rank_1_bias_quantized_along_axis_3_is_not_refused() -> None:
    """Older third-party converters write it; the reader deals with that layout, the validator lets it pass."""
    model = read_tflite(MODELS / "cnn_int8.tflite")
    g = model.main
    b = g.inputs_of(_op(g, "CONV_2D"))[2]
    assert b is not None and b.quant is not None
    b.quant = Quantization(b.quant.scale, b.quant.zero_point, axis=3)
    assert problems(model) == []


def test_sparse_storage_must_stay_inside_the_tensor() -> None:
    model = read_tflite(MODELS / "sparse_fc_float.tflite")
    sparse = next(t for t in model.main.tensors if t.sparsity is not None)
    assert problems(model) == []
    assert sparse.sparsity is not None
    csr = next(d for d in sparse.sparsity.dim_metadata if d.format == "SPARSE_CSR")
    assert csr.indices is not None
    csr.indices = csr.indices.copy()
    csr.indices[0] = 200  # the weight has 8 columns
    (found,) = problems(model)
    assert found.startswith(f"tensor '{sparse.name}': sparse dimension ") and "has an index outside its size" in found


def test_the_table_names_each_options_table_of_the_schema() -> None:
    from npupass.tflite_schema import OPTIONS_TYPES

    tables = set(OPTIONS_TYPES.values())
    assert all(sig.options is None or sig.options in tables for sig in SIGNATURES.values())


def test_cli_refuses_an_invalid_model_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = read_tflite(MODELS / "cnn_int8.tflite")
    _op(model.main, "CONV_2D").options["stride_w"] = 0
    bad = tmp_path / "bad.tflite"
    write_tflite(model, bad)
    before = bad.read_bytes()
    for argv in (["info", str(bad)], ["compile", str(bad), "--target", "ethos-n78", "-o", str(tmp_path / "out")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == f"npupass: error: invalid model: {CONV}: option stride_w=0 must be at least 1\n"
    assert bad.read_bytes() == before and not (tmp_path / "out").exists()


class _BreakStrides(Pass):
    name = "break-strides"
    summary = "sets every conv's stride to 0 (a broken pass, for the test)"

    def run(self, model: Model, ctx: Context) -> None:
        for op in model.main.iter_ops():
            if op.type == "CONV_2D":
                op.options["stride_h"] = 0
                ctx.rewrites["break"] += 1


def test_a_pass_that_breaks_an_invariant_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PASSES, _BreakStrides.name, _BreakStrides)
    with pytest.raises(PipelineError) as err:
        PassManager("break-strides").run(load_model(MODELS / "cnn_int8.tflite"))
    assert str(err.value) == (
        f"pass break-strides left graph 'main' malformed: {CONV}: option stride_h=0 must be at least 1"
    )


def test_validate_raises_with_the_count_of_the_rest() -> None:
    graph = Graph("main")
    x = Tensor("x", DType.INT8, (1, 4), quant=Quantization([0.0], [0]))
    y = Tensor("y", DType.INT8, (1, 4), quant=Quantization([1.0], [300]))
    graph.add_op(Op("RELU"), [x], [y])
    graph.inputs, graph.outputs = [x], [y]
    with pytest.raises(InvalidModelError) as err:
        validate(Model([graph]))
    assert str(err.value) == "invalid model: tensor 'x': quantization scale 0 is not a finite number > 0 (and 1 more)"
