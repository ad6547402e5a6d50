"""Terminal rendering of a sweep: a live progress bar while it runs, then what it did (plain data in, text out)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table


class SweepProgress:
    """Cells done / failed / remaining and an ETA, on stderr when it is a terminal (else silent)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.failed = 0
        self._bar: Progress | None = None
        self._task: Any = None

    def start(self, total: int, cached: int) -> None:
        if not self.console.is_terminal:
            return
        self._bar = Progress(
            TextColumn("[bold]sweep"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed, {task.fields[left]} left"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task("sweep", total=total, completed=cached, failed=0, left=total - cached)
        self._left = total - cached

    def row(self, row: dict[str, Any]) -> None:
        if row.get("status") != "ok":
            self.failed += 1
        if self._bar is None:
            return
        self._left -= 1
        self._bar.update(self._task, advance=1, failed=self.failed, left=self._left)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@contextlib.contextmanager
def sweep_progress() -> Iterator[SweepProgress]:
    progress = SweepProgress()
    try:
        yield progress
    finally:
        progress.stop()


def render_sweep(
    console: Console, rows: list[dict[str, Any]], total: int, ran: int, cached: int, seconds: float, files: list[Path]
) -> None:
    failed = [r for r in rows if r.get("status") != "ok"]
    console.print(
        f"{len(rows)} of {total} cells: {len(rows) - len(failed)} ok, {len(failed)} failed "
        f"(computed {ran}, {cached} from earlier results) in {seconds:.1f} s"
    )
    if failed:
        table = Table(title="Failed cells", title_justify="left")
        for col in ("model", "target", "pipeline", "error"):
            table.add_column(col)
        for r in failed:
            table.add_row(Path(r["model"]).name, r["target"], r["pipeline"], r.get("error") or "")
        console.print(table)
    folders = sorted({str(p.parent) for p in files if p.parent.name != "plots"})
    names = ", ".join(p.name for p in files if p.suffix in (".csv", ".jsonl", ".html"))
    console.print(f"wrote {names} in {', '.join(folders)}")
