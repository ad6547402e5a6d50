"""Frontends: model files into the IR."""

from __future__ import annotations

import os
from pathlib import Path

from npupass.errors import ModelFormatError
from npupass.frontends.tflite import read_tflite
from npupass.ir.graph import Model


def load_model(path: str | os.PathLike[str], keep_nchw_io: bool = False) -> Model:
    """Read a model file, recognised by its content: TFLite by its 'TFL3' identifier, ONNX by its protobuf
    framing (or its .onnx suffix, which gets ONNX's own error for a damaged file)."""
    p = Path(path)
    if not p.exists():
        raise ModelFormatError(f"{p}: no such file")
    if p.is_dir():
        raise ModelFormatError(f"{p}: is a directory, not a model file")
    with open(p, "rb") as f:
        head = f.read(8)
    if head[4:8] != b"TFL3" and (p.suffix.lower() == ".onnx" or _looks_like_onnx(head)):
        from npupass.frontends.onnx import read_onnx

        model = read_onnx(p, keep_nchw_io)
    else:
        model = read_tflite(p)
    model.source_path = str(p)
    return model


def _looks_like_onnx(head: bytes) -> bool:
    """An ONNX ModelProto starts with field 1 (ir_version, a varint: byte 0x08) and a small version."""
    return len(head) >= 2 and head[0] == 0x08 and 3 <= head[1] <= 20


__all__ = ["load_model", "read_tflite"]
