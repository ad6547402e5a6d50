"""Arm Ethos-U55/U65/U85 through Arm's Vela compiler: constraint table, partition, Vela, report."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from npupass.backends.base import Backend, CompileResult, Option, Progress, Report, Target, UnknownTargetError
from npupass.backends.cortex_m import EMIT_OPTIONS
from npupass.backends.cortex_m.c_source import DEFAULT_SECTION, c_identifier, check_section, emit_c
from npupass.backends.ethos_u.compile import NEEDS, compile_ethos_u, report_json
from npupass.errors import NpupassError
from npupass.ir.graph import Graph, Model, Op

ETHOS_U_MACS = {"u55": (32, 64, 128, 256), "u65": (256, 512), "u85": (128, 256, 512, 1024, 2048)}


class EthosU(Backend):
    name = "ethos-u"
    summary = "Arm Ethos-U55/U65/U85 microcontroller NPUs, compiled by Arm's Vela"
    option_group = "Ethos-U (Vela) options"
    options = (
        Option("config", str, None, "a Vela configuration file with more system configs", metavar="VELA_INI"),
        Option("system_config", str, None, "Vela system config (default: Vela's default)", metavar="NAME"),
        Option("memory_mode", str, None, "Vela memory mode (default: Vela's default)", metavar="NAME"),
        Option("optimise", str, "Performance", "Vela's goal (default Performance)", choices=("Performance", "Size")),
        Option(
            "max_cluster_values",
            int,
            16,
            "encode-clusters: distinct values a layer's shared palette may hold (default 16; Vela's palette "
            "takes up to 32)",
            metavar="N",
        ),
        Option(
            "cluster_tolerance",
            float,
            None,
            "encode-clusters: how far (weight steps) a channel's value may be from the palette value it joins "
            "(default 12, or 3 when 12 moves the outputs beyond the pass's 2 steps); the report states the "
            "output steps it cost",
            metavar="STEPS",
        ),
        Option(
            "vela_timeout",
            float,
            None,
            "stop Vela after this long (default: 20 s + 0.2 s per op + 2 s per MB of model)",
            metavar="SECONDS",
        ),
        *EMIT_OPTIONS,
    )
    needs = NEEDS
    families = tuple(f"ethos-{core}-{{{','.join(map(str, macs))}}}" for core, macs in ETHOS_U_MACS.items())

    def targets(self) -> list[tuple[str, str]]:
        return [
            (f"ethos-{core}-{macs}", f"Arm Ethos-{core.upper()} with {macs} MACs per cycle, through Vela 5.2")
            for core, all_macs in ETHOS_U_MACS.items()
            for macs in all_macs
        ]

    def parse_target(self, name: str) -> Target | None:
        m = re.fullmatch(r"ethos-(u55|u65|u85)-(\d+)", name)
        if m is None:
            return None
        core, macs = m.group(1), int(m.group(2))
        if macs in ETHOS_U_MACS[core]:
            return Target(name, self.name, {"core": f"Ethos{core.upper()}", "macs": macs})
        valid = ", ".join(f"ethos-{core}-{n}" for n in ETHOS_U_MACS[core])
        raise UnknownTargetError(f"unknown target '{name}': Ethos-{core.upper()} comes as {valid}")

    def placement(self, target: Target) -> Any:
        from npupass.backends.ethos_u.capabilities import npu_reasons

        def reasons(graph: Graph, op: Op) -> list[str]:
            return npu_reasons(graph, op, target.core)

        return reasons

    def compile(
        self,
        model: Model,
        target: Target,
        options: dict[str, Any],
        passes: list[str] | None = None,
        progress: Progress | None = None,
    ) -> CompileResult:
        from npupass.backends.ethos_u.vela import VelaConfig

        config_file = options.get("config")
        config = VelaConfig(
            accelerator=target.name,
            config_files=(config_file,) if config_file else (),
            system_config=options.get("system_config"),
            memory_mode=options.get("memory_mode"),
            optimise=options.get("optimise") or "Performance",
        )
        if config_file and not Path(config_file).is_file():  # Vela itself would print a traceback
            what = "is not a file" if Path(config_file).exists() else "no such Vela configuration file"
            raise NpupassError(f"{config_file}: {what}")
        tick = None if progress is None else (lambda elapsed: progress(f"Vela, {elapsed:.1f} s"))
        result = compile_ethos_u(
            model,
            target,
            config,
            passes=passes,
            tick=tick,
            max_cluster_values=options.get("max_cluster_values"),
            cluster_tolerance=options.get("cluster_tolerance"),
            timeout=options.get("vela_timeout"),
        )
        stem = Path(model.source_path or "model").stem
        output = f"{stem}_vela.tflite"
        data = report_json(result, model.source_path or "", output)
        data["tflm"] = tflm_check(result.vela.model)
        # bytes appended after the flatbuffer (associated files) follow Vela's flatbuffer as they did the input's
        files = {output: result.vela.model + model.appended}
        if options.get("emit") == "c":
            arena = (data["tflm"].get("arena") or {}).get("head_bytes")
            section = check_section(options.get("c_section") or DEFAULT_SECTION)
            files |= emit_c(result.vela.model, c_identifier(f"{stem}_vela"), arena, section)
        ops, perf = data["ops"], data["performance"]
        report = Report(
            target.name,
            data,
            npu_ops=ops["npu"],
            cpu_ops=ops["cpu"],
            cycles=perf["total_cycles"],
            inference_seconds=perf["inference_seconds"],
            cpu_reasons={f"{row['op']} '{row['name']}'": row["reasons"] for row in ops["cpu_ops"]},
        )
        from npupass.backends.ethos_u.compile import report_view
        from npupass.view.html import render_html

        page = render_html(report_view(result, data["layers"], f"{stem} on {target.name}"))
        files["report.html"] = page.encode("utf-8")
        return CompileResult(target.name, report, files, paths={"output": output, "html": "report.html"})

    def render(self, report: Report, console: Any) -> None:
        from npupass.backends.ethos_u.compile import render

        render(report.to_dict(), console)


def tflm_check(vela_model: bytes) -> dict[str, Any]:
    """TFLM's side of the Vela model: the CPU ops it cannot run and the arena estimate (or why not checked)."""
    from npupass.verify.tflm import TflmUnavailableError, require_tflm
    from npupass.verify.tflm_arena import check_vela_model

    try:
        require_tflm()
    except TflmUnavailableError as exc:
        return {"checked": False, "reason": str(exc)}
    return {"checked": True} | check_vela_model(vela_model)


BACKEND = EthosU()
