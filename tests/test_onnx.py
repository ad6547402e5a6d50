"""The ONNX frontend on PyTorch-made models: float CNNs and a transformer block against onnxruntime."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from rewrites import MODELS

import npupass
from npupass.backends.tflite import serialize_tflite
from npupass.errors import ModelFormatError, UnsupportedFeatureError
from npupass.frontends import load_model
from npupass.passes import run_passes
from npupass.verify.litert import LiteRTModel
from npupass.verify.onnxrt import AsTflite, OnnxRuntimeModel

FLOAT_MODELS = ["mbv2_float", "mbv2_conv_div_bn_float", "transformer_block_float"]


def _max_rel_error(onnx_path: Path, model, seeds: int = 3) -> float:
    layout = json.loads(model.metadata_entry("npupass_onnx_layout") or b"null")
    lite = LiteRTModel(serialize_tflite(model))
    ort = AsTflite(OnnxRuntimeModel(onnx_path), lite, layout)
    worst = 0.0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        inputs = [rng.uniform(-1, 1, s.shape).astype(s.dtype) for s in lite.inputs]
        for a, b in zip(ort.run(inputs), lite.run(inputs), strict=True):
            worst = max(worst, float(np.abs(a - b).max() / np.abs(a).max()))
    return worst


@pytest.mark.parametrize("name", FLOAT_MODELS)
def test_float_model_matches_onnxruntime(name: str) -> None:
    path = MODELS / f"{name}.onnx"
    model = npupass.convert(path).model  # the import's default pipeline
    assert _max_rel_error(path, model) <= 1e-4


def test_cnn_has_no_transposes_and_folded_batch_norms() -> None:
    model = load_model(MODELS / "mbv2_float.onnx")
    graph = onnx.load(str(MODELS / "mbv2_float.onnx")).graph
    onnx_ops = Counter(n.op_type for n in graph.node)
    assert onnx_ops["BatchNormalization"] == Counter(op.type for op in model.main.ops)["BATCH_NORM"] > 0
    run_passes(model, "fold-batch-norm,fuse-activations")
    ops = Counter(op.type for op in model.main.ops)
    assert ops["TRANSPOSE"] == 0 and ops["BATCH_NORM"] == 0
    assert ops["CONV_2D"] + ops["DEPTHWISE_CONV_2D"] == onnx_ops["Conv"]
    assert model.main.inputs[0].shape == (1, 32, 32, 3)  # NHWC at the boundary


def test_conv_div_batch_norm_folds_into_the_conv() -> None:
    model = load_model(MODELS / "mbv2_conv_div_bn_float.onnx")
    result = run_passes(model, "fold-batch-norm,fuse-activations")
    rewrites = result.passes[0].rewrites
    assert rewrites["fold-scale"] == rewrites["batch-norm-to-affine"] + 2  # each BN, plus the DIVs
    assert not {"DIV", "MUL", "BATCH_NORM"} & {op.type for op in model.main.ops}


def test_keep_nchw_io() -> None:
    path = MODELS / "mbv2_float.onnx"
    model = load_model(path, keep_nchw_io=True)
    run_passes(model, "fold-batch-norm,fuse-activations")
    assert model.main.inputs[0].shape == (1, 3, 32, 32)
    assert Counter(op.type for op in model.main.ops)["TRANSPOSE"] == 1  # once, at the input
    assert _max_rel_error(path, model) <= 1e-4


def test_transformer_block_gelu_becomes_one_op() -> None:
    model = npupass.convert(MODELS / "transformer_block_float.onnx").model  # the import's default pipeline
    ops = Counter(op.type for op in model.main.ops)
    assert ops["GELU"] == 1 and "Erf" not in ops


def test_cli_convert_and_verify(tmp_path: Path) -> None:
    src = MODELS / "mbv2_float.onnx"
    out = tmp_path / "m.tflite"
    convert = subprocess.run(
        [sys.executable, "-m", "npupass", "convert", str(src), "-o", str(out), "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert convert.returncode == 0, convert.stderr
    names = [p["name"] for p in json.loads(convert.stdout)["pipeline"]["passes"]]
    assert names == ["constant-fold", "fold-batch-norm", "fuse-activations", "cleanup"]  # the ONNX default
    verify = subprocess.run(
        [sys.executable, "-m", "npupass", "verify", str(src), str(out), "--rtol", "1e-4", "--atol", "1e-5", "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout
    assert json.loads(verify.stdout)["outputs"][0]["argmax_agreement"] == 1.0


def test_unsupported_ops_are_all_listed(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Acos", ["a"], ["b"], name="acos1"),
        helper.make_node("Asin", ["b"], ["c"], name="asin1"),
        helper.make_node("Acos", ["c"], ["y"], name="acos2"),
    ]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "trig.onnx"
    onnx.save(model, str(path))
    with pytest.raises(UnsupportedFeatureError) as err:
        load_model(path)
    assert str(err.value) == "unsupported ONNX ops: Acos (acos1, acos2); Asin (asin1)"


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not protobuf" * 3)
    with pytest.raises(ModelFormatError, match=r"^.*bad\.onnx: (not a valid ONNX file|invalid ONNX model)"):
        load_model(bad)
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("float_data")
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [weight])
    path = tmp_path / "escape.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(ModelFormatError) as err:
        load_model(path)
    assert str(err.value) == f"{path}: tensor 'w' refers to data outside the model's folder"


@pytest.mark.parametrize("name", ["mbv2_float", "mbv2_qat_qdq"])
def test_cli_convert_verify_against_onnxruntime(name: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "npupass", "convert", str(MODELS / f"{name}.onnx"), "-o", str(tmp_path / "m.tflite"),
         "--verify", "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    verify = json.loads(proc.stdout)["verify"]
    assert verify["equivalent"] and verify["outputs"][0]["argmax_agreement"] == 1.0
