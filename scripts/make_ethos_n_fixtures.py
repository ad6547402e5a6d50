"""Build the Ethos-N fixture under ``tests/models``: ``mbv2_ethos_n_int8.tflite``.

A small MobileNetV2-style int8 model (1x64x64x3, seeded weights, no downloads) made by the stock
TFLite converter, with what Ethos-N78 declines and legalize-ethos-n rewrites:

* ``ZeroPadding2D(((0, 1), (0, 1)))`` before a VALID stride-2 3x3 depthwise conv (Keras' MobileNetV2
  ``correct_pad``): PAD + DEPTHWISE_CONV_2D;
* a pre-activation batch norm after the residual ADD, as x * gamma + beta: MUL + ADD by per-channel
  constants (nothing to fold them into);
* a lone per-channel MUL after a ReLU conv;
* ``MaxPool2D(3, 2, "valid")`` on a 16x16 input (Ethos-N runs a VALID 3x3 stride-2 pool on odd inputs only);
* ``GlobalAveragePooling2D`` over 7x7: MEAN without keep_dims. The converter calibrates MEAN's output
  scale on its own; the script gives it the input's quantization (what a converter that keeps pooling
  quantization, or a QAT model with tied ranges, makes), so one average pool can compute it exactly.

Run: ``TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python scripts/make_ethos_n_fixtures.py [--out-dir tests/models]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

import keras
import numpy as np
import tensorflow as tf

from npupass.backends.tflite import serialize_tflite
from npupass.frontends.tflite import read_tflite
from npupass.ir.graph import Model, Op, Tensor
from npupass.ir.ops import same_padding
from npupass.ir.types import DType, Quantization
from npupass.passes.pattern import new_constant
from npupass.verify.litert import LiteRTModel

SEED = 0
NAME = "mbv2_ethos_n_int8.tflite"


class ChannelAffine(keras.layers.Layer):
    """x * gamma + beta per channel (beta optional): an unfolded batch norm the converter keeps."""

    def __init__(self, shift: bool = True, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.shift = shift

    def build(self, input_shape: tuple[int, ...]) -> None:
        rng = np.random.default_rng(SEED + input_shape[-1])
        self.gamma = self.add_weight(
            shape=(input_shape[-1],), initializer=keras.initializers.Constant(rng.uniform(0.5, 1.5, input_shape[-1]))
        )
        if self.shift:
            self.beta = self.add_weight(
                shape=(input_shape[-1],),
                initializer=keras.initializers.Constant(rng.uniform(-0.3, 0.3, input_shape[-1])),
            )

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return x * self.gamma + self.beta if self.shift else x * self.gamma


def model() -> keras.Model:
    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)
    layers = keras.layers
    inp = keras.Input((64, 64, 3), batch_size=1)
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu6")(inp)  # 32x32x16
    y = layers.Conv2D(32, 1, activation="relu6")(x)
    y = layers.ZeroPadding2D(((0, 1), (0, 1)))(y)  # 33x33
    y = layers.DepthwiseConv2D(3, strides=2, padding="valid", activation="relu6")(y)  # 16x16x32
    y = layers.Conv2D(24, 1)(y)
    shortcut = layers.Conv2D(24, 1, strides=2)(x)
    z = layers.Add()([y, shortcut])
    z = ChannelAffine()(z)  # MUL + ADD
    z = layers.ReLU()(z)
    z = layers.MaxPool2D(3, strides=2, padding="valid")(z)  # 16x16 -> 7x7
    z = layers.Conv2D(48, 1, activation="relu")(z)
    z = ChannelAffine(shift=False)(z)  # a lone MUL
    z = layers.GlobalAveragePooling2D()(z)  # MEAN over 7x7
    out = layers.Dense(10, activation="softmax")(z)
    return keras.Model(inp, out)


def convert(m: keras.Model) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(m)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def calibration() -> object:
        rng = np.random.default_rng(SEED)
        for _ in range(16):
            yield [rng.uniform(-1.0, 1.0, (1, 64, 64, 3)).astype(np.float32)]

    converter.representative_dataset = calibration
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()):
        return bytes(converter.convert())


def explicit_pad(m: Model) -> None:
    """The converter folds ZeroPadding2D into the stride-2 depthwise conv (SAME); put it back as
    PAD + VALID, as Keras wrote it (and as ONNX exports of MobileNetV2 have it)."""
    g = m.main
    for op in g.ops:
        if op.type == "DEPTHWISE_CONV_2D" and op.options["stride_h"] == 2 and op.options["padding"] == "SAME":
            x = g.inputs_of(op)[0]
            assert x is not None and x.shape is not None
            n, h, w, c = x.shape
            top, bottom = same_padding(h, 3, 2)
            left, right = same_padding(w, 3, 2)
            padded = Tensor(f"{x.name}/pad", x.dtype, (n, h + top + bottom, w + left + right, c), quant=x.quant)
            paddings = new_constant(
                f"{x.name}/paddings", np.array([[0, 0], [top, bottom], [left, right], [0, 0]]), DType.INT32
            )
            pad = Op("PAD", {}, "PadOptions", name=padded.name)
            g.add_op(pad, [x, paddings], [padded], place=op)
            g.set_input(op, 0, padded)
            op.options["padding"] = "VALID"


def tie_mean_quantization(m: Model) -> None:
    """Give every MEAN's output its input's quantization (see the module docstring)."""
    g = m.main
    for op in g.ops:
        if op.type == "MEAN":
            x, y = g.inputs_of(op)[0], g.outputs_of(op)[0]
            assert x is not None and x.quant is not None
            y.quant = Quantization(x.quant.scale.copy(), x.quant.zero_point.copy(), x.quant.axis)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent.parent / "tests" / "models")
    args = parser.parse_args()
    m = read_tflite(convert(model()))
    explicit_pad(m)
    tie_mean_quantization(m)
    data = serialize_tflite(m)
    histogram = Counter(op.type for op in read_tflite(data).main.ops)
    for wanted in ("PAD", "MUL", "MEAN", "MAX_POOL_2D"):
        if not histogram[wanted]:
            raise SystemExit(f"the converter left no {wanted}; the fixture would not test what it is for")
    LiteRTModel(data).run([np.zeros((1, 64, 64, 3), np.int8)])  # it runs
    path = args.out_dir / NAME
    path.write_bytes(data)
    print(f"wrote {path} ({len(data):,} bytes): " + ", ".join(f"{k} {v}" for k, v in sorted(histogram.items())))


if __name__ == "__main__":
    main()
