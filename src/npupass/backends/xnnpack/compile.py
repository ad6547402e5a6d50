"""`npupass compile MODEL --target xnnpack [--fp16]`: the sparse TFLite for XNNPACK, and its report.

Writes OUTDIR/<stem>_xnnpack.tflite (encode-sparsity's output: bit-identical outputs to MODEL
unless --fp16) and OUTDIR/report.json: the sizes, what each pass did, the preservation report,
whether XNNPACK's sparse path would apply (per conv, with the reason when not) and the outputs
checked in LiteRT with the default delegate (XNNPACK) and with the builtin kernels.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from npupass.backends.targets import Target
from npupass.backends.tflite import serialize_tflite
from npupass.backends.xnnpack.qualify import NOTE, qualify
from npupass.errors import NpupassError
from npupass.fileio import atomic_write_all
from npupass.frontends import load_model
from npupass.passes import PassManager
from npupass.passes.manager import parse_pipeline
from npupass.passes.preservation import PreservationReport, render

DEFAULT_PIPELINE = "encode-sparsity"
ONNX_PIPELINE = "fold-batch-norm,fuse-activations,encode-sparsity"
SAMPLES = 3


def run(args: argparse.Namespace, target: Target) -> int:
    src = Path(args.model)
    out_dir = Path(args.output_dir)
    model = load_model(src, calibration=args.calibration)
    names = parse_pipeline(args.passes or (ONNX_PIPELINE if model.source_format == "onnx" else DEFAULT_PIPELINE))
    options: dict[str, dict[str, Any]] = {}
    if args.fp16:
        if "encode-sparsity" not in names:
            raise NpupassError("--fp16 applies to encode-sparsity, which is not in --passes")
        options["encode-sparsity"] = {"fp16": True}
    preservation = PreservationReport()
    pipeline = PassManager(names, options=options).run(model, verify=preservation)
    data = serialize_tflite(model)
    if out_dir.exists() and not out_dir.is_dir():
        raise NpupassError(f"{out_dir} exists and is not a directory")
    out = out_dir / f"{src.stem}_xnnpack.tflite"
    if out.exists() and out.resolve() == src.resolve():
        raise NpupassError(f"refusing to overwrite the input model {src}; choose another output directory")
    qualification = qualify(model)
    report: dict[str, Any] = {
        "input": str(src),
        "output": str(out),
        "target": target.name,
        "fp16": bool(args.fp16),
        "input_bytes": src.stat().st_size,
        "output_bytes": len(data),
        "pipeline": pipeline.to_json(),
        "preservation": preservation.to_json(),
        "sparse_path": qualification.to_json(),
        "verify": _verify(src, data, exact=not args.fp16) if model.source_format == "tflite" else None,
    }
    atomic_write_all({out: data, out_dir / "report.json": json.dumps(report, indent=2).encode() + b"\n"})
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        _render(report, preservation)
    failed = report["verify"] is not None and not all(v.get("ok") for v in report["verify"].values())
    return 1 if failed else 0


def _verify(src: Path, data: bytes, exact: bool) -> dict[str, Any]:
    """Outputs of the written model against the input's, in LiteRT with and without XNNPACK."""
    from npupass.verify import Tolerance, compare
    from npupass.verify.litert import LiteRTModel, ReferenceError

    result: dict[str, Any] = {}
    original = src.read_bytes()
    for delegates, key in (("default", "xnnpack_delegate"), ("none", "builtin_kernels")):
        try:
            a, b = LiteRTModel(original, delegates), LiteRTModel(data, delegates)
        except ReferenceError as exc:
            result[key] = {"ok": False, "error": str(exc)}
            continue
        c = compare(a, b, samples=SAMPLES, seed=0, tolerance=Tolerance(0.0, 0.0, 0))
        worst = max((o.max_abs_diff for o in c.outputs), default=0.0)
        ok = c.bit_exact or (not exact and not c.problems)
        result[key] = {"ok": ok, "bit_exact": c.bit_exact, "max_abs_diff": worst, "samples": SAMPLES}
    return result


def _render(report: dict[str, Any], preservation: PreservationReport) -> None:
    from rich.table import Table

    from npupass.cli import _console

    console = _console()
    rewrites = {k: v for p in report["pipeline"]["passes"] for k, v in p["rewrites"].items()}
    console.print(
        f"wrote {report['output']} ({report['output_bytes']:,} bytes; input {report['input_bytes']:,}, "
        f"{report['output_bytes'] / max(1, report['input_bytes']):.3f}x)"
        + (f"; rewrites: {', '.join(f'{k} {v}' for k, v in sorted(rewrites.items()))}" if rewrites else "")
    )
    render(console, preservation)
    sparse = report["sparse_path"]
    table = Table(title="XNNPACK sparse path", title_justify="left")
    for col in ("conv", "kind", "sparse path", "why not"):
        table.add_column(col)
    for c in sparse["convs"]:
        table.add_row(c["op"], c["kind"], "yes" if c["sparse_path"] else "no", c["reason"] or "")
    console.print(table)
    verdict = "qualifies" if sparse["qualifies"] else "does not qualify: " + "; ".join(sparse["reasons"])
    console.print(f"sparse path: {verdict} (1x1 conv weights {sparse['zeros_1x1']:.1%} zeros)")
    console.print(NOTE)
    for key, v in (report["verify"] or {}).items():
        text = v.get("error") or ("bit-exact" if v["bit_exact"] else f"max |diff| {v['max_abs_diff']:.3g}")
        console.print(f"LiteRT {key.replace('_', ' ')}: {text}")
