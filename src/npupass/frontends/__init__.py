"""Frontends: model files into the IR."""

from __future__ import annotations

import os
from pathlib import Path

from npupass.errors import ModelFormatError
from npupass.frontends.tflite import read_tflite
from npupass.ir.graph import Model


def load_model(path: str | os.PathLike[str]) -> Model:
    """Read a model file, choosing the frontend from the file's contents."""
    p = Path(path)
    if not p.exists():
        raise ModelFormatError(f"{p}: no such file")
    if p.is_dir():
        raise ModelFormatError(f"{p}: is a directory, not a model file")
    return read_tflite(p)


__all__ = ["load_model", "read_tflite"]
