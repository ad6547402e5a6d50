"""Terminal rendering of npupass's results (rich tables), from their plain-data form.

The CLI calls these; every function takes the data a library call returned (or its JSON form) and prints.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

PIPED_WIDTH = 120


def make_console() -> Console:
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:  # piped or captured: 120 columns (or $COLUMNS) instead of rich's 80
        console = Console(highlight=False, soft_wrap=False, width=_piped_width())
    return console


def _piped_width() -> int:
    text = os.environ.get("COLUMNS", "")
    return int(text) if text.isdigit() and int(text) >= 40 else PIPED_WIDTH


@contextlib.contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr when it is a terminal; nothing when output is piped or captured."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    with Progress(*Progress.get_default_columns(), console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.update(task, completed=done)


@contextlib.contextmanager
def spinner(label: str) -> Iterator[Callable[[str], None] | None]:
    """A spinner on stderr naming the running step, when stderr is a terminal."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    with console.status(label) as status:
        yield lambda name: status.update(f"{label}: {name}")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def shape_text(shape: list[int] | None) -> str:
    return "?" if shape is None else "[" + ",".join(map(str, shape)) + "]"


def _quant_text(q: dict[str, Any] | None) -> str:
    if q is None:
        return ""
    if q["kind"] == "per-tensor":
        return f"s={q['scale']:.3g} zp={q['zero_point']}"
    return f"per-axis[{q['axis']}] x{q['channels']} s={q['scale_min']:.2g}..{q['scale_max']:.2g}"


def _tensor_text(t: dict[str, Any] | None) -> str:
    if t is None:
        return "-"
    text = f"{t['dtype'].lower()}{shape_text(t['shape'])}"
    q = _quant_text(t["quantization"])
    return f"{text} {q}" if q else text


def _options_text(options: dict[str, Any]) -> str:
    parts = []
    for key, value in options.items():
        if isinstance(value, list) and len(value) > 8:
            value = f"[{len(value)} values]"
        parts.append(f"{key}={value}")
    return " ".join(parts)


def render_info(console: Console, path: str, info: dict[str, Any], max_ops: int, extra: Sequence[str] = ()) -> None:
    """`npupass info`: the summary npupass.summary.summarize made, with `extra` lines (info_extra_lines)."""
    console.print(
        f"[bold]{path}[/bold]: {info['format']}"
        + (f" (schema v{info['schema_version']})" if info["schema_version"] is not None else "")
        + f", {info['file_bytes']:,} bytes"
    )
    if info["description"]:
        console.print(f"description: {info['description']}")
    console.print(
        f"{info['op_count']} ops, {info['tensor_count']} tensors ({info['constant_count']} constant), "
        f"{info['parameter_bytes']:,} parameter bytes, buffers {info['buffer_storage']}"
    )
    q = info["quantization"]
    console.print(
        f"quantization: {q['per-tensor']} per-tensor, {q['per-axis']} per-axis, {q['none']} unquantized tensors"
    )
    console.print("dtypes: " + ", ".join(f"{k.lower()} {v}" for k, v in info["dtypes"].items()))

    subgraphs = Table(title="Subgraphs", title_justify="left")
    for col in ("#", "name", "ops", "tensors", "inputs", "outputs"):
        subgraphs.add_column(col)
    for s in info["subgraphs"]:
        ins = "\n".join(f"{t['name']}: {_tensor_text(t)}" for t in s["inputs"])
        outs = "\n".join(f"{t['name']}: {_tensor_text(t)}" for t in s["outputs"])
        subgraphs.add_row(str(s["index"]), s["name"], str(s["ops"]), str(s["tensors"]), ins, outs)
    console.print(subgraphs)

    histogram = Table(title="Op histogram", title_justify="left")
    histogram.add_column("op")
    histogram.add_column("count", justify="right")
    for op, count in info["op_histogram"].items():
        histogram.add_row(op, str(count))
    console.print(histogram)

    if info["signatures"] or info["metadata"]:
        for s in info["signatures"]:
            console.print(f"signature '{s['key']}' (subgraph {s['subgraph']}): {s['inputs']} -> {s['outputs']}")
        console.print("metadata: " + ", ".join(f"{m['name']} ({m['bytes']} bytes)" for m in info["metadata"]))
    for line in extra:
        console.print(line, markup=False)

    ops = info["ops"] if max_ops == 0 else info["ops"][:max_ops]
    table = Table(title="Ops", title_justify="left")
    for col in ("sg", "#", "op", "inputs", "outputs", "options"):
        table.add_column(col, overflow="fold")
    for op in ops:
        table.add_row(
            str(op["subgraph"]),
            str(op["index"]),
            op["type"],
            "\n".join(_tensor_text(t) for t in op["inputs"]),
            "\n".join(_tensor_text(t) for t in op["outputs"]),
            _options_text(op["options_set"]),
        )
    console.print(table)
    if len(ops) < len(info["ops"]):
        console.print(f"... {len(info['ops']) - len(ops)} more ops (--max-ops 0 shows all)")


def render_pipeline(
    console: Console, pipeline: dict[str, Any], explain: bool, provenance: list[dict[str, Any]]
) -> None:
    """The passes a pipeline ran (PipelineResult.to_json()), and with `explain` their declines and provenance."""
    table = Table(title="Passes", title_justify="left")
    for col in ("pass", "runs", "rewrites", "declined", "seconds"):
        table.add_column(col)
    for p in pipeline["passes"]:
        rewrites = ", ".join(f"{rule} {n}" for rule, n in sorted(p["rewrites"].items())) or "-"
        table.add_row(p["name"], str(p["runs"]), rewrites, str(len(p["declined"])), f"{p['seconds']:.3f}")
    console.print(table)
    if not explain:
        return
    for p in pipeline["passes"]:
        for d in p["declined"]:
            console.print(f"{p['name']}: {d['message']}")
    for row in provenance:
        console.print(f"{row['op']} '{row['output']}' <- {', '.join(row['rules'])} from {', '.join(row['from'])}")


def render_pass_checks(console: Console, checks: list[dict[str, Any]]) -> None:
    """Per-pass verification (PassCheck.to_json() rows)."""
    table = Table(title="Verification after each pass (LiteRT)", title_justify="left")
    for col in ("pass", "max rel. error", "max steps", "within tolerance", "arg-max agree", ""):
        table.add_column(col)
    for c in checks:
        verdict = "[red]CHANGED[/red]" if c["problem"] else "[green]ok[/green]"
        table.add_row(
            c["pass"],
            f"{c['max_rel_error']:.3g}",
            str(c["max_steps"]),
            f"{c['within_tolerance']:.4%}",
            f"{c['argmax_agreement']:.1%}",
            verdict,
        )
    console.print(table)


def render_comparison(console: Console, comparison: dict[str, Any], a: str, b: str) -> None:
    """A Comparison.to_json() of model `a` against model `b`."""
    tol = comparison["tolerance"]
    table = Table(title=f"{a} vs {b}", title_justify="left")
    for col in ("output", "dtype", "shape", "max |diff|", "max steps", "mismatched", "arg-max agree", ""):
        table.add_column(col)
    for o in comparison["outputs"]:
        table.add_row(
            o["name"],
            o["dtype"],
            shape_text(o["shape"]),
            f"{o['max_abs_diff']:.3g}",
            "-" if o["max_steps"] is None else str(o["max_steps"]),
            f"{o['mismatched']}/{o['elements']}",
            "-" if o["argmax_agreement"] is None else f"{o['argmax_agreement']:.1%}",
            "[green]bit-exact[/green]"
            if o["bit_exact"]
            else ("[green]ok[/green]" if o["ok"] else "[red]DIFFERENT[/red]"),
        )
    if comparison["outputs"]:
        console.print(table)
    for problem in comparison["problems"]:
        console.print(f"[red]{problem}[/red]")
    verdict = "[green]equivalent[/green]" if comparison["equivalent"] else "[red]not equivalent[/red]"
    console.print(
        f"{verdict} on {comparison['samples']} seeded inputs (seed {comparison['seed']}); floats: |a-b| <= "
        f"{tol['atol']:g} + {tol['rtol']:g}*|a|, integers: <= {tol['max_steps']} steps"
    )


def render_preservation(console: Console, report: dict[str, Any]) -> None:
    """One row per weight (PreservationReport.to_json()): zeros / distinct values / most in one channel, per stage."""
    from npupass.view.names import short_name

    table = Table(title="Preservation (zeros, distinct values, most per channel)", title_justify="left")
    table.add_column("weight")
    for stage in report["stages"]:
        table.add_column(stage)
    for weight in report["weights"]:
        cells = []
        for s in weight["stages"]:
            cells.append("-" if s is None else f"{s['zeros']:.0%} {s['unique']}/{s['unique_per_channel_max'] or '-'}")
        table.add_row(_shorten_quoted(weight["op"], short_name), *cells)
    console.print(table)
    for problem in report["problems"]:
        console.print(f"[red]not preserved[/red]: {problem}")


def render_declines(console: Console, pipeline: dict[str, Any]) -> None:
    """--explain: every rewrite each pass declined, with its reason."""
    from npupass.view.names import short_name

    for p in pipeline["passes"]:
        if not p["declined"]:
            continue
        console.print(f"[bold]{p['name']}[/bold] declined {len(p['declined'])}:")
        for d in p["declined"]:
            console.print(f"  {_shorten_quoted(d['message'], short_name)}")


def _shorten_quoted(message: str, short: Callable[[str], str]) -> str:
    """Quoted tensor names in a message, shortened ('model/conv/Relu;model/...' -> 'conv')."""
    import re

    return re.sub(r"'([^']{41,})'", lambda m: "'" + short(m.group(1)) + "'", message)


def render_preservation_summary(console: Console, report: dict[str, Any]) -> None:
    """One line: how many weights kept their zeros and values through the pipeline."""
    weights = report["weights"]
    if not weights:
        return
    pruned = sum(1 for w in weights if w["stages"][0] and w["stages"][0]["zeros"] >= 0.3)
    state = "; ".join(f"[red]{p}[/red]" for p in report["problems"]) or "zeros kept, no int8 weight gained values"
    console.print(
        f"Preservation: {len(weights)} weights ({pruned} with >= 30% zeros): {state} (--preservation shows the table)"
    )
