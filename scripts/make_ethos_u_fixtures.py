"""Build the Ethos-U placement fixtures committed under ``tests/models``.

* ``cpu_ops_int8.tflite`` - a small full-int8 CNN (1x16x16x3, int8 I/O) with ops Vela cannot place in the
  middle: Conv2D(8)+ReLU -> L2 normalization over channels (L2_NORMALIZATION) -> Conv2D(8)+ReLU ->
  a channel GATHER (constant indices) -> Conv2D(16) -> GlobalAveragePool -> Dense(10). On Ethos-U55 the
  L2_NORMALIZATION and GATHER stay on the CPU and split the NPU work into three parts.

Usage::

    .venv/bin/python scripts/make_ethos_u_fixtures.py [--out tests/models]

Needs the ``fixtures`` extra (TensorFlow). Seeded; re-running gives byte-identical files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import tensorflow as tf
from make_fixtures import convert_keras, fresh_keras, keras, op_histogram, require, smoke_run


def cpu_ops_model() -> keras.Model:
    fresh_keras()
    x = inputs = keras.Input((16, 16, 3), batch_size=1)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.Lambda(lambda t: tf.math.l2_normalize(t, axis=-1))(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.Lambda(lambda t: tf.gather(t, [7, 6, 5, 4, 3, 2, 1, 0], axis=-1))(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(10)(x)
    return keras.Model(inputs, x)


def build_cpu_ops_int8() -> bytes:
    data = convert_keras(cpu_ops_model(), int8=True)
    ops = op_histogram(data)
    require(ops["L2_NORMALIZATION"] == 1 and ops["GATHER"] == 1, f"unexpected ops {dict(ops)}")
    smoke_run(data)
    return data


BUILDERS = {"cpu_ops_int8.tflite": build_cpu_ops_int8}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent.parent / "tests" / "models")
    args = parser.parse_args(argv)
    for name, build in BUILDERS.items():
        data = build()
        (args.out / name).write_bytes(data)
        print(f"{name}: {len(data):,} bytes, ops {dict(op_histogram(data))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
