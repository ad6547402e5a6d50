"""The ONNX frontend: an ONNX model into the IR's TFLite semantics (NHWC, TFLite ops)."""

from __future__ import annotations

import os

from npupass.frontends.onnx import ops  # noqa: F401 - registers the converters
from npupass.frontends.onnx.importer import CONVERTERS, FOLDERS, Importer
from npupass.frontends.onnx.loader import load_onnx_with_notes
from npupass.ir.graph import Model


def read_onnx(path: str | os.PathLike[str], keep_nchw_io: bool = False) -> Model:
    """Read an ONNX file. 4-D inputs and outputs become NHWC unless `keep_nchw_io`."""
    proto, notes = load_onnx_with_notes(path)
    model = Importer(proto, keep_nchw_io).run()
    model.notes.extend(notes)
    return model


def supported_ops() -> list[str]:
    return sorted(set(CONVERTERS) | set(FOLDERS))


__all__ = ["read_onnx", "supported_ops"]
