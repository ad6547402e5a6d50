"""The Ethos-N78 constraint table: each rule on both sides of its limit."""

from __future__ import annotations

import numpy as np
import pytest
from ethos_n_graphs import act, const, conv_weights, q, single

from npupass.backends.ethos_n.capabilities import CONSTRAINTS, VARIANTS, Level, check_op, level_of
from npupass.ir.types import DType

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
    g, o = conv(padding="VALID")
    o.provenance["explicit_padding"] = pad
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
