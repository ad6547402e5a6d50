"""The HTML viewer: one self-contained page (inline CSS, JS and data) that works offline from file://.

Nothing is fetched: no CDN, no fonts, no images. A Content-Security-Policy allows only the page's own
inline script (by hash) and styles, so even a name that somehow escaped the data block could not run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

from npupass.fileio import atomic_write

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="npupass">
<title>npupass · {title}</title>
<style>
{css}
</style>
</head>
<body>
<header id="np-toolbar">
<span id="np-title"></span>
<select id="np-subgraph" aria-label="Subgraph"></select>
<span class="group">
<input id="np-search" type="search" placeholder="Search op name or type" aria-label="Search ops" autocomplete="off">
<button id="np-prev" type="button" title="Previous match (Shift+Enter)">‹</button>
<button id="np-next" type="button" title="Next match (Enter)">›</button>
<span id="np-search-count" data-count="0"></span>
</span>
<label class="group">Colour by <select id="np-colour"></select></label>
<label class="group hidden" id="np-collapse-wrap">
<input type="checkbox" id="np-collapse-all"> collapse NPU partitions</label>
<span class="group">
<button id="np-zoom-in" type="button" title="Zoom in">+</button>
<button id="np-zoom-out" type="button" title="Zoom out">−</button>
<button id="np-fit" type="button" title="Fit the whole graph">fit</button>
</span>
</header>
<div id="np-main">
<div id="np-canvas">
<svg id="np-svg" role="img" aria-label="Graph"><g id="np-viewport"></g></svg>
<div id="np-legend"></div>
</div>
<aside id="np-side"><section id="np-diff"></section><section id="np-panel"></section></aside>
</div>
<script type="application/json" id="npupass-data">{data}</script>
<script>{js}</script>
</body>
</html>
"""

# Characters that could end the data's <script> element or confuse an HTML parser, as JSON escapes.
_SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _static(name: str) -> str:
    return (files("npupass.view") / "static" / name).read_text(encoding="utf-8")


def _finite(value: Any) -> Any:
    """`value` with non-finite floats as strings ("nan", "inf"), which JSON cannot carry."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def data_json(data: dict[str, Any]) -> str:
    """`data` as JSON that is safe inside a <script> element: no '<', '>' or '&' outside escapes."""
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a NaN or infinity somewhere (metrics come from the user)
        text = json.dumps(_finite(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.translate(_SCRIPT_SAFE)


def render_html(data: dict[str, Any]) -> str:
    """The viewer page for view data from npupass.view.data.view_data."""
    css = _static("viewer.css")
    js = _static("viewer.js")
    for name, text, tag in (("viewer.css", css, "style"), ("viewer.js", js, "script")):
        if re.search(rf"</{tag}|<!--|<script", text, re.IGNORECASE):  # would end the inline element early
            raise ValueError(f"static/{name} cannot be inlined: it contains '</{tag}', '<!--' or '<script'")
    script_hash = base64.b64encode(hashlib.sha256(js.encode("utf-8")).digest()).decode("ascii")
    csp = (
        "default-src 'none'; "
        f"script-src 'sha256-{script_hash}'; "
        "style-src 'unsafe-inline'; "
        "img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )
    return _TEMPLATE.format(
        csp=csp,
        title=html.escape(str(data.get("title", ""))),
        css=css,
        data=data_json(data),
        js=js,
    )


def write_html(data: dict[str, Any], path: str | Path) -> None:
    """Write the viewer page for `data` to `path` atomically (complete or untouched)."""
    atomic_write(Path(path), [render_html(data).encode("utf-8")])
