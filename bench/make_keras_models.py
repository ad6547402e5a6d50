"""Build the large Keras benchmark / acceptance models as TFLite files in a local cache.

Models (``weights=None``: seeded random weights, nothing is downloaded; 224x224x3 input, batch fixed to 1,
1000 classes, input expected roughly in [-1, 1]):

* ``mobilenet_v2``       - keras.applications.MobileNetV2, alpha 1.0
* ``mobilenet_v3_small`` - keras.applications.MobileNetV3Small, alpha 1.0, include_preprocessing=False
* ``resnet50``           - keras.applications.ResNet50
* ``preact_resnet``      - a pre-activation ResNet whose batch norms survive conversion as MUL + ADD

each written as ``<name>_float.tflite`` and ``<name>_int8.tflite`` (full-integer int8 with int8 input and
output, per-channel weights, calibrated on a few seeded random samples). Existing files are kept unless
``--force``; files are written atomically, so an interrupted run never leaves a truncated model behind.

Usage::

    .venv/bin/python bench/make_keras_models.py [--out DIR] [--force] [--only NAME ...]

From Python (TensorFlow is only imported when something has to be built)::

    from make_keras_models import ensure_models   # with bench/ on sys.path
    paths = ensure_models(out_dir)                 # {"resnet50_int8": Path(...), ...}
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras
    import numpy as np

DEFAULT_CACHE = Path.home() / ".cache" / "npupass" / "keras"
SEED = 0
CALIBRATION_SAMPLES = 8
INPUT_SHAPE = (224, 224, 3)
NUM_CLASSES = 1000
VARIANTS = ("float", "int8")


def _mobilenet_v2(inputs: keras.KerasTensor) -> keras.Model:
    import keras

    return keras.applications.MobileNetV2(input_tensor=inputs, alpha=1.0, weights=None, classes=NUM_CLASSES)


def _mobilenet_v3_small(inputs: keras.KerasTensor) -> keras.Model:
    import keras

    return keras.applications.MobileNetV3Small(
        input_tensor=inputs, alpha=1.0, weights=None, classes=NUM_CLASSES, include_preprocessing=False
    )


def _resnet50(inputs: keras.KerasTensor) -> keras.Model:
    import keras

    return keras.applications.ResNet50(input_tensor=inputs, weights=None, classes=NUM_CLASSES)


def _preact_resnet(inputs: keras.KerasTensor) -> keras.Model:
    """Pre-activation ResNet: stem conv, 3 x [BN-ReLU-Conv-BN-ReLU-Conv + identity] at 112x112x32, BN-ReLU, head.

    The batch norms after the stem and after each Add have no conv of their own to fold into (the conv
    output also feeds the skip), so the converter leaves them as per-channel MUL + ADD.
    """
    import keras
    import numpy as np

    layers = keras.layers

    def bn_relu(x: keras.KerasTensor) -> keras.KerasTensor:
        return layers.ReLU()(layers.BatchNormalization()(x))

    x = layers.Conv2D(32, 3, strides=2, padding="same")(inputs)
    for _ in range(3):
        y = layers.Conv2D(32, 3, padding="same")(bn_relu(x))
        x = layers.Add()([x, layers.Conv2D(32, 3, padding="same")(bn_relu(y))])
    x = layers.GlobalAveragePooling2D()(bn_relu(x))
    model = keras.Model(inputs, layers.Dense(NUM_CLASSES)(x), name="preact_resnet")
    rng = np.random.default_rng(SEED)
    for layer in model.layers:  # seeded batch-norm statistics, some negative scales (as after training)
        if isinstance(layer, layers.BatchNormalization):
            (c,) = layer.gamma.shape
            gamma = rng.uniform(0.5, 1.5, c) * np.where(rng.random(c) < 0.25, -1.0, 1.0)
            layer.set_weights([gamma, rng.normal(0, 0.2, c), rng.normal(0, 0.5, c), rng.uniform(0.5, 2.0, c)])
    return model


MODELS: dict[str, Callable[[keras.KerasTensor], keras.Model]] = {
    "preact_resnet": _preact_resnet,
    "mobilenet_v2": _mobilenet_v2,
    "mobilenet_v3_small": _mobilenet_v3_small,
    "resnet50": _resnet50,
}


def model_paths(out_dir: Path, names: Iterable[str] = MODELS) -> dict[str, Path]:
    """Where each ``<name>_<variant>`` file lives (whether or not it exists yet)."""
    return {f"{name}_{variant}": out_dir / f"{name}_{variant}.tflite" for name in names for variant in VARIANTS}


def _representative_dataset(samples: int) -> Callable[[], Iterator[list[np.ndarray]]]:
    import numpy as np

    def generate() -> Iterator[list[np.ndarray]]:
        rng = np.random.default_rng(SEED)
        for _ in range(samples):
            yield [rng.uniform(-1.0, 1.0, size=(1, *INPUT_SHAPE)).astype(np.float32)]

    return generate


def _convert(model: keras.Model, variant: str, samples: int) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if variant == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative_dataset(samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # Keras prints the exported SavedModel signature; int8 I/O warns about missing input statistics.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        return bytes(converter.convert())


def _smoke_run(data: bytes) -> None:
    """Load and invoke the model once in LiteRT (default XNNPACK delegate), so no broken file is cached."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _build(name: str, targets: dict[str, Path], samples: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    start = time.perf_counter()
    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)
    model = MODELS[name](keras.Input(INPUT_SHAPE, batch_size=1, name="image"))
    print(f"[{name}] built Keras model ({model.count_params():,} params) in {time.perf_counter() - start:.1f}s")
    for variant, path in targets.items():
        step = time.perf_counter()
        data = _convert(model, variant, samples)
        _smoke_run(data)
        _write_atomically(path, data)
        print(f"[{name}] {path.name}: {len(data) / 1e6:.1f} MB in {time.perf_counter() - step:.1f}s", flush=True)
    print(f"[{name}] done in {time.perf_counter() - start:.1f}s", flush=True)
    keras.backend.clear_session()


def ensure_models(
    out_dir: Path | str = DEFAULT_CACHE,
    *,
    force: bool = False,
    names: Iterable[str] | None = None,
    samples: int = CALIBRATION_SAMPLES,
) -> dict[str, Path]:
    """Make sure every ``<name>_<variant>.tflite`` exists in ``out_dir``; return them by ``<name>_<variant>``.

    Only missing files are built (all of them with ``force``); a model whose files all exist costs nothing,
    not even a TensorFlow import.
    """
    out_dir = Path(out_dir).expanduser()
    selected = list(MODELS if names is None else names)
    unknown = sorted(set(selected) - set(MODELS))
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; known: {sorted(MODELS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = model_paths(out_dir, selected)
    for name in selected:
        targets = {}
        for variant in VARIANTS:
            path = paths[f"{name}_{variant}"]
            if force or not path.exists():
                targets[variant] = path
        if targets:
            _build(name, targets, samples)
        else:
            print(f"[{name}] cached")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_CACHE, help=f"cache directory (default {DEFAULT_CACHE})")
    parser.add_argument("--force", action="store_true", help="rebuild files that already exist")
    parser.add_argument("--only", nargs="+", choices=sorted(MODELS), metavar="NAME", help="build only these models")
    parser.add_argument(
        "--samples",
        type=int,
        default=CALIBRATION_SAMPLES,
        help="int8 calibration samples (default %(default)s)",
    )
    args = parser.parse_args(argv)

    start = time.perf_counter()
    paths = ensure_models(args.out, force=args.force, names=args.only, samples=args.samples)
    print(f"\nall done in {time.perf_counter() - start:.1f}s")
    for key, path in paths.items():
        print(f"{key:<26} {path.stat().st_size / 1e6:>7.1f} MB  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
