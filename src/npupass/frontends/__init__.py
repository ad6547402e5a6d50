"""Frontends: model files into the IR."""

from __future__ import annotations

import os
from pathlib import Path

from npupass.errors import ModelFormatError
from npupass.frontends.tflite import read_tflite
from npupass.ir.graph import Model


def load_model(path: str | os.PathLike[str], keep_nchw_io: bool = False) -> Model:
    """Read a model file: TFLite when it carries TFLite's identifier, else ONNX by its .onnx suffix."""
    p = Path(path)
    if not p.exists():
        raise ModelFormatError(f"{p}: no such file")
    if p.is_dir():
        raise ModelFormatError(f"{p}: is a directory, not a model file")
    with open(p, "rb") as f:
        head = f.read(8)
    if head[4:8] != b"TFL3" and p.suffix.lower() == ".onnx":
        from npupass.frontends.onnx import read_onnx

        return read_onnx(p, keep_nchw_io)
    return read_tflite(p)


__all__ = ["load_model", "read_tflite"]
