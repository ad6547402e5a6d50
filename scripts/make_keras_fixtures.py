"""Build the Keras / SavedModel models the Keras frontend is tested (and benchmarked) on.

Everything is made with tf-keras (Keras 2, which tensorflow-model-optimization needs) from seeded weights and
a few seeded training steps on seeded random data, so batch-norm statistics and fake-quant ranges are not
their initial values. Nothing is downloaded. Written into OUT:

* ``qat_cnn/``, ``qat_cnn.keras``, ``qat_cnn.h5`` - a small CNN (1x32x32x3 -> 10: Conv2D+BN+ReLU,
  DepthwiseConv2D+BN+ReLU6, Conv2D 1x1+BN+ReLU, a residual Add, MaxPool, GlobalAveragePool, Dense) after
  ``tfmot.quantization.keras.quantize_model`` (QAT), saved the three ways a user saves it
  (``model.save(DIR)``, ``model.save("x.keras")``, ``model.save("x.h5")``).
* ``qat_cnn_reference_int8.tflite`` - the TF converter's own full-int8 conversion of that QAT model
  (``from_keras_model``, ``Optimize.DEFAULT``, int8 input and output; a QAT model needs no representative
  dataset): what a user gets by hand.
* ``qat_reshape/`` - a QAT Conv2D -> Reshape -> Dense model as a SavedModel; its Reshape layer reads the
  batch size with tf.shape, so converted as saved (batch unknown) it would keep a SHAPE op.
* ``pcqat_cnn.keras`` - the same CNN pruned to 50% (``prune_low_magnitude``), clustered to 8 clusters
  preserving the zeros (``cluster_weights(preserve_sparsity=True)``), then PCQAT
  (``Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True)``).
* ``float_cnn.keras`` - the CNN, float, and ``calibration.npy``: 8 seeded uniform [-1, 1) inputs (8x32x32x3).
* ``keras3_float.keras`` - a one-layer float model saved by Keras 3 (which tfmot cannot load).
* with ``--mobilenet``: ``qat_mobilenet_v2_035/`` - tf-keras MobileNetV2 (alpha 0.35, 96x96, 10 classes,
  ``weights=None``), QAT, as a SavedModel (the benchmark's model).

Usage::

    TF_USE_LEGACY_KERAS=1 .venv/bin/python scripts/make_keras_fixtures.py OUT [--mobilenet]

Needs the ``tensorflow`` extra (``pip install -e ".[tensorflow]"``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from pathlib import Path
from typing import Any

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # before TensorFlow is imported: tfmot needs tf-keras
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

SEED = 0
BATCH = 8
STEPS = 8
SHAPE = (32, 32, 3)
CLASSES = 10
CALIBRATION_SAMPLES = 8
SPARSITY = 0.5
CLUSTERS = 8

tf.get_logger().setLevel("ERROR")
tf.config.experimental.enable_op_determinism()


def fresh() -> None:
    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)


def small_cnn() -> keras.Model:
    fresh()
    layers = keras.layers
    inputs = keras.Input(SHAPE, name="image")
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = layers.ReLU(max_value=6.0)(layers.BatchNormalization(momentum=0.9)(x))
    x = layers.Conv2D(16, 1, use_bias=False)(x)
    x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
    residual = layers.BatchNormalization(momentum=0.9)(layers.Conv2D(16, 3, padding="same", use_bias=False)(x))
    x = layers.ReLU()(layers.Add()([x, residual]))
    x = layers.GlobalAveragePooling2D()(layers.MaxPooling2D(2)(x))
    return keras.Model(inputs, layers.Dense(CLASSES)(x), name="small_cnn")


def train(model: keras.Model, seed: int, callbacks: tuple[keras.callbacks.Callback, ...] = ()) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(model.inputs[0].shape[1:])
    images = rng.uniform(-1.0, 1.0, size=(STEPS * BATCH, *shape)).astype(np.float32)
    labels = rng.integers(0, CLASSES, size=STEPS * BATCH)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(images, labels, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=list(callbacks))


def qat_cnn() -> keras.Model:
    model = tfmot.quantization.keras.quantize_model(small_cnn())
    train(model, SEED + 1)
    return model


def qat_reshape() -> keras.Model:
    """A QAT model whose Reshape layer reads the batch size (tf.shape): saved as is, a SHAPE op would remain."""
    fresh()
    layers = keras.layers
    inputs = keras.Input((16, 16, 3), name="image")
    x = layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inputs)
    x = layers.Reshape((8 * 8 * 4,))(x)
    model = tfmot.quantization.keras.quantize_model(keras.Model(inputs, layers.Dense(CLASSES)(x)))
    train(model, SEED + 7)
    return model


def pcqat_cnn() -> keras.Model:
    sparsity, clustering, quantization = tfmot.sparsity.keras, tfmot.clustering.keras, tfmot.quantization.keras
    schedule = sparsity.ConstantSparsity(SPARSITY, begin_step=0, frequency=1)
    pruned = sparsity.prune_low_magnitude(small_cnn(), pruning_schedule=schedule)
    train(pruned, SEED + 2, callbacks=(sparsity.UpdatePruningStep(),))
    clustered = clustering.cluster_weights(
        sparsity.strip_pruning(pruned),
        number_of_clusters=CLUSTERS,
        cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
        preserve_sparsity=True,
    )
    train(clustered, SEED + 3)
    model = quantization.quantize_apply(
        quantization.quantize_annotate_model(clustering.strip_clustering(clustered)),
        tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True),
    )
    train(model, SEED + 4)
    return model


def qat_mobilenet_v2() -> keras.Model:
    fresh()
    base = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=CLASSES)
    model = tfmot.quantization.keras.quantize_model(base)
    train(model, SEED + 5)
    return model


def keras3_float() -> Any:
    """A tiny float model saved by Keras 3 (TensorFlow's default Keras), which tfmot cannot read."""
    import keras as keras3

    keras3.utils.set_random_seed(SEED)
    inputs = keras3.Input((8,), name="x")
    return keras3.Model(inputs, keras3.layers.Dense(4)(inputs))


def reference_int8(model: keras.Model) -> bytes:
    """The converter's full-int8 conversion of a QAT Keras model, as its documentation shows it."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()):
        return bytes(converter.convert())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output directory")
    parser.add_argument("--mobilenet", action="store_true", help="also the QAT MobileNetV2-0.35 SavedModel")
    parser.add_argument("--only-mobilenet", action="store_true", help="only the QAT MobileNetV2-0.35 SavedModel")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if not args.only_mobilenet:
        model = qat_cnn()
        model.save(out / "qat_cnn")  # a directory: the SavedModel format
        model.save(out / "qat_cnn.keras")
        model.save(out / "qat_cnn.h5")
        (out / "qat_cnn_reference_int8.tflite").write_bytes(reference_int8(model))
        qat_reshape().save(out / "qat_reshape")
        pcqat_cnn().save(out / "pcqat_cnn.keras")
        small_cnn().save(out / "float_cnn.keras")
        keras3_float().save(out / "keras3_float.keras")
        rng = np.random.default_rng(SEED + 6)
        np.save(out / "calibration.npy", rng.uniform(-1, 1, (CALIBRATION_SAMPLES, *SHAPE)).astype(np.float32))
    if args.mobilenet or args.only_mobilenet:
        qat_mobilenet_v2().save(out / "qat_mobilenet_v2_035")
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
