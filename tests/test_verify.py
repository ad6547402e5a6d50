"""Seeded reference inputs and the LiteRT comparison."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MODELS

from npupass.frontends.tflite import read_tflite
from npupass.verify import LiteRTModel, ReferenceError, Tolerance, float_input_ranges, make_inputs
from npupass.verify.compare import compare_arrays
from npupass.verify.litert import TensorSpec


def test_int8_inputs_cover_the_quantized_range() -> None:
    ref = LiteRTModel((MODELS / "cnn_int8.tflite").read_bytes())
    (x,) = make_inputs(ref.inputs, seed=0)
    assert x.dtype == np.int8 and x.shape == (1, 32, 32, 3)
    assert x.min() == -128 and x.max() == 127


def test_float_inputs_feeding_a_quantize_use_its_range() -> None:
    model = read_tflite(MODELS / "cnn_int8_per_tensor.tflite")
    quantize = next(op for op in model.main.ops if op.type == "QUANTIZE")
    q = model.main.outputs_of(quantize)[0].quant
    assert q is not None
    scale, zp = float(q.scale[0]), int(q.zero_point[0])
    ranges = float_input_ranges(model)
    assert ranges == {0: (scale * (-128 - zp), scale * (127 - zp))}
    ref = LiteRTModel((MODELS / "cnn_int8_per_tensor.tflite").read_bytes())
    (x,) = make_inputs(ref.inputs, seed=0, float_ranges=ranges)
    assert ranges[0][0] <= x.min() < x.max() <= ranges[0][1]
    assert x.max() - x.min() > 0.9 * (ranges[0][1] - ranges[0][0])


def test_plain_float_inputs_are_in_minus_one_to_one() -> None:
    assert float_input_ranges(read_tflite(MODELS / "cnn_float.tflite")) == {}
    ref = LiteRTModel((MODELS / "cnn_float.tflite").read_bytes())
    (x,) = make_inputs(ref.inputs, seed=0)
    assert x.dtype == np.float32 and x.min() >= -1 and x.max() < 1


def test_inputs_are_reproducible_per_seed() -> None:
    ref = LiteRTModel((MODELS / "cnn_float.tflite").read_bytes())
    a, b, c = (make_inputs(ref.inputs, seed=s)[0] for s in (3, 3, 4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_huge_inputs_are_refused_not_allocated() -> None:
    spec = TensorSpec("big", np.dtype(np.float32), (1, 1 << 20, 1 << 10, 3), 0.0, 0)
    with pytest.raises(
        ReferenceError, match=r"^input 'big' has 3221225472 elements \(shape \[1, 1048576, 1024, 3\]\); refusing"
    ):
        make_inputs([spec], seed=0)


def test_litert_runs_the_reference_with_and_without_delegates() -> None:
    data = (MODELS / "mobilenet_v2_035_96_float.tflite").read_bytes()
    builtin, delegated = LiteRTModel(data, "none"), LiteRTModel(data, "default")
    inputs = make_inputs(builtin.inputs, seed=1)
    (a,), (b,) = builtin.run(inputs), delegated.run(inputs)
    assert a.shape == (1, 10)
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_complex_outputs_compare_both_parts() -> None:
    x = np.array([1 + 1j, 2 + 2j, 3 + 3j], np.complex64)
    y = np.array([1 - 5j, 2 + 2j, 3 + 3j], np.complex64)
    result = compare_arrays(x, y)
    assert result.mismatched == 1 and not result.ok
    assert result.max_abs_diff == pytest.approx(6.0)


def test_uint64_differences_do_not_overflow() -> None:
    result = compare_arrays(np.array([2**63 + 5], np.uint64), np.array([5], np.uint64))
    assert result.max_steps == 2**63 and result.mismatched == 1
    result = compare_arrays(np.array([3, 9], np.uint8), np.array([9, 3], np.uint8), Tolerance(max_steps=6))
    assert result.max_steps == 6 and result.ok


def test_argmax_agreement_is_averaged_over_rows() -> None:
    x = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], np.float32)
    y = np.array([[0.2, 0.8], [0.1, 0.9], [0.3, 0.7], [0.6, 0.4]], np.float32)
    assert compare_arrays(x, y).argmax_agreement == 0.75
