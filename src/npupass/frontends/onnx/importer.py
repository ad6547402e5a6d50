"""ONNX graph -> IR, in TFLite semantics: NHWC activations, TFLite ops and options.

Each ONNX value maps to a `Value`: the IR tensor holding it and `perm`, the order of its ONNX axes in
that tensor (IR = transpose(ONNX, perm)). Convolutions want NHWC (perm 0,2,3,1); elementwise ops take
whatever layout their inputs have; ops that depend on axis order ask for the layout they need, and
only then is a TRANSPOSE (or a RESHAPE, when only size-1 axes move) emitted. A Transpose node only
changes `perm`, so transposes that cancel never appear.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from npupass.errors import ModelFormatError, UnsupportedFeatureError
from npupass.ir.graph import Graph, Model, Op, Signature, Tensor
from npupass.ir.quant import along_axis
from npupass.ir.types import DType, Quantization
from npupass.tflite_schema import default_options

NHWC = (0, 2, 3, 1)
LAYOUT_METADATA = "npupass_onnx_layout"

# ONNX TensorProto element types -> IR types (int64 shapes and indices become INT32, as TFLite wants)
ONNX_DTYPES: dict[int, DType] = {
    1: DType.FLOAT32,
    2: DType.UINT8,
    3: DType.INT8,
    4: DType.UINT16,
    5: DType.INT16,
    6: DType.INT32,
    7: DType.INT32,
    9: DType.BOOL,
    10: DType.FLOAT16,
    11: DType.FLOAT64,
}


def identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


def layout_for(rank: int) -> tuple[int, ...]:
    """The IR layout of a value that feeds NHWC ops: NHWC for 4-D, unchanged otherwise."""
    return NHWC if rank == 4 else identity(rank)


@dataclass
class Quantized:
    """A constant behind QuantizeLinear/DequantizeLinear, kept until a reader says how to lay it out.

    `fake`: `data` is float and passes through QUANTIZE -> DEQUANTIZE (a QAT weight); otherwise
    `data` holds the integers and only DEQUANTIZE follows. `axis` is the ONNX per-axis axis.
    """

    data: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None
    storage: DType
    fake: bool

    def real(self) -> np.ndarray:
        """The float values the model computes with (what DequantizeLinear yields)."""
        scale, zp = self.scale.astype(np.float64), self.zero_point.astype(np.float64)
        if self.axis is not None:
            scale, zp = along_axis(scale, self.data.ndim, self.axis), along_axis(zp, self.data.ndim, self.axis)
        else:
            scale, zp = scale.reshape(()), zp.reshape(())
        with np.errstate(all="ignore"):  # a corrupt scale: the validator names it after import
            ints = self.data.astype(np.float64)
            if self.fake:
                info = np.iinfo(self.storage.numpy)
                ints = np.clip(np.round(ints / scale) + zp, info.min, info.max)
            return ((ints - zp) * scale).astype(np.float32)


@dataclass
class Value:
    """One ONNX value: its IR tensor (None for a constant not yet needed as a tensor), the layout
    of that tensor, its value when known at import time, its static ONNX shape, and for a
    quantized constant the integers and scales behind it."""

    tensor: Tensor | None
    perm: tuple[int, ...]
    const: np.ndarray | None
    shape: tuple[int, ...] | None
    dtype: DType
    quantized: Quantized | None = None


Converter = Callable[["Importer", Any], None]
CONVERTERS: dict[str, Converter] = {}
FOLDERS: dict[str, Callable[[Importer, Any, list[np.ndarray]], list[np.ndarray]]] = {}


def converter(*op_types: str) -> Callable[[Converter], Converter]:
    def register(fn: Converter) -> Converter:
        for op_type in op_types:
            CONVERTERS[op_type] = fn
        return fn

    return register


def folder(
    *op_types: str,
) -> Callable[
    [Callable[[Importer, Any, list[np.ndarray]], list[np.ndarray]]],
    Callable[[Importer, Any, list[np.ndarray]], list[np.ndarray]],
]:
    def register(
        fn: Callable[[Importer, Any, list[np.ndarray]], list[np.ndarray]],
    ) -> Callable[[Importer, Any, list[np.ndarray]], list[np.ndarray]]:
        for op_type in op_types:
            FOLDERS[op_type] = fn
        return fn

    return register


class Importer:
    def __init__(self, proto: Any, keep_nchw_io: bool = False) -> None:
        from onnx import numpy_helper

        self.proto = proto
        self.keep_nchw_io = keep_nchw_io
        self.graph = Graph(proto.graph.name or "main")
        self.values: dict[str, Value] = {}
        self.opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        self._types: dict[str, tuple[DType, tuple[int, ...] | None]] = {}
        g = proto.graph
        for info in [*g.input, *g.output, *g.value_info]:
            self._types[info.name] = _type_of(info)
        for init in g.initializer:
            try:
                array = numpy_helper.to_array(init)
            except (ValueError, TypeError, KeyError) as exc:
                raise ModelFormatError(f"initializer '{init.name}' is inconsistent: {exc}") from None
            self.values[init.name] = Value(None, identity(array.ndim), array, array.shape, dtype_of(array))
        self.numpy_helper = numpy_helper
        self._output_perms: dict[str, tuple[int, ...]] = {}

    # --- values -------------------------------------------------------------------------------
    def const(self, name: str) -> np.ndarray | None:
        if not name:
            return None
        value = self.values.get(name)
        return value.const if value is not None else None

    def shape(self, name: str) -> tuple[int, ...] | None:
        value = self.values.get(name)
        if value is not None and value.shape is not None:
            return value.shape
        return self._types.get(name, (DType.FLOAT32, None))[1]

    def rank(self, name: str) -> int:
        shape = self.shape(name)
        if shape is None:
            raise UnsupportedFeatureError(f"ONNX value '{name}' has no known shape")
        return len(shape)

    def tensor(self, name: str, perm: tuple[int, ...] | None = None) -> Tensor:
        """The value as an IR tensor whose axes are the ONNX axes in order `perm` (default: ONNX order)."""
        value = self.values[name]
        rank = len(value.shape) if value.shape is not None else len(value.perm)
        perm = perm if perm is not None else identity(rank)
        if value.tensor is None and value.quantized is not None:
            return self.quantized_constant(name, value.quantized, perm)
        if value.tensor is None:  # a constant: lay it out as asked
            assert value.const is not None
            data = np.transpose(value.const, perm) if value.const.ndim == len(perm) else value.const
            return constant_tensor(name, data)
        if value.perm == perm:
            return value.tensor
        return self._relayout(name, value, perm)

    def quantized_constant(self, name: str, q: Quantized, perm: tuple[int, ...]) -> Tensor:
        """The constant laid out as `perm`, then QUANTIZE -> DEQUANTIZE (fake) or DEQUANTIZE: the form
        fold-fake-quant turns into an int8 constant with the model's own scales."""
        data = np.transpose(q.data, perm) if q.data.ndim == len(perm) else q.data
        axis = perm.index(q.axis) if q.axis is not None and q.data.ndim == len(perm) else 0
        quant = Quantization(q.scale, q.zero_point, axis)
        shape = tuple(data.shape)
        real = Tensor(f"{name}/real", DType.FLOAT32, shape)
        if q.fake:
            stored = Tensor(f"{name}/quantized", q.storage, shape, quant=quant)
            self.graph.add_op(
                Op("QUANTIZE", name=stored.name), [constant_tensor(name, data.astype(np.float32))], [stored]
            )
        else:
            stored = constant_tensor(name, data.astype(q.storage.numpy))
            stored.quant = quant
        self.graph.add_op(Op("DEQUANTIZE", name=real.name), [stored], [real])
        return real

    def real_const(self, name: str) -> np.ndarray | None:
        """A constant's float values, also through DequantizeLinear (for parameters folded in float)."""
        value = self.values.get(name) if name else None
        if value is None:
            return None
        if value.quantized is not None:
            return value.quantized.real()
        return value.const

    def _relayout(self, name: str, value: Value, perm: tuple[int, ...]) -> Tensor:
        assert value.tensor is not None and value.shape is not None
        shape = tuple(value.shape[p] for p in perm)
        out = Tensor(f"{name}/{''.join(map(str, perm))}", value.tensor.dtype, shape, quant=value.tensor.quant)
        order_now = [p for p in value.perm if value.shape[p] != 1]
        order_then = [p for p in perm if value.shape[p] != 1]
        if order_now == order_then:  # only size-1 axes move: the bytes stay in order
            shape_t = constant_tensor(f"{out.name}/shape", np.array(shape, dtype=np.int32))
            self.graph.add_op(
                Op("RESHAPE", {"new_shape": list(shape)}, "ReshapeOptions"), [value.tensor, shape_t], [out]
            )
        else:
            q = [value.perm.index(p) for p in perm]
            perm_t = constant_tensor(f"{out.name}/perm", np.array(q, dtype=np.int32))
            self.graph.add_op(Op("TRANSPOSE", {}, "TransposeOptions"), [value.tensor, perm_t], [out])
        return out

    def in_onnx_order(self, name: str) -> Tensor:
        """The value as a tensor whose elements are in ONNX order (its shape may differ in size-1
        axes): what a RESHAPE needs, without a TRANSPOSE when only size-1 axes moved."""
        value = self.values[name]
        if value.tensor is not None and value.shape is not None:
            order_now = [p for p in value.perm if value.shape[p] != 1]
            if order_now == sorted(order_now):
                return value.tensor
        return self.tensor(name)

    def nhwc(self, name: str) -> Tensor:
        return self.tensor(name, layout_for(self.rank(name)))

    def output(self, name: str, perm: tuple[int, ...], dtype: DType | None = None) -> Tensor:
        """A new IR tensor for ONNX value `name`, laid out as `perm`."""
        known_dtype, shape = self._types.get(name, (DType.FLOAT32, None))
        if shape is None or len(shape) != len(perm):
            raise UnsupportedFeatureError(f"ONNX value '{name}' has no static shape of rank {len(perm)}")
        t = Tensor(name, dtype or known_dtype, tuple(shape[p] for p in perm))
        self.values[name] = Value(t, perm, None, shape, t.dtype)
        return t

    def set_const(self, name: str, array: np.ndarray) -> None:
        self.values[name] = Value(None, identity(array.ndim), array, array.shape, dtype_of(array))

    def alias(self, new: str, old: str) -> None:
        self.values[new] = self.values[old]

    def emit(
        self,
        op_type: str,
        inputs: Sequence[Tensor | None],
        outputs: list[Tensor],
        options: dict[str, Any] | None = None,
    ) -> Op:
        table = OPTIONS_TABLES.get(op_type)
        values = (default_options(table) if table else {}) | (options or {})
        op = Op(op_type, values, table, name=outputs[0].name if outputs else op_type)
        return self.graph.add_op(op, inputs, outputs)

    # --- the graph ----------------------------------------------------------------------------
    def run(self) -> Model:
        g = self.proto.graph
        nodes = list(g.node)
        unknown: dict[str, list[str]] = {}
        for node in nodes:
            if (node.op_type not in CONVERTERS and node.op_type not in FOLDERS) or node.domain not in ("", "ai.onnx"):
                unknown.setdefault(f"{node.domain + '.' if node.domain else ''}{node.op_type}", []).append(
                    node.name or node.output[0]
                )
        if unknown:
            listed = "; ".join(
                f"{op} ({', '.join(where[:3])}{' ...' if len(where) > 3 else ''})" for op, where in unknown.items()
            )
            raise UnsupportedFeatureError(f"unsupported ONNX ops: {listed}")
        initializers = {init.name for init in g.initializer}
        for info in g.input:
            if info.name in initializers:
                continue
            dtype, shape = self._types[info.name]
            if shape is None:
                raise UnsupportedFeatureError(f"graph input '{info.name}' has no static shape")
            if dtype in (DType.FLOAT64, DType.FLOAT16):
                raise UnsupportedFeatureError(f"graph input '{info.name}' is {dtype}; npupass imports float32 models")
            perm = identity(len(shape)) if self.keep_nchw_io else layout_for(len(shape))
            t = Tensor(info.name, dtype, tuple(shape[p] for p in perm))
            self.graph.add_tensor(t)
            self.graph.inputs.append(t)
            self.values[info.name] = Value(t, perm, None, shape, dtype)
        for node in nodes:
            self._convert(node)
        for info in g.output:
            if info.name not in self.values:
                raise UnsupportedFeatureError(f"graph output '{info.name}' is an output npupass does not produce")
            rank = self.rank(info.name)
            wanted = identity(rank) if self.keep_nchw_io else layout_for(rank)
            value = self.values[info.name]
            if value.tensor is None:
                raise UnsupportedFeatureError(f"graph output '{info.name}' is a constant")
            # a value already in ONNX order or in the wanted order is output as it is, without an op
            perm = value.perm if value.perm in (wanted, identity(rank)) else wanted
            self._output_perms[info.name] = perm
            self.graph.outputs.append(self.tensor(info.name, perm))
        signature = Signature(
            "serving_default",
            0,
            [(t.name, i) for i, t in enumerate(self.graph.inputs)],
            [(info.name, i) for i, info in enumerate(g.output)],
        )
        # which boundary tensors were transposed to NHWC, so that `verify` can feed the TFLite model
        # the ONNX model's data even when shapes cannot tell (C == H == W)
        layout = {
            "inputs": [list(self.values[info.name].perm) for info in g.input if info.name not in initializers],
            "outputs": [list(self._output_perms[info.name]) for info in g.output],
        }
        metadata = [(LAYOUT_METADATA, json.dumps(layout).encode())]
        model = Model([self.graph], signatures=[signature], metadata=metadata, source_format="onnx", canonical=False)
        self.graph.rename_twins()  # a constant laid out for two readers is two tensors of one name
        return model  # an exact GELU's ERF (IR-only) is fused by the default pipeline (passes.policy)

    def _convert(self, node: Any) -> None:
        where = f"ONNX {node.op_type} '{node.name or node.output[0]}'"
        for name in node.input:
            if name and name not in self.values:
                raise UnsupportedFeatureError(f"{where} reads '{name}', an output npupass does not produce")
        consts = [self.const(name) for name in node.input]
        foldable = all(c is not None or not name for c, name in zip(consts, node.input, strict=True))
        if (node.op_type not in FOLDERS or not foldable) and node.op_type not in CONVERTERS:
            raise UnsupportedFeatureError(f"{where} needs constant inputs")
        try:
            if node.op_type in FOLDERS and foldable:
                for name, array in zip(node.output, FOLDERS[node.op_type](self, node, consts), strict=False):  # type: ignore[arg-type]
                    self.set_const(name, array)
            else:
                CONVERTERS[node.op_type](self, node)
        except (UnsupportedFeatureError, ModelFormatError) as exc:
            raise type(exc)(f"{where}: {exc}") from None
        except (ValueError, TypeError, IndexError, KeyError, ArithmeticError) as exc:
            # the checker accepts models whose shapes and data disagree; they end here
            raise ModelFormatError(f"{where}: inconsistent shapes or data ({exc})") from None


OPTIONS_TABLES = {
    "CONV_2D": "Conv2DOptions",
    "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "FULLY_CONNECTED": "FullyConnectedOptions",
    "ADD": "AddOptions",
    "SUB": "SubOptions",
    "MUL": "MulOptions",
    "DIV": "DivOptions",
    "MAX_POOL_2D": "Pool2DOptions",
    "AVERAGE_POOL_2D": "Pool2DOptions",
    "MEAN": "ReducerOptions",
    "REDUCE_MAX": "ReducerOptions",
    "SUM": "ReducerOptions",
    "RESHAPE": "ReshapeOptions",
    "TRANSPOSE": "TransposeOptions",
    "SOFTMAX": "SoftmaxOptions",
    "CONCATENATION": "ConcatenationOptions",
    "LEAKY_RELU": "LeakyReluOptions",
    "PAD": "PadOptions",
    "BATCH_MATMUL": "BatchMatMulOptions",
    "GELU": "GeluOptions",
    "SQUARED_DIFFERENCE": "SquaredDifferenceOptions",
    "MAXIMUM": "MaximumMinimumOptions",
    "MINIMUM": "MaximumMinimumOptions",
    "REDUCE_MIN": "ReducerOptions",
    "LOG_SOFTMAX": "LogSoftmaxOptions",
    "PADV2": "PadV2Options",
    "DEPTH_TO_SPACE": "DepthToSpaceOptions",
    "SPACE_TO_DEPTH": "SpaceToDepthOptions",
    "LOCAL_RESPONSE_NORMALIZATION": "LocalResponseNormalizationOptions",
    "RESIZE_BILINEAR": "ResizeBilinearOptions",
    "RESIZE_NEAREST_NEIGHBOR": "ResizeNearestNeighborOptions",
    "TRANSPOSE_CONV": "TransposeConvOptions",
    "STRIDED_SLICE": "StridedSliceOptions",
    "SPLIT_V": "SplitVOptions",
    "CAST": "CastOptions",
    "ARG_MAX": "ArgMaxOptions",
    "ARG_MIN": "ArgMinOptions",
}


def constant_tensor(name: str, array: np.ndarray) -> Tensor:
    if array.dtype == np.int64:
        if array.size and (array.min() < np.iinfo(np.int32).min or array.max() > np.iinfo(np.int32).max):
            raise UnsupportedFeatureError(f"int64 constant '{name}' does not fit the int32 TFLite uses")
        array = array.astype(np.int32)
    data = np.ascontiguousarray(array)
    data.flags.writeable = False
    return Tensor(name, dtype_of(data), tuple(data.shape), data)


def dtype_of(array: np.ndarray) -> DType:
    for dtype in DType:
        if dtype.numpy is not None and dtype.numpy == array.dtype.newbyteorder("<"):
            return dtype
    if array.dtype == np.int64:
        return DType.INT64
    raise UnsupportedFeatureError(f"ONNX constants of type {array.dtype} are not supported")


def _type_of(info: Any) -> tuple[DType, tuple[int, ...] | None]:
    t = info.type.tensor_type
    if t.elem_type and t.elem_type not in ONNX_DTYPES:  # uint32, uint64, strings ...: never guess float
        from onnx import TensorProto

        kind = TensorProto.DataType.Name(t.elem_type) if t.elem_type in TensorProto.DataType.values() else t.elem_type
        raise UnsupportedFeatureError(f"value '{info.name}' has ONNX element type {kind}, which npupass doesn't import")
    dtype = ONNX_DTYPES.get(t.elem_type, DType.FLOAT32)
    if not t.HasField("shape"):
        return dtype, None
    dims = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            if not 0 <= d.dim_value < 2**31:
                raise ModelFormatError(f"value '{info.name}' has dimension {d.dim_value}")
            dims.append(int(d.dim_value))
        elif not dims:
            dims.append(1)  # a symbolic batch dimension: 1
        else:
            raise UnsupportedFeatureError(f"value '{info.name}' has a symbolic dimension {d.dim_param or '?'}")
    return dtype, tuple(dims)
