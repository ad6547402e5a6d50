"""`npupass compile MODEL --target ethos-n78[-VARIANT]`: an int8 TFLite rewritten for Ethos-N coverage,
ready for Arm NN's TFLite delegate (backends EthosNAcc, CpuAcc, CpuRef), and a report of what runs where."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from npupass.backends.ethos_n import report
from npupass.backends.ethos_n.capabilities import VARIANTS, predicate
from npupass.backends.targets import Target
from npupass.backends.tflite import serialize_tflite
from npupass.errors import NpupassError
from npupass.fileio import atomic_write_all
from npupass.frontends import load_model
from npupass.ir.graph import Model
from npupass.ir.types import DType
from npupass.passes import DEFAULT_PIPELINE as CORE_PIPELINE
from npupass.passes import PassManager, PipelineResult
from npupass.passes.manager import has_fake_quant, parse_pipeline
from npupass.passes.partition import partition

DEFAULT_PIPELINE = ["legalize-ethos-n"]
# A quantization-aware export (FAKE_QUANT or QUANTIZE -> DEQUANTIZE pairs, ONNX QDQ) becomes int8 first.
FOLD_PIPELINE = parse_pipeline(CORE_PIPELINE)
FOLD_OPTIONS = {"fold-fake-quant": {"io": "int8"}}
SAMPLES = 3  # seeded inputs for the bit-exactness check


class FloatModelError(NpupassError):
    """The model computes in float; Ethos-N runs int8/uint8 only."""


class NotBitExactError(NpupassError):
    """The rewritten model's outputs differ in LiteRT from the int8 model legalization started from."""


def default_pipeline(model: Model) -> list[str]:
    """legalize-ethos-n, after FOLD_PIPELINE when the model carries fake quantization."""
    return (FOLD_PIPELINE if has_fake_quant(model) else []) + DEFAULT_PIPELINE


def split_pipeline(names: list[str]) -> tuple[list[str], list[str]]:
    """(folding, legalization): everything up to the last fold-fake-quant makes the int8 model; the
    rest must keep its integers, so only that part is checked for bit-exactness."""
    if "fold-fake-quant" not in names:
        return [], names
    cut = len(names) - names[::-1].index("fold-fake-quant")
    return names[:cut], names[cut:]


def _run(names: list[str], model: Model) -> PipelineResult:
    options = {k: v for k, v in FOLD_OPTIONS.items() if k in names}
    return PassManager(names, options=options).run(model)


def _refuse_float(model: Model, path: Path) -> None:
    """Raise FloatModelError unless the model (after any folding) computes in int8/uint8. Fake quantization
    left in place counts as float: the ops between the QUANTIZE/DEQUANTIZE pairs compute in float."""
    prefix = f"{path} is a float model; Ethos-N runs int8/uint8 only"
    if has_fake_quant(model):
        raise FloatModelError(
            f"{prefix}: its fake quantization is not folded: leave out --passes, or put fold-fake-quant in it"
        )
    graph = model.main
    quantized = any(
        t.dtype in (DType.INT8, DType.UINT8) and t.quant is not None and t.quant.is_affine
        for t in graph.tensors
        if not t.is_constant
    )
    if not quantized:
        raise FloatModelError(
            f"{prefix}: convert it to full int8 first (TFLite converter with a representative dataset, "
            "or quantization-aware training)"
        )


def _bit_exact(before: bytes, after: bytes) -> dict[str, Any]:
    from npupass.verify import LiteRTModel, Tolerance, compare

    comparison = compare(
        LiteRTModel(before), LiteRTModel(after), samples=SAMPLES, seed=0, tolerance=Tolerance(0.0, 0.0, 0)
    )
    return comparison.to_json()


def run(args: argparse.Namespace, target: Target) -> int:
    """Compile for Ethos-N; returns the exit code."""
    start = time.perf_counter()
    src = Path(args.model)
    variant = VARIANTS[target.variant]
    out_dir = Path(args.output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NpupassError(f"output directory {out_dir} is a file")
    model = load_model(src, calibration=args.calibration, integer=True)
    fold_names, legalize_names = split_pipeline(parse_pipeline(args.passes) if args.passes else default_pipeline(model))
    folded = _run(fold_names, model) if fold_names else None
    _refuse_float(model, src)
    graph = model.main
    # "before" is the int8 model legalization starts from: the input, or the input with its fake quant folded
    before_bytes = serialize_tflite(model) if model.source_format == "tflite" or folded is not None else None
    before = report.coverage(graph, variant)
    legalized = _run(legalize_names, model) if legalize_names else PipelineResult([])
    pipeline = PipelineResult(
        (folded.passes if folded else []) + legalized.passes, (folded.seconds if folded else 0.0) + legalized.seconds
    )
    after_bytes = serialize_tflite(model)
    exactness = _bit_exact(before_bytes, after_bytes) if before_bytes is not None and legalized.changed else None
    if exactness is not None:
        exactness["baseline"] = "after fold-fake-quant" if folded is not None else "input"
    if exactness is not None and not exactness["bit_exact"]:
        baseline = f"{src}'s" if folded is None else f"those of {src} with its fake quantization folded"
        raise NotBitExactError(f"the rewritten model's outputs differ from {baseline} in LiteRT; nothing written")
    part = partition(graph, predicate(variant))
    out_model = out_dir / f"{src.stem}_ethos-n78.tflite"
    out_report = out_dir / "report.json"
    if out_model.resolve() == src.resolve():
        raise NpupassError(f"refusing to overwrite the input model {src}; choose another --output-dir")
    data = report.build(
        graph,
        variant,
        before,
        part,
        {
            "input": str(src),
            "output": str(out_model),
            "report": str(out_report),
            "target": target.name,
            "pipeline": pipeline.to_json(),
            "bit_exact": exactness,
        },
    )
    data["seconds"] = round(time.perf_counter() - start, 4)
    atomic_write_all({out_model: after_bytes, out_report: (json.dumps(data, indent=2) + "\n").encode()})
    if args.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        from npupass.cli import _console

        report.render(_console(), data)
    return 0
