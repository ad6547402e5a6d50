"""A third-party backend, found through the `npupass.backends` entry point (tests/test_api.py)."""

from __future__ import annotations

from typing import Any

from npupass import Backend, CompileResult, Model, Option, Report, Target
from npupass.backends.tflite import serialize_tflite
from npupass.passes import PassManager
from npupass.passes.policy import TargetNeeds, default_pipeline


class Tiny(Backend):
    """Every op on the CPU: the model after the canonical passes, as TFLite, and a count of its ops."""

    name = "tiny"
    summary = "a test backend: the canonicalized model for a CPU"
    option_group = "tiny options"
    options = (Option("label", str, "plain", "a word the report repeats", metavar="WORD"),)
    needs = TargetNeeds(canonicalize="always")

    def targets(self) -> list[tuple[str, str]]:
        return [("tiny-cpu", "a CPU that runs every op (a test backend)")]

    def parse_target(self, name: str) -> Target | None:
        return Target(name, self.name) if name == "tiny-cpu" else None

    def compile(
        self,
        model: Model,
        target: Target,
        options: dict[str, Any],
        passes: list[str] | None = None,
        progress: Any = None,
    ) -> CompileResult:
        names = passes or default_pipeline(model, self.needs)
        pipeline = PassManager(names).run(model)
        ops = [op.type for op in model.main.ops]
        data = {"target": target.name, "label": options["label"], "ops": ops, "passes": pipeline.to_json()}
        report = Report(target.name, data, npu_ops=0, cpu_ops=len(ops), cpu_reasons={t: ["no NPU"] for t in ops})
        return CompileResult(target.name, report, {"tiny.tflite": serialize_tflite(model)})

    def render(self, report: Report, console: Any) -> None:
        console.print(f"tiny-cpu ({report.data['label']}): {report.cpu_ops} ops on the CPU")


BACKEND = Tiny()
