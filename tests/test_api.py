"""The library face: npupass.compile/convert/verify/load/targets return data, write nothing until asked,
cross process boundaries, and take third-party backends through the registry."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

import npupass
from npupass.backends import base
from npupass.cli import main

MODELS = Path(__file__).parent / "models"
PLUGIN = Path(__file__).parent / "plugin"
README = Path(__file__).parent.parent / "README.md"
QAT = MODELS / "qat_cnn_fq.tflite"


def without_timings(data: object) -> object:
    if isinstance(data, dict):
        return {
            k: without_timings(v) for k, v in data.items() if k not in ("seconds", "input", "output", "report", "html")
        }
    if isinstance(data, list):
        return [without_timings(v) for v in data]
    return data


def test_compile_returns_the_report_and_files_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = npupass.compile(QAT, "ethos-u55-128")
    assert list(tmp_path.iterdir()) == []
    data = result.report.to_dict()
    assert result.report.cpu_ops == 0 and result.report.cpu_reasons == {}
    assert result.report.npu_ops == data["ops"]["total"] == 8
    assert result.report.cycles == data["performance"]["total_cycles"] > 0
    assert result.report.inference_seconds == data["performance"]["inference_seconds"] > 0
    assert sorted(result.artifacts) == ["qat_cnn_fq_vela.tflite", "report.html", "report.json"]
    written = result.write(tmp_path / "out")
    assert sorted(p.name for p in written) == ["qat_cnn_fq_vela.tflite", "report.html", "report.json"]
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk == result.report.to_dict()
    assert on_disk["output"] == str(tmp_path / "out" / "qat_cnn_fq_vela.tflite")
    assert (tmp_path / "out" / "qat_cnn_fq_vela.tflite").read_bytes() == result.artifacts["qat_cnn_fq_vela.tflite"]
    # the CLI is the same call: same report apart from timings and paths
    assert main(["compile", str(QAT), "--target", "ethos-u55-128", "-o", str(tmp_path / "cli"), "--json"]) == 0
    cli = json.loads((tmp_path / "cli" / "report.json").read_text())
    assert without_timings(cli) == without_timings(on_disk)


def test_cpu_reasons_name_each_cpu_op() -> None:
    result = npupass.compile(MODELS / "cpu_ops_int8.tflite", "ethos-u55-128")
    rows = result.report.to_dict()["ops"]["cpu_ops"]
    assert result.report.cpu_ops == len(rows) == 2
    assert result.report.cpu_reasons == {f"{r['op']} '{r['name']}'": r["reasons"] for r in rows}
    assert any("L2_NORMALIZATION is not an operator Vela runs on Ethos-U55" in r for r in rows[0]["reasons"])


def test_compile_in_a_worker_process_returns_its_result() -> None:
    here = npupass.compile(QAT, "ethos-u55-64")
    with ProcessPoolExecutor(max_workers=1) as pool:
        there = pool.submit(npupass.compile, str(QAT), "ethos-u55-64").result()
    assert there.report.cycles == here.report.cycles
    assert there.artifacts["qat_cnn_fq_vela.tflite"] == here.artifacts["qat_cnn_fq_vela.tflite"]
    assert pickle.loads(pickle.dumps(there)).report.to_dict() == there.report.to_dict()


def test_a_model_passed_in_is_left_untouched() -> None:
    model = npupass.load(QAT)
    before = [op.type for op in model.main.ops]
    result = npupass.compile(model, "ethos-u55-128")
    assert result.report.cpu_ops == 0
    assert [op.type for op in model.main.ops] == before
    assert "QUANTIZE" in before  # the fake quantization the compile folded is still in the caller's model


def test_options_are_checked_against_the_target() -> None:
    with pytest.raises(npupass.errors.NpupassError) as err:
        npupass.compile(QAT, "ethos-u55-128", options={"fp16": True})
    assert str(err.value) == (
        "target ethos-u55-128 has no option 'fp16' (its options: config, system_config, memory_mode, optimise, "
        "max_cluster_values, cluster_tolerance, vela_timeout, emit, c_section)"
    )
    with pytest.raises(npupass.errors.NpupassError, match="unknown target 'ethos-u55-100': Ethos-U55 comes as"):
        npupass.compile(QAT, "ethos-u55-100")


def test_targets_cover_every_backend() -> None:
    names = [name for name, _ in npupass.targets()]
    assert {"ethos-u55-128", "ethos-u85-2048", "ethos-n78", "ethos-n78-1TOPS_2PLE_RATIO", "xnnpack"} <= set(names)
    assert all(description for _, description in npupass.targets())


def test_default_pipeline_is_decided_from_the_model() -> None:
    qat, int8 = npupass.load(QAT), npupass.load(MODELS / "cnn_int8.tflite")
    qdq = npupass.load(MODELS / "mbv2_qat_qdq.onnx")
    canonical = ["fold-batch-norm", "fuse-activations"]

    def around(*names: str) -> list[str]:  # constant arithmetic folded first, dead ops swept last
        return ["constant-fold", *names, "cleanup"]

    assert npupass.default_pipeline(int8) == []  # a plain conversion keeps a converter's model as it is
    assert npupass.default_pipeline(qat) == []
    assert npupass.default_pipeline(qdq) == around(*canonical, "fold-fake-quant")
    assert npupass.default_pipeline(qat, "ethos-u55-128") == around(*canonical, "fold-fake-quant", "encode-clusters")
    assert npupass.default_pipeline(int8, "ethos-u55-128") == around(*canonical, "encode-clusters")
    assert npupass.default_pipeline(int8, "ethos-n78") == around("legalize-ethos-n")
    assert npupass.default_pipeline(qat, "ethos-n78") == around(*canonical, "fold-fake-quant", "legalize-ethos-n")
    assert npupass.default_pipeline(qdq, "xnnpack") == around(*canonical, "encode-sparsity")


def test_convert_and_verify(tmp_path: Path) -> None:
    converted = npupass.convert(
        QAT, passes="fold-batch-norm,fuse-activations,fold-fake-quant", io="int8", verify=True, samples=2
    )
    assert converted.equivalent and converted.failure is None
    assert [c["pass"] for c in converted.pass_checks] == ["fold-fake-quant"]  # the only pass that changed it
    assert {op.type for op in converted.model.main.ops}.isdisjoint({"QUANTIZE", "DEQUANTIZE"})
    out = converted.write(tmp_path / "int8.tflite")
    same = npupass.verify(out, out)
    assert same.bit_exact and same.equivalent
    against_converter = npupass.verify(MODELS / "qat_cnn_int8.tflite", out)
    assert against_converter.bit_exact


@pytest.fixture
def tiny() -> Iterator[object]:
    sys.path.insert(0, str(PLUGIN))
    try:
        import npupass_tiny

        backend = npupass.register(npupass_tiny.Tiny())
        yield backend
    finally:
        base._BACKENDS.pop("tiny", None)
        sys.path.remove(str(PLUGIN))


def test_a_registered_backend_compiles_from_the_api_and_the_cli(
    tiny: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = MODELS / "preact_resnet_float.tflite"
    result = npupass.compile(model, "tiny-cpu", options={"label": "api"})
    assert result.report.npu_ops == 0
    assert result.report.cpu_ops == len(result.report.data["ops"]) > 0
    assert result.report.data["label"] == "api"
    assert "MUL" not in result.report.data["ops"]  # its batch norms folded by the pipeline it asked for
    assert main(["compile", str(model), "--target", "tiny-cpu", "--label", "cli", "-o", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"tiny-cpu (cli): {result.report.cpu_ops} ops on the CPU\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "tiny.tflite"]
    assert npupass.load(tmp_path / "tiny.tflite").main.ops  # a model npupass reads back


def test_a_backend_is_found_through_its_entry_point(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGIN), os.environ.get("PYTHONPATH", "")])}
    run = [sys.executable, "-m", "npupass"]
    listed = subprocess.run([*run, "targets", "--json"], capture_output=True, text=True, env=env, check=True)
    assert {"name": "tiny-cpu", "description": "a CPU that runs every op (a test backend)"} in json.loads(listed.stdout)
    compiled = subprocess.run(
        [*run, "compile", str(MODELS / "cnn_float.tflite"), "--target", "tiny-cpu", "-o", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert compiled.returncode == 0, compiled.stderr
    assert json.loads(compiled.stdout)["target"] == "tiny-cpu"
    helped = subprocess.run([*run, "compile", "--help"], capture_output=True, text=True, env=env, check=True)
    assert "tiny options:" in helped.stdout and "--label WORD" in helped.stdout


def test_readme_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Python API") : text.index("### The IR")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 3
    shutil.copy(MODELS / "qat_mobilenet_v2_035_96_fq.tflite", tmp_path / "model.tflite")
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "out" / "report.json").exists() and (tmp_path / "model_int8.tflite").exists()
