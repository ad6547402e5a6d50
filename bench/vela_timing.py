"""Time Arm Vela (ethos-u-vela 5.2, C++ core "Regor") compiling a TFLite model, in process.

    .venv/bin/python bench/vela_timing.py MODEL.tflite [--accelerator ethos-u55-128] [--repeats 3]

The system config and compiler options are built exactly as the `vela` CLI builds them for
`--accelerator-config ACCELERATOR` with every other option at its default (the packaged
Arm/vela.ini, internal-default system config and memory mode, --optimise Performance), so the
compiled model matches `vela --accelerator-config ACCELERATOR MODEL`. Only `regor.compile` is timed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import statistics
import time
from pathlib import Path
from typing import Any

from ethosu import regor
from ethosu.vela import architecture_features, vela
from ethosu.vela.nn_graph import TensorAllocator
from ethosu.vela.scheduler import OptimizationStrategy
from ethosu.vela.tensor import Tensor


@functools.cache
def regor_arguments(accelerator: str = "ethos-u55-128") -> tuple[str, str, str]:
    """(Regor architecture name, system config text, options text) as `vela.main` builds them by default."""
    default = architecture_features.ArchitectureFeatures.DEFAULT_CONFIG
    with contextlib.redirect_stdout(io.StringIO()):  # silence "No configuration file specified" warning
        arch = architecture_features.ArchitectureFeatures(
            vela_config_files=None,
            system_config=default,
            memory_mode=default,
            accelerator_config=accelerator,
            max_blockdep=architecture_features.ArchitectureFeatures.MAX_BLOCKDEP,
            verbose_config=False,
            arena_cache_size=None,
        )
    system_config = f"[architecture]\nmacs={arch.num_macs_per_cycle}\ncores={arch.ncores}\n"
    system_config += f"[vela]\nsystem_config_name={arch.system_config}\nmemory_mode_name={arch.memory_mode}\n"
    for config_file in arch.vela_config_files:
        system_config += Path(config_file).read_bytes().decode("utf-8")
    regor_arch = "".join(part.capitalize() for part in accelerator.split("-")[:-1])  # ethos-u55-128 -> EthosU55
    options = vela.get_compiler_config(
        enable_debug_db=False,
        verbose_all=False,
        verbose_high_level_command_stream=False,
        verbose_register_command_stream=False,
        optimize=OptimizationStrategy.Performance,
        arena_cache_size=arch.arena_cache_size,
        verbose_schedule=False,
        verbose_allocation=False,
        verbose_graph=False,
        verbose_quantization=False,
        verbose_packing=False,
        verbose_performance=False,
        show_cpu_operations=False,
        output_format="tflite",
        disable_chaining=False,
        disable_fwd=False,
        disable_cascading=False,
        disable_buffering=False,
        disable_ifm_reuse=False,
        cop_format="COP1",
        separate_io_regions=False,
        cpu_tensor_alignment=Tensor.AllocationQuantum,
        tensor_allocator=TensorAllocator.HillClimb,
        softmax_int16_neg_exp_range=10.0,
        ignore_ops=vela.normalise_ignore_ops(None),
    )
    return regor_arch, system_config, options


def vela_compile(tflite: bytes, accelerator: str = "ethos-u55-128") -> Any:
    """One in-process Regor compile; returns the compiled model (`.model` is the _vela.tflite bytes)."""
    if int.from_bytes(tflite[4:8], "little") != vela.TFLITE_MAGIC:
        raise ValueError("not a TFLite flatbuffer (missing TFL3 identifier)")
    regor_arch, system_config, options = regor_arguments(accelerator)
    return regor.compile(regor_arch, tflite, "TFLITE", system_config, options=options)


def vela_compile_seconds(tflite: bytes, accelerator: str = "ethos-u55-128", repeats: int = 3) -> list[float]:
    """Wall time in seconds of each of `repeats` compiles (config building is done once, untimed)."""
    regor_arguments(accelerator)
    times: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        vela_compile(tflite, accelerator)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="input .tflite")
    parser.add_argument("--accelerator", default="ethos-u55-128", help="Vela --accelerator-config value")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    tflite = args.model.read_bytes()
    times = vela_compile_seconds(tflite, args.accelerator, args.repeats)
    report = vela_compile(tflite, args.accelerator).perf_report
    print(
        f"{args.model.name}: median {statistics.median(times):.3f} s over {len(times)} "
        f"({', '.join(f'{t:.3f}' for t in times)}); npuOps={report.npuOps} cpuOps={report.cpuOps} "
        f"encodedWeights={report.encodedWeights}"
    )


if __name__ == "__main__":
    main()
