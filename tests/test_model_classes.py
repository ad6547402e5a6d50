"""Classes of models people ship that npupass once mistook (issue 15): fp16-weight float models, integer
models with no float tensor, models LiteRT cannot load, models Vela already compiled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import npupass
from npupass.backends.ethos_u.vela import VelaConfig, compile_vela
from npupass.cli import main

MODELS = Path(__file__).parent / "models"


def test_fp16_weights_are_a_float_model_not_fake_quantization(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = MODELS / "fp16_weights_float.tflite"
    assert main(["compile", str(model), "--target", "ethos-u55-128", "-o", str(tmp_path / "u")]) == 2
    assert capsys.readouterr().err == (
        "npupass: error: the model is a float model (fp16 weights), so Vela would run none of its 6 ops on the NPU "
        "(the Ethos-U NPU computes in int8/int16 and Vela does not quantize); export it with quantization-aware "
        "training (FAKE_QUANT or QUANTIZE/DEQUANTIZE pairs) or convert it to full int8 with a representative "
        "dataset, and compile that\n"
    )
    assert not (tmp_path / "u").exists()
    result = npupass.compile(model, "xnnpack")  # a float model is what XNNPACK runs
    assert result.report.equivalent is True


def test_an_integer_model_without_float_tensors_compiles_as_vela_places_it() -> None:
    model = MODELS / "int32_only.tflite"
    result = npupass.compile(model, "ethos-u55-128")
    vela = compile_vela(model.read_bytes(), VelaConfig("ethos-u55-128"))
    assert (result.report.npu_ops, result.report.cpu_ops) == (3, 1)
    assert result.report.cpu_ops == len(vela.cpu_ops)
    assert result.report.cycles == vela.total_cycles
    assert result.report.to_dict()["ops"]["placement_disagreements"] == []
    with pytest.raises(npupass.errors.NpupassError) as err:
        npupass.compile(model, "ethos-n78")
    assert str(err.value) == f"{model} computes in integers without quantization; Ethos-N runs int8/uint8 only"


def test_could_not_verify_is_not_not_equivalent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = MODELS / "custom_op.tflite"  # a custom op LiteRT has no kernel for
    assert main(["compile", str(model), "--target", "xnnpack", "-o", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for check in report["verify"].values():
        assert check["ok"] is None
        assert check["error"].startswith("could not verify: LiteRT cannot load the model: ")
    assert npupass.compile(model, "xnnpack").report.equivalent is None


def test_a_vela_compiled_model_is_recognised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    compiled = npupass.compile(MODELS / "qat_cnn_fq.tflite", "ethos-u55-128")
    compiled.write(tmp_path)
    vela_model = tmp_path / "qat_cnn_fq_vela.tflite"
    assert main(["compile", str(vela_model), "--target", "ethos-u55-128", "-o", str(tmp_path / "again")]) == 2
    assert capsys.readouterr().err == (
        "npupass: error: the model is already compiled by Vela (it holds 1 ethos-u operator); "
        "compile the model you gave Vela instead\n"
    )
    assert not (tmp_path / "again").exists()
