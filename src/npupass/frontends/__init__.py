"""Frontends: model files into the IR."""

from __future__ import annotations

import os
from pathlib import Path

from npupass.errors import ModelFormatError
from npupass.frontends.tflite import read_tflite
from npupass.ir.graph import Model


def load_model(
    path: str | os.PathLike[str],
    keep_nchw_io: bool = False,
    calibration: str | os.PathLike[str] | None = None,
    integer: bool = False,
) -> Model:
    """Read a model file: TFLite when it carries TFLite's identifier, else ONNX by its .onnx suffix.

    A SavedModel directory, a .keras or a .h5 file goes through TensorFlow's converter (frontends.keras):
    `calibration` (.npy/.npz) quantizes a float model; `integer` refuses a float model without it.
    """
    from npupass.frontends.keras import keras_format, load_keras

    p = Path(path)
    if not p.exists():
        raise ModelFormatError(f"{p}: no such file")
    fmt = keras_format(p)
    if fmt is not None:
        return load_keras(p, fmt, calibration, integer)
    if calibration is not None:
        raise ModelFormatError(f"{p}: --calibration applies to Keras and SavedModel inputs, not to this model")
    if p.is_dir():
        raise ModelFormatError(f"{p}: is a directory, not a model file")
    with open(p, "rb") as f:
        head = f.read(8)
    if head[4:8] != b"TFL3" and p.suffix.lower() == ".onnx":
        from npupass.frontends.onnx import read_onnx

        return read_onnx(p, keep_nchw_io)
    return read_tflite(p)


__all__ = ["load_model", "read_tflite"]
