"""DOT text of the view data, and SVG through Graphviz's `dot` when it is installed."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from npupass.errors import NpupassError

DOT_TIMEOUT_S = 300
# Graphviz's layout grows much faster than the graph: a 2,000-op chain with skip edges took 94 s here
# (10,000 ops ran 305 s before failing), so larger graphs are refused at once.
MAX_SVG_OPS = 1000


def check_svg_size(data: dict[str, Any], subgraph: int = 0) -> None:
    """NpupassError naming the size when the subgraph is too large for Graphviz to lay out in reasonable time."""
    ops = len(data["subgraphs"][subgraph]["ops"])
    if ops > MAX_SVG_OPS:
        raise NpupassError(
            f"the graph has {ops:,} ops, too many for Graphviz's layout (at most {MAX_SVG_OPS:,}: it takes "
            "minutes beyond that); use --html, which draws any size"
        )


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string (quotes, backslashes escaped) is a DOT quoted ID


def to_dot(data: dict[str, Any], subgraph: int = 0) -> str:
    sub = data["subgraphs"][subgraph]
    tensors = sub["tensors"]
    lines = [
        f"digraph {_quote(data['title'])} {{",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fillcolor="#eef2f7", fontname="Helvetica"];',
    ]
    for i in sub["inputs"]:
        lines.append(f'  t{i} [shape=ellipse, fillcolor="#dff0d8", label={_quote(tensors[i]["name"])}];')
    for i in sub["outputs"]:
        lines.append(f'  t{i} [shape=ellipse, fillcolor="#f2dede", label={_quote(tensors[i]["name"])}];')
    for op in sub["ops"]:
        label = op["type"] + (f" + {op['fused_activation']}" if op["fused_activation"] not in (None, "NONE") else "")
        extra = ""
        if op["change"]:
            extra = ', color="#d9822b", penwidth=2'
        if op["placement"]:
            extra += ', fillcolor="#d9ead3"' if op["placement"]["target"] == "NPU" else ', fillcolor="#fce5cd"'
        lines.append(f"  op{op['id']} [label={_quote(label + chr(10) + op['name'][:40])}{extra}];")
    for edge in sub["edges"]:
        t = tensors[edge["tensor"]]
        shape = "x".join(map(str, t["shape"])) if t["shape"] else "?"
        lines.append(f"  op{edge['from']} -> op{edge['to']} [label={_quote(shape)}, fontsize=9];")
    producers = {i: op["id"] for op in sub["ops"] for i in op["outputs"]}
    for op in sub["ops"]:
        for i in op["inputs"]:
            if i in sub["inputs"]:
                lines.append(f"  t{i} -> op{op['id']};")
    for i in sub["outputs"]:
        if i in producers:
            lines.append(f"  op{producers[i]} -> t{i};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def dot_available() -> bool:
    return shutil.which("dot") is not None


def to_svg(dot_text: str) -> bytes:
    """Render with Graphviz; NpupassError when `dot` is missing or fails."""
    exe = shutil.which("dot")
    if exe is None:
        raise NpupassError("Graphviz's 'dot' is not installed (Debian: apt-get install graphviz)")
    try:
        done = subprocess.run([exe, "-Tsvg"], input=dot_text.encode(), capture_output=True, timeout=DOT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise NpupassError(f"Graphviz's dot took more than {DOT_TIMEOUT_S} s; use --html for large graphs") from None
    if done.returncode != 0:
        first = done.stderr.decode(errors="replace").strip().splitlines()[:1]
        raise NpupassError(f"Graphviz's dot failed: {first[0] if first else done.returncode}")
    return done.stdout
