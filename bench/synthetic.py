"""A synthetic TFLite model of any size, built through the IR: repeated residual blocks of
CONV_2D(1x1) -> ADD(residual) -> RELU, each conv with its own small weights. With fake_quant=True
every weight and activation also passes through a UINT8 QUANTIZE -> DEQUANTIZE pair, as in a
QAT export (9 ops per block).

    python bench/synthetic.py --ops 10000 -o /tmp/synthetic_10k.tflite
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from npupass.backends.tflite import write_tflite
from npupass.ir import DType, Graph, Model, Op, Quantization, Signature, Tensor

CHANNELS = 8
_CONV_OPTIONS = {"padding": "VALID", "stride_w": 1, "stride_h": 1, "fused_activation_function": "NONE"}


def synthetic_model(n_ops: int, seed: int = 0, fake_quant: bool = False) -> Model:
    """A runnable float model of `n_ops` ops, rounded down to whole blocks (3 ops, 9 with fake_quant)."""
    rng = np.random.default_rng(seed)
    graph = Graph("main")
    shape = (1, 4, 4, CHANNELS)
    x = graph.add_tensor(Tensor("input", DType.FLOAT32, shape))
    graph.inputs = [x]

    def qdq(t: Tensor, scale: np.ndarray, zero_point: int, axis: int = 0) -> Tensor:
        if not fake_quant:
            return t
        zps = np.full(scale.size, zero_point)
        q = Tensor(t.name + "/q", DType.UINT8, t.shape, quant=Quantization(scale, zps, axis))
        dq = Tensor(t.name + "/dq", DType.FLOAT32, t.shape)
        graph.add_op(Op("QUANTIZE"), [t], [q])
        graph.add_op(Op("DEQUANTIZE"), [q], [dq])
        return dq

    act_scale = np.array([8.0 / 255])
    x = qdq(x, act_scale, 128)
    for block in range(n_ops // (9 if fake_quant else 3)):
        w = rng.normal(0, 0.3, (CHANNELS, 1, 1, CHANNELS)).astype(np.float32)
        b = rng.normal(0, 0.1, CHANNELS).astype(np.float32)
        weight = Tensor(f"b{block}/w", DType.FLOAT32, w.shape, data=w)
        bias = Tensor(f"b{block}/b", DType.FLOAT32, b.shape, data=b)
        conv, added, out = (Tensor(f"b{block}/{n}", DType.FLOAT32, shape) for n in ("conv", "add", "relu"))
        w_in = qdq(weight, np.abs(w).reshape(CHANNELS, -1).max(axis=1) / 127, 128)
        graph.add_op(Op("CONV_2D", dict(_CONV_OPTIONS), "Conv2DOptions", version=1), [x, w_in, bias], [conv])
        conv_q = qdq(conv, act_scale, 128)
        graph.add_op(Op("ADD", {"fused_activation_function": "NONE"}, "AddOptions"), [conv_q, x], [added])
        graph.add_op(Op("RELU"), [added], [out])
        x = qdq(out, act_scale / 2, 0)
    graph.outputs = [x]
    return Model([graph], signatures=[Signature("serving_default", 0, [("input", 0)], [("output", 0)])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=10_000)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    write_tflite(synthetic_model(args.ops), args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes, {args.ops // 3 * 3} ops)")


if __name__ == "__main__":
    main()
