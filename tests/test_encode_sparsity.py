"""encode-sparsity: exact encodings, the smallest one, never larger than dense, bit-identical
outputs in LiteRT with XNNPACK (the default delegate) and with the builtin kernels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from npupass.backends.tflite import serialize_tflite
from npupass.frontends import load_model
from npupass.frontends.tflite import parse_tflite
from npupass.ir.graph import Graph, Model, Op, Signature, Tensor
from npupass.ir.types import DType, Quantization
from npupass.passes import PassManager, PipelineError, run_passes
from npupass.passes.encode_sparsity import (
    CSR,
    DENSE,
    Layout,
    candidates,
    converter_style,
    decode,
    encode,
    exact,
    fc_split,
    index_bytes,
    weight_sizes,
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


def like_converter(data: bytes) -> bytes:
    """`data` with every weight stored as the TF converter's EXPERIMENTAL_SPARSITY stores it."""
    model = parse_tflite(data)
    run_passes(model, "encode-sparsity", options={"encode-sparsity": {"like_converter": True}})
    return serialize_tflite(model)


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
    # the converter keeps an int8 FC native on 1x16 blocks when they are nearly as sparse as its elements
    w = np.zeros((2, 32), dtype=np.int8)
    w[0, 16:] = 3
    style = converter_style(w, "FULLY_CONNECTED", DType.INT8, 100)
    e = style.encoding
    assert style.kind == "fc-native" and e is not None and e.values.size == 16 and style.nbytes == e.nbytes
    assert [d.format for d in e.sparsity.dim_metadata] == [DENSE, CSR, DENSE]
    assert e.sparsity.block_map == (1,) and e.sparsity.dim_metadata[2].dense_size == 16
    w[1, 0] = 1  # a block holding one non-zero: blocks are no longer as sparse as the elements
    style = converter_style(w, "FULLY_CONNECTED", DType.INT8, 100)
    assert style.kind == "densify" and style.nbytes == style.encoding.nbytes + 100
    assert converter_style(w, "CONV_2D", DType.INT8, 100).encoding.layout == Layout((0, 1), (), (), (DENSE, CSR))
    assert (fc_split(64), fc_split(320), fc_split(1280), fc_split(1000)) == (1, 2, 5, 4)


def test_pruned_float_cnn_is_smaller_and_bit_identical() -> None:
    model, before, after, p = encoded("pruned_mbv2s_float.tflite")
    assert len(after) < 0.35 * len(before) and len(after) <= len(like_converter(before))  # 80% zeros
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
    assert len(after) < len(before) and len(after) <= (MODELS / "sparse_fc_int8.tflite").stat().st_size
    assert_bit_identical(before, after)


def test_int8_cnn_is_smaller_and_bit_identical_with_its_fc_as_a_conv() -> None:
    model, before, after, p = encoded("pruned_mbv2s_int8.tflite")
    assert len(after) < len(before) and len(after) <= len(like_converter(before))
    assert p.rewrites["fc-as-conv"] == 1 and p.rewrites["densify"] + len(p.declines) == 8
    assert all("sparse storage" in d.message for d in p.declines)  # tiny weights: DENSIFY costs more
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
    assert len(after) < len(encoded("pruned_mbv2s_float.tflite")[2])
    for delegates in ("default", "none"):
        a, b = LiteRTModel(before, delegates), LiteRTModel(after, delegates)
        x = make_inputs(a.inputs, 0)
        ya, yb = a.run(x)[0], b.run(x)[0]
        assert float(np.abs(ya - yb).max()) <= 1e-2 * float(np.abs(ya).max())


def _wide_conv(int8: bool, size: int = 1, o: int = 600, i: int = 300) -> Model:
    """A CONV_2D [o, size, size, i] (RELU6) with 80% zeros: both channel dims are > 256."""
    rng = np.random.default_rng(5)
    w = rng.normal(size=(o, size, size, i))
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


def test_an_int8_conv_wider_than_256_both_ways_is_split_by_output_channels() -> None:
    # one encoding of [600, 3, 3, 300] needs u16 indices whichever dim is CSR; three parts of 200
    # output channels have u8 ones, and CONCATENATION puts the independent channels back together
    model = _wide_conv(int8=True, size=3)
    before = serialize_tflite(model)
    result = run_passes(model, "encode-sparsity")
    after = serialize_tflite(model)
    assert dict(result.passes[0].rewrites) == {"split-conv": 1}
    g = model.main
    assert sorted(op.type for op in g.ops) == ["CONCATENATION"] + ["CONV_2D"] * 3 + ["DENSIFY"] * 3
    parts = [t for t in g.tensors if t.sparsity is not None]
    assert [t.shape for t in parts] == [(200, 3, 3, 300)] * 3
    for t in parts:
        assert t.sparsity is not None and t.sparsity.traversal_order[-1] == 0  # output channels are the CSR level
        csr = [d for d in t.sparsity.dim_metadata if d.format == CSR]
        assert len(csr) == 1 and csr[0].indices is not None and csr[0].indices.dtype == np.uint8
        (densify,) = g.consumer_ops(t)
        dense = g.outputs_of(densify)[0]  # the scales live on DENSIFY's output, which the conv reads
        assert t.quant is None and dense.quant is not None and dense.quant.scale.size == 200
    assert len(after) < len(before) and len(after) < len(like_converter(before))
    assert_bit_identical(before, after)


def test_a_float_conv_is_not_split() -> None:
    # LiteRT's builtin float GEMM may sum a part's inputs in another order than the whole conv's
    model = _wide_conv(int8=False, size=3, o=264, i=260)
    before = serialize_tflite(model)
    result = run_passes(model, "encode-sparsity")
    assert dict(result.passes[0].rewrites) == {"densify": 1}
    assert_bit_identical(before, serialize_tflite(model))


@pytest.mark.parametrize("int8", [False, True])
def test_a_wide_1x1_conv_becomes_a_conv_over_rows_of_pixels(int8: bool) -> None:
    # [600, 1, 1, 300] over [1, 4, 4, 300] == RESHAPE([16, 2, 1, 150]) -> VALID conv [600, 2, 1, 150]
    # -> RESHAPE([1, 4, 4, 600]): the same sums in the same order, and 150 columns take u8 indices
    model = _wide_conv(int8)
    before = serialize_tflite(model)
    result = run_passes(model, "encode-sparsity")
    after = serialize_tflite(model)
    assert dict(result.passes[0].rewrites) == {"1x1-as-kx1": 1}
    g = model.main
    assert [op.type for op in g.ops] == ["RESHAPE", "DENSIFY", "CONV_2D", "RESHAPE"]
    (kernel,) = [t for t in g.tensors if t.sparsity is not None]
    assert kernel.shape == (600, 2, 1, 150)
    assert [d.indices.dtype for d in kernel.sparsity.dim_metadata if d.format == CSR] == [np.uint8]
    assert g.ops[2].options["fused_activation_function"] == "RELU6"
    assert len(after) < len(before) and len(after) < len(like_converter(before))
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


# --- never larger than the TF converter: the converter's rules, and a property test ----------------------
def test_converter_style_reproduces_the_converters_own_files() -> None:
    # converter-made fixtures: decode each sparse weight, encode it the converter's way, same bytes
    for name in ("sparse_fc_float.tflite", "sparse_fc_int8.tflite"):
        g = load_model(MODELS / name).main
        seen = 0
        for op in g.ops:
            for t in g.inputs_of(op):
                if t is None or t.sparsity is None or t.shape is None:
                    continue
                user = g.consumer_ops(g.outputs_of(op)[0])[0].type if op.type == "DENSIFY" else op.type
                style = converter_style(decode(np.asarray(t.data), t.sparsity, t.shape), user, t.dtype, 0)
                assert style.encoding is not None and (style.kind == "densify") == (op.type == "DENSIFY")
                assert style.encoding.sparsity.traversal_order == tuple(t.sparsity.traversal_order)
                assert style.encoding.sparsity.block_map == tuple(t.sparsity.block_map)
                assert style.encoding.values.tobytes() == np.asarray(t.data).tobytes()
                assert style.nbytes == int(np.asarray(t.data).nbytes) + index_bytes(t.sparsity)
                seen += 1
        assert seen, name


def _pattern(shape: tuple[int, ...], kind: str, density: float, rng: np.random.Generator) -> np.ndarray:
    """Which weights survive pruning: `kind` as users prune (the input channels are the last dim)."""
    if kind == "element":
        return rng.random(shape) < density
    if kind == "channels":  # whole output channels (dim 0; depthwise: dim 3) pruned
        axis = 3 if shape[0] == 1 and len(shape) == 4 else 0
        keep = rng.random(shape[axis]) < density
        return np.broadcast_to(np.expand_dims(keep, [d for d in range(len(shape)) if d != axis]), shape).copy()
    block = {"2:4": 4, "1x4": 4, "1x16": 16}[kind]
    groups = rng.random((*shape[:-1], shape[-1] // block, block))
    if kind == "2:4":  # the 2 largest of every 4
        keep = groups >= np.sort(groups, axis=-1)[..., 2:3]
    else:
        keep = np.broadcast_to(groups[..., :1] < density, groups.shape)
    return keep.reshape(shape)


CASES = [  # op, weight shape: dims above and below 256
    ("CONV_2D", (300, 1, 1, 24)),
    ("CONV_2D", (16, 3, 3, 272)),
    ("CONV_2D", (264, 1, 1, 288)),  # both > 256: split by output channels
    ("CONV_2D", (24, 3, 3, 8)),
    ("DEPTHWISE_CONV_2D", (1, 3, 3, 304)),
    ("DEPTHWISE_CONV_2D", (1, 5, 5, 48)),
    ("FULLY_CONNECTED", (10, 320)),
    ("FULLY_CONNECTED", (272, 48)),
    ("FULLY_CONNECTED", (64, 64)),
]
PATTERNS = [("element", 0.5), ("element", 0.2), ("element", 0.06), ("channels", 0.3), ("2:4", 0.5), ("1x4", 0.2)]


def _one_op_model(op_type: str, w: np.ndarray, int8: bool, dynamic_batch: bool) -> Model:
    """One conv / depthwise / FC with weight `w` (float, or int8 with per-channel scales)."""
    rng = np.random.default_rng(w.size)
    if op_type == "FULLY_CONNECTED":
        x_shape, y_shape, axis = (1, w.shape[1]), (1, w.shape[0]), 0
        options, otype = default_options("FullyConnectedOptions"), "FullyConnectedOptions"
    elif op_type == "CONV_2D":
        x_shape, y_shape, axis = (1, 5, 5, w.shape[3]), (1, 5, 5, w.shape[0]), 0
        options = default_options("Conv2DOptions") | {"padding": "SAME", "stride_w": 1, "stride_h": 1}
        otype = "Conv2DOptions"
    else:
        x_shape, y_shape, axis = (1, 5, 5, w.shape[3]), (1, 5, 5, w.shape[3]), 3
        options = default_options("DepthwiseConv2DOptions") | {
            "padding": "SAME",
            "stride_w": 1,
            "stride_h": 1,
            "depth_multiplier": 1,
        }
        otype = "DepthwiseConv2DOptions"
    channels = w.shape[axis]
    b = rng.normal(size=channels)
    if int8:
        scales = rng.uniform(0.005, 0.02, channels)
        zeros = np.zeros(channels, dtype=np.int64)
        x = Tensor("x", DType.INT8, x_shape, quant=Quantization(np.array([0.05]), np.array([2])))
        y = Tensor("y", DType.INT8, y_shape, quant=Quantization(np.array([0.5]), np.array([-3])))
        weight = new_constant("w", w, DType.INT8, Quantization(scales, zeros, axis))
        bias = new_constant("b", np.round(b / (0.05 * scales)), DType.INT32, Quantization(0.05 * scales, zeros, 0))
    else:
        x, y = Tensor("x", DType.FLOAT32, x_shape), Tensor("y", DType.FLOAT32, y_shape)
        weight, bias = new_constant("w", w), new_constant("b", b)
    if dynamic_batch:
        x.shape_signature, y.shape_signature = (-1, *x_shape[1:]), (-1, *y_shape[1:])
    g = Graph("main")
    g.add_op(
        Op(op_type, options, otype, version=3 if int8 and op_type != "FULLY_CONNECTED" else 1), [x, weight, bias], [y]
    )
    g.inputs, g.outputs = [x], [y]
    return Model([g], signatures=[Signature("serving_default", 0, [("x", 0)], [("y", 0)])])


@pytest.mark.parametrize(("op_type", "shape"), CASES, ids=[f"{o}-{'x'.join(map(str, s))}" for o, s in CASES])
def test_never_larger_than_dense_or_the_converter_and_every_candidate_decodes(
    op_type: str, shape: tuple[int, ...]
) -> None:
    rng = np.random.default_rng(sum(shape))
    for n, (kind, density) in enumerate(PATTERNS):
        mask = _pattern(shape, kind, density, rng)
        int8 = n % 2 == 1
        if int8:
            w = rng.integers(1, 128, shape) * rng.choice([-1, 1], shape) * mask
        else:
            w = (rng.normal(size=shape) * mask).astype(np.float32)
            w[~mask & (rng.random(shape) < 0.5)] = -0.0  # pruning leaves negative zeros too
        what = f"{kind} {density} {'int8' if int8 else 'float'}"
        data = np.asarray(w, dtype=np.int8 if int8 else np.float32)
        # every candidate the encoder weighs, and the converter's, decodes to the weight exactly
        found = candidates(mask, data.itemsize) if not mask.all() else []
        step = 1 if n == 0 else max(1, len(found) // 40)  # all for the first pattern, then a spread
        for size, layout in found[::step]:
            e = encode(data, layout)
            assert e.nbytes == size and exact(e, data), (what, layout.describe())
        style = converter_style(data, op_type, DType.INT8 if int8 else DType.FLOAT32, 0)
        if style.encoding is not None:
            assert exact(style.encoding, data), what
        # the pass: per weight, never more bytes than dense or the converter (estimated, then in the file)
        model = _one_op_model(op_type, data, int8, dynamic_batch=n % 3 == 0)
        dense = serialize_tflite(model)
        manager = PassManager("encode-sparsity")
        manager.run(model)
        ours = serialize_tflite(model)
        (row,) = weight_sizes(manager.passes)
        assert row["chosen_bytes"] <= row["dense_bytes"], (what, row)
        # an int8 FC cannot run the converter's way bit-exactly: DENSIFY -> FC fails in XNNPACK, and
        # its native 1x16 blocks take LiteRT's sparse kernel, which rounds unlike XNNPACK's dense FC
        runs_in_litert = not (int8 and op_type == "FULLY_CONNECTED" and style.kind != "dense")
        if runs_in_litert:
            assert row["chosen_bytes"] <= row["converter_bytes"], (what, row)
        like = _one_op_model(op_type, data, int8, dynamic_batch=n % 3 == 0)
        run_passes(like, "encode-sparsity", options={"encode-sparsity": {"like_converter": True}})
        assert len(ours) <= len(dense), what
        if runs_in_litert:
            assert len(ours) <= len(serialize_tflite(like)), (what, row)
        if n % 2 == 0 or op_type != "CONV_2D":  # LiteRT: a sample of the cases (the slow part)
            assert_bit_identical(dense, ours)


def test_compile_reports_the_bytes_of_every_weight(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from npupass.cli import main

    model = MODELS / "pruned_mbv2s_int8.tflite"
    assert main(["compile", str(model), "--target", "xnnpack", "-o", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["weights"]
    assert len(rows) == 9 and {r["dtype"] for r in rows} == {"INT8"}  # 8 convs and the FC
    for r in rows:
        assert r["chosen_bytes"] <= r["dense_bytes"], r
        if r["op"].startswith("FULLY_CONNECTED"):  # int8 FC: the converter's form is not exact in LiteRT
            assert r["note"] and r["chosen"].startswith("fc-as-conv"), r
        else:
            assert r["chosen_bytes"] <= r["converter_bytes"], r
    assert main(["compile", str(model), "--target", "xnnpack", "-o", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "weights (bytes: dense, as stored, as the TF converter stores them)" in text
    assert text.count("densify") >= 6


def test_a_float_model_that_can_take_xnnpacks_sparse_path_keeps_its_1x1_convs() -> None:
    # PAD(1) + 3x3 stride-2 VALID stem on 3 channels: XNNPACK's NCHW path needs every conv after it 1x1
    rng = np.random.default_rng(3)
    g = Graph("main")
    x = Tensor("x", DType.FLOAT32, (1, 9, 9, 3))
    padded = Tensor("padded", DType.FLOAT32, (1, 11, 11, 3))
    pads = new_constant("pads", np.array([[0, 0], [1, 1], [1, 1], [0, 0]]), DType.INT32)
    g.add_op(Op("PAD", {}, "PadOptions"), [x, pads], [padded])
    conv = default_options("Conv2DOptions") | {"stride_w": 2, "stride_h": 2, "padding": "VALID"}
    stem = Tensor("stem", DType.FLOAT32, (1, 5, 5, 270))
    g.add_op(
        Op("CONV_2D", conv, "Conv2DOptions"),
        [padded, new_constant("w0", rng.normal(size=(270, 3, 3, 3))), new_constant("b0", np.zeros(270))],
        [stem],
    )
    w1 = rng.normal(size=(300, 1, 1, 270)) * (rng.random((300, 1, 1, 270)) < 0.2)
    y = Tensor("y", DType.FLOAT32, (1, 5, 5, 300))
    pointwise = conv | {"stride_w": 1, "stride_h": 1}
    g.add_op(
        Op("CONV_2D", pointwise, "Conv2DOptions"),
        [stem, new_constant("w1", w1), new_constant("b1", np.zeros(300))],
        [y],
    )
    g.inputs, g.outputs = [x], [y]
    model = Model([g], signatures=[Signature("serving_default", 0, [("x", 0)], [("y", 0)])])
    before = serialize_tflite(model)
    p = run_passes(model, "encode-sparsity").passes[0]
    assert dict(p.rewrites) == {"densify": 1}
    assert any("kept 1x1: the model can take XNNPACK's sparse path" in d.message for d in p.declines)
    assert_bit_identical(before, serialize_tflite(model))
