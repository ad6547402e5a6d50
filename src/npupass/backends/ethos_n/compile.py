"""Compiling for Ethos-N78: an int8 TFLite rewritten for Ethos-N coverage, ready for Arm NN's TFLite
delegate (backends EthosNAcc, CpuAcc, CpuRef), and a report of what runs where."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from npupass.backends.base import RefusedModelError, Target
from npupass.backends.ethos_n import report
from npupass.backends.ethos_n.capabilities import VARIANTS, predicate
from npupass.backends.tflite import serialize_tflite
from npupass.errors import NpupassError
from npupass.ir.analysis import float_model, has_fake_quant, integer_types
from npupass.ir.graph import Model
from npupass.ir.types import DType
from npupass.passes import PassManager, PipelineResult
from npupass.passes.partition import partition
from npupass.passes.policy import TargetNeeds, default_pipeline, pipeline_options

# A quantization-aware export (FAKE_QUANT or QUANTIZE -> DEQUANTIZE pairs, ONNX QDQ) becomes int8 first.
NEEDS = TargetNeeds(integer=True, then=("legalize-ethos-n",))
SAMPLES = 3  # seeded inputs for the bit-exactness check


class FloatModelError(RefusedModelError):
    """The model does not compute in int8/uint8; Ethos-N runs int8/uint8 only."""


class NotBitExactError(NpupassError):
    """The rewritten model's outputs differ in LiteRT from the int8 model legalization started from."""


def split_pipeline(names: list[str]) -> tuple[list[str], list[str]]:
    """(folding, legalization): everything up to the last fold-fake-quant makes the int8 model; the
    rest must keep its integers, so only that part is checked for bit-exactness."""
    if "fold-fake-quant" not in names:
        return [], names
    cut = len(names) - names[::-1].index("fold-fake-quant")
    return names[:cut], names[cut:]


def _run(names: list[str], model: Model) -> PipelineResult:
    return PassManager(names, options=pipeline_options(names, NEEDS)).run(model)


def _refuse_float(model: Model, path: str) -> None:
    """Raise FloatModelError unless the model (after any folding) computes in int8/uint8. Fake quantization
    left in place counts as float: the ops between the QUANTIZE/DEQUANTIZE pairs compute in float."""
    prefix = f"{path} is a float model; Ethos-N runs int8/uint8 only"
    if has_fake_quant(model):
        raise FloatModelError(
            f"{prefix}: its fake quantization is not folded: leave out --passes, or put fold-fake-quant in it"
        )
    if float_model(model) is not None:
        raise FloatModelError(
            f"{prefix}: convert it to full int8 first (TFLite converter with a representative dataset, "
            "or quantization-aware training)"
        )
    found = integer_types(model)
    if not found & {DType.INT8, DType.UINT8}:
        kinds = "/".join(sorted(str(t).lower() for t in found)) or "integers without quantization"
        raise FloatModelError(f"{path} computes in {kinds}; Ethos-N runs int8/uint8 only")


def _bit_exact(before: bytes, after: bytes) -> dict[str, Any]:
    from npupass.verify import LiteRTModel, Tolerance, compare

    comparison = compare(
        LiteRTModel(before), LiteRTModel(after), samples=SAMPLES, seed=0, tolerance=Tolerance(0.0, 0.0, 0)
    )
    return comparison.to_json()


def compile_ethos_n(model: Model, target: Target, passes: list[str] | None = None) -> tuple[dict[str, Any], bytes]:
    """Fold, legalize and check `model` (rewritten in place) for `target`: (report.json data, the model's bytes).

    The report's "output" and "report" name the files as `<stem>_ethos-n78.tflite` and `report.json`."""
    start = time.perf_counter()
    src = model.source_path or "the model"
    variant = VARIANTS[target.variant]
    fold_names, legalize_names = split_pipeline(passes or default_pipeline(model, NEEDS))
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
    data = report.build(
        graph,
        variant,
        before,
        part,
        {
            "input": src,
            "output": output_name(model),
            "report": "report.json",
            "target": target.name,
            "pipeline": pipeline.to_json(),
            "bit_exact": exactness,
        },
    )
    data["seconds"] = round(time.perf_counter() - start, 4)
    return data, after_bytes


def output_name(model: Model) -> str:
    return f"{Path(model.source_path or 'model').stem}_ethos-n78.tflite"
