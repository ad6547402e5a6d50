"""One small converter per ONNX op (registered with @converter), and numpy folders for constant
subgraphs (registered with @folder): shape arithmetic never reaches the IR."""

from __future__ import annotations

from typing import Any

import numpy as np

from npupass.errors import UnsupportedFeatureError
from npupass.frontends.onnx.importer import (
    NHWC,
    Importer,
    Quantized,
    Value,
    constant_tensor,
    converter,
    dtype_of,
    folder,
    identity,
)
from npupass.ir.evaluate import evaluate
from npupass.ir.graph import Op, Tensor
from npupass.ir.quant import same_quant_values
from npupass.ir.types import DType, Quantization


def attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


# --- constant folding --------------------------------------------------------------------------------
@folder("Constant")
def _constant(imp: Importer, node: Any, _: list[np.ndarray]) -> list[np.ndarray]:
    a = attrs(node)
    if "value" in a:
        return [imp.numpy_helper.to_array(a["value"])]
    for key in ("value_float", "value_int"):
        if key in a:
            return [np.array(a[key], dtype=np.float32 if key == "value_float" else np.int64)]
    for key in ("value_floats", "value_ints"):
        if key in a:
            return [np.array(a[key], dtype=np.float32 if key == "value_floats" else np.int64)]
    raise UnsupportedFeatureError("Constant without a tensor value")


def _refuse_training_dropout(imp: Importer, node: Any) -> None:
    """Dropout is the identity only in inference mode (or with ratio 0)."""
    if node.op_type != "Dropout" or len(node.input) < 3 or not node.input[2]:
        return
    training = imp.const(node.input[2])
    ratio = imp.const(node.input[1]) if node.input[1] else np.array(0.5)
    if training is None or (bool(training.reshape(-1)[0]) and (ratio is None or float(ratio.reshape(-1)[0]) != 0)):
        raise UnsupportedFeatureError("Dropout in training mode (random masking; only inference mode converts)")


@folder("Identity", "Dropout")
def _identity(imp: Importer, node: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    _refuse_training_dropout(imp, node)
    return [inputs[0]]


@folder("Cast")
def _cast(imp: Importer, node: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    from onnx import helper

    return [evaluate("CAST", inputs, {"to": helper.tensor_dtype_to_np_dtype(attrs(node)["to"])})]


@folder("Gather")
def _gather(imp: Importer, node: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return [evaluate("GATHER", inputs, {"axis": attrs(node).get("axis", 0)})]


@folder("Unsqueeze")
def _unsqueeze(imp: Importer, node: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    axes = _axes(node, inputs)
    out = inputs[0]
    rank = out.ndim + len(axes)
    for axis in sorted(a % rank for a in axes):
        out = np.expand_dims(out, axis)
    return [out]


@folder("Squeeze")
def _squeeze(imp: Importer, node: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    axes = _axes(node, inputs)
    return [np.squeeze(inputs[0], axis=tuple(axes) if axes else None)]


@folder("Concat")
def _concat(imp: Importer, node: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return [evaluate("CONCATENATION", inputs, {"axis": attrs(node)["axis"]})]


@folder("ConstantOfShape")
def _constant_of_shape(imp: Importer, node: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    a = attrs(node)
    value = imp.numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, dtype=np.float32)
    return [np.full(tuple(int(d) for d in inputs[0]), value.reshape(-1)[0], dtype=value.dtype)]


@folder("Range")
def _range(imp: Importer, node: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    start, limit, delta = (x.reshape(()).item() for x in inputs)
    return [np.arange(start, limit, delta).astype(inputs[0].dtype)]


@folder("Add", "Sub", "Mul", "Div")
def _arith(imp: Importer, node: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return [evaluate(node.op_type.upper(), inputs)]


@folder("Reshape")
def _reshape_fold(imp: Importer, node: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return [inputs[0].reshape(_target_shape(inputs[0].shape, inputs[1], attrs(node).get("allowzero", 0)))]


@folder("Transpose")
def _transpose_fold(imp: Importer, node: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return [evaluate("TRANSPOSE", inputs, {"perm": attrs(node).get("perm")})]


@folder("Shape")
def _shape_fold(imp: Importer, node: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return [np.array(inputs[0].shape, dtype=np.int64)]


@folder("Slice")
def _slice_fold(imp: Importer, node: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    data, starts, ends = inputs[:3]
    axes = inputs[3] if len(inputs) > 3 and inputs[3] is not None else np.arange(len(starts))
    steps = inputs[4] if len(inputs) > 4 and inputs[4] is not None else np.ones(len(starts), dtype=np.int64)
    index = [slice(None)] * data.ndim
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        index[int(a)] = slice(int(s), int(e), int(st))
    return [data[tuple(index)]]


def _axes(node: Any, inputs: list[np.ndarray]) -> list[int]:
    if len(inputs) > 1 and inputs[1] is not None:
        return [int(a) for a in inputs[1]]
    return list(attrs(node).get("axes", []))


def _target_shape(shape: tuple[int, ...], target: np.ndarray, allowzero: int = 0) -> tuple[int, ...]:
    dims = [int(d) for d in target]
    if not allowzero:
        dims = [shape[i] if d == 0 else d for i, d in enumerate(dims)]
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1]))
        dims[dims.index(-1)] = int(np.prod(shape)) // max(known, 1)
    return tuple(dims)


# --- shape-dependent ops on activations ------------------------------------------------------------
@converter("Shape")
def _shape(imp: Importer, node: Any) -> None:
    shape = imp.shape(node.input[0])
    if shape is None:
        raise UnsupportedFeatureError("the input's shape is not static")
    imp.set_const(node.output[0], np.array(shape, dtype=np.int64))


@converter("Identity", "Dropout")
def _alias(imp: Importer, node: Any) -> None:
    _refuse_training_dropout(imp, node)
    imp.alias(node.output[0], node.input[0])


@converter("Transpose")
def _transpose(imp: Importer, node: Any) -> None:
    """Only the layout bookkeeping changes: IR = transpose(ONNX', perm') with perm' = inv(p)[perm]."""
    value = imp.values[node.input[0]]
    rank = imp.rank(node.input[0])
    p = attrs(node).get("perm", list(reversed(range(rank))))
    inverse = [p.index(i) for i in range(rank)]
    assert value.shape is not None
    shape = tuple(value.shape[i] for i in p)
    q = value.quantized
    if q is not None:  # a quantized constant: transpose the integers, move the per-axis axis along
        moved = Quantized(
            np.transpose(q.data, p),
            q.scale,
            q.zero_point,
            p.index(q.axis) if q.axis is not None else None,
            q.storage,
            q.fake,
        )
        imp.values[node.output[0]] = Value(None, identity(rank), None, shape, value.dtype, moved)
        return
    imp.values[node.output[0]] = Value(value.tensor, tuple(inverse[i] for i in value.perm), None, shape, value.dtype)


@converter("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def _reshape(imp: Importer, node: Any) -> None:
    x = imp.in_onnx_order(node.input[0])
    out_shape = imp.shape(node.output[0])
    if out_shape is None:
        raise UnsupportedFeatureError("the output shape is not static")
    out = imp.output(node.output[0], identity(len(out_shape)), x.dtype)
    shape = constant_tensor(f"{out.name}/shape", np.array(out_shape, dtype=np.int32))
    imp.emit("RESHAPE", [x, shape], [out], {"new_shape": list(out_shape)})


# --- convolution and pooling ------------------------------------------------------------------------
def text_attr(node: Any, key: str, default: str) -> str:
    """A string attribute (onnx hands them back as bytes)."""
    value = attrs(node).get(key, default)
    return value.decode() if isinstance(value, bytes) else str(value)


def _padding(
    imp: Importer,
    node: Any,
    x: Tensor,
    kernel: tuple[int, int],
    strides: list[int],
    dilations: list[int],
    fill: float = 0.0,
    allow_same: bool = True,
) -> tuple[Tensor, str, bool]:
    """TFLite padding for the node's pads: (input, "VALID" or "SAME", whether a PAD was emitted).

    Pads equal to TensorFlow's SAME split become SAME when `allow_same`; any other pads become an
    explicit PAD (PADV2 with `fill` when it is not 0) before a VALID op.
    """
    a = attrs(node)
    assert x.shape is not None
    h, w = x.shape[1], x.shape[2]
    auto = text_attr(node, "auto_pad", "NOTSET")
    same = []
    for size, k, s, d in zip((h, w), kernel, strides, dilations, strict=True):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        same.append((total // 2, total - total // 2))
    if auto == "VALID":
        pads = [0, 0, 0, 0]
    elif auto == "SAME_UPPER":
        pads = [same[0][0], same[1][0], same[0][1], same[1][1]]
    elif auto == "SAME_LOWER":
        pads = [same[0][1], same[1][1], same[0][0], same[1][0]]
    else:
        pads = [int(p) for p in a.get("pads", [0, 0, 0, 0])]
    if any(p < 0 for p in pads):
        raise UnsupportedFeatureError(f"negative pads {pads}")
    if not any(pads):
        return x, "VALID", False
    if allow_same and [(pads[0], pads[2]), (pads[1], pads[3])] == same:
        return x, "SAME", False
    padded_shape = (x.shape[0], h + pads[0] + pads[2], w + pads[1] + pads[3], x.shape[3])
    padded = Tensor(f"{node.output[0]}/pad", x.dtype, padded_shape)
    amounts = constant_tensor(
        f"{padded.name}/amounts", np.array([[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]], dtype=np.int32)
    )
    if fill == 0.0:
        imp.emit("PAD", [x, amounts], [padded])
    else:
        value = constant_tensor(f"{padded.name}/value", np.array(fill, dtype=np.float32))
        imp.emit("PADV2", [x, amounts, value], [padded])
    return padded, "VALID", True


@converter("Conv")
def _conv(imp: Importer, node: Any) -> None:
    a = attrs(node)
    weight = imp.real_const(node.input[1])
    if weight is None or weight.ndim != 4:
        raise UnsupportedFeatureError("only 2-D convolutions with constant weights are supported")
    has_bias = len(node.input) > 2 and bool(node.input[2])
    if has_bias and imp.real_const(node.input[2]) is None:
        raise UnsupportedFeatureError("the bias must be a constant")
    x = imp.nhwc(node.input[0])
    assert x.shape is not None
    group = a.get("group", 1)
    out_ch, in_per_group, kh, kw = weight.shape
    strides = list(a.get("strides", [1, 1]))
    dilations = list(a.get("dilations", [1, 1]))
    x, padding, _ = _padding(imp, node, x, (kh, kw), strides, dilations)
    common = {
        "padding": padding,
        "stride_h": strides[0],
        "stride_w": strides[1],
        "dilation_h_factor": dilations[0],
        "dilation_w_factor": dilations[1],
        "fused_activation_function": "NONE",
    }
    b = (
        imp.tensor(node.input[2])
        if has_bias
        else constant_tensor(f"{node.output[0]}/bias", np.zeros(out_ch, np.float32))
    )
    out = imp.output(node.output[0], NHWC)
    assert x.shape is not None
    if group == 1:
        imp.emit("CONV_2D", [x, imp.tensor(node.input[1], (0, 2, 3, 1)), b], [out], common)
    elif group == x.shape[-1] and in_per_group == 1:
        w = imp.tensor(node.input[1], (1, 2, 3, 0))
        imp.emit("DEPTHWISE_CONV_2D", [x, w, b], [out], common | {"depth_multiplier": out_ch // group})
    elif in_per_group * group == x.shape[-1]:  # grouped: TFLite's CONV_2D reads groups off the filter depth
        imp.emit("CONV_2D", [x, imp.tensor(node.input[1], (0, 2, 3, 1)), b], [out], common)
    else:
        raise UnsupportedFeatureError(f"Conv with group {group} does not divide {x.shape[-1]} input channels")


def _pool(imp: Importer, node: Any, op_type: str) -> None:
    """MaxPool pads with the lowest float (padding never wins); AveragePool counts padded zeros only
    with count_include_pad, which TFLite's SAME never does, so that case pads explicitly."""
    a = attrs(node)
    kernel = tuple(a["kernel_shape"])
    if len(kernel) != 2:
        raise UnsupportedFeatureError("only 2-D pooling is supported")
    if a.get("ceil_mode", 0):
        raise UnsupportedFeatureError("ceil_mode pooling is not supported")
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        raise UnsupportedFeatureError("dilated pooling is not supported")
    if len(node.output) > 1 and node.output[1]:
        raise UnsupportedFeatureError("MaxPool's Indices output is not supported")
    strides = list(a.get("strides", [1, 1]))
    x = imp.nhwc(node.input[0])
    include_pad = op_type == "AVERAGE_POOL_2D" and bool(a.get("count_include_pad", 0))
    fill = float(np.finfo(np.float32).min) if op_type == "MAX_POOL_2D" else 0.0
    unpadded = x.shape
    x, padding, padded = _padding(imp, node, x, kernel, strides, [1, 1], fill, allow_same=not include_pad)
    out = imp.output(node.output[0], NHWC)
    exclude_pads = op_type == "AVERAGE_POOL_2D" and padded and not include_pad
    if exclude_pads:
        quantized = any(n.op_type == "QuantizeLinear" for n in imp.proto.graph.node)
        if x.dtype is not DType.FLOAT32 or quantized:  # the rescaling MUL is float arithmetic
            raise UnsupportedFeatureError("AveragePool excluding pads that are not TensorFlow's SAME")
        # the mean over the zero-padded window, rescaled by window size / elements inside the input
        shape = out.shape
        assert shape is not None and unpadded is not None and x.shape is not None
        pooled, out = out, Tensor(f"{out.name}/padded_mean", out.dtype, shape)
        top, left = _leading_pads(node, [x.shape[1] - unpadded[1], x.shape[2] - unpadded[2]])
        rows = _inside(shape[1], strides[0], kernel[0], top, unpadded[1])
        cols = _inside(shape[2], strides[1], kernel[1], left, unpadded[2])
        scale = (kernel[0] * kernel[1]) / np.outer(rows, cols)
        factor = constant_tensor(f"{pooled.name}/count", scale.reshape(1, *scale.shape, 1).astype(np.float32))
    imp.emit(
        op_type,
        [x],
        [out],
        {
            "padding": padding,
            "stride_h": strides[0],
            "stride_w": strides[1],
            "filter_height": kernel[0],
            "filter_width": kernel[1],
            "fused_activation_function": "NONE",
        },
    )
    if exclude_pads:
        imp.emit("MUL", [out, factor], [pooled], {"fused_activation_function": "NONE"})


def _leading_pads(node: Any, totals: list[int]) -> tuple[int, int]:
    """The top and left pads of a pooling node whose total pads per axis are `totals`."""
    auto = text_attr(node, "auto_pad", "NOTSET")
    if auto == "SAME_UPPER":
        return totals[0] // 2, totals[1] // 2
    if auto == "SAME_LOWER":
        return totals[0] - totals[0] // 2, totals[1] - totals[1] // 2
    pads = [int(p) for p in attrs(node).get("pads", [0, 0, 0, 0])]
    return pads[0], pads[1]


def _inside(out_size: int, stride: int, kernel: int, pad: int, size: int) -> np.ndarray:
    """How many of each output position's window elements lie inside the unpadded input."""
    start = np.arange(out_size) * stride - pad
    return np.minimum(start + kernel, size) - np.maximum(start, 0)


@converter("MaxPool")
def _max_pool(imp: Importer, node: Any) -> None:
    _pool(imp, node, "MAX_POOL_2D")


@converter("AveragePool")
def _avg_pool(imp: Importer, node: Any) -> None:
    _pool(imp, node, "AVERAGE_POOL_2D")


@converter("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(imp: Importer, node: Any) -> None:
    x = imp.nhwc(node.input[0])
    out = imp.output(node.output[0], NHWC)
    axes = constant_tensor(f"{out.name}/axes", np.array([1, 2], dtype=np.int32))
    op_type = "MEAN" if node.op_type == "GlobalAveragePool" else "REDUCE_MAX"
    imp.emit(op_type, [x, axes], [out], {"keep_dims": True})


@converter("BatchNormalization")
def _batch_norm(imp: Importer, node: Any) -> None:
    """To the IR's BATCH_NORM on the last axis (fold-batch-norm folds or lowers it)."""
    rank = imp.rank(node.input[0])
    x = imp.nhwc(node.input[0])
    perm = NHWC if rank == 4 else identity(rank)
    if perm[-1] != 1:
        raise UnsupportedFeatureError(f"BatchNormalization on a rank-{rank} input")
    params = []
    for name in node.input[1:5]:
        c = imp.real_const(name)
        if c is None:
            raise UnsupportedFeatureError("BatchNormalization parameters must be constants")
        params.append(constant_tensor(name, c.astype(np.float32)))
    out = imp.output(node.output[0], perm)
    imp.graph.add_op(
        Op("BATCH_NORM", {"epsilon": float(attrs(node).get("epsilon", 1e-5))}, None, name=out.name), [x, *params], [out]
    )


# --- elementwise -------------------------------------------------------------------------------------
def _operand(imp: Importer, name: str, perm: tuple[int, ...], rank: int) -> Tensor:
    """An elementwise operand in layout `perm` of a rank-`rank` result (constants broadcast to it)."""
    q = imp.values[name].quantized
    if q is not None:  # a quantized constant operand: broadcast its integers, keep the scales
        lifted = rank - q.data.ndim
        data = q.data.reshape((1,) * lifted + q.data.shape)
        axis = q.axis + lifted if q.axis is not None else None
        return imp.quantized_constant(name, Quantized(data, q.scale, q.zero_point, axis, q.storage, q.fake), perm)
    c = imp.const(name)
    if c is not None:
        if c.ndim == 0 or c.size == 1:
            return constant_tensor(name, c.astype(np.float32).reshape(()) if c.dtype.kind == "f" else c.reshape(()))
        full = c.reshape((1,) * (rank - c.ndim) + c.shape)
        return constant_tensor(name, np.transpose(full, perm))
    value = imp.values[name]
    assert value.shape is not None
    if len(value.shape) > rank:
        raise UnsupportedFeatureError("broadcasting between activations of different ranks")
    if len(value.shape) < rank:  # numpy broadcasting: leading axes of size 1, then the result's layout
        src = imp.in_onnx_order(name)
        padded_shape = (1,) * (rank - len(value.shape)) + tuple(value.shape)
        raised = Tensor(f"{name}/rank{rank}", src.dtype, padded_shape, quant=src.quant)
        new_shape = constant_tensor(f"{raised.name}/shape", np.array(padded_shape, dtype=np.int32))
        imp.emit("RESHAPE", [src, new_shape], [raised], {"new_shape": list(padded_shape)})
        if perm == identity(rank):
            return raised
        moved = Tensor(f"{raised.name}/perm", src.dtype, tuple(padded_shape[p] for p in perm), quant=src.quant)
        imp.emit("TRANSPOSE", [raised, constant_tensor(f"{moved.name}/order", np.array(perm, dtype=np.int32))], [moved])
        return moved
    return imp.tensor(name, perm)


def _result_layout(imp: Importer, node: Any) -> tuple[tuple[int, ...], int]:
    rank = imp.rank(node.output[0])
    for name in node.input:
        value = imp.values.get(name)
        if value is not None and value.tensor is not None and value.shape is not None and len(value.shape) == rank:
            return value.perm, rank
    return identity(rank), rank


BINARY = {
    "Add": "ADD",
    "Sub": "SUB",
    "Mul": "MUL",
    "Div": "DIV",
    "Max": "MAXIMUM",
    "Min": "MINIMUM",
    "Pow": "POW",
    "Equal": "EQUAL",
    "Less": "LESS",
    "LessOrEqual": "LESS_EQUAL",
    "Greater": "GREATER",
    "GreaterOrEqual": "GREATER_EQUAL",
    "And": "LOGICAL_AND",
    "Or": "LOGICAL_OR",
    "Xor": "NOT_EQUAL",  # on booleans
}
# int8/uint8 comparisons are quantized in TFLite (LiteRT aborts on plain ones)
_COMPARISON_TYPES = (DType.FLOAT32, DType.INT32, DType.INT64, DType.INT16, DType.UINT32, DType.UINT64, DType.BOOL)


# TFLite's ADD/SUB/MUL/DIV take 8- and 16-bit integers as quantized values (LiteRT aborts on some),
# and its MAXIMUM/MINIMUM have no uint16 kernel: plain integer arithmetic of those types has no TFLite op.
_NO_PLAIN_INTEGER = {
    **dict.fromkeys(("Add", "Sub", "Mul", "Div"), (DType.INT8, DType.UINT8, DType.INT16, DType.UINT16)),
    **dict.fromkeys(("Max", "Min"), (DType.UINT16,)),
}


@converter(*BINARY)
def _binary(imp: Importer, node: Any) -> None:
    perm, rank = _result_layout(imp, node)
    if len(node.input) != 2:
        raise UnsupportedFeatureError(f"{node.op_type} with {len(node.input)} inputs")
    dtypes = [imp.values[name].dtype for name in node.input]
    if dtypes[0] != dtypes[1] and node.op_type != "Pow" and BINARY[node.op_type] not in ("ADD", "SUB", "MUL", "DIV"):
        raise UnsupportedFeatureError(f"{node.op_type} of {dtypes[0]} and {dtypes[1]}")
    if node.op_type in ("And", "Or", "Xor") and dtypes[0] is not DType.BOOL:
        raise UnsupportedFeatureError(f"{node.op_type} on {dtypes[0]}")
    if node.op_type in ("Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual") and dtypes[0] not in (
        _COMPARISON_TYPES
    ):
        raise UnsupportedFeatureError(f"{node.op_type} on {dtypes[0]}")
    if node.op_type == "Pow" and dtypes[0] != dtypes[1]:
        raise UnsupportedFeatureError(f"Pow of {dtypes[0]} by {dtypes[1]} (TFLite's POW needs one type)")
    if dtypes[0] in _NO_PLAIN_INTEGER.get(node.op_type, ()) and imp.values[node.input[0]].quantized is None:
        raise UnsupportedFeatureError(
            f"{node.op_type} on {dtypes[0]}: TFLite has no plain {dtypes[0].value.lower()} {node.op_type} "
            "(its 8/16-bit integer arithmetic is quantized)"
        )
    a, b = (_operand(imp, name, perm, rank) for name in node.input)
    out = imp.output(node.output[0], perm)
    options = {"fused_activation_function": "NONE"} if node.op_type in ("Add", "Sub", "Mul", "Div") else {}
    imp.emit(BINARY[node.op_type], [a, b], [out], options)


UNARY = {
    "Relu": "RELU",
    "Sigmoid": "LOGISTIC",
    "Tanh": "TANH",
    "HardSwish": "HARD_SWISH",
    "Gelu": "GELU",
    "Sqrt": "SQRT",
    "Exp": "EXP",
    "Abs": "ABS",
    "Neg": "NEG",
    "Erf": "ERF",  # IR-only: the default pipeline fuses it into GELU or lowers it (passes/fuse_gelu.py)
    "Log": "LOG",
    "Sin": "SIN",
    "Cos": "COS",
    "Floor": "FLOOR",
    "Ceil": "CEIL",
    "Round": "ROUND",  # both round half to even
    "Sign": "SIGN",
    "Not": "LOGICAL_NOT",
}
# TFLite kernels of these take float32 only (SIGN also int32; LOGICAL_NOT bool).
_UNARY_TYPES = {"LOG", "SIN", "COS", "FLOOR", "CEIL", "ROUND", "SQRT", "EXP", "RELU", "LOGISTIC", "TANH", "GELU", "ERF"}


@converter(*UNARY)
def _unary(imp: Importer, node: Any) -> None:
    value = imp.values[node.input[0]]
    op_type = UNARY[node.op_type]
    allowed = {"SIGN": (DType.FLOAT32, DType.INT32), "LOGICAL_NOT": (DType.BOOL,)}.get(
        op_type, (DType.FLOAT32,) if op_type in _UNARY_TYPES else None
    )
    if allowed is not None and value.dtype not in allowed and value.quantized is None:
        raise UnsupportedFeatureError(f"{node.op_type} on {value.dtype} (TFLite's {op_type} takes {allowed[0]})")
    x = imp.tensor(node.input[0], value.perm)
    out = imp.output(node.output[0], value.perm)
    options = {}
    if node.op_type == "Gelu":
        options = {"approximate": text_attr(node, "approximate", "none") == "tanh"}
    imp.emit(op_type, [x], [out], options)


@converter("LeakyRelu")
def _leaky_relu(imp: Importer, node: Any) -> None:
    value = imp.values[node.input[0]]
    out = imp.output(node.output[0], value.perm)
    imp.emit("LEAKY_RELU", [imp.tensor(node.input[0], value.perm)], [out], {"alpha": attrs(node).get("alpha", 0.01)})


@converter("Clip")
def _clip(imp: Importer, node: Any) -> None:
    """Clip(0, 6) is RELU6, (-1, 1) RELU_N1_TO_1, (0, inf) RELU; other bounds MAXIMUM/MINIMUM."""
    low, high = _scalar(imp, node, 1), _scalar(imp, node, 2)
    value = imp.values[node.input[0]]
    x = imp.tensor(node.input[0], value.perm)
    known: dict[tuple[float | None, float | None], str] = {
        (0.0, 6.0): "RELU6",
        (-1.0, 1.0): "RELU_N1_TO_1",
        (0.0, None): "RELU",
        (0.0, 1.0): "RELU_0_TO_1",
    }
    out = imp.output(node.output[0], value.perm)
    if (low, high) in known:
        imp.emit(known[(low, high)], [x], [out])
        return
    current = x
    for bound, op_type in ((low, "MAXIMUM"), (high, "MINIMUM")):
        if bound is None:
            continue
        is_last = op_type == "MINIMUM" or high is None
        target = out if is_last else Tensor(f"{out.name}/low", out.dtype, out.shape)
        imp.emit(op_type, [current, constant_tensor(f"{target.name}/bound", np.array(bound, np.float32))], [target])
        current = target
    if low is None and high is None:
        imp.emit("RESHAPE", [x, constant_tensor(f"{out.name}/shape", np.array(out.shape, np.int32))], [out])


def _scalar(imp: Importer, node: Any, index: int) -> float | None:
    if len(node.input) <= index or not node.input[index]:
        return None
    c = imp.real_const(node.input[index])
    if c is None or c.size != 1:
        raise UnsupportedFeatureError("Clip bounds must be scalar constants")
    return float(c.reshape(()))


# --- matrix products, softmax, normalization -----------------------------------------------------------
@converter("Gemm")
def _gemm(imp: Importer, node: Any) -> None:
    a = attrs(node)
    if a.get("transA", 0):
        raise UnsupportedFeatureError("Gemm with transA")
    weight = imp.real_const(node.input[1])
    if weight is None or weight.ndim != 2:
        raise UnsupportedFeatureError("Gemm with a non-constant B")
    layout = (0, 1) if a.get("transB", 0) else (1, 0)  # FULLY_CONNECTED wants [N, K]
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    plain = imp.const(node.input[1])
    if alpha != 1.0:
        if plain is None:
            raise UnsupportedFeatureError("Gemm alpha with a quantized B")
        w = constant_tensor(node.input[1], (np.transpose(plain, layout) * alpha).astype(np.float32))
    else:
        w = imp.tensor(node.input[1], layout)
    inputs: list[Tensor | None] = [imp.tensor(node.input[0]), w, None]
    if len(node.input) > 2 and node.input[2]:
        bias_value = imp.values[node.input[2]]
        bias = imp.const(node.input[2])
        channels = weight.shape[layout[0]]
        if bias_value.quantized is not None and beta == 1.0 and bias_value.quantized.data.shape == (channels,):
            inputs[2] = imp.tensor(node.input[2], (0,))
        elif bias is not None and bias.shape in ((), (1,), (1, 1), (channels,), (1, channels)):
            flat = np.broadcast_to(bias.reshape(-1), (channels,)) * beta
            inputs[2] = constant_tensor(node.input[2], flat.astype(np.float32))
        else:
            raise UnsupportedFeatureError("Gemm C must be a constant scalar or row vector")
    out = imp.output(node.output[0], (0, 1))
    imp.emit("FULLY_CONNECTED", inputs, [out], {"fused_activation_function": "NONE"})


@converter("MatMul")
def _matmul(imp: Importer, node: Any) -> None:
    rank = imp.rank(node.output[0])
    weight = imp.real_const(node.input[1])
    x = imp.tensor(node.input[0])
    out = imp.output(node.output[0], identity(rank))
    if weight is not None and weight.ndim == 2:
        w = imp.tensor(node.input[1], (1, 0))
        imp.emit("FULLY_CONNECTED", [x, w, None], [out], {"fused_activation_function": "NONE", "keep_num_dims": True})
    else:
        if imp.rank(node.input[1]) < 2 or imp.rank(node.input[0]) < 2:
            raise UnsupportedFeatureError("MatMul with a rank-1 operand")
        imp.emit("BATCH_MATMUL", [x, imp.tensor(node.input[1])], [out])


def _softmax_layout(imp: Importer, node: Any) -> tuple[int, ...]:
    """A layout with the softmax axis last: the input's own when it already is (NHWC channels)."""
    rank = imp.rank(node.input[0])
    axis = attrs(node).get("axis", -1 if imp.opset >= 13 else 1) % rank
    if imp.opset < 13 and axis != rank - 1:  # before opset 13: a softmax over the flattened trailing axes
        shape = imp.shape(node.input[0])
        wide = [i for i in range(axis, rank) if shape is None or shape[i] != 1]
        if len(wide) > 1:  # flattening several axes of size > 1 is no single-axis softmax
            raise UnsupportedFeatureError(f"{node.op_type} over the flattened axes {axis}.. (opset {imp.opset})")
        axis = wide[0] if wide else axis  # the only axis of size > 1 among them (e.g. [N, 1000, 1, 1])
    perm = imp.values[node.input[0]].perm
    if perm[-1] == axis:
        return perm
    return (*(i for i in range(rank) if i != axis), axis)


@converter("Softmax", "LogSoftmax")
def _softmax(imp: Importer, node: Any) -> None:
    layout = _softmax_layout(imp, node)
    x = imp.tensor(node.input[0], layout)
    out = imp.output(node.output[0], layout)
    if node.op_type == "Softmax":
        imp.emit("SOFTMAX", [x], [out], {"beta": 1.0})
    else:
        imp.emit("LOG_SOFTMAX", [x], [out])


@converter("LayerNormalization")
def _layer_norm(imp: Importer, node: Any) -> None:
    """(x - mean) / sqrt(var + eps) * gamma + beta over the last axis, in TFLite ops."""
    a = attrs(node)
    rank = imp.rank(node.input[0])
    if a.get("axis", -1) % rank != rank - 1:
        raise UnsupportedFeatureError("LayerNormalization over more than the last axis")
    x = imp.tensor(node.input[0])
    assert x.shape is not None
    base = node.output[0]
    reduced = (*x.shape[:-1], 1)

    def t(suffix: str, shape: tuple[int, ...]) -> Tensor:
        return Tensor(f"{base}/{suffix}", x.dtype, shape)

    axis = constant_tensor(f"{base}/axis", np.array([rank - 1], dtype=np.int32))
    mean, centred, var, inv = t("mean", reduced), t("centred", x.shape), t("var", reduced), t("rsqrt", reduced)
    imp.emit("MEAN", [x, axis], [mean], {"keep_dims": True})
    imp.emit("SUB", [x, mean], [centred], {"fused_activation_function": "NONE"})
    square = t("square", x.shape)
    imp.emit("MUL", [centred, centred], [square], {"fused_activation_function": "NONE"})
    imp.emit("MEAN", [square, axis], [var], {"keep_dims": True})
    shifted = t("var_eps", reduced)
    eps = constant_tensor(f"{base}/epsilon", np.array(a.get("epsilon", 1e-5), dtype=np.float32))
    imp.emit("ADD", [var, eps], [shifted], {"fused_activation_function": "NONE"})
    imp.emit("RSQRT", [shifted], [inv])
    normed = t("normalized", x.shape)
    imp.emit("MUL", [centred, inv], [normed], {"fused_activation_function": "NONE"})
    gamma = imp.const(node.input[1])
    beta = imp.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if gamma is None:
        raise UnsupportedFeatureError("LayerNormalization scale must be a constant")
    out = imp.output(node.output[0], identity(rank))
    scaled = out if beta is None else t("scaled", x.shape)
    imp.emit(
        "MUL",
        [normed, constant_tensor(node.input[1], gamma.astype(np.float32))],
        [scaled],
        {"fused_activation_function": "NONE"},
    )
    if beta is not None:
        imp.emit(
            "ADD",
            [scaled, constant_tensor(node.input[2], beta.astype(np.float32))],
            [out],
            {"fused_activation_function": "NONE"},
        )


@converter("Concat")
def _concat_op(imp: Importer, node: Any) -> None:
    perm, rank = _result_layout(imp, node)
    axis = attrs(node)["axis"] % rank
    inputs = [_operand(imp, name, perm, rank) for name in node.input]
    out = imp.output(node.output[0], perm)
    imp.emit("CONCATENATION", inputs, [out], {"axis": perm.index(axis), "fused_activation_function": "NONE"})


@converter("Sum")
def _sum(imp: Importer, node: Any) -> None:
    """Sum(a, b, c, ...) as a chain of ADDs."""
    if len(node.input) == 1:
        imp.alias(node.output[0], node.input[0])
        return
    perm, rank = _result_layout(imp, node)
    operands = [_operand(imp, name, perm, rank) for name in node.input]
    out = imp.output(node.output[0], perm)
    current = operands[0]
    for i, operand in enumerate(operands[1:], start=1):
        target = out if i == len(operands) - 1 else Tensor(f"{out.name}/sum{i}", out.dtype, out.shape)
        imp.emit("ADD", [current, operand], [target], {"fused_activation_function": "NONE"})
        current = target


@converter("PRelu")
def _prelu(imp: Importer, node: Any) -> None:
    perm, rank = _result_layout(imp, node)
    x = imp.tensor(node.input[0], perm)
    slope = _operand(imp, node.input[1], perm, rank)
    out = imp.output(node.output[0], perm)
    imp.emit("PRELU", [x, slope], [out])


@converter("HardSigmoid")
def _hard_sigmoid(imp: Importer, node: Any) -> None:
    """max(0, min(1, alpha * x + beta)) as MUL, ADD and RELU_0_TO_1."""
    a = attrs(node)
    value = imp.values[node.input[0]]
    x = imp.tensor(node.input[0], value.perm)
    out = imp.output(node.output[0], value.perm)
    scaled = Tensor(f"{out.name}/scaled", out.dtype, out.shape)
    shifted = Tensor(f"{out.name}/shifted", out.dtype, out.shape)
    alpha = constant_tensor(f"{out.name}/alpha", np.array(a.get("alpha", 0.2), dtype=np.float32))
    beta = constant_tensor(f"{out.name}/beta", np.array(a.get("beta", 0.5), dtype=np.float32))
    imp.emit("MUL", [x, alpha], [scaled], {"fused_activation_function": "NONE"})
    imp.emit("ADD", [scaled, beta], [shifted], {"fused_activation_function": "NONE"})
    imp.emit("RELU_0_TO_1", [shifted], [out])


REDUCERS = {"ReduceMean": "MEAN", "ReduceMax": "REDUCE_MAX", "ReduceSum": "SUM", "ReduceMin": "REDUCE_MIN"}


def _axes_from_shapes(
    shape: tuple[int, ...] | None, out_shape: tuple[int, ...] | None, keepdims: int
) -> np.ndarray | None:
    """Axes fed at run time, as the static shapes fix them: with keepdims, the axes the output has
    as 1 (reducing an axis of size 1 changes nothing in REDUCERS, so those may be left out); else all."""
    if shape is None or out_shape is None:
        return None
    if keepdims and len(out_shape) == len(shape) and all(o in (1, i) for o, i in zip(out_shape, shape, strict=True)):
        return np.array([i for i, (o, n) in enumerate(zip(out_shape, shape, strict=True)) if o == 1 and n != 1])
    if not keepdims and len(out_shape) == 0:
        return np.arange(len(shape))
    return None


@converter(*REDUCERS)
def _reduce(imp: Importer, node: Any) -> None:
    """Axes follow the input's layout; without keepdims the kept axes keep their IR order."""
    a = attrs(node)
    value = imp.values[node.input[0]]
    rank = imp.rank(node.input[0])
    if value.dtype is DType.BOOL:
        raise UnsupportedFeatureError(f"{node.op_type} on BOOL")
    if 0 in (imp.shape(node.input[0]) or ()):  # TFLite's empty max is the largest float, not infinity
        raise UnsupportedFeatureError(f"{node.op_type} of an empty tensor")
    axes_input = imp.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
    if len(node.input) > 1 and node.input[1] and axes_input is None:
        axes_input = _axes_from_shapes(imp.shape(node.input[0]), imp.shape(node.output[0]), a.get("keepdims", 1))
        if axes_input is None:
            raise UnsupportedFeatureError("reduction axes must be constants")
        if axes_input.size == 0:  # nothing but axes of size 1 to reduce: sum, mean, max, min keep x
            imp.alias(node.output[0], node.input[0])
            return
    given = axes_input if axes_input is not None else a.get("axes")
    if given is None or len(given) == 0:
        given = [] if a.get("noop_with_empty_axes", 0) else list(range(rank))
    axes = [int(x) % rank for x in given]
    if not axes:
        imp.alias(node.output[0], node.input[0])
        return
    x = imp.tensor(node.input[0], value.perm)
    ir_axes = sorted(value.perm.index(ax) for ax in axes)
    keep = bool(a.get("keepdims", 1))
    if keep:
        perm = value.perm
    else:
        kept = [p for p in value.perm if p not in axes]  # ONNX axes in IR order
        renumber = {p: i for i, p in enumerate(sorted(kept))}
        perm = tuple(renumber[p] for p in kept)
    out = imp.output(node.output[0], perm)
    axes_t = constant_tensor(f"{out.name}/axes", np.array(ir_axes, dtype=np.int32))
    imp.emit(REDUCERS[node.op_type], [x, axes_t], [out], {"keep_dims": keep})


@converter("Pad")
def _pad(imp: Importer, node: Any) -> None:
    mode = text_attr(node, "mode", "constant")
    if mode != "constant":
        raise UnsupportedFeatureError(f"Pad mode '{mode}'")
    value = imp.values[node.input[0]]
    rank = imp.rank(node.input[0])
    pads = imp.const(node.input[1])
    if pads is None:
        raise UnsupportedFeatureError("Pad amounts must be constants")
    if len(node.input) > 3 and node.input[3]:
        raise UnsupportedFeatureError("Pad with axes")
    fill = imp.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    pairs = [(int(pads[i]), int(pads[i + rank])) for i in range(rank)]
    if any(v < 0 for pair in pairs for v in pair):
        raise UnsupportedFeatureError("negative pads (cropping)")
    ir_pairs = np.array([pairs[p] for p in value.perm], dtype=np.int32)
    x = imp.tensor(node.input[0], value.perm)
    out = imp.output(node.output[0], value.perm)
    amounts = constant_tensor(f"{out.name}/amounts", ir_pairs)
    if fill is not None and float(fill.reshape(())) != 0.0:
        imp.emit("PADV2", [x, amounts, constant_tensor(f"{out.name}/fill", fill.astype(np.float32).reshape(()))], [out])
    else:
        imp.emit("PAD", [x, amounts], [out])


@converter("DepthToSpace", "SpaceToDepth")
def _depth_space(imp: Importer, node: Any) -> None:
    a = attrs(node)
    mode = text_attr(node, "mode", "DCR")
    if node.op_type == "DepthToSpace" and mode != "DCR":
        raise UnsupportedFeatureError(f"DepthToSpace mode {mode} (TFLite's order is DCR)")
    x = imp.nhwc(node.input[0])
    out = imp.output(node.output[0], NHWC)
    op_type = "DEPTH_TO_SPACE" if node.op_type == "DepthToSpace" else "SPACE_TO_DEPTH"
    imp.emit(op_type, [x], [out], {"block_size": int(a["blocksize"])})


@converter("LRN")
def _lrn(imp: Importer, node: Any) -> None:
    """ONNX sums squares over `size` channels and divides alpha by size; TFLite takes a radius."""
    a = attrs(node)
    size = int(a["size"])
    if size % 2 == 0:
        raise UnsupportedFeatureError("LRN with an even size")
    x = imp.nhwc(node.input[0])
    out = imp.output(node.output[0], NHWC)
    imp.emit(
        "LOCAL_RESPONSE_NORMALIZATION",
        [x],
        [out],
        {
            "radius": (size - 1) // 2,
            "bias": float(a.get("bias", 1.0)),
            "alpha": float(a.get("alpha", 1e-4)) / size,
            "beta": float(a.get("beta", 0.75)),
        },
    )


@converter("ConvTranspose")
def _conv_transpose(imp: Importer, node: Any) -> None:
    """TRANSPOSE_CONV: weights [I, O, kh, kw] to [O, kh, kw, I]; ONNX pads must be VALID or TF's SAME split."""
    a = attrs(node)
    weight = imp.real_const(node.input[1])
    if weight is None or weight.ndim != 4 or a.get("group", 1) != 1:
        raise UnsupportedFeatureError("only ungrouped 2-D ConvTranspose with constant weights is supported")
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        raise UnsupportedFeatureError("dilated ConvTranspose")
    x = imp.nhwc(node.input[0])
    assert x.shape is not None
    out = imp.output(node.output[0], NHWC)
    assert out.shape is not None
    strides = list(a.get("strides", [1, 1]))
    kernel = weight.shape[2:]
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if "output_shape" in a or text_attr(node, "auto_pad", "NOTSET") != "NOTSET":
        raise UnsupportedFeatureError("ConvTranspose with output_shape or auto_pad")
    padding = "VALID" if not any(pads) and not any(a.get("output_padding", [0, 0])) else "SAME"
    if padding == "VALID":
        for i, (size, k, s) in enumerate(zip(x.shape[1:3], kernel, strides, strict=True)):
            if out.shape[1 + i] != (size - 1) * s + k or k < s:
                raise UnsupportedFeatureError("ConvTranspose whose output size TFLite's VALID does not give")
    if padding == "SAME":
        for i, (size, k, s) in enumerate(zip(x.shape[1:3], kernel, strides, strict=True)):
            total = max((size - 1) * s + k - out.shape[1 + i], 0)
            if (pads[i], pads[i + 2]) != (total // 2, total - total // 2) or out.shape[1 + i] != size * s:
                raise UnsupportedFeatureError(f"ConvTranspose pads {pads} match neither VALID nor SAME")
    shape = constant_tensor(f"{out.name}/output_shape", np.array(out.shape, dtype=np.int32))
    w = imp.tensor(node.input[1], (1, 2, 3, 0))
    b = imp.tensor(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    imp.emit(
        "TRANSPOSE_CONV",
        [shape, w, x, b],
        [out],
        {"padding": padding, "stride_h": strides[0], "stride_w": strides[1], "fused_activation_function": "NONE"},
    )


@converter("Slice")
def _slice(imp: Importer, node: Any) -> None:
    value = imp.values[node.input[0]]
    rank = imp.rank(node.input[0])
    shape = imp.shape(node.input[0])
    assert shape is not None
    consts = [imp.const(name) if name else None for name in node.input[1:]]
    if any(c is None for c, name in zip(consts, node.input[1:], strict=True) if name):
        raise UnsupportedFeatureError("Slice bounds must be constants")
    starts, ends = consts[0], consts[1]
    assert starts is not None and ends is not None
    axes = consts[2] if len(consts) > 2 and consts[2] is not None else np.arange(len(starts))
    steps = consts[3] if len(consts) > 3 and consts[3] is not None else np.ones(len(starts), dtype=np.int64)
    begin, end, stride = [0] * rank, list(shape), [1] * rank
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        ax = int(ax) % rank
        if st <= 0:
            raise UnsupportedFeatureError("Slice with a non-positive step")
        size = shape[ax]
        begin[ax] = int(np.clip(s + size if s < 0 else s, 0, size))
        end[ax] = int(np.clip(e + size if e < 0 else e, 0, size))
        stride[ax] = int(st)
    x = imp.tensor(node.input[0], value.perm)
    out = imp.output(node.output[0], value.perm)
    ir = [[v[p] for p in value.perm] for v in (begin, end, stride)]
    inputs = [
        constant_tensor(f"{out.name}/{k}", np.array(v, dtype=np.int32))
        for k, v in zip(("begin", "end", "strides"), ir, strict=True)
    ]
    imp.emit("STRIDED_SLICE", [x, *inputs], [out])


@converter("Split")
def _split(imp: Importer, node: Any) -> None:
    a = attrs(node)
    value = imp.values[node.input[0]]
    rank = imp.rank(node.input[0])
    shape = imp.shape(node.input[0])
    assert shape is not None
    axis = a.get("axis", 0) % rank
    sizes = imp.const(node.input[1]) if len(node.input) > 1 and node.input[1] else a.get("split")
    if sizes is None and len(node.input) > 1 and node.input[1]:
        # sizes fed at run time must agree with the outputs' static shapes: take them from there
        out_shapes = [imp.shape(name) for name in node.output]
        if any(s is None for s in out_shapes):
            raise UnsupportedFeatureError("Split whose sizes are not a constant")
        sizes = [s[axis] for s in out_shapes]  # type: ignore[index]
    if sizes is None:  # equal parts; the last one smaller when they do not divide (opset 18)
        chunk = -(-shape[axis] // len(node.output))
        sizes = [chunk] * (len(node.output) - 1) + [shape[axis] - chunk * (len(node.output) - 1)]
    if sum(int(v) for v in sizes) != shape[axis] or any(int(v) < 0 for v in sizes):
        raise UnsupportedFeatureError(f"split sizes {list(sizes)} do not add up to {shape[axis]}")
    x = imp.tensor(node.input[0], value.perm)
    outs = [imp.output(name, value.perm) for name in node.output]
    size_t = constant_tensor(f"{outs[0].name}/sizes", np.array([int(s) for s in sizes], dtype=np.int32))
    axis_t = constant_tensor(f"{outs[0].name}/axis", np.array(value.perm.index(axis), dtype=np.int32))
    imp.emit("SPLIT_V", [x, size_t, axis_t], outs, {"num_splits": len(outs)})


@converter("Resize", "Upsample")
def _resize(imp: Importer, node: Any) -> None:
    """nearest (asymmetric, floor) and linear (half_pixel, pytorch_half_pixel, align_corners, asymmetric)."""
    a = attrs(node)
    mode = text_attr(node, "mode", "nearest")
    transform = text_attr(node, "coordinate_transformation_mode", "half_pixel")
    for unsupported in ("antialias", "axes", "keep_aspect_ratio_policy", "exclude_outside"):
        if a.get(unsupported):
            raise UnsupportedFeatureError(f"Resize with {unsupported}")
    in_shape = imp.shape(node.input[0])
    scales_input = 1 if node.op_type == "Upsample" else 2
    given = len(node.input) > scales_input and node.input[scales_input]
    scales = imp.const(node.input[scales_input]) if given else None
    if given and scales is None:
        # ONNX samples at x_out / scale, TFLite at x_out * in / out: the same only for known, whole scales
        raise UnsupportedFeatureError(f"{node.op_type} whose scales are not a constant")
    if scales is not None and scales.size == 4 and in_shape is not None:
        for dim, factor in zip(in_shape[2:], scales[2:], strict=True):
            if abs(dim * float(factor) - round(dim * float(factor))) > 1e-6:
                raise UnsupportedFeatureError("Resize scales that do not give whole output sizes")
    if node.op_type == "Upsample":
        transform = "asymmetric"
    x = imp.nhwc(node.input[0])
    out = imp.output(node.output[0], NHWC)
    assert out.shape is not None
    size = constant_tensor(f"{out.name}/size", np.array(out.shape[1:3], dtype=np.int32))
    if mode == "nearest":
        nearest = text_attr(node, "nearest_mode", "round_prefer_floor")
        if transform != "asymmetric" or nearest != "floor":
            raise UnsupportedFeatureError(f"nearest Resize with {transform}/{nearest}")
        imp.emit("RESIZE_NEAREST_NEIGHBOR", [x, size], [out], {"align_corners": False, "half_pixel_centers": False})
    elif mode == "linear":
        if transform == "pytorch_half_pixel" and min(out.shape[1:3]) == 1:
            raise UnsupportedFeatureError("pytorch_half_pixel Resize to size 1")
        known = {"half_pixel": (False, True), "pytorch_half_pixel": (False, True), "align_corners": (True, False)}
        align, half = known.get(transform, (False, False) if transform == "asymmetric" else (None, None))
        if align is None:
            raise UnsupportedFeatureError(f"linear Resize with {transform}")
        imp.emit("RESIZE_BILINEAR", [x, size], [out], {"align_corners": align, "half_pixel_centers": half})
    else:
        raise UnsupportedFeatureError(f"Resize mode {mode}")


# --- QuantizeLinear / DequantizeLinear ------------------------------------------------------------
def _quant_params(imp: Importer, node: Any, rank: int) -> tuple[np.ndarray, np.ndarray, int | None, DType]:
    """(scale, zero point, ONNX axis or None for per-tensor, storage type) of a Q/DQ node."""
    scale = imp.const(node.input[1])
    zero_point = imp.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if scale is None or (len(node.input) > 2 and node.input[2] and zero_point is None):
        raise UnsupportedFeatureError("scale and zero point must be constants")
    storage = dtype_of(zero_point) if zero_point is not None else DType.UINT8  # ONNX's default
    if storage not in QUANTIZED_STORAGE:
        raise UnsupportedFeatureError(f"quantization to {storage}")
    scale = scale.astype(np.float32).reshape(-1)
    zp = (zero_point if zero_point is not None else np.zeros(scale.size, np.int64)).astype(np.int64).reshape(-1)
    if scale.size == 1:
        return scale, zp[:1], None, storage
    axis = int(attrs(node).get("axis", 1)) % max(rank, 1)
    return scale, np.broadcast_to(zp, scale.shape).copy(), axis, storage


@converter("QuantizeLinear")
def _quantize_linear(imp: Importer, node: Any) -> None:
    src = imp.values[node.input[0]]
    rank = len(src.shape) if src.shape is not None else imp.rank(node.input[0])
    scale, zp, axis, storage = _quant_params(imp, node, rank)
    if src.const is not None:  # a float constant fake-quantized (a QAT weight): kept for its reader
        imp.values[node.output[0]] = Value(
            None, identity(src.const.ndim), None, src.const.shape, storage,
            Quantized(src.const, scale, zp, axis, storage, fake=True),
        )  # fmt: skip
        return
    x = imp.tensor(node.input[0], src.perm)
    out = imp.output(node.output[0], src.perm, storage)
    out.quant = Quantization(scale, zp, src.perm.index(axis) if axis is not None else 0)
    imp.emit("QUANTIZE", [x], [out])


@converter("DequantizeLinear")
def _dequantize_linear(imp: Importer, node: Any) -> None:
    src = imp.values[node.input[0]]
    rank = len(src.shape) if src.shape is not None else imp.rank(node.input[0])
    if src.quantized is not None:  # Q -> DQ of a constant: still waiting for its reader
        imp.values[node.output[0]] = Value(None, src.perm, None, src.shape, DType.FLOAT32, src.quantized)
        return
    scale, zp, axis, _storage = _quant_params(imp, node, rank)
    if src.const is not None:  # integers in the file: weights and int32 biases
        stored = dtype_of(src.const)
        if stored not in QUANTIZED_STORAGE:
            raise UnsupportedFeatureError(f"DequantizeLinear of {stored} constants")
        quantized = Quantized(src.const, scale, zp, axis, stored, fake=False)
        imp.values[node.output[0]] = Value(
            None, identity(src.const.ndim), None, src.const.shape, DType.FLOAT32, quantized
        )
        return
    x = imp.tensor(node.input[0], src.perm)
    given = Quantization(scale, zp, src.perm.index(axis) if axis is not None else 0)
    if x.quant is None:  # e.g. an int8 graph input
        x.quant = given
    elif not same_quant_values(x.quant, given):
        raise UnsupportedFeatureError("DequantizeLinear's scale or zero point differs from its QuantizeLinear's")
    out = imp.output(node.output[0], src.perm, DType.FLOAT32)
    imp.emit("DEQUANTIZE", [x], [out])


QUANTIZED_STORAGE = (DType.INT8, DType.UINT8, DType.INT32)


# --- more elementwise and selection ops (where TFLite has a builtin for the types) ----------------
@converter("Reciprocal")
def _reciprocal(imp: Importer, node: Any) -> None:
    value = imp.values[node.input[0]]
    if value.dtype is not DType.FLOAT32 or value.quantized is not None:
        raise UnsupportedFeatureError(f"Reciprocal on {value.dtype}")
    x = imp.tensor(node.input[0], value.perm)
    out = imp.output(node.output[0], value.perm)
    one = constant_tensor(f"{out.name}/one", np.array(1.0, dtype=np.float32))
    imp.emit("DIV", [one, x], [out], {"fused_activation_function": "NONE"})


@converter("Size")
def _size(imp: Importer, node: Any) -> None:
    shape = imp.shape(node.input[0])
    if shape is None:
        raise UnsupportedFeatureError("the input's shape is not static")
    imp.set_const(node.output[0], np.array(int(np.prod(shape, dtype=np.int64)), dtype=np.int64))


# CAST between these; ONNX and TFLite both truncate floats toward zero when casting to integers.
_CAST_TYPES = (DType.FLOAT32, DType.INT32, DType.INT16, DType.INT8, DType.UINT8, DType.BOOL)


@converter("Cast", "CastLike")
def _cast_op(imp: Importer, node: Any) -> None:
    value = imp.values[node.input[0]]
    out = imp.output(node.output[0], value.perm)
    if value.dtype not in _CAST_TYPES or out.dtype not in _CAST_TYPES or value.quantized is not None:
        raise UnsupportedFeatureError(f"{node.op_type} from {value.dtype} to {out.dtype}")
    x = imp.tensor(node.input[0], value.perm)
    options = {"in_data_type": value.dtype.value, "out_data_type": out.dtype.value}
    imp.emit("CAST", [x], [out], options)


@converter("Where")
def _where(imp: Importer, node: Any) -> None:
    perm, rank = _result_layout(imp, node)
    dtypes = [imp.values[name].dtype for name in node.input]
    if dtypes[0] is not DType.BOOL or dtypes[1] != dtypes[2]:
        raise UnsupportedFeatureError(f"Where on {dtypes[0]} choosing {dtypes[1]} or {dtypes[2]}")
    operands = [_operand(imp, name, perm, rank) for name in node.input]
    imp.emit("SELECT_V2", operands, [imp.output(node.output[0], perm)])


@converter("ArgMax", "ArgMin")
def _arg_max(imp: Importer, node: Any) -> None:
    """ARG_MAX/ARG_MIN over the axis of the input in ONNX order (both take the first of equal values),
    then a RESHAPE for keepdims."""
    a = attrs(node)
    value = imp.values[node.input[0]]
    if value.dtype not in (DType.FLOAT32, DType.INT32, DType.INT8, DType.UINT8) or value.quantized is not None:
        raise UnsupportedFeatureError(f"{node.op_type} on {value.dtype}")
    shape = imp.shape(node.input[0])
    out_shape = imp.shape(node.output[0])
    if shape is None or out_shape is None:
        raise UnsupportedFeatureError("the shapes are not static")
    axis = int(a.get("axis", 0)) % len(shape)
    x = imp.tensor(node.input[0])
    op_type = "ARG_MAX" if node.op_type == "ArgMax" else "ARG_MIN"
    axis_t = constant_tensor(f"{node.output[0]}/axis", np.array([axis], dtype=np.int32))
    reduced = tuple(d for i, d in enumerate(shape) if i != axis)
    keep = bool(a.get("keepdims", 1))
    last = bool(a.get("select_last_index", 0))
    out = imp.output(node.output[0], identity(len(out_shape)), DType.INT32)
    target = Tensor(f"{out.name}/reduced", DType.INT32, reduced) if keep else out
    found = Tensor(f"{out.name}/reversed_index", DType.INT32, reduced) if last else target
    if last:  # the first of equal values along the reversed axis is the last one: n - 1 - index
        flipped = Tensor(f"{out.name}/reversed", x.dtype, x.shape)
        imp.emit("REVERSE_V2", [x, axis_t], [flipped])
        x = flipped
    imp.emit(op_type, [x, axis_t], [found], {"output_type": "INT32"})
    if last:
        end = constant_tensor(f"{out.name}/last", np.array(shape[axis] - 1, dtype=np.int32))
        imp.emit("SUB", [end, found], [target], {"fused_activation_function": "NONE"})
    if keep:
        new_shape = constant_tensor(f"{out.name}/shape", np.array(out_shape, dtype=np.int32))
        imp.emit("RESHAPE", [target, new_shape], [out], {"new_shape": list(out_shape)})


@converter("Trilu")
def _trilu(imp: Importer, node: Any) -> None:
    """The upper or lower triangle of the last two axes: SELECT_V2 against a constant mask."""
    value = imp.values[node.input[0]]
    shape = imp.shape(node.input[0])
    if shape is None or len(shape) < 2:
        raise UnsupportedFeatureError("Trilu needs a static shape of rank >= 2")
    k_value = imp.const(node.input[1]) if len(node.input) > 1 and node.input[1] else np.array(0)
    if k_value is None:
        raise UnsupportedFeatureError("Trilu whose k is not a constant")
    k = int(k_value.reshape(-1)[0])
    rows, cols = np.indices(shape[-2:])
    keep = cols - rows >= k if attrs(node).get("upper", 1) else cols - rows <= k
    mask = np.broadcast_to(keep, shape)
    x = imp.tensor(node.input[0], value.perm)
    out = imp.output(node.output[0], value.perm)
    mask_t = constant_tensor(f"{out.name}/mask", np.ascontiguousarray(np.transpose(mask, value.perm)))
    zero = x.dtype.numpy
    if zero is None:
        raise UnsupportedFeatureError(f"Trilu on {x.dtype}")
    zero_t = constant_tensor(f"{out.name}/zero", np.zeros((), dtype=zero))
    imp.emit("SELECT_V2", [mask_t, x, zero_t], [out])


@converter("Mod")
def _mod(imp: Importer, node: Any) -> None:
    """Integer Mod with fmod=0 takes the divisor's sign, as FLOOR_MOD does."""
    dtypes = [imp.values[name].dtype for name in node.input]
    if attrs(node).get("fmod", 0) or dtypes[0] is not DType.INT32 or dtypes[1] is not DType.INT32:
        raise UnsupportedFeatureError(f"Mod on {dtypes[0]} with fmod={attrs(node).get('fmod', 0)}")
    perm, rank = _result_layout(imp, node)
    a, b = (_operand(imp, name, perm, rank) for name in node.input)
    imp.emit("FLOOR_MOD", [a, b], [imp.output(node.output[0], perm)])


@converter("TopK")
def _top_k(imp: Importer, node: Any) -> None:
    """TOPK_V2 along the last axis of a layout that puts the ONNX axis last (largest first, and the
    lower index first among equal values, as ONNX wants); smallest-k of floats as top-k of -x."""
    a = attrs(node)
    value = imp.values[node.input[0]]
    rank = imp.rank(node.input[0])
    k = imp.const(node.input[1])
    out_shape = imp.shape(node.output[0])
    axis = int(a.get("axis", -1)) % rank
    if k is None and out_shape is not None:  # a k fed at run time must agree with the static output shape
        k = np.array([out_shape[axis]])
    if k is None:
        raise UnsupportedFeatureError("TopK whose k is not a constant")
    largest = bool(a.get("largest", 1))
    if not a.get("sorted", 1):
        raise UnsupportedFeatureError("TopK with sorted=0")
    if value.dtype is not DType.FLOAT32 and (not largest or value.dtype is not DType.INT32):
        raise UnsupportedFeatureError(f"TopK on {value.dtype} (largest={int(largest)})")
    perm = value.perm if value.perm[-1] == axis else (*(i for i in range(rank) if i != axis), axis)
    x = imp.tensor(node.input[0], perm)
    k_t = constant_tensor(f"{node.output[0]}/k", np.array(int(k.reshape(-1)[0]), dtype=np.int32))
    values = imp.output(node.output[0], perm)
    indices = imp.output(node.output[1], perm, DType.INT32)
    if largest:
        imp.emit("TOPK_V2", [x, k_t], [values, indices])
        return
    negated = Tensor(f"{values.name}/negated_input", x.dtype, x.shape)
    top = Tensor(f"{values.name}/negated", values.dtype, values.shape)
    imp.emit("NEG", [x], [negated])
    imp.emit("TOPK_V2", [negated, k_t], [top, indices])
    imp.emit("NEG", [top], [values])
