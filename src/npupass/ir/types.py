"""Value types of the IR: element types, quantization and sparsity annotations."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class DType(enum.Enum):
    """Tensor element types, named as in the TFLite schema's TensorType."""

    FLOAT32 = "FLOAT32"
    FLOAT16 = "FLOAT16"
    INT32 = "INT32"
    UINT8 = "UINT8"
    INT64 = "INT64"
    STRING = "STRING"
    BOOL = "BOOL"
    INT16 = "INT16"
    COMPLEX64 = "COMPLEX64"
    INT8 = "INT8"
    FLOAT64 = "FLOAT64"
    COMPLEX128 = "COMPLEX128"
    UINT64 = "UINT64"
    RESOURCE = "RESOURCE"
    VARIANT = "VARIANT"
    UINT32 = "UINT32"
    UINT16 = "UINT16"
    INT4 = "INT4"
    BFLOAT16 = "BFLOAT16"
    INT2 = "INT2"
    UINT4 = "UINT4"
    FLOAT8_E4M3FN = "FLOAT8_E4M3FN"
    FLOAT8_E5M2 = "FLOAT8_E5M2"

    @property
    def numpy(self) -> np.dtype[Any] | None:
        """The numpy dtype holding one element, or None when elements are not whole bytes of a numpy type."""
        return _NUMPY.get(self)

    @property
    def is_float(self) -> bool:
        return self in (DType.FLOAT32, DType.FLOAT16, DType.FLOAT64, DType.BFLOAT16)

    def __str__(self) -> str:
        return self.value


_NUMPY: dict[DType, np.dtype[Any]] = {
    DType.FLOAT32: np.dtype("<f4"),
    DType.FLOAT16: np.dtype("<f2"),
    DType.FLOAT64: np.dtype("<f8"),
    DType.INT8: np.dtype("i1"),
    DType.UINT8: np.dtype("u1"),
    DType.INT16: np.dtype("<i2"),
    DType.UINT16: np.dtype("<u2"),
    DType.INT32: np.dtype("<i4"),
    DType.UINT32: np.dtype("<u4"),
    DType.INT64: np.dtype("<i8"),
    DType.UINT64: np.dtype("<u8"),
    DType.BOOL: np.dtype("?"),
    DType.COMPLEX64: np.dtype("<c8"),
    DType.COMPLEX128: np.dtype("<c16"),
}


def _array(values: Any, dtype: str) -> np.ndarray:
    arr = np.array(values, dtype=dtype).reshape(-1)
    arr.flags.writeable = False
    return arr


@dataclass(eq=False)
class Quantization:
    """Affine quantization: real = scale * (q - zero_point).

    Per-tensor quantization has one scale; per-axis quantization has one scale per index of `axis`.
    `min`/`max` are the optional recorded float ranges; `details` carries the schema's extra
    quantization tables (custom or blockwise) by name, untouched.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int = 0
    min: np.ndarray | None = None
    max: np.ndarray | None = None
    details_type: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scale = _array(self.scale, "<f4")
        self.zero_point = _array(self.zero_point, "<i8")
        if self.min is not None:
            self.min = _array(self.min, "<f4")
        if self.max is not None:
            self.max = _array(self.max, "<f4")

    @property
    def per_axis(self) -> bool:
        return self.scale.size > 1

    @property
    def is_affine(self) -> bool:
        """True when scales are present (a min/max-only record does not quantize anything)."""
        return self.scale.size > 0


@dataclass(eq=False)
class DimMetadata:
    """One dimension of a sparse tensor's storage: DENSE (size only) or SPARSE_CSR (segments + indices)."""

    format: str
    dense_size: int = 0
    segments: np.ndarray | None = None
    indices: np.ndarray | None = None


@dataclass(eq=False)
class Sparsity:
    """TFLite sparse storage of a constant: the tensor's `data` then holds only the stored values."""

    traversal_order: tuple[int, ...]
    block_map: tuple[int, ...] = ()
    dim_metadata: list[DimMetadata] = field(default_factory=list)


@dataclass(frozen=True)
class VariantSubtype:
    """Element type information of a VARIANT tensor (e.g. a TensorList)."""

    dtype: DType
    shape: tuple[int, ...] | None
    has_rank: bool = False
