"""Defect classes found on real third-party models (issue 15), on fixtures made by
scripts/make_realworld_fixtures.py: a rank-1 bias quantized "along axis 3", files appended after the
flatbuffer, tensors without names; and ONNX models of opsets outside 11-21."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from ai_edge_litert import schema_py_generated as schema
from conftest import MODELS
from onnx import TensorProto, helper, numpy_helper

from npupass.backends.base import parse_target
from npupass.backends.ethos_u.compile import compile_ethos_u
from npupass.backends.ethos_u.vela import VelaConfig, compile_vela
from npupass.backends.tflite import serialize_tflite
from npupass.cli import main
from npupass.frontends import load_model
from npupass.frontends.tflite import parse_tflite, read_tflite
from npupass.summary import summarize
from npupass.verify import LiteRTModel, compare

RANK1 = MODELS / "rank1_bias_axis3_int8.tflite"
APPENDED = MODELS / "appended_zip_int8.tflite"
UNNAMED = MODELS / "unnamed_tensors_int8.tflite"
LABELS = "".join(f"class_{i}\n" for i in range(10)).encode()
AXIS_NOTE = (
    "1 rank-1 per-channel tensor(s) say quantized axis 3 (e.g. 'arith.constant31'); read along axis 0, as Vela "
    "and TFLM do, since their scale count matches their only dimension; written back as they were"
)


def _file_axes(data: bytes) -> dict[str, int]:
    """Each per-channel tensor's quantized_dimension as the file states it."""
    fb = schema.ModelT.InitFromPackedBuf(data, 0)
    return {
        t.name.decode(): t.quantization.quantizedDimension
        for t in fb.subgraphs[0].tensors
        if t.quantization is not None and t.quantization.scale is not None and len(t.quantization.scale) > 1
    }


def _text(capsys: Any) -> str:
    """Captured stdout with rich's line wrapping undone."""
    return " ".join(capsys.readouterr().out.split())


def _labels(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read("labels.txt")


# --- a rank-1 bias quantized along axis 3 ---------------------------------------------------------
def test_rank1_bias_along_axis_3_is_read_along_axis_0_and_info_says_so(capsys: Any) -> None:
    model = read_tflite(RANK1)
    bias = model.main.find_tensor("arith.constant31")
    assert bias.quant is not None and bias.quant.axis == 0 and bias.quant.scale.size == bias.shape[0] == 16
    assert summarize(model)["notes"] == [AXIS_NOTE]
    assert main(["info", str(RANK1), "--max-ops", "1"]) == 0
    assert f"note: {AXIS_NOTE}" in _text(capsys)


def test_rank1_bias_along_axis_3_is_written_back_unchanged(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "out.tflite"
    assert main(["convert", str(RANK1), "-o", str(out)]) == 0
    assert _file_axes(out.read_bytes()) == _file_axes(RANK1.read_bytes())
    assert _file_axes(out.read_bytes())["arith.constant31"] == 3
    capsys.readouterr()
    assert main(["diff", str(RANK1), str(out)]) == 0
    assert "0 removed, 0 added, 0 changed, 0 tensors changed" in _text(capsys)
    assert main(["view", str(RANK1), "--json"]) == 0


def test_a_rewritten_rank1_quantization_is_written_along_axis_0() -> None:
    model = read_tflite(RANK1)
    bias = model.main.find_tensor("arith.constant31")
    assert bias.quant is not None
    bias.quant = type(bias.quant)(bias.quant.scale * 2, bias.quant.zero_point, axis=0)  # what a pass would make
    assert _file_axes(serialize_tflite(model))["arith.constant31"] == 0


def test_rank1_bias_along_axis_3_compiles_for_ethos_u_as_vela_does() -> None:
    config = VelaConfig("ethos-u55-128")
    direct = compile_vela(RANK1.read_bytes(), config)
    result = compile_ethos_u(load_model(RANK1), parse_target("ethos-u55-128"), config)
    assert result.disagreements == []
    assert len(result.vela.cpu_ops) == len(direct.cpu_ops) == 0
    assert result.vela.total_cycles <= direct.total_cycles


# --- files appended after the flatbuffer ----------------------------------------------------------
def test_appended_zip_is_read_and_listed_by_info(capsys: Any) -> None:
    model = read_tflite(APPENDED)
    assert _labels(model.appended) == LABELS
    assert len(model.appended) == 198
    assert main(["info", str(APPENDED), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["appended"] == {"bytes": 198, "zip_files": [{"name": "labels.txt", "bytes": 80}]}
    assert main(["info", str(APPENDED), "--max-ops", "1"]) == 0
    assert "appended after the flatbuffer: 198 bytes, a zip of 1 file(s): labels.txt (80 bytes)" in _text(capsys)


@pytest.mark.parametrize(
    "extra", [[], ["--passes", "fold-batch-norm,fuse-activations"], ["--buffers", "external"]], ids=str
)
def test_appended_zip_survives_convert(tmp_path: Path, extra: list[str]) -> None:
    out = tmp_path / "out.tflite"
    assert main(["convert", str(APPENDED), "-o", str(out), *extra]) == 0
    data = out.read_bytes()
    assert _labels(data) == LABELS
    assert read_tflite(out).appended == read_tflite(APPENDED).appended
    result = compare(LiteRTModel(APPENDED.read_bytes()), LiteRTModel(data), samples=2, seed=3)
    assert result.bit_exact, result.to_json()


@pytest.mark.parametrize("target", ["ethos-u55-128", "xnnpack"])
def test_appended_zip_survives_compile(tmp_path: Path, target: str, capsys: Any) -> None:
    assert main(["compile", str(APPENDED), "--target", target, "-o", str(tmp_path), "--json"]) == 0
    capsys.readouterr()
    (written,) = [p for p in tmp_path.glob("*.tflite")]
    assert _labels(written.read_bytes()) == LABELS


def test_diff_reports_dropped_appended_files(tmp_path: Path, capsys: Any) -> None:
    data = APPENDED.read_bytes()
    stripped = tmp_path / "stripped.tflite"
    stripped.write_bytes(data[: len(data) - 198])
    assert read_tflite(stripped).appended == b""
    assert main(["diff", str(APPENDED), str(stripped), "--full"]) == 1
    out = _text(capsys)
    assert "changed FILE 'bytes appended after the flatbuffer': 198 bytes (zip: labels.txt) -> none" in out
    assert main(["diff", str(APPENDED), str(APPENDED)]) == 0


def test_zero_padding_and_short_leftovers_are_not_appended_files() -> None:
    data = (MODELS / "cnn_int8.tflite").read_bytes()
    assert parse_tflite(data).appended == b""
    assert parse_tflite(data + b"\0" * 7).appended == b""
    assert parse_tflite(data + b"\x06\0\0\0\0\0\0\x03").appended == b""  # an old builder's unreferenced table
    assert parse_tflite(data + b"trailer: sixteen bytes or more").appended == b"trailer: sixteen bytes or more"


def test_external_buffers_are_not_appended_files() -> None:
    model = read_tflite(MODELS / "buffer_offset.tflite")
    assert model.buffer_storage == "external" and model.appended == b""
    again = parse_tflite(serialize_tflite(read_tflite(APPENDED), buffers="external"))
    assert again.appended == read_tflite(APPENDED).appended


# --- tensors without names --------------------------------------------------------------------------
def test_diff_of_a_model_with_unnamed_tensors_with_itself_is_empty(tmp_path: Path, capsys: Any) -> None:
    assert {t.name for t in read_tflite(UNNAMED).main.tensors} == {""}
    assert main(["diff", str(UNNAMED), str(UNNAMED), "--json"]) == 0
    diff = json.loads(capsys.readouterr().out)
    assert [diff[k] for k in ("removed", "added", "changed", "tensors_changed")] == [[], [], [], []]
    out = tmp_path / "out.tflite"
    assert main(["convert", str(UNNAMED), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["diff", str(UNNAMED), str(out)]) == 0


# --- ONNX opsets outside 11-21 ---------------------------------------------------------------------
def _old_cnn(opset: int, path: Path) -> None:
    """Conv -> BatchNormalization -> Relu -> MaxPool -> Dropout (-> Upsample at opset 9) -> AveragePool
    -> Flatten -> Gemm -> Softmax, written with the onnx helper at `opset`."""
    rng = np.random.default_rng(opset)
    upsample = opset == 9
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization", ["c", "g", "beta", "mean", "var"], ["bn"], epsilon=1e-5),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Dropout", ["p"], ["d"], ratio=0.5),
        helper.make_node("Upsample", ["d", "scales"], ["u"], mode="nearest")
        if upsample
        else helper.make_node("Identity", ["d"], ["u"]),
        helper.make_node("AveragePool", ["u"], ["a"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["a"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["y"], axis=1),
    ]
    arrays = {
        "w": rng.normal(0, 0.3, (8, 3, 3, 3)),
        "b": rng.normal(0, 0.1, 8),
        "g": rng.uniform(0.5, 1.5, 8),
        "beta": rng.normal(0, 0.1, 8),
        "mean": rng.normal(0, 0.1, 8),
        "var": rng.uniform(0.5, 1.5, 8),
        "wf": rng.normal(0, 0.1, (10, 8 * (8 if upsample else 4) ** 2)),
        "bf": rng.normal(0, 0.1, 10),
    } | ({"scales": np.array([1, 1, 2, 2])} if upsample else {})
    inits = [numpy_helper.from_array(a.astype(np.float32), name) for name, a in arrays.items()]
    graph = helper.make_graph(
        nodes,
        "old_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=4)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.mark.parametrize("opset", [7, 8, 9, 10])
def test_old_opset_cnn_is_upgraded_and_matches_onnxruntime(tmp_path: Path, opset: int, capsys: Any) -> None:
    src, out = tmp_path / "old.onnx", tmp_path / "old.tflite"
    _old_cnn(opset, src)
    assert main(["convert", str(src), "-o", str(out), "--verify", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["notes"] == [f"ONNX opset {opset} upgraded to opset 11 with onnx.version_converter"]
    assert result["verify"]["equivalent"]  # every output within 1e-5 + 1e-4 * |onnxruntime's|
    assert result["verify"]["tolerance"]["rtol"] == 1e-4 and result["verify"]["tolerance"]["atol"] <= 1e-5


def test_info_reports_the_opset_upgrade(tmp_path: Path, capsys: Any) -> None:
    src = tmp_path / "old.onnx"
    _old_cnn(9, src)
    assert main(["info", str(src), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["notes"] == [
        "ONNX opset 9 upgraded to opset 11 with onnx.version_converter"
    ]


def _single_node_model(op: str, opset: int, path: Path, **kwargs: Any) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"], **kwargs)], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))


def test_newer_opset_is_downgraded(tmp_path: Path) -> None:
    src = tmp_path / "relu22.onnx"
    _single_node_model("Relu", 22, src)
    model = load_model(src)
    assert model.notes == ["ONNX opset 22 downgraded to opset 21 with onnx.version_converter"]
    assert [op.type for op in model.main.ops] == ["RELU"]


def test_an_opset_the_converter_cannot_reach_is_one_line(tmp_path: Path, capsys: Any) -> None:
    src = tmp_path / "swish.onnx"
    _single_node_model("Swish", 24, src)
    assert main(["info", str(src)]) == 2
    assert capsys.readouterr().err == (
        f"npupass: error: {src}: ONNX opset 24; npupass reads opsets 11 to 21, and onnx.version_converter "
        "could not convert it: No Previous Version of Swish exists\n"
    )


@pytest.mark.parametrize(
    ("pads", "strides", "auto_pad"),
    [
        ([1, 1, 1, 1], [2, 2], None),
        ([0, 0, 1, 1], [1, 1], None),
        ([1, 2, 0, 1], [2, 1], None),
        (None, [2, 2], "SAME_LOWER"),
    ],
)
def test_average_pool_excluding_explicit_pads_matches_onnxruntime(
    tmp_path: Path, capsys: Any, pads: list[int] | None, strides: list[int], auto_pad: str | None
) -> None:
    """As Inception v1 and ShuffleNet of the ONNX model zoo pool (count_include_pad=0, pads not SAME)."""
    kwargs: dict[str, Any] = {"kernel_shape": [3, 3], "strides": strides}
    kwargs |= {"pads": pads} if pads else {"auto_pad": auto_pad}
    node = helper.make_node("AveragePool", ["x"], ["y"], **kwargs)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 7, 6])
    if pads:
        size = [(n + pads[i] + pads[i + 2] - 3) // strides[i] + 1 for i, n in enumerate((7, 6))]
    else:
        size = [-(-n // s) for n, s in zip((7, 6), strides, strict=True)]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, *size])
    src, out = tmp_path / "pool.onnx", tmp_path / "pool.tflite"
    onnx.save(
        helper.make_model(
            helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 13)], ir_version=8
        ),
        str(src),
    )
    assert main(["convert", str(src), "-o", str(out), "--verify", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["verify"]["equivalent"] and result["ops"] == 3  # PAD, AVERAGE_POOL_2D, MUL


def test_old_softmax_over_flattened_axes_of_size_one_is_a_channel_softmax(tmp_path: Path, capsys: Any) -> None:
    """SqueezeNet 1.0 (opset 9) ends with Softmax(axis=1) on [1, 1000, 1, 1]."""
    node = helper.make_node("Softmax", ["x"], ["y"], axis=1)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10, 1, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10, 1, 1])
    src, out = tmp_path / "softmax.onnx", tmp_path / "softmax.tflite"
    model = helper.make_model(
        helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 11)], ir_version=8
    )
    onnx.save(model, str(src))
    assert main(["convert", str(src), "-o", str(out), "--verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verify"]["equivalent"]
    wide = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10, 2, 1])
    wide_out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10, 2, 1])
    model = helper.make_model(
        helper.make_graph([node], "g", [wide], [wide_out]), opset_imports=[helper.make_opsetid("", 11)], ir_version=8
    )
    onnx.save(model, str(src))
    assert main(["info", str(src)]) == 2
    assert capsys.readouterr().err.endswith("ONNX Softmax 'y': Softmax over the flattened axes 1.. (opset 11)\n")


def test_a_lower_rank_activation_broadcasts_in_nhwc(tmp_path: Path, capsys: Any) -> None:
    """Conv output (NCHW in ONNX, NHWC in the IR) + a rank-1 graph input along W, and one along C via [C, 1, 1]."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 1, 1)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Add", ["c", "along_w"], ["s"]),
        helper.make_node("Mul", ["s", "along_c"], ["y"]),
    ]
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 6]),
        helper.make_tensor_value_info("along_w", TensorProto.FLOAT, [6]),
        helper.make_tensor_value_info("along_c", TensorProto.FLOAT, [4, 1, 1]),
    ]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 6])
    graph = helper.make_graph(nodes, "g", inputs, [y], [w])
    src, out = tmp_path / "bcast.onnx", tmp_path / "bcast.tflite"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(src))
    assert main(["convert", str(src), "-o", str(out), "--verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verify"]["equivalent"]
