"""Check each pass of a pipeline in LiteRT: the model after a pass against the model before it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from npupass.ir.graph import Model
from npupass.verify.compare import float_input_ranges
from npupass.verify.litert import LiteRTModel, from_real, make_inputs, to_real

if TYPE_CHECKING:
    from npupass.passes.manager import Pass


@dataclass
class StageOutputs:
    """Real-valued outputs of one model on every sample; `steps` is the quantization step of each
    output (0.0 for float outputs)."""

    values: list[list[np.ndarray]]
    steps: list[float]


@dataclass
class PassCheck:
    """How far one pass moved the outputs: float outputs in relative error, quantized ones in steps."""

    name: str
    max_rel_error: float = 0.0
    max_steps: int = 0
    within: float = 1.0
    """Fraction of elements within the pass's allowed steps."""
    argmax_agreement: float = 1.0
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "pass": self.name,
            "max_rel_error": self.max_rel_error,
            "max_steps": self.max_steps,
            "within_tolerance": self.within,
            "argmax_agreement": self.argmax_agreement,
            "problem": self.problem,
        }


@dataclass
class PassVerifier:
    """Compares outputs after each pass with those before it, on `samples` seeded inputs.

    Inputs are drawn once for the model the pipeline starts from and kept as real values, so a pass
    that changes the interface (float to int8 I/O) is fed the same inputs, quantized.
    """

    samples: int = 2
    seed: int = 0
    checks: list[PassCheck] = field(default_factory=list)
    _inputs: list[list[np.ndarray]] = field(default_factory=list)
    _before: StageOutputs | None = None

    def start(self, model: Model) -> None:
        ref = _load(model)
        ranges = float_input_ranges(model)
        self._inputs = [
            [to_real(v, s) for v, s in zip(make_inputs(ref.inputs, self.seed + i, ranges), ref.inputs, strict=True)]
            for i in range(self.samples)
        ]
        self._before = self._run(ref, model)

    def after(self, pass_: Pass, model: Model) -> str | None:
        now = self._run(_load(model), model)
        assert self._before is not None
        check = compare_stages(pass_.name, self._before, now, pass_.rtol, pass_.max_steps, pass_.min_within)
        self.checks.append(check)
        self._before = now
        return check.problem

    def _run(self, ref: LiteRTModel, model: Model) -> StageOutputs:
        values = [
            ref.run([from_real(v, s) for v, s in zip(sample, ref.inputs, strict=True)]) for sample in self._inputs
        ]
        real = [[to_real(v, s) for v, s in zip(out, ref.outputs, strict=True)] for out in values]
        return StageOutputs(real, output_steps(model))


def output_steps(model: Model) -> list[float]:
    """The quantization step of each main-graph output: its own scale, or for a float output
    written by DEQUANTIZE the scale it was dequantized from; 0.0 for float outputs."""
    graph = model.main
    steps = []
    for t in graph.outputs:
        source = t
        writer = graph.producer(t)
        if t.dtype.is_float and writer is not None and writer.type == "DEQUANTIZE":
            source = graph.inputs_of(writer)[0] or t
        q = source.quant
        steps.append(float(q.scale[0]) if q is not None and q.is_affine and not q.per_axis else 0.0)
    return steps


def _load(model: Model) -> LiteRTModel:
    from npupass.backends.tflite import serialize_tflite

    return LiteRTModel(serialize_tflite(model))


def compare_stages(
    name: str, before: StageOutputs, after: StageOutputs, rtol: float, max_steps: int, min_within: float
) -> PassCheck:
    """Judge one pass: float outputs within `rtol` of the largest magnitude, quantized outputs within
    `max_steps` steps on at least `min_within` of the elements."""
    check = PassCheck(name)
    if len(before.steps) != len(after.steps):
        check.problem = f"the number of outputs changed from {len(before.steps)} to {len(after.steps)}"
        return check
    total = within = rows = agree = 0
    for i, (step_a, step_b) in enumerate(zip(before.steps, after.steps, strict=True)):
        step = max(step_a, step_b)
        for a, b in zip((s[i] for s in before.values), (s[i] for s in after.values), strict=True):
            if a.shape != b.shape:
                check.problem = f"output {i} changed shape from {list(a.shape)} to {list(b.shape)}"
                return check
            diff = np.abs(a - b)
            total += diff.size
            if step > 0:
                steps = np.round(diff / step).astype(np.int64)
                check.max_steps = max(check.max_steps, int(steps.max(initial=0)))
                within += int(np.count_nonzero(steps <= max_steps))
            else:
                scale = float(np.abs(a).max(initial=0.0)) or 1.0
                check.max_rel_error = max(check.max_rel_error, float(diff.max(initial=0.0)) / scale)
                within += int(np.count_nonzero(diff <= rtol * scale))
            if a.ndim >= 1 and a.shape[-1] > 1:
                rows += a.size // a.shape[-1]
                agree += int(np.count_nonzero(np.argmax(a, axis=-1) == np.argmax(b, axis=-1)))
    check.within = within / total if total else 1.0
    check.argmax_agreement = agree / rows if rows else 1.0
    if check.within < min_within:
        if check.max_steps:
            check.problem = (
                f"{1 - check.within:.2%} of output elements moved more than {max_steps} step(s) "
                f"(worst {check.max_steps})"
            )
        else:
            check.problem = f"max relative error {check.max_rel_error:.3g} exceeds {rtol:g}"
    return check
