"""Reference runs of TFLite models in the LiteRT interpreter (ai-edge-litert)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from npupass.errors import NpupassError
from npupass.isolate import call_forked

MAX_INPUT_ELEMENTS = 1 << 27  # 128 Mi elements per input: refuse rather than allocate a lying shape


class ReferenceError(NpupassError):
    """The reference interpreter could not load or run a model."""


@dataclass(frozen=True)
class TensorSpec:
    """What a model input or output looks like to the interpreter."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0


LITERT_TIMEOUT = 60.0  # seconds for one load or one run; the fixtures take milliseconds


class LiteRTModel:
    """A TFLite model in LiteRT. `delegates="none"` runs the builtin kernels only (the default,
    deterministic reference); `delegates="default"` lets LiteRT apply its default delegate (XNNPACK).

    LiteRT never runs in this process: loading and every run happen in a forked child
    (npupass.isolate), so a crash or a hang inside the interpreter is a ReferenceError naming the
    stage, not the end of npupass. `timeout` bounds each load and each run.
    """

    def __init__(self, model: bytes, delegates: str = "none", timeout: float = LITERT_TIMEOUT) -> None:
        if delegates not in ("none", "default"):
            raise ValueError(f"delegates must be 'none' or 'default', not {delegates!r}")
        import ai_edge_litert.interpreter  # noqa: F401 - imported once here, not again in every child

        self._model = model
        self._delegates = delegates
        self.timeout = timeout
        self.inputs, self.outputs = self._call("load", _load_specs, model, delegates)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        result: list[np.ndarray] = self._call("run", _invoke, self._model, self._delegates, inputs)
        return result

    def _call(self, stage: str, fn: Any, *args: Any) -> Any:
        outcome = call_forked(fn, *args, timeout=self.timeout)
        if outcome.status == "ok":
            return outcome.value
        if outcome.status == "error":
            failed = "cannot load" if stage == "load" else "failed to run"
            raise ReferenceError(f"LiteRT {failed} the model: {outcome.message}")
        if outcome.status == "timeout":
            raise ReferenceError(f"LiteRT did not {stage} the model within {self.timeout:g} s (stopped)")
        last = f": {outcome.last_log_line}" if outcome.last_log_line else ""
        raise ReferenceError(f"LiteRT crashed ({outcome.message}) trying to {stage} the model{last}")


def _interpreter(model: bytes, delegates: str) -> Any:
    """A LiteRT interpreter with tensors allocated (in the child)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = {
        "none": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        "default": OpResolverType.AUTO,
    }[delegates]
    try:
        interp = Interpreter(model_content=model, experimental_op_resolver_type=resolver)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ReferenceError(_first_line(exc)) from None
    return interp


def _load_specs(model: bytes, delegates: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
    interp = _interpreter(model, delegates)
    return [_spec(d) for d in interp.get_input_details()], [_spec(d) for d in interp.get_output_details()]


def _invoke(model: bytes, delegates: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
    interp = _interpreter(model, delegates)
    try:
        for detail, value in zip(interp.get_input_details(), inputs, strict=True):
            interp.set_tensor(detail["index"], value)
        interp.invoke()
        return [interp.get_tensor(d["index"]).copy() for d in interp.get_output_details()]
    except (ValueError, RuntimeError) as exc:
        raise ReferenceError(_first_line(exc)) from None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _spec(detail: dict[str, Any]) -> TensorSpec:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorSpec(
        detail["name"], np.dtype(detail["dtype"]), tuple(int(d) for d in detail["shape"]), scale, zero_point
    )


def make_inputs(
    specs: list[TensorSpec], seed: int, float_ranges: dict[int, tuple[float, float]] | None = None
) -> list[np.ndarray]:
    """Seeded random inputs that respect each input's type and quantization range.

    Integer inputs span the whole type range (every representable quantized value); float
    inputs span `float_ranges[i]` when given (e.g. the range of the QUANTIZE op they feed),
    else [-1, 1); other integer inputs (indices, sizes) are drawn from [0, 8).
    """
    rng = np.random.default_rng(seed)
    result = []
    for i, spec in enumerate(specs):
        count = 1
        for d in spec.shape:
            count *= max(d, 1)
        if count > MAX_INPUT_ELEMENTS:
            raise ReferenceError(
                f"input '{spec.name}' has {count} elements (shape {list(spec.shape)}); refusing to allocate it"
            )
        shape = tuple(max(d, 1) for d in spec.shape)
        if spec.dtype.kind == "f":
            low, high = (float_ranges or {}).get(i, (-1.0, 1.0))
            result.append(rng.uniform(low, high, shape).astype(spec.dtype))
        elif spec.dtype.kind == "b":
            result.append(rng.integers(0, 2, shape).astype(bool))
        elif spec.dtype.kind in "iu" and (spec.quantized or spec.dtype.itemsize <= 2):
            info = np.iinfo(spec.dtype)
            result.append(rng.integers(info.min, info.max, shape, endpoint=True).astype(spec.dtype))
        elif spec.dtype.kind in "iu":
            result.append(rng.integers(0, 8, shape).astype(spec.dtype))
        else:
            raise ReferenceError(f"input '{spec.name}' has type {spec.dtype}, which npupass cannot generate data for")
    return result


def to_real(value: np.ndarray, spec: TensorSpec) -> np.ndarray:
    if spec.quantized:
        return (value.astype(np.float64) - spec.zero_point) * spec.scale
    return value.astype(np.float64)


def from_real(value: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """A real-valued input in `spec`'s type: quantized (rounded, saturated) or cast."""
    if spec.quantized:
        info = np.iinfo(spec.dtype)
        q = np.round(value / spec.scale) + spec.zero_point
        return np.clip(q, info.min, info.max).astype(spec.dtype)
    return value.astype(spec.dtype)
