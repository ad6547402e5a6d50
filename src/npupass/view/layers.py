"""The per-layer table of a compile report as CSV (`npupass compile --per-layer-csv`)."""

from __future__ import annotations

import csv
import io
from typing import Any


def layers_csv(rows: list[dict[str, Any]]) -> bytes:
    """One CSV row per op: the report's per-layer keys as columns (lists joined with '; ', None empty)."""
    if not rows:
        return b""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: "; ".join(map(str, v)) if isinstance(v, list) else "" if v is None else v for k, v in row.items()}
        )
    return out.getvalue().encode("utf-8")
