"""Reference runs of TFLite models in the LiteRT interpreter (ai-edge-litert)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from npupass.errors import NpupassError

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


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """LiteRT prints its own diagnostics to fd 2; keep them off the user's terminal."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    saved = os.dup(fd)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


class LiteRTModel:
    """A TFLite model loaded in LiteRT. `delegates="none"` runs the builtin kernels only (the default,
    deterministic reference); `delegates="default"` lets LiteRT apply its default delegate (XNNPACK)."""

    def __init__(self, model: bytes, delegates: str = "none") -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = {
            "none": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            "default": OpResolverType.AUTO,
        }[delegates]
        try:
            with _quiet_stderr():
                self._interp = Interpreter(model_content=model, experimental_op_resolver_type=resolver)
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ReferenceError(f"LiteRT cannot load the model: {_first_line(exc)}") from None
        self.inputs = [_spec(d) for d in self._interp.get_input_details()]
        self.outputs = [_spec(d) for d in self._interp.get_output_details()]
        self._input_index = [d["index"] for d in self._interp.get_input_details()]
        self._output_index = [d["index"] for d in self._interp.get_output_details()]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        try:
            for index, value in zip(self._input_index, inputs, strict=True):
                self._interp.set_tensor(index, value)
            with _quiet_stderr():
                self._interp.invoke()
        except (ValueError, RuntimeError) as exc:
            raise ReferenceError(f"LiteRT failed to run the model: {_first_line(exc)}") from None
        return [self._interp.get_tensor(i).copy() for i in self._output_index]


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
