"""The `npupass` command: a thin face over the library (npupass.api). Nothing imports this package."""

from __future__ import annotations

import argparse
import sys

from npupass import __version__
from npupass.backends.base import Option, backends, positive_int
from npupass.cli.commands import (
    EXIT_ERROR,
    EXIT_INTERNAL,
    EXIT_OK,
    cmd_compile,
    cmd_convert,
    cmd_diff,
    cmd_info,
    cmd_passes,
    cmd_targets,
    cmd_verify,
    cmd_view,
)
from npupass.cli.sweep import add_sweep_parser
from npupass.errors import NpupassError

CALIBRATION_HELP = (
    "Keras/SavedModel input: a .npy (N samples of the input) or .npz (one array per input name) to quantize a "
    "float model to full int8 with TensorFlow's converter"
)


def _target_families() -> str:
    from npupass.backends.base import _families

    return _families(backends())


def _default_pipelines() -> str:
    """Each backend's default pipeline as `npupass compile --help` states it (from its TargetNeeds)."""
    from npupass.passes.policy import CANONICALIZE, FOLD_FAKE_QUANT

    texts = []
    for backend in backends():
        needs = backend.needs
        names = ",".join(CANONICALIZE) if needs.canonicalize == "always" else "[" + ",".join(CANONICALIZE) + "]"
        names += f",[{FOLD_FAKE_QUANT}]" if needs.integer else ""
        names += "".join(f",{n}" for n in needs.then)
        texts.append(f"{backend.name}: {names}")
    return "; ".join(texts) + " ([...]: when the model needs it)"


def _add_backend_options(parser: argparse.ArgumentParser) -> None:
    """One argument group per backend, built from the options it declares."""
    seen: set[str] = set()
    for backend in backends():
        declared = [o for o in backend.options if o.name not in seen]
        if not declared:
            continue
        group = parser.add_argument_group(backend.option_group or f"{backend.name} options")
        for option in declared:
            seen.add(option.name)
            _add_option(group, option)


def _add_option(group: argparse._ArgumentGroup, option: Option) -> None:
    if option.type is bool:
        group.add_argument(option.flag, dest=option.name, action="store_true", help=option.help)
        return
    group.add_argument(
        option.flag,
        dest=option.name,
        type=option.type,
        default=option.default,
        choices=option.choices,
        metavar=option.metavar,
        help=option.help,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="npupass", description="Graph-rewriting compiler passes for TFLite models and NPUs."
    )
    parser.add_argument("--version", action="version", version=f"npupass {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an internal error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser("info", help="summarize a model: ops, tensors, parameters, quantization")
    info.add_argument("model", help="a .tflite or .onnx model")
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
    convert.add_argument("--samples", type=positive_int, default=3, help="seeded inputs for --verify (default 3)")
    convert.add_argument("--seed", type=int, default=0, help="first seed for --verify (default 0)")
    convert.add_argument(
        "--pass-option",
        action="append",
        default=[],
        metavar="PASS:KEY=VALUE",
        help="an option of a pass in --passes, e.g. encode-clusters:max_values=20 or encode-sparsity:fp16=true "
        "(repeatable; `npupass passes` names the passes)",
    )
    convert.add_argument("--json", action="store_true", help="print the result as JSON")
    convert.add_argument("--calibration", metavar="DATA", help=CALIBRATION_HELP)
    convert.add_argument(
        "--preservation",
        action="store_true",
        help="with --passes: per weight, zeros and distinct values before and after each pass",
    )
    convert.set_defaults(func=cmd_convert)

    comp = sub.add_parser(
        "compile",
        help="compile a model for an NPU or CPU target and report what runs where",
        description=f"Compile MODEL (.tflite or .onnx, never modified) for --target: {_target_families()}. "
        "`npupass targets` lists every target.",
    )
    comp.add_argument("model", help="the input model, .tflite or .onnx (never modified)")
    comp.add_argument("--target", required=True, help="e.g. ethos-u55-128, ethos-n78, xnnpack")
    comp.add_argument("-o", "--output-dir", default="output", metavar="OUTDIR", help="where to write (default: output)")
    comp.add_argument(
        "--passes",
        metavar="LIST",
        help="run these passes instead of the target's default pipeline; a LIST starting with '+' "
        f"(+encode-clusters) extends the default. Default pipelines: {_default_pipelines()}",
    )
    comp.add_argument("--add-passes", metavar="LIST", help="run these passes after the target's default pipeline")
    comp.add_argument("--json", action="store_true", help="print the report as JSON")
    comp.add_argument("--calibration", metavar="DATA", help=CALIBRATION_HELP)
    comp.add_argument("--explain", action="store_true", help="list every rewrite the passes declined, and why")
    comp.add_argument(
        "--preservation",
        action="store_true",
        help="per weight, zeros and distinct values before and after each pass (always in report.json)",
    )
    comp.add_argument(
        "--per-layer-csv",
        action="store_true",
        help="also write OUTDIR/per_layer.csv: every TFLite op's cycles, share, MACs, MAC utilisation, bound, "
        "device and CPU reasons",
    )
    _add_backend_options(comp)
    comp.set_defaults(func=cmd_compile)

    targets = sub.add_parser("targets", help="list the compile targets with one-line descriptions")
    targets.add_argument("--json", action="store_true", help="print the list as JSON")
    targets.set_defaults(func=cmd_targets)

    passes = sub.add_parser("passes", help="list the passes with one-line descriptions")
    passes.add_argument("--json", action="store_true", help="print the list as JSON")
    passes.set_defaults(func=cmd_passes)

    view = sub.add_parser("view", help="show a model: terminal, JSON, offline HTML, DOT or SVG")
    view.add_argument("model", help="a .tflite or .onnx model")
    view.add_argument("--passes", metavar="LIST", help="show the model after these passes")
    view.add_argument(
        "--target",
        help="show where each op would run on this target (NPU/CPU and why), after its default pipeline, "
        "without compiling",
    )
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
    diff.add_argument("--full", action="store_true", help="list every op and tensor that changed (default: a summary)")
    diff.add_argument("--html", metavar="OUT", help="write B as an HTML page with the changes marked")
    diff.set_defaults(func=cmd_diff)

    verify = sub.add_parser("verify", help="compare two models on seeded inputs: TFLite in LiteRT, ONNX in onnxruntime")
    verify.add_argument("a", help="the reference model")
    verify.add_argument("b", help="the model to check")
    verify.add_argument("--samples", type=positive_int, default=3, help="number of seeded inputs (default 3)")
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

    add_sweep_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
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

        if "--debug" in (sys.argv[1:] if argv is None else argv):
            import traceback

            traceback.print_exc()
        print(internal_error_line(exc), file=sys.stderr)
        return EXIT_INTERNAL
