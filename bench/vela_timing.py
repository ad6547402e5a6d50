"""Time Arm Vela (ethos-u-vela 5.2, C++ core "Regor") compiling a TFLite model, in process.

    .venv/bin/python bench/vela_timing.py MODEL.tflite [--accelerator ethos-u55-128] [--repeats 3]

The system config and compiler options are built as the `vela` CLI builds them for
`--accelerator-config ACCELERATOR` with every other option at its default (npupass.backends.ethos_u.vela),
so the compiled model matches `vela --accelerator-config ACCELERATOR MODEL`. Only the compile is timed.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from npupass.backends.ethos_u.vela import VelaConfig, VelaResult, compile_vela


def vela_compile_seconds(tflite: bytes, accelerator: str = "ethos-u55-128", repeats: int = 3) -> list[float]:
    """Wall time in seconds of each of `repeats` in-process compiles (config building is done once, untimed)."""
    return [compile_vela(tflite, VelaConfig(accelerator), isolate=False).seconds for _ in range(repeats)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="input .tflite")
    parser.add_argument("--accelerator", default="ethos-u55-128", help="Vela --accelerator-config value")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    tflite = args.model.read_bytes()
    times = vela_compile_seconds(tflite, args.accelerator, args.repeats)
    result: VelaResult = compile_vela(tflite, VelaConfig(args.accelerator))
    print(
        f"{args.model.name}: median {statistics.median(times):.3f} s over {len(times)} "
        f"({', '.join(f'{t:.3f}' for t in times)}); NPU cycles={result.npu_cycles} CPU ops={len(result.cpu_ops)} "
        f"encoded weights={result.encoded_weights}"
    )


if __name__ == "__main__":
    main()
