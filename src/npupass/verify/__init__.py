"""Verification: run models in the reference interpreter and compare their outputs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from npupass.frontends import load_model
from npupass.ir.graph import Model
from npupass.verify.compare import Comparison, OutputComparison, Tolerance, compare, float_input_ranges
from npupass.verify.litert import LiteRTModel, ReferenceError, make_inputs
from npupass.verify.onnxrt import AsTflite, OnnxRuntimeModel


def verify_files(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    samples: int = 3,
    seed: int = 0,
    tolerance: Tolerance | None = None,
    delegates: str = "none",
    progress: Callable[[int], None] | None = None,
) -> Comparison:
    """Compare two models on `samples` seeded inputs (`progress(done)` after each): TFLite files in
    LiteRT, ONNX files in onnxruntime (a TFLite model is then fed and read in the ONNX layout)."""
    model_a = load_model(a)
    model_b = load_model(b)  # our readers validate each file before an interpreter sees it
    _refuse_huge_tensors(model_a, a)
    _refuse_huge_tensors(model_b, b)
    tolerance = tolerance or default_tolerance(model_a, model_b)
    ranges = float_input_ranges(model_a) if model_a.source_format == "tflite" else {}
    ref_a, ref_b = _reference(model_a, a, delegates), _reference(model_b, b, delegates)
    if isinstance(ref_a, OnnxRuntimeModel) and isinstance(ref_b, LiteRTModel):
        ref_a = AsTflite(ref_a, ref_b, _layout(model_b))  # type: ignore[assignment]
    elif isinstance(ref_b, OnnxRuntimeModel) and isinstance(ref_a, LiteRTModel):
        ref_b = AsTflite(ref_b, ref_a, _layout(model_a))  # type: ignore[assignment]
    return compare(ref_a, ref_b, samples, seed, tolerance, ranges, progress)  # type: ignore[arg-type]


def default_tolerance(a: Model, b: Model) -> Tolerance:
    """The tolerance for comparing `a` with `b`: exact-ish within one interpreter; across onnxruntime and
    LiteRT, floats within 1e-4 and quantized outputs within 2 output steps (the two round differently)."""
    if (a.source_format == "onnx") == (b.source_format == "onnx"):
        return Tolerance()
    from npupass.verify.passes import output_steps

    tflite = b if a.source_format == "onnx" else a
    step = max(output_steps(tflite), default=0.0)
    return Tolerance(atol=max(2 * step, 1e-5), rtol=1e-4, max_steps=2)


def _layout(model: Model) -> dict[str, list[list[int]]] | None:
    """The boundary layout npupass's ONNX import recorded in a TFLite model, if any."""
    import json

    from npupass.frontends.onnx.importer import LAYOUT_METADATA

    raw = model.metadata_entry(LAYOUT_METADATA)
    try:
        return json.loads(raw) if raw is not None else None
    except (ValueError, UnicodeDecodeError):
        return None


def _reference(model: Model, path: str | os.PathLike[str], delegates: str) -> LiteRTModel | OnnxRuntimeModel:
    if model.source_format == "onnx":
        return OnnxRuntimeModel(path)
    if model.conversion is not None:  # a Keras/SavedModel input: TensorFlow's converter made this model
        from npupass.backends.tflite import serialize_tflite

        return LiteRTModel(serialize_tflite(model), delegates)
    return LiteRTModel(Path(path).read_bytes(), delegates)


MAX_TENSOR_BYTES = 1 << 31  # LiteRT's arena cannot hold more; a larger shape is a lie or a mistake


def _refuse_huge_tensors(model: Model, path: str | os.PathLike[str]) -> None:
    for graph in model.subgraphs:
        for t in graph.tensors:
            itemsize = t.dtype.numpy.itemsize if t.dtype.numpy is not None else 1
            size = (t.num_elements or 0) * itemsize
            if size > MAX_TENSOR_BYTES:
                raise ReferenceError(
                    f"{path}: tensor '{t.name}' of shape {list(t.shape or ())} needs {size:,} bytes; refusing to run it"
                )


__all__ = [
    "Comparison",
    "LiteRTModel",
    "OutputComparison",
    "ReferenceError",
    "Tolerance",
    "compare",
    "default_tolerance",
    "float_input_ranges",
    "make_inputs",
    "verify_files",
]
