"""Build the small TFLite fixtures committed under ``tests/models``.

Every fixture is produced by the stock ``tf.lite.TFLiteConverter`` from a seeded, weight-free model (no
downloads), checked for the property it exists for, and (all but custom_op) run in the LiteRT interpreter:

* ``cnn_float.tflite``            - tiny float CNN (1x32x32x3) covering the common builtins: CONV_2D,
  DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, MUL, MAX_POOL_2D, AVERAGE_POOL_2D, CONCATENATION, RESHAPE,
  SOFTMAX, PAD, MEAN and HARD_SWISH (plus LOGISTIC).
* ``cnn_int8.tflite``             - the same CNN, full-integer int8 with int8 input/output and per-channel
  weights (the converter default).
* ``cnn_int8_per_tensor.tflite``  - the same CNN, int8 with per-tensor weights and float input/output, so the
  graph starts with QUANTIZE and ends with DEQUANTIZE.
* ``control_flow.tflite``         - a tf.function with a data-dependent ``tf.while_loop`` and a ``tf.cond``:
  WHILE and IF ops, 5 subgraphs.
* ``custom_op.tflite``            - a CUSTOM op (``ExtractImagePatches``) with flexbuffer custom_options and
  the converter's metadata (min_runtime_version, CONVERSION_METADATA). Not runnable in LiteRT.
* ``buffer_offset.tflite``        - a small float model whose constant buffers live after the flatbuffer
  (``Buffer.offset``/``Buffer.size``), as written by ``_experimental_use_buffer_offset``.
* ``mobilenet_v2_035_96_float.tflite`` / ``mobilenet_v2_035_96_int8.tflite`` - Keras MobileNetV2
  (alpha 0.35, 96x96, 10 classes), float and full-int8 with int8 I/O.
* ``mobilenet_v3_small_int8.tflite`` - Keras MobileNetV3Small (alpha 0.75, 96x96, 10 classes), full-int8
  with int8 I/O: HARD_SWISH in int8.
* ``sparse_fc_float.tflite``      - Dense 64->128 (ReLU) -> Dense 128->10 whose first kernel is ~80% zeros
  (seeded pattern), converted with EXPERIMENTAL_SPARSITY: the weight carries SparsityParameters (dense
  rows, SPARSE_CSR columns: Uint16 segments, Uint8 indices) and a DENSIFY op feeds FULLY_CONNECTED.
  Matches the Keras model.
* ``sparse_fc_int8.tflite``       - the same with 300 input features (so Uint16 column indices), full int8
  with int8 I/O; bit-exact with the dense int8 conversion. LiteRT 2.3's default delegate cannot run it
  (XNNPACK fails to prepare DENSIFY -> int8 FULLY_CONNECTED), so only the builtin kernels are required.
* ``lstm_float.tflite``           - a Keras LSTM(8) over 1x6x4, fused to UNIDIRECTIONAL_SEQUENCE_LSTM with
  omitted optional inputs (-1) and variable (``is_variable``) state tensors; the state carries over between
  invocations until ``reset_all_variables()``.
* ``variables.tflite``            - a tf.Module moving average in a resource variable: VAR_HANDLE,
  READ_VARIABLE, ASSIGN_VARIABLE and CALL_ONCE (initializer subgraph).

Re-running gives byte-identical files, except that the buffer_offset converter orders its payloads
differently in every process; an existing file holding the same model is then kept as it is.

Usage::

    .venv/bin/python scripts/make_fixtures.py [--out tests/models] [--only FILE ...]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import io
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # must be set before TensorFlow is imported

import flatbuffers
import keras
import numpy as np
import tensorflow as tf
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType

SEED = 0
CALIBRATION_SAMPLES = 20
MAX_FIXTURE_BYTES = 2 * 1024 * 1024
MAX_TOTAL_BYTES = 6 * 1024 * 1024
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "models"

CNN_REQUIRED_OPS = frozenset(
    {
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "FULLY_CONNECTED",
        "ADD",
        "MUL",
        "MAX_POOL_2D",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "RESHAPE",
        "SOFTMAX",
        "PAD",
        "MEAN",
        "HARD_SWISH",
    }
)
WEIGHT_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})
BUILTIN_NAMES: dict[int, str] = {
    value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")
}
SPARSE_INDEX_NAMES: dict[int, str] = {
    value: name for name, value in vars(schema.SparseIndexVector).items() if not name.startswith("_")
}
SPARSE_DENSITY = 0.2  # share of the sparse fixtures' first kernel left non-zero
LSTM_STEPS, LSTM_FEATURES, LSTM_UNITS = 6, 4, 8
VARIABLE_SIZE, VARIABLE_DECAY = 4, 0.75

# The int8-I/O path warns that no input statistics were given; that is expected for full-int8 models.
warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")


class FixtureError(RuntimeError):
    """A generated model does not have the property its fixture exists for."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise FixtureError(message)


# --------------------------------------------------------------------------------------------------------
# Conversion helpers
# --------------------------------------------------------------------------------------------------------


def fresh_keras() -> None:
    """Reset Keras name counters and all RNG seeds, so a model is the same whatever was built before it."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)


def representative_dataset(
    shape: tuple[int, ...], samples: int = CALIBRATION_SAMPLES, seed: int = SEED
) -> Callable[[], Iterator[list[np.ndarray]]]:
    """Seeded uniform [-1, 1) calibration inputs; each call of the result replays the same samples."""

    def generate() -> Iterator[list[np.ndarray]]:
        rng = np.random.default_rng(seed)
        for _ in range(samples):
            yield [rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)]

    return generate


def convert_keras(
    model: keras.Model,
    *,
    int8: bool = False,
    int8_io: bool = True,
    per_channel: bool = True,
    buffer_offset: bool = False,
    sparsity: bool = False,
) -> bytes:
    """Convert a Keras model (fixed batch size) to a TFLite flatbuffer."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    optimizations = []
    if int8:
        optimizations.append(tf.lite.Optimize.DEFAULT)
        converter.representative_dataset = representative_dataset(tuple(model.inputs[0].shape))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        if not per_channel:
            converter._experimental_disable_per_channel = True
    if sparsity:
        # Mostly-zero constant weights are stored in the TFLite sparse format, densified by a DENSIFY op.
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    if optimizations:
        converter.optimizations = optimizations
    if buffer_offset:
        converter._experimental_use_buffer_offset = True
    # from_keras_model exports a SavedModel first, and Keras prints the exported signature to stdout.
    with contextlib.redirect_stdout(io.StringIO()):
        return bytes(converter.convert())


# --------------------------------------------------------------------------------------------------------
# Inspection helpers
# --------------------------------------------------------------------------------------------------------


def read_model(data: bytes) -> schema.ModelT:
    return schema.ModelT.InitFromPackedBuf(data, 0)


def opcode_name(model: schema.ModelT, opcode_index: int) -> str:
    code = model.operatorCodes[opcode_index]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema.BuiltinOperator.CUSTOM:
        return f"CUSTOM:{code.customCode.decode()}"
    return BUILTIN_NAMES[builtin]


def op_histogram(data: bytes) -> collections.Counter[str]:
    """Operator counts over all subgraphs, read straight from the flatbuffer."""
    model = read_model(data)
    counts: collections.Counter[str] = collections.Counter()
    for subgraph in model.subgraphs:
        for op in subgraph.operators or []:
            counts[opcode_name(model, op.opcodeIndex)] += 1
    return counts


def make_interpreter(data: bytes, *, delegates: bool) -> Interpreter:
    resolver = OpResolverType.AUTO if delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return Interpreter(model_content=data, experimental_op_resolver_type=resolver)


def interpreter_ops(data: bytes) -> set[str]:
    """Op names of the primary subgraph as LiteRT reports them (no delegate, so no DELEGATE nodes)."""
    return {op["op_name"] for op in make_interpreter(data, delegates=False)._get_ops_details()}


def random_input(detail: dict, rng: np.random.Generator) -> np.ndarray:
    shape, dtype = tuple(detail["shape"]), detail["dtype"]
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)


def invoke(data: bytes, inputs: list[np.ndarray] | None = None, *, delegates: bool = True) -> list[np.ndarray]:
    """Load and run a model once; random seeded inputs unless given."""
    interpreter = make_interpreter(data, delegates=delegates)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(SEED)
    for i, detail in enumerate(interpreter.get_input_details()):
        value = inputs[i] if inputs is not None else random_input(detail, rng)
        interpreter.set_tensor(detail["index"], value)
    interpreter.invoke()
    return [interpreter.get_tensor(detail["index"]) for detail in interpreter.get_output_details()]


def smoke_run(data: bytes, *, delegate: bool = True) -> None:
    """Invoke with the builtin reference kernels and (unless ``delegate`` is false) the default (XNNPACK)
    delegate."""
    for delegates in (False, True) if delegate else (False,):
        for output in invoke(data, delegates=delegates):
            if np.issubdtype(output.dtype, np.floating):
                require(bool(np.all(np.isfinite(output))), "model produced non-finite outputs")


def io_dtypes(data: bytes) -> tuple[list[type], list[type]]:
    interpreter = make_interpreter(data, delegates=False)
    return (
        [detail["dtype"] for detail in interpreter.get_input_details()],
        [detail["dtype"] for detail in interpreter.get_output_details()],
    )


def weight_scale_counts(data: bytes) -> list[int]:
    """Number of quantization scales of each CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED weight."""
    model = read_model(data)
    counts = []
    for subgraph in model.subgraphs:
        for op in subgraph.operators or []:
            if opcode_name(model, op.opcodeIndex) in WEIGHT_OPS:
                quantization = subgraph.tensors[op.inputs[1]].quantization
                counts.append(0 if quantization is None or quantization.scale is None else len(quantization.scale))
    return counts


def metadata_names(data: bytes) -> set[str]:
    return {entry.name.decode() for entry in read_model(data).metadata or []}


def constant_bytes(data: bytes) -> dict[str, bytes]:
    """Constant tensor contents by tensor name, whether stored inline or after the flatbuffer."""
    model = read_model(data)
    constants = {}
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            buffer = model.buffers[tensor.buffer]
            if buffer.offset > 1:
                constants[tensor.name.decode()] = data[buffer.offset : buffer.offset + buffer.size]
            elif buffer.data is not None and len(buffer.data):
                constants[tensor.name.decode()] = bytes(bytearray(buffer.data))
    return constants


# --------------------------------------------------------------------------------------------------------
# The CNN family
# --------------------------------------------------------------------------------------------------------


@functools.cache
def cnn_model() -> keras.Model:
    """Small CNN whose converted graph keeps every op in CNN_REQUIRED_OPS (batch norm gets folded)."""
    fresh_keras()
    layers = keras.layers
    inputs = keras.Input((32, 32, 3), batch_size=1, name="image")
    x = layers.ZeroPadding2D(1)(inputs)  # PAD
    x = layers.Conv2D(16, 3, strides=2)(x)  # 16x16
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(6.0)(x)
    a = layers.DepthwiseConv2D(3, padding="same")(x)
    a = layers.Activation("hard_swish")(a)  # HARD_SWISH
    b = layers.Conv2D(16, 1)(x)
    x = layers.Add()([a, b])  # ADD
    x = layers.Concatenate()([layers.MaxPooling2D(2)(x), layers.AveragePooling2D(2)(x)])  # 8x8x32
    # A reshape that really moves data; the converter drops reshapes that only add/remove unit dims.
    x = layers.Reshape((16, 16, 8))(x)
    x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)  # 8x8x32
    # Squeeze-and-excite: GAP -> MEAN, gate * features -> MUL (broadcast).
    gate = layers.GlobalAveragePooling2D()(x)
    gate = layers.Dense(8, activation="relu")(gate)
    gate = layers.Dense(32, activation="sigmoid")(gate)
    x = layers.Multiply()([x, layers.Reshape((1, 1, 32))(gate)])
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(10)(x)
    outputs = layers.Softmax()(x)
    model = keras.Model(inputs, outputs, name="cnn")
    # Give batch norm non-trivial statistics so folding changes the conv weights.
    bn = next(layer for layer in model.layers if isinstance(layer, layers.BatchNormalization))
    rng = np.random.default_rng(SEED)
    gamma, beta, mean, var = bn.get_weights()
    bn.set_weights(
        [
            rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
            rng.normal(0.0, 0.1, beta.shape).astype(np.float32),
            rng.normal(0.0, 0.1, mean.shape).astype(np.float32),
            rng.uniform(0.5, 1.5, var.shape).astype(np.float32),
        ]
    )
    return model


def check_cnn_ops(data: bytes) -> None:
    missing = CNN_REQUIRED_OPS - interpreter_ops(data)
    require(not missing, f"converted CNN lacks ops {sorted(missing)}")


def build_cnn_float() -> bytes:
    data = convert_keras(cnn_model())
    check_cnn_ops(data)
    require(io_dtypes(data) == ([np.float32], [np.float32]), "cnn_float must have float32 I/O")
    return data


def build_cnn_int8() -> bytes:
    data = convert_keras(cnn_model(), int8=True)
    check_cnn_ops(data)
    require(io_dtypes(data) == ([np.int8], [np.int8]), "cnn_int8 must have int8 I/O")
    scales = weight_scale_counts(data)
    require(any(n > 1 for n in scales), f"cnn_int8 should have per-channel weights, scale counts {scales}")
    return data


def build_cnn_int8_per_tensor() -> bytes:
    data = convert_keras(cnn_model(), int8=True, int8_io=False, per_channel=False)
    check_cnn_ops(data)
    require(io_dtypes(data) == ([np.float32], [np.float32]), "cnn_int8_per_tensor must have float32 I/O")
    require({"QUANTIZE", "DEQUANTIZE"} <= interpreter_ops(data), "expected QUANTIZE/DEQUANTIZE at the edges")
    scales = weight_scale_counts(data)
    require(bool(scales) and all(n == 1 for n in scales), f"expected per-tensor weights, scale counts {scales}")
    return data


# --------------------------------------------------------------------------------------------------------
# Control flow, custom op, buffer offsets
# --------------------------------------------------------------------------------------------------------


def control_flow_function() -> tf.types.experimental.ConcreteFunction:
    """RNN-like while loop whose trip count depends on the input, followed by a data-dependent cond."""
    rng = np.random.default_rng(SEED)
    weight = tf.constant(rng.normal(0.0, 0.5, size=(4, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
    def step(x: tf.Tensor) -> tf.Tensor:
        trips = tf.cast(tf.reduce_sum(tf.abs(x)), tf.int32) % 5 + 1

        def body(i: tf.Tensor, h: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return i + 1, tf.tanh(tf.matmul(h, weight) + x)

        _, h = tf.while_loop(lambda i, h: i < trips, body, (tf.constant(0), x))
        return tf.cond(tf.reduce_sum(h) > 0.0, lambda: tf.nn.softmax(h) * 2.0, lambda: tf.sigmoid(h) - 1.0)

    return step.get_concrete_function()


def build_control_flow() -> bytes:
    function = control_flow_function()
    data = bytes(tf.lite.TFLiteConverter.from_concrete_functions([function], function).convert())
    ops = op_histogram(data)
    require(ops["WHILE"] >= 1 and ops["IF"] >= 1, f"expected WHILE and IF, got {dict(ops)}")
    subgraphs = len(read_model(data).subgraphs)
    require(subgraphs >= 3, f"expected at least 3 subgraphs, got {subgraphs}")
    # Inputs giving trip counts 1, 2, 3 and 4 must match TensorFlow, and must take both cond branches
    # (the softmax branch sums to +2, the sigmoid branch is negative).
    branches = set()
    for row in ([[0.1, 0.2, 0.3, 0.3]], [[0.1, 0.2, 0.3, 0.4]], [[-0.5] * 4], [[1.0, -1.0, 1.0, -0.5]]):
        x = np.array(row, np.float32)
        expected = function(tf.constant(x)).numpy()
        (got,) = invoke(data, [x], delegates=False)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        branches.add(bool(expected.sum() > 0))
    require(branches == {True, False}, "control-flow test inputs do not exercise both IF branches")
    return data


def build_custom_op() -> bytes:
    rng = np.random.default_rng(SEED)
    kernel = tf.constant(rng.normal(0.0, 0.2, size=(1, 1, 27, 8)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32, name="image")])
    def patches(image: tf.Tensor) -> tf.Tensor:
        # ExtractImagePatches has no TFLite builtin; its attributes become the custom_options flexbuffer.
        x = tf.raw_ops.ExtractImagePatches(
            images=image, ksizes=[1, 3, 3, 1], strides=[1, 2, 2, 1], rates=[1, 1, 1, 1], padding="SAME"
        )
        return tf.nn.relu(tf.nn.conv2d(x, kernel, strides=1, padding="VALID"))

    function = patches.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], patches)
    converter.allow_custom_ops = True
    data = bytes(converter.convert())

    model = read_model(data)
    custom = [
        op
        for subgraph in model.subgraphs
        for op in subgraph.operators
        if opcode_name(model, op.opcodeIndex).startswith("CUSTOM:")
    ]
    require(len(custom) == 1, f"expected one CUSTOM op, got {dict(op_histogram(data))}")
    require(custom[0].customOptions is not None and len(custom[0].customOptions) > 0, "empty custom_options")
    missing = {"min_runtime_version", "CONVERSION_METADATA"} - metadata_names(data)
    require(not missing, f"custom_op.tflite lacks metadata {sorted(missing)}")
    return data


# Layout written by TF 2.21's converter with ``_experimental_use_buffer_offset = True`` (observed on this
# fixture and on small float/int8 variants; the padding rules match the converter's AppendBufferData):
#
# * The flatbuffer comes first and is complete on its own (root offset, then "TFL3" at bytes 4..8). It is
#   followed by zero padding to the next 16-byte boundary; the converter pads ``16 - size % 16`` bytes,
#   i.e. 1..16, a full 16 when the flatbuffer already ends aligned.
# * ``Buffer.offset`` is absolute, counted from byte 0 of the file (= byte 0 of the flatbuffer), and
#   ``Buffer.size`` is the exact payload length; these buffers have no ``data`` vector. Buffers without
#   contents (buffer 0, activations) keep offset = size = 0; offsets 0 and 1 mean "not set".
# * Only the first payload is 16-byte aligned. Payloads are then packed back to back with NO padding
#   between them, so later offsets are only as aligned as the sizes before them (8 mod 16 right after the
#   24-byte bias below). They come in the converter's hash-map order, which is neither buffer-index order
#   nor stable: it changes from one process to the next (see write_fixture). A reader must assume
#   neither sorted nor unique offsets.
# * After the last payload: 16 zero bytes ("for XNNPack"), then ``16 - size % 16`` zero bytes, then that
#   padding once more (the custom-options section, empty here): 48 bytes of tail in this fixture, 40 in
#   another model. Large custom options would be stored in that section (Operator.
#   large_custom_options_offset/size); custom_op.tflite does not use this mode.
# * Metadata: the converter adds a ``buffer_location`` entry whose buffer (kept inline) holds the 19
#   bytes ``outside flatbuffers`` (no NUL), next to ``min_runtime_version``. It does NOT add
#   CONVERSION_METADATA in this mode.
# * Only float conversions keep this layout: with post-training quantization the model is re-serialized
#   after quantizing and all data ends up inline again, though ``buffer_location`` is still present.
# * LiteRT also loads a file re-written (flatbuffers Python builder) with every payload 64-byte aligned
#   and only alignment padding after the last one, and one without the ``buffer_location`` entry: the
#   runtime keys on ``offset > 1``.
def build_buffer_offset() -> bytes:
    fresh_keras()
    layers = keras.layers
    inputs = keras.Input((16, 16, 3), batch_size=1, name="image")
    # The 24-byte bias of the first conv leaves the payloads after it off 16-byte boundaries.
    x = layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = layers.Conv2D(16, 1, strides=2, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(5)(x)
    model = keras.Model(inputs, outputs, name="buffer_offset")

    data = convert_keras(model, buffer_offset=True)
    parsed = read_model(data)
    external = [buffer for buffer in parsed.buffers if buffer.offset > 1]
    require(
        any(b.size > 0 and (b.data is None or len(b.data) == 0) for b in external),
        "no buffer is stored after the flatbuffer",
    )
    require(all(b.offset + b.size <= len(data) for b in external), "a buffer offset points past the file end")
    require("buffer_location" in metadata_names(data), "missing buffer_location metadata entry")
    # Same constants as the ordinary (inline) conversion, so offsets are absolute file positions.
    inline = convert_keras(model)
    require(constant_bytes(data) == constant_bytes(inline), "offset buffers differ from the inline conversion")
    expected = invoke(inline, delegates=False)
    np.testing.assert_allclose(invoke(data, delegates=False)[0], expected[0], rtol=1e-6, atol=1e-6)
    return data


# --------------------------------------------------------------------------------------------------------
# Sparse weights, LSTM state, resource variables
# --------------------------------------------------------------------------------------------------------


def sparse_fc_model(features: int, hidden: int, classes: int = 10) -> keras.Model:
    """Dense(features -> hidden, ReLU) -> Dense(hidden -> classes); the first kernel keeps a seeded random
    SPARSE_DENSITY of its weights, the rest are zero, so EXPERIMENTAL_SPARSITY stores it sparse."""
    fresh_keras()
    layers = keras.layers
    inputs = keras.Input((features,), batch_size=1, name="features")
    sparse = layers.Dense(hidden, activation="relu", name="sparse_fc")
    outputs = layers.Dense(classes, name="logits")(sparse(inputs))
    model = keras.Model(inputs, outputs, name="sparse_fc")
    rng = np.random.default_rng(SEED)
    kernel, bias = sparse.get_weights()
    kernel[rng.random(kernel.shape) >= SPARSE_DENSITY] = 0.0
    sparse.set_weights([kernel, rng.normal(0.0, 0.1, bias.shape).astype(np.float32)])
    return model


def sparse_index_types(data: bytes) -> list[tuple[str, str]]:
    """(segments, indices) vector types of every SPARSE_CSR dimension, e.g. ("Uint16Vector", "Uint8Vector")."""
    model = read_model(data)
    types = []
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            for dim in tensor.sparsity.dimMetadata if tensor.sparsity is not None else []:
                if dim.format == schema.DimensionType.SPARSE_CSR:
                    types.append((SPARSE_INDEX_NAMES[dim.arraySegmentsType], SPARSE_INDEX_NAMES[dim.arrayIndicesType]))
    return types


def check_sparse(data: bytes, name: str, index_types: tuple[str, str]) -> None:
    types = sparse_index_types(data)
    require(bool(types), f"{name} has no tensor with SPARSE_CSR sparsity parameters")
    require(index_types in types, f"{name}: expected (segments, indices) types {index_types}, got {types}")
    require(op_histogram(data)["DENSIFY"] >= 1, f"{name} lacks the DENSIFY op")


def sample_inputs(shape: tuple[int, ...], samples: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(SEED + 1)
    return [rng.uniform(-1.0, 1.0, size=shape).astype(np.float32) for _ in range(samples)]


def build_sparse_fc_float() -> bytes:
    # The 128x64 weight keeps ~1600 non-zeros: Uint16 row segments next to Uint8 column indices (< 64).
    model = sparse_fc_model(64, 128)
    data = convert_keras(model, sparsity=True)
    check_sparse(data, "sparse_fc_float", ("Uint16Vector", "Uint8Vector"))
    for x in sample_inputs((1, 64)):
        expected = model(x).numpy()
        for delegates in (False, True):
            (got,) = invoke(data, [x], delegates=delegates)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    return data


def build_sparse_fc_int8() -> bytes:
    # 300 input features: the 64x300 weight's column indices need Uint16.
    model = sparse_fc_model(300, 64)
    data = convert_keras(model, int8=True, sparsity=True)
    check_sparse(data, "sparse_fc_int8", ("Uint16Vector", "Uint16Vector"))
    require(io_dtypes(data) == ([np.int8], [np.int8]), "sparse_fc_int8 must have int8 I/O")
    # Sparsity changes only how the weight is stored: the dense int8 conversion computes the same bits.
    dense = convert_keras(model, int8=True)
    require(not sparse_index_types(dense), "the dense int8 conversion has sparse tensors")
    rng = np.random.default_rng(SEED + 1)
    for _ in range(3):
        x = rng.integers(-128, 127, size=(1, 300), endpoint=True, dtype=np.int8)
        (got,) = invoke(data, [x], delegates=False)
        (expected,) = invoke(dense, [x], delegates=False)
        require(np.array_equal(got, expected), "sparse int8 outputs differ from the dense int8 conversion")
    return data


def lstm_model() -> keras.Model:
    fresh_keras()
    inputs = keras.Input((LSTM_STEPS, LSTM_FEATURES), batch_size=1, name="sequence")
    lstm = keras.layers.LSTM(LSTM_UNITS, name="lstm")
    model = keras.Model(inputs, lstm(inputs), name="lstm")
    kernel, recurrent_kernel, bias = lstm.get_weights()  # the bias initialises to zeros (forget gate ones)
    lstm.set_weights(
        [kernel, recurrent_kernel, np.random.default_rng(SEED).normal(0.0, 0.3, bias.shape).astype(np.float32)]
    )
    return model


def lstm_function(model: keras.Model) -> tuple[tf.Module, tf.types.experimental.ConcreteFunction]:
    """The Keras LSTM as a tf.function the converter fuses into UNIDIRECTIONAL_SEQUENCE_LSTM.

    Keras 3 layers no longer carry the annotation the converter fuses on, so this wraps the same math in a
    function shaped like Keras 2's ``standard_lstm``: arguments (inputs, init_h, init_c, kernel,
    recurrent_kernel, bias), five results, and the attributes ``api_implements="lstm_..."``, ``time_major``
    and ``go_backwards``. The converter replaces its body with the fused op; the zero initial states
    become the op's variable state tensors.
    """
    kernel, recurrent_kernel, bias = (tf.constant(w, tf.float32) for w in model.get_layer("lstm").get_weights())

    @tf.function(
        autograph=False,
        experimental_attributes={"api_implements": "lstm_fixture", "time_major": False, "go_backwards": False},
    )
    def standard_lstm(
        inputs: tf.Tensor,
        init_h: tf.Tensor,
        init_c: tf.Tensor,
        kernel: tf.Tensor,
        recurrent_kernel: tf.Tensor,
        bias: tf.Tensor,
    ) -> tuple[tf.Tensor, ...]:
        h, c, sequence = init_h, init_c, []
        for step in range(inputs.shape[1]):
            z = tf.matmul(inputs[:, step], kernel) + tf.matmul(h, recurrent_kernel) + bias
            i, f, g, o = tf.split(z, 4, axis=1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            h = tf.sigmoid(o) * tf.tanh(c)
            sequence.append(h)
        return h, tf.stack(sequence, axis=1), h, c, tf.constant(0.0)

    class Lstm(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, LSTM_STEPS, LSTM_FEATURES], tf.float32, name="sequence")])
        def __call__(self, x: tf.Tensor) -> tf.Tensor:
            state = tf.zeros([1, LSTM_UNITS])
            return standard_lstm(x, state, state, kernel, recurrent_kernel, bias)[0]

    module = Lstm()
    return module, module.__call__.get_concrete_function()


def build_lstm_float() -> bytes:
    model = lstm_model()
    module, function = lstm_function(model)
    data = bytes(tf.lite.TFLiteConverter.from_concrete_functions([function], module).convert())

    parsed = read_model(data)
    graph = parsed.subgraphs[0]
    lstms = [op for op in graph.operators if opcode_name(parsed, op.opcodeIndex) == "UNIDIRECTIONAL_SEQUENCE_LSTM"]
    require(len(lstms) == 1, f"expected one UNIDIRECTIONAL_SEQUENCE_LSTM, got {dict(op_histogram(data))}")
    inputs = list(lstms[0].inputs)
    require(len(inputs) == 24 and -1 in inputs, f"expected 24 LSTM inputs with omitted ones (-1), got {inputs}")
    states = [graph.tensors[i] for i in inputs[18:20]]  # output_state, cell_state
    require(all(t.isVariable for t in states), "the LSTM state inputs are not variable tensors")
    require(all(parsed.buffers[t.buffer].data is None for t in states), "the LSTM state tensors hold data")

    x = sample_inputs((1, LSTM_STEPS, LSTM_FEATURES), samples=1)[0]
    expected = model(x).numpy()
    for delegates in (False, True):
        np.testing.assert_allclose(invoke(data, [x], delegates=delegates)[0], expected, rtol=1e-5, atol=1e-6)
    # The state variables carry over to the next invocation until reset_all_variables().
    interpreter = make_interpreter(data, delegates=False)
    interpreter.allocate_tensors()
    outputs = []
    for reset in (False, False, True):
        if reset:
            interpreter.reset_all_variables()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    require(not np.array_equal(outputs[0], outputs[1]), "the LSTM state does not carry across invocations")
    require(np.array_equal(outputs[0], outputs[2]), "reset_all_variables() does not restore the LSTM state")
    return data


class MovingAverage(tf.Module):
    """Exponential moving average of its inputs, kept in a resource variable with a seeded start value."""

    def __init__(self) -> None:
        super().__init__()
        start = np.random.default_rng(SEED).normal(0.0, 1.0, size=(VARIABLE_SIZE,)).astype(np.float32)
        self.average = tf.Variable(start, name="average")

    @tf.function(input_signature=[tf.TensorSpec([VARIABLE_SIZE], tf.float32, name="x")])
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        self.average.assign(VARIABLE_DECAY * self.average + (1.0 - VARIABLE_DECAY) * x)
        return self.average * 2.0


def build_variables() -> bytes:
    module = MovingAverage()
    start = module.average.numpy()
    function = module.__call__.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], module)
    converter.experimental_enable_resource_variables = True
    data = bytes(converter.convert())

    ops = op_histogram(data)
    missing = {"CALL_ONCE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"} - set(ops)
    require(not missing, f"variables.tflite lacks {sorted(missing)}: {dict(ops)}")
    subgraphs = len(read_model(data).subgraphs)
    require(subgraphs >= 2, f"expected an initializer subgraph for CALL_ONCE, got {subgraphs} subgraph(s)")
    # Three steps on one interpreter follow the Python recurrence, so the variable really is updated.
    interpreter = make_interpreter(data, delegates=False)
    interpreter.allocate_tensors()
    average = start.astype(np.float64)
    for x in sample_inputs((VARIABLE_SIZE,)):
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        average = VARIABLE_DECAY * average + (1.0 - VARIABLE_DECAY) * x
        got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        np.testing.assert_allclose(got, 2.0 * average, rtol=1e-5, atol=1e-6)
    return data


# --------------------------------------------------------------------------------------------------------
# Keras applications (weights=None: random init, nothing downloaded)
# --------------------------------------------------------------------------------------------------------


@functools.cache
def mobilenet_v2() -> keras.Model:
    fresh_keras()
    return keras.applications.MobileNetV2(
        input_tensor=keras.Input((96, 96, 3), batch_size=1), alpha=0.35, weights=None, classes=10
    )


def mobilenet_v3_small() -> keras.Model:
    fresh_keras()
    return keras.applications.MobileNetV3Small(
        input_tensor=keras.Input((96, 96, 3), batch_size=1),
        alpha=0.75,
        weights=None,
        classes=10,
        include_preprocessing=False,
    )


def build_mobilenet_v2_float() -> bytes:
    return convert_keras(mobilenet_v2())


def build_mobilenet_v2_int8() -> bytes:
    data = convert_keras(mobilenet_v2(), int8=True)
    require(io_dtypes(data) == ([np.int8], [np.int8]), "mobilenet_v2 int8 must have int8 I/O")
    return data


def build_mobilenet_v3_small_int8() -> bytes:
    data = convert_keras(mobilenet_v3_small(), int8=True)
    require(io_dtypes(data) == ([np.int8], [np.int8]), "mobilenet_v3_small int8 must have int8 I/O")
    require("HARD_SWISH" in interpreter_ops(data), "mobilenet_v3_small int8 lacks HARD_SWISH")
    require(len(data) <= 1_500_000, f"mobilenet_v3_small int8 is {len(data)} bytes, over the 1.5 MB budget")
    return data


# --------------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fixture:
    filename: str
    build: Callable[[], bytes]
    runnable: bool = True
    delegate: bool = True  # False: LiteRT's default delegate cannot prepare it, run the builtin kernels only


FIXTURES: tuple[Fixture, ...] = (
    Fixture("cnn_float.tflite", build_cnn_float),
    Fixture("cnn_int8.tflite", build_cnn_int8),
    Fixture("cnn_int8_per_tensor.tflite", build_cnn_int8_per_tensor),
    Fixture("control_flow.tflite", build_control_flow),
    Fixture("custom_op.tflite", build_custom_op, runnable=False),
    Fixture("buffer_offset.tflite", build_buffer_offset),
    Fixture("mobilenet_v2_035_96_float.tflite", build_mobilenet_v2_float),
    Fixture("mobilenet_v2_035_96_int8.tflite", build_mobilenet_v2_int8),
    Fixture("mobilenet_v3_small_int8.tflite", build_mobilenet_v3_small_int8),
    Fixture("sparse_fc_float.tflite", build_sparse_fc_float),
    Fixture("sparse_fc_int8.tflite", build_sparse_fc_int8, delegate=False),
    Fixture("lstm_float.tflite", build_lstm_float),
    Fixture("variables.tflite", build_variables),
)


def inline_form(data: bytes) -> bytes:
    """The model re-packed with every offset-stored payload moved inline.

    The buffer_offset converter emits payloads in a per-process hash order, so two conversions of one
    model differ only in payload placement; their inline forms are equal.
    """
    model = read_model(data)
    for buffer in model.buffers:
        if buffer.offset > 1:
            buffer.data = np.frombuffer(data[buffer.offset : buffer.offset + buffer.size], np.uint8)
            buffer.offset = buffer.size = 0
    builder = flatbuffers.Builder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def write_fixture(path: Path, data: bytes) -> str:
    """Write ``data`` unless ``path`` already holds the same model; say what happened."""
    if path.exists():
        old = path.read_bytes()
        if old == data:
            return "unchanged"
        if len(old) == len(data) and inline_form(old) == inline_form(data):
            return "unchanged (kept the existing payload order)"
    path.write_bytes(data)
    return f"wrote {len(data):,} bytes"


def format_histogram(counts: collections.Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def print_summary(out_dir: Path, names: list[str]) -> None:
    rows = []
    for name in names:
        data = (out_dir / name).read_bytes()
        rows.append((name, len(data), len(read_model(data).subgraphs), format_histogram(op_histogram(data))))
    width = max(len(row[0]) for row in rows)
    print(f"\n{'file':<{width}}  {'bytes':>9}  sg  ops (all subgraphs)")
    for name, size, subgraphs, histogram in rows:
        print(f"{name:<{width}}  {size:>9,}  {subgraphs:>2}  {histogram}")
    print(f"{'total':<{width}}  {sum(row[1] for row in rows):>9,}")


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
            data = fixture.build()
            require(len(data) <= MAX_FIXTURE_BYTES, f"{fixture.filename} is {len(data)} bytes, over 2 MiB")
            if fixture.runnable:
                smoke_run(data, delegate=fixture.delegate)
            print(f"  {write_fixture(args.out / fixture.filename, data)}", flush=True)
    except FixtureError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    print_summary(args.out, [f.filename for f in selected])
    total = sum((args.out / f.filename).stat().st_size for f in FIXTURES if (args.out / f.filename).exists())
    if total > MAX_TOTAL_BYTES:
        print(f"error: fixtures total {total} bytes, over {MAX_TOTAL_BYTES}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
