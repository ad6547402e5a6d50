"""What the semantic validator (ir/validate.py) costs: once after import, and after every pass.

On the synthetic 10,000-op graphs (float, and fake-quant with QUANTIZE/DEQUANTIZE pairs) and the
largest fixtures: the validator's time next to the structural check's and the reader's, and the
core pipeline with its per-pass checks (which now include the validator) against the same pipeline
with checks off. Medians of several runs.

    python bench/validate_bench.py [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from synthetic import synthetic_model

from npupass.backends.tflite import write_tflite
from npupass.frontends.tflite import read_tflite
from npupass.ir.check import problems as structural_problems
from npupass.ir.graph import Model
from npupass.ir.validate import problems as semantic_problems
from npupass.passes import DEFAULT_PIPELINE, PassManager
from npupass.passes.manager import has_fake_quant

MODELS = Path(__file__).parent.parent / "tests" / "models"


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pipeline_seconds(path: Path, repeats: int, check: bool) -> float:
    times = []
    for _ in range(repeats):
        model = read_tflite(path)
        pipeline = DEFAULT_PIPELINE if has_fake_quant(model) else "fold-batch-norm,fuse-activations"
        manager = PassManager(pipeline, check=check)
        start = time.perf_counter()
        manager.run(model)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, path: Path, repeats: int) -> dict[str, Any]:
    model: Model = read_tflite(path)
    assert semantic_problems(model) == [], name
    ops = sum(1 for g in model.subgraphs for _ in g.iter_ops())
    validate = median_seconds(lambda: semantic_problems(model), repeats)
    structure = median_seconds(lambda: [structural_problems(g) for g in model.subgraphs], repeats)
    read = median_seconds(lambda: read_tflite(path), repeats)
    with_checks = pipeline_seconds(path, repeats, check=True)
    without = pipeline_seconds(path, repeats, check=False)
    return {
        "model": name,
        "ops": ops,
        "validate_s": round(validate, 4),
        "structural_check_s": round(structure, 4),
        "read_s": round(read, 4),
        "validate_per_op_us": round(validate / max(ops, 1) * 1e6, 2),
        "pipeline_with_checks_s": round(with_checks, 3),
        "pipeline_without_checks_s": round(without, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        cases = {
            "synthetic_10k_float": Path(folder) / "synthetic_float.tflite",
            "synthetic_10k_fake_quant": Path(folder) / "synthetic_fq.tflite",
        }
        write_tflite(synthetic_model(10_002), cases["synthetic_10k_float"])
        write_tflite(synthetic_model(10_008, fake_quant=True), cases["synthetic_10k_fake_quant"])
        for fixture in ("mobilenet_v3_small_int8.tflite", "qat_mobilenet_v2_035_96_fq.tflite"):
            cases[fixture] = MODELS / fixture
        for name, path in cases.items():
            rows.append(measure(name, path, args.repeats))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(", ".join(f"{k} {v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
