"""Compiling for Ethos-U: passes, partition, Vela, and a report of what runs where."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from npupass.backends.base import RefusedModelError, Target
from npupass.backends.ethos_u.capabilities import npu_reasons
from npupass.backends.ethos_u.vela import (
    VelaConfig,
    VelaResult,
    compile_vela,
    inference_seconds,
    vela_setup,
    vela_timeout,
)
from npupass.ir.analysis import FLOAT, FP16_WEIGHTS, float_model, label, op_name
from npupass.ir.graph import Graph, Model, Op
from npupass.passes import PassManager, PipelineResult
from npupass.passes.encode_clusters import DEFAULT_TOLERANCE
from npupass.passes.partition import CPU, NPU, Partition, partition
from npupass.passes.policy import TargetNeeds, default_pipeline, pipeline_leftovers, pipeline_options

# Batch-norm folding and fusion always (they shrink the NPU's work), fold-fake-quant to int8 when the model
# carries fake quantization, then encode-clusters: clustered layers share one palette per layer, which Vela's
# weight compressor needs (PCQAT DS-CNN: -16% encoded weights; it never cost cycles on the fixtures, and
# declines every layer of an unclustered model). scripts/measure_encode_clusters.py measures it.
NEEDS = TargetNeeds(canonicalize="always", integer=True, then=("encode-clusters",))
TOP_LAYERS = 10


class FloatModelError(RefusedModelError):
    """A float model without quantization: Vela would leave every op on the CPU."""


def refuse_float(model: Model) -> None:
    """Raise FloatModelError when the main graph computes in float (ir.analysis.float_model), and
    RefusedModelError for a model Vela already compiled.

    A dynamic-range model (int8 weights, float activations) counts as float: the NPU needs integer activations.
    """
    vela_ops = sum(1 for op in model.main.iter_ops() if op.type == "CUSTOM" and op.custom_code == "ethos-u")
    if vela_ops:
        raise RefusedModelError(
            f"the model is already compiled by Vela (it holds {vela_ops} ethos-u "
            f"operator{'s' if vela_ops > 1 else ''}); compile the model you gave Vela instead"
        )
    kind = float_model(model)
    if kind is None:
        return
    n = sum(1 for _ in model.main.iter_ops())
    what = {
        FLOAT: "the model's activations are float with no quantization information",
        FP16_WEIGHTS: "the model is a float model (fp16 weights)",
    }.get(kind, f"the model is {kind}")
    raise FloatModelError(
        f"{what}, so Vela would run none of its {n} "
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
    cluster_tolerance: float | None = None
    """The tolerance encode-clusters ran with (None: not in the pipeline)."""
    preservation: dict[str, Any] | None = None
    """Zeros and distinct values of every weight before and after each pass (PreservationReport.to_json())."""
    accuracy: list[dict[str, Any]] = field(default_factory=list)
    """How far each pass with a tolerance (encode-clusters) moved the outputs in LiteRT, in output steps."""


class LossyPassObserver:
    """Runs the pipeline's models in LiteRT and keeps, for passes allowed to move outputs (max_steps > 0),
    how far they did (never fails the pipeline: the report states the cost)."""

    def __init__(self, samples: int = 2) -> None:
        from npupass.verify.passes import PassVerifier

        self.verifier: Any = PassVerifier(samples=samples)

    def start(self, model: Model) -> None:
        try:
            self.verifier.start(model)
        except Exception:  # LiteRT cannot run it (a custom op ...): the compile goes on without the figure
            self.verifier = None

    def after(self, pass_: Any, model: Model) -> str | None:
        if self.verifier is not None:
            try:
                self.verifier.after(pass_, model)
            except Exception:
                self.verifier = None
        return None

    def checks(self) -> list[dict[str, Any]]:
        from npupass.passes import PASSES

        rows = []
        for check in self.verifier.checks if self.verifier is not None else []:
            declared = PASSES[check.name].max_steps
            if declared > 0:
                rows.append(check.to_json() | {"declared_max_steps": declared})
        return rows


def _lossy_pass_observer(model: Model, names: list[str]) -> LossyPassObserver | None:
    """An observer when a pass of the pipeline may move outputs and the model runs in LiteRT."""
    from npupass.passes import PASSES

    if model.source_format != "tflite" or not any(PASSES[n].max_steps > 0 for n in names):
        return None
    return LossyPassObserver()


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


ENCODE = "encode-clusters"
# encode-clusters' tolerance for Ethos-U: wide enough for the near misses of PCQAT models (MobileNetV2: 27 -> 33
# layers re-scaled, outputs within its declared 2 steps); a compile whose outputs move further redoes the pass
# with its own default (see compile_ethos_u).
CLUSTER_TOLERANCE = 12.0


def _run_pipeline(
    model: Model, names: list[str], max_values: int | None, tolerance: float
) -> tuple[PipelineResult, LossyPassObserver | None, Any]:
    from npupass.passes.preservation import PreservationReport

    options = pipeline_options(names, NEEDS)
    if ENCODE in names:
        options[ENCODE] = {"max_values": max_values or 16, "tolerance": tolerance}
    observer = _lossy_pass_observer(model, names)
    preservation = PreservationReport(inner=observer)
    pipeline = PassManager(names, options=options).run(model, verify=preservation)
    return pipeline, observer, preservation


def _encode_problem(observer: LossyPassObserver | None) -> str | None:
    """Why encode-clusters' wide tolerance cannot stand: it moved the outputs too far, or nothing could check."""
    if observer is None or observer.verifier is None:
        return "the outputs could not be checked in LiteRT"
    return next((c["problem"] for c in observer.checks() if c["pass"] == ENCODE and c["problem"]), None)


def compile_ethos_u(
    model: Model,
    target: Target,
    config: VelaConfig,
    passes: list[str] | None = None,
    tick: Callable[[float], None] | None = None,
    isolate: bool = True,
    max_cluster_values: int | None = None,
    cluster_tolerance: float | None = None,
    timeout: float | None = None,
) -> EthosUCompile:
    """Run the pipeline, partition for `target`, serialize and compile with Vela (model is rewritten in place).

    Vela is stopped after `timeout` seconds (default: `vela_timeout` of the model's size and op count)."""
    from npupass.backends.tflite import serialize_tflite

    start = time.perf_counter()
    vela_setup(config)  # a bad --system-config or --config fails before any work
    refuse_float(model)
    names = passes or default_pipeline(model, NEEDS)
    tolerance = CLUSTER_TOLERANCE if cluster_tolerance is None else cluster_tolerance
    # the default's wide tolerance only where LiteRT checks it (an explicit --cluster-tolerance stands)
    wide = cluster_tolerance is None and ENCODE in names and tolerance > DEFAULT_TOLERANCE
    if wide and model.source_format != "tflite":
        tolerance, wide = DEFAULT_TOLERANCE, False
    before = copy.deepcopy(model) if wide else None
    pipeline, observer, preservation = _run_pipeline(model, names, max_cluster_values, tolerance)
    if before is not None and _encode_problem(observer) is not None:
        # the wide tolerance moved the outputs beyond what encode-clusters declares: redo it the exact way
        model.__dict__.update(before.__dict__)
        pipeline, observer, preservation = _run_pipeline(model, names, max_cluster_values, DEFAULT_TOLERANCE)
        tolerance = DEFAULT_TOLERANCE
    leftover = pipeline_leftovers(model)
    if leftover is not None:
        raise RefusedModelError(
            f"pipeline {','.join(names)}: {leftover}; a pipeline starting with '+' extends the default"
        )
    graph = model.main
    predicted = partition(graph, lambda g, op: npu_reasons(g, op, target.core))
    tflite = serialize_tflite(model)
    npupass_seconds = time.perf_counter() - start
    limit = timeout if timeout is not None else vela_timeout(len(tflite), sum(1 for _ in graph.iter_ops()))
    vela = compile_vela(tflite, config, tick=tick, isolate=isolate, timeout=limit)
    ops = graph.ops  # the writer's order
    result = EthosUCompile(target, config, model, pipeline, predicted, vela, npupass_seconds, ops)
    result.accuracy = observer.checks() if observer is not None else []
    result.preservation = preservation.to_json()
    result.cluster_tolerance = tolerance if ENCODE in names else None
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


MEMORY_BOUND = 1.25  # op cycles above this many times the MAC/output-unit cycles: memory transfers set the pace
SLOW_SHARE = 0.10  # an op without MAC work taking this share of the cycles is worth a line of advice
LOW_UTILISATION, BUSY_SHARE = 0.25, 0.05
MAC_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D", "BATCH_MATMUL"})
LAYER_COLUMNS = (
    "index",
    "op",
    "name",
    "device",
    "cycles",
    "share",
    "macs",
    "mac_utilisation",
    "bound",
    "vela_ops",
    "weight_bytes",
    "encoded_weight_bytes",
    "cpu_reasons",
)


def _weight_bytes(graph: Graph, op: Op) -> int:
    """Bytes of the op's constant weight (and bias) as written for Vela."""
    from npupass.ir.ops import WEIGHTED_OPS

    where = WEIGHTED_OPS.get(op.type)
    if where is None:
        return 0
    inputs = graph.inputs_of(op)
    total = 0
    for slot in (where.weight, where.bias):
        t = inputs[slot] if 0 <= slot < len(inputs) else None
        if t is not None and t.data is not None:
            total += int(t.data.nbytes)
    return total


def layer_rows(result: EthosUCompile) -> list[dict[str, Any]]:
    """One row per TFLite op of the main graph, in the order written for Vela (see LAYER_COLUMNS)."""
    graph, ops, vela = result.model.main, result.ops, result.vela
    per_op: dict[int, dict[str, int]] = {}
    for layer in vela.layers:  # Vela's internal ops, summed per TFLite op they came from
        row = per_op.setdefault(
            layer.source_index, {"cycles": 0, "macs": 0, "mac_cycles": 0, "ao": 0, "weights": 0, "vela_ops": 0}
        )
        row["vela_ops"] += 1
        row["cycles"] += layer.cycles
        row["macs"] += layer.macs
        row["mac_cycles"] += layer.mac_cycles
        row["ao"] += layer.ao_cycles
        row["weights"] += layer.weight_bytes
    cpu = {row["index"]: row["reasons"] for row in _cpu_ops(result)}
    macs_per_cycle = int(result.target.params.get("macs", 0))
    rows = []
    for index, op in enumerate(ops):
        figures = per_op.get(index, {})
        cycles = figures.get("cycles", 0)
        on_cpu = index in vela.cpu_ops
        compute = max(figures.get("mac_cycles", 0), figures.get("ao", 0))
        bound = None if on_cpu or cycles == 0 else "memory" if cycles > MEMORY_BOUND * compute else "compute"
        macs = figures.get("macs", 0)
        utilisation = macs / (cycles * macs_per_cycle) if macs and cycles and macs_per_cycle else None
        rows.append(
            {
                "index": index,
                "op": op.type,
                "name": op_name(graph, op),
                "device": CPU if on_cpu else NPU,
                "cycles": cycles,
                "share": cycles / vela.total_cycles if vela.total_cycles else 0.0,
                "macs": figures.get("macs", 0),
                "mac_utilisation": None if on_cpu else utilisation,
                "bound": bound,
                "vela_ops": figures.get("vela_ops", 0),
                "weight_bytes": _weight_bytes(graph, op),
                "encoded_weight_bytes": figures.get("weights", 0),
                "cpu_reasons": cpu.get(index, []),
            }
        )
    return rows


def advice(rows: list[dict[str, Any]], report: dict[str, Any], core: str) -> list[str]:
    """Lines of advice the per-layer figures support (nothing is said without a figure behind it)."""
    from npupass.view.names import short_name

    lines = []
    for row in rows:
        if row["device"] == NPU and row["op"] not in MAC_OPS and row["share"] >= SLOW_SHARE:
            lines.append(
                f"{row['op']} '{short_name(row['name'])}' takes {row['share']:.0%} of the cycles on {core}, "
                f"with no convolution or matrix work: a slow op on this core (Vela lowers it to "
                f"{row['vela_ops']} NPU operations)"
            )
    low = [
        r
        for r in rows
        if r["device"] == NPU
        and r["op"] in MAC_OPS
        and r["macs"]
        and r["share"] >= BUSY_SHARE
        and (r["mac_utilisation"] or 0) < LOW_UTILISATION
    ]
    for row in low:
        why = "memory-bound: it waits on transfers" if row["bound"] == "memory" else "its shape fills the MACs poorly"
        lines.append(
            f"{row['op']} '{short_name(row['name'])}': {row['mac_utilisation']:.0%} MAC utilisation at "
            f"{row['share']:.0%} of the cycles ({why})"
        )
    memory_share = sum(r["share"] for r in rows if r["bound"] == "memory")
    if memory_share >= 0.3:
        lines.append(
            f"memory-bound layers take {memory_share:.0%} of the cycles: a faster memory (--system-config, "
            "--memory-mode) or smaller weights/feature maps help more than MACs"
        )
    weighted = [r for r in rows if r["device"] == NPU and r["weight_bytes"] and r["encoded_weight_bytes"]]
    if weighted:
        original = sum(r["weight_bytes"] for r in weighted)
        encoded = sum(r["encoded_weight_bytes"] for r in weighted)
        best = min(weighted, key=lambda r: r["encoded_weight_bytes"] / r["weight_bytes"])
        lines.append(
            f"weight compression: {encoded:,} B encoded for {original:,} B of weights and biases "
            f"({encoded / original:.0%}) over {len(weighted)} layers; best {best['op']} "
            f"'{short_name(best['name'])}' at {best['encoded_weight_bytes'] / best['weight_bytes']:.0%}"
        )
    cpu = [r for r in rows if r["device"] == CPU]
    if cpu:
        types = sorted({r["op"] for r in cpu})
        lines.append(
            f"{len(cpu)} op(s) run on the CPU ({', '.join(types)}); Vela does not estimate their time, so the "
            "cycles above leave them out"
        )
    declined = [p for p in report["passes"]["passes"] if p["name"] == "encode-clusters" and p["declined"]]
    weight_bytes = sum(r["weight_bytes"] for r in rows)
    if declined and not any(p["rewrites"] for p in declined) and weight_bytes >= 16 * 1024:
        lines.append(
            "encode-clusters re-scaled no layer (see --explain): clustering the weights (tfmot) before QAT "
            "lets Vela's palette compression work"
        )
    return lines


def report_json(result: EthosUCompile, source: str, output: str) -> dict[str, Any]:
    graph, ops, vela = result.model.main, result.ops, result.vela
    setup = vela_setup(result.config)
    seconds = inference_seconds(vela, result.config)
    cycles_per_op: dict[int, int] = {}
    for layer in vela.layers:  # Vela's internal ops, summed per TFLite op they came from
        cycles_per_op[layer.source_index] = cycles_per_op.get(layer.source_index, 0) + layer.cycles
    busiest = sorted((i for i in cycles_per_op if cycles_per_op[i] > 0), key=lambda i: -cycles_per_op[i])
    data: dict[str, Any] = {
        "input": source,
        "output": output,
        "target": result.target.name,
        "conversion": result.model.conversion,
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
        "accuracy": result.accuracy,
        "encode_clusters_tolerance": result.cluster_tolerance,
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
    rows = layer_rows(result)
    data["layers"] = rows
    data["advice"] = advice(rows, data, result.target.name)
    data["preservation"] = result.preservation
    return data


def report_view(result: EthosUCompile, rows: list[dict[str, Any]], title: str) -> dict[str, Any]:
    """The viewer's data for the compiled model: ops coloured by where Vela placed them (NPU runs outlined
    as partitions), CPU reasons on click, and the per-layer figures as metrics to colour by."""
    from npupass.view.data import op_label, view_data

    graph = result.model.main
    placement: dict[Op, dict[str, str]] = {}
    metrics: dict[str, dict[str, float]] = {}
    for op, row in zip(result.ops, rows, strict=True):
        reason = "; ".join(row["cpu_reasons"]) if row["device"] == CPU else f"Vela: {row['cycles']:,} cycles"
        placement[op] = {"target": row["device"], "reason": reason}
        if row["device"] == NPU:
            figures = {"cycles": float(row["cycles"]), "MACs": float(row["macs"])}
            if row["mac_utilisation"] is not None:
                figures["MAC utilisation"] = round(row["mac_utilisation"], 4)
            metrics[op_label(graph, op)] = figures
    return view_data(result.model, title, placement=placement, metrics=metrics, colour="placement")


def render(report: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    from npupass.view.names import short_name

    ops, perf, mem = report["ops"], report["performance"], report["memory"]
    v = report["vela"]
    console.print(
        f"[bold]{report['target']}[/bold] ({v['system_config']}, {v['memory_mode']}, "
        f"{v['core_clock_hz'] / 1e6:.0f} MHz, optimise {v['optimise']})"
    )
    if report.get("conversion"):  # a Keras/SavedModel input: say how TensorFlow converted it
        console.print(report["conversion"]["summary"], soft_wrap=True)  # one line, however long
    console.print(
        f"TFLite ops: {ops['total']}, on the NPU {ops['npu']}, on the CPU {ops['cpu']}; "
        f"NPU partitions: {ops['npu_partitions']}"
    )
    if ops["cpu_ops"]:
        table = Table(title="Ops left on the CPU", title_justify="left")
        table.add_column("#", no_wrap=True)
        table.add_column("op", no_wrap=True)
        table.add_column("name", no_wrap=True, overflow="ellipsis", max_width=40)
        table.add_column("why", overflow="fold")
        for row in ops["cpu_ops"]:
            table.add_row(str(row["index"]), row["op"], short_name(row["name"]), "; ".join(row["reasons"]))
        console.print(table)
    for d in ops["placement_disagreements"]:
        console.print(
            f"[yellow]note: npupass predicted {d['predicted']} for {d['op']}, Vela chose {d['vela']}[/yellow]"
        )
    rate = f" ({perf['inferences_per_second']:.1f}/s)" if perf["inferences_per_second"] else ""
    if ops["cpu"]:
        console.print(
            f"Estimated: {perf['total_cycles']:,} cycles ({perf['npu_cycles']:,} on the NPU), "
            f"{perf['inference_seconds'] * 1e3:.3f} ms per inference{rate}; CPU time is not estimated"
        )
    else:
        console.print(
            f"Estimated: {perf['total_cycles']:,} cycles, {perf['inference_seconds'] * 1e3:.3f} ms per inference{rate}"
        )
    if mem["peak_bytes"]:
        console.print("Memory peak: " + ", ".join(f"{name} {size:,} B" for name, size in mem["peak_bytes"].items()))
    original, encoded = mem["original_weight_bytes"], mem["encoded_weight_bytes"]
    if original or encoded:
        ratio = f" ({encoded / original:.1%})" if original else ""
        console.print(f"Weights: {original:,} B original, {encoded:,} B encoded{ratio}")
    passes = [p for p in report["passes"]["passes"] if p["rewrites"]]
    names = ", ".join(p["name"] for p in report["passes"]["passes"])
    if passes:
        done = "; ".join(f"{p['name']}: " + ", ".join(f"{r} {n}" for r, n in p["rewrites"].items()) for p in passes)
        console.print(f"Passes ({names}): {done}")
    else:
        console.print(f"Passes ({names}): nothing to rewrite")
    declined = sum(len(p["declined"]) for p in report["passes"]["passes"])
    if declined:
        console.print(f"  {declined} rewrites declined (--explain lists them with their reasons)")
    for check in report.get("accuracy", []):
        if check["pass"] in [p["name"] for p in passes]:
            tolerance = report.get("encode_clusters_tolerance") if check["pass"] == ENCODE else None
            how = f" (tolerance {tolerance:g} weight steps)" if tolerance else ""
            console.print(
                f"  {check['pass']}{how}: outputs moved at most {check['max_steps']} step(s) in LiteRT "
                f"(declared tolerance {check['declared_max_steps']}), top-1 agreement {check['argmax_agreement']:.0%}"
            )
    layers = [r for r in report.get("layers", []) if r["device"] == NPU or r["cpu_reasons"]]
    if layers:
        console.print(_layer_table(layers, ops["total"], short_name))
    for line in report.get("advice", []):
        console.print(f"[cyan]advice[/cyan]: {line}")
    tflm = report.get("tflm") or {}
    if tflm.get("checked"):
        for p in tflm["unsupported_ops"]:
            where = f" (op {p['index']})" if p["index"] is not None else ""
            console.print(f"[red]TFLM cannot run CPU op[/red] {p['op']}{where}: {p['reason']}")
        arena = tflm["arena"]
        console.print(
            f"TFLM: {len(tflm['cpu_ops'])} CPU op(s), {len(tflm['unsupported_ops'])} without a TFLM kernel; "
            f"tensor arena about {arena['head_bytes']:,} bytes (Vela scratch {arena['scratch_bytes']:,}, "
            f"fast scratch {arena['fast_scratch_bytes']:,}; TFLM's persistent tail not included)"
        )
    elif tflm:
        console.print(f"TFLM: not checked ({tflm['reason']})")
    took = report["seconds"]
    console.print(f"wrote {report['output']} (npupass {took['npupass']:.2f} s, Vela {took['vela']:.2f} s)")


def _layer_table(layers: list[dict[str, Any]], total: int, short: Callable[[str], str]) -> Any:
    from rich.table import Table

    table = Table(title=f"Per layer ({total} TFLite ops; --per-layer-csv writes them all)", title_justify="left")
    for col in ("#", "op", "name", "dev", "cycles", "share", "MACs", "util", "bound"):
        right = col in ("#", "cycles", "share", "MACs", "util")
        if col == "name":
            table.add_column(col, no_wrap=True, overflow="ellipsis", max_width=32)
        else:
            table.add_column(col, no_wrap=True, justify="right" if right else "left")
    for r in layers:
        util = "" if r["mac_utilisation"] is None else f"{r['mac_utilisation']:.0%}"
        table.add_row(
            str(r["index"]),
            r["op"],
            short(r["name"]),
            r["device"],
            f"{r['cycles']:,}",
            f"{r['share']:.1%}",
            f"{r['macs']:,}",
            util,
            r["bound"] or "",
        )
    return table
