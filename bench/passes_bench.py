"""Time the core pipeline (fold-batch-norm, fuse-activations, fold-fake-quant) against Vela's own
in-process compile of the same model, and on a synthetic 10,000-op fake-quant graph.

Targets: the passes take <= 10% of Vela's compile time on MobileNetV2-1.0 int8 and ResNet50 int8,
and <= 3 s on the synthetic graph. Medians of several runs; the ratio is measured in one run.
The int8 models are already folded, so the same models in float with every batch norm unfolded
again and every activation split off (as the tests do) show fold-batch-norm and fuse-activations
doing real work (fold-fake-quant does its work on the synthetic fake-quant graph).

    python bench/passes_bench.py [--repeats 5] [--vela-repeats 3] [--json]
    python bench/passes_bench.py --synthetic   # the rewrite engine's figures only (no Vela, no TF)

--synthetic prints, on the synthetic fake-quant graphs, medians of wall and CPU (process) seconds:
ir.check on 10,000 ops (target <= 0.1 s), the first and a cached read of graph.ops, the pipeline
(checks included) on 1,000 and 10,000 ops (target <= 1.0 s) and their ratio (target <= 12), and a
plain 1M-iteration Python loop (about 0.03 s on an idle modern core), to tell a slow or shared
machine from slow code: on a busy shared machine the CPU figures are the ones to read.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

import numpy as np
from make_keras_models import ensure_models
from rewrites import unfold, unfuse, weighted_ops
from synthetic import synthetic_model

from npupass.frontends.tflite import read_tflite
from npupass.ir import check
from npupass.ir.graph import Model
from npupass.passes import DEFAULT_PIPELINE, PassManager


def time_passes(
    load: Any, repeats: int, check: bool = True, pipeline: str = DEFAULT_PIPELINE
) -> tuple[list[float], dict[str, Any]]:
    """Wall time of `pipeline` on a fresh model from `load()`, `repeats` times."""
    seconds = []
    last: dict[str, Any] = {}
    for _ in range(repeats):
        model: Model = load()
        manager = PassManager(pipeline, check=check)
        start = time.perf_counter()
        result = manager.run(model)
        seconds.append(time.perf_counter() - start)
        last = result.to_json()
    return seconds, last


def with_work(path: Path) -> Model:
    """The float model with its batch norms unfolded and fused activations split off again."""
    model = read_tflite(path)
    rng = np.random.default_rng(0)
    for op in weighted_ops(model.main):
        if op.options.get("fused_activation_function", "NONE") != "NONE":
            unfuse(model.main, op)
        unfold(model.main, op, rng, "mul-add")
    return model


def _median_seconds(fn: Any, repeats: int, setup: Any = None) -> tuple[float, float]:
    """Median wall and CPU (process) seconds of `fn(setup())`: CPU time is what a busy shared
    machine inflates least."""
    wall, cpu = [], []
    for _ in range(repeats):
        arg = setup() if setup is not None else None
        gc.collect()  # the previous repeat's garbage is not this one's cost
        start, start_cpu = time.perf_counter(), time.process_time()
        fn(arg)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def _loop(_: Any) -> None:
    total = 0
    for i in range(1_000_000):
        total += i


def synthetic_figures(repeats: int) -> dict[str, float]:
    """The rewrite engine's scaling figures (see the module docstring), wall and CPU seconds."""
    graph = synthetic_model(10_000, fake_quant=True).main

    def first_read(_: Any) -> None:
        graph.invalidate()
        _ = graph.ops

    measured = {
        "python_loop_1M": _median_seconds(_loop, repeats),
        "check_10k": _median_seconds(lambda _: check(graph), repeats),
        "ops_first_read_10k": _median_seconds(first_read, repeats),
        "ops_cached_read_10k": _median_seconds(lambda _: graph.ops, repeats),
    }
    # 1k and 10k alternate, so that a change in the machine's load hits both sizes alike
    runs: dict[int, list[tuple[float, float]]] = {1_000: [], 10_000: []}
    for _ in range(repeats):
        for n, times in runs.items():
            times.append(
                _median_seconds(
                    lambda model: PassManager(DEFAULT_PIPELINE).run(model),
                    1,
                    setup=lambda n=n: synthetic_model(n, fake_quant=True),
                )
            )
    for n, times in runs.items():
        measured[f"pipeline_{n // 1000}k"] = (
            statistics.median(w for w, _ in times),
            statistics.median(c for _, c in times),
        )
    figures = {}
    for key, (wall, cpu) in measured.items():
        figures[f"{key}_wall_s"], figures[f"{key}_cpu_s"] = wall, cpu
    for kind in ("wall", "cpu"):
        figures[f"ratio_10k_1k_{kind}"] = figures[f"pipeline_10k_{kind}_s"] / figures[f"pipeline_1k_{kind}_s"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--vela-repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--synthetic", action="store_true", help="only the synthetic-graph figures")
    args = parser.parse_args()
    if args.synthetic:
        figures = synthetic_figures(args.repeats)
        if args.json:
            print(json.dumps(figures, indent=2))
        else:
            for key, value in figures.items():
                print(f"{key:28s} {value:.4f}")
        return

    from vela_timing import vela_compile_seconds

    models = ensure_models()
    rows = []
    for name in ("mobilenet_v2_int8", "resnet50_int8"):
        path = models[name]
        data = path.read_bytes()
        passes, result = time_passes(lambda path=path: read_tflite(path), args.repeats)
        unchecked, _ = time_passes(lambda path=path: read_tflite(path), args.repeats, check=False)
        vela = statistics.median(vela_compile_seconds(data, repeats=args.vela_repeats))
        float_path = models[name.replace("_int8", "_float")]
        busy, busy_result = time_passes(
            lambda path=float_path: with_work(path), args.repeats, pipeline="fold-batch-norm,fuse-activations"
        )
        for label, times, res in ((name, passes, result), (f"{name} (float, unfolded)", busy, busy_result)):
            rows.append(
                {
                    "model": label,
                    "passes_median_s": statistics.median(times),
                    "vela_median_s": vela,
                    "ratio": statistics.median(times) / vela,
                    "rewrites": {p["name"]: p["rewrites"] for p in res["passes"]},
                }
            )
        rows[-2]["passes_no_check_median_s"] = statistics.median(unchecked)
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
        line = f"{row['model']:36s} passes {row['passes_median_s']:.3f} s"
        if "passes_no_check_median_s" in row:
            line += f" (no check {row['passes_no_check_median_s']:.3f} s)"
        if "vela_median_s" in row:
            line += f", Vela (int8) {row['vela_median_s']:.3f} s, ratio {row['ratio']:.1%}"
        print(line)
        print(f"{'':36s} rewrites {row['rewrites']}")


if __name__ == "__main__":
    main()
