"""Build the sweep's failure fixture committed under ``tests/models/broken`` (apart from the fixtures
every model test loops over: LiteRT refuses it too).

* ``vela_crash_int8.tflite`` - ``cnn_int8.tflite`` with one per-channel zero point of its second
  convolution's weights set to -192 (channel 5). The file is well formed (npupass reads and writes it),
  but Vela 5.2 dies compiling it (SIGABRT, "double free or corruption"): the one-change crash class
  measured in shared/FACTS.md. LiteRT rejects the same file cleanly.

Usage::

    .venv/bin/python scripts/make_sweep_fixtures.py [--out tests/models/broken]

Needs only npupass; re-running gives a byte-identical file.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from npupass.backends.tflite import write_tflite
from npupass.frontends import load_model

MODELS = Path(__file__).parent.parent / "tests" / "models"


def vela_crash_model(source: Path, out: Path) -> None:
    model = load_model(source)
    graph = model.main
    conv = [op for op in graph.ops if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D")][1]
    weights = graph.inputs_of(conv)[1]
    assert weights is not None and weights.quant is not None
    zero_point = np.array(weights.quant.zero_point).copy()
    zero_point[5] = -192
    weights.quant = dataclasses.replace(weights.quant, zero_point=zero_point)
    write_tflite(model, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=MODELS / "broken")
    args = parser.parse_args()
    vela_crash_model(MODELS / "cnn_int8.tflite", args.out / "vela_crash_int8.tflite")
    print(f"wrote {args.out / 'vela_crash_int8.tflite'}")


if __name__ == "__main__":
    main()
