"""The Cortex-M target: TFLM's host interpreter against LiteRT, the arena TFLM reports, ops TFLM cannot
run, the C firmware sources, LUT compression verified in TFLM, and TFLM's side of a Vela model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from npupass.backends.base import parse_target
from npupass.backends.cortex_m.c_source import emit_c
from npupass.backends.cortex_m.lut import compress_lut
from npupass.cli import main
from npupass.frontends import load_model
from npupass.verify.litert import LiteRTModel, make_inputs
from npupass.verify.tflm import TflmUnavailableError, check_ops, require_tflm, run_tflm
from npupass.verify.tflm_arena import check_vela_model, plan_arena_head

MODELS = Path(__file__).parent / "models"


def compile_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, *extra: str) -> dict:  # type: ignore[type-arg]
    assert main(["compile", str(MODELS / name), "--target", "cortex-m", "-o", str(tmp_path), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def seeded(data: bytes, samples: int = 2) -> list[list[np.ndarray]]:
    ref = LiteRTModel(data)
    return [make_inputs(ref.inputs, s) for s in range(samples)]


def test_aliases_are_one_target() -> None:
    assert parse_target("cortex-m55") == parse_target("Cortex-M7") == parse_target("cortex-m")
    assert parse_target("cortex-m").backend == "cortex-m"


@pytest.mark.parametrize(
    "name",
    [
        "qat_mobilenet_v2_035_96_fq.tflite",
        "cpu_ops_int8.tflite",
        "qat_cnn_int8.tflite",
        "qat_cnn_int8_floatio.tflite",
        "mbv2_qat_qdq.onnx",
    ],
)
def test_compile_runs_in_tflm_within_one_step_and_reports_its_arena(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    report = compile_json(tmp_path, capsys, name)
    written = tmp_path / f"{Path(name).stem}_cortex_m.tflite"
    assert report["flash_bytes"] == written.stat().st_size
    again = run_tflm(written.read_bytes())  # the recording allocator on the written file, independently
    assert again.arena is not None and report["arena"] == {
        "total": again.arena.total,
        "head": again.arena.head,
        "tail": again.arena.tail,
    }
    assert report["arena"]["head"] + report["arena"]["tail"] == report["arena"]["total"]
    agreement = report["tflm_vs_litert"]
    assert agreement["ok"]
    if not agreement["bit_exact"]:  # every op that differs alone differs by one step at most
        assert report["op_differences"] and all(d["max_steps"] == 1 for d in report["op_differences"])
        assert {d["op"] for d in report["op_differences"]} <= {"CONV_2D", "MEAN"}
    # one step per op; the PyTorch QDQ export's steps add up to 2 at its output
    assert all((o["max_steps"] or 0) <= (2 if name.endswith(".onnx") else 1) for o in agreement["outputs"])
    assert json.loads((tmp_path / "report.json").read_text())["arena"] == report["arena"]


def test_an_op_tflm_lacks_fails_in_one_line_unless_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = MODELS / "sparse_fc_int8.tflite"
    LiteRTModel(model.read_bytes())  # LiteRT has DENSIFY
    assert main(["compile", str(model), "--target", "cortex-m", "-o", str(tmp_path / "a")]) == 2
    assert capsys.readouterr().err == (
        "npupass: error: TFLM cannot run 1 op(s) of the model: DENSIFY (op 0): TFLM has no kernel for this op "
        "(--allow-unsupported writes it anyway)\n"
    )
    assert not (tmp_path / "a").exists()
    report = compile_json(tmp_path / "b", capsys, "sparse_fc_int8.tflite", "--allow-unsupported")
    assert report["unsupported_ops"] == [{"op": "DENSIFY", "index": 0, "reason": "TFLM has no kernel for this op"}]
    assert report["arena"] is None and report["tflm_vs_litert"] is None


def test_a_tflm_crash_is_contained_and_the_op_named() -> None:
    path = MODELS / "mobilenet_v2_035_96_int8.tflite"  # SOFTMAX input scale 7.8e-9: TFLM aborts preparing it
    run = run_tflm(path.read_bytes())
    assert run.stage == "crash" and run.error == "TFLM crashed (SIGABRT)"
    model = load_model(path)
    softmax = [op for op in model.main.ops if op.type == "SOFTMAX"]
    problems = check_ops(model, softmax)
    assert [(p.op, p.index) for p in problems] == [("SOFTMAX", 64)]
    assert problems[0].reason.startswith("TFLM crashed (SIGABRT): input scale 7.84e-09 x beta 1 x 2^26 = 0.526 is not")


def test_float_model_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(MODELS / "cnn_float.tflite"), "--target", "cortex-m", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("npupass: error: the model computes in float") and "convert it to full int8" in err
    assert err.count("\n") == 1


def test_arena_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = compile_json(tmp_path / "a", capsys, "cpu_ops_int8.tflite")
    needed = report["arena"]["total"]
    limit = needed - 16
    args = ["compile", str(MODELS / "cpu_ops_int8.tflite"), "--target", "cortex-m", "-o", str(tmp_path / "b")]
    assert main([*args, "--arena-limit", str(limit)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"npupass: error: the tensor arena needs {needed:,} bytes, limit {limit:,} (TFLM: ")
    exact = compile_json(tmp_path / "c", capsys, "cpu_ops_int8.tflite", "--arena-limit", str(needed))
    assert exact["arena_limit"] == {"limit": needed, "fits": True}


def _compile_c(tmp_path: Path, compiler: str, flags: list[str]) -> None:
    model = (MODELS / "qat_cnn_int8.tflite").read_bytes()
    files = emit_c(model, "qat_cnn", 15136, ".npupass_model")
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    obj = tmp_path / "qat_cnn.o"
    subprocess.run(
        [compiler, "-c", "-Wall", "-Werror", *flags, str(tmp_path / "qat_cnn.c"), "-o", str(obj)], check=True
    )
    objcopy = "arm-none-eabi-objcopy" if compiler.startswith("arm") else "objcopy"
    raw = tmp_path / "array.bin"
    subprocess.run([objcopy, "-O", "binary", "--only-section=.npupass_model", str(obj), str(raw)], check=True)
    assert raw.read_bytes() == model
    assert "#define QAT_CNN_ARENA_SIZE 15136u" in files["qat_cnn.h"].decode()


def test_emitted_c_compiles_and_holds_the_model_bytes(tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    _compile_c(tmp_path, "gcc", [])


def test_emitted_c_compiles_for_cortex_m(tmp_path: Path) -> None:
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed (Debian: gcc-arm-none-eabi)")
    _compile_c(tmp_path, "arm-none-eabi-gcc", ["-mcpu=cortex-m55", "-mthumb"])


def test_compile_emits_c_in_the_named_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = compile_json(tmp_path, capsys, "qat_cnn_int8.tflite", "--emit", "c", "--c-section", ".model_flash")
    source = (tmp_path / "qat_cnn_int8_cortex_m.c").read_text()
    assert 'aligned(16), section(".model_flash")' in source
    assert f"qat_cnn_int8_cortex_m_len = {report['flash_bytes']}u;" in source
    header = (tmp_path / "qat_cnn_int8_cortex_m.h").read_text()
    assert f"#define QAT_CNN_INT8_CORTEX_M_ARENA_SIZE {report['arena']['total']}u" in header
    assert main(["compile", str(MODELS / "qat_cnn_int8.tflite"), "--target", "cortex-m", "--emit", "c",
                 "--c-section", "bad name", "-o", str(tmp_path / "x")]) == 2  # fmt: skip
    assert "is not a section name" in capsys.readouterr().err


def test_tflm_tool_per_tensor_lut_on_per_channel_weights_decodes_wrongly() -> None:
    """Why TFLM's own tool changed outputs: its decoder takes per-channel tables from the tensor's
    quantization, so a per-tensor table on a per-channel-quantized weight is read as one table per channel."""
    from tflite_micro.tensorflow.lite.micro import compression
    from tflite_micro.tensorflow.lite.micro.compression import model_editor, spec

    data = (MODELS / "clustered_qat_cnn_int8.tflite").read_bytes()
    conv = model_editor.read(data).subgraphs[0].tensors[7]  # CONV_2D weight [8,3,3,3], 8 scales on axis 0
    assert np.size(conv.quantization.scales) == 8
    lut = spec.LookUpTableCompression
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        per_tensor = bytes(compression.compress(data, [spec.Tensor(0, 7, [lut(5, spec.PerTensor())])]))
        per_channel = bytes(compression.compress(data, [spec.Tensor(0, 7, [lut(4, spec.PerChannel(0))])]))
    decoded = {}
    for label, model in (("tensor", per_tensor), ("channel", per_channel)):
        out = [
            op.outputs[0].index
            for op in model_editor.read(model).subgraphs[0].operators
            if op.opcode_name == "TFLM_DECODE"
        ]
        run = run_tflm(model, seeded(data, 1), read_tensors=out)
        decoded[label] = run.tensors[out[0]].reshape(conv.array.shape)
    assert np.array_equal(decoded["channel"], conv.array)
    wrong = decoded["tensor"] != conv.array
    assert not wrong[0].any() and wrong[1:].any()  # channel 0 reads the one table right, the others do not


def test_lut_compression_smaller_and_bit_identical_in_tflm() -> None:
    data = (MODELS / "clustered_mbv2s_int8.tflite").read_bytes()
    inputs = seeded(data)
    out, report = compress_lut(data, inputs)
    assert len(out) < len(data) and report["bytes_after"] == len(out) and report["compressed_tensors"] >= 1
    before, after = run_tflm(data, inputs), run_tflm(out, inputs)
    assert after.ok and all(
        x.tobytes() == y.tobytes()
        for a, b in zip(before.outputs, after.outputs, strict=True)
        for x, y in zip(a, b, strict=True)
    )
    for t in report["tensors"]:
        assert t["compressed"] != bool(t["reason"])
        if t["compressed"]:
            assert t["mode"] == "per-channel(0)" and 1 <= t["bits"] <= 4  # 16 clusters: at most 4-bit indices


def test_compile_compress_lut(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = compile_json(tmp_path, capsys, "clustered_mbv2s_int8.tflite", "--compress", "lut")
    c = report["compression"]
    assert c["verified"] == {"samples": 2, "bit_exact": True} or c["verified"]["bit_exact"]
    assert report["flash_bytes"] == c["bytes_after"] < c["bytes_before"]


def test_vela_model_cpu_ops_checked_in_tflm_and_arena_planned() -> None:
    from npupass.backends.ethos_u.vela import VelaConfig, compile_vela

    vela = compile_vela((MODELS / "cpu_ops_int8.tflite").read_bytes(), VelaConfig()).model
    result = check_vela_model(vela)
    assert sorted(result["cpu_ops"]) == ["GATHER", "L2_NORMALIZATION"] and result["unsupported_ops"] == []
    arena = result["arena"]
    assert arena["scratch_bytes"] > 0 and arena["head_bytes"] >= arena["scratch_bytes"]


def test_vela_model_cpu_op_tflm_lacks_is_named() -> None:
    from npupass.backends.ethos_u.vela import VelaConfig, compile_vela

    vela = compile_vela((MODELS / "sparse_fc_int8.tflite").read_bytes(), VelaConfig()).model
    result = check_vela_model(vela)
    assert result["cpu_ops"] == ["DENSIFY"]
    assert result["unsupported_ops"] == [{"op": "DENSIFY", "index": 0, "reason": "TFLM has no kernel for this op"}]


@pytest.mark.parametrize(
    "name",
    [
        "qat_mobilenet_v2_035_96_int8.tflite",
        "cpu_ops_int8.tflite",
        "cnn_int8.tflite",
        "preact_resnet_int8.tflite",
        "pruned_mbv2s_int8.tflite",
        "mbv2_ethos_n_int8.tflite",
    ],
)
def test_arena_plan_equals_tflm_head(name: str) -> None:
    run = run_tflm((MODELS / name).read_bytes())
    assert run.arena is not None and plan_arena_head(load_model(MODELS / name).main) == run.arena.head


def test_missing_tflm_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tflite_micro.python.tflite_micro", None)
    with pytest.raises(TflmUnavailableError, match=r"pip install tflite-micro"):
        require_tflm()


def test_conv_difference_is_litert_optimized_kernel() -> None:
    """A CONV_2D that differs alone between TFLM and LiteRT's builtin (optimized) kernels matches LiteRT's
    reference kernel bit for bit: the step comes from LiteRT's optimized conv, not from TFLM."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from npupass.verify.tflm import op_model

    model = load_model(MODELS / "qat_mobilenet_v2_035_96_int8.tflite")
    data = op_model(model, model.main.ops[2])  # the first 1x1 CONV_2D
    inputs = seeded(data, 3)
    tflm = run_tflm(data, inputs)
    differing = {}
    for label, resolver in (
        ("optimized", OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES),
        ("reference", OpResolverType.BUILTIN_REF),
    ):
        interp = Interpreter(model_content=data, experimental_op_resolver_type=resolver)
        interp.allocate_tensors()
        count = 0
        for x, got in zip(inputs, tflm.outputs, strict=True):
            interp.set_tensor(interp.get_input_details()[0]["index"], x[0])
            interp.invoke()
            y = interp.get_tensor(interp.get_output_details()[0]["index"])
            steps = np.abs(y.astype(int) - got[0].reshape(y.shape).astype(int))
            assert steps.max() <= 1
            count += int(np.count_nonzero(steps))
        differing[label] = count
    assert differing["optimized"] > 0 and differing["reference"] == 0


def test_ethos_u_reports_tflm_and_emits_c_of_the_vela_model(tmp_path: Path) -> None:
    import npupass

    result = npupass.compile(MODELS / "cpu_ops_int8.tflite", "ethos-u55-128", options={"emit": "c"})
    tflm = result.report.to_dict()["tflm"]
    assert tflm["checked"] and tflm["cpu_ops"] == ["L2_NORMALIZATION", "GATHER"] and tflm["unsupported_ops"] == []
    assert tflm["arena"]["head_bytes"] >= tflm["arena"]["scratch_bytes"] > 0
    vela = result.artifacts["cpu_ops_int8_vela.tflite"]
    header = result.artifacts["cpu_ops_int8_vela.h"].decode()
    assert f"#define CPU_OPS_INT8_VELA_ARENA_SIZE {tflm['arena']['head_bytes']}u" in header
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    result.write(tmp_path)
    obj, raw = tmp_path / "m.o", tmp_path / "m.bin"
    subprocess.run(["gcc", "-c", "-Wall", "-Werror", str(tmp_path / "cpu_ops_int8_vela.c"), "-o", str(obj)], check=True)
    subprocess.run(["objcopy", "-O", "binary", "--only-section=.rodata", str(obj), str(raw)], check=True)
    assert raw.read_bytes()[: len(vela)] == vela
