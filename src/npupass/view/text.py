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
    return f"{w['unique']} values ({w['unique_per_channel_max']}/ch), {w['zeros']:.0%} zeros"


def _shape(t: dict[str, Any]) -> str:
    return "?" if t["shape"] is None else "[" + ",".join(map(str, t["shape"])) + "]"


def inputs_text(op: dict[str, Any], tensors: list[dict[str, Any]]) -> str:
    """Input shapes, constants marked 'c' (names are in --json and the HTML page)."""
    parts: list[str] = []
    for i in op["inputs"]:
        if i < 0:
            continue
        t = tensors[i]
        if t["constant"] and t["shape"] is not None and len(t["shape"]) <= 1 and parts:
            continue  # a bias or a shape operand: the weight and data shapes say enough
        parts.append(("c" if t["constant"] else "") + _shape(t))
    return " ".join(parts)


def output_text(op: dict[str, Any], tensors: list[dict[str, Any]]) -> str:
    """The first output's type, shape and (per-tensor) quantization."""
    if not op["outputs"]:
        return ""
    t = tensors[op["outputs"][0]]
    q = quant_text(t["quant"])
    more = f" +{len(op['outputs']) - 1}" if len(op["outputs"]) > 1 else ""
    return f"{t['dtype'].lower()}{_shape(t)}{more}" + (f" {q}" if q else "")


def _op_text(op: dict[str, Any]) -> str:
    """The op type with its fused activation: CONV_2D+RELU6."""
    act = op["fused_activation"]
    return f"{op['type']}+{act}" if act and act != "NONE" else op["type"]


def render(console: Console, data: dict[str, Any], max_ops: int = 0) -> None:
    """One line per op of every subgraph, in execution order: short name, shapes, output quantization,
    weights and placement. Full names and every tensor are in --json and the HTML page."""
    from npupass.view.names import short_name

    console.print(f"[bold]{data['title']}[/bold]")
    for sub in data["subgraphs"]:
        tensors = sub["tensors"]
        ops = sub["ops"] if max_ops == 0 else sub["ops"][:max_ops]
        has_placement = any(op["placement"] for op in sub["ops"])
        has_change = any(op["change"] for op in sub["ops"])
        table = Table(title=f"subgraph {sub['index']} '{sub['name']}': {len(sub['ops'])} ops", title_justify="left")
        types = [_op_text(op) for op in ops]
        fixed = {"#": max(len(str(len(ops))), 1), "op": max(map(len, types), default=2)}
        flexible = {"name": 3, "inputs": 3, "output": 4, "weights": 3}
        flexible |= {"placement": 4} if has_placement else {}
        flexible |= {"change": 3} if has_change else {}
        # every column one line wide: fixed widths that add up to the console's (3 per column for the rules)
        room = max(console.width - sum(fixed.values()) - 3 * (len(fixed) + len(flexible)) - 1, 10 * len(flexible))
        weight = sum(flexible.values())
        for col, width in fixed.items():
            table.add_column(col, no_wrap=True, width=width, justify="right" if col == "#" else "left")
        for col, share in flexible.items():
            table.add_column(col, no_wrap=True, overflow="ellipsis", width=room * share // weight)
        for op, kind in zip(ops, types, strict=True):
            name = op.get("short_name") or short_name(op["name"])
            row = [
                str(op["id"]),
                kind,
                name,
                inputs_text(op, tensors),
                output_text(op, tensors),
                weights_text(op["weights"]),
            ]
            if has_placement:
                p = op["placement"]
                row.append((f"{p['target']}: {p['reason']}" if p["reason"] else p["target"]) if p else "")
            if has_change:
                rules = ", ".join((op["provenance"] or {}).get("rules", []))
                row.append(f"{op['change'] or ''} {rules}".strip())
            table.add_row(*row)
        console.print(table)
        if len(ops) < len(sub["ops"]):
            console.print(f"... {len(sub['ops']) - len(ops)} more ops (--max-ops 0 shows all)")
    if data.get("diff"):
        render_diff(console, data["diff"])


def render_diff(console: Console, diff: dict[str, Any], full: bool = False) -> None:
    """A summary (counts by change kind and op type); `full` lists every op and tensor."""
    from collections import Counter

    counts = diff["op_counts"]
    console.print(
        f"[bold]{diff['a']}[/bold] ({counts['a']} ops) -> [bold]{diff['b']}[/bold] ({counts['b']} ops): "
        f"{len(diff['removed'])} removed, {len(diff['added'])} added, {len(diff['changed'])} changed, "
        f"{len(diff['tensors_changed'])} tensors changed"
    )
    if full:
        _render_diff_full(console, diff)
        return
    for kind, colour in (("removed", "red"), ("added", "green"), ("changed", "yellow")):
        if not diff[kind]:
            continue
        types = Counter(entry["type"] for entry in diff[kind])
        console.print(f"[{colour}]{kind}[/{colour}]: " + ", ".join(f"{n} {t}" for t, n in types.most_common()))
        rules = Counter(rule for entry in diff[kind] for rule in entry.get("rules") or [])
        if rules:
            console.print("  by " + ", ".join(f"{r} ({n})" for r, n in rules.most_common()))
        what = Counter(w.split(" ", 1)[0] for entry in diff[kind] for w in entry.get("what") or [])
        if what:
            console.print("  what: " + ", ".join(f"{w} ({n})" for w, n in what.most_common()))
    if diff["tensors_changed"]:
        what = Counter(w.split(" ", 1)[0] for t in diff["tensors_changed"] for w in t["what"])
        console.print("tensors changed: " + ", ".join(f"{w} ({n})" for w, n in what.most_common()))
    if any(diff[k] for k in ("removed", "added", "changed", "tensors_changed")):
        console.print("(--full lists every op and tensor; --json gives them as data)")


def _render_diff_full(console: Console, diff: dict[str, Any]) -> None:
    for kind, colour in (("removed", "red"), ("added", "green"), ("changed", "yellow")):
        for entry in diff[kind]:
            detail = ", ".join(entry.get("what", []))
            rules = f" <- {', '.join(entry['rules'])}" if entry.get("rules") else ""
            console.print(
                f"[{colour}]{kind}[/{colour}] {entry['type']} '{entry['name']}'{rules}{': ' + detail if detail else ''}"
            )
    for t in diff["tensors_changed"]:
        console.print(f"tensor '{t['name']}': {', '.join(t['what'])}")
