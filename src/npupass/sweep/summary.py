"""summary.html: a sweep's plots (matplotlib, embedded as SVG) and its table, in one offline page.

The plots are also written on their own as SVG and PNG under plots/. Without matplotlib (the optional
extra `npupass[plots]`) the page has the table and says how to get the plots.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from npupass.fileio import atomic_write_all
from npupass.sweep.grid import Config, Grid

SUMMARY_HTML = "summary.html"
PLOTS_DIR = "plots"
PLOTS_MISSING = "plots need matplotlib: pip install 'npupass[plots]'"

Rows = list[dict[str, Any]]


def config_label(row: dict[str, Any]) -> str:
    return Config(row["target"], tuple(sorted((row.get("options") or {}).items()))).label


def model_label(row: dict[str, Any]) -> str:
    return Path(row["model"]).name


def baseline_pipeline(grid: Grid) -> str:
    """The pipeline the others are measured against: the target's default when the grid has it."""
    return "default" if "default" in grid.pipelines else grid.pipelines[0]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both (smaller is better on each axis), by the first."""
    order = sorted(range(len(points)), key=lambda i: points[i])
    front: list[int] = []
    best = math.inf
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def speedups(rows: Rows, baseline: str) -> dict[str, dict[str, float]]:
    """pipeline -> model -> geometric mean over configurations of baseline cycles / pipeline cycles."""
    base = {(r["model"], config_label(r)): r["cycles"] for r in rows if r["pipeline"] == baseline and r["cycles"]}
    ratios: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        reference = base.get((r["model"], config_label(r)))
        if r["pipeline"] == baseline or not r["cycles"] or not reference:
            continue
        ratios.setdefault(r["pipeline"], {}).setdefault(model_label(r), []).append(reference / r["cycles"])
    return {
        p: {m: math.exp(sum(map(math.log, v)) / len(v)) for m, v in per_model.items()}
        for p, per_model in ratios.items()
    }


# --- plots (matplotlib imported only here) ---------------------------------------------------------------
def _grouped_bars(ax: Any, groups: list[str], series: list[str], value: Callable[[str, str], float | None]) -> None:
    width = 0.8 / max(len(series), 1)
    for j, name in enumerate(series):
        xs, heights = [], []
        for i, group in enumerate(groups):
            v = value(group, name)
            if v is not None:
                xs.append(i - 0.4 + width * (j + 0.5))
                heights.append(v)
        ax.bar(xs, heights, width, label=name)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=20, ha="right", fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)


def _plots(rows: Rows, grid: Grid) -> dict[str, Any]:
    """name -> (title, Figure) for the plots the rows can support."""
    from matplotlib.figure import Figure

    ok = [r for r in rows if r.get("status") == "ok"]
    baseline = baseline_pipeline(grid)
    base = [r for r in ok if r["pipeline"] == baseline]
    models = list(dict.fromkeys(model_label(r) for r in base))
    configs = list(dict.fromkeys(config_label(r) for r in base))
    by_cell = {(model_label(r), config_label(r)): r for r in base}

    def field(name: str, scale: float = 1.0) -> Callable[[str, str], float | None]:
        def value(model: str, config: str) -> float | None:
            row = by_cell.get((model, config))
            return None if row is None or row.get(name) is None else row[name] * scale

        return value

    figures: dict[str, Any] = {}
    if any(r.get("inference_seconds") for r in base):
        fig = Figure(figsize=(8, 4), layout="constrained")
        ax = fig.add_subplot()
        _grouped_bars(ax, models, configs, field("inference_seconds", 1e3))
        ax.set_ylabel("inference time (ms)")
        ax.set_title(f"Inference time per model and target (pipeline: {baseline})", fontsize=10)
        figures["inference_time"] = ("Inference time per model per target", fig)
    scatter = [r for r in ok if _has(r, "sram_peak_bytes")]
    if scatter:
        figures["latency_sram"] = ("Latency against SRAM, with each model's Pareto front", _latency_sram(scatter))
    if any(r.get("cpu_ops") is not None for r in base):
        fig = Figure(figsize=(8, 4), layout="constrained")
        ax = fig.add_subplot()
        _grouped_bars(ax, models, configs, field("cpu_ops"))
        ax.set_ylabel("ops left on the CPU")
        ax.set_title(f"CPU ops per model and target (pipeline: {baseline})", fontsize=10)
        figures["cpu_ops"] = ("CPU-op counts per target", fig)
    gains = speedups(ok, baseline)
    if gains:
        names = list(gains)
        fig = Figure(figsize=(8, 4), layout="constrained")
        ax = fig.add_subplot()
        all_models = list(dict.fromkeys(m for g in gains.values() for m in g))
        _grouped_bars(ax, all_models, names, lambda m, p: gains[p].get(m))
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_ylabel(f"speed-up over '{baseline}' (cycles)")
        ax.set_title("Speed-up of each pipeline (geometric mean over targets)", fontsize=10)
        figures["speedup"] = (f"Speed-up each pipeline gives over '{baseline}'", fig)
    return figures


MARKERS = "osD^vPX*<>"


def _latency_sram(rows: Rows) -> Any:
    """Every cell as a point (colour: configuration, marker: model); per model, the cells no other
    configuration or pipeline of that model beats on both latency and SRAM are ringed and joined."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    fig = Figure(figsize=(9, 4.8), layout="constrained")
    ax = fig.add_subplot()
    configs = list(dict.fromkeys(config_label(r) for r in rows))
    models = list(dict.fromkeys(model_label(r) for r in rows))
    colours = [f"C{i % 10}" for i in range(len(configs))]
    for m, model in enumerate(models):
        mine = [r for r in rows if model_label(r) == model]
        points = [(r["inference_seconds"] * 1e3, r["sram_peak_bytes"] / 1024) for r in mine]
        for point, row in zip(points, mine, strict=True):
            colour = colours[configs.index(config_label(row))]
            ax.scatter([point[0]], [point[1]], color=colour, marker=MARKERS[m % len(MARKERS)], s=28, alpha=0.85)
        front = [points[i] for i in pareto_front(points)]
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="black", linewidth=0.8)
        ax.scatter([p[0] for p in front], [p[1] for p in front], s=90, facecolors="none", edgecolors="black")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("inference time (ms, log)")
    ax.set_ylabel("peak SRAM (KiB)")
    ax.set_title("Latency against SRAM, every cell", fontsize=10)
    handles = [
        Line2D([], [], color=c, marker="o", linestyle="", label=n) for c, n in zip(colours, configs, strict=True)
    ]
    handles += [
        Line2D([], [], color="grey", marker=MARKERS[i % len(MARKERS)], linestyle="", label=n)
        for i, n in enumerate(models)
    ]
    handles.append(
        Line2D(
            [], [], color="black", marker="o", markerfacecolor="none", markersize=9, label="Pareto front (per model)"
        )
    )
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    return fig


def _has(row: dict[str, Any], name: str) -> bool:
    return bool(row.get("inference_seconds")) and row.get(name) is not None


def _render(name: str, fig: Any, kind: str) -> bytes:
    import matplotlib

    buf = io.BytesIO()
    # A salt per plot keeps the SVGs' element ids apart when several share one page; text stays text.
    with matplotlib.rc_context({"svg.hashsalt": f"npupass-{name}", "svg.fonttype": "none"}):
        metadata = {"Date": None} if kind == "svg" else {"Software": None}
        fig.savefig(buf, format=kind, metadata=metadata, dpi=110)
    return buf.getvalue()


def write_summary(outdir: Path, rows: Rows, grid: Grid) -> tuple[list[Path], str | None]:
    """Write summary.html (and plots/*.svg, *.png); returns the files and why there are no plots, if so."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        figures: dict[str, Any] = {}
        note: str | None = PLOTS_MISSING
    else:
        figures, note = _plots(rows, grid), None
    files: dict[Path, bytes] = {}
    svgs: list[tuple[str, str, str]] = []
    for name, (title, fig) in figures.items():
        svg = _render(name, fig, "svg")
        files[outdir / PLOTS_DIR / f"{name}.svg"] = svg
        files[outdir / PLOTS_DIR / f"{name}.png"] = _render(name, fig, "png")
        svgs.append((name, title, svg.decode()))
    files[outdir / SUMMARY_HTML] = summary_html(rows, grid, svgs, note).encode()
    atomic_write_all(files)
    return list(files), note


# --- the page -------------------------------------------------------------------------------------------
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d1f23; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
figure { margin: 1em 0; } figure svg { width: 100%; max-width: 960px; height: auto; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #d9dce1; padding: 2px 6px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed td { background: #fdecea; }
.note { color: #8a4b00; }
"""

TABLE = (
    ("model", "model"),
    ("target", "target"),
    ("options", "options"),
    ("pipeline", "pipeline"),
    ("status", "status"),
    ("npu_ops", "NPU ops"),
    ("cpu_ops", "CPU ops"),
    ("cycles", "cycles"),
    ("inference_seconds", "ms"),
    ("sram_peak_bytes", "SRAM peak"),
    ("offchip_peak_bytes", "off-chip peak"),
    ("encoded_weight_bytes", "encoded weights"),
    ("wall_seconds", "wall s"),
    ("error", "error"),
)


def _cell(name: str, value: Any) -> str:
    if value is None or value == "" or value == {}:
        return "<td></td>"
    if name == "inference_seconds":
        return f'<td class="num">{value * 1e3:.3f}</td>'
    if name == "options":
        return "<td>" + html.escape(", ".join(f"{k}={v}" for k, v in value.items())) + "</td>"
    if isinstance(value, (int, float)):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def summary_html(rows: Rows, grid: Grid, svgs: list[tuple[str, str, str]], note: str | None) -> str:
    failed = [r for r in rows if r.get("status") != "ok"]
    total = len(grid.cells())
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>npupass sweep</title>",
        f"<style>{STYLE}</style></head>",
        '<body data-ready="1">',
        "<h1>npupass sweep</h1>",
        f"<p id=counts>{len(rows)} of {total} cells: {len(rows) - len(failed)} ok, {len(failed)} failed"
        f"{f', {total - len(rows)} not run' if total > len(rows) else ''}. "
        f"{len(grid.models)} models &times; {len(grid.configs)} configurations &times; "
        f"{len(grid.pipelines)} pipelines.</p>",
    ]
    if note:
        parts.append(f'<p class="note">{html.escape(note)}</p>')
    for name, title, svg in svgs:
        parts += [f'<h2>{html.escape(title)}</h2><figure id="plot-{name}">', _inline(svg), "</figure>"]
    if failed:
        parts.append("<h2>Failed cells</h2><ul id=failures>")
        for r in failed:
            what = f"{model_label(r)} on {config_label(r)} ({r['pipeline']})"
            parts.append(f"<li>{html.escape(what)}: {html.escape(str(r.get('error') or ''))}</li>")
        parts.append("</ul>")
    parts.append("<h2>Every cell</h2><table id=results><thead><tr>")
    parts += [f"<th>{html.escape(head)}</th>" for _, head in TABLE]
    parts.append("</tr></thead><tbody>")
    for r in rows:
        status = "ok" if r.get("status") == "ok" else "failed"
        parts.append(f'<tr class="{status}">' + "".join(_cell(n, r.get(n)) for n, _ in TABLE) + "</tr>")
    parts.append("</tbody></table></body></html>\n")
    return "\n".join(parts)


def _inline(svg: str) -> str:
    """The SVG document without its XML prologue and DOCTYPE, to sit inside HTML."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg
