"""Compiling for Cortex-M: an int8 TFLite proven to run in TFLite Micro, with its arena.

`compile_cortex_m` does the work on an IR model and returns the report and the files as bytes.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import numpy as np

from npupass.backends.base import RefusedModelError
from npupass.backends.cortex_m.c_source import DEFAULT_SECTION, c_identifier, check_section, emit_c
from npupass.backends.tflite import serialize_tflite
from npupass.errors import NpupassError
from npupass.ir.analysis import float_model, has_fake_quant
from npupass.ir.graph import Model
from npupass.passes import PassManager
from npupass.passes.policy import TargetNeeds, default_pipeline, pipeline_options
from npupass.verify.tflm import MEASURE_ARENA, OpProblem, TflmRun, arena_json, check_ops, custom_codes, run_tflm

# fold-batch-norm and fuse-activations always, fold-fake-quant (int8 I/O) for a quantization-aware export
NEEDS = TargetNeeds(canonicalize="always", integer=True)
SAMPLES = 3
MAX_STEPS = 1  # TFLM's reference kernels may round a tie differently from LiteRT's optimized ones


class FloatModelError(RefusedModelError):
    """The model computes in float; Cortex-M deployment wants int8."""


class UnsupportedOpsError(NpupassError):
    """TFLM cannot run some op of the model."""


class ArenaLimitError(NpupassError):
    """The tensor arena TFLM needs exceeds --arena-limit."""


def refuse_float(model: Model) -> None:
    """Raise FloatModelError unless the main graph's activations are integer-quantized."""
    if has_fake_quant(model):
        raise FloatModelError(
            "the model's fake quantization is not folded, so it would run in float: leave out --passes, "
            "or put fold-fake-quant in it"
        )
    if float_model(model) is None:
        return
    raise FloatModelError(
        "the model computes in float: on a Cortex-M that means TFLM's slow reference float kernels "
        "(CMSIS-NN has int8/int16 kernels only) and four times the flash and arena; convert it to full "
        "int8 (TFLite converter with a representative dataset, or quantization-aware training) and compile that"
    )


def _problems_json(problems: list[OpProblem]) -> list[dict[str, Any]]:
    return [{"op": p.op, "index": p.index, "reason": p.reason} for p in problems]


def _tolerances(model: Model) -> list[Any]:
    """Per graph output: MAX_STEPS steps; for a float output made by DEQUANTIZE, MAX_STEPS of its input's scale."""
    from npupass.verify.compare import Tolerance

    graph = model.main
    result = []
    for t in graph.outputs:
        producer = graph.producer(t)
        source = graph.inputs_of(producer)[0] if producer is not None and producer.type == "DEQUANTIZE" else None
        if t.dtype.is_float and source is not None and source.quant is not None and source.quant.scale.size:
            result.append(Tolerance(MAX_STEPS * float(np.max(source.quant.scale)) * 1.001, 1e-5, MAX_STEPS))
        else:
            result.append(Tolerance(1e-6, 1e-5, MAX_STEPS))
    return result


def _agreement(
    litert_outputs: list[list[np.ndarray]], run: TflmRun, names: list[str], tolerances: list[Any]
) -> dict[str, Any]:
    """TFLM vs LiteRT per output, in quantization steps (ints) or absolute difference (floats)."""
    from npupass.verify.compare import OutputComparison, compare_arrays

    per_output: list[OutputComparison | None] = [None] * len(names)
    for reference, got in zip(litert_outputs, run.outputs, strict=True):
        for i, (x, y) in enumerate(zip(reference, got, strict=True)):
            if y.size != x.size:  # a model the two interpreters read differently: nothing to compare
                raise NpupassError(
                    f"TFLM and LiteRT disagree on output '{names[i]}': {y.size} elements against {x.size}"
                )
            c = compare_arrays(x, y.reshape(x.shape), tolerances[i], names[i])
            prev = per_output[i]
            if prev is not None:
                c.elements += prev.elements
                c.mismatched += prev.mismatched
                c.bit_exact = c.bit_exact and prev.bit_exact
                c.max_steps = max(c.max_steps or 0, prev.max_steps or 0) if c.max_steps is not None else None
                c.max_abs_diff = max(c.max_abs_diff, prev.max_abs_diff)
            per_output[i] = c
    outputs = [
        {
            "name": c.name,
            "bit_exact": c.bit_exact,
            "max_steps": c.max_steps,
            "max_abs_diff": c.max_abs_diff,
            "differing_elements": _differing(litert_outputs, run, i),
            "elements": c.elements,
        }
        for i, c in enumerate(per_output)
        if c is not None
    ]
    return {
        "samples": len(litert_outputs),
        "bit_exact": all(o["bit_exact"] for o in outputs),
        "within_steps": MAX_STEPS,
        "ok": all(c is not None and c.mismatched == 0 for c in per_output),
        "outputs": outputs,
    }


def _differing(reference: list[list[np.ndarray]], run: TflmRun, i: int) -> int:
    return sum(
        int(np.count_nonzero(r[i] != g[i].reshape(r[i].shape))) for r, g in zip(reference, run.outputs, strict=True)
    )


def _fail_text(run: TflmRun) -> str:
    if run.problems:
        return "; ".join(p.text() for p in run.problems)
    return run.error or run.stage


def compile_cortex_m(
    model: Model, target_name: str, *, passes: list[str] | None = None, options: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Compile `model` (rewritten in place) for TFLM on a Cortex-M: returns (report, {file name: bytes}).

    options: name (file stem, default "model"), allow_unsupported, arena_limit (bytes), compress ("lut"),
    emit ("c"), c_section (default .rodata), samples, seed, explain_differences (run each op alone in both
    interpreters when the model's outputs are not bit-exact; default True). The outputs agree ("ok") when
    they are within MAX_STEPS steps of LiteRT's, or when every op alone is.
    Raises FloatModelError, UnsupportedOpsError, ArenaLimitError, TflmUnavailableError.
    """
    from npupass.verify.compare import float_input_ranges
    from npupass.verify.litert import LiteRTModel, make_inputs
    from npupass.verify.tflm import op_differences, require_tflm

    opts = dict(options or {})
    name = str(opts.get("name") or "model")
    samples, seed = int(opts.get("samples", SAMPLES)), int(opts.get("seed", 0))
    section = check_section(str(opts.get("c_section") or DEFAULT_SECTION))
    if opts.get("emit") not in (None, "c"):
        raise NpupassError(f"--emit {opts['emit']}: only 'c' is supported")
    if opts.get("compress") not in (None, "lut"):
        raise NpupassError(f"--compress {opts['compress']}: only 'lut' is supported")
    require_tflm()
    start = time.perf_counter()
    names = passes or default_pipeline(model, NEEDS)
    pipeline = PassManager(names, options=pipeline_options(names, NEEDS)).run(model)
    refuse_float(model)
    data = serialize_tflite(model)

    reference = LiteRTModel(data)
    ranges = float_input_ranges(model)
    inputs = [make_inputs(reference.inputs, seed + s, ranges) for s in range(samples)]
    litert_outputs = [reference.run(x) for x in inputs]

    compression = None
    if opts.get("compress") == "lut":
        from npupass.backends.cortex_m.lut import compress_lut

        data, compression = compress_lut(data, inputs)

    run = run_tflm(data, inputs, custom_codes=custom_codes(model))
    unsupported: list[OpProblem] = []
    if not run.ok:
        if run.arena_missing is not None and not run.problems:
            raise NpupassError(f"TFLM could not allocate the model in {MEASURE_ARENA:,} bytes of arena")
        # name the culprit: TFLM's message names it, else (a crash) each op alone finds it
        unsupported = run.problems if run.problems and run.stage != "crash" else check_ops(model)
        order = model.main.ops
        for p in unsupported:  # "no kernel" messages name the op type only: place it when it is the only one
            same = [i for i, op in enumerate(order) if op.type == p.op]
            if p.index is None and len(same) == 1:
                p.index = same[0]
        if not unsupported:
            raise NpupassError(f"TFLM failed to run the model: {_fail_text(run)}")
        if not opts.get("allow_unsupported"):
            listed = "; ".join(p.text() for p in unsupported)
            raise UnsupportedOpsError(
                f"TFLM cannot run {len(unsupported)} op(s) of the model: {listed} "
                "(--allow-unsupported writes it anyway)"
            )

    arena = run.arena
    limit = opts.get("arena_limit")
    limit_check = None
    if limit is not None and arena is not None:
        at_limit = run_tflm(data, inputs[:1], arena_size=int(limit))
        if not at_limit.ok:
            raise ArenaLimitError(
                f"the tensor arena needs {arena.total:,} bytes, limit {int(limit):,} (TFLM: {_fail_text(at_limit)})"
            )
        limit_check = {"limit": int(limit), "fits": True}

    agreement = None
    differences = None
    if run.ok:
        agreement = _agreement(litert_outputs, run, [s.name for s in reference.outputs], _tolerances(model))
        explain = opts.get("explain_differences", True)
        if not agreement["bit_exact"] and (explain or not agreement["ok"]):
            found = op_differences(model, samples=samples, seed=seed)
            differences = [asdict(d) for d in found]
            # one step per op can add up through the network: the kernels agreeing is what counts
            agreement["ok"] = agreement["ok"] or all(d.max_steps <= MAX_STEPS for d in found)

    files: dict[str, bytes] = {f"{name}.tflite": data}
    if opts.get("emit") == "c":
        files.update(emit_c(data, c_identifier(name), arena.total if arena else None, section))
    report: dict[str, Any] = {
        "input": model.source_path or "",
        "output": f"{name}.tflite",
        "target": target_name,
        "runtime": "TensorFlow Lite for Microcontrollers (tflite-micro host interpreter, reference kernels)",
        "flash_bytes": len(data),
        "arena": arena_json(arena),
        "arena_limit": limit_check,
        "unsupported_ops": _problems_json(unsupported),
        "tflm_vs_litert": agreement,
        "op_differences": differences,
        "compression": compression,
        "pipeline": pipeline.to_json(),
        "files": [*sorted(files), "report.json"],
        "c_section": section if opts.get("emit") == "c" else None,
        "seconds": 0.0,
    }
    report["seconds"] = round(time.perf_counter() - start, 3)
    return report, files


def render_report(report: dict[str, Any], console: Any) -> None:
    from pathlib import Path

    out_dir = Path(report["output"]).parent
    console.print(f"wrote {', '.join(str(out_dir / f) for f in report['files'])}")
    console.print(f"flash (model bytes): {report['flash_bytes']:,}")
    arena = report["arena"]
    if arena:
        console.print(
            f"tensor arena (TFLM recording allocator): {arena['total']:,} bytes "
            f"(head {arena['head']:,} planned tensors, tail {arena['tail']:,} persistent)"
        )
    for p in report["unsupported_ops"]:
        where = f" (op {p['index']})" if p["index"] is not None else ""
        console.print(f"[red]not runnable in TFLM[/red]: {p['op']}{where}: {p['reason']}")
    agreement = report["tflm_vs_litert"]
    if agreement:
        for o in agreement["outputs"]:
            text = "bit-exact" if o["bit_exact"] else (
                f"largest difference {o['max_steps']} step(s) on {o['differing_elements']} of {o['elements']} "
                "elements" if o["max_steps"] is not None else f"max |diff| {o['max_abs_diff']:.3g}"
            )  # fmt: skip
            console.print(f"TFLM vs LiteRT, output '{o['name']}' ({agreement['samples']} seeded inputs): {text}")
    for d in report["op_differences"] or []:
        console.print(
            f"  {d['op']} (op {d['index']}) alone: up to {d['max_steps']} step(s) on {d['mismatched']} "
            f"of {d['elements']} elements"
        )
    c = report["compression"]
    if c:
        console.print(
            f"LUT compression: {c['compressed_tensors']} tensor(s), {c['bytes_before']:,} -> {c['bytes_after']:,} "
            f"bytes ({c['ratio']:.3f}x){', TFLM outputs bit-identical' if c['verified'] else ''}"
        )
