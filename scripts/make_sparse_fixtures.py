"""Build the sparsity / cluster / XNNPACK fixtures under tests/models/ (deterministic, seeded).

    .venv/bin/python scripts/make_sparse_fixtures.py [--out DIR]

* ``pruned_mbv2s_float.tflite`` / ``pruned_mbv2s_int8.tflite`` - a small MobileNetV2-style CNN
  (32x32x3 input; stem PAD(1) + 3x3 stride-2 VALID conv, inverted residual blocks, 1x1 head conv,
  global mean, Dense 320->10), every kernel magnitude-pruned to 80% zeros per layer before BN
  folding; float, and full int8 with int8 I/O. The float one qualifies for XNNPACK's sparse path.
* ``pruned_mbv2s_keras_float.tflite`` - the same with Keras' own stem (3x3 stride-2 SAME conv, which
  pads (0,1,0,1)): XNNPACK's sparse path does not apply.
* ``clustered_mbv2s_int8.tflite`` / ``clustered_mbv2s_int8_pt.tflite`` - the CNN with every kernel
  clustered to 16 values before BN folding (random positive BN scales, as training leaves them),
  full int8 with per-channel / per-tensor weight quantization.

bench/sparsity_bench.py builds the full-size MobileNetV2 variants with the same helpers.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

SEED = 0
OUT = Path(__file__).resolve().parents[1] / "tests" / "models"
WEIGHTED = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def representative(shape: tuple[int, ...], samples: int = 16) -> Callable[[], Iterator[list[np.ndarray]]]:
    def generate() -> Iterator[list[np.ndarray]]:
        rng = np.random.default_rng(SEED)
        for _ in range(samples):
            yield [rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)]

    return generate


def convert(model: keras.Model, int8: bool = False, per_channel: bool = True, sparsity: bool = False) -> bytes:
    """TFLite bytes: float, or full int8 with int8 I/O; `sparsity` asks for EXPERIMENTAL_SPARSITY."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    optimizations = []
    if int8:
        optimizations.append(tf.lite.Optimize.DEFAULT)
        converter.representative_dataset = representative((1, *model.inputs[0].shape[1:]))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        if not per_channel:
            converter._experimental_disable_per_channel = True
    if sparsity:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    if optimizations:
        converter.optimizations = optimizations
    with contextlib.redirect_stdout(io.StringIO()):
        return bytes(converter.convert())


def small_mbv2(keras_stem: bool = False) -> keras.Model:
    """A MobileNetV2-shaped CNN small enough for a test fixture."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)
    layers = keras.layers
    inputs = keras.Input((32, 32, 3), batch_size=1, name="image")
    if keras_stem:
        x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem")(inputs)
    else:
        x = layers.ZeroPadding2D(1, name="stem_pad")(inputs)
        x = layers.Conv2D(16, 3, strides=2, padding="valid", use_bias=False, name="stem")(x)
    x = layers.ReLU(6.0)(layers.BatchNormalization(name="stem_bn")(x))

    def block(x: tf.Tensor, expand: int, out: int, name: str) -> tf.Tensor:
        y = layers.Conv2D(expand, 1, use_bias=False, name=f"{name}_expand")(x)
        y = layers.ReLU(6.0)(layers.BatchNormalization(name=f"{name}_expand_bn")(y))
        y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_dw")(y)
        y = layers.ReLU(6.0)(layers.BatchNormalization(name=f"{name}_dw_bn")(y))
        y = layers.Conv2D(out, 1, use_bias=False, name=f"{name}_project")(y)
        y = layers.BatchNormalization(name=f"{name}_project_bn")(y)
        return layers.Add(name=f"{name}_add")([x, y]) if x.shape[-1] == out else y

    x = block(x, 96, 32, "b1")
    x = block(x, 192, 32, "b2")
    x = layers.Conv2D(320, 1, use_bias=False, name="head")(x)
    x = layers.ReLU(6.0)(layers.BatchNormalization(name="head_bn")(x))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="mbv2s")


def randomize_batch_norms(model: keras.Model, seed: int = SEED) -> None:
    """Trained-looking batch norms: positive scales that differ per channel (BN folding then
    rescales every output channel differently)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.get_weights()[0].shape
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, n).astype(np.float32),
                    rng.normal(0.0, 0.1, n).astype(np.float32),
                    rng.normal(0.0, 0.1, n).astype(np.float32),
                    rng.uniform(0.5, 2.0, n).astype(np.float32),
                ]
            )


def prune(model: keras.Model, fraction: float) -> None:
    """Per-layer magnitude pruning: the `fraction` smallest |w| of every kernel become 0."""
    for layer in model.layers:
        if isinstance(layer, WEIGHTED):
            weights = layer.get_weights()
            kernel = weights[0]
            k = round(fraction * kernel.size)
            if k:
                cut = np.sort(np.abs(kernel).reshape(-1))[k - 1]
                kernel = np.where(np.abs(kernel) <= cut, np.float32(0), kernel).astype(np.float32)
            layer.set_weights([kernel, *weights[1:]])


def cluster(model: keras.Model, clusters: int = 16) -> None:
    """Every kernel's values snapped to `clusters` centroids, linearly spaced between its min and
    max (tfmot's LINEAR init), before BN folding."""
    for layer in model.layers:
        if isinstance(layer, WEIGHTED):
            weights = layer.get_weights()
            kernel = weights[0]
            centroids = np.linspace(kernel.min(), kernel.max(), clusters).astype(np.float32)
            nearest = np.abs(kernel[..., None] - centroids).argmin(axis=-1)
            layer.set_weights([centroids[nearest], *weights[1:]])


def build_all(out: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    model = small_mbv2()
    randomize_batch_norms(model)
    prune(model, 0.8)
    files["pruned_mbv2s_float.tflite"] = convert(model)
    files["pruned_mbv2s_int8.tflite"] = convert(model, int8=True)
    keras_model = small_mbv2(keras_stem=True)
    randomize_batch_norms(keras_model)
    prune(keras_model, 0.8)
    files["pruned_mbv2s_keras_float.tflite"] = convert(keras_model)
    clustered = small_mbv2()
    randomize_batch_norms(clustered)
    cluster(clustered)
    files["clustered_mbv2s_int8.tflite"] = convert(clustered, int8=True)
    files["clustered_mbv2s_int8_pt.tflite"] = convert(clustered, int8=True, per_channel=False)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
        print(f"{name}: {len(data):,} bytes")
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    build_all(parser.parse_args().out)


if __name__ == "__main__":
    main()
