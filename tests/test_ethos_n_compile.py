"""`npupass compile --target ethos-n78`: end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rewrites import MODELS

from npupass.cli import main

FIXTURE = MODELS / "mbv2_ethos_n_int8.tflite"


def test_compile_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(FIXTURE), "--target", "ethos-n78", "-o", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((tmp_path / "report.json").read_text())
    assert (tmp_path / "mbv2_ethos_n_int8_ethos-n78.tflite").stat().st_size > 0
    assert report["variant"] == "4TOPS_4PLE_RATIO"
    assert report["coverage"] == {
        "before": {"ops": 15, "supported": 8, "estimate_only": 4, "unsupported": 3, "fraction": 0.5333},
        "after": {"ops": 15, "supported": 11, "estimate_only": 1, "unsupported": 3, "fraction": 0.7333},
    }
    assert report["bit_exact"]["bit_exact"] is True
    assert [len(r["ops"]) for r in report["regions"]] == [6, 5]
    assert [
        (r["op"].split(" ")[0], r["level"], [x["constraint"] for x in r["reasons"]]) for r in report["cpu_ops"]
    ] == [
        ("MUL", "EstimateOnly", ["no-broadcast"]),
        ("MEAN", "Unsupported", ["mean-keep-dims"]),
        ("FULLY_CONNECTED", "Unsupported", ["fc-per-tensor"]),
        ("SOFTMAX", "Unsupported", ["known-op"]),
    ]


def test_compile_terminal_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(FIXTURE), "--target", "ethos-n78-1TOPS_2PLE_RATIO", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Ethos-N78 1TOPS_2PLE_RATIO" in out
    assert "MEAN must keep the reduced dimensions (keep_dims): keep_dims is false" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.tflite", "--target", "ethos-n78"], "npupass: error: missing.tflite: no such file\n"),
        (
            [str(FIXTURE), "--target", "ethos-n78-3TOPS"],
            "npupass: error: unknown Ethos-N78 variant '3tops': choose one of "
            "1TOPS_2PLE_RATIO, 1TOPS_4PLE_RATIO, 2TOPS_2PLE_RATIO, 2TOPS_4PLE_RATIO, "
            "4TOPS_2PLE_RATIO, 4TOPS_4PLE_RATIO, 8TOPS_2PLE_RATIO\n",
        ),
        (
            [str(MODELS / "cnn_float.tflite"), "--target", "ethos-n78"],
            f"npupass: error: {MODELS / 'cnn_float.tflite'} is a "
            "float model; Ethos-N runs int8/uint8 only: convert it to full int8 first (TFLite converter with a "
            "representative dataset, or quantization-aware training)\n",
        ),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    out = tmp_path / "out"
    assert main(["compile", *argv, "-o", str(out)]) == 2
    assert capsys.readouterr().err == message
    assert not out.exists()
