"""XNNPACK backend: sparse TFLite and sparse-path qualification report."""

from __future__ import annotations

from typing import Any

from npupass.backends.base import Backend, CompileResult, Option, Progress, Report, Target
from npupass.backends.xnnpack.compile import NEEDS, compile_xnnpack
from npupass.ir.graph import Model


class Xnnpack(Backend):
    name = "xnnpack"
    summary = "phone CPUs through XNNPACK: the smallest exact sparse TFLite"
    option_group = "XNNPACK options"
    options = (Option("fp16", bool, False, "store sparse weights as FLOAT16"),)
    needs = NEEDS

    def targets(self) -> list[tuple[str, str]]:
        return [("xnnpack", "CPUs through LiteRT's XNNPACK delegate: sparse weights, sparse-path qualification")]

    def parse_target(self, name: str) -> Target | None:
        return Target("xnnpack", self.name) if name == "xnnpack" else None

    def compile(
        self,
        model: Model,
        target: Target,
        options: dict[str, Any],
        passes: list[str] | None = None,
        progress: Progress | None = None,
    ) -> CompileResult:
        data, tflite = compile_xnnpack(model, target, passes, fp16=bool(options.get("fp16")))
        checks = data["verify"]
        verdicts = [v["ok"] for v in (checks or {}).values()]  # None: LiteRT could not run a model
        equivalent = False if False in verdicts else None if None in verdicts or not verdicts else True
        report = Report(target.name, data, equivalent=equivalent)
        return CompileResult(target.name, report, {data["output"]: tflite}, {"output": data["output"]})

    def render(self, report: Report, console: Any) -> None:
        from npupass.backends.xnnpack.compile import render_report

        render_report(report.to_dict(), console)


BACKEND = Xnnpack()
