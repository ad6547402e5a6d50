"""The Ethos-U compile as a PCQAT user meets it: the default pipeline's gain over plain Vela, the report
(per layer, CSV, advice, preservation, declines, report.html) and the refusals. Real Vela, real LiteRT."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

import npupass
from npupass.backends.ethos_u.compile import LAYER_COLUMNS
from npupass.backends.ethos_u.vela import VelaConfig, compile_vela
from npupass.cli import main

MODELS = Path(__file__).parent / "models"
TARGET = "ethos-u55-128"


@pytest.mark.parametrize("name", ["pcqat_dscnn_int8", "pcqat_mobilenet_v2_035_96_int8"])
def test_default_compile_beats_plain_vela_on_pcqat_models(name: str) -> None:
    """Prune 50% -> sparsity-preserving clustering to 16 -> PCQAT (tfmot, scripts/make_pcqat_fixtures.py):
    the default pipeline's encoded weights are >= 10% smaller than plain Vela's on the same file, never
    slower, and the outputs moved no more than encode-clusters declares, as the report states."""
    path = MODELS / f"{name}.tflite"
    plain = compile_vela(path.read_bytes(), VelaConfig(TARGET))
    data = npupass.compile(path, TARGET).report.to_dict()
    assert data["memory"]["encoded_weight_bytes"] <= 0.9 * plain.encoded_weights
    assert data["performance"]["total_cycles"] <= plain.total_cycles
    (check,) = [c for c in data["accuracy"] if c["pass"] == "encode-clusters"]
    assert check["problem"] is None and check["max_steps"] <= check["declared_max_steps"] == 2
    assert check["argmax_agreement"] == 1.0
    assert data["ops"]["cpu"] == 0


def test_fake_quant_export_compiles_like_its_int8_twin() -> None:
    fq = npupass.compile(MODELS / "pcqat_dscnn_fq.tflite", TARGET).report.to_dict()
    int8 = npupass.compile(MODELS / "pcqat_dscnn_int8.tflite", TARGET).report.to_dict()
    assert fq["memory"]["encoded_weight_bytes"] == int8["memory"]["encoded_weight_bytes"]
    assert fq["ops"]["npu"] == fq["ops"]["total"]


def test_passes_replacing_the_pipeline_are_refused_when_fake_quant_is_left(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "out"
    src = MODELS / "pcqat_dscnn_fq.tflite"
    code = main(["compile", str(src), "--target", TARGET, "--passes", "encode-clusters", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert err.count("\n") == 1 and err.startswith("npupass: error: pipeline encode-clusters: fake quantization")
    assert "the pipeline needs fold-fake-quant" in err and "'+' extends the default" in err


def test_plus_and_add_passes_extend_the_default(tmp_path: Path, capsys: Any) -> None:
    src = str(MODELS / "pcqat_dscnn_fq.tflite")
    default = ["constant-fold", "fold-batch-norm", "fuse-activations", "fold-fake-quant", "encode-clusters", "cleanup"]
    for flags in (["--passes", "+encode-clusters"], ["--add-passes", "encode-clusters"]):
        out = tmp_path / flags[0]
        assert main(["compile", src, "--target", TARGET, *flags, "-o", str(out), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert [p["name"] for p in report["passes"]["passes"]] == default
    assert main(["compile", src, "--target", TARGET, "--passes", "+no-such-pass", "-o", str(tmp_path / "x")]) == 2
    assert "unknown pass 'no-such-pass'" in capsys.readouterr().err


def test_per_layer_csv_and_advice_on_the_cpu_op_fixture(tmp_path: Path, capsys: Any) -> None:
    src = MODELS / "cpu_ops_int8.tflite"
    assert main(["compile", str(src), "--target", TARGET, "-o", str(tmp_path), "--per-layer-csv"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    rows = list(csv.DictReader(io.StringIO((tmp_path / "per_layer.csv").read_text())))
    assert list(rows[0]) == list(LAYER_COLUMNS)
    assert len(rows) == report["ops"]["total"] == 7  # every TFLite op, CPU ones included
    assert [(r["op"], r["device"]) for r in rows if r["device"] == "CPU"] == [
        ("L2_NORMALIZATION", "CPU"),
        ("GATHER", "CPU"),
    ]
    assert rows[1]["cpu_reasons"] == "L2_NORMALIZATION is not an operator Vela runs on Ethos-U55"
    npu = [r for r in rows if r["device"] == "NPU"]
    assert sum(int(r["cycles"]) for r in npu) == report["performance"]["total_cycles"]
    assert all(r["bound"] in ("memory", "compute") for r in npu)
    for r in npu:  # utilisation is the MACs over what the array could do in those cycles
        if r["mac_utilisation"]:
            assert float(r["mac_utilisation"]) == pytest.approx(int(r["macs"]) / (int(r["cycles"]) * 128))
    assert any(a.startswith("2 op(s) run on the CPU (GATHER, L2_NORMALIZATION)") for a in report["advice"])
    text = capsys.readouterr().out
    assert "advice: 2 op(s) run on the CPU" in text and "wrote " + str(tmp_path / "per_layer.csv") in text


def test_advice_names_a_slow_softmax_on_u55() -> None:
    data = npupass.compile(MODELS / "softmax_int8.tflite", TARGET).report.to_dict()
    softmax = [r for r in data["layers"] if r["op"] == "SOFTMAX"]
    assert len(softmax) == 1 and softmax[0]["share"] > 0.5 and softmax[0]["vela_ops"] > 1
    slow = [a for a in data["advice"] if a.startswith("SOFTMAX")]
    assert len(slow) == 1 and "a slow op on this core" in slow[0]
    assert not any(a.startswith("CONV_2D") and "slow op" in a for a in data["advice"])


def test_explain_and_preservation_in_the_report(tmp_path: Path, capsys: Any) -> None:
    src = str(MODELS / "pcqat_mobilenet_v2_035_96_int8.tflite")
    args = ["compile", src, "--target", TARGET, "-o", str(tmp_path), "--explain", "--preservation"]
    assert main(args) == 0
    text = capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    declined = [d for p in report["passes"]["passes"] for d in p["declined"] if p["name"] == "encode-clusters"]
    assert declined and f"encode-clusters[/bold] declined {len(declined)}:" not in text
    assert f"encode-clusters declined {len(declined)}:" in text
    # the depthwise layers tfmot never clustered say so
    assert sum("not clustered" in d["message"] for d in declined) >= 17
    stages = report["preservation"]["stages"]
    assert stages[0] == "input" and stages[-1] == "encode-clusters" and report["preservation"]["problems"] == []
    assert "Preservation (zeros, distinct values, most per channel)" in text


def test_the_wide_cluster_tolerance_only_where_litert_checks_it() -> None:
    """An ONNX import is not run in LiteRT by the compile: encode-clusters keeps its own tolerance there;
    an explicit tolerance stands and the report says which ran."""
    onnx = npupass.compile(MODELS / "mbv2_qat_qdq.onnx", TARGET).report.to_dict()
    assert onnx["encode_clusters_tolerance"] == 3.0 and onnx["accuracy"] == []
    tflite = npupass.compile(MODELS / "pcqat_dscnn_int8.tflite", TARGET, options={"cluster_tolerance": 2.0})
    assert tflite.report.to_dict()["encode_clusters_tolerance"] == 2.0


def test_near_misses_and_unclustered_layers_say_what_was_found() -> None:
    import numpy as np

    from npupass.passes.encode_clusters import shared_palette

    rng = np.random.default_rng(0)
    palette = np.arange(-8, 9)  # 17 values with zero: 16 non-zero
    near = np.concatenate([palette, [9]])  # one value too many
    q = rng.choice(near, size=(4, 3, 3, 16)).astype(np.int8)
    q[:, 0, 0, :2] = [[9, 8]] * 4  # every channel holds all 17 non-zero values
    q[:, 0, 1, :16] = np.array([v for v in near if v][:16])
    assert shared_palette(q, np.full(4, 0.01), 0, 16) == "17 distinct values per channel, limit 16"
    assert not isinstance(shared_palette(q, np.full(4, 0.01), 0, 17), str)  # a larger max_values takes it
    unclustered = rng.permutation(np.arange(-127, 128))[: 4 * 9].reshape(4, 3, 3, 1).astype(np.int8)
    found = shared_palette(unclustered, np.full(4, 0.01), 0, 16)
    distinct = np.unique(unclustered[unclustered != 0]).size
    assert found == f"not clustered: {distinct} distinct values, hardly any weight repeats a value of its channel"


def test_pass_options_from_the_cli(tmp_path: Path, capsys: Any) -> None:
    src, out = str(MODELS / "pcqat_mobilenet_v2_035_96_int8.tflite"), str(tmp_path / "m.tflite")
    base = ["convert", src, "-o", out, "--passes", "encode-clusters", "--json"]
    assert main(base) == 0
    default = json.loads(capsys.readouterr().out)["pipeline"]["passes"][0]["rewrites"]["shared-palette"]
    assert main([*base, "--pass-option", "encode-clusters:max_values=24"]) == 0
    wider = json.loads(capsys.readouterr().out)["pipeline"]["passes"][0]["rewrites"]["shared-palette"]
    assert wider > default  # the near misses at 17..24 values are taken
    assert main([*base, "--pass-option", "encode-clusters:bogus=1"]) == 2
    assert capsys.readouterr().err == (
        "npupass: error: pass encode-clusters has no option 'bogus' (its options: max_values, tolerance)\n"
    )
    assert main([*base, "--pass-option", "max_values=24"]) == 2
    assert "write PASS:KEY=VALUE" in capsys.readouterr().err
