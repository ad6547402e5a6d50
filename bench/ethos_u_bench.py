"""Ethos-U acceptance figures: placement vs Vela, estimated time vs direct Vela, and what npupass adds before Vela.

    .venv/bin/python bench/ethos_u_bench.py [--accelerator ethos-u55-128] [--repeats 5] [--cache DIR]

For each model: Vela 5.2 compiles the file as given ("direct") and npupass compiles it (import, default
pipeline, partition, serialize, then the same Vela). Printed per model: TFLite ops, CPU ops, predicted-vs-Vela
placement disagreements, estimated inference time direct / npupass and their ratio. Then, for MobileNetV2-1.0
and ResNet50 int8: the median time npupass adds before Vela (import + passes + partition + serialize) against
the median of Vela's own in-process compile, both from the same compile_ethos_u calls.

The Keras models (MobileNetV2 1.0@224, MobileNetV3Small, ResNet50, a pre-activation ResNet, all full int8)
are built once by bench/make_keras_models.py into ~/.cache/npupass/keras; the rest are tests/models fixtures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from make_keras_models import DEFAULT_CACHE, ensure_models

from npupass.backends.base import Target, parse_target
from npupass.backends.ethos_u.compile import compile_ethos_u
from npupass.backends.ethos_u.vela import VelaConfig, compile_vela, inference_seconds
from npupass.frontends import load_model

FIXTURES = Path(__file__).parent.parent / "tests" / "models"
KERAS = ["mobilenet_v2_int8", "mobilenet_v3_small_int8", "resnet50_int8", "preact_resnet_int8"]
SMALL = [
    "mobilenet_v2_035_96_int8.tflite",
    "qat_mobilenet_v2_035_96_fq.tflite",
    "qat_cnn_fq.tflite",
    "pruned_qat_cnn_fq.tflite",
    "clustered_qat_cnn_fq.tflite",
    "preact_resnet_int8.tflite",
    "cpu_ops_int8.tflite",
    "mbv2_qat_qdq.onnx",
    "mbv2_ort_qdq_preprocessed.onnx",
]


def front_and_vela_seconds(path: Path, target: Target, config: VelaConfig) -> tuple[float, float]:
    """(import + everything compile_ethos_u does before Vela, Vela's in-process compile) for one model."""
    start = time.perf_counter()
    model = load_model(path)
    loaded = time.perf_counter() - start
    result = compile_ethos_u(model, target, config, isolate=False)
    return loaded + result.npupass_seconds, result.vela.seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accelerator", default="ethos-u55-128")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    keras = ensure_models(args.cache)
    config = VelaConfig(args.accelerator)
    target = parse_target(args.accelerator)
    paths = [keras[name] for name in KERAS] + [FIXTURES / name for name in SMALL]

    print(f"{'model':36} {'ops':>5} {'cpu':>4} {'disagree':>8} {'direct ms':>10} {'npupass ms':>10} {'speed-up':>8}")
    for path in paths:
        result = compile_ethos_u(load_model(path), target, config)
        ours = inference_seconds(result.vela, config) * 1e3
        if path.suffix == ".tflite":
            direct_result = compile_vela(path.read_bytes(), config)
            direct = inference_seconds(direct_result, config) * 1e3
            direct_text = f"{direct:10.3f}"
            if direct_result.cpu_ops:
                direct_text += f" ({len(direct_result.cpu_ops)} CPU ops)"
            ratio = f"{direct / ours:7.2f}x"
        else:
            direct_text, ratio = f"{'(onnx)':>10}", ""
        ops = len(result.model.main.ops)
        print(
            f"{path.name:36} {ops:5} {len(result.vela.cpu_ops):4} {len(result.disagreements):8} "
            f"{direct_text} {ours:10.3f} {ratio}"
        )

    print(f"\nnpupass before Vela vs Vela's in-process compile (medians of {args.repeats}):")
    for name in ("mobilenet_v2_int8", "resnet50_int8"):
        runs = [front_and_vela_seconds(keras[name], target, config) for _ in range(args.repeats)]
        f, v = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        print(f"  {name:24} npupass {f:.3f} s, Vela {v:.3f} s: {f / v:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
