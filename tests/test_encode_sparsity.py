"""encode-sparsity: exact encodings, the smallest one, never larger than dense, bit-identical
outputs in LiteRT with XNNPACK (the default delegate) and with the builtin kernels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from npupass.backends.tflite import serialize_tflite
from npupass.frontends import load_model
from npupass.frontends.tflite import parse_tflite
from npupass.ir.graph import Graph, Model, Op, Signature, Tensor
from npupass.ir.types import DType, Quantization
from npupass.passes import PipelineError, run_passes
from npupass.passes.encode_sparsity import (
    CSR,
    DENSE,
    Layout,
    candidates,
    decode,
    encode,
    exact,
    fc_split,
    native_fc_block,
)
from npupass.passes.pattern import new_constant
from npupass.tflite_schema import default_options
from npupass.verify.litert import LiteRTModel, make_inputs

MODELS = Path(__file__).parent / "models"


def outputs(data: bytes, delegates: str) -> list[bytes]:
    m = LiteRTModel(data, delegates)
    return [y.tobytes() for seed in range(2) for y in m.run(make_inputs(m.inputs, seed))]


def assert_bit_identical(a: bytes, b: bytes) -> None:
    for delegates in ("default", "none"):  # XNNPACK, then the builtin kernels
        assert outputs(a, delegates) == outputs(b, delegates), delegates


def encoded(name: str, **options: object) -> tuple[Model, bytes, bytes, object]:
    model = load_model(MODELS / name)
    before = serialize_tflite(model)
    result = run_passes(model, "encode-sparsity", options={"encode-sparsity": options} if options else None)
    return model, before, serialize_tflite(model), result.passes[0]


def test_worked_example_from_the_tflite_format() -> None:
    w = np.array(
        [[0, 1.5, 0, 0, 0, 0, 2, 0], [0] * 8, [3, 0, 0, 4, 0, 0, 0, 5], [0, 0, 0, 0, 0, 6, 0, 0]], dtype=np.float32
    )
    e = encode(w, Layout((0, 1), formats=(DENSE, CSR)))
    dims = e.sparsity.dim_metadata
    assert (dims[0].format, dims[0].dense_size) == (DENSE, 4)
    assert dims[1].segments.dtype == np.uint8 and dims[1].segments.tolist() == [0, 2, 2, 5, 6]
    assert dims[1].indices.dtype == np.uint8 and dims[1].indices.tolist() == [1, 6, 0, 3, 7, 5]
    assert e.values.tolist() == [1.5, 2, 3, 4, 5, 6]
    assert e.nbytes == 6 * 4 + 5 + 6


def test_every_candidate_decodes_exactly_and_is_counted_exactly() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 3, 2, 8)).astype(np.float32)
    w[rng.random(w.shape) < 0.7] = 0
    w[0] = 0  # a pruned channel
    found = candidates(w != 0, 4)
    assert len(found) == 24 * 15 + 3 * 15  # orders x CSR choices, plus blocks 2 on dim 0, 2 and 4 on dim 3
    for size, layout in found:
        e = encode(w, layout)
        assert e.nbytes == size, layout.describe()
        assert exact(e, w), layout.describe()
        assert np.array_equal(decode(e.values, e.sparsity, w.shape), w)
    assert [s for s, _ in found] == sorted(s for s, _ in found)


def test_the_smallest_layout_wins_and_index_arrays_get_narrower() -> None:
    # [O=300, 1, 1, I=40]: CSR over the 40 inputs has u16 segments; over the 300 outputs u16 indices
    rng = np.random.default_rng(1)
    w = rng.normal(size=(300, 1, 1, 40)).astype(np.float32)
    w[rng.random(w.shape) < 0.8] = 0
    size, best = candidates(w != 0, 4)[0]
    nnz = int(np.count_nonzero(w))
    assert best.traversal == (1, 2, 0, 3) and best.formats == (DENSE, DENSE, DENSE, CSR)
    e = encode(w, best)
    assert [str(d.indices.dtype) for d in e.sparsity.dim_metadata if d.format == CSR] == ["uint8"]
    assert size == e.nbytes == nnz * 4 + nnz + 301 * 2


def test_negative_zero_is_a_zero() -> None:
    w = np.array([[0.0, -0.0, 1.0, -0.0]], dtype=np.float32)
    e = encode(w, Layout((0, 1), formats=(DENSE, CSR)))
    assert e.values.tolist() == [1.0]
    assert exact(e, w)


def test_fc_blocks_and_splits() -> None:
    w = np.zeros((2, 32), dtype=np.int8)
    w[0, 16:] = 3
    e = native_fc_block(w, 16)
    assert e is not None and e.values.size == 16
    assert [d.format for d in e.sparsity.dim_metadata] == [DENSE, CSR, DENSE]
    assert e.sparsity.block_map == (1,) and e.sparsity.dim_metadata[2].dense_size == 16
    assert native_fc_block(w[:, :20], 16) is None
    assert (fc_split(64), fc_split(320), fc_split(1280), fc_split(1000)) == (1, 2, 5, 4)


def test_pruned_float_cnn_is_smaller_and_bit_identical() -> None:
    model, before, after, p = encoded("pruned_mbv2s_float.tflite")
    assert (len(before), len(after)) == (143_476, 47_304)
    assert dict(p.rewrites) == {"densify": 9}
    assert [op.type for op in model.main.ops].count("DENSIFY") == 9
    assert_bit_identical(before, after)
    again = run_passes(parse_tflite(after), "encode-sparsity")  # the weights are sparse now: nothing to do
    assert not again.changed


def test_int8_fc_becomes_a_conv_not_densify_into_fully_connected() -> None:
    # LiteRT 2.3's XNNPACK fails to prepare DENSIFY -> int8 FULLY_CONNECTED: the FC becomes a conv
    dense = _densified("sparse_fc_int8.tflite")
    before = serialize_tflite(dense)
    result = run_passes(dense, "encode-sparsity")
    after = serialize_tflite(dense)
    assert dict(result.passes[0].rewrites) == {"fc-as-conv": 1}
    assert [op.type for op in dense.main.ops] == ["RESHAPE", "DENSIFY", "CONV_2D", "RESHAPE", "FULLY_CONNECTED"]
    conv = dense.main.ops[2]
    kernel = dense.main.inputs_of(dense.main.ops[1])[0]
    assert kernel.shape == (64, 2, 1, 150) and kernel.dtype is DType.INT8
    assert conv.options["padding"] == "VALID"
    assert (len(before), len(after)) == (23_360, 14_036)
    assert_bit_identical(before, after)


def test_int8_cnn_is_smaller_and_bit_identical_with_its_fc_as_a_conv() -> None:
    model, before, after, p = encoded("pruned_mbv2s_int8.tflite")
    assert (len(before), len(after)) == (67_956, 64_392)
    assert dict(p.rewrites) == {"densify": 8, "fc-as-conv": 1} and not p.declines
    # the bias-less int8 FC [10, 320] is a VALID conv over [1, 2, 1, 160] with a zero int32 bias
    assert [op.type for op in model.main.ops][-5:] == ["MEAN", "RESHAPE", "DENSIFY", "CONV_2D", "RESHAPE"]
    conv = model.main.ops[-2]
    bias = model.main.inputs_of(conv)[2]
    assert bias is not None and bias.dtype is DType.INT32 and not np.asarray(bias.data).any()
    assert_bit_identical(before, after)


def test_small_weights_stay_dense() -> None:
    _, before, after, p = encoded("pruned_qat_cnn_int8.tflite")
    assert before == after and not p.rewrites
    assert len(p.declines) == 4


def test_threshold() -> None:
    _, before, after, p = encoded("pruned_mbv2s_float.tflite", threshold=0.9)
    assert before == after
    assert p.declines[0].message.endswith("not encoded: 80% zeros, below the 90% threshold")
    with pytest.raises(PipelineError, match="threshold must be a fraction"):
        run_passes(
            load_model(MODELS / "pruned_mbv2s_float.tflite"),
            "encode-sparsity",
            options={"encode-sparsity": {"threshold": 2}},
        )


def test_fp16_halves_the_values_behind_dequantize() -> None:
    model, before, after, p = encoded("pruned_mbv2s_float.tflite", fp16=True)
    assert dict(p.rewrites) == {"densify": 9}
    graph = model.main
    types = [op.type for op in graph.ops]
    assert types.count("DENSIFY") == 9 and types.count("DEQUANTIZE") == 9
    sparse = [t for t in graph.tensors if t.sparsity is not None]
    assert len(sparse) == 9 and all(t.dtype is DType.FLOAT16 for t in sparse)
    assert len(after) == 35_368
    for delegates in ("default", "none"):
        a, b = LiteRTModel(before, delegates), LiteRTModel(after, delegates)
        x = make_inputs(a.inputs, 0)
        ya, yb = a.run(x)[0], b.run(x)[0]
        assert float(np.abs(ya - yb).max()) <= 1e-2 * float(np.abs(ya).max())


def _wide_conv(int8: bool) -> Model:
    """A 1x1 CONV_2D [600, 1, 1, 300] (RELU6) with 80% zeros: both weight dims are > 256."""
    rng = np.random.default_rng(5)
    o, i = 600, 300
    w = rng.normal(size=(o, 1, 1, i))
    w[rng.random(w.shape) < 0.8] = 0
    b = rng.normal(size=o)
    options = default_options("Conv2DOptions") | {
        "padding": "SAME",
        "stride_w": 1,
        "stride_h": 1,
        "fused_activation_function": "RELU6",
    }
    if int8:
        scales = np.abs(w).max(axis=(1, 2, 3)) / 127
        x = Tensor("x", DType.INT8, (1, 4, 4, i), quant=Quantization(np.array([0.05]), np.array([3])))
        y = Tensor("y", DType.INT8, (1, 4, 4, o), quant=Quantization(np.array([0.1]), np.array([-5])))
        zeros = np.zeros(o, dtype=np.int64)
        weight = new_constant(
            "w", np.round(w / scales[:, None, None, None]), DType.INT8, Quantization(scales, zeros, 0)
        )
        bias = new_constant("b", np.round(b / (0.05 * scales)), DType.INT32, Quantization(0.05 * scales, zeros, 0))
    else:
        x, y = Tensor("x", DType.FLOAT32, (1, 4, 4, i)), Tensor("y", DType.FLOAT32, (1, 4, 4, o))
        weight, bias = new_constant("w", w), new_constant("b", b)
    g = Graph("main")
    g.add_op(Op("CONV_2D", options, "Conv2DOptions", version=3), [x, weight, bias], [y])
    g.inputs, g.outputs = [x], [y]
    return Model([g], signatures=[Signature("serving_default", 0, [("x", 0)], [("y", 0)])])


@pytest.mark.parametrize(("int8", "sizes"), [(False, (723_048, 185_800)), (True, (197_608, 99_608))])
def test_a_conv_wider_than_256_both_ways_is_split_by_output_channels(int8: bool, sizes: tuple[int, int]) -> None:
    # one encoding of [600, 1, 1, 300] needs u16 indices whichever dim is CSR; three parts of 200
    # output channels have u8 ones, and CONCATENATION puts the independent channels back together
    model = _wide_conv(int8)
    before = serialize_tflite(model)
    result = run_passes(model, "encode-sparsity")
    after = serialize_tflite(model)
    assert dict(result.passes[0].rewrites) == {"split-conv": 1}
    g = model.main
    assert sorted(op.type for op in g.ops) == ["CONCATENATION"] + ["CONV_2D"] * 3 + ["DENSIFY"] * 3
    parts = [t for t in g.tensors if t.sparsity is not None]
    assert [t.shape for t in parts] == [(200, 1, 1, 300)] * 3
    for t in parts:
        assert t.sparsity is not None and t.sparsity.traversal_order[-1] == 0  # output channels are the CSR level
        csr = [d for d in t.sparsity.dim_metadata if d.format == CSR]
        assert len(csr) == 1 and csr[0].indices is not None and csr[0].indices.dtype == np.uint8
        if int8:
            assert t.quant is not None and t.quant.scale.size == 200
    assert (len(before), len(after)) == sizes
    assert_bit_identical(before, after)


def _densified(name: str) -> Model:
    """A converter-made sparse fixture with its DENSIFY undone (the dense model it came from)."""
    model = load_model(MODELS / name)
    g = model.main
    for op in list(g.ops):
        if op.type == "DENSIFY":
            s, out = g.inputs_of(op)[0], g.outputs_of(op)[0]
            assert s is not None and s.sparsity is not None and s.shape is not None
            g.remove_op(op)
            g.drop_unused(s)  # first, so that the dense constant takes its name
            dense = new_constant(s.name, decode(np.asarray(s.data), s.sparsity, s.shape), s.dtype, s.quant)
            g.replace_uses(out, dense)
            g.drop_unused(out)
    return model
