"""Build the tensorflow-model-optimization (tfmot) TFLite fixtures committed under ``tests/models``.

They exist for the passes that undo what training-aware tooling leaves in a graph: fold-batch-norm,
fuse-activations and fold-fake-quant. Every model is built with tf_keras (Keras 2, which tfmot needs),
trained for a few seeded steps on seeded random data (so batch-norm statistics and fake-quant ranges are not
their initial values), converted by the stock ``tf.lite.TFLiteConverter`` at batch size 1, checked for the
property it exists for, and run in the LiteRT interpreter (builtin kernels, no default delegate).

"A" below is the converter's full-int8 output of a QAT model (``Optimize.DEFAULT``, no representative
dataset needed); "B" is the same QAT model converted without optimizations: a float model that keeps the
fake quantization as UINT8 QUANTIZE -> DEQUANTIZE pairs. Each A file is compared with its B file on seeded
inputs (B's float output against A's dequantized output, in units of A's output scale).

* ``qat_cnn_int8.tflite``           - small QAT CNN (1x32x32x3 -> 10): Conv2D(8, 3x3, stride 2)+BN+ReLU ->
  DepthwiseConv2D(3x3)+BN+ReLU6 -> Conv2D(16, 1x1)+BN+ReLU -> residual block [Conv2D(16, 3x3)+BN, Add with
  the block input, ReLU] -> MaxPool -> GlobalAveragePool -> Dense(10). A with int8 input/output.
* ``qat_cnn_int8_floatio.tflite``   - the same, A with float input/output (QUANTIZE first, DEQUANTIZE last).
* ``qat_cnn_fq.tflite``             - the same, B: batch norm already folded into the convolutions, UINT8
  Q/DQ pairs on every activation (per-tensor) and on the weights: CONV_2D per-axis (axis 0),
  DEPTHWISE_CONV_2D per-axis (axis 3), FULLY_CONNECTED per-tensor with a shape-less ``[]`` quantized and
  dequantized tensor. Weight pairs are symmetric narrow-range (zero point 128, constants on the grid); the
  ReLU after the Add is fused into ADD.
* ``qat_mobilenet_v2_035_96_int8.tflite`` - tf_keras MobileNetV2 (alpha 0.35, 96x96, 10 classes), QAT,
  A with int8 input/output.
* ``qat_mobilenet_v2_035_96_fq.tflite``   - the same, B.
* ``pruned_cnn_float.tflite``       - the small CNN (float, no QAT) pruned to 60% with
  ``prune_low_magnitude`` + ConstantSparsity and stripped; plain float conversion, BN folded by the
  converter. Conv2D / Dense weights stay >= 50% zeros (DepthwiseConv2D is not prunable in tfmot).
* ``pruned_qat_cnn_fq.tflite``      - that model after pruning-preserving QAT
  (Default8BitPrunePreserveQuantizeScheme), B: the float weight constants in front of the weight Q/DQ pairs
  keep the zeros.
* ``pruned_qat_cnn_int8.tflite``    - the same, A with int8 input/output.
* ``clustered_cnn_float.tflite``    - the small CNN (float) with ``cluster_weights`` (16 clusters, k-means++)
  and stripped; plain float conversion. Dense weights have <= 16 distinct values, Conv2D weights <= 16 per
  output channel (the folded batch norm scales each channel; DepthwiseConv2D is not clusterable).
* ``clustered_qat_cnn_fq.tflite``   - that model after cluster-preserving QAT
  (Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=False)), B.
* ``clustered_qat_cnn_int8.tflite`` - the same, A with int8 input/output.
* ``preact_resnet_float.tflite``    - pre-activation ResNet (plain float, no tfmot): stem Conv2D(16) -> 2 x
  [BN -> ReLU -> Conv2D -> BN -> ReLU -> Conv2D] + identity skip -> BN -> ReLU -> GAP -> Dense(10), with seeded
  random batch-norm parameters (some negative gammas). The batch norms after the stem conv (whose output also
  feeds the skip) and after each Add cannot be folded and stay as MUL + ADD (ReLU fused into the ADD); the
  batch norm between the two convs of a block is folded.
* ``preact_resnet_int8.tflite``     - the same, full int8 (seeded representative dataset), int8 I/O.

Training: Adam on seeded uniform [-1, 1) inputs with random labels, batch 8. Batch norms use momentum 0.9 and
the tfmot moving-average range quantizers an EMA decay of 0.5 instead of tfmot's hard-wired 0.999 (patched
while training), so that a few dozen steps move both well away from their initial values (mean 0 /
variance 1, ranges -6..6): ReLU outputs get a range starting at 0 (zero point 0 in the UINT8 Q/DQ pairs,
-128 in int8), as in a model trained to convergence. TensorFlow op determinism is enabled; re-running gives
byte-identical files.

Usage::

    .venv/bin/python scripts/make_qat_fixtures.py [--out tests/models] [--only FILE ...]

Needs the ``fixtures`` extra plus ``tensorflow-model-optimization==0.8.1`` and ``tf-keras==2.21.*`` (tfmot
pins ``absl-py~=1.2``, which pip accepts next to TensorFlow 2.21).
"""

from __future__ import annotations

import argparse
import atexit
import collections
import contextlib
import functools
import io
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# tfmot only works with Keras 2 (tf_keras); both must be set before TensorFlow is imported.
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

SEED = 0
BATCH = 8
TRAIN_STEPS = 30
MOBILENET_TRAIN_STEPS = 20
LEARNING_RATE = 1e-3
BN_MOMENTUM = 0.9
RANGE_EMA_DECAY = 0.5  # tfmot's MovingAverageQuantizer hard-wires 0.999
CALIBRATION_SAMPLES = 20
COMPARE_SAMPLES = 5
PRUNE_SPARSITY = 0.6
CLUSTERS = 16
MAX_AB_LSB = 3.0  # B vs A, max |difference| in units of A's output scale
MAX_FIXTURE_BYTES = 2 * 1024 * 1024
MAX_TOTAL_BYTES = 4 * 1024 * 1024
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "models"
CNN_SHAPE = (32, 32, 3)
MOBILENET_SHAPE = (96, 96, 3)
CLASSES = 10

WEIGHT_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})
BUILTIN_NAMES: dict[int, str] = {
    value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")
}
TENSOR_TYPE_NAMES: dict[int, str] = {
    value: name for name, value in vars(schema.TensorType).items() if not name.startswith("_")
}
ACTIVATION_NAMES: dict[int, str] = {
    value: name for name, value in vars(schema.ActivationFunctionType).items() if not name.startswith("_")
}
NUMPY_TYPES: dict[int, type] = {
    schema.TensorType.FLOAT32: np.float32,
    schema.TensorType.INT32: np.int32,
    schema.TensorType.UINT8: np.uint8,
    schema.TensorType.INT8: np.int8,
    schema.TensorType.INT16: np.int16,
    schema.TensorType.INT64: np.int64,
}

# The int8-I/O path warns that no input statistics were given; that is expected for full-int8 models.
warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
tf.config.experimental.enable_op_determinism()
# Cluster-preserving QAT trains centroids instead of the original kernels, and Keras warns on every step
# that those kernels get no gradients.
tf.get_logger().setLevel("ERROR")


class FixtureError(RuntimeError):
    """A generated model does not have the property its fixture exists for."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise FixtureError(message)


def report(line: str) -> None:
    print(f"  {line}", flush=True)


# --------------------------------------------------------------------------------------------------------
# Keras models and training
# --------------------------------------------------------------------------------------------------------


def fresh_keras() -> None:
    """Reset Keras name counters and all RNG seeds, so a model is the same whatever was built before it."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)


@contextlib.contextmanager
def fast_range_ema() -> Iterator[None]:
    """Let tfmot's moving-average range quantizers use RANGE_EMA_DECAY while training graphs are traced."""
    original = quant_ops.MovingAvgQuantize

    def patched(*args: Any, **kwargs: Any) -> Any:
        kwargs["ema_decay"] = RANGE_EMA_DECAY
        return original(*args, **kwargs)

    quant_ops.MovingAvgQuantize = patched
    try:
        yield
    finally:
        quant_ops.MovingAvgQuantize = original


def train(
    model: keras.Model,
    steps: int,
    *,
    seed: int,
    from_logits: bool = True,
    callbacks: tuple[keras.callbacks.Callback, ...] = (),
) -> None:
    """A few Adam steps on seeded random images and labels (the point is non-initial statistics)."""
    rng = np.random.default_rng(seed)
    shape = tuple(model.inputs[0].shape[1:])
    images = rng.uniform(-1.0, 1.0, size=(steps * BATCH, *shape)).astype(np.float32)
    labels = rng.integers(0, CLASSES, size=steps * BATCH)
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
    )
    with fast_range_ema():
        model.fit(images, labels, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=list(callbacks))


def small_cnn() -> keras.Model:
    """The small CNN of the qat/pruned/clustered fixtures (float, untrained, batch size free)."""
    fresh_keras()
    layers = keras.layers

    def batch_norm() -> keras.layers.Layer:
        return layers.BatchNormalization(momentum=BN_MOMENTUM)

    inputs = keras.Input(CNN_SHAPE, name="image")
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inputs)  # 16x16x8
    x = layers.ReLU()(batch_norm()(x))
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = layers.ReLU(max_value=6.0)(batch_norm()(x))
    x = layers.Conv2D(16, 1, use_bias=False)(x)  # 16x16x16
    x = layers.ReLU()(batch_norm()(x))
    residual = layers.Conv2D(16, 3, padding="same", use_bias=False)(x)
    residual = batch_norm()(residual)
    x = layers.ReLU()(layers.Add()([x, residual]))
    x = layers.MaxPooling2D(2)(x)  # 8x8x16
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(CLASSES)(x)
    return keras.Model(inputs, outputs, name="small_cnn")


@functools.cache
def qat_cnn() -> keras.Model:
    model = tfmot.quantization.keras.quantize_model(small_cnn())
    train(model, TRAIN_STEPS, seed=SEED + 1)
    return model


@functools.cache
def qat_mobilenet_v2() -> keras.Model:
    fresh_keras()
    base = keras.applications.MobileNetV2(input_shape=MOBILENET_SHAPE, alpha=0.35, weights=None, classes=CLASSES)
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM  # Keras applications use 0.999; quantize_model clones from config
    model = tfmot.quantization.keras.quantize_model(base)
    train(model, MOBILENET_TRAIN_STEPS, seed=SEED + 2, from_logits=False)
    return model


@functools.cache
def pruned_cnn() -> keras.Model:
    sparsity = tfmot.sparsity.keras
    schedule = sparsity.ConstantSparsity(PRUNE_SPARSITY, begin_step=0, frequency=10)
    model = sparsity.prune_low_magnitude(small_cnn(), pruning_schedule=schedule)
    train(model, TRAIN_STEPS, seed=SEED + 3, callbacks=(sparsity.UpdatePruningStep(),))
    return sparsity.strip_pruning(model)


@functools.cache
def pruned_qat_cnn() -> keras.Model:
    quantization = tfmot.quantization.keras
    model = quantization.quantize_apply(
        quantization.quantize_annotate_model(pruned_cnn()),
        tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme(),
    )
    train(model, TRAIN_STEPS, seed=SEED + 4)
    return model


@functools.cache
def clustered_cnn() -> keras.Model:
    clustering = tfmot.clustering.keras
    model = clustering.cluster_weights(
        small_cnn(),
        number_of_clusters=CLUSTERS,
        cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
    )
    train(model, TRAIN_STEPS, seed=SEED + 5)
    return clustering.strip_clustering(model)


@functools.cache
def clustered_qat_cnn() -> keras.Model:
    quantization = tfmot.quantization.keras
    model = quantization.quantize_apply(
        quantization.quantize_annotate_model(clustered_cnn()),
        # The clustered model has no zero weights; preserve_sparsity=True (the default) would only log that
        # it falls back to this plain cluster-preserving QAT.
        tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=False),
    )
    train(model, TRAIN_STEPS, seed=SEED + 6)
    return model


@functools.cache
def preact_resnet() -> keras.Model:
    """Pre-activation ResNet with seeded random batch-norm parameters (not trained)."""
    fresh_keras()
    layers = keras.layers

    def conv(x: tf.Tensor) -> tf.Tensor:
        return layers.Conv2D(16, 3, padding="same")(x)

    def bn_relu(x: tf.Tensor) -> tf.Tensor:
        return layers.ReLU()(layers.BatchNormalization()(x))

    inputs = keras.Input(CNN_SHAPE, name="image")
    x = conv(inputs)
    for _ in range(2):
        x = layers.Add()([x, conv(bn_relu(conv(bn_relu(x))))])
    x = layers.GlobalAveragePooling2D()(bn_relu(x))
    model = keras.Model(inputs, layers.Dense(CLASSES)(x), name="preact_resnet")
    rng = np.random.default_rng(SEED + 7)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            (channels,) = layer.gamma.shape
            gamma = rng.uniform(0.5, 1.5, channels) * np.where(rng.random(channels) < 0.25, -1.0, 1.0)
            layer.set_weights(
                [
                    gamma.astype(np.float32),
                    rng.normal(0.0, 0.2, channels).astype(np.float32),
                    rng.normal(0.0, 0.2, channels).astype(np.float32),
                    rng.uniform(0.25, 2.0, channels).astype(np.float32),
                ]
            )
    return model


# --------------------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------------------


def representative_dataset(shape: tuple[int, ...]) -> Callable[[], Iterator[list[np.ndarray]]]:
    """Seeded uniform [-1, 1) calibration inputs; each call of the result replays the same samples."""

    def generate() -> Iterator[list[np.ndarray]]:
        rng = np.random.default_rng(SEED)
        for _ in range(CALIBRATION_SAMPLES):
            yield [rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)]

    return generate


@functools.cache
def export_root() -> Path:
    """Scratch directory for the SavedModels, removed when the process exits."""
    directory = tempfile.TemporaryDirectory(prefix="npupass-qat-fixtures-")
    atexit.register(directory.cleanup)
    return Path(directory.name)


def export(model: keras.Model, name: str) -> Path:
    """Save ``model(image, training=False)`` at batch size 1 as a SavedModel.

    The root is a plain tf.Module holding the function and the model's variables: handing the Keras model
    itself to the converter (from_keras_model, or as from_concrete_functions' trackable) makes it export
    the whole Keras object graph for every conversion, which takes over a minute for QAT MobileNetV2.
    The converter output is the same.
    """
    shape = (1, *model.inputs[0].shape[1:])

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name="image")])
    def serve(image: tf.Tensor) -> tf.Tensor:
        return model(image, training=False)

    root = tf.Module()
    root.model_variables = list(model.variables)
    root.serve = serve
    path = export_root() / name
    tf.saved_model.save(root, str(path), signatures={"serving_default": serve.get_concrete_function()})
    return path


def convert(saved_model: Path, mode: str, *, calibrate_shape: tuple[int, ...] | None = None) -> bytes:
    """mode: "float" (no optimizations; keeps QAT fake quant), "int8" (int8 I/O) or "int8_floatio".
    ``calibrate_shape``: give the int8 modes a representative dataset (for models without fake quant)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if mode != "float":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if calibrate_shape is not None:  # QAT models carry their ranges; check_full_int8 checks they suffice
            converter.representative_dataset = representative_dataset(calibrate_shape)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if mode == "int8":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        else:
            require(mode == "int8_floatio", f"unknown conversion mode {mode}")
    with contextlib.redirect_stdout(io.StringIO()):
        return bytes(converter.convert())


MODELS: dict[str, Callable[[], keras.Model]] = {
    "qat_cnn": qat_cnn,
    "qat_mobilenet_v2": qat_mobilenet_v2,
    "pruned_cnn": pruned_cnn,
    "pruned_qat_cnn": pruned_qat_cnn,
    "clustered_cnn": clustered_cnn,
    "clustered_qat_cnn": clustered_qat_cnn,
    "preact_resnet": preact_resnet,
}


@functools.cache
def saved_model(model_name: str) -> Path:
    return export(MODELS[model_name](), model_name)


@functools.cache
def converted(model_name: str, mode: str) -> bytes:
    calibrate_shape = (1, *CNN_SHAPE) if model_name == "preact_resnet" else None
    return convert(saved_model(model_name), mode, calibrate_shape=calibrate_shape)


# --------------------------------------------------------------------------------------------------------
# Inspection
# --------------------------------------------------------------------------------------------------------


class Graph:
    """The primary subgraph of a flatbuffer with producer/consumer maps and constant values."""

    def __init__(self, data: bytes) -> None:
        self.model = schema.ModelT.InitFromPackedBuf(data, 0)
        self.subgraph = self.model.subgraphs[0]
        self.tensors = self.subgraph.tensors
        self.ops = list(self.subgraph.operators or [])
        self.producer: dict[int, int] = {}
        self.consumers: dict[int, list[int]] = collections.defaultdict(list)
        for index, op in enumerate(self.ops):
            for tensor in op.outputs:
                self.producer[int(tensor)] = index
            for tensor in op.inputs:
                if tensor >= 0:
                    self.consumers[int(tensor)].append(index)

    def op_name(self, index: int) -> str:
        code = self.model.operatorCodes[self.ops[index].opcodeIndex]
        return BUILTIN_NAMES[max(code.builtinCode, code.deprecatedBuiltinCode)]

    def input(self, op: int, position: int) -> int:
        return int(self.ops[op].inputs[position])

    def output(self, op: int) -> int:
        return int(self.ops[op].outputs[0])

    def shape(self, tensor: int) -> list[int] | None:
        shape = self.tensors[tensor].shape
        return None if shape is None else [int(d) for d in shape]

    def type_name(self, tensor: int) -> str:
        return TENSOR_TYPE_NAMES[self.tensors[tensor].type]

    def name(self, tensor: int) -> str:
        return self.tensors[tensor].name.decode()

    def is_constant(self, tensor: int) -> bool:
        data = self.model.buffers[self.tensors[tensor].buffer].data
        return data is not None and len(data) > 0

    def value(self, tensor: int) -> np.ndarray:
        raw = bytes(bytearray(self.model.buffers[self.tensors[tensor].buffer].data))
        array = np.frombuffer(raw, NUMPY_TYPES[self.tensors[tensor].type])
        shape = self.shape(tensor)
        return array.reshape(shape) if shape else array

    def quantization(self, tensor: int) -> tuple[np.ndarray, np.ndarray, int] | None:
        q = self.tensors[tensor].quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            return None
        return np.asarray(q.scale, np.float64), np.asarray(q.zeroPoint, np.int64), int(q.quantizedDimension)

    def fused_activation(self, op: int) -> str:
        options = self.ops[op].builtinOptions
        function = getattr(options, "fusedActivationFunction", None)
        return "NONE" if function is None else ACTIVATION_NAMES[function]


def op_histogram(data: bytes) -> collections.Counter[str]:
    graph = Graph(data)
    return collections.Counter(graph.op_name(i) for i in range(len(graph.ops)))


def format_histogram(counts: collections.Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def dtype_names(data: bytes) -> tuple[list[str], list[str]]:
    graph = Graph(data)
    return (
        [graph.type_name(int(t)) for t in graph.subgraph.inputs],
        [graph.type_name(int(t)) for t in graph.subgraph.outputs],
    )


def fused_activations(data: bytes) -> collections.Counter[str]:
    graph = Graph(data)
    return collections.Counter(
        f"{graph.op_name(i)}+{graph.fused_activation(i)}"
        for i in range(len(graph.ops))
        if graph.fused_activation(i) != "NONE"
    )


@dataclass
class Weight:
    """The weight operand (input 1) of a CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED."""

    op: str
    values: np.ndarray  # the stored constant: float, or int8 for quantized models
    channel_axis: int  # output-channel axis of ``values``
    source: str  # "const" or "Q/DQ(const)" (float constant -> QUANTIZE -> DEQUANTIZE -> op)
    quantization: tuple[np.ndarray, np.ndarray, int] | None  # of the stored tensor or of the Q/DQ pair
    shapeless: bool  # some tensor on the weight path has shape []


def weights(data: bytes) -> list[Weight]:
    graph = Graph(data)
    found = []
    for index in range(len(graph.ops)):
        name = graph.op_name(index)
        if name not in WEIGHT_OPS:
            continue
        tensor = graph.input(index, 1)
        path = [tensor]
        source = "const"
        quantization = graph.quantization(tensor)
        if not graph.is_constant(tensor):
            dequantize = graph.producer[tensor]
            require(graph.op_name(dequantize) == "DEQUANTIZE", f"{name} weight is not constant nor DEQUANTIZE")
            quantized = graph.input(dequantize, 0)
            quantize = graph.producer[quantized]
            require(graph.op_name(quantize) == "QUANTIZE", f"{name} weight DEQUANTIZE is not fed by QUANTIZE")
            tensor = graph.input(quantize, 0)
            require(graph.is_constant(tensor), f"{name} weight QUANTIZE input is not constant")
            path += [quantized, tensor]
            source = "Q/DQ(const)"
            quantization = graph.quantization(quantized)
        found.append(
            Weight(
                op=name,
                values=graph.value(tensor),
                channel_axis=3 if name == "DEPTHWISE_CONV_2D" else 0,
                source=source,
                quantization=quantization,
                shapeless=any(graph.shape(t) == [] for t in path),
            )
        )
    return found


def zero_fraction(weight: Weight) -> float:
    return float(np.mean(weight.values == 0))


def unique_counts(weight: Weight) -> tuple[int, int]:
    """Distinct values in the whole tensor and the most in any one output channel."""
    values = np.moveaxis(weight.values, weight.channel_axis, 0)
    per_channel = max(len(np.unique(channel)) for channel in values)
    return len(np.unique(weight.values)), per_channel


def off_grid(weight: Weight) -> float:
    """Largest distance of a Q/DQ weight constant from its quantization grid, in quantization steps."""
    require(weight.quantization is not None, "weight has no quantization")
    scale, _, axis = weight.quantization
    values = weight.values.astype(np.float64)
    if len(scale) > 1:
        shape = [1] * values.ndim
        shape[axis] = len(scale)
        scale = scale.reshape(shape)
    steps = values / scale
    return float(np.max(np.abs(steps - np.round(steps))))


@dataclass
class QdqPair:
    kind: str  # "weight" (QUANTIZE of a constant) or "activation"
    type_name: str  # type of the quantized tensor
    scales: np.ndarray
    zero_points: np.ndarray
    axis: int
    shapeless: str  # which of "in", "q", "out" (QUANTIZE input, quantized tensor, DEQUANTIZE output) are []


def qdq_pairs(data: bytes) -> list[QdqPair]:
    """Every QUANTIZE whose only consumer is a DEQUANTIZE; requires that there is no other QUANTIZE."""
    graph = Graph(data)
    pairs = []
    for index in range(len(graph.ops)):
        if graph.op_name(index) != "QUANTIZE":
            continue
        quantized = graph.output(index)
        consumers = graph.consumers[quantized]
        require(
            len(consumers) == 1 and graph.op_name(consumers[0]) == "DEQUANTIZE",
            f"QUANTIZE -> {graph.name(quantized)} is not consumed by exactly one DEQUANTIZE",
        )
        quantization = graph.quantization(quantized)
        require(quantization is not None, f"QUANTIZE -> {graph.name(quantized)} has no quantization parameters")
        scale, zero_point, axis = quantization
        source = graph.input(index, 0)
        path = {"in": source, "q": quantized, "out": graph.output(consumers[0])}
        pairs.append(
            QdqPair(
                kind="weight" if graph.is_constant(source) else "activation",
                type_name=graph.type_name(quantized),
                scales=scale,
                zero_points=zero_point,
                axis=axis,
                shapeless="+".join(key for key, tensor in path.items() if graph.shape(tensor) == []),
            )
        )
    return pairs


def batch_norm_pairs(data: bytes) -> list[str]:
    """MUL by a per-channel constant whose only consumer is an ADD of a per-channel constant (an unfolded
    batch norm); returns a description of each such pair."""
    graph = Graph(data)
    found = []
    for index in range(len(graph.ops)):
        if graph.op_name(index) != "MUL":
            continue
        constants = [t for t in graph.ops[index].inputs if graph.is_constant(int(t))]
        consumers = graph.consumers[graph.output(index)]
        if len(constants) != 1 or len(consumers) != 1 or graph.op_name(consumers[0]) != "ADD":
            continue
        add = consumers[0]
        if not any(graph.is_constant(int(t)) for t in graph.ops[add].inputs):
            continue
        source = graph.input(index, 0) if not graph.is_constant(graph.input(index, 0)) else graph.input(index, 1)
        producer = graph.op_name(graph.producer[source]) if source in graph.producer else "graph input"
        found.append(
            f"op {index} MUL + op {add} ADD (fused {graph.fused_activation(add)}) after {producer}, "
            f"scale shape {graph.shape(int(constants[0]))}"
        )
    return found


# --------------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------------


def make_interpreter(data: bytes) -> Interpreter:
    interpreter = Interpreter(
        model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    interpreter.allocate_tensors()
    return interpreter


def run(data: bytes, value: np.ndarray) -> tuple[np.ndarray, dict]:
    interpreter = make_interpreter(data)
    (detail,) = interpreter.get_input_details()
    interpreter.set_tensor(detail["index"], value.astype(detail["dtype"]))
    interpreter.invoke()
    (out,) = interpreter.get_output_details()
    return interpreter.get_tensor(out["index"]), out


def float_inputs(shape: tuple[int, ...], samples: int = COMPARE_SAMPLES) -> list[np.ndarray]:
    rng = np.random.default_rng(SEED + 100)
    return [rng.uniform(-1.0, 1.0, size=shape).astype(np.float32) for _ in range(samples)]


def smoke_run(data: bytes) -> None:
    interpreter = make_interpreter(data)
    (detail,) = interpreter.get_input_details()
    rng = np.random.default_rng(SEED)
    if np.issubdtype(detail["dtype"], np.integer):
        value = rng.integers(-128, 127, size=detail["shape"], endpoint=True).astype(detail["dtype"])
    else:
        value = rng.uniform(-1.0, 1.0, size=detail["shape"]).astype(detail["dtype"])
    interpreter.set_tensor(detail["index"], value)
    interpreter.invoke()
    for out in interpreter.get_output_details():
        result = interpreter.get_tensor(out["index"])
        require(bool(np.all(np.isfinite(result.astype(np.float64)))), "model produced non-finite outputs")


def output_scale(data: bytes) -> float:
    """Scale of the quantized output: of the output tensor, or (float output) of DEQUANTIZE's input. A float
    SOFTMAX output (not fake-quantized by tfmot) gets 1/256, the fixed scale of TFLite's int8 softmax."""
    graph = Graph(data)
    tensor = int(graph.subgraph.outputs[0])
    if graph.quantization(tensor) is None:
        producer = graph.producer[tensor]
        if graph.op_name(producer) == "SOFTMAX":
            return 1.0 / 256.0
        tensor = graph.input(producer, 0)
    quantization = graph.quantization(tensor)
    require(quantization is not None, "model output is not quantized")
    return float(quantization[0][0])


def compare(quantized: bytes, reference: bytes) -> tuple[float, float, int]:
    """Run an int8 model (A) and a float model (B, or the float original) on the same seeded inputs.

    With int8 input the float input is quantized with A's input parameters and B gets the dequantized
    value, so both see identical inputs. Returns max and mean |B - A| in units of A's output scale, and
    how many of the samples have the same argmax.
    """
    interpreter = make_interpreter(quantized)
    (detail,) = interpreter.get_input_details()
    shape = tuple(detail["shape"])
    scale = output_scale(quantized)
    diffs, agree = [], 0
    for x in float_inputs(shape):
        if detail["dtype"] == np.int8:
            in_scale, in_zero = detail["quantization"]
            q = np.clip(np.round(x / in_scale) + in_zero, -128, 127).astype(np.int8)
            a, out = run(quantized, q)
            x = ((q.astype(np.float32) - in_zero) * in_scale).astype(np.float32)
            out_scale, out_zero = out["quantization"]
            a = (a.astype(np.float32) - out_zero) * out_scale
        else:
            a, _ = run(quantized, x)
        b, _ = run(reference, x)
        diffs.append(np.abs(b.astype(np.float64) - a) / scale)
        agree += int(np.argmax(a) == np.argmax(b))
    diff = np.concatenate([d.ravel() for d in diffs])
    return float(diff.max()), float(diff.mean()), agree


# --------------------------------------------------------------------------------------------------------
# Checks and reports shared by the fixture builders
# --------------------------------------------------------------------------------------------------------


def check_io(data: bytes, name: str, dtype: str) -> None:
    inputs, outputs = dtype_names(data)
    require(inputs == [dtype] and outputs == [dtype], f"{name}: expected {dtype} I/O, got {inputs} -> {outputs}")


def check_full_int8(data: bytes, name: str, *, int8_io: bool) -> None:
    check_io(data, name, "INT8" if int8_io else "FLOAT32")
    graph = Graph(data)
    ops = [graph.op_name(i) for i in range(len(graph.ops))]
    if int8_io:
        require("QUANTIZE" not in ops and "DEQUANTIZE" not in ops, f"{name}: int8 model has Q/DQ ops: {ops}")
    else:
        require(ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE", f"{name}: expected QUANTIZE ... DEQUANTIZE")
        require(ops.count("QUANTIZE") == 1 and ops.count("DEQUANTIZE") == 1, f"{name}: extra Q/DQ ops: {ops}")
    for index in range(len(graph.ops)):
        if graph.op_name(index) in {"QUANTIZE", "DEQUANTIZE"}:
            continue
        for tensor in [*graph.ops[index].inputs, *graph.ops[index].outputs]:
            if tensor >= 0 and not graph.is_constant(int(tensor)):
                require(graph.type_name(int(tensor)) == "INT8", f"{name}: {graph.name(int(tensor))} is not int8")
    for weight in weights(data):
        require(weight.source == "const" and weight.values.dtype == np.int8, f"{name}: {weight.op} weight not int8")
        # Per-channel conv weights; QAT dense weights are per-tensor, calibrated ones per-channel.
        channels = weight.values.shape[weight.channel_axis]
        scales = len(weight.quantization[0]) if weight.quantization else 0
        expected = {1, channels} if weight.op == "FULLY_CONNECTED" else {channels}
        require(scales in expected, f"{name}: {weight.op} weight has {scales} scales, expected {expected}")


def check_fake_quant(data: bytes, name: str) -> list[QdqPair]:
    """B: float I/O, only float compute ops, every weight and activation behind a UINT8 Q/DQ pair."""
    check_io(data, name, "FLOAT32")
    pairs = qdq_pairs(data)
    require(bool(pairs), f"{name} has no QUANTIZE -> DEQUANTIZE pairs")
    require(all(p.type_name == "UINT8" for p in pairs), f"{name}: Q/DQ pairs not all UINT8")
    require(all(len(p.scales) == 1 for p in pairs if p.kind == "activation"), f"{name}: per-axis activation Q/DQ")
    ops = op_histogram(data)
    require(ops["QUANTIZE"] == ops["DEQUANTIZE"] == len(pairs), f"{name}: unpaired Q/DQ ops {dict(ops)}")
    require(ops["MUL"] == 0, f"{name}: batch norm not folded (MUL present)")
    for weight in weights(data):
        require(weight.values.dtype == np.float32, f"{name}: {weight.op} weight is not float")
    return pairs


def report_common(data: bytes) -> None:
    inputs, outputs = dtype_names(data)
    report(f"{len(data):,} bytes; I/O {inputs} -> {outputs}")
    report(f"ops: {format_histogram(op_histogram(data))}")
    activations = fused_activations(data)
    if activations:
        report(f"fused activations: {format_histogram(activations)}")


def report_weights(data: bytes, *, zeros: bool = False, uniques: bool = False) -> None:
    found = weights(data)
    if len(found) > 8:  # summarise: (op, source, per-axis?) -> count, worst off-grid distance
        groups: dict[str, list[Weight]] = collections.defaultdict(list)
        for weight in found:
            scales = len(weight.quantization[0]) if weight.quantization is not None else 0
            kind = "per-axis" if scales > 1 else "per-tensor" if scales == 1 else "float"
            key = f"{weight.op} {weight.values.dtype} {weight.source} {kind}"
            groups[key + (" shape-less []" if weight.shapeless else "")].append(weight)
        for key, members in groups.items():
            line = f"{len(members)} x {key}"
            if members[0].source != "const":
                line += f", off-grid <= {max(off_grid(w) for w in members):.2g} steps"
            report(line)
        return
    for weight in found:
        line = f"{weight.op} weight {list(weight.values.shape)} {weight.values.dtype} {weight.source}"
        if weight.quantization is not None:
            scale, _, axis = weight.quantization
            line += f", {len(scale)} scale(s)" + (f" axis {axis}" if len(scale) > 1 else "")
        if weight.source != "const":
            line += f", off-grid {off_grid(weight):.2g} steps"
        if weight.shapeless:
            line += ", shape-less [] tensor on path"
        if zeros:
            line += f", zeros {zero_fraction(weight):.3f}"
        if uniques:
            total, per_channel = unique_counts(weight)
            line += f", unique {total} (max {per_channel}/channel)"
        report(line)


def report_qdq(pairs: list[QdqPair]) -> None:
    kinds = collections.Counter(
        f"{p.kind} {p.type_name} "
        + ("per-tensor" if len(p.scales) == 1 else f"per-axis({p.axis})")
        + (f" shape-less {p.shapeless}" if p.shapeless else "")
        for p in pairs
    )
    report(f"Q/DQ pairs: {format_histogram(kinds)}")
    weight_zero_points = sorted({int(z) for p in pairs if p.kind == "weight" for z in p.zero_points})
    activations = [p for p in pairs if p.kind == "activation"]
    scales = [float(p.scales[0]) for p in activations]
    relu_like = sum(int(p.zero_points[0]) == 0 for p in activations)
    report(
        f"weight zero points {weight_zero_points}; activation scales {min(scales):.4g}..{max(scales):.4g}, "
        f"{len(set(scales))} distinct, zero point 0 on {relu_like}/{len(activations)}"
    )


def check_agreement(a: bytes, b: bytes, name: str) -> None:
    worst, mean, agree = compare(a, b)
    report(f"A vs B on {COMPARE_SAMPLES} inputs: max {worst:.2f} LSB, mean {mean:.3f} LSB, argmax {agree}/5")
    require(worst <= MAX_AB_LSB, f"{name}: A and B differ by {worst:.2f} output LSB (> {MAX_AB_LSB})")


def check_zero_fractions(data: bytes, name: str) -> None:
    for weight in weights(data):
        if weight.op != "DEPTHWISE_CONV_2D":  # tfmot does not prune depthwise kernels
            fraction = zero_fraction(weight)
            require(fraction >= 0.5, f"{name}: {weight.op} weight only {fraction:.0%} zeros")


def check_clusters(data: bytes, name: str) -> None:
    for weight in weights(data):
        if weight.op != "DEPTHWISE_CONV_2D":  # tfmot does not cluster depthwise kernels
            total, per_channel = unique_counts(weight)
            require(per_channel <= CLUSTERS, f"{name}: {weight.op} weight has {per_channel} values in a channel")
            if weight.op == "FULLY_CONNECTED":  # no batch norm folded into it
                require(total <= CLUSTERS, f"{name}: dense weight has {total} distinct values")


# --------------------------------------------------------------------------------------------------------
# Fixture builders
# --------------------------------------------------------------------------------------------------------


def build_qat_int8(model_name: str, *, int8_io: bool = True, zeros: bool = False, uniques: bool = False) -> bytes:
    data = converted(model_name, "int8" if int8_io else "int8_floatio")
    check_full_int8(data, model_name, int8_io=int8_io)
    report_common(data)
    report_weights(data, zeros=zeros, uniques=uniques)
    check_agreement(data, converted(model_name, "float"), model_name)
    return data


def build_qat_fq(model_name: str, *, zeros: bool = False, uniques: bool = False) -> bytes:
    data = converted(model_name, "float")
    pairs = check_fake_quant(data, model_name)
    report_common(data)
    report_qdq(pairs)
    report_weights(data, zeros=zeros, uniques=uniques)
    # B computes what the Keras QAT model computes (fake quant included), up to rounding ties.
    model, scale = MODELS[model_name](), output_scale(data)
    worst = max(
        float(np.max(np.abs(run(data, x)[0] - model(x, training=False).numpy()))) / scale
        for x in float_inputs((1, *model.inputs[0].shape[1:]))
    )
    report(f"vs the Keras QAT model: max {worst:.2f} output LSB")
    require(worst <= MAX_AB_LSB, f"{model_name}: B differs from the Keras QAT model by {worst:.2f} output LSB")
    return data


def build_qat_cnn_fq() -> bytes:
    data = build_qat_fq("qat_cnn")
    ops = op_histogram(data)
    require(ops["ADD"] == 1 and "RELU" not in ops, f"qat_cnn_fq: expected one ADD with fused ReLU, {dict(ops)}")
    require(any(w.shapeless for w in weights(data)), "qat_cnn_fq: expected a shape-less [] weight Q/DQ tensor")
    return data


def build_pruned_float() -> bytes:
    data = converted("pruned_cnn", "float")
    check_io(data, "pruned_cnn_float", "FLOAT32")
    require(not {"QUANTIZE", "DEQUANTIZE", "MUL"} & set(op_histogram(data)), "pruned_cnn_float: unexpected ops")
    check_zero_fractions(data, "pruned_cnn_float")
    report_common(data)
    report_weights(data, zeros=True)
    return data


def build_pruned_qat_fq() -> bytes:
    data = build_qat_fq("pruned_qat_cnn", zeros=True)
    check_zero_fractions(data, "pruned_qat_cnn_fq")
    return data


def build_pruned_qat_int8() -> bytes:
    data = build_qat_int8("pruned_qat_cnn", zeros=True)
    check_zero_fractions(data, "pruned_qat_cnn_int8")
    return data


def build_clustered_float() -> bytes:
    data = converted("clustered_cnn", "float")
    check_io(data, "clustered_cnn_float", "FLOAT32")
    check_clusters(data, "clustered_cnn_float")
    report_common(data)
    report_weights(data, uniques=True)
    return data


def build_clustered_qat_fq() -> bytes:
    data = build_qat_fq("clustered_qat_cnn", uniques=True)
    check_clusters(data, "clustered_qat_cnn_fq")
    return data


def build_clustered_qat_int8() -> bytes:
    data = build_qat_int8("clustered_qat_cnn", uniques=True)
    check_clusters(data, "clustered_qat_cnn_int8")
    return data


def check_preact_batch_norms(data: bytes, name: str) -> None:
    pairs = batch_norm_pairs(data)
    for pair in pairs:
        report(f"batch norm: {pair}")
    require(len(pairs) == 3, f"{name}: expected 3 unfolded batch norms (MUL + ADD), found {len(pairs)}")


def build_preact_float() -> bytes:
    model = preact_resnet()
    data = converted("preact_resnet", "float")
    check_io(data, "preact_resnet_float", "FLOAT32")
    report_common(data)
    check_preact_batch_norms(data, "preact_resnet_float")
    for x in float_inputs((1, *CNN_SHAPE)):
        np.testing.assert_allclose(run(data, x)[0], model(x, training=False).numpy(), rtol=1e-4, atol=1e-4)
    return data


def build_preact_int8() -> bytes:
    data = converted("preact_resnet", "int8")
    check_full_int8(data, "preact_resnet_int8", int8_io=True)
    report_common(data)
    check_preact_batch_norms(data, "preact_resnet_int8")
    worst, mean, agree = compare(data, converted("preact_resnet", "float"))
    report(f"int8 vs float: max {worst:.2f} LSB, mean {mean:.3f} LSB, argmax {agree}/{COMPARE_SAMPLES}")
    return data


# --------------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fixture:
    filename: str
    build: Callable[[], bytes]


FIXTURES: tuple[Fixture, ...] = (
    Fixture("qat_cnn_int8.tflite", lambda: build_qat_int8("qat_cnn")),
    Fixture("qat_cnn_int8_floatio.tflite", lambda: build_qat_int8("qat_cnn", int8_io=False)),
    Fixture("qat_cnn_fq.tflite", build_qat_cnn_fq),
    Fixture("qat_mobilenet_v2_035_96_int8.tflite", lambda: build_qat_int8("qat_mobilenet_v2")),
    Fixture("qat_mobilenet_v2_035_96_fq.tflite", lambda: build_qat_fq("qat_mobilenet_v2")),
    Fixture("pruned_cnn_float.tflite", build_pruned_float),
    Fixture("pruned_qat_cnn_fq.tflite", build_pruned_qat_fq),
    Fixture("pruned_qat_cnn_int8.tflite", build_pruned_qat_int8),
    Fixture("clustered_cnn_float.tflite", build_clustered_float),
    Fixture("clustered_qat_cnn_fq.tflite", build_clustered_qat_fq),
    Fixture("clustered_qat_cnn_int8.tflite", build_clustered_qat_int8),
    Fixture("preact_resnet_float.tflite", build_preact_float),
    Fixture("preact_resnet_int8.tflite", build_preact_int8),
)


def write_fixture(path: Path, data: bytes) -> str:
    if path.exists() and path.read_bytes() == data:
        return "unchanged"
    path.write_bytes(data)
    return f"wrote {len(data):,} bytes"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument(
        "--only", nargs="+", metavar="FILE", choices=[f.filename for f in FIXTURES], help="build only these"
    )
    args = parser.parse_args(argv)

    selected = [f for f in FIXTURES if not args.only or f.filename in args.only]
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        for fixture in selected:
            print(f"building {fixture.filename} ...", flush=True)
            start = time.monotonic()
            data = fixture.build()
            require(len(data) <= MAX_FIXTURE_BYTES, f"{fixture.filename} is {len(data)} bytes, over 2 MiB")
            smoke_run(data)
            report(f"{write_fixture(args.out / fixture.filename, data)} ({time.monotonic() - start:.0f} s)")
    except FixtureError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    total = sum((args.out / f.filename).stat().st_size for f in FIXTURES if (args.out / f.filename).exists())
    print(f"total size of the tfmot fixtures: {total:,} bytes")
    if total > MAX_TOTAL_BYTES:
        print(f"error: fixtures total {total} bytes, over {MAX_TOTAL_BYTES}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
