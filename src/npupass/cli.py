"""The `npupass` command."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from npupass import __version__
from npupass.errors import NpupassError

EXIT_OK, EXIT_DIFFERENT, EXIT_ERROR, EXIT_INTERNAL = 0, 1, 2, 3
ONNX_DEFAULT_PIPELINE = "fold-batch-norm,fuse-activations"


def _console() -> Console:
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:  # piped or captured: room for the tables instead of 80 columns
        console = Console(highlight=False, soft_wrap=False, width=160)
    return console


@contextlib.contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr when it is a terminal; nothing when output is piped or captured."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    with Progress(*Progress.get_default_columns(), console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.update(task, completed=done)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _shape(shape: list[int] | None) -> str:
    return "?" if shape is None else "[" + ",".join(map(str, shape)) + "]"


def _quant_text(q: dict[str, Any] | None) -> str:
    if q is None:
        return ""
    if q["kind"] == "per-tensor":
        return f"s={q['scale']:.3g} zp={q['zero_point']}"
    return f"per-axis[{q['axis']}] x{q['channels']} s={q['scale_min']:.2g}..{q['scale_max']:.2g}"


def _tensor_text(t: dict[str, Any] | None) -> str:
    if t is None:
        return "-"
    text = f"{t['dtype'].lower()}{_shape(t['shape'])}"
    q = _quant_text(t["quantization"])
    return f"{text} {q}" if q else text


def _options_text(options: dict[str, Any]) -> str:
    parts = []
    for key, value in options.items():
        if isinstance(value, list) and len(value) > 8:
            value = f"[{len(value)} values]"
        parts.append(f"{key}={value}")
    return " ".join(parts)


# --- info --------------------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    from npupass.frontends import load_model
    from npupass.summary import summarize

    path = Path(args.model)
    model = load_model(path)
    info = summarize(model, str(path), path.stat().st_size)
    if args.json:
        _print_json(info)
        return EXIT_OK
    console = _console()
    console.print(
        f"[bold]{path}[/bold]: {info['format']}"
        + (f" (schema v{info['schema_version']})" if info["schema_version"] is not None else "")
        + f", {info['file_bytes']:,} bytes"
    )
    if info["description"]:
        console.print(f"description: {info['description']}")
    console.print(
        f"{info['op_count']} ops, {info['tensor_count']} tensors ({info['constant_count']} constant), "
        f"{info['parameter_bytes']:,} parameter bytes, buffers {info['buffer_storage']}"
    )
    q = info["quantization"]
    console.print(
        f"quantization: {q['per-tensor']} per-tensor, {q['per-axis']} per-axis, {q['none']} unquantized tensors"
    )
    console.print("dtypes: " + ", ".join(f"{k.lower()} {v}" for k, v in info["dtypes"].items()))

    subgraphs = Table(title="Subgraphs", title_justify="left")
    for col in ("#", "name", "ops", "tensors", "inputs", "outputs"):
        subgraphs.add_column(col)
    for s in info["subgraphs"]:
        ins = "\n".join(f"{t['name']}: {_tensor_text(t)}" for t in s["inputs"])
        outs = "\n".join(f"{t['name']}: {_tensor_text(t)}" for t in s["outputs"])
        subgraphs.add_row(str(s["index"]), s["name"], str(s["ops"]), str(s["tensors"]), ins, outs)
    console.print(subgraphs)

    histogram = Table(title="Op histogram", title_justify="left")
    histogram.add_column("op")
    histogram.add_column("count", justify="right")
    for op, count in info["op_histogram"].items():
        histogram.add_row(op, str(count))
    console.print(histogram)

    if info["signatures"] or info["metadata"]:
        for s in info["signatures"]:
            console.print(f"signature '{s['key']}' (subgraph {s['subgraph']}): {s['inputs']} -> {s['outputs']}")
        console.print("metadata: " + ", ".join(f"{m['name']} ({m['bytes']} bytes)" for m in info["metadata"]))

    ops = info["ops"] if args.max_ops == 0 else info["ops"][: args.max_ops]
    table = Table(title="Ops", title_justify="left")
    for col in ("sg", "#", "op", "inputs", "outputs", "options"):
        table.add_column(col, overflow="fold")
    for op in ops:
        table.add_row(
            str(op["subgraph"]),
            str(op["index"]),
            op["type"],
            "\n".join(_tensor_text(t) for t in op["inputs"]),
            "\n".join(_tensor_text(t) for t in op["outputs"]),
            _options_text(op["options_set"]),
        )
    console.print(table)
    if len(ops) < len(info["ops"]):
        console.print(f"... {len(info['ops']) - len(ops)} more ops (--max-ops 0 shows all)")
    return EXIT_OK


# --- convert -----------------------------------------------------------------------------------
def _same_file(a: Path, b: Path) -> bool:
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def cmd_convert(args: argparse.Namespace) -> int:
    from npupass.backends.tflite import write_tflite
    from npupass.frontends import load_model

    src, out = Path(args.model), Path(args.output)
    if _same_file(src, out) or src.resolve() == out.resolve():
        raise NpupassError(f"refusing to overwrite the input model {src}; choose another -o path")
    start = time.perf_counter()
    model = load_model(src, keep_nchw_io=args.keep_nchw_io)
    if model.source_format == "onnx" and not args.passes:
        # ONNX batch norms are IR-only ops until folded; a QDQ model is folded into real int8
        quantized = any(op.type in ("QUANTIZE", "DEQUANTIZE") for op in model.main.iter_ops())
        args.passes = ONNX_DEFAULT_PIPELINE + (",fold-fake-quant" if quantized else "")
    if (args.explain or args.io or args.preservation) and not args.passes:
        flag = "--explain" if args.explain else "--io" if args.io else "--preservation"
        raise NpupassError(f"{flag} needs --passes")
    result: dict[str, Any] = {"input": str(src), "output": str(out)}
    pipeline = None
    checks: list[Any] = []
    if args.passes:
        pipeline, checks, failure = _run_pipeline(model, args)
        result["pipeline"] = pipeline.to_json() if pipeline is not None else None
        if args.preservation:
            result["preservation"] = args.preservation_report.to_json()
        if failure is not None:
            result["verify"] = {"passes": [c.to_json() for c in checks], "failed_pass": failure.pass_name}
            if args.json:
                _print_json(result | {"error": str(failure)})
            else:
                console = _console()
                _render_pass_checks(console, checks)
                console.print(f"[red]{failure}[/red]; nothing written")
            return EXIT_DIFFERENT
    write_tflite(model, out, buffers=args.buffers)
    seconds = time.perf_counter() - start
    result |= {
        "output_bytes": out.stat().st_size,
        "ops": sum(len(g.ops) for g in model.subgraphs),
        "seconds": round(seconds, 4),
    }
    if args.explain:
        result["provenance"] = _provenance(model)
    status = EXIT_OK
    comparison = None
    if args.verify and args.passes and model.source_format == "tflite":
        result["verify"] = {"passes": [c.to_json() for c in checks], "failed_pass": None}
    elif args.verify:
        from npupass.verify import Tolerance, verify_files
        from npupass.verify.passes import output_steps

        tolerance = None
        if model.source_format == "onnx":  # against onnxruntime: float 1e-4, quantized 2 output steps
            step = max(output_steps(model), default=0.0)
            tolerance = Tolerance(atol=max(2 * step, 1e-5), rtol=1e-4, max_steps=2)
        with _progress("verifying", args.samples) as progress:
            comparison = verify_files(
                src, out, samples=args.samples, seed=args.seed, tolerance=tolerance, progress=progress
            )
        result["verify"] = comparison.to_json()
        status = EXIT_OK if comparison.equivalent else EXIT_DIFFERENT
    if args.json:
        _print_json(result)
        return status
    console = _console()
    if pipeline is not None:
        _render_pipeline(console, pipeline, explain=args.explain, provenance=result.get("provenance", []))
    if args.preservation:
        from npupass.passes.preservation import render

        render(console, args.preservation_report)
    if checks:
        _render_pass_checks(console, checks)
    console.print(f"wrote {out} ({result['output_bytes']:,} bytes, {result['ops']} ops) in {seconds:.2f} s")
    if comparison is not None:
        _render_comparison(console, comparison, str(src), str(out))
    return status


def _run_pipeline(model: Any, args: argparse.Namespace) -> tuple[Any, list[Any], Any]:
    """Run --passes on `model`; returns (result or None, per-pass checks, verification failure or None)."""
    from npupass.passes import PassManager, PassVerificationError
    from npupass.passes.manager import parse_pipeline

    names = parse_pipeline(args.passes)
    options: dict[str, dict[str, Any]] = {}
    if args.io:
        if "fold-fake-quant" not in names:
            raise NpupassError("--io applies to fold-fake-quant, which is not in --passes")
        options["fold-fake-quant"] = {"io": args.io}
    manager = PassManager(names, options=options, check=args.check)
    verifier = None
    if args.verify and model.source_format == "tflite":  # an ONNX model is checked against onnxruntime after
        from npupass.verify.passes import PassVerifier

        verifier = PassVerifier(samples=args.samples, seed=args.seed)
    observer: Any = verifier
    if args.preservation:  # snapshots the weights after each pass, then runs the verifier if any
        from npupass.passes.preservation import PreservationReport

        observer = args.preservation_report = PreservationReport(inner=verifier)
    with _progress_label("running passes") as progress:
        try:
            result = manager.run(model, verify=observer or False, progress=progress)
        except PassVerificationError as failure:
            return None, verifier.checks if verifier else [], failure
    return result, verifier.checks if verifier else [], None


@contextlib.contextmanager
def _progress_label(label: str) -> Iterator[Callable[[str], None] | None]:
    """A spinner on stderr naming the running step, when stderr is a terminal."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    with console.status(label) as status:
        yield lambda name: status.update(f"{label}: {name}")


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


def _render_pipeline(console: Console, pipeline: Any, explain: bool, provenance: list[dict[str, Any]]) -> None:
    table = Table(title="Passes", title_justify="left")
    for col in ("pass", "runs", "rewrites", "declined", "seconds"):
        table.add_column(col)
    for p in pipeline.passes:
        rewrites = ", ".join(f"{rule} {n}" for rule, n in sorted(p.rewrites.items())) or "-"
        table.add_row(p.name, str(p.runs), rewrites, str(len(p.declines)), f"{p.seconds:.3f}")
    console.print(table)
    if not explain:
        return
    for p in pipeline.passes:
        for d in p.declines:
            console.print(f"{p.name}: {d.message}")
    for row in provenance:
        console.print(f"{row['op']} '{row['output']}' <- {', '.join(row['rules'])} from {', '.join(row['from'])}")


def _render_pass_checks(console: Console, checks: list[Any]) -> None:
    table = Table(title="Verification after each pass (LiteRT)", title_justify="left")
    for col in ("pass", "max rel. error", "max steps", "within tolerance", "arg-max agree", ""):
        table.add_column(col)
    for c in checks:
        verdict = "[red]CHANGED[/red]" if c.problem else "[green]ok[/green]"
        table.add_row(
            c.name, f"{c.max_rel_error:.3g}", str(c.max_steps), f"{c.within:.4%}", f"{c.argmax_agreement:.1%}", verdict
        )
    console.print(table)


def cmd_passes(args: argparse.Namespace) -> int:
    from npupass.passes import DEFAULT_PIPELINE, PASSES

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
        _print_json({"default_pipeline": DEFAULT_PIPELINE, "passes": rows})
        return EXIT_OK
    console = _console()
    for row in rows:
        console.print(f"[bold]{row['name']}[/bold]  {row['summary']}")
    console.print(f"default pipeline: {DEFAULT_PIPELINE}")
    return EXIT_OK


# --- verify ------------------------------------------------------------------------------------
def _render_comparison(console: Console, comparison: Any, a: str, b: str) -> None:
    tol = comparison.tolerance
    table = Table(title=f"{a} vs {b}", title_justify="left")
    for col in ("output", "dtype", "shape", "max |diff|", "max steps", "mismatched", "arg-max agree", ""):
        table.add_column(col)
    for o in comparison.outputs:
        table.add_row(
            o.name,
            o.dtype,
            _shape(o.shape),
            f"{o.max_abs_diff:.3g}",
            "-" if o.max_steps is None else str(o.max_steps),
            f"{o.mismatched}/{o.elements}",
            "-" if o.argmax_agreement is None else f"{o.argmax_agreement:.1%}",
            "[green]bit-exact[/green]" if o.bit_exact else ("[green]ok[/green]" if o.ok else "[red]DIFFERENT[/red]"),
        )
    if comparison.outputs:
        console.print(table)
    for problem in comparison.problems:
        console.print(f"[red]{problem}[/red]")
    verdict = "[green]equivalent[/green]" if comparison.equivalent else "[red]not equivalent[/red]"
    console.print(
        f"{verdict} on {comparison.samples} seeded inputs (seed {comparison.seed}); floats: |a-b| <= "
        f"{tol.atol:g} + {tol.rtol:g}*|a|, integers: <= {tol.max_steps} steps"
    )


def cmd_verify(args: argparse.Namespace) -> int:
    from npupass.verify import Tolerance, verify_files

    tolerance = Tolerance(atol=args.atol, rtol=args.rtol, max_steps=args.max_steps)
    with _progress("verifying", args.samples) as progress:
        comparison = verify_files(
            args.a,
            args.b,
            samples=args.samples,
            seed=args.seed,
            tolerance=tolerance,
            delegates=args.delegates,
            progress=progress,
        )
    if args.json:
        _print_json({"a": args.a, "b": args.b, **comparison.to_json()})
    else:
        _render_comparison(_console(), comparison, args.a, args.b)
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
    from npupass.view.dot import to_dot, to_svg

    if args.html:
        from npupass.view.html import write_html

        write_html(data, Path(args.html))
        console.print(f"wrote {args.html}")
    if args.dot:
        atomic_write(Path(args.dot), [to_dot(data).encode()])
        console.print(f"wrote {args.dot}")
    if args.svg:
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

    from npupass.frontends import load_model
    from npupass.view.data import view_data
    from npupass.view.diff import diff_models
    from npupass.view.text import render

    if args.diff and not args.passes:
        raise NpupassError("--diff needs --passes (or use `npupass diff A B` for two files)")
    metrics = _load_metrics(args.metrics) if args.metrics else None
    model = load_model(args.model)
    title = args.model
    diff, changed = None, None
    if args.passes:
        before = copy.deepcopy(model) if args.diff else None
        from npupass.passes import PassManager

        PassManager(args.passes).run(model)
        title = f"{args.model} after {args.passes}"
        if before is not None:
            diff, changed = diff_models(before, model, args.model, title)
    data = view_data(model, title, metrics=metrics, changed=changed, diff=diff)
    console = _console()
    if args.json:
        _print_json(data)
    elif not (args.html or args.dot or args.svg):
        render(console, data, args.max_ops)
    _write_view_outputs(args, data, Console(stderr=True) if args.json else console)
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    from npupass.frontends import load_model
    from npupass.view.data import view_data
    from npupass.view.diff import diff_models
    from npupass.view.text import render_diff

    a, b = load_model(args.a), load_model(args.b)
    diff, changed = diff_models(a, b, args.a, args.b)
    if args.json:
        _print_json(diff)
    else:
        render_diff(_console(), diff)
    if args.html:
        from npupass.view.html import write_html

        write_html(view_data(b, f"{args.a} -> {args.b}", changed=changed, diff=diff), Path(args.html))
        if not args.json:
            _console().print(f"wrote {args.html}")
    different = any(diff[k] for k in ("removed", "added", "changed", "tensors_changed"))
    return EXIT_DIFFERENT if different else EXIT_OK  # as Unix diff: 1 when the models differ


# --- entry point -------------------------------------------------------------------------------
# --- compile -----------------------------------------------------------------------------------
def cmd_compile(args: argparse.Namespace) -> int:
    import importlib

    from npupass.backends.targets import parse_target

    target = parse_target(args.target)
    backend = importlib.import_module(f"npupass.backends.{target.backend}.compile")
    return int(backend.run(args, target))


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="npupass", description="Graph-rewriting compiler passes for TFLite models and NPUs."
    )
    parser.add_argument("--version", action="version", version=f"npupass {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an internal error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser("info", help="summarize a model: ops, tensors, parameters, quantization")
    info.add_argument("model", help="a .tflite file")
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.add_argument(
        "--max-ops", type=int, default=200, metavar="N", help="ops to list in the table (0: all; default 200)"
    )
    info.set_defaults(func=cmd_info)

    convert = sub.add_parser("convert", help="read a model, optionally run passes, and write it as TFLite")
    convert.add_argument("model", help="the input model, .tflite or .onnx (never modified)")
    convert.add_argument("-o", "--output", required=True, help="the .tflite file to write (written atomically)")
    convert.add_argument(
        "--buffers",
        choices=("auto", "inline", "external"),
        default="auto",
        help="where constants go: inside the flatbuffer, after it, or as in the input (default)",
    )
    convert.add_argument(
        "--passes",
        metavar="LIST",
        help="comma-separated passes to run, e.g. fold-batch-norm,fuse-activations,fold-fake-quant "
        "(see `npupass passes`)",
    )
    convert.add_argument(
        "--io",
        choices=("float", "int8"),
        help="fold-fake-quant: keep float graph inputs/outputs (QUANTIZE/DEQUANTIZE at the ends; default) "
        "or make them int8",
    )
    convert.add_argument(
        "--keep-nchw-io",
        action="store_true",
        help="ONNX input: keep 4-D inputs and outputs NCHW (default: NHWC, as TFLite runs them)",
    )
    convert.add_argument(
        "--explain",
        action="store_true",
        help="list every declined rewrite with its reason, and where new ops came from",
    )
    convert.add_argument(
        "--no-check", dest="check", action="store_false", help="skip the structural IR check after each pass"
    )
    convert.add_argument(
        "--verify",
        action="store_true",
        help="compare outputs in LiteRT: after each pass with --passes (naming the first pass that changed them), "
        "else output against input",
    )
    convert.add_argument("--samples", type=_positive, default=3, help="seeded inputs for --verify (default 3)")
    convert.add_argument("--seed", type=int, default=0, help="first seed for --verify (default 0)")
    convert.add_argument("--json", action="store_true", help="print the result as JSON")
    convert.add_argument(
        "--preservation",
        action="store_true",
        help="with --passes: per weight, zeros and distinct values before and after each pass",
    )
    convert.set_defaults(func=cmd_convert)

    comp = sub.add_parser(
        "compile",
        help="compile a model for an NPU or CPU target and report what runs where",
        description="Compile MODEL (.tflite or .onnx, never modified) for --target: ethos-u55-{32,64,128,256}, "
        "ethos-u65-{256,512}, ethos-u85-{128,256,512,1024,2048} (through Arm Vela), ethos-n78[-VARIANT] "
        "(an Arm NN-ready int8 TFLite) or xnnpack (sparse TFLite).",
    )
    comp.add_argument("model", help="the input model, .tflite or .onnx (never modified)")
    comp.add_argument("--target", required=True, help="e.g. ethos-u55-128, ethos-n78, xnnpack")
    comp.add_argument("-o", "--output-dir", default="output", metavar="OUTDIR", help="where to write (default: output)")
    comp.add_argument("--passes", metavar="LIST", help="run these passes instead of the target's default pipeline")
    comp.add_argument("--json", action="store_true", help="print the report as JSON")
    vela_group = comp.add_argument_group("Ethos-U (Vela) options")
    vela_group.add_argument("--config", metavar="VELA_INI", help="a Vela configuration file with more system configs")
    vela_group.add_argument("--system-config", metavar="NAME", help="Vela system config (default: Vela's default)")
    vela_group.add_argument("--memory-mode", metavar="NAME", help="Vela memory mode (default: Vela's default)")
    vela_group.add_argument(
        "--optimise", choices=("Performance", "Size"), default="Performance", help="Vela's goal (default Performance)"
    )
    vela_group.add_argument(
        "--vela-timeout",
        type=float,
        metavar="SECONDS",
        help="stop Vela after this long (default: 20 s + 0.2 s per op + 2 s per MB of model)",
    )
    xnn_group = comp.add_argument_group("XNNPACK options")
    xnn_group.add_argument("--fp16", action="store_true", help="store sparse weights as FLOAT16")
    comp.set_defaults(func=cmd_compile)

    passes = sub.add_parser("passes", help="list the passes with one-line descriptions")
    passes.add_argument("--json", action="store_true", help="print the list as JSON")
    passes.set_defaults(func=cmd_passes)

    view = sub.add_parser("view", help="show a model: terminal, JSON, offline HTML, DOT or SVG")
    view.add_argument("model", help="a .tflite file")
    view.add_argument("--passes", metavar="LIST", help="show the model after these passes")
    view.add_argument("--diff", action="store_true", help="with --passes: show what the passes changed")
    view.add_argument("--metrics", metavar="FILE", help='JSON {"op name": {"metric": number}} to show and colour by')
    view.add_argument("--html", metavar="OUT", help="write one self-contained HTML page (works offline)")
    view.add_argument("--dot", metavar="OUT", help="write Graphviz DOT text")
    view.add_argument("--svg", metavar="OUT", help="write SVG (needs Graphviz's dot; else the DOT text is written)")
    view.add_argument("--json", action="store_true", help="print the view as JSON")
    view.add_argument("--max-ops", type=int, default=0, metavar="N", help="ops to list in the terminal (0: all)")
    view.set_defaults(func=cmd_view)

    diff = sub.add_parser("diff", help="what changed between two models: ops removed, added, changed")
    diff.add_argument("a", help="the model before")
    diff.add_argument("b", help="the model after")
    diff.add_argument("--json", action="store_true", help="print the difference as JSON")
    diff.add_argument("--html", metavar="OUT", help="write B as an HTML page with the changes marked")
    diff.set_defaults(func=cmd_diff)

    verify = sub.add_parser("verify", help="compare two TFLite models on seeded inputs in LiteRT")
    verify.add_argument("a", help="the reference model")
    verify.add_argument("b", help="the model to check")
    verify.add_argument("--samples", type=_positive, default=3, help="number of seeded inputs (default 3)")
    verify.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    verify.add_argument("--atol", type=float, default=1e-6, help="absolute float tolerance (default 1e-6)")
    verify.add_argument("--rtol", type=float, default=1e-5, help="relative float tolerance (default 1e-5)")
    verify.add_argument("--max-steps", type=int, default=0, help="allowed integer difference in steps (default 0)")
    verify.add_argument(
        "--delegates",
        choices=("none", "default"),
        default="none",
        help="none: LiteRT's builtin kernels (default); default: with LiteRT's default delegate (XNNPACK)",
    )
    verify.add_argument("--json", action="store_true", help="print the comparison as JSON")
    verify.set_defaults(func=cmd_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except NpupassError as exc:
        print(f"npupass: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("npupass: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug, never bad input: one line, the traceback only with --debug
        from npupass.internal import internal_error_line

        if args.debug:
            import traceback

            traceback.print_exc()
        print(internal_error_line(exc), file=sys.stderr)
        return EXIT_INTERNAL
