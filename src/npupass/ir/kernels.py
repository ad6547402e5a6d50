"""LiteRT's int8 arithmetic in numpy (tensorflow/lite/kernels/internal/common.h, mul.cc, add.cc and the
optimized depthwise kernel), for rewrites that prove themselves exact by evaluating both sides on every
int8 input."""

from __future__ import annotations

import math

import numpy as np

from npupass.ir.graph import Tensor
from npupass.ir.quant import saturate_int32


def quantize_multiplier(real: float) -> tuple[int, int]:
    """QuantizeMultiplier: `real` as a Q31 significand and a power-of-two exponent."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    fixed = int(math.copysign(math.floor(abs(q) * 2**31 + 0.5), q))  # TfLiteRound: half away from zero
    if fixed == 2**31:
        fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return fixed, shift


def high_mul(a: np.ndarray, b: int) -> np.ndarray:
    """SaturatingRoundingDoublingHighMul on int64 arrays (C++ integer division truncates)."""
    ab = a.astype(np.int64) * np.int64(b)
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    num = ab + nudge
    result = np.sign(num) * (np.abs(num) // (1 << 31))
    return np.where((a == b) & (a == -(2**31)), 2**31 - 1, result)


def divide_by_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    """RoundingDivideByPOT: x / 2^exponent rounded half away from zero."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply(x: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """MultiplyByQuantizedMultiplier (double rounding)."""
    left, right = max(shift, 0), max(-shift, 0)
    return divide_by_pot(high_mul(saturate_int32(x * (1 << left)), multiplier), right)


def multiply_half_up(x: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """What LiteRT's optimized int8 depthwise kernel computes (measured, x86 build): the doubling
    high multiply, then a rounding right shift that rounds ties up (NEON's vrshl), not away from 0."""
    left, right = max(shift, 0), max(-shift, 0)
    high = high_mul(saturate_int32(x * (1 << left)), multiplier)
    return (high + (1 << right >> 1)) >> right


def f32(x: float) -> float:
    return float(np.float32(x))


def activation_range(act: str, t: Tensor) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for the output tensor `t`."""
    assert t.quant is not None and t.dtype.numpy is not None
    info = np.iinfo(t.dtype.numpy)
    scale, zp = f32(t.quant.scale[0]), int(t.quant.zero_point[0])

    def q(value: float) -> int:
        return zp + int(math.copysign(math.floor(abs(f32(value / scale)) + 0.5), value))

    low, high = int(info.min), int(info.max)
    if act == "RELU":
        low = max(low, q(0.0))
    elif act == "RELU6":
        low, high = max(low, q(0.0)), min(high, q(6.0))
    elif act == "RELU_N1_TO_1":
        low, high = max(low, q(-1.0)), min(high, q(1.0))
    return low, high


def mul_int8(
    x: np.ndarray, xq: tuple[float, int], c: np.ndarray, cq: tuple[float, int], out: Tensor, act: str
) -> np.ndarray:
    """LiteRT's int8 MUL of x (per-tensor) by c, output quantized like `out`."""
    assert out.quant is not None
    real = f32(f32(f32(xq[0]) * f32(cq[0])) / f32(out.quant.scale[0]))  # float arithmetic in mul.cc
    m, s = quantize_multiplier(real)
    low, high = activation_range(act, out)
    raw = multiply((x - xq[1]) * (c - cq[1]), m, s) + int(out.quant.zero_point[0])
    return np.clip(raw, low, high)


def add_int8(
    x: np.ndarray, xq: tuple[float, int], d: np.ndarray, dq: tuple[float, int], out: Tensor, act: str
) -> np.ndarray:
    """LiteRT's int8 ADD (left shift 20, both inputs to twice the larger scale, then to the output)."""
    assert out.quant is not None
    s1, s2, so = f32(xq[0]), f32(dq[0]), f32(out.quant.scale[0])
    twice_max = 2 * max(s1, s2)
    m1, e1 = quantize_multiplier(s1 / twice_max)
    m2, e2 = quantize_multiplier(s2 / twice_max)
    mo, eo = quantize_multiplier(twice_max / f32((1 << 20) * so))
    a = divide_by_pot(high_mul((x - xq[1]) * (1 << 20), m1), -e1)
    b = divide_by_pot(high_mul((d - dq[1]) * (1 << 20), m2), -e2)
    raw = divide_by_pot(high_mul(a + b, mo), -eo) + int(out.quant.zero_point[0])
    low, high = activation_range(act, out)
    return np.clip(raw, low, high)


def depthwise_int8(
    x: np.ndarray, xq: tuple[float, int], w: np.ndarray, w_scale: np.ndarray, bias: np.ndarray, out: Tensor, act: str
) -> np.ndarray:
    """LiteRT's int8 1x1 DEPTHWISE_CONV_2D: per channel (x - zx) * w + b, multiplier s_x * s_w / s_out."""
    assert out.quant is not None
    low, high = activation_range(act, out)
    result = np.empty(np.broadcast_shapes(x.shape, w.shape), dtype=np.int64)
    for c in range(w.shape[-1]):
        real = float(
            np.float64(np.float32(xq[0])) * np.float64(w_scale[c]) / np.float64(np.float32(out.quant.scale[0]))
        )
        m, s = quantize_multiplier(real)
        acc = (x[..., 0] - xq[1]) * int(w[..., c].reshape(-1)[0]) + int(bias[c])
        result[..., c] = multiply_half_up(acc, m, s) + int(out.quant.zero_point[0])
    return np.clip(result, low, high)
