"""Time from a Keras QAT SavedModel to the Vela binary: `npupass compile` against the converter + Vela by hand.

    .venv/bin/python bench/keras_bench.py [--model DIR] [--repeats 3] [--accelerator ethos-u55-128]

The model (default: a tf-keras MobileNetV2 alpha 0.35, 96x96, 10 classes, tfmot QAT, made by
scripts/make_keras_fixtures.py --only-mobilenet into ~/.cache/npupass/keras_qat on first use) is compiled:

* npupass: `npupass compile DIR --target ACCELERATOR -o OUT`, one command;
* by hand: a Python script running `tf.lite.TFLiteConverter.from_saved_model(DIR)` with the documented QAT
  settings (Optimize.DEFAULT, int8 input and output) and writing the .tflite, then `vela --accelerator-config
  ACCELERATOR` on it (two commands).

Every run is a fresh process (TensorFlow imported each time, as a user pays it); wall time, median of the
repeats. Also printed: the ops left on the CPU in each result.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "npupass" / "keras_qat"
BIN = Path(sys.executable).parent

BY_HAND = """
import sys, tensorflow as tf
converter = tf.lite.TFLiteConverter.from_saved_model(sys.argv[1])
converter.optimizations = [tf.lite.Optimize.DEFAULT]
converter.inference_input_type = tf.int8
converter.inference_output_type = tf.int8
open(sys.argv[2], "wb").write(converter.convert())
"""


def ensure_model(path: Path | None) -> Path:
    if path is not None:
        return path
    model = CACHE / "qat_mobilenet_v2_035"
    if not (model / "saved_model.pb").is_file():
        print(f"building {model} (once) ...", flush=True)
        script = ROOT / "scripts" / "make_keras_fixtures.py"
        subprocess.run([sys.executable, str(script), str(CACHE), "--only-mobilenet"], check=True)
    return model


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def vela_cpu_ops(out_dir: Path) -> int:
    """CPU ops in Vela's summary: the `_vela.tflite` keeps every op Vela did not take as its own TFLite op."""
    from npupass.frontends.tflite import read_tflite

    (vela_file,) = out_dir.glob("*_vela.tflite")
    return sum(1 for op in read_tflite(vela_file).main.iter_ops() if op.type != "CUSTOM")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a QAT SavedModel directory (default: MobileNetV2-0.35 QAT)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accelerator", default="ethos-u55-128")
    args = parser.parse_args()
    model = ensure_model(args.model)

    ours, hand, hand_convert = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for i in range(args.repeats):
            out = work / f"npupass{i}"
            ours.append(
                timed([str(BIN / "npupass"), "compile", str(model), "--target", args.accelerator, "-o", str(out)])
            )
            converted = work / f"hand{i}.tflite"
            convert_seconds = timed([sys.executable, "-c", BY_HAND, str(model), str(converted)])
            vela_out = work / f"vela{i}"
            vela = [str(BIN / "vela"), "--accelerator-config", args.accelerator, "--output-dir", str(vela_out)]
            vela_seconds = timed([*vela, str(converted)])
            hand_convert.append(convert_seconds)
            hand.append(convert_seconds + vela_seconds)
            print(
                f"run {i + 1}: npupass {ours[-1]:.2f} s; by hand {hand[-1]:.2f} s "
                f"(converter {convert_seconds:.2f} s + vela {vela_seconds:.2f} s)",
                flush=True,
            )
        cpu_npupass = json.loads((work / "npupass0" / "report.json").read_text())["ops"]["cpu"]
        cpu_hand = vela_cpu_ops(work / "vela0")
        summary = next((work / "vela0").glob("*_summary_*.csv"), None)
        if summary is not None:
            with summary.open() as f:
                row = next(csv.DictReader(f))
            cycles, seconds = row.get("cycles_npu"), row.get("inference_time")
            print(f"by hand, Vela's summary: cycles_npu {cycles}, inference_time {seconds}")
    print(f"model: {model}")
    print(
        f"npupass compile (Keras SavedModel -> Vela binary): median {statistics.median(ours):.2f} s "
        f"over {len(ours)} ({', '.join(f'{t:.2f}' for t in ours)}); CPU ops {cpu_npupass}"
    )
    print(
        f"converter + vela by hand: median {statistics.median(hand):.2f} s over {len(hand)} "
        f"({', '.join(f'{t:.2f}' for t in hand)}; converter alone median {statistics.median(hand_convert):.2f} s); "
        f"CPU ops {cpu_hand}"
    )


if __name__ == "__main__":
    main()
