"""Sweeps: many models x targets x pipelines compiled in parallel (local processes or a Ray cluster),
one row per cell in results.csv / results.jsonl, resumable, with summary.html.

    from npupass.sweep import Grid, sweep
    grid = Grid.from_lists(["models/"], ["ethos-u55-128", "ethos-u65-256"], ["default"])
    result = sweep(grid, "sweep-out")  # LocalEngine(jobs=None): one worker per core
    result.rows, result.ran, result.cached, result.failed
"""

from npupass.sweep.engines import Engine, LocalEngine, RayEngine, Task, make_engine, run_cell
from npupass.sweep.grid import Cell, Config, Grid, GridError, ModelFile
from npupass.sweep.results import COLUMNS
from npupass.sweep.run import SweepResult, sweep

__all__ = [
    "COLUMNS",
    "Cell",
    "Config",
    "Engine",
    "Grid",
    "GridError",
    "LocalEngine",
    "ModelFile",
    "RayEngine",
    "SweepResult",
    "Task",
    "make_engine",
    "run_cell",
    "sweep",
]
