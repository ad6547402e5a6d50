"""Compare two models output by output on the same seeded inputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from npupass.ir.graph import Model
from npupass.verify.litert import LiteRTModel, TensorSpec, make_inputs


@dataclass(frozen=True)
class Tolerance:
    """Floats agree when |a - b| <= atol + rtol * |a|; integers when they differ by <= max_steps."""

    atol: float = 1e-6
    rtol: float = 1e-5
    max_steps: int = 0


@dataclass
class OutputComparison:
    name: str
    dtype: str
    shape: list[int]
    elements: int = 0
    mismatched: int = 0
    max_abs_diff: float = 0.0
    max_steps: int | None = None
    """Largest integer difference, in quantization steps (integer outputs only)."""
    argmax_agreement: float | None = None
    """Fraction of rows whose arg-max over the last axis agrees (outputs with a last axis > 1)."""
    bit_exact: bool = True

    @property
    def ok(self) -> bool:
        return self.mismatched == 0


@dataclass
class Comparison:
    samples: int
    seed: int
    tolerance: Tolerance
    outputs: list[OutputComparison] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def equivalent(self) -> bool:
        return not self.problems and all(o.ok for o in self.outputs)

    @property
    def bit_exact(self) -> bool:
        return not self.problems and all(o.bit_exact for o in self.outputs)

    def to_json(self) -> dict[str, Any]:
        outputs = [asdict(o) | {"ok": o.ok} for o in self.outputs]
        return {
            "equivalent": self.equivalent,
            "bit_exact": self.bit_exact,
            "samples": self.samples,
            "seed": self.seed,
            "tolerance": asdict(self.tolerance),
            "problems": self.problems,
            "outputs": outputs,
        }


def float_input_ranges(model: Model) -> dict[int, tuple[float, float]]:
    """For float graph inputs read only by QUANTIZE ops: the float range those ops can represent."""
    graph = model.main
    ranges = {}
    for i, t in enumerate(graph.inputs):
        readers = graph.consumer_ops(t)
        if not t.dtype.is_float or not readers or any(op.type != "QUANTIZE" for op in readers):
            continue
        lows, highs = [], []
        for op in readers:
            out = graph.outputs_of(op)[0]
            npdt = out.dtype.numpy
            if out.quant is None or not out.quant.is_affine or npdt is None or npdt.kind not in "iu":
                break
            info = np.iinfo(npdt)
            scale, zp = float(out.quant.scale[0]), int(out.quant.zero_point[0]) if out.quant.zero_point.size else 0
            lows.append(scale * (info.min - zp))
            highs.append(scale * (info.max - zp))
        else:
            ranges[i] = (max(lows), min(highs))
    return ranges


def _interface_problems(a: list[TensorSpec], b: list[TensorSpec], what: str) -> list[str]:
    if len(a) != len(b):
        return [f"the models have {len(a)} and {len(b)} {what}s"]
    return [
        f"{what} {i} differs: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True))
        if x.dtype != y.dtype or x.shape != y.shape
    ]


def compare(
    a: LiteRTModel,
    b: LiteRTModel,
    samples: int = 3,
    seed: int = 0,
    tolerance: Tolerance | None = None,
    float_ranges: dict[int, tuple[float, float]] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Comparison:
    """Run `a` and `b` on `samples` seeded inputs and compare every output element.

    `progress(done)` is called after each sample.
    """
    tolerance = tolerance or Tolerance()
    result = Comparison(samples, seed, tolerance)
    result.problems = _interface_problems(a.inputs, b.inputs, "input") + _interface_problems(
        a.outputs, b.outputs, "output"
    )
    if result.problems:
        return result
    result.outputs = [OutputComparison(s.name, str(s.dtype), list(s.shape)) for s in a.outputs]
    for sample in range(samples):
        inputs = make_inputs(a.inputs, seed + sample, float_ranges)
        for cmp, x, y in zip(result.outputs, a.run(inputs), b.run(inputs), strict=True):
            _accumulate(cmp, x, y, tolerance)
        if progress is not None:
            progress(sample + 1)
    return result


def compare_arrays(
    x: np.ndarray, y: np.ndarray, tolerance: Tolerance | None = None, name: str = ""
) -> OutputComparison:
    """Compare one output's values from two runs."""
    result = OutputComparison(name, str(x.dtype), list(x.shape))
    _accumulate(result, x, y, tolerance or Tolerance())
    return result


def _accumulate(cmp: OutputComparison, x: np.ndarray, y: np.ndarray, tol: Tolerance) -> None:
    cmp.elements += x.size
    cmp.bit_exact = cmp.bit_exact and x.tobytes() == y.tobytes()
    if x.dtype.kind in "iub":
        if x.dtype.kind == "u":  # unsigned difference: no overflow even for uint64
            steps = np.where(x > y, x - y, y - x)
        else:
            steps = np.abs(x.astype(np.int64) - y.astype(np.int64))
        worst = int(steps.max(initial=0))
        cmp.max_steps = max(cmp.max_steps or 0, worst)
        cmp.max_abs_diff = max(cmp.max_abs_diff, float(worst))
        cmp.mismatched += int(np.count_nonzero(steps > tol.max_steps))
    else:
        wide = np.complex128 if x.dtype.kind == "c" else np.float64
        xf, yf = x.astype(wide), y.astype(wide)
        close = np.isclose(yf, xf, rtol=tol.rtol, atol=tol.atol, equal_nan=True)
        cmp.mismatched += int(np.count_nonzero(~close))
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: the finite differences are kept below
            diff = np.abs(xf - yf)
        finite = diff[np.isfinite(diff)]
        cmp.max_abs_diff = max(cmp.max_abs_diff, float(finite.max(initial=0.0)))
    if x.ndim >= 1 and x.shape[-1] > 1 and x.size and x.dtype.kind in "iuf":  # (an empty output has no rows)
        agree = float(np.mean(np.argmax(x, axis=-1) == np.argmax(y, axis=-1)))
        rows_before = (cmp.elements - x.size) // x.shape[-1]
        rows_now = x.size // x.shape[-1]
        previous = cmp.argmax_agreement if cmp.argmax_agreement is not None else 0.0
        cmp.argmax_agreement = (previous * rows_before + agree * rows_now) / (rows_before + rows_now)
