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
from npupass.fileio import atomic_write
from npupass.frontends import load_model
from npupass.ir.graph import Model
from npupass.ir.types import DType
from npupass.passes import PassManager
from npupass.passes.partition import partition

DEFAULT_PIPELINE = "legalize-ethos-n"
SAMPLES = 3  # seeded inputs for the bit-exactness check


class FloatModelError(NpupassError):
    """The model computes in float; Ethos-N runs int8/uint8 only."""


class NotBitExactError(NpupassError):
    """The rewritten model's outputs differ from the input model's in LiteRT."""


def _refuse_float(model: Model, path: Path) -> None:
    graph = model.main
    quantized = any(
        t.dtype in (DType.INT8, DType.UINT8) and t.quant is not None and t.quant.is_affine
        for t in graph.tensors
        if not t.is_constant
    )
    if quantized:
        return
    fake_quant = any(op.type in ("FAKE_QUANT", "QUANTIZE", "DEQUANTIZE") for op in graph.iter_ops())
    how = (
        f"fold its fake quantization first: npupass convert {path} -o model_int8.tflite "
        "--passes fold-fake-quant --io int8"
        if fake_quant
        else "convert it to full int8 first (TFLite converter with a representative dataset, "
        "or quantization-aware training)"
    )
    raise FloatModelError(f"{path} is a float model; Ethos-N runs int8/uint8 only: {how}")


def _bit_exact(before: bytes, after: bytes) -> dict[str, Any]:
    from npupass.verify import LiteRTModel, Tolerance, compare

    comparison = compare(
        LiteRTModel(before), LiteRTModel(after), samples=SAMPLES, seed=0, tolerance=Tolerance(0.0, 0.0, 0)
    )
    return comparison.to_json() | {"bit_exact": all(o.bit_exact for o in comparison.outputs)}


def run(args: argparse.Namespace, target: Target) -> int:
    """Compile for Ethos-N; returns the exit code."""
    start = time.perf_counter()
    if args.ethosn_support_lib:  # issue item 4 (optional): not built yet; say so rather than ignore it
        raise NpupassError("--ethosn-support-lib: the cross-check against libEthosNSupport is not implemented yet")
    src = Path(args.model)
    variant = VARIANTS[target.variant]
    out_dir = Path(args.output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NpupassError(f"output directory {out_dir} is a file")
    model = load_model(src)
    _refuse_float(model, src)
    graph = model.main
    before_bytes = serialize_tflite(model) if model.source_format == "tflite" else None
    before = report.coverage(graph, variant)
    pipeline = PassManager(args.passes or DEFAULT_PIPELINE).run(model)
    after_bytes = serialize_tflite(model)
    exactness = _bit_exact(before_bytes, after_bytes) if before_bytes is not None and pipeline.changed else None
    if exactness is not None and not exactness["bit_exact"]:
        raise NotBitExactError(f"the rewritten model's outputs differ from {src}'s in LiteRT; nothing written")
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
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_model, [after_bytes])
    atomic_write(out_report, [(json.dumps(data, indent=2) + "\n").encode()])
    if args.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        from npupass.cli import _console

        report.render(_console(), data)
    return 0
