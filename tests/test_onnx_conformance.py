"""A fast subset of the ONNX backend node conformance run (bench/onnx_conformance.py): the op families
where npupass once gave silent wrong answers or wrote files LiteRT could not run. Every case must pass
or be refused in one line; none may be WRONG or unrunnable."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).parent.parent / "bench" / "onnx_conformance.py"
MODULES = ["split", "resize", "div", "mul", "add", "sub", "max", "min", "pow", "dropout", "relu", "conv"]
MODULES += ["less", "and_", "argmax", "trilu", "where", "reciprocal", "mod", "log", "cast", "topk"]
MODULES += ["reducemax", "reducesum", "prelu"]


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("onnx_conformance", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["onnx_conformance"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Any]:
    bench = _bench()
    return {o.name: o for o in bench.run_all(bench.collect(MODULES))}


def test_no_wrong_answers_and_nothing_litert_cannot_run(outcomes: dict[str, Any]) -> None:
    kinds = Counter(o.kind for o in outcomes.values())
    assert len(outcomes) > 150
    assert kinds["WRONG"] == kinds["LiteRT cannot run"] == kinds["npupass crashed"] == 0, [
        (o.name, o.kind, o.detail) for o in outcomes.values() if o.kind not in ("PASS", "refused")
    ]
    assert kinds["PASS"] >= 40


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("test_resize_downsample_scales_linear", "ONNX Resize 'Y': Resize whose scales are not a constant"),
        (
            "test_div_uint8",
            "ONNX Div 'z': Div on UINT8: TFLite has no plain uint8 Div (its 8/16-bit integer arithmetic is quantized)",
        ),
        (
            "test_mul_int8",
            "ONNX Mul 'z': Mul on INT8: TFLite has no plain int8 Mul (its 8/16-bit integer arithmetic is quantized)",
        ),
        (
            "test_add_uint8",
            "ONNX Add 'sum': Add on UINT8: TFLite has no plain uint8 Add "
            "(its 8/16-bit integer arithmetic is quantized)",
        ),
        (
            "test_max_uint16",
            "ONNX Max 'result': Max on UINT16: TFLite has no plain uint16 Max "
            "(its 8/16-bit integer arithmetic is quantized)",
        ),
        ("test_less_uint8", "ONNX Less 'less': Less on UINT8"),
        ("test_add_uint32", "value 'x' has ONNX element type UINT32, which npupass doesn't import"),
        ("test_pow_types_float32_int64", "ONNX Pow 'z': Pow of FLOAT32 by INT32 (TFLite's POW needs one type)"),
        (
            "test_training_dropout",
            "ONNX Dropout 'y': Dropout in training mode (random masking; only inference mode converts)",
        ),
    ],
)
def test_formerly_wrong_cases_are_refused_in_one_line(outcomes: dict[str, Any], case: str, reason: str) -> None:
    assert (outcomes[case].kind, outcomes[case].detail) == ("refused", reason)


@pytest.mark.parametrize(
    "case",
    [
        "test_split_equal_parts_1d_opset13",
        "test_split_variable_parts_1d_opset13",  # once WRONG: sizes fed at run time, taken from the outputs
        "test_split_variable_parts_2d_opset18",
        "test_top_k_smallest",
        "test_add_bcast",  # a rank-1 activation broadcast against a rank-3 one
        "test_less_bcast",
        "test_prelu_broadcast",
        "test_top_k_same_values_2d",
        "test_div",
        "test_mul",
        "test_max_int8",
        "test_dropout_default",
        "test_less",
        "test_and2d",
        "test_argmax_keepdims_random",
        "test_argmax_no_keepdims_random",
        "test_argmax_keepdims_random_select_last_index",
        "test_triu",
        "test_tril_square",
        "test_where_example",
        "test_reciprocal",
        "test_mod_mixed_sign_int32",
        "test_log",
    ],
)
def test_what_tflite_expresses_still_passes(outcomes: dict[str, Any], case: str) -> None:
    assert outcomes[case].kind == "PASS", outcomes[case].detail
