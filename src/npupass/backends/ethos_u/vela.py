"""Arm Vela (ethos-u-vela 5.2, C++ core "Regor") compiling a TFLite model, in a forked child process.

The system config and compiler options are built the way the `vela` CLI builds them (packaged Arm/vela.ini,
its default system config and memory mode, --optimise Performance), so a compile here gives the same
`_vela.tflite` bytes as `vela --accelerator-config ACCELERATOR MODEL`. Regor runs in a forked child
(npupass.isolate): a segfault inside it (seen on malformed files) then becomes an error message instead
of killing npupass, a hang is stopped at a time limit, and the parent can show progress while it works.
"""

from __future__ import annotations

import configparser
import contextlib
import functools
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from npupass.errors import NpupassError
from npupass.isolate import call_forked


class VelaError(NpupassError):
    """Vela refused the model or its configuration, or crashed compiling it."""


@dataclass(frozen=True)
class VelaConfig:
    """What the user chose: accelerator (ethos-u55-128), Vela .ini files, system config, memory mode, goal."""

    accelerator: str = "ethos-u55-128"
    config_files: tuple[str, ...] = ()
    system_config: str | None = None
    memory_mode: str | None = None
    optimise: str = "Performance"


@dataclass(frozen=True)
class VelaSetup:
    """Regor's arguments for a VelaConfig, and the clock that turns cycles into time."""

    regor_arch: str
    system_config_text: str
    options_text: str
    system_config: str
    memory_mode: str
    core_clock: float


@dataclass
class VelaLayer:
    """One row of Vela's per-layer estimate: the source op (index in subgraph 0) and its cycles."""

    source_index: int
    operator: str
    name: str
    cycles: int
    macs: int
    mac_cycles: int = 0
    """Cycles the MAC array needs (perf_debug_main); far fewer than `cycles` means memory-bound."""
    ao_cycles: int = 0
    """Cycles of the output (activation) unit: elementwise ops and LUTs run there."""
    weight_bytes: int = 0
    """Encoded weight (and bias/scale) bytes Vela stored for this op."""


@dataclass
class VelaResult:
    model: bytes
    npu_cycles: int
    cpu_cycles: int
    total_cycles: int
    macs: int
    original_weights: int
    encoded_weights: int
    memories: dict[str, int]
    """Peak usage in bytes per memory Vela used (Sram, OffChipFlash, Dram ...)."""
    cpu_ops: set[int]
    """Indices (in subgraph 0 of the compiled input) of the ops Vela left on the CPU."""
    npu_partitions: int
    layers: list[VelaLayer] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    """Vela's own warnings, one entry per warning."""
    seconds: float = 0.0


@functools.cache
def vela_setup(config: VelaConfig) -> VelaSetup:
    """Regor's architecture name, system config text and options, as `vela.main` builds them."""
    from ethosu import regor  # noqa: F401 - loaded once here, so forked compiles do not load it again
    from ethosu.vela import architecture_features, vela
    from ethosu.vela.errors import VelaError as VelasOwnError
    from ethosu.vela.nn_graph import TensorAllocator
    from ethosu.vela.tensor import Tensor

    features = architecture_features.ArchitectureFeatures
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # Vela's "no configuration file specified" warning
            arch = features(
                vela_config_files=list(config.config_files) or None,
                system_config=config.system_config or features.DEFAULT_CONFIG,
                memory_mode=config.memory_mode or features.DEFAULT_CONFIG,
                accelerator_config=config.accelerator,
                max_blockdep=features.MAX_BLOCKDEP,
                verbose_config=False,
                arena_cache_size=None,
            )
    except (VelasOwnError, OSError, ValueError, configparser.Error) as exc:  # UnicodeDecodeError is a ValueError
        text = " ".join(str(exc).split()).strip("'\" ").removeprefix("Error: ").replace("CLI option ", "")
        raise VelaError(f"Vela configuration: {text}") from None
    text = f"[architecture]\nmacs={arch.num_macs_per_cycle}\ncores={arch.ncores}\n"
    text += f"[vela]\nsystem_config_name={arch.system_config}\nmemory_mode_name={arch.memory_mode}\n"
    for config_file in arch.vela_config_files:  # Vela has parsed them, so they read as UTF-8
        with open(config_file, "rb") as f:
            text += f.read().decode("utf-8")
    options = vela.get_compiler_config(
        enable_debug_db=True,  # the optimisation database says which ops stayed on the CPU
        verbose_all=False,
        verbose_high_level_command_stream=False,
        verbose_register_command_stream=False,
        optimize=config.optimise,
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
    regor_arch = "".join(part.capitalize() for part in config.accelerator.split("-")[:-1])  # EthosU55
    return VelaSetup(regor_arch, text, options, arch.system_config, arch.memory_mode, float(arch.core_clock))


def _table(db: Any, name: str) -> list[dict[str, str]]:
    table = db.tables.get(name)
    return [] if table is None else [dict(zip(table.header, row, strict=False)) for row in table.data]


def _compile_in_this_process(tflite: bytes, setup: VelaSetup) -> dict[str, Any]:
    """Run Regor and reduce what it returns to plain data (it has to cross a process boundary)."""
    from ethosu import regor

    compiled = regor.compile(setup.regor_arch, tflite, "TFLITE", setup.system_config_text, options=setup.options_text)
    report = compiled.perf_report
    db = compiled.opt_database
    source_index = {row["id"]: int(row["ext_key"]) for row in _table(db, "source")}
    cpu_ops = {source_index[row["source_id"]] for row in _table(db, "optimised") if row["operator"] == "Passthrough"}
    main = {row["id"]: row for row in _table(db, "perf_debug_main")}
    debug = {row["id"]: row for row in _table(db, "perf_debug")}

    def number(row: dict[str, str] | None, key: str) -> int:
        text = (row or {}).get(key) or "0"
        return int(float(text))

    layers = [
        (
            source_index.get(row["source_id"], -1),
            row["operator"],
            row["name"],
            row["op_cycles"],
            row["mac_count"],
            number(main.get(row["id"]), "mac_cycles"),
            number(main.get(row["id"]), "ao_cycles"),
            number(debug.get(row["id"]), "weight_total_bytes") + number(debug.get(row["id"]), "scales_total_bytes"),
        )
        for row in _table(db, "perf")
        if row["operator"] != "Passthrough"
    ]
    return {
        "model": bytes(compiled.model),
        "npu_cycles": int(report.npuCycles),
        "cpu_cycles": int(report.cpuCycles),
        "total_cycles": int(report.totalCycles),
        "macs": int(report.macCount),
        "original_weights": int(report.originalWeights),
        "encoded_weights": int(report.encodedWeights),
        "memories": {str(name): int(m.peakUsage) for name, m in report.memories.items() if str(name) != "shram"},
        "cpu_ops": cpu_ops,
        "npu_partitions": len(_table(db, "cmdstream")),
        "layers": [
            (i, op, name, int(cycles or 0), int(macs or 0), *rest) for i, op, name, cycles, macs, *rest in layers
        ],
    }


def _messages(log: str) -> list[str]:
    """Vela's warnings as single lines ("Warning (supported operators) ... Reason: ...")."""
    blocks = [" ".join(line.strip() for line in block.splitlines() if line.strip()) for block in log.split("\n\n")]
    return [b for b in blocks if b]


def vela_timeout(tflite_bytes: int, ops: int = 0) -> float:
    """The default time limit of one Vela compile: 20 s, plus 0.2 s per op and 2 s per MB of model.

    Regor compiles MobileNetV2-1.0 (65 ops, 3.5 MB) in 0.7 s and ResNet50 in 3.8 s here: the limit is
    more than 20 times that, and a small model that hangs is stopped in well under a minute.
    """
    return 20.0 + 0.2 * ops + 2.0 * tflite_bytes / 1e6


def compile_vela(
    tflite: bytes,
    config: VelaConfig,
    tick: Callable[[float], None] | None = None,
    isolate: bool = True,
    timeout: float | None = None,
) -> VelaResult:
    """Compile `tflite` with Vela for `config`; `tick(elapsed_seconds)` is called while it runs.

    Raises VelaError with Vela's own message when it refuses the model, naming the signal when it
    crashes, or when it runs longer than `timeout` seconds (default: `vela_timeout` of the model's size;
    the child is then killed). `isolate=False` runs Regor in this process (for benchmarks; a crash then
    ends the process, and there is no time limit).
    """
    setup = vela_setup(config)
    start = time.perf_counter()
    if not isolate:
        data = _compile_in_this_process(tflite, setup)
        return _result(data, "", time.perf_counter() - start)
    limit = timeout if timeout is not None else vela_timeout(len(tflite))
    outcome = call_forked(_compile_in_this_process, tflite, setup, timeout=limit, tick=tick)
    if outcome.status == "timeout":
        raise VelaError(f"Vela did not finish compiling the model in {limit:g} s (stopped; see --vela-timeout)")
    if outcome.status == "crashed":
        last = outcome.last_log_line
        raise VelaError(f"Vela crashed ({outcome.message}) compiling the model{': ' + last if last else ''}")
    if outcome.status == "error":
        raise VelaError(f"Vela refused the model: {outcome.message}")
    return _result(outcome.value, outcome.log, time.perf_counter() - start)


def _result(data: dict[str, Any], log: str, seconds: float) -> VelaResult:
    layers = [VelaLayer(*row) for row in data.pop("layers")]
    return VelaResult(**data, layers=layers, messages=_messages(log), seconds=seconds)


def inference_seconds(result: VelaResult, config: VelaConfig) -> float:
    """Vela's estimated inference time: total cycles at the system config's core clock."""
    return result.total_cycles / vela_setup(config).core_clock
