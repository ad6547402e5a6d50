"""Fixtures for model classes third-party files showed (issue 15): a float16-weight model and an
integer-only model with no float tensor. Run with TensorFlow installed (`pip install -e ".[fixtures]"`):

    python scripts/make_class_fixtures.py
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tensorflow as tf

OUT = Path(__file__).resolve().parent.parent / "tests" / "models"


def fp16_weights() -> bytes:
    """A small float CNN converted with float16 weights (FLOAT16 constants behind DEQUANTIZE)."""
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((16, 16, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(4)(x))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def integer_only() -> bytes:
    """int32 arithmetic with no float tensor at all (as in an integer audio front-end)."""

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 16], tf.int32)])
    def front_end(x: tf.Tensor) -> tf.Tensor:
        scaled = x * tf.constant(3, tf.int32) + tf.constant(np.arange(16, dtype=np.int32))
        return tf.maximum(scaled - x, tf.constant(0, tf.int32))

    converter = tf.lite.TFLiteConverter.from_concrete_functions([front_end.get_concrete_function()], front_end)
    return converter.convert()


def main() -> None:
    for name, make in (("fp16_weights_float.tflite", fp16_weights), ("int32_only.tflite", integer_only)):
        (OUT / name).write_bytes(make())
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
