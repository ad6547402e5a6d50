"""`npupass sweep`: the grid from flags or a TOML file, an engine, and the library's sweep (npupass.sweep)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from npupass.backends.base import positive_int
from npupass.errors import NpupassError

EXIT_OK, EXIT_FAILED_CELLS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


def add_sweep_parser(sub: Any) -> None:
    sweep = sub.add_parser(
        "sweep",
        help="compile many models for many targets and pipelines in parallel; a results table and plots",
        description="Compile every model x target x pipeline of a grid (one `npupass compile` per cell) on local "
        "worker processes or a Ray cluster. Writes results.csv, results.jsonl, summary.html and plots/ to "
        "OUTDIR; cells already there (same model bytes, target, options, pipeline and versions) are not run again.",
    )
    sweep.add_argument("--grid", metavar="FILE", help="a TOML grid file (models, targets with options, pipelines)")
    sweep.add_argument("--models", nargs="+", metavar="PATH", help="model files, folders or globs")
    sweep.add_argument("--targets", nargs="+", metavar="LIST", help="target names, e.g. ethos-u55-128,ethos-u65-256")
    sweep.add_argument(
        "--passes",
        nargs="+",
        metavar="LIST",
        help="pipelines, each a comma-separated pass list or 'default' (the target's own; default: default)",
    )
    sweep.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a target option for every target that has it, e.g. --set memory_mode=Shared_Sram",
    )
    sweep.add_argument("-o", "--output-dir", default="sweep-out", metavar="OUTDIR", help="default: sweep-out")
    sweep.add_argument("--engine", choices=("local", "ray"), default="local", help="where cells run (default local)")
    sweep.add_argument("--jobs", type=positive_int, metavar="N", help="local worker processes (default: one per core)")
    sweep.add_argument("--address", metavar="ADDR", help="--engine ray: the cluster (default: start a local one)")
    sweep.add_argument("--retry-failed", action="store_true", help="run failed cells again instead of keeping them")
    sweep.add_argument("--json", action="store_true", help="stream each finished row as one JSON line on stdout")
    sweep.set_defaults(func=cmd_sweep)


def _options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise NpupassError(f"--set {pair}: expected NAME=VALUE")
        options[name.strip().replace("-", "_")] = value
    return options


def _grid(args: argparse.Namespace) -> Any:
    from npupass.sweep import Grid

    if args.grid:
        given = [flag for flag, v in (("--models", args.models), ("--targets", args.targets)) if v]
        given += ["--passes"] if args.passes else []
        given += ["--set"] if args.options else []
        if given:
            raise NpupassError(f"--grid and {given[0]} do not go together: put it in the grid file")
        return Grid.from_toml(args.grid)
    if not args.models or not args.targets:
        raise NpupassError("sweep needs --grid FILE, or --models and --targets")
    return Grid.from_lists(args.models, args.targets, args.passes, _options(args.options))


def cmd_sweep(args: argparse.Namespace) -> int:
    from npupass.sweep import make_engine, sweep
    from npupass.view.console import make_console
    from npupass.view.sweep_console import render_sweep, sweep_progress

    grid = _grid(args)
    engine = make_engine(args.engine, args.jobs, args.address)

    def stream(row: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(row) + "\n")
        sys.stdout.flush()

    with sweep_progress() as progress:
        on_start = None if args.json else progress.start
        on_row = stream if args.json else progress.row
        result = sweep(grid, args.output_dir, engine, retry_failed=args.retry_failed, on_start=on_start, on_row=on_row)
    if not args.json:
        render_sweep(make_console(), result.rows, result.total, result.ran, result.cached, result.seconds, result.files)
        if result.summary_note:
            print(f"npupass: note: {result.summary_note}", file=sys.stderr)
    if result.interrupted:
        print(
            f"npupass: interrupted: {len(result.rows)} of {result.total} cells kept in {args.output_dir}; "
            f"run the same sweep again to compute the other {result.missing}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return EXIT_FAILED_CELLS if result.failed else EXIT_OK
