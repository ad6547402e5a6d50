"""The Ethos-U constraint table: the same rules as Vela 5.2's own table, each tested on both sides of its limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from ethosu import regor

from npupass.backends.ethos_u.capabilities import CONSTRAINTS, CORES, TABLES, OpView, npu_reasons
from npupass.ir.graph import Graph, Op, Tensor
from npupass.ir.types import DType, Quantization


# --- the table against Vela's ------------------------------------------------------------------------------
@pytest.mark.parametrize("core", ["EthosU55", "EthosU65", "EthosU85"])
def test_table_covers_exactly_the_ops_vela_supports(core: str) -> None:
    assert sorted(TABLES[core]) == sorted(regor.tflite_operator_constraints(core))


@pytest.mark.parametrize("core", ["EthosU55", "EthosU65", "EthosU85"])
def test_table_checks_exactly_the_rules_vela_lists_per_op(core: str) -> None:
    vela = regor.tflite_operator_constraints(core)
    for op, constraints in TABLES[core].items():
        assert sorted(c.vela for c in constraints) == sorted(vela[op]), op


def test_every_op_in_the_tables_is_a_tflite_builtin() -> None:
    from npupass.backends.ethos_u.capabilities import VELA_OP_NAMES
    from npupass.ir.ops import BUILTIN_CODES

    tflite_name = {vela: ours for ours, vela in VELA_OP_NAMES.items()}
    for table in TABLES.values():
        assert all(tflite_name.get(op, op) in BUILTIN_CODES for op in table)


def test_every_constraint_is_in_a_table() -> None:
    used = {c.name for table in TABLES.values() for cs in table.values() for c in cs}
    assert used == set(CONSTRAINTS)
    assert len(CONSTRAINTS) == 69


# --- single-op graphs ----------------------------------------------------------------------------------------
OPTIONS_TYPES = {
    "CONV_2D": "Conv2DOptions",
    "AVERAGE_POOL_2D": "Pool2DOptions",
    "MAX_POOL_2D": "Pool2DOptions",
    "ARG_MAX": "ArgMaxOptions",
    "SOFTMAX": "SoftmaxOptions",
}


def q(scale: float | list[float] = 0.1, zp: int | list[int] = 0, axis: int = 0) -> Quantization:
    return Quantization(np.atleast_1d(scale), np.atleast_1d(zp), axis=axis)


def fm(
    shape: tuple[int, ...] | None = (1, 8, 8, 4), dtype: DType = DType.INT8, quant: Any = "default", **kw: Any
) -> Tensor:
    quant = q() if quant == "default" else quant
    return Tensor("fm", dtype, shape, quant=quant, **kw)


def const(values: Any, dtype: DType = DType.INT32, quant: Quantization | None = None) -> Tensor:
    data = np.asarray(values, dtype=dtype.numpy)
    data.flags.writeable = False
    return Tensor("const", dtype, tuple(data.shape), data=data, quant=quant)


def view(
    op_type: str, inputs: list[Tensor | None], outputs: list[Tensor], core: str = "EthosU55", **options: Any
) -> OpView:
    g = Graph("g")
    op = g.add_op(Op(op_type, options=options, options_type=OPTIONS_TYPES.get(op_type)), inputs, outputs)
    g.inputs = [t for t in inputs if t is not None and not t.is_constant]
    g.outputs = list(outputs)
    return OpView(g, op, CORES[core])


def conv(weights: Tensor | None = None, bias: Tensor | None = "default", **options: Any) -> OpView:  # type: ignore[assignment]
    w = weights if weights is not None else const(np.ones((4, 3, 3, 4)), DType.INT8, q())
    b = const(np.zeros(4)) if bias == "default" else bias
    opts = {"padding": "SAME", "stride_w": 1, "stride_h": 1, "dilation_w_factor": 1, "dilation_h_factor": 1}
    return view("CONV_2D", [fm(), w, b], [fm()], **(opts | options))


def unary(op_type: str, ifm: Tensor | None = None, ofm: Tensor | None = None, **options: Any) -> OpView:
    return view(op_type, [ifm or fm()], [ofm or fm()], **options)


def pool(op_type: str, k: tuple[int, int], padding: str = "VALID", stride: int = 1) -> OpView:
    options = {"filter_width": k[0], "filter_height": k[1], "padding": padding, "stride_w": stride, "stride_h": stride}
    return view(op_type, [fm((1, 300, 300, 4))], [fm()], **options)


def mean(shape: tuple[int, ...], axes: list[int], dtype: DType = DType.INT8) -> OpView:
    return view("MEAN", [fm(shape, dtype), const(axes)], [fm(dtype=dtype)])


def resize(op_type: str, ifm: tuple[int, int], ofm: tuple[int, int], core: str = "EthosU55", **options: Any) -> OpView:
    return view(op_type, [fm((1, *ifm, 4)), const([ofm[0], ofm[1]])], [fm((1, *ofm, 4))], core=core, **options)


def transpose(shape: tuple[int, ...], perm: list[int], dtype: DType = DType.INT8) -> OpView:
    out = tuple(shape[p] for p in perm)
    return view("TRANSPOSE", [fm(shape, dtype), const(perm)], [fm(out, dtype)])


def lstm(present: list[int]) -> OpView:
    inputs: list[Tensor | None] = [None] * 24
    inputs[0] = fm((1, 2, 4))
    for slot in present:
        inputs[slot] = const(np.ones((4, 4)), DType.INT8, q())
    return view("UNIDIRECTIONAL_SEQUENCE_LSTM", inputs, [fm((1, 2, 4))])


def tconv(ifm: int, ofm: int, stride: tuple[int, int] = (2, 2), padding: str = "SAME", kernel: int = 3) -> OpView:
    w = const(np.ones((4, kernel, kernel, 4)), DType.INT8, q())
    options = {"padding": padding, "stride_w": stride[0], "stride_h": stride[1]}
    return view("TRANSPOSE_CONV", [const([1, ofm, ofm, 4]), w, fm((1, ifm, ifm, 4))], [fm((1, ofm, ofm, 4))], **options)


def fc(weights_shape: tuple[int, ...], dynamic: bool = False, ifm_dtype: DType = DType.INT8, depth: int = 4) -> OpView:
    w = fm(weights_shape) if dynamic else const(np.ones(weights_shape), DType.INT8, q())
    return view("FULLY_CONNECTED", [fm((1, weights_shape[-1]), ifm_dtype), w, None], [fm((1, depth))])


def scatter(indices: list[list[int]], constant: bool = True, shape_constant: bool = True) -> OpView:
    idx = const(indices) if constant else fm((len(indices), len(indices[0])), DType.INT32, None)
    shape = const([8, 4]) if shape_constant else fm((2,), DType.INT32, None)
    return view("SCATTER_ND", [idx, fm((len(indices), 4)), shape], [fm((8, 4))], core="EthosU85")


def variable(handle: DType, data: DType) -> OpView:
    return view("ASSIGN_VARIABLE", [fm((), handle, None), fm((1, 4), data)], [], core="EthosU85")


# constraint: (meets it, breaks it, what the user is told about the second)
CASES: dict[str, tuple[Callable[[], OpView], Callable[[], OpView], str]] = {
    "dynamic-shape": (
        lambda: unary("RELU", fm(shape_signature=(-1, 8, 8, 4))),
        lambda: unary("RELU", fm(shape_signature=(1, -1, 8, 4))),
        "'fm' has a dynamic dimension after the first",
    ),
    "feature-map-type": (lambda: unary("RELU"), lambda: unary("RELU", fm(dtype=DType.FLOAT32)), "'fm' is FLOAT32"),
    "feature-map-type-bool": (
        lambda: unary("RELU", fm(dtype=DType.BOOL)),
        lambda: unary("RELU", fm(dtype=DType.FLOAT16)),
        "'fm' is FLOAT16",
    ),
    "constant-shape": (lambda: unary("RELU"), lambda: unary("RELU", fm(None)), "'fm' has no shape"),
    "has-ifm": (lambda: unary("RELU"), lambda: view("RELU", [], [fm()]), "it has no inputs"),
    "has-ofm": (lambda: unary("RELU"), lambda: view("RELU", [fm()], []), "it has no outputs"),
    "no-64-bit": (
        lambda: unary("RELU", fm(dtype=DType.INT32)),
        lambda: unary("RELU", fm(dtype=DType.INT64)),
        "'fm' is INT64",
    ),
    "no-32-bit": (
        lambda: unary("RELU", fm(dtype=DType.INT16)),
        lambda: unary("RELU", fm(dtype=DType.INT32)),
        "'fm' is INT32",
    ),
    "per-tensor-quantization": (
        lambda: unary("RELU"),
        lambda: unary("RELU", fm(quant=q([0.1, 0.2], [0, 0], axis=3))),
        "'fm' is quantized per axis",
    ),
    "zero-points": (
        lambda: unary("RELU", fm(dtype=DType.UINT8, quant=q(zp=0))),
        lambda: unary("RELU", fm(dtype=DType.UINT8, quant=q(zp=-1))),
        "'fm' (UINT8) has zero point -1",
    ),
    "ifm-zero-points": (
        lambda: unary("RELU", fm(quant=q(zp=127))),
        lambda: unary("RELU", fm(dtype=DType.INT16, quant=q(zp=1))),
        "'fm' (INT16) has zero point 1",
    ),
    "ofm-zero-points": (
        lambda: unary("RELU", ofm=fm(dtype=DType.UINT8, quant=q(zp=255))),
        lambda: unary("RELU", ofm=fm(dtype=DType.UINT8, quant=q(zp=256))),
        "'fm' (UINT8) has zero point 256",
    ),
    "quantized": (lambda: unary("RELU"), lambda: unary("RELU", fm(quant=None)), "'fm' has no quantization"),
    "positive-scale": (
        lambda: unary("RELU", fm(quant=q(1e-9))),
        lambda: unary("RELU", fm(quant=q(-0.5))),
        "'fm' has scale -0.5",
    ),
    "weights-8-bit": (
        lambda: conv(),
        lambda: conv(const(np.ones((4, 3, 3, 4)), DType.INT16, q())),
        "weights 'const' are INT16",
    ),
    "weight-sum": (
        lambda: conv(const(np.full((2, 1, 1, 65536), 127), DType.INT8, q())),
        lambda: conv(const(np.full((2, 1, 1, 65537), -127), DType.INT8, q())),
        "a channel's absolute weight sum is 8323199, above 8323072",
    ),
    "weight-sum-u85": (
        lambda: conv(const(np.full((2, 1, 1, 65536), 127), DType.INT8, q())),
        lambda: conv(const(np.full((2, 1, 1, 65537), 127), DType.INT8, q())),
        "a channel's absolute weight sum is 8323199, above 8323072",
    ),
    "bias-channel-axis": (
        lambda: conv(bias=const(np.zeros((1, 1, 1, 4)))),
        lambda: conv(bias=const(np.zeros((4, 1)))),
        "bias 'const' has shape [4, 1]",
    ),
    "bias-constant": (
        lambda: conv(),
        lambda: conv(bias=fm((4,), DType.INT32, None)),
        "bias 'fm' is computed at run time",
    ),
    "bias-type": (
        lambda: conv(bias=const(np.zeros(4), DType.INT64)),
        lambda: conv(bias=const(np.zeros(4), DType.INT16)),
        "bias 'const' is INT16",
    ),
    "int64-bias-range": (
        lambda: conv(bias=const(np.full(4, 1099511627774), DType.INT64)),
        lambda: conv(bias=const(np.full(4, 1099511627775), DType.INT64)),
        "bias 'const' holds 1099511627775",
    ),
    "int64-bias-range-u85": (
        lambda: conv(bias=const(np.full(4, 281474976710654), DType.INT64)),
        lambda: conv(bias=const(np.full(4, 281474976710655), DType.INT64)),
        "bias 'const' holds 281474976710655",
    ),
    "stride-above-3": (
        lambda: conv(stride_w=4, stride_h=4, padding="VALID"),
        lambda: conv(stride_w=4, stride_h=3),
        "stride 4x3 with SAME padding of 0x1",
    ),
    "stride-1-to-3": (lambda: conv(stride_w=3, stride_h=3), lambda: conv(stride_w=4, stride_h=1), "stride 4x1"),
    "avgpool-kernel": (
        lambda: pool("AVERAGE_POOL_2D", (8, 8), "SAME"),
        lambda: pool("AVERAGE_POOL_2D", (9, 8), "SAME"),
        "kernel 9x8 with SAME padding",
    ),
    "maxpool-kernel": (
        lambda: pool("MAX_POOL_2D", (256, 256)),
        lambda: pool("MAX_POOL_2D", (1, 257)),
        "kernel 1x257",
    ),
    "transpose-conv-shape": (lambda: tconv(4, 8), lambda: tconv(4, 9), "output 9x9, expected 8x8"),
    "transpose-conv-stride": (lambda: tconv(4, 8), lambda: tconv(4, 12, (3, 3)), "stride 3x3"),
    "fc-weight-form": (lambda: fc((4, 1, 1, 8)), lambda: fc((4, 2, 1, 8)), "weights have shape [4, 2, 1, 8]"),
    "matmul-reduced-axis": (
        lambda: fc((4, 65536), dynamic=True),
        lambda: fc((4, 65537), dynamic=True),
        "it reduces over 65537",
    ),
    "matmul-ofm-depth": (
        lambda: fc((4, 8), dynamic=True, depth=65536),
        lambda: fc((4, 8), dynamic=True, depth=65537),
        "output depth 65537",
    ),
    "matmul-int8": (
        lambda: fc((4, 8), ifm_dtype=DType.INT16),
        lambda: fc((4, 8), dynamic=True, ifm_dtype=DType.INT16),
        "input is INT16",
    ),
    "constant-params": (
        lambda: mean((1, 8, 8, 4), [1, 2]),
        lambda: view("MEAN", [fm(), fm((2,), DType.INT32, None)], [fm()]),
        "'fm' is computed at run time",
    ),
    "params-int": (
        lambda: view("PAD", [fm(), const(np.zeros((4, 2)), DType.INT64)], [fm()]),
        lambda: view("PAD", [fm(), const(np.zeros((4, 2)), DType.INT16)], [fm()]),
        "paddings 'const' are INT16",
    ),
    "mean-batch-1": (lambda: mean((1, 8, 8, 4), [1, 2]), lambda: mean((2, 8, 8, 4), [1, 2]), "batch 2"),
    "mean-depth": (
        lambda: mean((1, 1, 8, 4), [3]),
        lambda: mean((1, 2, 8, 4), [3]),
        "it reduces channels of a 2x8x4 input",
    ),
    "mean-axis-size": (
        lambda: mean((1, 4095, 1, 4), [1]),
        lambda: mean((1, 4096, 1, 4), [1]),
        "it reduces an axis of 4096",
    ),
    "mean-type": (
        lambda: mean((1, 8, 8, 4), [1, 2], DType.INT16),
        lambda: mean((1, 8, 8, 4), [1, 2], DType.INT32),
        "input is INT32",
    ),
    "mean-elements": (
        lambda: mean((1, 256, 256, 4), [1, 2], DType.INT16),
        lambda: mean((1, 256, 257, 4), [1, 2], DType.INT16),
        "it reduces 65792 elements",
    ),
    "argmax-depth": (
        lambda: view("ARG_MAX", [fm((1, 8, 8, 127)), const([3])], [fm((1, 8, 8), DType.INT32, None)]),
        lambda: view("ARG_MAX", [fm((1, 8, 8, 128)), const([3])], [fm((1, 8, 8), DType.INT32, None)]),
        "128 channels",
    ),
    "argmax-axis": (
        lambda: view("ARG_MAX", [fm(), const([-1])], [fm((1, 8, 8), DType.INT32, None)]),
        lambda: view("ARG_MAX", [fm(), const([2])], [fm((1, 8, 4), DType.INT32, None)]),
        "axis [2]",
    ),
    "minmax-same-quantization": (
        lambda: view("MAXIMUM", [fm(), fm()], [fm()]),
        lambda: view("MAXIMUM", [fm(), fm(quant=q(0.2))], [fm()]),
        "'fm' is quantized differently from the output",
    ),
    "same-shape": (lambda: unary("ELU"), lambda: unary("ELU", ofm=fm((1, 8, 8, 5))), "[1, 8, 8, 4] -> [1, 8, 8, 5]"),
    "int8-only": (
        lambda: unary("ELU"),
        lambda: unary("ELU", fm(dtype=DType.UINT8), fm(dtype=DType.UINT8)),
        "UINT8 -> UINT8",
    ),
    "int8-uint8-only": (
        lambda: unary("GELU", fm(dtype=DType.UINT8), fm(dtype=DType.UINT8)),
        lambda: unary("GELU", fm(), fm(dtype=DType.UINT8)),
        "INT8 -> UINT8",
    ),
    "int8-int16-only": (
        lambda: unary("LOG", fm(dtype=DType.INT16), fm(dtype=DType.INT16)),
        lambda: unary("LOG", fm(dtype=DType.UINT8), fm(dtype=DType.UINT8)),
        "UINT8 -> UINT8",
    ),
    "rsqrt-type": (
        lambda: unary("RSQRT", fm(dtype=DType.INT16)),
        lambda: unary("RSQRT", fm(dtype=DType.UINT8)),
        "input is UINT8",
    ),
    "softmax-size": (
        lambda: unary("SOFTMAX", fm((1, 256, 256, 4))),
        lambda: unary("SOFTMAX", fm((1, 256, 257, 4))),
        "257x256 = 65792",
    ),
    "split-count": (
        lambda: view("SPLIT", [const([3]), fm()], [fm(), fm()], num_splits=2),
        lambda: view("SPLIT", [const([3]), fm()], [fm(), fm()], num_splits=3),
        "num_splits 3 for 2 outputs",
    ),
    "strided-slice-volume": (
        lambda: view("STRIDED_SLICE", [fm(), const([0] * 4), const([1, 8, 8, 4]), const([1, 2, 2, 1])], [fm()]),
        lambda: view("STRIDED_SLICE", [fm(), const([0] * 4), const([1, 8, 8, 4]), const([1, 1, 1, 2])], [fm()]),
        "strides [1, 1, 1, 2]",
    ),
    "reverse-axis": (
        lambda: unary("REVERSE_V2"),
        lambda: view("REVERSE_V2", [fm(), const([1])], [fm()]),
        "it takes an axis",
    ),
    "transpose-rank": (
        lambda: transpose((1,) * 8, list(range(8))),
        lambda: transpose((1,) * 9, list(range(9))),
        "rank 9",
    ),
    "transpose-int32": (
        lambda: transpose((1, 8, 65536, 4), [0, 2, 1, 3], DType.INT32),
        lambda: transpose((1, 8, 4, 16385), [0, 2, 1, 3], DType.INT32),
        "permutation [0, 2, 1, 3] of shape [1, 8, 4, 16385]",
    ),
    "transpose-int8": (
        lambda: transpose((2, 256, 256, 1), [3, 2, 1, 0]),
        lambda: transpose((2, 256, 257, 1), [3, 2, 1, 0]),
        "axes [1, 2] of shape [2, 256, 257, 1] hold more than 65,536 elements",
    ),
    "resize-bilinear-scale": (
        lambda: resize("RESIZE_BILINEAR", (4, 4), (32, 32)),
        lambda: resize("RESIZE_BILINEAR", (4, 4), (12, 12)),
        "scale 3 (needs 2, 4 or 8)",
    ),
    "resize-nearest-scale": (
        lambda: resize("RESIZE_NEAREST_NEIGHBOR", (4, 4), (8, 8)),
        lambda: resize("RESIZE_NEAREST_NEIGHBOR", (4, 4), (8, 16)),
        "scales 4x2 (WxH)",
    ),
    "resize-align-half-pixel": (
        lambda: resize("RESIZE_BILINEAR", (4, 4), (8, 8), align_corners=True),
        lambda: resize("RESIZE_BILINEAR", (4, 4), (8, 8), align_corners=True, half_pixel_centers=True),
        "both are set",
    ),
    "resize-scale-limit": (
        lambda: resize("RESIZE_NEAREST_NEIGHBOR", (1, 1), (1024, 1024)),
        lambda: resize("RESIZE_NEAREST_NEIGHBOR", (1, 1), (1025, 1)),
        "scale 1025",
    ),
    "resize-power-of-two": (
        lambda: resize("RESIZE_BILINEAR", (2, 2), (16, 16)),
        lambda: resize("RESIZE_BILINEAR", (2, 2), (12, 12)),
        "scale 6",
    ),
    "lstm-no-cifg": (lambda: lstm([1]), lambda: lstm([2]), "it has no input-gate weights"),
    "lstm-no-peephole": (lambda: lstm([1]), lambda: lstm([1, 10]), "it has peephole weights"),
    "lstm-no-projection": (lambda: lstm([1]), lambda: lstm([1, 16]), "it has projection weights"),
    "lstm-no-normalization": (lambda: lstm([1]), lambda: lstm([1, 23]), "it has gate normalization"),
    "variable-types": (
        lambda: variable(DType.RESOURCE, DType.BOOL),
        lambda: variable(DType.RESOURCE, DType.FLOAT32),
        "'fm' is FLOAT32",
    ),
    "gather-axis": (
        lambda: view("GATHER", [fm(), const([0])], [fm()], axis=1, batch_dims=1),
        lambda: view("GATHER", [fm(), const([0])], [fm()], axis=3, batch_dims=0),
        "axis 3, batch_dims 0",
    ),
    "scatter-shape-constant": (
        lambda: scatter([[0], [1]]),
        lambda: scatter([[0], [1]], shape_constant=False),
        "its shape is computed at run time",
    ),
    "scatter-index-constant": (
        lambda: scatter([[0], [1]]),
        lambda: scatter([[0], [1]], constant=False),
        "its indices are computed at run time",
    ),
    "scatter-index-channel-1": (lambda: scatter([[0], [1]]), lambda: scatter([[0, 1]]), "indices have shape [1, 2]"),
    "scatter-index-unique": (lambda: scatter([[0], [1]]), lambda: scatter([[1], [1]]), "indices repeat"),
}


def test_every_constraint_has_a_boundary_case() -> None:
    assert set(CASES) == set(CONSTRAINTS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_constraint_on_both_sides_of_its_limit(name: str) -> None:
    meets, breaks, detail = CASES[name]
    check = CONSTRAINTS[name].check
    assert check(meets()) is None
    assert check(breaks()) == detail


def test_weight_sum_limit_for_16_bit_inputs_differs_on_u85() -> None:
    w = const(np.full((1, 1, 1, 65537), 127), DType.INT8, q())
    v16 = view("FULLY_CONNECTED", [fm((1, 65537), DType.INT16), w, None], [fm((1, 1), DType.INT16)])
    assert CONSTRAINTS["weight-sum"].check(v16) == "a channel's absolute weight sum is 8323199, above 8323072"
    assert CONSTRAINTS["weight-sum-u85"].check(v16) is None


def test_reasons_name_the_rule_and_what_breaks_it() -> None:
    v = conv(stride_w=4, stride_h=3)
    assert npu_reasons(v.graph, v.op, "EthosU55") == [
        "strides above 3 need no padding and no dilation (stride 4x3 with SAME padding of 0x1)"
    ]
    g = Graph("g")
    op = g.add_op(Op("L2_NORMALIZATION"), [fm()], [fm()])
    assert npu_reasons(g, op, "EthosU55") == ["L2_NORMALIZATION is not an operator Vela runs on Ethos-U55"]
    gather = g.add_op(Op("GATHER", options={"axis": 0, "batch_dims": 0}), [fm(), const([0])], [fm()])
    assert npu_reasons(g, gather, "EthosU55") == ["GATHER is not an operator Vela runs on Ethos-U55"]
    assert npu_reasons(g, gather, "EthosU85") == []
    floats = g.add_op(Op("RELU"), [fm(dtype=DType.FLOAT32, quant=None)], [fm(dtype=DType.FLOAT32, quant=None)])
    assert npu_reasons(g, floats, "EthosU55") == [
        "feature maps must be integer (int8, uint8, int16, int32, int64): the model is not quantized here "
        "('fm', 'fm' is FLOAT32)"
    ]


# --- boundaries checked against Vela itself ----------------------------------------------------------------
def _vela_places_on_cpu(v: OpView) -> bool:
    from npupass.backends.ethos_u.vela import VelaConfig, compile_vela
    from npupass.backends.tflite import serialize_tflite
    from npupass.ir.graph import Model

    for i, t in enumerate(v.graph.tensors):
        t.name = f"t{i}"
    result = compile_vela(serialize_tflite(Model([v.graph])), VelaConfig("ethos-u55-128"))
    return result.cpu_ops == {0}


VELA_BOUNDARIES = {
    "stride-above-3": ("CONV_2D", lambda: conv(stride_w=4, stride_h=4), lambda: conv(stride_w=4, stride_h=3)),
    "avgpool-kernel": (
        "AVERAGE_POOL_2D",
        lambda: pool("AVERAGE_POOL_2D", (8, 8), "SAME"),
        lambda: pool("AVERAGE_POOL_2D", (9, 9), "SAME"),
    ),
    "mean-depth": ("MEAN", lambda: mean((1, 1, 8, 4), [3]), lambda: mean((1, 2, 8, 4), [3])),
    "argmax-depth": (
        "ARG_MAX",
        lambda: view(
            "ARG_MAX", [fm((1, 8, 8, 127)), const([3])], [fm((1, 8, 8), DType.INT32, None)], output_type="INT32"
        ),
        lambda: view(
            "ARG_MAX", [fm((1, 8, 8, 128)), const([3])], [fm((1, 8, 8), DType.INT32, None)], output_type="INT32"
        ),
    ),
    "softmax-size": (
        "SOFTMAX",
        lambda: view("SOFTMAX", [fm((1, 256, 256, 4))], [fm((1, 256, 256, 4), quant=q(1 / 256, -128))], beta=1.0),
        lambda: view("SOFTMAX", [fm((1, 256, 257, 4))], [fm((1, 256, 257, 4), quant=q(1 / 256, -128))], beta=1.0),
    ),
    "bias-channel-axis": (
        "CONV_2D",
        lambda: conv(bias=const(np.zeros((1, 1, 1, 4)))),
        lambda: conv(bias=const(np.zeros((4, 1)))),
    ),
    "feature-map-type": (
        "RELU",
        lambda: unary("RELU"),
        lambda: unary("RELU", fm(dtype=DType.FLOAT32), fm(dtype=DType.FLOAT32)),
    ),
}


@pytest.mark.parametrize("name", sorted(VELA_BOUNDARIES))
def test_vela_agrees_on_both_sides_of_a_limit(name: str) -> None:
    _, meets, breaks = VELA_BOUNDARIES[name]
    for build, on_cpu in ((meets, False), (breaks, True)):
        v = build()
        assert bool(npu_reasons(v.graph, v.op, "EthosU55")) is on_cpu
        assert _vela_places_on_cpu(v) is on_cpu
