"""The npupass command: info, convert and verify, in human and JSON form."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS

from npupass.backends.tflite import write_tflite
from npupass.cli import main
from npupass.frontends.tflite import read_tflite

CNN_OPS = {
    "CONV_2D": 3,
    "FULLY_CONNECTED": 3,
    "MEAN": 2,
    "PAD": 1,
    "DEPTHWISE_CONV_2D": 1,
    "HARD_SWISH": 1,
    "ADD": 1,
    "AVERAGE_POOL_2D": 1,
    "MAX_POOL_2D": 1,
    "CONCATENATION": 1,
    "RESHAPE": 1,
    "LOGISTIC": 1,
    "MUL": 1,
    "SOFTMAX": 1,
}


def run_json(capsys: pytest.CaptureFixture[str], *argv: str, status: int = 0) -> dict:  # type: ignore[type-arg]
    assert main(list(argv)) == status
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_info_json_int8(capsys: pytest.CaptureFixture[str]) -> None:
    info = run_json(capsys, "info", str(MODELS / "cnn_int8.tflite"), "--json")
    assert info["format"] == "tflite"
    assert info["op_histogram"] == CNN_OPS
    assert info["op_count"] == 19 and len(info["ops"]) == 19
    assert info["tensor_count"] == 34
    assert info["quantization"] == {"per-tensor": 20, "per-axis": 11, "none": 3}
    assert info["parameter_bytes"] == 4280
    assert info["subgraphs"][0]["inputs"][0]["dtype"] == "INT8"
    assert info["subgraphs"][0]["inputs"][0]["shape"] == [1, 32, 32, 3]
    conv = next(op for op in info["ops"] if op["type"] == "CONV_2D")
    assert conv["options"]["padding"] == "VALID" and conv["options"]["fused_activation_function"] == "RELU6"
    assert conv["inputs"][1]["quantization"]["kind"] == "per-axis"
    assert [m["name"] for m in info["metadata"]] == ["min_runtime_version", "CONVERSION_METADATA"]


def test_info_json_per_tensor_and_float(capsys: pytest.CaptureFixture[str]) -> None:
    info = run_json(capsys, "info", str(MODELS / "cnn_int8_per_tensor.tflite"), "--json")
    assert info["quantization"] == {"per-tensor": 31, "per-axis": 0, "none": 5}
    assert info["op_histogram"] == CNN_OPS | {"QUANTIZE": 1, "DEQUANTIZE": 1}
    info = run_json(capsys, "info", str(MODELS / "cnn_float.tflite"), "--json")
    assert info["quantization"] == {"per-tensor": 0, "per-axis": 0, "none": 33}
    assert info["dtypes"] == {"FLOAT32": 30, "INT32": 3}


def test_info_lists_every_subgraph(capsys: pytest.CaptureFixture[str]) -> None:
    info = run_json(capsys, "info", str(MODELS / "control_flow.tflite"), "--json")
    assert [s["ops"] for s in info["subgraphs"]] == [9, 2, 2, 1, 5]
    assert info["op_count"] == 19


def test_info_terminal_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(MODELS / "cnn_int8.tflite"), "--max-ops", "5"]) == 0
    out = capsys.readouterr().out
    assert "19 ops, 34 tensors" in out
    assert "quantization: 20 per-tensor, 11 per-axis, 3 unquantized tensors" in out
    assert "DEPTHWISE_CONV_2D" in out
    assert "... 14 more ops (--max-ops 0 shows all)" in out


def test_convert_writes_a_verified_copy(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "copy.tflite"
    result = run_json(
        capsys, "convert", str(MODELS / "mobilenet_v2_035_96_int8.tflite"), "-o", str(out), "--verify", "--json"
    )
    assert result["ops"] == 65
    assert result["output_bytes"] == out.stat().st_size
    assert result["verify"]["equivalent"] and result["verify"]["bit_exact"]
    assert result["verify"]["samples"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.tflite"]  # no temporary left behind


def test_convert_can_move_buffers_out_of_the_flatbuffer(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "external.tflite"
    assert main(["convert", str(MODELS / "cnn_float.tflite"), "-o", str(out), "--buffers", "external", "--verify"]) == 0
    assert "bit-exact" in capsys.readouterr().out
    assert read_tflite(out).buffer_storage == "external"


def perturbed_copy(tmp_path: Path, name: str, delta: float) -> Path:
    """`name` with its largest constant changed by `delta` (a model that is not equivalent)."""
    model = read_tflite(MODELS / name)
    t = max((t for t in model.main.tensors if t.data is not None), key=lambda t: t.data.size)
    t.data = (t.data.astype(np.float64) + delta).astype(t.data.dtype)
    out = tmp_path / f"perturbed_{name}"
    write_tflite(model, out)
    return out


def test_verify_equivalent_models(capsys: pytest.CaptureFixture[str]) -> None:
    model = str(MODELS / "cnn_float.tflite")
    report = run_json(capsys, "verify", model, model, "--samples", "2", "--json")
    assert report["equivalent"] and report["bit_exact"]
    assert report["outputs"][0]["mismatched"] == 0 and report["outputs"][0]["elements"] == 20


def test_verify_reports_float_differences(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    other = perturbed_copy(tmp_path, "cnn_float.tflite", 0.5)
    report = run_json(capsys, "verify", str(MODELS / "cnn_float.tflite"), str(other), "--json", status=1)
    out = report["outputs"][0]
    assert not report["equivalent"] and out["mismatched"] > 0 and out["max_abs_diff"] > 1e-3
    assert out["max_steps"] is None
    loose = run_json(capsys, "verify", str(MODELS / "cnn_float.tflite"), str(other), "--json", "--atol", "10")
    assert loose["equivalent"] and not loose["bit_exact"]


def test_verify_reports_integer_steps(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    other = perturbed_copy(tmp_path, "cnn_int8.tflite", 1)
    report = run_json(capsys, "verify", str(MODELS / "cnn_int8.tflite"), str(other), "--json", status=1)
    out = report["outputs"][0]
    assert out["dtype"] == "int8" and out["max_steps"] >= 1
    steps = out["max_steps"]
    assert main(["verify", str(MODELS / "cnn_int8.tflite"), str(other), "--max-steps", str(steps)]) == 0
    text = capsys.readouterr().out
    assert "equivalent on 3 seeded inputs" in text and f"<= {steps} steps" in text


def test_verify_models_with_different_interfaces(capsys: pytest.CaptureFixture[str]) -> None:
    report = run_json(
        capsys, "verify", str(MODELS / "cnn_float.tflite"), str(MODELS / "cnn_int8.tflite"), "--json", status=1
    )
    assert report["problems"] == [
        "input 0 differs: float32[1, 32, 32, 3] vs int8[1, 32, 32, 3]",
        "output 0 differs: float32[1, 10] vs int8[1, 10]",
    ]


def test_verify_a_model_litert_cannot_run(capsys: pytest.CaptureFixture[str]) -> None:
    model = str(MODELS / "custom_op.tflite")
    assert main(["verify", model, model]) == 2
    assert capsys.readouterr().err == (
        "npupass: error: LiteRT cannot load the model: Encountered unresolved custom op: ExtractImagePatches.\n"
    )


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", "a", "b", "--samples", "0"])
    assert exit_info.value.code == 2
    assert "must be at least 1, not 0" in capsys.readouterr().err


def test_console_script_and_module_agree() -> None:
    exe = Path(sys.executable).parent / "npupass"
    for cmd in ([str(exe)], [sys.executable, "-m", "npupass"]):
        proc = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and proc.stdout.startswith("npupass 0.")
