"""Frontends: model files into the IR."""

from __future__ import annotations

import os
from pathlib import Path

from npupass.errors import ModelFormatError
from npupass.frontends.tflite import read_tflite
from npupass.ir.graph import Model
from npupass.ir.validate import validate


def load_model(
    path: str | os.PathLike[str],
    keep_nchw_io: bool = False,
    calibration: str | os.PathLike[str] | None = None,
    integer: bool = False,
) -> Model:
    """Read a model, recognised by its content: TFLite by its 'TFL3' identifier, ONNX by its protobuf
    framing (or its .onnx suffix, which gets ONNX's own error for a damaged file).

    A SavedModel directory, a .keras or a .h5 file goes through TensorFlow's converter (frontends.keras):
    `calibration` (.npy/.npz) quantizes a float model; `integer` refuses a float model without it.
    Raises ModelFormatError (InvalidModelError when an op violates its signature, see ir/validate.py).
    """
    from npupass.frontends.keras import keras_format, load_keras

    p = Path(path)
    if not p.exists():
        raise ModelFormatError(f"{p}: no such file")
    fmt = keras_format(p)
    if fmt is not None:
        model = load_keras(p, fmt, calibration, integer)
        validate(model)
        model.source_path = str(p)
        return model
    if calibration is not None:
        raise ModelFormatError(f"{p}: --calibration applies to Keras and SavedModel inputs, not to this model")
    if p.is_dir():
        raise ModelFormatError(f"{p}: is a directory, not a model file")
    with open(p, "rb") as f:
        head = f.read(8)
    if head[4:8] != b"TFL3" and (p.suffix.lower() == ".onnx" or _looks_like_onnx(head)):
        from npupass.frontends.onnx import read_onnx

        model = read_onnx(p, keep_nchw_io)
    else:
        model = read_tflite(p)
    validate(model)  # every op fits its signature before any pass or backend sees the model
    model.source_path = str(p)
    return model


def _looks_like_onnx(head: bytes) -> bool:
    """An ONNX ModelProto starts with field 1 (ir_version, a varint: byte 0x08) and a small version."""
    return len(head) >= 2 and head[0] == 0x08 and 3 <= head[1] <= 20


__all__ = ["load_model", "read_tflite"]
