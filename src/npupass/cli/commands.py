"""The `npupass` commands: each parses nothing, calls the library and renders its result with view/."""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

from rich.console import Console

from npupass.errors import NpupassError
from npupass.view.console import (
    make_console,
    print_json,
    progress_bar,
    render_comparison,
    render_declines,
    render_info,
    render_pass_checks,
    render_pipeline,
    render_preservation,
    render_preservation_summary,
    spinner,
)
from npupass.view.layers import layers_csv

EXIT_OK, EXIT_DIFFERENT, EXIT_ERROR, EXIT_INTERNAL = 0, 1, 2, 3


# --- info --------------------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    import npupass
    from npupass.summary import info_extra_lines, summarize

    path = Path(args.model)
    model = npupass.load(path)
    info = summarize(model, str(path), path.stat().st_size)
    if args.json:
        print_json(info)
    else:
        render_info(make_console(), str(path), info, args.max_ops, info_extra_lines(info))
    return EXIT_OK


# --- convert -----------------------------------------------------------------------------------
def _same_file(a: Path, b: Path) -> bool:
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def cmd_convert(args: argparse.Namespace) -> int:
    import npupass
    from npupass.summary import read_notes

    src, out = Path(args.model), Path(args.output)
    if _same_file(src, out) or src.resolve() == out.resolve():
        raise NpupassError(f"refusing to overwrite the input model {src}; choose another -o path")
    model = npupass.load(src, keep_nchw_io=args.keep_nchw_io, calibration=args.calibration)
    passes = args.passes or ",".join(npupass.default_pipeline(model))
    if (args.explain or args.io or args.preservation) and not passes:
        flag = "--explain" if args.explain else "--io" if args.io else "--preservation"
        raise NpupassError(f"{flag} needs --passes")
    if args.io and passes and "fold-fake-quant" not in [n.strip() for n in passes.split(",")]:
        raise NpupassError("--io applies to fold-fake-quant, which is not in --passes")
    pass_options = parse_pass_options(args.pass_option)
    if pass_options and not passes:
        raise NpupassError("--pass-option needs --passes")
    with spinner("running passes") as update, progress_bar("verifying", args.samples) as verifying:
        converted = npupass.convert(
            model,
            pass_options=pass_options,
            passes=passes or None,
            io=args.io,
            verify=args.verify,
            samples=args.samples,
            seed=args.seed,
            preservation=args.preservation,
            check=args.check,
            progress=update,
            verify_progress=verifying,
            in_place=True,
        )
    result: dict[str, Any] = {"input": str(src), "output": str(out)}
    if passes:
        result["pipeline"] = converted.pipeline.to_json() if converted.pipeline is not None else None
        if args.preservation:
            result["preservation"] = converted.preservation
    if converted.failure is not None:
        result["verify"] = {"passes": converted.pass_checks, "failed_pass": converted.failed_pass}
        if args.json:
            print_json(result | {"error": converted.failure})
        else:
            console = make_console()
            render_pass_checks(console, converted.pass_checks)
            console.print(f"[red]{converted.failure}[/red]; nothing written")
        return EXIT_DIFFERENT
    converted.write(out, buffers=args.buffers)
    result |= {
        "output_bytes": out.stat().st_size,
        "ops": sum(len(g.ops) for g in converted.model.subgraphs),
        "seconds": round(converted.seconds, 4),
        "notes": read_notes(converted.model),
    }
    if args.explain:
        result["provenance"] = _provenance(converted.model)
    if args.verify and converted.comparison is None:
        result["verify"] = {"passes": converted.pass_checks, "failed_pass": None}
    elif converted.comparison is not None:
        result["verify"] = converted.comparison.to_json()
    status = EXIT_OK if converted.equivalent else EXIT_DIFFERENT
    if args.json:
        print_json(result)
        return status
    console = make_console()
    if converted.pipeline is not None:
        render_pipeline(console, result["pipeline"], explain=args.explain, provenance=result.get("provenance", []))
    if args.preservation and converted.preservation is not None:
        render_preservation(console, converted.preservation)
    if converted.pass_checks:
        render_pass_checks(console, converted.pass_checks)
    console.print(f"wrote {out} ({result['output_bytes']:,} bytes, {result['ops']} ops) in {converted.seconds:.2f} s")
    for note in result["notes"]:
        console.print(f"note: {note}", markup=False)
    if converted.comparison is not None:
        render_comparison(console, converted.comparison.to_json(), str(src), str(out))
    return status


def parse_pass_options(texts: list[str]) -> dict[str, dict[str, Any]]:
    """["encode-clusters:max_values=20", ...] -> {"encode-clusters": {"max_values": 20}} (values as JSON
    numbers or true/false, else strings)."""
    options: dict[str, dict[str, Any]] = {}
    for text in texts:
        name, colon, rest = text.partition(":")
        key, equals, value = rest.partition("=")
        if not (colon and equals and name.strip() and key.strip()):
            raise NpupassError(f"--pass-option '{text}': write PASS:KEY=VALUE, e.g. encode-clusters:max_values=20")
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        options.setdefault(name.strip(), {})[key.strip().replace("-", "_")] = parsed
    return options


def _provenance(model: Any) -> list[dict[str, Any]]:
    rows = []
    for index, graph in enumerate(model.subgraphs):
        for op in graph.ops:
            if op.provenance:
                outs = graph.outputs_of(op)
                rows.append(
                    {
                        "subgraph": index,
                        "op": op.type,
                        "output": outs[0].name if outs else "",
                        "rules": op.provenance.get("rules", []),
                        "from": op.provenance.get("from", []),
                    }
                )
    return rows


def cmd_passes(args: argparse.Namespace) -> int:
    from npupass.backends.base import backends
    from npupass.passes import DEFAULT_PIPELINE, PASSES

    backends()  # backends register their own passes (legalize-ethos-n)
    rows = [
        {
            "name": name,
            "summary": cls.summary,
            "requires": sorted(cls.requires),
            "guarantees": sorted(cls.guarantees),
            "rules": [rule.name for rule in getattr(cls, "rules", ())],
        }
        for name, cls in PASSES.items()
    ]
    if args.json:
        print_json({"default_pipeline": DEFAULT_PIPELINE, "passes": rows})
        return EXIT_OK
    console = make_console()
    for row in rows:
        console.print(f"[bold]{row['name']}[/bold]  {row['summary']}", soft_wrap=True)
    console.print(f"default pipeline: {DEFAULT_PIPELINE}")
    return EXIT_OK


def cmd_targets(args: argparse.Namespace) -> int:
    import npupass

    rows = [{"name": name, "description": text} for name, text in npupass.targets()]
    if args.json:
        print_json(rows)
        return EXIT_OK
    console = make_console()
    for row in rows:
        console.print(f"[bold]{row['name']}[/bold]  {row['description']}", soft_wrap=True)
    return EXIT_OK


# --- verify ------------------------------------------------------------------------------------
def cmd_verify(args: argparse.Namespace) -> int:
    import npupass

    tolerance = npupass.Tolerance(atol=args.atol, rtol=args.rtol, max_steps=args.max_steps)
    with progress_bar("verifying", args.samples) as progress:
        comparison = npupass.verify(
            args.a,
            args.b,
            samples=args.samples,
            seed=args.seed,
            tolerance=tolerance,
            delegates=args.delegates,
            progress=progress,
        )
    if args.json:
        print_json({"a": args.a, "b": args.b, **comparison.to_json()})
    else:
        render_comparison(make_console(), comparison.to_json(), args.a, args.b)
    return EXIT_OK if comparison.equivalent else EXIT_DIFFERENT


# --- view and diff ------------------------------------------------------------------------------
def _load_metrics(path: str) -> dict[str, dict[str, float]]:
    """{op name: {metric: number}} from a JSON file (op names as the viewer shows them)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NpupassError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NpupassError(f"{path}: not a JSON metrics file ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise NpupassError(f'{path}: metrics must be an object of {{"op name": {{"metric": number}}}}')
    metrics: dict[str, dict[str, float]] = {}
    for op, values in data.items():
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise NpupassError(f"{path}: metric '{name}' of op '{op}' is not a number")
            try:
                number = float(value)
            except OverflowError:
                number = float("inf")
            if not math.isfinite(number):
                raise NpupassError(f"{path}: metric '{name}' of op '{op}' is not a finite number")
            metrics.setdefault(op, {})[name] = number
    return metrics


def _write_view_outputs(args: argparse.Namespace, data: dict[str, Any], console: Console) -> None:
    from npupass.fileio import atomic_write
    from npupass.view.dot import check_svg_size, to_dot, to_svg

    if args.html:
        from npupass.view.html import write_html

        write_html(data, Path(args.html))
        console.print(f"wrote {args.html}")
    if args.dot:
        atomic_write(Path(args.dot), [to_dot(data).encode()])
        console.print(f"wrote {args.dot}")
    if args.svg:
        check_svg_size(data)
        dot_text = to_dot(data)
        try:
            svg = to_svg(dot_text)
        except NpupassError as exc:
            fallback = Path(args.svg).with_suffix(".dot")
            atomic_write(fallback, [dot_text.encode()])
            raise NpupassError(f"{exc}; wrote the DOT text to {fallback} instead") from None
        atomic_write(Path(args.svg), [svg])
        console.print(f"wrote {args.svg}")


def cmd_view(args: argparse.Namespace) -> int:
    import copy

    import npupass
    from npupass.view.data import view_data
    from npupass.view.diff import diff_models
    from npupass.view.text import render

    if args.diff and not args.passes:
        raise NpupassError("--diff needs --passes (or use `npupass diff A B` for two files)")
    if args.target and args.passes:
        raise NpupassError("--target runs the target's own pipeline; it excludes --passes")
    metrics = _load_metrics(args.metrics) if args.metrics else None
    model = npupass.load(args.model)
    title = args.model
    diff, changed = None, None
    if args.passes:
        before = copy.deepcopy(model) if args.diff else None
        model = npupass.convert(model, passes=args.passes, in_place=True).model
        title = f"{args.model} after {args.passes}"
        if before is not None:
            diff, changed = diff_models(before, model, args.model, title)
    placement = None
    if args.target:
        model, placement = npupass.place(model, args.target, in_place=True)
        title = f"{args.model} on {args.target} (predicted placement, not compiled)"
    data = view_data(
        model,
        title,
        placement=placement,
        metrics=metrics,
        changed=changed,
        diff=diff,
        colour="placement" if placement else None,
    )
    console = make_console()
    if args.json:
        print_json(data)
    elif not (args.html or args.dot or args.svg):
        render(console, data, args.max_ops)
    _write_view_outputs(args, data, Console(stderr=True) if args.json else console)
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    import npupass
    from npupass.view.data import view_data
    from npupass.view.diff import diff_models
    from npupass.view.text import render_diff

    a, b = npupass.load(args.a), npupass.load(args.b)
    diff, changed = diff_models(a, b, args.a, args.b)
    if args.json:
        print_json(diff)
    else:
        render_diff(make_console(), diff, full=args.full)
    if args.html:
        from npupass.view.html import write_html

        write_html(view_data(b, f"{args.a} -> {args.b}", changed=changed, diff=diff), Path(args.html))
        if not args.json:
            make_console().print(f"wrote {args.html}")
    different = any(diff[k] for k in ("removed", "added", "changed", "tensors_changed"))
    return EXIT_DIFFERENT if different else EXIT_OK  # as Unix diff: 1 when the models differ


# --- compile -----------------------------------------------------------------------------------
def cmd_compile(args: argparse.Namespace) -> int:
    import npupass
    from npupass.backends.base import find_target

    backend, target = find_target(args.target)
    outdir = Path(args.output_dir)
    if outdir.exists() and not outdir.is_dir():
        raise NpupassError(f"{outdir}: exists and is not a directory")
    options = {o.name: getattr(args, o.name) for o in backend.options}
    if args.passes and args.add_passes:
        raise NpupassError("--passes and --add-passes exclude each other (--passes +LIST extends the default)")
    passes = "+" + args.add_passes if args.add_passes else args.passes
    with spinner(f"compiling for {target.name}") as update:
        result = npupass.compile(
            args.model,
            target.name,
            passes=passes,
            options=options,
            progress=update,
            calibration=args.calibration,
        )
    data = result.report.to_dict()
    if args.per_layer_csv:
        if not data.get("layers"):
            raise NpupassError(f"--per-layer-csv: target {target.name} gives no per-layer figures")
        result.files["per_layer.csv"] = layers_csv(data["layers"])
    result.write(outdir)
    if args.json:
        print_json(data)
        return EXIT_DIFFERENT if result.report.equivalent is False else EXIT_OK
    console = make_console()
    backend.render(result.report, console)
    pipeline = data.get("passes") or data.get("pipeline")
    if args.explain and isinstance(pipeline, dict):
        render_declines(console, pipeline)
    if data.get("preservation"):
        if args.preservation:
            render_preservation(console, data["preservation"])
        else:
            render_preservation_summary(console, data["preservation"])
    if "html" in result.paths:
        console.print(f"wrote {data.get('html')} (ops coloured by NPU/CPU; click one for its figures)")
    if args.per_layer_csv:
        console.print(f"wrote {outdir / 'per_layer.csv'}")
    return EXIT_DIFFERENT if result.report.equivalent is False else EXIT_OK
