"""Keras and SavedModel in: a SavedModel directory, a `.keras` file or a `.h5` file into the IR.

TensorFlow's own TFLiteConverter does the conversion, with settings chosen by what the model holds:

- "qat": the graph has fake-quant ops (a tensorflow-model-optimization QAT model: QAT, PQAT, CQAT or
  PCQAT; Keras files are loaded under `tfmot.quantization.keras.quantize_scope`). It is converted keeping
  its fake quantization (no optimizations, no representative dataset, so nothing is re-calibrated);
  npupass's fold-fake-quant then folds it to int8, so the scales the user trained are the scales deployed.
- "ptq": a float model with calibration data: full-integer post-training quantization by the converter
  (int8 kernels only, int8 input and output).
- "float": a float model without calibration data: a float TFLite model (NPU targets refuse it).

TensorFlow runs in a child process: it is imported only on this path, it gets `TF_USE_LEGACY_KERAS=1`
(tfmot needs tf-keras) whatever the caller imported before, and its logs and crashes stay out of
npupass. The inputs get batch size 1 (a Keras batch dimension is unknown) so that no shape arithmetic
ends up in the model. The conversion is deterministic (op determinism on; the same input and
calibration file give the same bytes), and what was done is recorded in `Model.conversion`.

Run as `python -m npupass.frontends.keras REQUEST.json` it is that child.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from npupass.errors import ModelFormatError, NpupassError
from npupass.ir.graph import Model

INSTALL = 'pip install "npupass[tensorflow]"'
REQUIRED_MODULES = ("tensorflow", "tf_keras", "tensorflow_model_optimization")
FORMATS = {"savedmodel": "SavedModel", "keras": ".keras model", "h5": "HDF5 (.h5) Keras model"}
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
QAT_NOTE = (
    "fake quantization kept (no optimizations, no representative dataset); fold-fake-quant deploys the trained scales"
)
FAKE_QUANT_OPS = ("FakeQuantWithMinMaxVars", "FakeQuantWithMinMaxVarsPerChannel", "FakeQuantWithMinMaxArgs")


class FloatKerasModelError(NpupassError):
    """A float Keras/SavedModel model headed for an NPU without calibration data."""


def keras_format(path: Path) -> str | None:
    """ "savedmodel", "keras" or "h5" when `path` holds that (judged by content), else None."""
    if path.is_dir():
        return "savedmodel" if any((path / f).is_file() for f in ("saved_model.pb", "saved_model.pbtxt")) else None
    try:
        with open(path, "rb") as f:
            head = f.read(8)
        if head == HDF5_SIGNATURE:
            return "h5"
        if head[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(path) as z:  # Keras v3 format: config.json + weights in a zip
                return "keras" if "config.json" in z.namelist() else None
    except (OSError, zipfile.BadZipFile):
        return None
    return None


def keras_version(path: Path) -> str:
    """The Keras version that saved a .keras file ("" when its metadata does not say)."""
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("metadata.json"))
        return str(meta.get("keras_version", "")) if isinstance(meta, dict) else ""
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return ""


def missing_tensorflow() -> list[str]:
    """The modules of the `tensorflow` extra that cannot be imported (without importing them)."""
    missing = []
    for name in REQUIRED_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def load_keras(path: Path, fmt: str, calibration: str | os.PathLike[str] | None = None, integer: bool = False) -> Model:
    """Convert the Keras/SavedModel model at `path` with TensorFlow and read the result into the IR.

    `calibration`: a .npy/.npz of representative inputs, for a float model (full-int8 post-training
    quantization). `integer`: the caller needs an integer model (an NPU target), so a float model
    without calibration data is refused.
    """
    from npupass.frontends.tflite import read_tflite

    missing = missing_tensorflow()
    if missing:
        raise ModelFormatError(
            f"{path}: reading a {FORMATS[fmt]} needs TensorFlow, tf-keras and tensorflow-model-optimization "
            f"({', '.join(missing)} not installed); install them with: {INSTALL}"
        )
    if calibration is not None and not Path(calibration).is_file():
        raise NpupassError(f"{calibration}: no such calibration file")
    version = keras_version(path) if fmt == "keras" else ""
    if version.startswith("3"):
        raise ModelFormatError(
            f"{path}: a Keras {version} (Keras 3) model; npupass reads tf-keras (Keras 2) files, as "
            "tensorflow-model-optimization makes them: export it as a SavedModel (model.export(DIR)) and give "
            "npupass that directory"
        )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="npupass-keras-") as tmp:
        request: dict[str, Any] = {
            "path": str(path.resolve()),
            "format": fmt,
            "calibration": str(Path(calibration).resolve()) if calibration is not None else None,
            "integer": integer,
            "output": str(Path(tmp) / "model.tflite"),
            "result": str(Path(tmp) / "result.json"),
            "scratch": tmp,
        }
        request_file = Path(tmp) / "request.json"
        request_file.write_text(json.dumps(request), encoding="utf-8")
        proc = subprocess.run(
            [sys.executable, "-m", "npupass.frontends.keras", str(request_file)],
            env=_child_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
        )
        result_file = Path(request["result"])
        if not result_file.is_file():
            lines = [line for line in (proc.stderr or "").splitlines() if line.strip()]
            last = lines[-1].strip() if lines else "no output"
            raise ModelFormatError(f"{path}: TensorFlow's converter ended with exit code {proc.returncode}: {last}")
        result = json.loads(result_file.read_text(encoding="utf-8"))
        if "error" in result:
            kind = FloatKerasModelError if result.get("kind") == "float" else ModelFormatError
            raise kind(f"{path}: {result['error']}")
        model = read_tflite(Path(request["output"]).read_bytes())
    record = result["conversion"]
    record["seconds"] = round(time.perf_counter() - start, 3)
    record["summary"] = describe_conversion(record)  # what reports print, so no backend imports a frontend
    model.conversion = record
    return model


def describe_conversion(conversion: dict[str, Any]) -> str:
    """One line for reports: where the model came from and which route the converter took."""
    versions = ", ".join(f"{k} {v}" for k, v in conversion["converter"].items())
    source = FORMATS[conversion["from"]]
    line = f"converted from a {source} by TFLiteConverter ({versions}): route {conversion['route']}"
    calibration = conversion.get("calibration")
    if calibration and calibration.get("samples"):
        line += f", calibrated on {calibration['samples']} samples of {calibration['file']}"
    return f"{line} ({conversion['note']})"


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["TF_USE_LEGACY_KERAS"] = "1"  # tfmot works with tf-keras (Keras 2) only
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONHASHSEED"] = "0"
    package_root = str(Path(__file__).resolve().parents[2])  # the child imports this npupass
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


# --- the child: everything below runs with TensorFlow imported ------------------------------------------------


class _RefusalError(Exception):
    """A one-line reason the child gives back instead of a model."""

    def __init__(self, message: str, kind: str = "input") -> None:
        super().__init__(message)
        self.kind = kind


def _signature_function(tf: Any, loaded: Any) -> Any:
    """The SavedModel's serving signature as a tf.function with batch size 1."""
    signatures = dict(loaded.signatures)
    if "serving_default" in signatures:
        key = "serving_default"
    elif len(signatures) == 1:
        (key,) = signatures
    else:
        keys = ", ".join(signatures)
        raise _RefusalError(f"SavedModel has no 'serving_default' signature and several others ({keys})")
    signature = signatures[key]
    args, kwargs = signature.structured_input_signature
    if args:
        raise _RefusalError(f"SavedModel signature '{key}' takes positional inputs; npupass needs named inputs")
    names = list(kwargs)
    specs = [_batch_one(tf, kwargs[n], n) for n in names]

    @tf.function(input_signature=specs)
    def serve(*inputs: Any) -> Any:
        return signature(**dict(zip(names, inputs, strict=True)))

    return serve


def _batch_one(tf: Any, spec: Any, name: str) -> Any:
    dims = list(spec.shape)
    if dims and dims[0] is None:
        dims[0] = 1
    if any(d is None for d in dims):
        raise _RefusalError(f"input '{name}' has a dimension of unknown size {spec.shape}; npupass needs static shapes")
    return tf.TensorSpec(dims, spec.dtype, name=name)


def _load_keras_file(path: str, fmt: str) -> tuple[Any, dict[str, Any]]:
    """A tf-keras model from a .keras/.h5 file, loaded under tfmot's scopes (QAT, pruning, clustering)."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    if fmt == "keras":
        _align_saved_variables()
    info: dict[str, Any] = {}
    scopes = (
        tfmot.quantization.keras.quantize_scope(),
        tfmot.sparsity.keras.prune_scope(),
        tfmot.clustering.keras.cluster_scope(),
    )
    with contextlib.ExitStack() as stack:
        for scope in scopes:
            stack.enter_context(scope)
        model = tf_keras.models.load_model(path, compile=False)
    wrappers = {type(layer).__name__ for layer in _all_layers(model)}
    if any("PruneLowMagnitude" in w for w in wrappers):  # training wrappers: deploy the pruned weights
        model = tfmot.sparsity.keras.strip_pruning(model)
        info["stripped"] = ["pruning"]
    if any("ClusterWeights" in w for w in wrappers):
        model = tfmot.clustering.keras.strip_clustering(model)
        info.setdefault("stripped", []).append("clustering")
    # (PQAT/CQAT/PCQAT save their quantize configs as the default ones, so the scheme is not recoverable.)
    info["qat_layers"] = sum(hasattr(layer, "quantize_config") for layer in _all_layers(model))
    return model, info


def _align_saved_variables() -> None:
    """Let tf-keras load tfmot's QAT layers from a .keras file.

    tfmot 0.8.1 cannot load its own QAT models from .keras files (tensorflow/model-optimization#1123, open):
    its QuantizeWrapperV2 saves the inner layer's trainable weights a second time (its build adds them when the
    inner layer is already built, as under quantize_apply, but not on load), a PQAT/CQAT/PCQAT quantizer saves
    its pruning and clustering variables although its config is saved as the default one, and a QuantizeLayer
    is built twice on load (the first build's variables are never read). What inference reads comes last in
    creation order (the weights, the optimizer step, then the quantizer ranges), so each layer's own variables
    are matched, by shape, to the end of its saved list; anything left that does not fit stays an error.
    """
    import numpy as np
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import QuantizeLayer
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_wrapper import QuantizeWrapperV2

    def load(layer: Any, store: Any) -> None:
        saved = [store[str(i)] for i in range(len(store.keys()))]
        own = list(layer._trainable_weights) + list(layer._non_trainable_weights)
        if isinstance(layer, QuantizeLayer) and len(own) > len(saved):  # drop the first build's variables
            read = [*(getattr(layer, "quantizer_vars", None) or {}).values(), layer.optimizer_step]
            own = [v for v in own if any(v is r for r in read)]
        index = len(saved)
        pairs = []
        for variable in reversed(own):
            index -= 1
            while index >= 0 and tuple(np.shape(saved[index])) != tuple(variable.shape):
                index -= 1
            if index < 0:
                raise ValueError(f"layer '{layer.name}': its saved variables do not fit its {len(own)} variables")
            pairs.append((variable, saved[index]))
        for variable, value in pairs:
            variable.assign(value)

    QuantizeWrapperV2.load_own_variables = load
    QuantizeLayer.load_own_variables = load


def _all_layers(model: Any) -> list[Any]:
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):  # a nested model
            found += _all_layers(layer)
    return found


def _keras_function(tf: Any, model: Any) -> Any:
    names = list(getattr(model, "input_names", None) or [f"input_{i}" for i in range(len(model.inputs))])
    specs = [_batch_one(tf, tf.TensorSpec(t.shape, t.dtype), n) for t, n in zip(model.inputs, names, strict=True)]

    @tf.function(input_signature=specs)
    def serve(*inputs: Any) -> Any:
        return model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)

    return serve


def _fake_quant_ops(concrete: Any) -> int:
    graph_def = concrete.graph.as_graph_def()
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    return sum(n.op in FAKE_QUANT_OPS for n in nodes)


def _calibration_samples(np: Any, file: str, specs: list[Any]) -> tuple[list[list[Any]], dict[str, Any]]:
    """Representative inputs, one list per sample: a .npy for a one-input model, or a .npz by input name."""
    name = Path(file).name
    try:
        loaded = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise _RefusalError(f"calibration file {name} is not a .npy or .npz array file ({exc})") from None
    if isinstance(loaded, np.ndarray):
        if len(specs) != 1:
            raise _RefusalError(f"the model has {len(specs)} inputs: give an .npz with one array per input name")
        arrays = [loaded]
    else:
        files = list(loaded.files)
        if len(specs) == 1 and len(files) == 1:
            arrays = [loaded[files[0]]]
        else:
            missing = [s.name for s in specs if s.name not in files]
            if missing:
                raise _RefusalError(f"calibration file {name} has no array for input(s) {', '.join(missing)} ({files})")
            arrays = [loaded[s.name] for s in specs]
    counts = set()
    for array, spec in zip(arrays, specs, strict=True):
        sample = tuple(spec.shape[1:])
        if array.ndim != len(spec.shape) or tuple(array.shape[1:]) != sample or len(array) == 0:
            raise _RefusalError(
                f"calibration array of shape {list(array.shape)} does not fit input '{spec.name}' "
                f"(expected N x {'x'.join(map(str, sample))})"
            )
        if not np.issubdtype(array.dtype, np.number):
            raise _RefusalError(f"calibration array for input '{spec.name}' is not numeric ({array.dtype})")
        counts.add(len(array))
    if len(counts) != 1:
        raise _RefusalError(f"calibration arrays have different sample counts {sorted(counts)}")
    (count,) = counts
    samples = [
        [a[i : i + 1].astype(spec.dtype.as_numpy_dtype) for a, spec in zip(arrays, specs, strict=True)]
        for i in range(count)
    ]
    digest = hashlib.sha256(Path(file).read_bytes()).hexdigest()
    return samples, {"file": name, "samples": count, "sha256": digest}


def _flags(tf: Any, converter: Any) -> dict[str, Any]:
    """The converter settings that decide the result, read back from the converter."""
    return {
        "optimizations": [str(o.name) for o in converter.optimizations],
        "representative_dataset": converter.representative_dataset is not None,
        "supported_ops": sorted(str(o.name) for o in converter.target_spec.supported_ops),
        "inference_input_type": tf.as_dtype(converter.inference_input_type).name,
        "inference_output_type": tf.as_dtype(converter.inference_output_type).name,
        "experimental_new_converter": bool(converter.experimental_new_converter),
        "experimental_new_quantizer": bool(converter.experimental_new_quantizer),
    }


def _convert(request: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    import numpy as np
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    tf.config.experimental.enable_op_determinism()
    path, fmt = request["path"], request["format"]
    record: dict[str, Any] = {"from": fmt, "converter": {"tensorflow": tf.__version__}}
    if fmt == "savedmodel":
        direct = _convert_qat_saved_model(tf, path, record)
        if direct is not None:
            return direct, record
        try:
            loaded = tf.saved_model.load(path)
        except Exception as exc:
            raise _RefusalError(f"TensorFlow cannot load this SavedModel ({_first_line(exc)})") from None
        serve = _signature_function(tf, loaded)
        root = tf.Module()
        root.loaded = loaded
    else:
        import tensorflow_model_optimization as tfmot
        import tf_keras

        record["converter"] |= {"tf_keras": tf_keras.__version__, "tfmot": tfmot.__version__}
        try:
            model, info = _load_keras_file(path, fmt)
        except _RefusalError:
            raise
        except Exception as exc:
            raise _RefusalError(f"tf-keras cannot load this model ({_first_line(exc)})") from None
        record |= info
        serve = _keras_function(tf, model)
        root = tf.Module()
        root.model_variables = list(model.variables)
    concrete = serve.get_concrete_function()
    root.serve = serve
    fake_quant = _fake_quant_ops(concrete)
    record["fake_quant_ops"] = fake_quant
    specs = list(concrete.structured_input_signature[0])
    record["inputs"] = {s.name: [int(d) for d in s.shape] for s in specs}
    calibration = request["calibration"]
    if not fake_quant and calibration is None and request["integer"]:
        raise _RefusalError(
            "a float model (no tfmot fake quantization) and the NPU computes in int8: give --calibration "
            "data.npy|.npz (N representative inputs) for full-integer post-training quantization, or train it "
            "with tfmot quantization-aware training",
            kind="float",
        )
    # A SavedModel of our own with the batch-1 signature: the converter then sees exactly that function.
    saved = str(Path(request["scratch"]) / "batch1")
    tf.saved_model.save(root, saved, signatures={"serving_default": concrete})
    record["reexported_at_batch_1"] = True
    converter = tf.lite.TFLiteConverter.from_saved_model(saved)
    if fake_quant:
        record["route"] = "qat"
        record["note"] = QAT_NOTE
        if calibration is not None:
            record["calibration"] = {"file": Path(calibration).name, "used": False}
    elif calibration is not None:
        samples, record["calibration"] = _calibration_samples(np, calibration, specs)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: iter(samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        record["route"] = "ptq"
        record["note"] = "float model: full-integer post-training quantization by the converter"
    else:
        record["route"] = "float"
        record["note"] = "float model, converted as float (no calibration data)"
    record["flags"] = _flags(tf, converter)
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            data = bytes(converter.convert())
        except Exception as exc:
            raise _RefusalError(f"TensorFlow's converter failed ({_first_line(exc)})") from None
    return data, record


def _convert_qat_saved_model(tf: Any, path: str, record: dict[str, Any]) -> bytes | None:
    """A QAT SavedModel whose inputs are static but for the batch: converted as saved, with no re-export.

    Loading and re-exporting a SavedModel at batch size 1 costs as much as converting it (MobileNetV2 QAT);
    it is only needed when the unknown batch size leaves shape arithmetic (a SHAPE op) in the model. The
    signature and the fake-quant ops are read from saved_model.pb without loading the model. Returns None
    when the general path has to run.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    from npupass.frontends.tflite import read_tflite

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    except Exception:
        return None  # a .pbtxt, or a broken file: the general path loads it or names what is wrong
    if len(saved.meta_graphs) != 1 or "serving_default" not in saved.meta_graphs[0].signature_def:
        return None
    meta = saved.meta_graphs[0]
    graph = meta.graph_def
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    fake_quant = sum(n.op in FAKE_QUANT_OPS for n in nodes)
    inputs = meta.signature_def["serving_default"].inputs
    shapes = {name: [d.size for d in info.tensor_shape.dim] for name, info in inputs.items()}
    if not fake_quant or any(info.tensor_shape.unknown_rank for info in inputs.values()):
        return None
    if any(not dims or any(d < 0 for d in dims[1:]) for dims in shapes.values()):
        return None
    converter = tf.lite.TFLiteConverter.from_saved_model(path, signature_keys=["serving_default"])
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            data = bytes(converter.convert())
        except Exception:
            return None
    if any(op.type == "SHAPE" for g in read_tflite(data).subgraphs for op in g.iter_ops()):
        return None
    record |= {
        "fake_quant_ops": fake_quant,
        "inputs": {name: [1 if d < 0 else d for d in dims] for name, dims in shapes.items()},
        "route": "qat",
        "note": QAT_NOTE,
        "flags": _flags(tf, converter),
        "reexported_at_batch_1": False,
    }
    return data


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def _child_main(request_file: str) -> int:
    request = json.loads(Path(request_file).read_text(encoding="utf-8"))
    try:
        data, record = _convert(request)
        result: dict[str, Any] = {"conversion": record}
        Path(request["output"]).write_bytes(data)
    except _RefusalError as refusal:
        result = {"error": str(refusal), "kind": refusal.kind}
    Path(request["result"]).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
