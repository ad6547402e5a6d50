"""Time the ONNX import: the MobileNetV2-style fixture end to end (import, default passes, write), and
a synthetic float model of 1,200 nodes (Conv -> Relu -> Add blocks) imported.

Targets (issue 4): the QDQ MobileNetV2 fixture converts in <= 0.5 s; a 1,000+ node float model
imports in <= 2 s. Medians of several runs.

    python bench/onnx_bench.py [--repeats 5] [--nodes 1200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from npupass.backends.tflite import serialize_tflite
from npupass.frontends.onnx import read_onnx
from npupass.passes import run_passes

MODELS = Path(__file__).parent.parent / "tests" / "models"


def synthetic_onnx(nodes: int, path: Path) -> None:
    """Blocks of Conv(1x1) -> Relu -> Add(residual) on a 1x8x8x8 input: `nodes` nodes, rounded to blocks."""
    rng = np.random.default_rng(0)
    graph_nodes, inits = [], []
    x = "input"
    for b in range(nodes // 3):
        w = numpy_helper.from_array(rng.normal(0, 0.3, (8, 8, 1, 1)).astype(np.float32), f"w{b}")
        inits.append(w)
        graph_nodes += [
            helper.make_node("Conv", [x, f"w{b}"], [f"c{b}"]),
            helper.make_node("Relu", [f"c{b}"], [f"r{b}"]),
            helper.make_node("Add", [f"r{b}", x], [f"a{b}"]),
        ]
        x = f"a{b}"
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8, 8, 8])
    out = helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 8, 8, 8])
    model = helper.make_model(
        helper.make_graph(graph_nodes, "synthetic", [inp], [out], inits),
        opset_imports=[helper.make_opsetid("", 13)],
        ir_version=8,
    )
    onnx.save(model, str(path))


def median_seconds(fn: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=1200)
    args = parser.parse_args()

    def convert(path: Path, pipeline: str = "fold-batch-norm,fuse-activations") -> None:
        model = read_onnx(path)
        options = {"fold-fake-quant": {"io": "int8"}} if "fold-fake-quant" in pipeline else None
        run_passes(model, pipeline, options=options)
        serialize_tflite(model)

    for name in ("mbv2_float", "transformer_block_float"):
        path = MODELS / f"{name}.onnx"
        print(f"{name}: convert median {median_seconds(lambda path=path: convert(path), args.repeats):.3f} s")
    qdq = "fold-batch-norm,fuse-activations,fold-fake-quant"
    for name in ("mbv2_qat_qdq", "mbv2_ort_qdq_preprocessed", "mbv2_ort_qdq"):
        path = MODELS / f"{name}.onnx"
        seconds = median_seconds(lambda path=path: convert(path, qdq), args.repeats)
        print(f"{name}: convert to int8 median {seconds:.3f} s (target <= 0.5 s)")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "synthetic.onnx"
        synthetic_onnx(args.nodes, path)
        count = len(onnx.load(str(path)).graph.node)
        print(f"synthetic {count} nodes: import median {median_seconds(lambda: read_onnx(path), args.repeats):.3f} s")
        print(f"synthetic {count} nodes: convert median {median_seconds(lambda: convert(path), args.repeats):.3f} s")


if __name__ == "__main__":
    main()
