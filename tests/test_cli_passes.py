"""`npupass convert --passes ...` and `npupass passes`, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rewrites import MODELS, counts

from npupass.frontends import load_model

PIPELINE = "fold-batch-norm,fuse-activations,fold-fake-quant"


def npupass(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "npupass", *args], capture_output=True, text=True, timeout=300)


def test_passes_lists_every_pass() -> None:
    text = npupass("passes")
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["fold-batch-norm", "fold-fake-quant", "fuse-activations"]
    assert lines[-1] == f"default pipeline: {PIPELINE}"
    data = json.loads(npupass("passes", "--json").stdout)
    assert data["default_pipeline"] == PIPELINE
    fold = next(p for p in data["passes"] if p["name"] == "fold-fake-quant")
    assert fold["requires"] == ["no-ir-only-ops"] and fold["guarantees"] == ["no-fake-quant"]


def test_convert_qat_model_to_int8_with_json(tmp_path: Path) -> None:
    out = tmp_path / "int8.tflite"
    src = MODELS / "qat_cnn_fq.tflite"
    before = src.read_bytes()
    proc = npupass("convert", str(src), "-o", str(out), "--passes", PIPELINE, "--io", "int8", "--verify", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert src.read_bytes() == before
    assert data["ops"] == 8
    names = [p["name"] for p in data["pipeline"]["passes"]]
    assert names == ["fold-batch-norm", "fuse-activations", "fold-fake-quant"]
    fold = data["pipeline"]["passes"][2]
    assert fold["rewrites"] == {"activation-fake-quant": 8, "bias": 5, "weight-fake-quant": 5}
    assert all(isinstance(p["seconds"], float) for p in data["pipeline"]["passes"])
    checks = data["verify"]["passes"]
    assert [c["pass"] for c in checks] == ["fold-fake-quant"] and checks[0]["problem"] is None
    assert counts(load_model(out)) == counts(load_model(MODELS / "qat_cnn_int8.tflite"))


def test_explain_prints_declines_and_provenance(tmp_path: Path) -> None:
    proc = npupass(
        "convert", str(MODELS / "preact_resnet_float.tflite"), "-o", str(tmp_path / "o.tflite"),
        "--passes", "fold-batch-norm,fuse-activations", "--explain",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "DEPTHWISE_CONV_2D" in proc.stdout and "<- fold-batch-norm/affine-to-depthwise from" in proc.stdout


def test_errors_are_one_line(tmp_path: Path) -> None:
    out = str(tmp_path / "o.tflite")
    cnn = str(MODELS / "cnn_float.tflite")
    cases = {
        ("--passes", "fold-bn"): "npupass: error: unknown pass 'fold-bn'; available: ",
        ("--io", "int8"): "npupass: error: --io needs --passes",
        ("--passes", "fuse-activations", "--io", "int8"): (
            "npupass: error: --io applies to fold-fake-quant, which is not in --passes"
        ),
        ("--passes", "fold-fake-quant"): "npupass: error: tensor 'cnn_1/zero_padding2d_1/Pad' (written by PAD",
    }
    for args, message in cases.items():
        proc = npupass("convert", cnn, "-o", out, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith(message), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not Path(out).exists()
