"""`npupass compile --target ethos-n78`: end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ethos_n_graphs import act, model, op
from rewrites import MODELS

from npupass.backends.ethos_n.compile import split_pipeline
from npupass.backends.tflite import serialize_tflite
from npupass.cli import main
from npupass.frontends import load_model
from npupass.ir.graph import Graph, Tensor
from npupass.ir.types import DType
from npupass.passes.policy import CANONICALIZE, FOLD_FAKE_QUANT

FIXTURE = MODELS / "mbv2_ethos_n_int8.tflite"


FOLD_PIPELINE = [*CANONICALIZE, FOLD_FAKE_QUANT]


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


def test_compile_terminal_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # piped output is 120 columns by default: the reasons would wrap
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


# --- quantization-aware exports: fake quantization is folded to int8 first --------------------------------
def compile_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], model: Path, *extra: str) -> dict:  # type: ignore[type-arg]
    assert main(["compile", str(model), "--target", "ethos-n78", "-o", str(tmp_path), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def pass_names(report: dict) -> list[str]:  # type: ignore[type-arg]
    return [p["name"] for p in report["pipeline"]["passes"]]


def test_compile_qat_tflite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = compile_json(tmp_path, capsys, MODELS / "qat_cnn_fq.tflite")
    assert pass_names(report) == ["constant-fold", *FOLD_PIPELINE, "legalize-ethos-n", "cleanup"]
    assert report["pipeline"]["passes"][3]["rewrites"] == {  # constant-fold runs first
        "activation-fake-quant": 8,
        "bias": 5,
        "weight-fake-quant": 5,
    }
    # "before" is the folded int8 model legalization starts from; legalize-ethos-n finds nothing to do
    assert report["coverage"] == {
        "before": {"ops": 8, "supported": 7, "estimate_only": 0, "unsupported": 1, "fraction": 0.875},
        "after": {"ops": 8, "supported": 7, "estimate_only": 0, "unsupported": 1, "fraction": 0.875},
    }
    assert report["bit_exact"] is None  # nothing was legalized, so there is nothing to compare
    assert [len(r["ops"]) for r in report["regions"]] == [6, 1]
    assert [(r["op"].split(" ")[0], [x["constraint"] for x in r["reasons"]]) for r in report["cpu_ops"]] == [
        ("MEAN", ["same-quantization", "mean-keep-dims"])
    ]
    written = load_model(tmp_path / "qat_cnn_fq_ethos-n78.tflite").main
    assert {op.type for op in written.iter_ops()}.isdisjoint({"QUANTIZE", "DEQUANTIZE", "FAKE_QUANT"})
    assert [t.dtype for t in written.inputs + written.outputs] == [DType.INT8, DType.INT8]


def test_compile_onnx_qdq(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = compile_json(tmp_path, capsys, MODELS / "mbv2_qat_qdq.onnx")
    assert pass_names(report) == ["constant-fold", *FOLD_PIPELINE, "legalize-ethos-n", "cleanup"]
    assert report["coverage"] == {
        "before": {"ops": 17, "supported": 16, "estimate_only": 0, "unsupported": 1, "fraction": 0.9412},
        "after": {"ops": 17, "supported": 16, "estimate_only": 0, "unsupported": 1, "fraction": 0.9412},
    }
    assert [len(r["ops"]) for r in report["regions"]] == [16]
    assert [(r["op"].split(" ")[0], [x["constraint"] for x in r["reasons"]]) for r in report["cpu_ops"]] == [
        ("FULLY_CONNECTED", ["fc-per-tensor"])
    ]
    assert (tmp_path / "mbv2_qat_qdq_ethos-n78.tflite").stat().st_size > 0


def fake_quant_max_pool(path: Path) -> Path:
    """float x -> QUANTIZE -> DEQUANTIZE -> MAX_POOL_2D 3x3 stride 2 VALID on 16x16 -> QUANTIZE -> DEQUANTIZE:
    once folded, an int8 pool Ethos-N declines (even input) and legalize-ethos-n splits."""
    g = Graph("main")
    x, xd = Tensor("x", DType.FLOAT32, (1, 16, 16, 8)), Tensor("x_dq", DType.FLOAT32, (1, 16, 16, 8))
    y, yd = Tensor("y", DType.FLOAT32, (1, 7, 7, 8)), Tensor("y_dq", DType.FLOAT32, (1, 7, 7, 8))
    xq, yq = act("x_q", (1, 16, 16, 8), 0.05, 3), act("y_q", (1, 7, 7, 8), 0.05, 3)
    op(g, "QUANTIZE", [x], xq)
    op(g, "DEQUANTIZE", [xq], xd)
    op(g, "MAX_POOL_2D", [xd], y, padding="VALID", stride_h=2, stride_w=2, filter_height=3, filter_width=3)
    op(g, "QUANTIZE", [y], yq)
    op(g, "DEQUANTIZE", [yq], yd)
    g.inputs, g.outputs = [x], [yd]
    path.write_bytes(serialize_tflite(model(g)))
    return path


def test_bit_exactness_compares_the_legalization_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = fake_quant_max_pool(tmp_path / "fq_pool.tflite")
    report = compile_json(tmp_path / "out", capsys, src)
    assert [(p["name"], p["rewrites"]) for p in report["pipeline"]["passes"]] == [
        ("constant-fold", {}),
        ("fold-batch-norm", {}),
        ("fuse-activations", {}),
        ("fold-fake-quant", {"activation-fake-quant": 2}),
        ("legalize-ethos-n", {"split-max-pool": 1}),
        ("cleanup", {}),
    ]
    assert report["coverage"] == {
        "before": {"ops": 1, "supported": 0, "estimate_only": 1, "unsupported": 0, "fraction": 0.0},
        "after": {"ops": 2, "supported": 2, "estimate_only": 0, "unsupported": 0, "fraction": 1.0},
    }
    # int8 against int8: the float input model would not even have the same output type
    assert report["bit_exact"]["bit_exact"] is True
    assert report["bit_exact"]["baseline"] == "after fold-fake-quant"
    assert report["bit_exact"]["outputs"][0]["dtype"] == "int8"


@pytest.mark.parametrize(
    ("names", "fold", "legalize"),
    [
        (["legalize-ethos-n"], [], ["legalize-ethos-n"]),
        ([*FOLD_PIPELINE, "legalize-ethos-n"], FOLD_PIPELINE, ["legalize-ethos-n"]),
        (["fold-fake-quant"], ["fold-fake-quant"], []),
    ],
)
def test_split_pipeline(names: list[str], fold: list[str], legalize: list[str]) -> None:
    assert split_pipeline(names) == (fold, legalize)


def test_passes_without_fold_on_a_fake_quant_model_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = MODELS / "qat_cnn_fq.tflite"
    argv = ["compile", str(src), "--target", "ethos-n78", "--passes", "legalize-ethos-n", "-o", str(tmp_path / "o")]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"npupass: error: {src} is a float model; Ethos-N runs int8/uint8 only: its fake quantization is not "
        "folded: leave out --passes, or put fold-fake-quant in it\n"
    )
    assert not (tmp_path / "o").exists()
