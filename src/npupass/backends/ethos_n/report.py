"""The Ethos-N compile report: coverage before and after legalization, NPU regions, CPU ops and why."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from npupass.backends.ethos_n.capabilities import Level, Variant, check_op, level_of
from npupass.ir.analysis import label
from npupass.ir.graph import Graph
from npupass.passes.partition import Partition


def coverage(graph: Graph, variant: Variant) -> dict[str, Any]:
    """Ops per level, and the fraction Supported."""
    levels = Counter(str(level_of(check_op(graph, op, variant))) for op in graph.iter_ops())
    total = sum(levels.values())
    supported = levels.get(str(Level.SUPPORTED), 0)
    return {
        "ops": total,
        "supported": supported,
        "estimate_only": levels.get(str(Level.ESTIMATE_ONLY), 0),
        "unsupported": levels.get(str(Level.UNSUPPORTED), 0),
        "fraction": round(supported / total, 4) if total else 0.0,
    }


def op_rows(graph: Graph, variant: Variant) -> list[dict[str, Any]]:
    rows = []
    for index, op in enumerate(graph.ops):
        findings = check_op(graph, op, variant)
        rows.append(
            {
                "index": index,
                "op": label(graph, op),
                "level": str(level_of(findings)),
                "reasons": [f.to_json() for f in findings],
            }
        )
    return rows


def build(
    graph: Graph, variant: Variant, before: dict[str, Any], part: Partition, extra: dict[str, Any]
) -> dict[str, Any]:
    order = {op: i for i, op in enumerate(graph.ops)}
    rows = op_rows(graph, variant)
    return extra | {
        "variant": variant.name,
        "coverage": {"before": before, "after": coverage(graph, variant)},
        "regions": [
            {"index": i, "ops": [order[op] for op in region], "types": dict(Counter(op.type for op in region))}
            for i, region in enumerate(part.regions)
        ],
        "cpu_ops": [r for r in rows if r["level"] != str(Level.SUPPORTED) or not part.on_npu(graph.ops[r["index"]])],
        "estimate_only": [r for r in rows if r["level"] == str(Level.ESTIMATE_ONLY)],
    }


def render(console: Console, report: dict[str, Any]) -> None:
    cov = report["coverage"]
    table = Table(title=f"Ethos-N78 {report['variant']}: ops per level", title_justify="left")
    for col in ("", "ops", "Supported", "EstimateOnly", "Unsupported", "coverage"):
        table.add_column(col, justify="right")
    for when in ("before", "after"):
        c = cov[when]
        table.add_row(
            f"{when} legalization",
            str(c["ops"]),
            str(c["supported"]),
            str(c["estimate_only"]),
            str(c["unsupported"]),
            f"{c['fraction']:.1%}",
        )
    console.print(table)
    regions = ", ".join(f"#{r['index']}: {len(r['ops'])} ops" for r in report["regions"]) or "none"
    console.print(f"NPU regions: {len(report['regions'])} ({regions})")
    if report["cpu_ops"]:
        cpu = Table(title="CPU ops", title_justify="left")
        for col in ("#", "op", "level", "why"):
            cpu.add_column(col, overflow="fold")
        for row in report["cpu_ops"]:
            why = "\n".join(r["message"] for r in row["reasons"]) or "its NPU region is not worth offloading"
            cpu.add_row(str(row["index"]), row["op"], row["level"], why)
        console.print(cpu)
    console.print(f"wrote {report['output']} and {report['report']}")
