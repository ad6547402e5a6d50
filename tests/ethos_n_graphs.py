"""Small int8 graphs for the Ethos-N tests, built straight in the IR (no converter in the way)."""

from __future__ import annotations

from typing import Any

import numpy as np

from npupass.ir.graph import Graph, Model, Op, Tensor
from npupass.ir.types import DType, Quantization
from npupass.passes.pattern import new_constant
from npupass.tflite_schema import default_options

OPTIONS_TYPE = {
    "CONV_2D": "Conv2DOptions",
    "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "TRANSPOSE_CONV": "TransposeConvOptions",
    "FULLY_CONNECTED": "FullyConnectedOptions",
    "ADD": "AddOptions",
    "MUL": "MulOptions",
    "SUB": "SubOptions",
    "MAX_POOL_2D": "Pool2DOptions",
    "AVERAGE_POOL_2D": "Pool2DOptions",
    "MEAN": "ReducerOptions",
    "PAD": "PadOptions",
    "PADV2": "PadV2Options",
    "RESHAPE": "ReshapeOptions",
    "CONCATENATION": "ConcatenationOptions",
    "LEAKY_RELU": "LeakyReluOptions",
    "SOFTMAX": "SoftmaxOptions",
    "DEPTH_TO_SPACE": "DepthToSpaceOptions",
    "SPACE_TO_DEPTH": "SpaceToDepthOptions",
    "TRANSPOSE": "TransposeOptions",
    "RESIZE_BILINEAR": "ResizeBilinearOptions",
    "SPLIT": "SplitOptions",
}


def q(scale: float | list[float] = 0.05, zp: int | list[int] = 0, axis: int = 0) -> Quantization:
    scales = np.atleast_1d(np.asarray(scale, dtype=np.float32))
    zps = np.broadcast_to(np.atleast_1d(np.asarray(zp, dtype=np.int64)), scales.shape).copy()
    return Quantization(scales, zps, axis)


def act(name: str, shape: tuple[int, ...], scale: float = 0.05, zp: int = 0, dtype: DType = DType.INT8) -> Tensor:
    return Tensor(name, dtype, shape, quant=q(scale, zp) if dtype in (DType.INT8, DType.UINT8, DType.INT16) else None)


def const(name: str, values: Any, dtype: DType = DType.INT8, quant: Quantization | None = None) -> Tensor:
    return new_constant(name, np.asarray(values), dtype, quant)


def op(graph: Graph, kind: str, inputs: list[Tensor | None], out: Tensor, **options: Any) -> Op:
    options_type = OPTIONS_TYPE.get(kind)
    merged = (default_options(options_type) if options_type else {}) | options
    return graph.add_op(Op(kind, merged, options_type, name=out.name), inputs, [out])


def model(graph: Graph) -> Model:
    return Model([graph])


def single(kind: str, inputs: list[Tensor | None], out: Tensor, **options: Any) -> tuple[Graph, Op]:
    """A graph with one op; its non-constant inputs become graph inputs."""
    g = Graph("main")
    o = op(g, kind, inputs, out, **options)
    g.inputs = [t for t in inputs if t is not None and not t.is_constant]
    g.outputs = [out]
    return g, o


def conv_weights(
    kind: str, cin: int, cout: int, kh: int = 3, kw: int = 3, per_channel: bool = True, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """int8 weights (OHWI, or 1HWO for depthwise) and the int32 bias for an input of scale 0.05."""
    rng = np.random.default_rng(seed)
    shape = (1, kh, kw, cout) if kind == "DEPTHWISE_CONV_2D" else (cout, kh, kw, cin)
    axis = 3 if kind == "DEPTHWISE_CONV_2D" else 0
    scales = rng.uniform(0.002, 0.01, cout) if per_channel else np.full(1, 0.005)
    w = const("w", rng.integers(-127, 128, shape), DType.INT8, q(list(scales), 0, axis))
    b_scales = (np.float32(0.05) * scales.astype(np.float32)).astype(np.float32)
    b = const("b", rng.integers(-500, 500, cout), DType.INT32, q(list(b_scales), 0))
    return w, b
