"""Verification: run models in the reference interpreter and compare their outputs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from npupass.frontends import load_model
from npupass.verify.compare import Comparison, OutputComparison, Tolerance, compare, float_input_ranges
from npupass.verify.litert import LiteRTModel, ReferenceError, make_inputs


def verify_files(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    samples: int = 3,
    seed: int = 0,
    tolerance: Tolerance | None = None,
    delegates: str = "none",
    progress: Callable[[int], None] | None = None,
) -> Comparison:
    """Compare two TFLite files in LiteRT on `samples` seeded inputs (`progress(done)` after each)."""
    model_a = load_model(a)
    load_model(b)  # our reader validates the file before LiteRT sees it
    ranges = float_input_ranges(model_a)
    ref_a = LiteRTModel(Path(a).read_bytes(), delegates)
    ref_b = LiteRTModel(Path(b).read_bytes(), delegates)
    return compare(ref_a, ref_b, samples, seed, tolerance, ranges, progress)


__all__ = [
    "Comparison",
    "LiteRTModel",
    "OutputComparison",
    "ReferenceError",
    "Tolerance",
    "compare",
    "float_input_ranges",
    "make_inputs",
    "verify_files",
]
