"""Build the PCQAT fixtures: TensorFlow Model Optimization's collaborative-optimization path, as a user runs it.

prune 50% (``prune_low_magnitude``, ConstantSparsity) -> strip -> sparsity-preserving clustering to 16
(``cluster_weights(..., preserve_sparsity=True)``) -> strip -> PCQAT (quantization-aware training with
``Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True)``) -> TFLite.

* ``pcqat_dscnn_int8.tflite`` - a DS-CNN keyword-spotting model (49x10x1 MFCCs -> 12 classes: Conv2D(64, 10x4,
  stride 2) + BN + ReLU -> 4 x [DepthwiseConv2D(3x3) + BN + ReLU -> Conv2D(64, 1x1) + BN + ReLU] -> global
  average pool -> Dense(12)), full int8 with int8 I/O.
* ``pcqat_dscnn_fq.tflite`` - the same model converted without optimizations: the fake-quant export (UINT8
  QUANTIZE/DEQUANTIZE pairs), which must go through fold-fake-quant before any NPU compile.
* ``softmax_int8.tflite`` - Conv2D(32, 3x3) then Softmax over a 1x32x32x32 map, full int8 (seeded calibration):
  a slow op on Ethos-U55 for the compile report's advice.
* ``pcqat_mobilenet_v2_035_96_int8.tflite`` - tf_keras MobileNetV2 (alpha 0.35, 96x96, 10 classes), the same
  path, full int8 with int8 I/O.

DepthwiseConv2D is neither prunable nor clusterable in tfmot: those layers stay dense and unclustered.
Training is a few seeded Adam steps on random data (the point is non-initial statistics, see
make_qat_fixtures.py, whose helpers this script uses).

Usage::

    .venv/bin/python scripts/make_pcqat_fixtures.py [--out tests/models]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_qat_fixtures as qat
from make_qat_fixtures import keras, tfmot

SPARSITY = 0.5
CLUSTERS = 16
STEPS = 20
DSCNN_SHAPE = (49, 10, 1)
MOBILENET_SHAPE = (96, 96, 3)


def dscnn() -> keras.Model:
    qat.fresh_keras()
    layers = keras.layers

    def bn_relu(x: keras.layers.Layer) -> keras.layers.Layer:
        return layers.ReLU()(layers.BatchNormalization(momentum=qat.BN_MOMENTUM)(x))

    inputs = keras.Input(DSCNN_SHAPE, name="mfcc")
    x = bn_relu(layers.Conv2D(64, (10, 4), strides=2, padding="same", use_bias=False)(inputs))
    for _ in range(4):
        x = bn_relu(layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x))
        x = bn_relu(layers.Conv2D(64, 1, use_bias=False)(x))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(12)(x), name="dscnn")


def mobilenet_v2() -> keras.Model:
    qat.fresh_keras()
    base = keras.applications.MobileNetV2(input_shape=MOBILENET_SHAPE, alpha=0.35, weights=None, classes=10)
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = qat.BN_MOMENTUM
    return base


def pcqat(model: keras.Model, seed: int, from_logits: bool) -> keras.Model:
    """Prune -> sparsity-preserving clustering -> PCQAT, each stage trained a few steps and stripped."""
    sparsity, clustering, quantization = tfmot.sparsity.keras, tfmot.clustering.keras, tfmot.quantization.keras
    schedule = sparsity.ConstantSparsity(SPARSITY, begin_step=0, frequency=5)
    pruned = sparsity.prune_low_magnitude(model, pruning_schedule=schedule)
    qat.train(pruned, STEPS, seed=seed, from_logits=from_logits, callbacks=(sparsity.UpdatePruningStep(),))
    pruned = sparsity.strip_pruning(pruned)
    clustered = clustering.cluster_weights(
        pruned,
        number_of_clusters=CLUSTERS,
        cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
        preserve_sparsity=True,
    )
    qat.train(clustered, STEPS, seed=seed + 1, from_logits=from_logits)
    clustered = clustering.strip_clustering(clustered)
    quantized = quantization.quantize_apply(
        quantization.quantize_annotate_model(clustered),
        tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True),
    )
    qat.train(quantized, STEPS, seed=seed + 2, from_logits=from_logits)
    return quantized


def softmax_model() -> keras.Model:
    """A conv followed by a softmax over a large feature map: the op Vela lowers to many output-unit passes
    on Ethos-U55 (a slow op for the compile report's advice)."""
    qat.fresh_keras()
    inputs = keras.Input((32, 32, 8), name="features")
    x = keras.layers.Conv2D(32, 3, padding="same")(inputs)
    return keras.Model(inputs, keras.layers.Softmax()(x), name="softmax_head")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=qat.DEFAULT_OUT, help="output directory")
    parser.add_argument("--only-softmax", action="store_true", help="build only softmax_int8.tflite")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    builds = (
        ("dscnn", lambda: pcqat(dscnn(), seed=101, from_logits=True), ("int8", "float")),
        ("mobilenet_v2_035_96", lambda: pcqat(mobilenet_v2(), seed=201, from_logits=False), ("int8",)),
    )
    saved = qat.export(softmax_model(), "softmax")
    data = qat.convert(saved, "int8", calibrate_shape=(1, 32, 32, 8))
    qat.smoke_run(data)
    qat.report(f"{qat.write_fixture(args.out / 'softmax_int8.tflite', data)}")
    if args.only_softmax:
        return 0
    for name, build, modes in builds:
        start = time.monotonic()
        print(f"training pcqat {name} ...", flush=True)
        saved = qat.export(build(), name)
        for mode in modes:
            data = qat.convert(saved, mode)
            qat.smoke_run(data)
            suffix = "fq" if mode == "float" else mode
            path = args.out / f"pcqat_{name}_{suffix}.tflite"
            qat.report(f"{qat.write_fixture(path, data)} ({time.monotonic() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
