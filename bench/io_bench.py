"""TFLite read / write speed and memory: medians of several runs, and peak RSS while reading.

    .venv/bin/python bench/io_bench.py [--runs 5] [--json] [--only resnet50_float ...]

Models: the Keras MobileNetV2 / MobileNetV3Small / ResNet50 float and int8 files that
bench/make_keras_models.py builds into ~/.cache/npupass/keras (TensorFlow needed once, to build
them), and a synthetic 10,000-op model made through the IR. Times are wall-clock medians; peak
RSS is measured in a fresh process per model (VmHWM after reading, reset once imports are done).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).parent
sys.path.insert(0, str(BENCH))

from make_keras_models import DEFAULT_CACHE, ensure_models  # noqa: E402
from synthetic import synthetic_model  # noqa: E402

from npupass.backends.tflite import write_tflite  # noqa: E402
from npupass.frontends.tflite import read_tflite  # noqa: E402

_RSS_PROBE = """
import sys
from pathlib import Path
from npupass.frontends.tflite import read_tflite

def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
Path("/proc/self/clear_refs").write_text("5")  # reset the peak to the current RSS
before = status("VmRSS")
model = read_tflite(sys.argv[1])
print(before, status("VmHWM"))
"""


def peak_rss(path: Path) -> tuple[int, int]:
    """(RSS after imports, peak RSS while reading `path`) in bytes, from a fresh process."""
    out = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(path)], capture_output=True, text=True, check=True)
    before, peak = out.stdout.split()
    return int(before), int(peak)


def time_model(path: Path, runs: int) -> dict[str, float]:
    reads, writes, both = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.tflite"
        for _ in range(runs):
            start = time.perf_counter()
            model = read_tflite(path)
            middle = time.perf_counter()
            write_tflite(model, out)
            end = time.perf_counter()
            reads.append(middle - start)
            writes.append(end - middle)
            both.append(end - start)
    return {
        "read_s": statistics.median(reads),
        "write_s": statistics.median(writes),
        "read_write_s": statistics.median(both),
        "read_write_min_s": min(both),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--only", nargs="*", help="model names to run (default: all)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    models = dict(ensure_models(args.cache))
    synthetic = args.cache / "synthetic_10k.tflite"
    if not synthetic.exists():
        write_tflite(synthetic_model(10_002), synthetic)
    models["synthetic_10k"] = synthetic
    if args.only:
        models = {k: v for k, v in models.items() if k in args.only}

    rows = []
    for name, path in models.items():
        size = path.stat().st_size
        row = {"model": name, "file_bytes": size, **time_model(path, args.runs)}
        before, peak = peak_rss(path)
        row |= {
            "rss_after_imports": before,
            "peak_rss_reading": peak,
            "peak_increase_over_file": (peak - before) / size,
            "peak_over_file": peak / size,
        }
        rows.append(row)
        if not args.json:
            print(
                f"{name:24s} {size / 2**20:7.1f} MiB  read {row['read_s']:.3f} s  write {row['write_s']:.3f} s  "
                f"read+write {row['read_write_s']:.3f} s (min {row['read_write_min_s']:.3f})  "
                f"peak RSS {peak / 2**20:6.1f} MiB = {row['peak_over_file']:.2f}x file, "
                f"+{(peak - before) / 2**20:.1f} MiB over imports = {row['peak_increase_over_file']:.2f}x file",
                flush=True,
            )
    if args.json:
        print(json.dumps({"runs": args.runs, "models": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
