"""Running a sweep: skip the cells already done, run the rest on an engine, keep every row, write the tables."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from npupass.errors import NpupassError
from npupass.sweep.engines import Engine, LocalEngine, Task
from npupass.sweep.grid import Grid
from npupass.sweep.results import RowLog, read_rows, write_tables

RowCallback = Callable[[dict[str, Any]], None]


@dataclass
class SweepResult:
    """A sweep's outcome. `rows` are the grid's cells that have a result, in grid order."""

    rows: list[dict[str, Any]]
    total: int
    ran: int
    """Cells computed by this call (the others came from the output folder's earlier results)."""
    cached: int
    interrupted: bool = False
    files: list[Path] = field(default_factory=list)
    summary_note: str | None = None
    """Why summary.html has no plots (matplotlib missing), when it has none."""
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return sum(1 for r in self.rows if r.get("status") != "ok")

    @property
    def missing(self) -> int:
        return self.total - len(self.rows)


def sweep(
    grid: Grid,
    outdir: str | Path,
    engine: Engine | None = None,
    *,
    retry_failed: bool = False,
    on_start: Callable[[int, int], None] | None = None,
    on_row: RowCallback | None = None,
    summary: bool = True,
) -> SweepResult:
    """Run every cell of `grid` that `outdir` has no result for, on `engine` (default: local processes, one
    per core), then write results.csv, results.jsonl and summary.html there.

    `on_start(total, cached)` is called once before any cell runs and `on_row(row)` as each cell finishes.
    Ctrl-C (KeyboardInterrupt) stops the engine, keeps the finished rows, writes the tables and returns
    with `interrupted` set; running the same sweep again computes only the missing cells.
    """
    start = time.perf_counter()
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise NpupassError(f"{out}: exists and is not a directory")
    cells = grid.cells()
    known = read_rows(out)
    if retry_failed:
        known = {k: r for k, r in known.items() if r.get("status") == "ok"}
    todo = [c for c in cells if c.key not in known]
    if on_start is not None:
        on_start(len(cells), len(cells) - len(todo))
    models: dict[str, bytes] = {}
    for cell in todo:
        if cell.model.sha256 not in models:
            models[cell.model.sha256] = _read(Path(cell.model.file or cell.model.path))
    engine = engine or LocalEngine()
    log = RowLog(out)
    found = dict(known)
    ran = 0
    interrupted = False
    failure: NpupassError | None = None
    try:
        for row in engine.run([Task.of(c) for c in todo], models):
            log.append(row)
            found[row["key"]] = row
            ran += 1
            if on_row is not None:
                on_row(row)
    except KeyboardInterrupt:
        interrupted = True
    except NpupassError as exc:  # the engine failed: keep what finished, then say so
        failure = exc
    finally:
        engine.close()
        log.close()
    keys = {c.key for c in cells}
    rows = [found[c.key] for c in cells if c.key in found]
    kept = [r for k, r in read_rows(out).items() if k not in keys]
    result = SweepResult(rows, len(cells), ran, len(cells) - len(todo), interrupted)
    result.files = write_tables(out, rows, kept)
    if summary:
        from npupass.sweep.summary import write_summary

        files, result.summary_note = write_summary(out, rows, grid)
        result.files += files
    if failure is not None:
        raise failure
    result.seconds = time.perf_counter() - start
    return result


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise NpupassError(f"{path}: cannot read: {exc.strerror or exc}") from None
