"""The XNNPACK target: sparse TFLite, the sparse-path qualification with exact reasons, and the
`npupass compile --target xnnpack` command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from npupass.backends.xnnpack.qualify import qualify
from npupass.cli import main
from npupass.frontends import load_model
from npupass.frontends.tflite import read_tflite
from npupass.ir.types import DType
from npupass.passes import run_passes
from npupass.passes.preservation import PreservationReport

MODELS = Path(__file__).parent / "models"
KERAS_STEM = (
    "CONV_2D 'mbv2s_1/re_lu_1/Relu6;mbv2s_1/stem_bn_1/batchnorm/add_1;"
    "mbv2s_1/stem_1/convolution;mbv2s_1/stem_bn_1/batchnorm/sub1'"
)


def qualified(name: str, encode: bool = True):  # type: ignore[no-untyped-def]
    model = load_model(MODELS / name)
    if encode:
        run_passes(model, "encode-sparsity")
    return qualify(model)


def test_explicit_symmetric_padding_qualifies() -> None:
    q = qualified("pruned_mbv2s_float.tflite")
    assert q.qualifies and q.why_not == []
    assert [c.kind for c in q.convs] == ["stem", "1x1", "depthwise", "1x1", "1x1", "depthwise", "1x1", "1x1"]
    assert round(q.zeros_1x1, 6) == 0.800007


def test_keras_stem_does_not_qualify_and_says_why() -> None:
    q = qualified("pruned_mbv2s_keras_float.tflite")
    assert not q.qualifies
    assert q.why_not == [f"{KERAS_STEM}: stem conv pads (0,1,0,1); the sparse path needs 1 on every side"]
    assert [c.ok for c in q.convs] == [False] + [True] * 7


def test_other_reasons() -> None:
    assert qualified("pruned_mbv2s_int8.tflite").reasons == [
        "quantized int8 model; the sparse path runs fp32 and fp16 models only"
    ]
    assert qualified("pruned_mbv2s_float.tflite", encode=False).reasons == [
        "no DENSIFY of a sparse weight: the model does not ask for the sparse path"
    ]
    dense = qualified("cnn_float.tflite", encode=False)
    assert (
        not dense.qualifies
        and "no DENSIFY of a sparse weight: the model does not ask for the sparse path" in dense.reasons
    )


def test_compile_writes_the_model_and_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = MODELS / "pruned_mbv2s_keras_float.tflite"
    code = main(["compile", str(model), "--target", "xnnpack", "-o", str(tmp_path), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((tmp_path / "report.json").read_text())
    out = tmp_path / "pruned_mbv2s_keras_float_xnnpack.tflite"
    assert report["output"] == str(out) and out.stat().st_size == report["output_bytes"] == 47_012
    assert report["input_bytes"] == 143_540
    assert report["verify"]["xnnpack_delegate"]["bit_exact"] and report["verify"]["builtin_kernels"]["bit_exact"]
    assert not report["sparse_path"]["qualifies"]
    assert report["sparse_path"]["reasons"] == [
        f"{KERAS_STEM}: stem conv pads (0,1,0,1); the sparse path needs 1 on every side"
    ]
    assert report["preservation"]["stages"] == ["input", "encode-sparsity"]
    assert report["preservation"]["problems"] == []
    assert len(report["preservation"]["weights"]) == 9
    assert report["pipeline"]["passes"][1]["rewrites"] == {"densify": 9}  # encode-sparsity, after constant-fold


def test_compile_int8_and_fp16(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(MODELS / "pruned_mbv2s_int8.tflite"), "--target", "xnnpack", "-o", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "does not qualify: quantized int8 model; the sparse path runs fp32 and fp16 models only" in text
    assert "LiteRT xnnpack delegate: bit-exact" in text and "LiteRT builtin kernels: bit-exact" in text
    assert (tmp_path / "pruned_mbv2s_int8_xnnpack.tflite").stat().st_size < (
        MODELS / "pruned_mbv2s_int8.tflite"
    ).stat().st_size
    assert (
        main(
            [
                "compile",
                str(MODELS / "pruned_mbv2s_float.tflite"),
                "--target",
                "xnnpack",
                "-o",
                str(tmp_path),
                "--fp16",
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["fp16"] and report["sparse_path"]["qualifies"]
    assert not report["verify"]["builtin_kernels"]["bit_exact"] and report["verify"]["builtin_kernels"]["ok"]
    written = read_tflite(tmp_path / "pruned_mbv2s_float_xnnpack.tflite")
    assert {t.dtype for t in written.main.tensors if t.sparsity is not None} == {DType.FLOAT16}


def test_compile_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["compile", str(MODELS / "cnn_float.tflite"), "--target", "xnnpack", "-o", str(tmp_path)]
    assert main([*args, "--passes", "fold-batch-norm", "--fp16"]) == 2
    assert capsys.readouterr().err == "npupass: error: --fp16 applies to encode-sparsity, which is not in --passes\n"
    (tmp_path / "file").write_text("x")
    assert main(["compile", str(MODELS / "cnn_float.tflite"), "--target", "xnnpack", "-o", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err == f"npupass: error: {tmp_path / 'file'}: exists and is not a directory\n"


def test_convert_preservation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c.tflite"
    model = MODELS / "clustered_mbv2s_int8_pt.tflite"
    assert main(["convert", str(model), "-o", str(out), "--passes", "encode-clusters", "--preservation", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["preservation"]
    assert report["stages"] == ["input", "encode-clusters"]
    uniques = [[s["unique"] for s in w["stages"]] for w in report["weights"]]
    assert uniques == [[109, 16], [183, 16], [177, 16], [164, 16], [210, 16], [188, 16], [171, 16], [219, 16], [16, 16]]
    assert main(["convert", str(model), "-o", str(out), "--passes", "encode-clusters", "--preservation"]) == 0
    assert "Preservation (zeros, distinct values, most per channel)" in capsys.readouterr().out
    assert main(["convert", str(model), "-o", str(out), "--preservation"]) == 2
    assert capsys.readouterr().err == "npupass: error: --preservation needs --passes\n"


def test_preservation_names_a_pass_that_loses_zeros() -> None:
    model = load_model(MODELS / "pruned_mbv2s_float.tflite")
    report = PreservationReport()
    report.start(model)
    w = model.main.inputs_of(model.main.ops[1])[1]
    w.data = w.data + 1.0  # a broken "pass": every pruned zero becomes a value

    class Broken:
        name = "broken"

    report.after(Broken(), model)  # type: ignore[arg-type]
    assert len(report.problems) == 1
    assert report.problems[0].startswith("broken: CONV_2D ") and report.problems[0].endswith(
        " went from 80.1% to 0.0% zeros"
    )
