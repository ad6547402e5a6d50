"""Time the core pipeline (fold-batch-norm, fuse-activations, fold-fake-quant) against Vela's own
in-process compile of the same model, and on a synthetic 10,000-op fake-quant graph.

Targets: the passes take <= 10% of Vela's compile time on MobileNetV2-1.0 int8 and ResNet50 int8,
and <= 3 s on the synthetic graph. Medians of several runs; the ratio is measured in one run.

    python bench/passes_bench.py [--repeats 5] [--vela-repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from make_keras_models import ensure_models
from synthetic import synthetic_model

from npupass.frontends.tflite import read_tflite
from npupass.ir.graph import Model
from npupass.passes import DEFAULT_PIPELINE, PassManager


def time_passes(load: Any, repeats: int, check: bool = True) -> tuple[list[float], dict[str, Any]]:
    """Wall time of the default pipeline on a fresh model from `load()`, `repeats` times."""
    seconds = []
    last: dict[str, Any] = {}
    for _ in range(repeats):
        model: Model = load()
        manager = PassManager(DEFAULT_PIPELINE, check=check)
        start = time.perf_counter()
        result = manager.run(model)
        seconds.append(time.perf_counter() - start)
        last = result.to_json()
    return seconds, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--vela-repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from vela_timing import vela_compile_seconds

    models = ensure_models()
    rows = []
    for name in ("mobilenet_v2_int8", "resnet50_int8"):
        path = models[name]
        data = path.read_bytes()
        passes, result = time_passes(lambda path=path: read_tflite(path), args.repeats)
        unchecked, _ = time_passes(lambda path=path: read_tflite(path), args.repeats, check=False)
        vela = vela_compile_seconds(data, repeats=args.vela_repeats)
        rows.append(
            {
                "model": name,
                "passes_median_s": statistics.median(passes),
                "passes_no_check_median_s": statistics.median(unchecked),
                "vela_median_s": statistics.median(vela),
                "ratio": statistics.median(passes) / statistics.median(vela),
                "rewrites": {p["name"]: p["rewrites"] for p in result["passes"]},
            }
        )
    synthetic, result = time_passes(lambda: synthetic_model(10_000, fake_quant=True), args.repeats)
    rows.append(
        {
            "model": "synthetic_10k_fake_quant",
            "passes_median_s": statistics.median(synthetic),
            "rewrites": {p["name"]: p["rewrites"] for p in result["passes"]},
        }
    )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        line = f"{row['model']:28s} passes {row['passes_median_s']:.3f} s"
        if "vela_median_s" in row:
            line += (
                f" (no check {row['passes_no_check_median_s']:.3f} s), Vela {row['vela_median_s']:.3f} s, "
                f"ratio {row['ratio']:.1%}"
            )
        print(line)
        print(f"{'':28s} rewrites {row['rewrites']}")


if __name__ == "__main__":
    main()
