"""The terminal view: the view data as rich tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def quant_text(q: dict[str, Any] | None) -> str:
    if q is None:
        return ""
    scales, zps = q["scale"], q["zero_point"]
    if q["axis"] is None:
        return f"s={_g(scales[0])} zp={zps[0] if zps else 0}"
    numeric = [s for s in scales if isinstance(s, float)]
    low, high = (min(numeric), max(numeric)) if numeric else (0.0, 0.0)
    zp = f"zp={zps[0]}" if len(set(zps)) == 1 else f"zp={min(zps)}..{max(zps)}"
    return f"per-axis[{q['axis']}] x{len(scales)} s={_g(low)}..{_g(high)} {zp}"


def _g(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def tensor_text(t: dict[str, Any]) -> str:
    shape = "?" if t["shape"] is None else "[" + ",".join(map(str, t["shape"])) + "]"
    text = f"{t['name']}: {t['dtype'].lower()}{shape}"
    q = quant_text(t["quant"])
    return f"{text} {q}" if q else text


def weights_text(w: dict[str, Any] | None) -> str:
    if not w:
        return ""
    return f"{w['zeros']:.0%} zeros, {w['unique']} values (max {w['unique_per_channel_max']}/channel)"


def render(console: Console, data: dict[str, Any], max_ops: int = 0) -> None:
    """Ops of every subgraph in execution order, with tensors, quantization, weights and placement."""
    console.print(f"[bold]{data['title']}[/bold]")
    for sub in data["subgraphs"]:
        tensors = sub["tensors"]
        ops = sub["ops"] if max_ops == 0 else sub["ops"][:max_ops]
        has_placement = any(op["placement"] for op in sub["ops"])
        has_change = any(op["change"] for op in sub["ops"])
        table = Table(title=f"subgraph {sub['index']} '{sub['name']}': {len(sub['ops'])} ops", title_justify="left")
        columns = ["#", "op", "inputs", "outputs", "activation", "weights"]
        columns += ["placement"] if has_placement else []
        columns += ["change"] if has_change else []
        for col in columns:
            table.add_column(col, overflow="fold")
        for op in ops:
            ins = "\n".join(tensor_text(tensors[i]) if i >= 0 else "-" for i in op["inputs"])
            outs = "\n".join(tensor_text(tensors[i]) for i in op["outputs"])
            row = [str(op["id"]), op["type"], ins, outs, op["fused_activation"] or "", weights_text(op["weights"])]
            if has_placement:
                p = op["placement"]
                row.append(f"{p['target']}: {p['reason']}" if p else "")
            if has_change:
                rules = ", ".join((op["provenance"] or {}).get("rules", []))
                row.append(f"{op['change'] or ''} {rules}".strip())
            table.add_row(*row)
        console.print(table)
        if len(ops) < len(sub["ops"]):
            console.print(f"... {len(sub['ops']) - len(ops)} more ops (--max-ops 0 shows all)")
    if data.get("diff"):
        render_diff(console, data["diff"])


def render_diff(console: Console, diff: dict[str, Any]) -> None:
    counts = diff["op_counts"]
    console.print(
        f"[bold]{diff['a']}[/bold] ({counts['a']} ops) -> [bold]{diff['b']}[/bold] ({counts['b']} ops): "
        f"{len(diff['removed'])} removed, {len(diff['added'])} added, {len(diff['changed'])} changed, "
        f"{len(diff['tensors_changed'])} tensors changed"
    )
    for kind, colour in (("removed", "red"), ("added", "green"), ("changed", "yellow")):
        for entry in diff[kind]:
            detail = ", ".join(entry.get("what", []))
            rules = f" <- {', '.join(entry['rules'])}" if entry.get("rules") else ""
            console.print(
                f"[{colour}]{kind}[/{colour}] {entry['type']} '{entry['name']}'{rules}{': ' + detail if detail else ''}"
            )
    for t in diff["tensors_changed"]:
        console.print(f"tensor '{t['name']}': {', '.join(t['what'])}")
