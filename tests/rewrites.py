"""Test helpers: run models in LiteRT, and undo what the TF converter already did (unfuse an
activation, unfold a batch norm) so the passes have real work on real TF-made models."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from npupass.backends.tflite import serialize_tflite
from npupass.frontends import load_model
from npupass.ir.graph import Graph, Model, Op, Tensor
from npupass.passes.pattern import WEIGHTED_OPS, input_at, new_constant, output
from npupass.tflite_schema import default_options
from npupass.verify.compare import float_input_ranges
from npupass.verify.litert import LiteRTModel, make_inputs

MODELS = Path(__file__).parent / "models"


def load(name: str) -> Model:
    return load_model(MODELS / f"{name}.tflite")


def run(model: Model | bytes, seeds: tuple[int, ...] = (0, 1), ranges_from: Model | None = None) -> list[np.ndarray]:
    """Outputs of `model` in LiteRT's builtin kernels on seeded inputs, concatenated per output."""
    ref = LiteRTModel(model if isinstance(model, bytes) else serialize_tflite(model))
    ranges = float_input_ranges(ranges_from) if ranges_from is not None else None
    runs = [ref.run(make_inputs(ref.inputs, seed, ranges)) for seed in seeds]
    return [np.concatenate([r[i].reshape(-1) for r in runs]) for i in range(len(ref.outputs))]


def rel_error(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """max |a - b| / max |a| over all outputs."""
    return max(
        float(np.abs(x.astype(np.float64) - y).max()) / (float(np.abs(x).max()) or 1.0)
        for x, y in zip(a, b, strict=True)
    )


def counts(model: Model) -> Counter[str]:
    return Counter(op.type for g in model.subgraphs for op in g.iter_ops())


def weighted_ops(graph: Graph, *types: str) -> list[Op]:
    return [op for op in graph.ops if op.type in (types or WEIGHTED_OPS)]


def add_reader(graph: Graph, t: Tensor, op_type: str = "RELU") -> Tensor:
    """Give `t` one more reader, whose result becomes a new graph output."""
    extra = Tensor(f"{t.name}/extra", t.dtype, t.shape, quant=t.quant)
    graph.add_op(Op(op_type, name=extra.name), [t], [extra])
    graph.outputs.append(extra)
    return extra


def unfuse(graph: Graph, op: Op) -> Op:
    """Move `op`'s fused activation into a separate op after it (same quantization on both sides)."""
    act = op.options["fused_activation_function"]
    out = output(graph, op)
    mid = Tensor(out.name + "/pre_activation", out.dtype, out.shape, quant=out.quant)
    graph.set_output(op, 0, mid)
    op.options["fused_activation_function"] = "NONE"
    return graph.add_op(Op(act, name=out.name + "/act"), [mid], [out])


def unfold(graph: Graph, op: Op, rng: np.random.Generator, form: str = "mul-add", negative: bool = True) -> list[Op]:
    """Rescale `op`'s weights per output channel and put the inverse after it as a batch norm.

    form "mul-add": W/s, (b - t)/s then MUL(s), ADD(t); "mul": t = 0 and no ADD;
    "div-mul-add": also DIV(d) first;
    "batch-norm": a BATCH_NORM op with gamma, beta, mean, var giving the same s and t.
    The op's fused activation moves to the last new op. Returns the new ops.
    """
    _, weight_slot, bias_slot, axis = WEIGHTED_OPS[op.type]
    w, b = input_at(graph, op, weight_slot), input_at(graph, op, bias_slot)
    assert w is not None and w.data is not None
    channels = w.data.shape[axis]
    s = rng.uniform(0.5, 2.0, channels) * (rng.choice([-1.0, 1.0], channels) if negative else 1.0)
    t = rng.normal(size=channels) if form != "mul" else np.zeros(channels)
    d = rng.uniform(1.5, 3.0, channels) if form == "div-mul-add" else np.ones(channels)
    shape = [1] * w.data.ndim
    shape[axis] = -1
    graph.set_input(op, weight_slot, new_constant(w.name, w.data * d.reshape(shape) / s.reshape(shape)))
    bias = b.data if b is not None and b.data is not None else np.zeros(channels)
    graph.set_input(op, bias_slot, new_constant(b.name if b else f"{w.name}/bias", (bias - t) / s * d))
    out = output(graph, op)
    act = op.options["fused_activation_function"]
    op.options["fused_activation_function"] = "NONE"
    current = Tensor(out.name + "/conv", out.dtype, out.shape)
    graph.set_output(op, 0, current)
    new: list[Op] = []

    def step(kind: str, const: np.ndarray, name: str, result: Tensor) -> None:
        options = default_options(f"{kind.title()}Options") | {"fused_activation_function": "NONE"}
        new.append(
            graph.add_op(
                Op(kind, options, f"{kind.title()}Options", name=name), [current, const_t(name, const)], [result]
            )
        )

    def const_t(name: str, values: np.ndarray) -> Tensor:
        return new_constant(name + "/c", values)

    if form == "div-mul-add":
        divided = Tensor(out.name + "/div", out.dtype, out.shape)
        step("DIV", d, out.name + "/div", divided)
        current = divided
    if form == "batch-norm":
        mean = rng.normal(size=channels)
        var = rng.uniform(0.5, 2.0, channels)
        eps = 1e-3
        gamma = s * np.sqrt(var + eps)
        beta = t + mean * s
        bn = Op("BATCH_NORM", {"epsilon": eps}, None, name=out.name + "/bn")
        params = [
            new_constant(f"{out.name}/{k}", v)
            for k, v in (("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var))
        ]
        new.append(graph.add_op(bn, [current, *params], [out]))
        assert act == "NONE", "a BATCH_NORM has no fused activation"
        return new
    if form == "mul":
        step("MUL", s, out.name + "/mul", out)
        new[-1].options["fused_activation_function"] = act
        return new
    scaled = Tensor(out.name + "/scaled", out.dtype, out.shape)
    step("MUL", s, out.name + "/mul", scaled)
    current = scaled
    step("ADD", t, out.name + "/add", out)
    new[-1].options["fused_activation_function"] = act
    return new
