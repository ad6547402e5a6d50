"""Quantization arithmetic shared by frontends, passes, backends and viewers: per-axis broadcasting,
saturation, dequantization and equality of quantization records."""

from __future__ import annotations

import numpy as np

from npupass.ir.graph import Tensor
from npupass.ir.types import DType, Quantization

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def along_axis(vector: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """`vector` (one value per index of `axis`) shaped to broadcast against an array of rank `ndim`."""
    shape = [1] * ndim
    shape[axis] = -1
    return np.asarray(vector).reshape(shape)


def saturate_int32(values: np.ndarray) -> np.ndarray:
    """Values clipped to int32's range (still in their own dtype; callers cast)."""
    return np.clip(values, INT32_MIN, INT32_MAX)


def scale_and_zero_point(q: Quantization, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """float64 scale and zero point shaped to broadcast against a tensor of rank `ndim`."""
    scale = q.scale.astype(np.float64)
    zp = q.zero_point.astype(np.float64) if q.zero_point.size else np.zeros(1)
    if q.per_axis and ndim:
        return along_axis(scale, ndim, q.axis), along_axis(zp, ndim, q.axis) if zp.size > 1 else zp
    return scale, zp


def dequantize(values: np.ndarray, q: Quantization) -> np.ndarray:
    """real = scale * (q - zero_point), in float64, per axis where the quantization is."""
    scale, zp = scale_and_zero_point(q, np.ndim(values))
    return (np.asarray(values, dtype=np.float64) - zp) * scale


def same_quant_values(qa: Quantization | None, qb: Quantization | None) -> bool:
    """The same affine quantization (scales, zero points, axis), or both none."""
    if qa is qb:
        return True
    if qa is None or not qa.is_affine or qb is None or not qb.is_affine:
        return (qa is None or not qa.is_affine) and (qb is None or not qb.is_affine)
    # shapes, then values: np.array_equal costs more than the comparison on these tiny arrays
    return (
        qa.scale.shape == qb.scale.shape
        and qa.zero_point.shape == qb.zero_point.shape
        and bool((qa.scale == qb.scale).all())
        and bool((qa.zero_point == qb.zero_point).all())
        and (not qa.per_axis or qa.axis == qb.axis)
    )


def same_quant(a: Tensor, b: Tensor) -> bool:
    """Same element type and the same affine quantization (or both unquantized)."""
    return a.dtype is b.dtype and same_quant_values(a.quant, b.quant)


def is_quantized(t: Tensor) -> bool:
    """An int8/uint8/int16 tensor with affine quantization."""
    return t.dtype in (DType.INT8, DType.UINT8, DType.INT16) and t.quant is not None and t.quant.is_affine
