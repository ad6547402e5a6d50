"""`npupass compile MODEL --target ethos-u55-128`: passes, partition, Vela, and a report of what runs where."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from npupass.backends.ethos_u.capabilities import npu_reasons
from npupass.backends.ethos_u.vela import (
    VelaConfig,
    VelaResult,
    compile_vela,
    inference_seconds,
    vela_setup,
    vela_timeout,
)
from npupass.backends.targets import Target
from npupass.errors import NpupassError
from npupass.ir.graph import Graph, Model, Op
from npupass.passes import PassManager, PipelineResult
from npupass.passes.manager import has_fake_quant, label, op_name, parse_pipeline
from npupass.passes.partition import CPU, NPU, Partition, partition

BASE_PIPELINE = ["fold-batch-norm", "fuse-activations"]
TOP_LAYERS = 10


class FloatModelError(NpupassError):
    """A float model without quantization: Vela would leave every op on the CPU."""


def default_pipeline(model: Model) -> list[str]:
    """Batch-norm folding and fusion, then fold-fake-quant when the model carries fake quantization.

    fold-fake-quant runs last because it needs IR-only ops (an ONNX BATCH_NORM) lowered first; the
    PassManager reruns the others after it until nothing changes.
    """
    return BASE_PIPELINE + (["fold-fake-quant"] if has_fake_quant(model) else [])


def refuse_float(model: Model) -> None:
    """Raise FloatModelError when the main graph's activations are float with nothing to quantize them with.

    A dynamic-range model (int8 weights, float activations) counts as float: the NPU needs integer activations.
    """
    graph = model.main
    if has_fake_quant(model):
        return
    activations = [t for t in graph.tensors if not t.is_constant]
    if any(t.quant is not None and t.quant.is_affine and not t.dtype.is_float for t in activations):
        return
    n = sum(1 for _ in graph.iter_ops())
    raise FloatModelError(
        f"the model's activations are float with no quantization information, so Vela would run none of its {n} "
        "ops on the NPU (the Ethos-U NPU computes in int8/int16 and Vela does not quantize); export it with "
        "quantization-aware "
        "training (FAKE_QUANT or QUANTIZE/DEQUANTIZE pairs) or convert it to full int8 with a representative "
        "dataset, and compile that"
    )


@dataclass
class EthosUCompile:
    """Everything one compile produced: the rewritten model, our placement, Vela's result."""

    target: Target
    config: VelaConfig
    model: Model
    pipeline: PipelineResult
    partition: Partition
    vela: VelaResult
    npupass_seconds: float
    ops: list[Op]
    """The main graph's ops in the order written for Vela: Vela's op indices refer to this list."""
    disagreements: list[dict[str, Any]] = field(default_factory=list)


def placement_disagreements(
    graph: Graph, ops: list[Op], predicted: Partition, vela: VelaResult
) -> list[dict[str, Any]]:
    """Ops where our predicted device differs from Vela's (`ops` in the order they were written)."""
    out = []
    for index, op in enumerate(ops):
        vela_device = CPU if index in vela.cpu_ops else NPU
        ours = predicted.placement[op].device
        if ours != vela_device:
            out.append({"index": index, "op": label(graph, op), "predicted": ours, "vela": vela_device})
    return out


def compile_ethos_u(
    model: Model,
    target: Target,
    config: VelaConfig,
    passes: str | None = None,
    tick: Callable[[float], None] | None = None,
    isolate: bool = True,
    timeout: float | None = None,
) -> EthosUCompile:
    """Run the pipeline, partition for `target`, serialize and compile with Vela (model is rewritten in place).

    Vela is stopped after `timeout` seconds (default: `vela_timeout` of the model's size and op count)."""
    from npupass.backends.tflite import serialize_tflite

    start = time.perf_counter()
    vela_setup(config)  # a bad --system-config or --config fails before any work
    refuse_float(model)
    names = parse_pipeline(passes) if passes else default_pipeline(model)
    options = {"fold-fake-quant": {"io": "int8"}} if "fold-fake-quant" in names else {}
    pipeline = PassManager(names, options=options).run(model)
    graph = model.main
    predicted = partition(graph, lambda g, op: npu_reasons(g, op, target.core))
    tflite = serialize_tflite(model)
    npupass_seconds = time.perf_counter() - start
    limit = timeout if timeout is not None else vela_timeout(len(tflite), sum(1 for _ in graph.iter_ops()))
    vela = compile_vela(tflite, config, tick=tick, isolate=isolate, timeout=limit)
    ops = graph.ops  # the writer's order
    result = EthosUCompile(target, config, model, pipeline, predicted, vela, npupass_seconds, ops)
    result.disagreements = placement_disagreements(graph, ops, predicted, vela)
    return result


def _cpu_ops(result: EthosUCompile) -> list[dict[str, Any]]:
    graph = result.model.main
    rows = []
    vela_reasons = result.vela.messages
    for index, op in enumerate(result.ops):
        if index not in result.vela.cpu_ops:
            continue
        reasons = result.partition.placement[op].reasons
        if not reasons:  # Vela placed it on the CPU against our prediction: give Vela's words
            out = graph.outputs_of(op)
            reasons = [m for m in vela_reasons if out and f"'{out[0].name}'" in m] or ["Vela placed it on the CPU"]
        rows.append({"index": index, "op": op.type, "name": op_name(graph, op), "reasons": reasons})
    return rows


def report_json(result: EthosUCompile, source: Path, output: Path) -> dict[str, Any]:
    graph, ops, vela = result.model.main, result.ops, result.vela
    setup = vela_setup(result.config)
    seconds = inference_seconds(vela, result.config)
    cycles_per_op: dict[int, int] = {}
    for layer in vela.layers:  # Vela's internal ops, summed per TFLite op they came from
        cycles_per_op[layer.source_index] = cycles_per_op.get(layer.source_index, 0) + layer.cycles
    busiest = sorted((i for i in cycles_per_op if cycles_per_op[i] > 0), key=lambda i: -cycles_per_op[i])
    return {
        "input": str(source),
        "output": str(output),
        "target": result.target.name,
        "vela": {
            "accelerator": result.config.accelerator,
            "system_config": setup.system_config,
            "memory_mode": setup.memory_mode,
            "optimise": result.config.optimise,
            "core_clock_hz": setup.core_clock,
            "messages": vela.messages,
        },
        "ops": {
            "total": len(ops),
            "npu": len(ops) - len(vela.cpu_ops),
            "cpu": len(vela.cpu_ops),
            "cpu_ops": _cpu_ops(result),
            "npu_partitions": vela.npu_partitions,
            "predicted_npu_regions": len(result.partition.regions),
            "placement_disagreements": result.disagreements,
        },
        "performance": {
            "npu_cycles": vela.npu_cycles,
            "total_cycles": vela.total_cycles,
            "macs": vela.macs,
            "inference_seconds": seconds,
            "inferences_per_second": 1.0 / seconds if seconds else None,
        },
        "memory": {
            "peak_bytes": vela.memories,
            "original_weight_bytes": vela.original_weights,
            "encoded_weight_bytes": vela.encoded_weights,
        },
        "passes": result.pipeline.to_json(),
        "top_layers": [
            {
                "index": i,
                "op": ops[i].type if 0 <= i < len(ops) else "?",
                "name": op_name(graph, ops[i]) if 0 <= i < len(ops) else "",
                "cycles": cycles_per_op[i],
                "share": cycles_per_op[i] / vela.total_cycles if vela.total_cycles else 0.0,
            }
            for i in busiest[:TOP_LAYERS]
        ],
        "seconds": {"npupass": round(result.npupass_seconds, 4), "vela": round(vela.seconds, 4)},
    }


def render(report: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    ops, perf, mem = report["ops"], report["performance"], report["memory"]
    v = report["vela"]
    console.print(
        f"[bold]{report['target']}[/bold] ({v['system_config']}, {v['memory_mode']}, "
        f"{v['core_clock_hz'] / 1e6:.0f} MHz, optimise {v['optimise']})"
    )
    console.print(
        f"TFLite ops: {ops['total']}, on the NPU {ops['npu']}, on the CPU {ops['cpu']}; "
        f"NPU partitions: {ops['npu_partitions']}"
    )
    if ops["cpu_ops"]:
        table = Table(title="Ops left on the CPU", title_justify="left")
        for col in ("#", "op", "name", "why"):
            table.add_column(col)
        for row in ops["cpu_ops"]:
            table.add_row(str(row["index"]), row["op"], row["name"], "; ".join(row["reasons"]))
        console.print(table)
    for d in ops["placement_disagreements"]:
        console.print(
            f"[yellow]note: npupass predicted {d['predicted']} for {d['op']}, Vela chose {d['vela']}[/yellow]"
        )
    console.print(
        f"Estimated: {perf['total_cycles']:,} cycles ({perf['npu_cycles']:,} on the NPU), "
        f"{perf['inference_seconds'] * 1e3:.3f} ms per inference"
        + (f" ({perf['inferences_per_second']:.1f}/s)" if perf["inferences_per_second"] else "")
        + "; CPU time is not estimated"
        if ops["cpu"]
        else f"Estimated: {perf['total_cycles']:,} cycles, {perf['inference_seconds'] * 1e3:.3f} ms per inference"
        + (f" ({perf['inferences_per_second']:.1f}/s)" if perf["inferences_per_second"] else "")
    )
    memories = ", ".join(f"{name} {size:,} B" for name, size in mem["peak_bytes"].items())
    console.print(f"Memory peak: {memories}")
    original, encoded = mem["original_weight_bytes"], mem["encoded_weight_bytes"]
    ratio = f" ({encoded / original:.1%})" if original else ""
    console.print(f"Weights: {original:,} B original, {encoded:,} B encoded{ratio}")
    passes = [p for p in report["passes"]["passes"] if p["rewrites"]]
    if passes:
        done = "; ".join(f"{p['name']}: " + ", ".join(f"{r} {n}" for r, n in p["rewrites"].items()) for p in passes)
        console.print(f"Passes: {done}")
    else:
        console.print(f"Passes: {', '.join(p['name'] for p in report['passes']['passes'])} (nothing to rewrite)")
    if report["top_layers"]:
        table = Table(title=f"Top {len(report['top_layers'])} TFLite ops by estimated cycles", title_justify="left")
        for col in ("#", "op", "name", "cycles", "share"):
            table.add_column(col)
        for layer in report["top_layers"]:
            row = (
                str(layer["index"]),
                layer["op"],
                layer["name"][:70],
                f"{layer['cycles']:,}",
                f"{layer['share']:.1%}",
            )
            table.add_row(*row)
        console.print(table)
    took = report["seconds"]
    console.print(f"wrote {report['output']} (npupass {took['npupass']:.2f} s, Vela {took['vela']:.2f} s)")


def run(args: argparse.Namespace, target: Target) -> int:
    """The CLI: load, compile, write `<stem>_vela.tflite` and report.json into the output directory."""
    from npupass.cli import _console, _progress_label
    from npupass.fileio import atomic_write_all
    from npupass.frontends import load_model

    source = Path(args.model)
    outdir = Path(args.output_dir)
    if outdir.exists() and not outdir.is_dir():
        raise NpupassError(f"{outdir}: exists and is not a directory")
    config = VelaConfig(
        accelerator=target.name,
        config_files=(args.config,) if args.config else (),
        system_config=args.system_config,
        memory_mode=args.memory_mode,
        optimise=args.optimise,
    )
    if args.config and not Path(args.config).is_file():  # Vela itself would print a traceback
        what = "is not a file" if Path(args.config).exists() else "no such Vela configuration file"
        raise NpupassError(f"{args.config}: {what}")
    model = load_model(source)
    with _progress_label(f"compiling for {target.name}") as update:  # a spinner when stderr is a terminal
        tick = None if update is None else (lambda elapsed: update(f"Vela, {elapsed:.1f} s"))
        result = compile_ethos_u(model, target, config, passes=args.passes, tick=tick, timeout=args.vela_timeout)
    output = outdir / f"{source.stem}_vela.tflite"
    report = report_json(result, source, output)
    atomic_write_all({output: result.vela.model, outdir / "report.json": json.dumps(report, indent=2).encode() + b"\n"})
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        render(report, _console())
    return 0
