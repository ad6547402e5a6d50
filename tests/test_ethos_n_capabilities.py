"""The Ethos-N78 constraint table: each rule on both sides of its limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from ethos_n_graphs import act, const, conv_weights, q, single

from npupass.backends.ethos_n.capabilities import CONSTRAINTS, VARIANTS, Level, check_op, level_of
from npupass.ir.graph import Graph, Op, Tensor
from npupass.ir.types import DType, Quantization

V = VARIANTS["4TOPS_4PLE_RATIO"]


def names(graph, op, variant=V):  # type: ignore[no-untyped-def]
    return {f.constraint for f in check_op(graph, op, variant)}


def conv(kind="CONV_2D", h=16, c=8, k=3, stride=1, padding="SAME", **extra):  # type: ignore[no-untyped-def]
    w, b = conv_weights(kind, c, c, k, k)
    out_h = -(-h // stride) if padding == "SAME" else (h - k) // stride + 1
    opts = {"padding": padding, "stride_h": stride, "stride_w": stride} | extra
    if kind == "DEPTHWISE_CONV_2D":
        opts.setdefault("depth_multiplier", 1)
    return single(kind, [act("x", (1, h, h, c)), w, b], act("y", (1, out_h, out_h, c), 0.1), **opts)


def pool(kind="MAX_POOL_2D", h=16, k=3, stride=2, padding="VALID", c=8):  # type: ignore[no-untyped-def]
    out_h = -(-h // stride) if padding == "SAME" else (h - k) // stride + 1
    opts = {"padding": padding, "stride_h": stride, "stride_w": stride, "filter_height": k, "filter_width": k}
    return single(kind, [act("x", (1, h, h, c))], act("y", (1, out_h, out_h, c)), **opts)


def test_table_has_sentences_and_sources() -> None:
    assert len(CONSTRAINTS) == 52
    assert all(c.sentence and c.source in ("SupportQueries.cpp", "armnn") for c in CONSTRAINTS)
    assert len({c.name for c in CONSTRAINTS}) == len(CONSTRAINTS)


def test_supported_conv_has_no_findings() -> None:
    g, o = conv()
    assert check_op(g, o, V) == []


@pytest.mark.parametrize(("k", "ok"), [(3, True), (4, False), (9, True), (11, False)])
def test_conv_kernel_size(k: int, ok: bool) -> None:
    g, o = conv(k=k, h=24)
    assert ("conv-kernel-size" in names(g, o)) is not ok


@pytest.mark.parametrize(("stride", "ok"), [(1, True), (2, True), (3, False)])
def test_conv_stride(stride: int, ok: bool) -> None:
    g, o = conv(stride=stride)
    assert ("conv-stride" in names(g, o)) is not ok


@pytest.mark.parametrize(("k", "stride", "ok"), [(7, 2, True), (9, 2, False), (9, 1, True)])
def test_large_kernel_needs_stride_1(k: int, stride: int, ok: bool) -> None:
    g, o = conv(k=k, stride=stride, h=32)
    assert ("conv-large-kernel-stride" in names(g, o)) is not ok


@pytest.mark.parametrize(("pad", "ok"), [((7, 7, 7, 7), True), ((8, 0, 0, 0), False), ((1, 1, 1, 1), True)])
def test_conv_padding_at_most_7_unless_same(pad: tuple[int, ...], ok: bool) -> None:
    g, o = padded_conv(pad)
    assert ("conv-padding" in names(g, o)) is not ok


def test_dilation() -> None:
    g, o = conv(dilation_h_factor=2, dilation_w_factor=2)
    assert "dilation" in names(g, o)
    assert check_op(g, o, V)[0].level is Level.UNSUPPORTED


@pytest.mark.parametrize(("channels", "mult", "ok"), [(1, 4, True), (2, 2, False), (8, 1, True)])
def test_depthwise_multiplier(channels: int, mult: int, ok: bool) -> None:
    w, b = conv_weights("DEPTHWISE_CONV_2D", channels, channels * mult)
    g, o = single(
        "DEPTHWISE_CONV_2D",
        [act("x", (1, 8, 8, channels)), w, b],
        act("y", (1, 8, 8, channels * mult), 0.1),
        padding="SAME",
        stride_h=1,
        stride_w=1,
        depth_multiplier=mult,
    )
    assert ("depthwise-multiplier" in names(g, o)) is not ok


@pytest.mark.parametrize(("k", "stride", "ok"), [(1, 1, True), (1, 2, False), (3, 2, True)])
def test_depthwise_1x1_stride(k: int, stride: int, ok: bool) -> None:
    g, o = conv("DEPTHWISE_CONV_2D", k=k, stride=stride)
    assert ("depthwise-1x1-stride" in names(g, o)) is not ok


def test_bias_rules() -> None:
    g, o = conv()
    bias = g.inputs_of(o)[2]
    assert bias is not None and bias.quant is not None
    bias.quant = q(list(bias.quant.scale * 1.009), 0)  # within 1%
    assert "bias-scale" not in names(g, o)
    bias.quant = q(list(bias.quant.scale * 1.02), 0)
    assert "bias-scale" in names(g, o)
    bias.quant = q(list(bias.quant.scale / 1.02), 3)
    assert "bias-zero-point" in names(g, o)
    assert level_of(check_op(g, o, V)) is Level.ESTIMATE_ONLY


def test_fully_connected_per_channel_is_unsupported() -> None:
    for per_channel, bad in ((False, False), (True, True)):
        w = const("w", np.ones((4, 8)), DType.INT8, q([0.01] * 4 if per_channel else 0.01))
        b = const("b", np.zeros(4), DType.INT32, q([0.0005] * 4 if per_channel else 0.0005))
        g, o = single("FULLY_CONNECTED", [act("x", (1, 8)), w, b], act("y", (1, 4)))
        assert ("fc-per-tensor" in names(g, o)) is bad


@pytest.mark.parametrize(
    ("h", "k", "padding", "ok"),
    [
        (15, 3, "VALID", True),
        (16, 3, "VALID", False),
        (16, 3, "SAME", True),
        (15, 3, "SAME", False),
        (16, 2, "VALID", True),
        (15, 2, "VALID", False),
        (15, 2, "SAME", True),
        (16, 5, "VALID", False),
    ],
)
def test_max_pool_stride2_forms(h: int, k: int, padding: str, ok: bool) -> None:
    g, o = pool(h=h, k=k, padding=padding)
    assert ("max-pool-stride2-form" in names(g, o)) is not ok


def test_max_pool_3x3_width_limit() -> None:
    for w, ok in ((417, True), (419, False)):
        g, o = single(
            "MAX_POOL_2D",
            [act("x", (1, 9, w, 8))],
            act("y", (1, 4, (w - 3) // 2 + 1, 8)),
            padding="VALID",
            stride_h=2,
            stride_w=2,
            filter_height=3,
            filter_width=3,
        )
        assert ("max-pool-stride2-form" in names(g, o)) is not ok


@pytest.mark.parametrize(
    ("k", "padding", "ok"), [(9, "VALID", True), (10, "VALID", False), (17, "SAME", True), (18, "SAME", False)]
)
def test_max_pool_stride1_size(k: int, padding: str, ok: bool) -> None:
    g, o = pool(h=24, k=k, stride=1, padding=padding)
    assert ("max-pool-stride1-size" in names(g, o)) is not ok


def test_max_pool_stride1_sram_depends_on_variant() -> None:
    g, o = pool(h=1776, k=3, stride=1, padding="SAME", c=1)  # 448 KiB: (448 KiB - 4096) / 2 / 128 = 1776
    assert "max-pool-stride1-sram" not in names(g, o, VARIANTS["1TOPS_2PLE_RATIO"])
    g, o = pool(h=1784, k=3, stride=1, padding="SAME", c=1)
    assert "max-pool-stride1-sram" in names(g, o, VARIANTS["1TOPS_2PLE_RATIO"])
    assert "max-pool-stride1-sram" not in names(g, o, VARIANTS["8TOPS_2PLE_RATIO"])


def test_tensor_depth_per_variant() -> None:
    for channels, variant, ok in (
        (7168, "1TOPS_2PLE_RATIO", True),
        (7169, "1TOPS_2PLE_RATIO", False),
        (7169, "8TOPS_2PLE_RATIO", True),
        (32769, "8TOPS_2PLE_RATIO", False),
    ):
        g, o = single("RELU", [act("x", (1, 2, 2, channels))], act("y", (1, 2, 2, channels)))
        assert ("tensor-depth" in names(g, o, VARIANTS[variant])) is not ok


@pytest.mark.parametrize(("h", "ok"), [(7, True), (8, True), (9, False)])
def test_avg_pool_mean_form(h: int, ok: bool) -> None:
    g, o = pool("AVERAGE_POOL_2D", h=h, k=h, stride=1)
    assert ("avg-pool-form" in names(g, o)) is not ok


def test_mean_rules() -> None:
    axes = const("axes", np.array([1, 2]), DType.INT32)
    g, o = single("MEAN", [act("x", (1, 7, 7, 8)), axes], act("y", (1, 1, 1, 8)), keep_dims=True)
    assert check_op(g, o, V) == []
    g, o = single("MEAN", [act("x", (1, 6, 6, 8)), axes], act("y", (1, 8)), keep_dims=False)
    assert names(g, o) == {"mean-size", "mean-keep-dims"}


@pytest.mark.parametrize(
    ("pads", "bad"),
    [
        ([[0, 0], [7, 7], [0, 1], [0, 0]], set()),
        ([[0, 0], [8, 0], [0, 0], [0, 0]], {"pad-at-most-7"}),
        ([[0, 0], [0, 0], [0, 0], [1, 0]], {"pad-hw-only"}),
    ],
)
def test_pad(pads: list[list[int]], bad: set[str]) -> None:
    p = np.array(pads)
    shape = tuple(int(d + a + b) for d, (a, b) in zip((1, 8, 8, 8), p, strict=True))
    g, o = single("PAD", [act("x", (1, 8, 8, 8)), const("p", p, DType.INT32)], act("y", shape))
    assert names(g, o) == bad


def test_sigmoid_and_tanh_output_quantization() -> None:
    g, o = single("LOGISTIC", [act("x", (1, 4, 4, 8))], act("y", (1, 4, 4, 8), 1 / 256, -128))
    assert names(g, o) == set()
    g, o = single("LOGISTIC", [act("x", (1, 4, 4, 8))], act("y", (1, 4, 4, 8), 1 / 256, 0))
    assert names(g, o) == {"sigmoid-output"}
    g, o = single("TANH", [act("x", (1, 4, 4, 8))], act("y", (1, 4, 4, 8), 1 / 128, 0))
    assert names(g, o) == set()
    g, o = single("TANH", [act("x", (1, 4, 4, 8))], act("y", (1, 4, 4, 8), 1 / 256, 0))
    assert names(g, o) == {"tanh-output"}


def test_requantize_and_concat_scale() -> None:
    # output scale must exceed input scale / 128
    for out_scale, ok in ((0.05 / 127, True), (0.05 / 128, False)):
        g, o = single("QUANTIZE", [act("x", (1, 4, 4, 8), 0.05)], act("y", (1, 4, 4, 8), out_scale))
        assert ("requantize-scale" in names(g, o)) is not ok


def test_broadcast_and_data_type() -> None:
    g, o = single("ADD", [act("x", (1, 4, 4, 8)), act("z", (1, 4, 4, 8))], act("y", (1, 4, 4, 8)))
    assert names(g, o) == set()
    g, o = single("MUL", [act("x", (1, 4, 4, 8)), const("c", np.ones(8), DType.INT8, q())], act("y", (1, 4, 4, 8)))
    assert names(g, o) == {"no-broadcast"}
    g, o = single(
        "ADD",
        [act("x", (1, 4, 4, 8), dtype=DType.FLOAT32), act("z", (1, 4, 4, 8), dtype=DType.FLOAT32)],
        act("y", (1, 4, 4, 8), dtype=DType.FLOAT32),
    )
    assert names(g, o) == {"data-type"}
    g, o = single("RELU", [act("x", (2, 4, 4, 8))], act("y", (2, 4, 4, 8)))
    assert names(g, o) == {"batch-size"}


def test_op_types() -> None:
    g, o = single("SOFTMAX", [act("x", (1, 8))], act("y", (1, 8), 1 / 256, -128), beta=1.0)
    assert [f.level for f in check_op(g, o, V)] == [Level.UNSUPPORTED]
    g, o = single("SUB", [act("x", (1, 4, 4, 8)), act("z", (1, 4, 4, 8))], act("y", (1, 4, 4, 8)))
    assert level_of(check_op(g, o, V)) is Level.ESTIMATE_ONLY
    assert [f.message for f in check_op(g, o, V)] == [
        "Arm NN only estimates this op type on Ethos-N; it runs on the CPU: SUB"
    ]


# --- every constraint of the table, on both sides of its limit ---------------------------------------------
Case = tuple  # (graph, op) or (graph, op, variant)


def unary(kind: str = "RELU", x: Tensor | None = None, y: Tensor | None = None, **options: Any) -> Case:
    return single(kind, [x or act("x", (1, 4, 4, 8))], y or act("y", (1, 4, 4, 8)), **options)


def binary(kind: str = "ADD", z: Tensor | None = None) -> Case:
    return single(kind, [act("x", (1, 4, 4, 8)), z or act("z", (1, 4, 4, 8))], act("y", (1, 4, 4, 8)))


def with_quant(case: Case, slot: int, quant: Quantization) -> Case:
    """`case` with the quantization of its op's input `slot` replaced."""
    g, o = case[:2]
    t = g.inputs_of(o)[slot]
    assert t is not None
    t.quant = quant
    return case


def weighted(kind: str = "CONV_2D", w: Tensor | None = None, b: Tensor | None = None, per_channel: bool = True) -> Case:
    w0, b0 = conv_weights(kind, 8, 8, per_channel=per_channel)
    opts: dict[str, Any] = {"padding": "SAME", "stride_h": 1, "stride_w": 1}
    if kind == "DEPTHWISE_CONV_2D":
        opts["depth_multiplier"] = 1
    return single(kind, [act("x", (1, 8, 8, 8)), w or w0, b or b0], act("y", (1, 8, 8, 8), 0.1), **opts)


def fc(w_scale: float | list[float] = 0.01, y_scale: float = 0.05, x_scale: float = 0.05) -> Case:
    n = len(w_scale) if isinstance(w_scale, list) else 1
    w = const("w", np.ones((4, 8)), DType.INT8, q(w_scale))
    b = const("b", np.zeros(4), DType.INT32, q(list(np.float32(x_scale) * np.float32(w_scale) * np.ones(n))))
    return single("FULLY_CONNECTED", [act("x", (1, 8), x_scale), w, b], act("y", (1, 4), y_scale))


def dw(kh: int = 3, kw: int = 3, stride: int = 1, channels: int = 8, mult: int = 1) -> Case:
    w, b = conv_weights("DEPTHWISE_CONV_2D", channels, channels * mult, kh, kw)
    shape_out = (1, -(-8 // stride), -(-8 // stride), channels * mult)
    return single(
        "DEPTHWISE_CONV_2D",
        [act("x", (1, 8, 8, channels)), w, b],
        act("y", shape_out, 0.1),
        padding="SAME",
        stride_h=stride,
        stride_w=stride,
        depth_multiplier=mult,
    )


def tconv(k: int = 3, stride: int = 2, padding: str = "SAME") -> Case:
    w, b = conv_weights("TRANSPOSE_CONV", 8, 8, k, k)
    out = 8 * stride if padding == "SAME" else 7 * stride + k
    shape = const("shape", np.array([1, out, out, 8]), DType.INT32)
    return single(
        "TRANSPOSE_CONV",
        [shape, w, act("x", (1, 8, 8, 8)), b],
        act("y", (1, out, out, 8), 0.1),
        padding=padding,
        stride_h=stride,
        stride_w=stride,
    )


def padded_conv(pad: tuple[int, int, int, int]) -> Case:
    """A VALID 3x3 conv reading a PAD of `pad` (top, bottom, left, right), which Arm NN folds into it."""
    top, bottom, left, right = pad
    w, b = conv_weights("CONV_2D", 8, 8, 3, 3)
    g = Graph("main")
    x = act("x", (1, 16, 16, 8))
    padded = act("padded", (1, 16 + top + bottom, 16 + left + right, 8))
    amounts = const("amounts", [[0, 0], [top, bottom], [left, right], [0, 0]], DType.INT32)
    g.add_op(Op("PAD", {}, "PadOptions"), [x, amounts], [padded])
    out = 16 + top + bottom - 2, 16 + left + right - 2
    y = act("y", (1, *out, 8), 0.1)
    options = {"padding": "VALID", "stride_h": 1, "stride_w": 1, "fused_activation_function": "NONE"}
    o = g.add_op(
        Op("CONV_2D", {"dilation_h_factor": 1, "dilation_w_factor": 1} | options, "Conv2DOptions"), [padded, w, b], [y]
    )
    g.inputs, g.outputs = [x], [y]
    return g, o


def concat(out_scale: float = 0.05, axis: int = 3) -> Case:
    shape = [1, 4, 4, 8]
    shape[axis] *= 2
    xs = [act("x", (1, 4, 4, 8), 0.05), act("z", (1, 4, 4, 8), 0.05)]
    return single("CONCATENATION", xs, act("y", tuple(shape), out_scale), axis=axis)


def split(axis: int) -> Case:
    shape = [1, 4, 4, 8]
    shape[axis] //= 2
    g = Graph("main")
    x = act("x", (1, 4, 4, 8))
    outs = [act("y0", tuple(shape)), act("y1", tuple(shape))]
    o = g.add_op(
        Op("SPLIT", {"num_splits": 2}, "SplitOptions", name="y0"),
        [const("axis", np.array([axis]), DType.INT32), x],
        outs,
    )
    g.inputs, g.outputs = [x], outs
    return g, o


def pool_on(kind: str, h: int, w: int, k: int, stride: int, padding: str) -> Case:
    out_h = -(-h // stride) if padding == "SAME" else (h - k) // stride + 1
    out_w = -(-w // stride) if padding == "SAME" else (w - k) // stride + 1
    opts = {"padding": padding, "stride_h": stride, "stride_w": stride, "filter_height": k, "filter_width": k}
    return single(kind, [act("x", (1, h, w, 8))], act("y", (1, out_h, out_w, 8)), **opts)


def mean(h: int = 7, axes: tuple[int, ...] = (1, 2), keep_dims: bool = True) -> Case:
    a = const("axes", np.array(axes), DType.INT32)
    return single("MEAN", [act("x", (1, h, h, 8)), a], act("y", (1, 1, 1, 8)), keep_dims=keep_dims)


def pad(pads: list[list[int]], kind: str = "PAD", value: int | None = None) -> Case:
    p = np.array(pads)
    shape = tuple(int(d + a + b) for d, (a, b) in zip((1, 8, 8, 8), p, strict=True))
    inputs = [act("x", (1, 8, 8, 8), 0.05, 3), const("p", p, DType.INT32)]
    if value is not None:
        inputs.append(const("v", np.array([value]), DType.INT8, q(0.05, 3)))
    return single(kind, inputs, act("y", shape, 0.05, 3))


def transpose(perm: list[int]) -> Case:
    out = tuple((1, 4, 6, 8)[i] for i in perm)
    return single("TRANSPOSE", [act("x", (1, 4, 6, 8)), const("perm", np.array(perm), DType.INT32)], act("y", out))


def resize(out: int, kind: str = "RESIZE_BILINEAR") -> Case:
    size = const("size", np.array([out, out]), DType.INT32)
    return single(kind, [act("x", (1, 4, 4, 8)), size], act("y", (1, out, out, 8)))


def on(variant: str, case: Case) -> Case:
    return (*case[:2], VARIANTS[variant])


def biased(factor: float = 1.0, zp: int = 0) -> Case:
    g, o = conv()
    bias = g.inputs_of(o)[2]
    assert bias is not None and bias.quant is not None
    bias.quant = q(list(bias.quant.scale * np.float32(factor)), zp)
    return g, o


DEPTH = V.max_depth  # 16384 channels on 4TOPS_4PLE_RATIO (1 MiB / 64)
S2 = 0.05 / 127  # concat / requantize: the output scale must exceed input scale / 128

# constraint: (meets it, breaks it, the message the user sees for the second)
CASES: dict[str, tuple[Callable[[], Case], Callable[[], Case], str]] = {
    "data-type": (
        lambda: unary(x=act("x", (1, 4, 4, 8), dtype=DType.UINT8), y=act("y", (1, 4, 4, 8), dtype=DType.UINT8)),
        lambda: unary(x=act("x", (1, 4, 4, 8), dtype=DType.INT16)),
        "Inputs and outputs must be int8 or uint8 quantized tensors: 'x' is INT16",
    ),
    "rank": (
        lambda: unary(x=act("x", (1, 2, 2, 8)), y=act("y", (1, 2, 2, 8))),
        lambda: unary(x=act("x", (1, 1, 2, 2, 8)), y=act("y", (1, 1, 2, 2, 8))),
        "Tensors must have at most 4 dimensions: 'x' has 5",
    ),
    "batch-size": (
        lambda: unary(),
        lambda: unary(x=act("x", (2, 4, 4, 8)), y=act("y", (2, 4, 4, 8))),
        "Batch size must be 1: 'x' has batch 2",
    ),
    "per-tensor-activations": (
        lambda: unary(),
        lambda: with_quant(unary(), 0, q([0.05, 0.05], 0, 3)),
        "Inputs and outputs must be quantized per tensor (one scale and zero point): 'x' has 2 scales",
    ),
    "zero-point-range": (
        lambda: unary(x=act("x", (1, 4, 4, 8), zp=127), y=act("y", (1, 4, 4, 8), zp=127)),
        lambda: unary(x=act("x", (1, 4, 4, 8), zp=128), y=act("y", (1, 4, 4, 8), zp=128)),
        "Zero points must lie in the range of the tensor's type: 'x' has zero point 128",
    ),
    "tensor-depth": (
        lambda: unary(x=act("x", (1, 2, 2, DEPTH)), y=act("y", (1, 2, 2, DEPTH))),
        lambda: unary(x=act("x", (1, 2, 2, DEPTH + 1)), y=act("y", (1, 2, 2, DEPTH + 1))),
        (
            "An 8 x 8 x C block of every tensor must fit in SRAM: C <= SRAM / 64 unless the "
            "tensor is 1 wide: 'x' has 16385 channels > 16384 for 4TOPS_4PLE_RATIO"
        ),
    ),
    "weights-type": (
        lambda: weighted(w=const("w", np.ones((8, 3, 3, 8)), DType.UINT8, q(0.005, 128)), per_channel=False),
        lambda: weighted(w=const("w", np.ones((8, 3, 3, 8)), DType.INT16, q(0.005)), per_channel=False),
        "Weights must be int8 or uint8 quantized constants: weights 'w' are INT16",
    ),
    "bias-type": (
        lambda: weighted(),
        lambda: weighted(b=const("b", np.zeros(8), DType.INT64, q(0.00025))),
        "The bias must be an int32 quantized constant: bias 'b' is INT64",
    ),
    "bias-scale": (
        lambda: biased(1.0099),
        lambda: biased(1.0101),
        (
            "The bias scale must be within 1% of input scale x weight scale (Arm NN then uses"
            " the product): they differ by 1.01%"
        ),
    ),
    "bias-zero-point": (lambda: biased(zp=0), lambda: biased(zp=1), "The bias zero point must be 0: it is 1"),
    "weights-quantization-axis": (
        lambda: weighted(),
        lambda: weighted(w=const("w", np.ones((8, 3, 3, 8)), DType.INT8, q([0.005] * 8, 0, axis=3))),
        "Per-channel weight scales must run along the output channels: they run along axis 3, not 0",
    ),
    "fc-per-tensor": (
        lambda: fc(0.01),
        lambda: fc([0.01] * 4),
        "FULLY_CONNECTED weights and bias must be quantized per tensor (no per-channel scales): 'w' has 4 scales",
    ),
    "dilation": (
        lambda: conv(dilation_h_factor=1),
        lambda: conv(dilation_h_factor=2),
        "Dilation is not supported: it is 2x1",
    ),
    "conv-kernel-size": (
        lambda: conv(k=9, h=24),
        lambda: conv(k=10, h=24),
        "Kernel height and width must be 1, 2, 3, 5, 7 or 9: kernel is 10x10",
    ),
    "depthwise-square-kernel": (lambda: dw(3, 3), lambda: dw(3, 5), "A depthwise kernel must be square: kernel is 3x5"),
    "conv-stride": (
        lambda: conv(stride=2),
        lambda: conv(stride=3),
        "Strides must be equal in height and width, and 1 or 2: stride is 3x3",
    ),
    "conv-large-kernel-stride": (
        lambda: conv(k=7, stride=2, h=32),
        lambda: conv(k=9, stride=2, h=32),
        "A kernel larger than 7 needs stride 1: kernel 9x9 with stride 2",
    ),
    "conv-padding": (
        lambda: padded_conv((7, 7, 7, 7)),
        lambda: padded_conv((8, 0, 0, 0)),
        "Padding must be at most 7 on each side, unless it is SAME padding: padding [8, 0, 0, 0]",
    ),
    "depthwise-multiplier": (
        lambda: dw(channels=1, mult=2),
        lambda: dw(channels=2, mult=2),
        "A channel multiplier above 1 needs an input with 1 channel: multiplier 2 on 2 input channels",
    ),
    "depthwise-1x1-stride": (
        lambda: dw(1, 1, stride=1),
        lambda: dw(1, 1, stride=2),
        "A 1x1 depthwise conv must have stride 1: stride 2",
    ),
    "transpose-conv-stride": (
        lambda: tconv(stride=2),
        lambda: tconv(stride=1),
        "TRANSPOSE_CONV must have stride 2 in height and width: stride is 1x1",
    ),
    "transpose-conv-large-kernel-padding": (
        lambda: tconv(k=7, padding="VALID"),
        lambda: tconv(k=9, padding="VALID"),
        "A TRANSPOSE_CONV kernel larger than 7 needs SAME padding: kernel 9x9 VALID",
    ),
    "overall-scale": (
        lambda: fc(1.0, 1 / 65535, 1.0),
        lambda: fc(1.0, 1 / 65536, 1.0),
        "Input scale x weight scale / output scale must be below 65536: it is 65536",
    ),
    "no-broadcast": (
        lambda: binary("MUL", const("c", np.ones((1, 4, 4, 8)), DType.INT8, q())),
        lambda: binary("MUL", const("c", np.ones(8), DType.INT8, q())),
        (
            "ADD and MUL inputs must have the same shape: the NPU does not broadcast "
            "(legalize-ethos-n turns a per-channel constant into a 1x1 depthwise conv where "
            "that is bit-exact): shapes [1, 4, 4, 8] and [8] (constant 'c')"
        ),
    ),
    "same-input-type": (
        lambda: binary("ADD"),
        lambda: binary("ADD", act("z", (1, 4, 4, 8), dtype=DType.UINT8)),
        "Both inputs must have the same element type: INT8 and UINT8",
    ),
    "concat-requantize": (
        lambda: concat(0.05 / 127),
        lambda: concat(0.05 / 128),
        "The output scale must be bigger than every input scale / 128: input 'x' scale 0.05, output 0.000390625",
    ),
    "concat-axis": (
        lambda: concat(axis=1),
        lambda: concat(axis=0),
        "Concatenation along the batch axis is not supported: axis 0",
    ),
    "split-axis": (lambda: split(1), lambda: split(0), "Split along the batch axis is not supported: axis 0"),
    "requantize-scale": (
        lambda: unary("QUANTIZE", y=act("y", (1, 4, 4, 8), 0.05 / 127)),
        lambda: unary("QUANTIZE", y=act("y", (1, 4, 4, 8), 0.05 / 128)),
        "A requantize's output scale must be bigger than its input scale / 128: input 0.05, output 0.000390625",
    ),
    "same-quantization": (
        lambda: unary("RELU", y=act("y", (1, 4, 4, 8), 0.05, 0)),
        lambda: unary("RELU", y=act("y", (1, 4, 4, 8), 0.05, 1)),
        "The output must have the input's quantization: input 0.05/0, output 0.05/1",
    ),
    "avg-pool-form": (
        lambda: pool_on("AVERAGE_POOL_2D", 8, 8, 8, 1, "VALID"),
        lambda: pool_on("AVERAGE_POOL_2D", 9, 9, 9, 1, "VALID"),
        "AVERAGE_POOL_2D must be 3x3 stride 1 SAME, or a 7x7 or 8x8 pool over the whole input: a 9x9 mean",
    ),
    # 3x3 SAME: 2 x (8 x 3840) + 4096 = 65,536 bytes, exactly one of the 16 SRAM banks of 1 MiB
    "avg-pool-3x3-sram": (
        lambda: pool_on("AVERAGE_POOL_2D", 8, 3840, 3, 1, "SAME"),
        lambda: pool_on("AVERAGE_POOL_2D", 8, 3841, 3, 1, "SAME"),
        "A 3x3 average pool's input and output planes must fit in one SRAM bank: 65,664 bytes > 65,536",
    ),
    "max-pool-stride": (
        lambda: pool_on("MAX_POOL_2D", 16, 16, 2, 2, "VALID"),
        lambda: pool_on("MAX_POOL_2D", 16, 16, 2, 3, "VALID"),
        "MAX_POOL_2D strides must be 1x1 or 2x2: stride 3x3",
    ),
    "max-pool-stride2-form": (
        lambda: pool_on("MAX_POOL_2D", 9, 417, 3, 2, "VALID"),
        lambda: pool_on("MAX_POOL_2D", 9, 419, 3, 2, "VALID"),
        (
            "A stride-2 max pool must be 1x1, 2x2 (VALID on even inputs, SAME on odd) or 3x3 "
            "(VALID on odd inputs, SAME on even, at most 417 wide): 3x3 input width 419 > 417"
        ),
    ),
    "max-pool-stride1-size": (
        lambda: pool_on("MAX_POOL_2D", 24, 24, 9, 1, "VALID"),
        lambda: pool_on("MAX_POOL_2D", 24, 24, 10, 1, "VALID"),
        "A stride-1 max pool must be VALID up to 9x9 or SAME up to 17x17: pool 10x10 VALID is larger than 9x9",
    ),
    # (448 KiB - 4096) / 2 / (8 x 16) rounded down to 8: 1776
    "max-pool-stride1-sram": (
        lambda: on("1TOPS_2PLE_RATIO", pool_on("MAX_POOL_2D", 4, 1776, 3, 1, "SAME")),
        lambda: on("1TOPS_2PLE_RATIO", pool_on("MAX_POOL_2D", 4, 1777, 3, 1, "SAME")),
        (
            "A stride-1 max pool's pooled dimensions must fit in SRAM (the limit depends on "
            "the variant): input 4x1777, limit 1776 for 1TOPS_2PLE_RATIO"
        ),
    ),
    "pool-not-larger-than-input": (
        lambda: pool_on("MAX_POOL_2D", 3, 3, 3, 1, "VALID"),
        lambda: pool_on("MAX_POOL_2D", 3, 2, 3, 1, "SAME"),
        "The input must not be smaller than the pool: pool 3x3 on 3x2",
    ),
    "mean-keep-dims": (
        lambda: mean(keep_dims=True),
        lambda: mean(keep_dims=False),
        "MEAN must keep the reduced dimensions (keep_dims): keep_dims is false",
    ),
    "mean-axes": (
        lambda: mean(axes=(1, 2)),
        lambda: mean(axes=(1,)),
        "MEAN must reduce exactly height and width: axes [1]",
    ),
    "mean-size": (lambda: mean(8), lambda: mean(9), "MEAN is supported over 7x7 and 8x8 only: input is 9x9"),
    "pad-hw-only": (
        lambda: pad([[0, 0], [1, 1], [1, 1], [0, 0]]),
        lambda: pad([[0, 0], [1, 1], [1, 1], [0, 1]]),
        "PAD may pad height and width only: paddings [[0, 0], [1, 1], [1, 1], [0, 1]]",
    ),
    "pad-at-most-7": (
        lambda: pad([[0, 0], [7, 7], [7, 7], [0, 0]]),
        lambda: pad([[0, 0], [7, 8], [7, 7], [0, 0]]),
        "PAD may add at most 7 on each side: paddings [[0, 0], [7, 8], [7, 7], [0, 0]]",
    ),
    "pad-with-zero": (
        lambda: pad([[0, 0], [1, 1], [1, 1], [0, 0]], "PADV2", 3),
        lambda: pad([[0, 0], [1, 1], [1, 1], [0, 0]], "PADV2", 4),
        "PAD must pad with zero (the zero point): pads with 4, zero point 3",
    ),
    "sigmoid-output": (
        lambda: unary("LOGISTIC", y=act("y", (1, 4, 4, 8), 1 / 256, -128)),
        lambda: unary("LOGISTIC", y=act("y", (1, 4, 4, 8), 1 / 256, -127)),
        "LOGISTIC's output must have scale 1/256 and the type's minimum as zero point: it has 0.00390625/-127",
    ),
    "tanh-output": (
        lambda: unary("TANH", y=act("y", (1, 4, 4, 8), 1 / 128, 0)),
        lambda: unary("TANH", y=act("y", (1, 4, 4, 8), 1 / 128, 1)),
        "TANH's output must have scale 1/128 and the middle of the type as zero point: it has 0.0078125/1",
    ),
    "leaky-relu-alpha": (
        lambda: unary("LEAKY_RELU", alpha=0.99),
        lambda: unary("LEAKY_RELU", alpha=1.0),
        "LEAKY_RELU's alpha must lie strictly between 0 and 1: alpha 1",
    ),
    "depth-to-space-block": (
        lambda: single("DEPTH_TO_SPACE", [act("x", (1, 4, 4, 8))], act("y", (1, 8, 8, 2)), block_size=2),
        lambda: single("DEPTH_TO_SPACE", [act("x", (1, 4, 4, 18))], act("y", (1, 12, 12, 2)), block_size=3),
        "DEPTH_TO_SPACE must have block size 2: block size 3",
    ),
    # always EstimateOnly: the other side of the line is its inverse, which the NPU runs
    "space-to-depth": (
        lambda: single("DEPTH_TO_SPACE", [act("x", (1, 4, 4, 8))], act("y", (1, 8, 8, 2)), block_size=2),
        lambda: single("SPACE_TO_DEPTH", [act("x", (1, 8, 8, 2))], act("y", (1, 4, 4, 8)), block_size=2),
        "SPACE_TO_DEPTH is EstimateOnly (the library estimates it but does not compile it): always",
    ),
    "transpose-batch": (
        lambda: transpose([0, 2, 1, 3]),
        lambda: transpose([1, 0, 2, 3]),
        "TRANSPOSE must keep the batch axis first: permutation [1, 0, 2, 3]",
    ),
    "resize-factor": (
        lambda: resize(8),
        lambda: resize(9),
        "RESIZE must produce 2n or 2n - 1 rows and columns from n: 4x4 to 9x9",
    ),
    "estimate-only-op": (
        lambda: binary("ADD"),
        lambda: binary("SUB"),
        "Arm NN only estimates this op type on Ethos-N; it runs on the CPU: SUB",
    ),
    "known-op": (
        lambda: unary("RELU"),
        lambda: single("SOFTMAX", [act("x", (1, 8))], act("y", (1, 8), 1 / 256, -128), beta=1.0),
        "Ethos-N has no operation for this op type: SOFTMAX",
    ),
}


def messages(case: Case, name: str) -> list[str]:
    g, o, variant = (*case, V) if len(case) == 2 else case
    return [f.message for f in check_op(g, o, variant) if f.constraint == name]


def test_every_constraint_has_a_boundary_case() -> None:
    assert set(CASES) == {c.name for c in CONSTRAINTS}
    assert len(CASES) == 52


@pytest.mark.parametrize("name", sorted(CASES))
def test_constraint_on_both_sides_of_its_limit(name: str) -> None:
    meets, breaks, message = CASES[name]
    assert messages(meets(), name) == []
    assert messages(breaks(), name) == [message]


def test_fused_activation_outside_the_table() -> None:
    """check_op adds one finding of its own: a fused TANH or SIGN_BIT (the RELU family fuses fine)."""
    assert names(*conv(fused_activation_function="RELU6")) == set()
    assert [f.message for f in check_op(*conv(fused_activation_function="TANH"), V)] == ["fused TANH is not supported"]
