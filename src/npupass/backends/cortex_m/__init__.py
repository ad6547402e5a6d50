"""Cortex-M microcontrollers running TensorFlow Lite for Microcontrollers (TFLM), with no NPU.

`compile_cortex_m` is the library entry; `c_source.emit_c` (firmware sources) and `lut.compress_lut` (TFLM's
look-up-table weight compression, verified in TFLM) serve the Ethos-U targets too, as does
`npupass.verify.tflm_arena.check_vela_model` (TFLM's side of an Ethos-U model).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from npupass.backends.base import Backend, CompileResult, Option, Progress, Report, Target, positive_int
from npupass.backends.cortex_m.compile import NEEDS, compile_cortex_m, render_report
from npupass.ir.graph import Model

CORES = ("0", "0+", "3", "4", "7", "33", "35p", "52", "55", "85")
EMIT_OPTIONS = (
    Option("emit", str, None, "also write <name>.c/.h with the model as a C array (Ethos-U, Cortex-M)", choices=("c",)),
    Option("c_section", str, None, "linker section of the C array (default .rodata)", metavar="NAME"),
)


class CortexM(Backend):
    name = "cortex-m"
    summary = "Cortex-M CPUs running TensorFlow Lite for Microcontrollers (no NPU)"
    option_group = "Cortex-M (TFLite Micro) options"
    options = (
        Option("allow_unsupported", bool, False, "write the model even when TFLM cannot run some op"),
        *EMIT_OPTIONS,
        Option("arena_limit", positive_int, None, "fail unless TFLM runs the model in this arena", metavar="BYTES"),
        Option("compress", str, None, "TFLM LUT weight compression, verified in TFLM", choices=("lut",)),
    )
    needs = NEEDS
    families = ("cortex-m",)

    def targets(self) -> list[tuple[str, str]]:
        cores = ", ".join(f"cortex-m{c}" for c in CORES)
        return [("cortex-m", f"Cortex-M CPUs running TFLite Micro (aliases that change nothing: {cores})")]

    def parse_target(self, name: str) -> Target | None:
        if re.fullmatch(r"cortex-m(?:0\+?|3|4|7|33|35p|52|55|85)?", name):  # TFLM's kernels: the core changes nothing
            return Target("cortex-m", self.name)
        return None

    def compile(
        self,
        model: Model,
        target: Target,
        options: dict[str, Any],
        passes: list[str] | None = None,
        progress: Progress | None = None,
    ) -> CompileResult:
        name = f"{Path(model.source_path or 'model').stem}_cortex_m"
        data, files = compile_cortex_m(model, target.name, passes=passes, options=options | {"name": name})
        agreement = data["tflm_vs_litert"]
        report = Report(
            target.name,
            data,
            npu_ops=0,
            cpu_ops=sum(1 for _ in model.main.iter_ops()),
            equivalent=None if agreement is None else bool(agreement["ok"]),
        )
        return CompileResult(target.name, report, files, {"output": data["output"]})

    def render(self, report: Report, console: Any) -> None:
        render_report(report.to_dict(), console)


BACKEND = CortexM()
