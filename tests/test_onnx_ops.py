"""One ONNX op at a time, built with onnx.helper, imported and run in LiteRT against onnxruntime.

Inputs are NCHW 4-D tensors, so every op also goes through the NHWC layout bookkeeping.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import npupass
from npupass.backends.tflite import serialize_tflite
from npupass.frontends import load_model
from npupass.verify.litert import LiteRTModel
from npupass.verify.onnxrt import AsTflite, OnnxRuntimeModel

X = (1, 4, 6, 6)


def _const(name: str, values: Any, dtype: Any = np.float32) -> Any:
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def _model(nodes: list[Any], out_shape: tuple[int, ...] | None, inits: list[Any], opset: int = 13) -> Any:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(X))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape) if out_shape else None)
    graph = helper.make_graph(nodes, "op", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


CASES: dict[str, tuple[list[Any], list[Any], int]] = {
    "sum": ([helper.make_node("Sum", ["x", "x", "c"], ["y"])], [_const("c", np.linspace(-1, 1, 6))], 13),
    "prelu": ([helper.make_node("PRelu", ["x", "s"], ["y"])], [_const("s", [[[0.1]], [[0.2]], [[0.3]], [[0.4]]])], 13),
    "hard_sigmoid": ([helper.make_node("HardSigmoid", ["x"], ["y"], alpha=0.3, beta=0.4)], [], 13),
    "log_softmax": ([helper.make_node("LogSoftmax", ["x"], ["y"], axis=-1)], [], 13),
    "softmax_over_channels": ([helper.make_node("Softmax", ["x"], ["y"], axis=1)], [], 13),
    "reduce_mean_keep": ([helper.make_node("ReduceMean", ["x"], ["y"], axes=[1], keepdims=1)], [], 13),
    "reduce_sum_drop": (
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)],
        [_const("axes", [2, 3], np.int64)],
        13,
    ),
    "reduce_max_drop_channels": ([helper.make_node("ReduceMax", ["x"], ["y"], axes=[1], keepdims=0)], [], 13),
    "pad": ([helper.make_node("Pad", ["x", "pads"], ["y"])], [_const("pads", [0, 1, 2, 0, 0, 0, 1, 3], np.int64)], 13),
    "depth_to_space": ([helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode="DCR")], [], 13),
    "space_to_depth": ([helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=2)], [], 13),
    "lrn": ([helper.make_node("LRN", ["x"], ["y"], size=3, alpha=0.01, beta=0.75, bias=1.0)], [], 13),
    "leaky_relu": ([helper.make_node("LeakyRelu", ["x"], ["y"], alpha=0.1)], [], 13),
    "clip_attrless": (
        [helper.make_node("Clip", ["x", "lo", "hi"], ["y"])],
        [_const("lo", -0.5), _const("hi", 0.25)],
        13,
    ),
    "transpose_then_add": (
        [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]), helper.make_node("Add", ["t", "b"], ["y"])],
        [_const("b", np.arange(4))],
        13,
    ),
    "conv_grouped": (
        [helper.make_node("Conv", ["x", "w"], ["y"], group=2, pads=[1, 1, 1, 1])],
        [_const("w", np.linspace(-1, 1, 6 * 2 * 3 * 3).reshape(6, 2, 3, 3))],
        13,
    ),
    "conv_depthwise_multiplier": (
        [helper.make_node("Conv", ["x", "w"], ["y"], group=4, strides=[2, 2], pads=[1, 1, 1, 1])],
        [_const("w", np.linspace(-1, 1, 8 * 1 * 3 * 3).reshape(8, 1, 3, 3))],
        13,
    ),
    "conv_transpose_same": (
        [
            helper.make_node(
                "ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], pads=[0, 0, 1, 1], output_padding=[0, 0]
            )
        ],
        [_const("w", np.linspace(-1, 1, 4 * 3 * 3 * 3).reshape(4, 3, 3, 3)), _const("b", [0.1, -0.2, 0.3])],
        13,
    ),
    "conv_transpose_valid": (
        [helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])],
        [_const("w", np.linspace(-1, 1, 4 * 2 * 2 * 2).reshape(4, 2, 2, 2))],
        13,
    ),
    "slice_channels_and_rows": (
        [helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])],
        [
            _const("st", [1, 1], np.int64),
            _const("en", [3, 100], np.int64),
            _const("ax", [1, 2], np.int64),
            _const("sp", [1, 2], np.int64),
        ],
        13,
    ),
    "split_then_add": (
        [helper.make_node("Split", ["x", "sz"], ["a", "b"], axis=1), helper.make_node("Add", ["a", "b"], ["y"])],
        [_const("sz", [2, 2], np.int64)],
        13,
    ),
    "resize_bilinear": (
        [
            helper.make_node(
                "Resize", ["x", "", "sc"], ["y"], mode="linear", coordinate_transformation_mode="half_pixel"
            )
        ],
        [_const("sc", [1, 1, 2, 2])],
        13,
    ),
    "resize_nearest": (
        [
            helper.make_node(
                "Resize",
                ["x", "", "sc"],
                ["y"],
                mode="nearest",
                coordinate_transformation_mode="asymmetric",
                nearest_mode="floor",
            )
        ],
        [_const("sc", [1, 1, 2, 2])],
        13,
    ),
    "max_pool_stride2_pad1": (  # the ResNet stem: pads that are not TF's SAME, padded with -inf
        [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
        [],
        13,
    ),
    "avg_pool_include_pad": (
        [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)],
        [],
        13,
    ),
    "avg_pool_same_upper_include_pad": (
        [
            helper.make_node(
                "AveragePool",
                ["x"],
                ["y"],
                kernel_shape=[2, 2],
                strides=[2, 2],
                auto_pad="SAME_UPPER",
                count_include_pad=1,
            )
        ],
        [],
        13,
    ),
    "max_pool_same": ([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])], [], 13),
    "avg_pool_stride": ([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])], [], 13),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_onnxruntime(case: str, tmp_path: Path) -> None:
    nodes, inits, opset = CASES[case]
    model = onnx.shape_inference.infer_shapes(_model(nodes, None, inits, opset))
    path = tmp_path / f"{case}.onnx"
    onnx.save(model, str(path))
    ir = load_model(path)
    # LogSoftmax over W needs ONNX order (one TRANSPOSE; its output stays in ONNX order); every
    # other op stays in the NHWC it was given
    assert Counter(op.type for op in ir.main.ops)["TRANSPOSE"] == (1 if case == "log_softmax" else 0)
    layout = json.loads(ir.metadata_entry("npupass_onnx_layout") or b"null")
    lite = LiteRTModel(serialize_tflite(ir))
    ort = AsTflite(OnnxRuntimeModel(path), lite, layout)
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, lite.inputs[0].shape).astype(np.float32)  # as the TFLite model takes it (NHWC)
    (want,), (got,) = ort.run([x]), lite.run([x])
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _gelu_model(expose_erf: bool, half_first: bool) -> Any:
    """x * 0.5 * (1 + erf(x / sqrt 2)) as PyTorch exports the exact GELU; with `expose_erf` the
    Erf's output is a graph output too."""
    mul = (
        [helper.make_node("Mul", ["x", "half"], ["h"]), helper.make_node("Mul", ["h", "a"], ["y"])]
        if half_first
        else [helper.make_node("Mul", ["x", "a"], ["m"]), helper.make_node("Mul", ["m", "half"], ["y"])]
    )
    nodes = [
        helper.make_node("Div", ["x", "sqrt2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["a"]),
        *mul,
    ]
    inits = [_const("sqrt2", np.sqrt(2)), _const("one", 1.0), _const("half", 0.5)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(X))]
    if expose_erf:
        outputs.append(helper.make_tensor_value_info("e", TensorProto.FLOAT, list(X)))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(X))
    graph = helper.make_graph(nodes, "gelu", [x], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("expose_erf", [False, True])
@pytest.mark.parametrize("half_first", [False, True])
def test_gelu_fuses_unless_its_erf_is_a_graph_output(expose_erf: bool, half_first: bool, tmp_path: Path) -> None:
    path = tmp_path / "gelu.onnx"
    onnx.save(_gelu_model(expose_erf, half_first), str(path))
    ir = npupass.convert(path).model  # the import's default pipeline fuses or lowers the ERF
    ops = Counter(op.type for op in ir.main.ops)
    if expose_erf:  # the fusion would lose 'e': the Erf becomes a polynomial of TFLite ops instead
        assert ops["GELU"] == 0 and ops["SIGN"] == 1 and ops["EXP"] == 1
        assert [t.name for t in ir.main.outputs] == ["y", "e"]
    else:
        assert ops == {"GELU": 1}
    assert "ERF" not in ops
    layout = json.loads(ir.metadata_entry("npupass_onnx_layout") or b"null")
    lite = LiteRTModel(serialize_tflite(ir))
    ort = AsTflite(OnnxRuntimeModel(path), lite, layout)
    x = np.random.default_rng(0).uniform(-4, 4, lite.inputs[0].shape).astype(np.float32)
    for want, got in zip(ort.run([x]), lite.run([x]), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
