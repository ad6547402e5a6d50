"""Frontends: model files into the IR."""

from __future__ import annotations

import os
from pathlib import Path

from npupass.errors import ModelFormatError
from npupass.frontends.tflite import read_tflite
from npupass.ir.graph import Model
from npupass.ir.validate import validate


def load_model(path: str | os.PathLike[str], keep_nchw_io: bool = False) -> Model:
    """Read a model file: TFLite when it carries TFLite's identifier, else ONNX by its .onnx suffix.

    Raises ModelFormatError (InvalidModelError when an op violates its signature, see ir/validate.py)."""
    p = Path(path)
    if not p.exists():
        raise ModelFormatError(f"{p}: no such file")
    if p.is_dir():
        raise ModelFormatError(f"{p}: is a directory, not a model file")
    with open(p, "rb") as f:
        head = f.read(8)
    if head[4:8] != b"TFL3" and p.suffix.lower() == ".onnx":
        from npupass.frontends.onnx import read_onnx

        model = read_onnx(p, keep_nchw_io)
    else:
        model = read_tflite(p)
    validate(model)  # every op fits its signature before any pass or backend sees the model
    return model


__all__ = ["load_model", "read_tflite"]
