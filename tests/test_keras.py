"""Keras and SavedModel in: tfmot QAT / PCQAT and float Keras models, compiled from the files users save.

The models are made once per session by scripts/make_keras_fixtures.py (tf-keras + tfmot, seeded, a few
training steps), in a child process so that TensorFlow stays out of this one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rewrites import run

from npupass.backends.base import parse_target
from npupass.backends.ethos_u.compile import compile_ethos_u
from npupass.backends.ethos_u.vela import VelaConfig
from npupass.backends.tflite import serialize_tflite
from npupass.cli import main
from npupass.frontends import load_model
from npupass.frontends.keras import keras_format, keras_version
from npupass.frontends.tflite import read_tflite
from npupass.ir.graph import Model
from npupass.ir.types import DType
from npupass.passes import PassManager
from npupass.passes.preservation import PreservationReport

ROOT = Path(__file__).resolve().parents[1]
TARGET = "ethos-u55-128"
SEEDS = tuple(range(8))
INSTALL_LINE = 'install them with: pip install "npupass[tensorflow]"'


@pytest.fixture(scope="session")
def keras_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("NPUPASS_KERAS_FIXTURES"):  # a directory the script already made (while iterating)
        return Path(os.environ["NPUPASS_KERAS_FIXTURES"])
    out = tmp_path_factory.mktemp("keras")
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_keras_fixtures.py"), str(out)],
        check=True,
        capture_output=True,
    )
    return out


def _counts(model: Model) -> Counter[str]:
    return Counter(op.type for op in model.main.iter_ops())


def _compile(model: Model) -> Any:
    return compile_ethos_u(model, parse_target(TARGET), VelaConfig(TARGET))


@pytest.mark.parametrize("name", ["qat_cnn", "qat_cnn.keras", "qat_cnn.h5"])
def test_qat_model_compiles_to_the_converters_own_int8_model(keras_models: Path, name: str) -> None:
    """A SavedModel, .keras or .h5 QAT model: 0 CPU ops, and bit-exact to the converter's full-int8 model."""
    model = load_model(keras_models / name, integer=True)
    conversion = model.conversion
    assert conversion is not None and conversion["route"] == "qat"
    assert conversion["flags"]["optimizations"] == [] and not conversion["flags"]["representative_dataset"]
    assert conversion["inputs"] == {"image": [1, 32, 32, 3]}
    result = _compile(model)
    assert result.vela.cpu_ops == set()
    fold = next(p for p in result.pipeline.passes if p.name == "fold-fake-quant")
    assert fold.rewrites["weight-fake-quant"] == 5  # the trained weight scales of the 5 weighted ops, folded
    ours = result.model  # after fold-fake-quant: what went to Vela
    reference = read_tflite((keras_models / "qat_cnn_reference_int8.tflite").read_bytes())
    assert _counts(ours) == _counts(reference)
    assert all(t.dtype in (DType.INT8, DType.INT32) for t in ours.main.tensors)
    for theirs, mine in zip(run(reference, SEEDS), run(serialize_tflite(ours), SEEDS), strict=True):
        assert theirs.dtype == mine.dtype == np.int8
        assert np.array_equal(theirs, mine)


def test_unknown_batch_size_that_leaves_shape_arithmetic_is_fixed_to_1(keras_models: Path) -> None:
    """Converted as saved, the Reshape layer's tf.shape(x)[0] stays a SHAPE op; npupass re-exports at batch 1."""
    model = load_model(keras_models / "qat_reshape", integer=True)
    assert model.conversion is not None and model.conversion["reexported_at_batch_1"] is True
    assert "SHAPE" not in _counts(model)
    result = _compile(model)
    assert result.vela.cpu_ops == set()
    assert _counts(result.model) == Counter({"CONV_2D": 1, "RESHAPE": 1, "FULLY_CONNECTED": 1})


def test_compile_cli_reports_the_conversion(keras_models: Path, tmp_path: Path, capsys: Any) -> None:
    source = keras_models / "qat_cnn"
    code = main(["compile", str(source), "--target", TARGET, "-o", str(tmp_path), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    report = json.loads(out.out)
    assert report["ops"]["cpu"] == 0 and report["ops"]["npu"] == report["ops"]["total"] > 0
    conversion = report["conversion"]
    assert conversion["route"] == "qat" and conversion["from"] == "savedmodel"
    assert conversion["reexported_at_batch_1"] is False  # only the batch size was unknown: converted as saved
    assert conversion["converter"]["tensorflow"].startswith("2.")
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert (tmp_path / "qat_cnn_vela.tflite").stat().st_size > 0


def test_pcqat_model_keeps_its_zeros_and_clusters(keras_models: Path) -> None:
    model = load_model(keras_models / "pcqat_cnn.keras", integer=True)
    assert model.conversion is not None and model.conversion["route"] == "qat"
    report = PreservationReport()
    names = ["fold-batch-norm", "fuse-activations", "fold-fake-quant"]
    PassManager(names, options={"fold-fake-quant": {"io": "int8"}}).run(model, verify=report)
    assert report.problems == []
    first, final = report.snapshots[0], report.snapshots[-1]
    assert len(first) == len(final) == 5 and {s.dtype for s in final.values()} == {"INT8"}
    # by position: fold-fake-quant renames the output of the last op (int8 I/O), and so its weight's label
    for name, before, after in zip(final, first.values(), final.values(), strict=True):
        assert after.zeros == before.zeros
        if not name.startswith("DEPTHWISE_CONV_2D"):  # tfmot neither prunes nor clusters depthwise kernels
            assert after.zeros >= 0.5  # pruned to 50%
            assert after.unique_per_channel_max <= 8  # 8 clusters, zero among them
    compiled = _compile(model)  # the passes already ran: Vela gets the int8 model
    assert compiled.vela.cpu_ops == set() and len(compiled.ops) == 8


def test_float_model_with_calibration_compiles(keras_models: Path, tmp_path: Path, capsys: Any) -> None:
    source, data = keras_models / "float_cnn.keras", keras_models / "calibration.npy"
    code = main(["compile", str(source), "--target", TARGET, "-o", str(tmp_path), "--calibration", str(data)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "route ptq, calibrated on 8 samples of calibration.npy" in out.out  # the route, in the printed report
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ops"]["cpu"] == 0
    conversion = report["conversion"]
    assert conversion["route"] == "ptq"
    assert conversion["calibration"]["samples"] == 8 and conversion["calibration"]["file"] == "calibration.npy"
    flags = conversion["flags"]
    assert flags["optimizations"] == ["DEFAULT"] and flags["representative_dataset"]
    assert flags["supported_ops"] == ["TFLITE_BUILTINS_INT8"]
    assert (flags["inference_input_type"], flags["inference_output_type"]) == ("int8", "int8")


def test_float_model_without_calibration_is_refused(keras_models: Path, tmp_path: Path, capsys: Any) -> None:
    source = keras_models / "float_cnn.keras"
    code = main(["compile", str(source), "--target", TARGET, "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"npupass: error: {source}: a float model (no tfmot fake quantization) and the NPU computes in int8: "
        "give --calibration data.npy|.npz (N representative inputs) for full-integer post-training quantization, "
        "or train it with tfmot quantization-aware training\n"
    )
    assert not (tmp_path / "out").exists()


def test_conversion_is_deterministic(keras_models: Path) -> None:
    data = keras_models / "calibration.npy"
    first = load_model(keras_models / "float_cnn.keras", calibration=data)
    second = load_model(keras_models / "float_cnn.keras", calibration=data)
    assert serialize_tflite(first) == serialize_tflite(second)
    assert {k: v for k, v in first.conversion.items() if k != "seconds"} == {  # type: ignore[union-attr]
        k: v
        for k, v in second.conversion.items()  # type: ignore[union-attr]
        if k != "seconds"
    }


def test_without_tensorflow_one_line_and_exit_2(keras_models: Path) -> None:
    """TensorFlow hidden from a fresh interpreter: the error names exactly what to install."""
    source = keras_models / "qat_cnn.h5"
    script = (
        "import sys; sys.modules['tensorflow'] = None; from npupass.cli import main; "
        f"sys.exit(main(['info', {str(source)!r}]))"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"npupass: error: {source}: reading a HDF5 (.h5) Keras model needs TensorFlow, tf-keras and "
        f"tensorflow-model-optimization (tensorflow not installed); {INSTALL_LINE}\n"
    )
    assert "tensorflow" not in proc.stdout


def test_formats_are_recognised_by_content(keras_models: Path, tmp_path: Path) -> None:
    assert keras_format(keras_models / "qat_cnn") == "savedmodel"
    assert keras_format(keras_models / "qat_cnn.h5") == "h5"
    renamed = tmp_path / "model.bin"
    renamed.write_bytes((keras_models / "qat_cnn.keras").read_bytes())
    assert keras_format(renamed) == "keras"
    assert keras_format(tmp_path) is None
    assert keras_format(keras_models / "qat_cnn_reference_int8.tflite") is None


def test_calibration_for_a_tflite_model_is_refused(keras_models: Path, capsys: Any) -> None:
    source = keras_models / "qat_cnn_reference_int8.tflite"
    code = main(["convert", str(source), "-o", str(source.with_suffix(".out.tflite")), "--calibration", "x.npy"])
    assert code == 2
    assert capsys.readouterr().err == (
        f"npupass: error: {source}: --calibration applies to Keras and SavedModel inputs, not to this model\n"
    )


def test_a_keras_3_file_is_refused_with_what_to_do(keras_models: Path, capsys: Any) -> None:
    source = keras_models / "keras3_float.keras"
    version = keras_version(source)
    assert version.startswith("3.")
    assert main(["info", str(source)]) == 2
    assert capsys.readouterr().err == (
        f"npupass: error: {source}: a Keras {version} (Keras 3) model; npupass reads tf-keras (Keras 2) files, as "
        "tensorflow-model-optimization makes them: export it as a SavedModel (model.export(DIR)) and give "
        "npupass that directory\n"
    )
