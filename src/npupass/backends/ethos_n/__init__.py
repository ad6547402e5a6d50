"""Arm Ethos-N78 backend: capability checker, legalizing passes, partition and report."""

from __future__ import annotations

import re
from typing import Any

from npupass.backends.base import Backend, CompileResult, Progress, Report, Target, UnknownTargetError
from npupass.backends.ethos_n import legalize  # noqa: F401 - registers legalize-ethos-n
from npupass.backends.ethos_n.compile import NEEDS, compile_ethos_n
from npupass.ir.graph import Model

ETHOS_N78_VARIANTS = (
    "1TOPS_2PLE_RATIO",
    "1TOPS_4PLE_RATIO",
    "2TOPS_2PLE_RATIO",
    "2TOPS_4PLE_RATIO",
    "4TOPS_2PLE_RATIO",
    "4TOPS_4PLE_RATIO",
    "8TOPS_2PLE_RATIO",
)
ETHOS_N78_DEFAULT_VARIANT = "4TOPS_4PLE_RATIO"


class EthosN(Backend):
    name = "ethos-n"
    summary = "Arm Ethos-N78 NPUs, as an int8 TFLite for Arm NN's delegate"
    needs = NEEDS
    families = ("ethos-n78[-VARIANT]",)

    def targets(self) -> list[tuple[str, str]]:
        default = [("ethos-n78", f"Arm Ethos-N78 {ETHOS_N78_DEFAULT_VARIANT} (the default variant)")]
        return default + [(f"ethos-n78-{v}", f"Arm Ethos-N78 {v}") for v in ETHOS_N78_VARIANTS]

    def parse_target(self, name: str) -> Target | None:
        m = re.fullmatch(r"ethos-n78(?:-(\w+))?", name)
        if m is None:
            return None
        variant = (m.group(1) or ETHOS_N78_DEFAULT_VARIANT).upper()
        if variant in ETHOS_N78_VARIANTS:
            return Target(f"ethos-n78-{variant}", self.name, {"variant": variant})
        raise UnknownTargetError(
            f"unknown Ethos-N78 variant '{m.group(1)}': choose one of {', '.join(ETHOS_N78_VARIANTS)}"
        )

    def placement(self, target: Target) -> Any:
        from npupass.backends.ethos_n.capabilities import VARIANTS, predicate

        return predicate(VARIANTS[target.variant])

    def compile(
        self,
        model: Model,
        target: Target,
        options: dict[str, Any],
        passes: list[str] | None = None,
        progress: Progress | None = None,
    ) -> CompileResult:
        data, tflite = compile_ethos_n(model, target, passes)
        cpu = data["cpu_ops"]
        report = Report(
            target.name,
            data,
            npu_ops=data["coverage"]["after"]["ops"] - len(cpu),
            cpu_ops=len(cpu),
            cpu_reasons={row["op"]: [r["message"] for r in row["reasons"]] for row in cpu},
        )
        paths = {"output": data["output"], "report": "report.json"}
        return CompileResult(target.name, report, {data["output"]: tflite}, paths)

    def render(self, report: Report, console: Any) -> None:
        from npupass.backends.ethos_n.report import render

        render(console, report.to_dict())


BACKEND = EthosN()
