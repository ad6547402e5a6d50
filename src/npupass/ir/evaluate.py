"""Numpy kernels for ops on constants, in the IR's TFLite semantics: what constant-fold evaluates
and what the ONNX frontend's shape-arithmetic folders call (one evaluator, not two)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Kernel = Callable[[Sequence[np.ndarray], dict[str, Any]], np.ndarray]


def _arith(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Kernel:
    def kernel(inputs: Sequence[np.ndarray], options: dict[str, Any]) -> np.ndarray:
        a, b = inputs
        return np.asarray(fn(a, b)).astype(np.result_type(a, b))

    return kernel


def _div(inputs: Sequence[np.ndarray], options: dict[str, Any]) -> np.ndarray:
    a, b = inputs
    if a.dtype.kind in "iu" and np.asarray(b).dtype.kind in "iu":
        return (a // b).astype(np.result_type(a, b))  # shape arithmetic: non-negative in practice
    return np.asarray(np.divide(a, b)).astype(np.result_type(a, b))


def _reshape(inputs: Sequence[np.ndarray], options: dict[str, Any]) -> np.ndarray:
    shape = inputs[1] if len(inputs) > 1 else np.asarray(options["new_shape"])
    return inputs[0].reshape(tuple(int(d) for d in np.asarray(shape).reshape(-1)))


def _transpose(inputs: Sequence[np.ndarray], options: dict[str, Any]) -> np.ndarray:
    perm = inputs[1] if len(inputs) > 1 else options.get("perm")
    return np.transpose(inputs[0], None if perm is None else [int(p) for p in np.asarray(perm).reshape(-1)])


def _concatenation(inputs: Sequence[np.ndarray], options: dict[str, Any]) -> np.ndarray:
    return np.concatenate(list(inputs), axis=int(options.get("axis", 0)))


def _gather(inputs: Sequence[np.ndarray], options: dict[str, Any]) -> np.ndarray:
    return np.take(inputs[0], inputs[1], axis=int(options.get("axis", 0)))


def _cast(inputs: Sequence[np.ndarray], options: dict[str, Any]) -> np.ndarray:
    return inputs[0].astype(options["to"])


def _unary(fn: Callable[[np.ndarray], np.ndarray]) -> Kernel:
    return lambda inputs, options: np.asarray(fn(inputs[0])).astype(inputs[0].dtype)


KERNELS: dict[str, Kernel] = {
    "ADD": _arith(np.add),
    "SUB": _arith(np.subtract),
    "MUL": _arith(np.multiply),
    "DIV": _div,
    "MAXIMUM": _arith(np.maximum),
    "MINIMUM": _arith(np.minimum),
    "RESHAPE": _reshape,
    "TRANSPOSE": _transpose,
    "CONCATENATION": _concatenation,
    "GATHER": _gather,
    "CAST": _cast,
    "NEG": _unary(np.negative),
    "ABS": _unary(np.abs),
    "SQRT": _unary(np.sqrt),
    "RSQRT": _unary(lambda x: 1 / np.sqrt(x)),
    "EXP": _unary(np.exp),
    "SQUARE": _unary(np.square),
}


def evaluate(op_type: str, inputs: Sequence[np.ndarray], options: dict[str, Any] | None = None) -> np.ndarray:
    """The output of `op_type` on constant `inputs` (options as the IR keeps them; CAST takes a numpy
    dtype in "to"). Raises KeyError for an op without a kernel, and numpy's errors for bad inputs."""
    with np.errstate(all="ignore"):
        return KERNELS[op_type](inputs, options or {})
