"""A sweep's rows: their columns, results.jsonl (the log a resumed sweep reads) and results.csv."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from npupass.errors import NpupassError
from npupass.fileio import atomic_write_all

RESULTS_JSONL = "results.jsonl"
RESULTS_CSV = "results.csv"

COLUMNS = (
    "model",
    "model_sha256",
    "target",
    "options",
    "pipeline",
    "status",
    "error",
    "npu_ops",
    "cpu_ops",
    "cpu_reasons",
    "cycles",
    "inference_seconds",
    "sram_peak_bytes",
    "offchip_peak_bytes",
    "encoded_weight_bytes",
    "arena_bytes",
    "applied_passes",
    "npupass_version",
    "vela_version",
    "host",
    "wall_seconds",
    "key",
)
"""results.csv's columns in order; results.jsonl has the same keys (options and cpu_reasons as JSON objects)."""


def read_rows(outdir: Path) -> dict[str, dict[str, Any]]:
    """The rows results.jsonl already holds, by cell key (the last row of a key wins). A line cut short by a
    killed sweep is skipped: that cell simply runs again."""
    path = outdir / RESULTS_JSONL
    if not path.exists():
        return {}
    rows: dict[str, dict[str, Any]] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise NpupassError(f"{path}: cannot read: {exc.strerror or exc}") from None
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("key"), str):
            rows[row["key"]] = row
    return rows


class RowLog:
    """Appends each finished row to results.jsonl at once (flushed), so an interrupted sweep keeps them."""

    def __init__(self, outdir: Path) -> None:
        try:
            outdir.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] = (outdir / RESULTS_JSONL).open("a", encoding="utf-8")
        except OSError as exc:
            raise NpupassError(f"{outdir}: cannot write the results: {exc.strerror or exc}") from None

    def append(self, row: dict[str, Any]) -> None:
        self._file.write(json.dumps(row, sort_keys=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True) if value else ""
    return str(value)


def csv_text(rows: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_cell_text(row.get(c)) for c in COLUMNS])
    return out.getvalue()


def jsonl_text(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps({c: row.get(c) for c in COLUMNS}) + "\n" for row in rows)


def write_tables(outdir: Path, rows: list[dict[str, Any]], kept: list[dict[str, Any]]) -> list[Path]:
    """results.csv (the grid's rows, in grid order) and results.jsonl (the same, then `kept`: rows of cells no
    longer in the grid, left as a cache), atomically."""
    files = {
        outdir / RESULTS_CSV: csv_text(rows).encode(),
        outdir / RESULTS_JSONL: jsonl_text([*rows, *kept]).encode(),
    }
    atomic_write_all(files)
    return list(files)
