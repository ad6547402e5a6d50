"""Compiling for XNNPACK: the sparse TFLite and its report.

The model is encode-sparsity's output (bit-identical outputs to the input unless fp16); the report has
the sizes, what each pass did, the preservation report, whether XNNPACK's sparse path would apply (per
conv, with the reason when not) and the outputs checked in LiteRT with the default delegate (XNNPACK)
and with the builtin kernels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from npupass.backends.base import Target
from npupass.backends.tflite import serialize_tflite
from npupass.backends.xnnpack.qualify import NOTE, qualify
from npupass.errors import NpupassError
from npupass.ir.graph import Model
from npupass.passes import PassManager
from npupass.passes.encode_sparsity import size_table, weight_sizes
from npupass.passes.policy import TargetNeeds, default_pipeline
from npupass.passes.preservation import PreservationReport
from npupass.view.console import render_preservation

NEEDS = TargetNeeds(then=("encode-sparsity",))
SAMPLES = 3


def compile_xnnpack(
    model: Model, target: Target, passes: list[str] | None = None, fp16: bool = False
) -> tuple[dict[str, Any], bytes]:
    """Run the pipeline on `model` (in place) and check the result: (report.json data, the model's bytes)."""
    original = Path(model.source_path).read_bytes() if model.source_path else serialize_tflite(model)
    names = passes or default_pipeline(model, NEEDS)
    options: dict[str, dict[str, Any]] = {}
    if fp16:
        if "encode-sparsity" not in names:
            raise NpupassError("--fp16 applies to encode-sparsity, which is not in --passes")
        options["encode-sparsity"] = {"fp16": True}
    preservation = PreservationReport()
    manager = PassManager(names, options=options)
    pipeline = manager.run(model, verify=preservation)
    data = serialize_tflite(model)
    qualification = qualify(model)
    report: dict[str, Any] = {
        "input": model.source_path or "",
        "output": f"{Path(model.source_path or 'model').stem}_xnnpack.tflite",
        "target": target.name,
        "fp16": fp16,
        "input_bytes": len(original),
        "output_bytes": len(data),
        "pipeline": pipeline.to_json(),
        "preservation": preservation.to_json(),
        "sparse_path": qualification.to_json(),
        "weights": weight_sizes(manager.passes),
        "verify": _verify(original, data, exact=not fp16) if model.source_format == "tflite" else None,
    }
    return report, data


def _verify(original: bytes, data: bytes, exact: bool) -> dict[str, Any]:
    """Outputs of the written model against the input's, in LiteRT with and without XNNPACK."""
    from npupass.verify import Tolerance, compare
    from npupass.verify.litert import LiteRTModel, ReferenceError

    result: dict[str, Any] = {}
    for delegates, key in (("default", "xnnpack_delegate"), ("none", "builtin_kernels")):
        try:
            a, b = LiteRTModel(original, delegates), LiteRTModel(data, delegates)
        except ReferenceError as exc:
            result[key] = {"ok": None, "error": f"could not verify: {exc}"}  # not the same as "not equivalent"
            continue
        c = compare(a, b, samples=SAMPLES, seed=0, tolerance=Tolerance(0.0, 0.0, 0))
        worst = max((o.max_abs_diff for o in c.outputs), default=0.0)
        ok = c.bit_exact or (not exact and not c.problems)
        result[key] = {"ok": ok, "bit_exact": c.bit_exact, "max_abs_diff": worst, "samples": SAMPLES}
    return result


def render_report(report: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    rewrites = {k: v for p in report["pipeline"]["passes"] for k, v in p["rewrites"].items()}
    console.print(
        f"wrote {report['output']} ({report['output_bytes']:,} bytes; input {report['input_bytes']:,}, "
        f"{report['output_bytes'] / max(1, report['input_bytes']):.3f}x)"
        + (f"; rewrites: {', '.join(f'{k} {v}' for k, v in sorted(rewrites.items()))}" if rewrites else "")
    )
    render_preservation(console, report["preservation"])
    if report["weights"]:
        header, rows, notes = size_table(report["weights"])
        sizes = Table(*header, title="weights (bytes: dense, as stored, as the TF converter stores them)")
        sizes.caption = "\n".join(notes) or None
        for row in rows:
            sizes.add_row(*row)
        console.print(sizes)
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
