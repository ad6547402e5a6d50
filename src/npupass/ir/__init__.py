"""The npupass intermediate representation."""

from npupass.ir.check import check, problems
from npupass.ir.graph import Graph, Model, Op, Signature, Tensor
from npupass.ir.types import DimMetadata, DType, Quantization, Sparsity, VariantSubtype

__all__ = [
    "DType",
    "DimMetadata",
    "Graph",
    "Model",
    "Op",
    "Quantization",
    "Signature",
    "Sparsity",
    "Tensor",
    "VariantSubtype",
    "check",
    "problems",
]
