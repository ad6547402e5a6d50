"""`npupass compile --target ethos-u...`: passes, partition and the real Vela, as a user runs it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from rewrites import MODELS

from npupass.backends.base import parse_target
from npupass.backends.ethos_u.compile import compile_ethos_u
from npupass.backends.ethos_u.vela import VelaConfig, VelaError, compile_vela
from npupass.cli import main
from npupass.frontends import load_model

TFLITE_FIXTURES = [
    "cnn_int8.tflite",
    "cnn_int8_per_tensor.tflite",
    "qat_cnn_int8.tflite",
    "qat_cnn_fq.tflite",
    "pruned_qat_cnn_fq.tflite",
    "clustered_qat_cnn_int8.tflite",
    "mobilenet_v2_035_96_int8.tflite",
    "qat_mobilenet_v2_035_96_fq.tflite",
    "mobilenet_v3_small_int8.tflite",
    "preact_resnet_int8.tflite",
    "cpu_ops_int8.tflite",
]
ONNX_FIXTURES = ["mbv2_qat_qdq.onnx", "mbv2_ort_qdq.onnx", "mbv2_ort_qdq_preprocessed.onnx"]


def compile_cli(tmp_path: Path, model: str, *extra: str, capsys: Any) -> tuple[int, dict[str, Any], str]:
    code = main(["compile", str(MODELS / model), "--target", "ethos-u55-128", "-o", str(tmp_path), "--json", *extra])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else {}), out.err


@pytest.mark.parametrize("name", TFLITE_FIXTURES + ONNX_FIXTURES)
def test_predicted_placement_equals_velas(name: str) -> None:
    for target in ("ethos-u55-128", "ethos-u65-256", "ethos-u85-256"):
        result = compile_ethos_u(load_model(MODELS / name), parse_target(target), VelaConfig(target))
        assert result.disagreements == [], (target, result.disagreements)


@pytest.mark.parametrize("name", [n for n in TFLITE_FIXTURES if "_fq" not in n])
def test_never_slower_than_feeding_the_file_to_vela(name: str) -> None:
    config = VelaConfig("ethos-u55-128")
    direct = compile_vela((MODELS / name).read_bytes(), config)
    ours = compile_ethos_u(load_model(MODELS / name), parse_target("ethos-u55-128"), config).vela
    assert ours.total_cycles <= direct.total_cycles
    assert len(ours.cpu_ops) == len(direct.cpu_ops)


def test_pre_activation_batch_norms_become_depthwise_convs_and_run_faster() -> None:
    config = VelaConfig("ethos-u55-128")
    direct = compile_vela((MODELS / "preact_resnet_int8.tflite").read_bytes(), config)
    result = compile_ethos_u(load_model(MODELS / "preact_resnet_int8.tflite"), parse_target("ethos-u55-128"), config)
    assert result.pipeline.passes[1].rewrites == {"affine-to-depthwise": 3}  # after constant-fold
    assert (direct.total_cycles, result.vela.total_cycles) == (312041, 217001)


def test_qat_export_compiles_to_an_all_npu_binary(tmp_path: Path, capsys: Any) -> None:
    src = MODELS / "qat_mobilenet_v2_035_96_fq.tflite"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    code, report, _ = compile_cli(tmp_path, src.name, capsys=capsys)
    assert code == 0
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest
    assert report["ops"] | {"cpu_ops": None} == {
        "total": 65,
        "npu": 65,
        "cpu": 0,
        "cpu_ops": None,
        "npu_partitions": 1,
        "predicted_npu_regions": 1,
        "placement_disagreements": [],
    }
    assert [p["name"] for p in report["passes"]["passes"]] == [
        "constant-fold",
        "fold-batch-norm",
        "fuse-activations",
        "fold-fake-quant",
        "encode-clusters",
        "cleanup",
    ]
    assert report["passes"]["passes"][3]["changed"] is True  # fold-fake-quant, after constant-fold
    assert report["performance"]["total_cycles"] == 818554
    assert report["memory"]["encoded_weight_bytes"] <= 447504  # what the pipeline without encode-clusters gives
    assert json.loads((tmp_path / "report.json").read_text()) == report
    binary = tmp_path / "qat_mobilenet_v2_035_96_fq_vela.tflite"
    written = ["qat_mobilenet_v2_035_96_fq_vela.tflite", "report.html", "report.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == written
    ops = load_model(binary).main.ops
    assert [op.type for op in ops] == ["CUSTOM"] and ops[0].custom_code == "ethos-u"


def test_cpu_ops_are_reported_with_their_reasons(tmp_path: Path, capsys: Any) -> None:
    code, report, _ = compile_cli(tmp_path, "cpu_ops_int8.tflite", capsys=capsys)
    assert code == 0
    ops = report["ops"]
    assert (ops["total"], ops["npu"], ops["cpu"], ops["npu_partitions"], ops["predicted_npu_regions"]) == (
        7,
        5,
        2,
        3,
        3,
    )
    assert [(row["index"], row["op"], row["reasons"]) for row in ops["cpu_ops"]] == [
        (1, "L2_NORMALIZATION", ["L2_NORMALIZATION is not an operator Vela runs on Ethos-U55"]),
        (3, "GATHER", ["GATHER is not an operator Vela runs on Ethos-U55"]),
    ]
    assert len(report["vela"]["messages"]) == 2 and all("Unsupported opType" in m for m in report["vela"]["messages"])
    assert [(row["index"], row["op"]) for row in report["top_layers"]] == [
        (2, "CONV_2D"), (0, "CONV_2D"), (4, "CONV_2D"), (5, "MEAN"), (6, "FULLY_CONNECTED")
    ]  # fmt: skip
    assert sum(row["cycles"] for row in report["top_layers"]) == report["performance"]["total_cycles"]


def test_terminal_report(tmp_path: Path, capsys: Any) -> None:
    code = main(["compile", str(MODELS / "cpu_ops_int8.tflite"), "--target", "ethos-u55-128", "-o", str(tmp_path)])
    text = capsys.readouterr().out
    assert code == 0
    assert "ethos-u55-128 (Ethos_U55_High_End_Embedded, Shared_Sram, 500 MHz, optimise Performance)" in text
    assert "TFLite ops: 7, on the NPU 5, on the CPU 2; NPU partitions: 3" in text
    assert "L2_NORMALIZATION is not an operator Vela runs on Ethos-U55" in text
    assert "CPU time is not estimated" in text
    assert "Per layer (7 TFLite ops; --per-layer-csv writes them all)" in text


FLOAT_REFUSAL = (
    "npupass: error: the model's activations are float with no quantization information, so Vela would run none "
    "of its 19 ops on the NPU (the Ethos-U NPU computes in int8/int16 and Vela does not quantize); export it with "
    "quantization-aware training (FAKE_QUANT or QUANTIZE/DEQUANTIZE pairs) or convert it to full int8 with a "
    "representative dataset, and compile that\n"
)


@pytest.mark.parametrize("passes", [[], ["--passes", "fold-batch-norm"]])
def test_float_model_is_refused_with_what_to_do(tmp_path: Path, capsys: Any, passes: list[str]) -> None:
    code, _, err = compile_cli(tmp_path / "out", "cnn_float.tflite", *passes, capsys=capsys)
    assert (code, err) == (2, FLOAT_REFUSAL)
    assert not (tmp_path / "out").exists()


def test_a_dynamic_range_model_counts_as_float() -> None:
    from npupass.backends.ethos_u.compile import FloatModelError, refuse_float
    from npupass.ir.types import DType, Quantization

    model = load_model(MODELS / "cnn_float.tflite")
    weights = next(t for t in model.main.tensors if t.is_constant and t.dtype == DType.FLOAT32)
    weights.dtype, weights.quant = DType.INT8, Quantization([0.1], [0])  # int8 weights, float activations
    with pytest.raises(FloatModelError):
        refuse_float(model)


def test_outputs_are_written_together_or_not_at_all(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "report.json").mkdir()
    code, _, err = compile_cli(tmp_path, "cnn_int8.tflite", capsys=capsys)
    assert (code, err) == (2, f"npupass: error: {tmp_path / 'report.json'}: is a directory\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, _, err = compile_cli(blocker / "sub", "cnn_int8.tflite", capsys=capsys)
    assert code == 2 and err.startswith(f"npupass: error: {blocker / 'sub'}: cannot create the directory: ")
    assert err.count("\n") == 1


def test_a_malformed_vela_ini_is_one_line(tmp_path: Path, capsys: Any) -> None:
    ini = tmp_path / "bad.ini"
    ini.write_bytes(b"\xff\xfe not an ini [")
    code, _, err = compile_cli(
        tmp_path / "out", "cnn_int8.tflite", "--config", str(ini), "--system-config", "X", "--memory-mode", "Y",
        capsys=capsys,
    )  # fmt: skip
    assert code == 2 and err.startswith("npupass: error: Vela configuration: ") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_system_config_and_memory_mode(tmp_path: Path, capsys: Any) -> None:
    code, report, _ = compile_cli(
        tmp_path, "cnn_int8.tflite", "--system-config", "Ethos_U55_Deep_Embedded", "--memory-mode", "Sram_Only",
        capsys=capsys,
    )  # fmt: skip
    assert code == 0
    assert (report["vela"]["system_config"], report["vela"]["memory_mode"]) == ("Ethos_U55_Deep_Embedded", "Sram_Only")
    assert report["vela"]["core_clock_hz"] == 200e6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--system-config", "Nope"],
            "npupass: error: Vela configuration: Incorrect argument to --system-config=Nope: Section "
            "System_Config.Nope not found in "
            "Vela config file\n",
        ),
        (["--config", "/nonexistent.ini"], "npupass: error: /nonexistent.ini: no such Vela configuration file\n"),
        (["--config", "/tmp"], "npupass: error: /tmp: is not a file\n"),
    ],
)
def test_bad_vela_options_fail_in_one_line_and_write_nothing(
    tmp_path: Path, capsys: Any, args: list[str], message: str
) -> None:
    code, _, err = compile_cli(tmp_path / "out", "cnn_int8.tflite", *args, capsys=capsys)
    assert (code, err) == (2, message)
    assert not (tmp_path / "out").exists()


def test_unknown_target(tmp_path: Path, capsys: Any) -> None:
    assert main(["compile", str(MODELS / "cnn_int8.tflite"), "--target", "ethos-u55-512"]) == 2
    assert capsys.readouterr().err == (
        "npupass: error: unknown target 'ethos-u55-512': Ethos-U55 comes as ethos-u55-32, ethos-u55-64, "
        "ethos-u55-128, ethos-u55-256\n"
    )


def test_a_vela_crash_is_an_error_not_the_end_of_npupass() -> None:
    data = (MODELS / "cnn_int8.tflite").read_bytes()
    with pytest.raises(VelaError) as info:
        compile_vela(data[: len(data) // 2], VelaConfig("ethos-u55-128"))
    assert str(info.value) == (
        "Vela crashed (signal SIGSEGV) compiling the model: Failed to load TfLite model. "
        "Buffer contents inconsistent with generated schema."
    )


def test_a_vela_crash_keeps_the_childs_faulthandler_quiet() -> None:
    """Under a faulthandler (pytest enables one), the crashed child dumps no stacks into our stderr."""
    import subprocess
    import sys

    script = (  # as pytest does: the handler writes to a duplicate of stderr, which the child keeps
        "import faulthandler, os\n"
        "faulthandler.enable(file=os.fdopen(os.dup(2), 'w'))\n"
        "from pathlib import Path\n"
        "from npupass.backends.ethos_u.vela import VelaConfig, VelaError, compile_vela\n"
        f"data = Path({str(MODELS / 'cnn_int8.tflite')!r}).read_bytes()\n"
        "try:\n"
        "    compile_vela(data[: len(data) // 2], VelaConfig('ethos-u55-128'))\n"
        "except VelaError as exc:\n"
        "    print(exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.stdout.startswith("Vela crashed (signal SIGSEGV)")
    assert "Fatal Python error" not in proc.stderr and "Segmentation fault" not in proc.stderr
