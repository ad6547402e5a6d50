"""The `npupass` command."""

from __future__ import annotations

import argparse
import contextlib
import json
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

EXIT_OK, EXIT_DIFFERENT, EXIT_ERROR = 0, 1, 2


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
        f"[bold]{path}[/bold]: {info['format']} (schema v{info['schema_version']}), {info['file_bytes']:,} bytes"
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
    model = load_model(src)
    write_tflite(model, out, buffers=args.buffers)
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {
        "input": str(src),
        "output": str(out),
        "output_bytes": out.stat().st_size,
        "ops": sum(len(g.ops) for g in model.subgraphs),
        "seconds": round(seconds, 4),
    }
    status = EXIT_OK
    comparison = None
    if args.verify:
        from npupass.verify import verify_files

        with _progress("verifying", args.samples) as progress:
            comparison = verify_files(src, out, samples=args.samples, seed=args.seed, progress=progress)
        result["verify"] = comparison.to_json()
        status = EXIT_OK if comparison.equivalent else EXIT_DIFFERENT
    if args.json:
        _print_json(result)
        return status
    console = _console()
    console.print(f"wrote {out} ({result['output_bytes']:,} bytes, {result['ops']} ops) in {seconds:.2f} s")
    if comparison is not None:
        _render_comparison(console, comparison, str(src), str(out))
    return status


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


# --- entry point -------------------------------------------------------------------------------
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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser("info", help="summarize a model: ops, tensors, parameters, quantization")
    info.add_argument("model", help="a .tflite file")
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.add_argument(
        "--max-ops", type=int, default=200, metavar="N", help="ops to list in the table (0: all; default 200)"
    )
    info.set_defaults(func=cmd_info)

    convert = sub.add_parser("convert", help="read a model and write it as TFLite")
    convert.add_argument("model", help="the input model (never modified)")
    convert.add_argument("-o", "--output", required=True, help="the .tflite file to write (written atomically)")
    convert.add_argument(
        "--buffers",
        choices=("auto", "inline", "external"),
        default="auto",
        help="where constants go: inside the flatbuffer, after it, or as in the input (default)",
    )
    convert.add_argument("--verify", action="store_true", help="compare the output with the input in LiteRT")
    convert.add_argument("--samples", type=_positive, default=3, help="seeded inputs for --verify (default 3)")
    convert.add_argument("--seed", type=int, default=0, help="first seed for --verify (default 0)")
    convert.add_argument("--json", action="store_true", help="print the result as JSON")
    convert.set_defaults(func=cmd_convert)

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
