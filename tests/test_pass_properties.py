"""Every rewrite-engine pass on random valid float graphs: the structure stays well formed (names
unique included) and LiteRT computes the same outputs before and after."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rewrites import MODELS

from npupass.backends.tflite import serialize_tflite
from npupass.frontends import load_model
from npupass.ir import DType, Graph, Model, Op, Tensor, check
from npupass.passes import run_passes
from npupass.passes.pattern import new_constant
from npupass.verify.litert import LiteRTModel

C = 4
SHAPE = (1, 3, 3, C)
PASSES = ["fold-batch-norm", "fuse-activations", "constant-fold", "cleanup"]


def random_graph(seed: int) -> Model:
    """A chain of steps drawn at random from what the passes rewrite: convs, per-channel MUL/ADD
    (foldable or not), activations, clamps, identity reshapes, transpose pairs, constant arithmetic,
    side branches and dead ops."""
    rng = np.random.default_rng(seed)
    g = Graph("main")
    x = g.add_tensor(Tensor("x", DType.FLOAT32, SHAPE))
    g.inputs = [x]
    n = 0

    def t(shape: tuple[int, ...] = SHAPE) -> Tensor:
        nonlocal n
        n += 1
        return Tensor(f"t{n}", DType.FLOAT32, shape)

    def const(values: np.ndarray, dtype: DType = DType.FLOAT32) -> Tensor:
        nonlocal n
        n += 1
        return new_constant(f"c{n}", values, dtype)

    def arith(kind: str, a: Tensor, b: Tensor) -> Tensor:
        y = t()
        if kind in ("MAXIMUM", "MINIMUM"):
            g.add_op(Op(kind, {}, "MaximumMinimumOptions"), [a, b], [y])
        else:
            g.add_op(Op(kind, {"fused_activation_function": "NONE"}, f"{kind.capitalize()}Options"), [a, b], [y])
        return y

    extra: list[Tensor] = []
    for _ in range(int(rng.integers(3, 9))):
        step = int(rng.integers(0, 9))
        if step == 0:  # conv 1x1
            y = t()
            options = {"padding": "VALID", "stride_w": 1, "stride_h": 1, "fused_activation_function": "NONE"}
            w, b = const(rng.normal(0, 0.5, (C, 1, 1, C))), const(rng.normal(0, 0.1, C))
            g.add_op(Op("CONV_2D", options, "Conv2DOptions"), [x, w, b], [y])
            x = y
        elif step == 1:  # per-channel scale, either operand order
            k = const(rng.uniform(0.5, 1.5, C))
            x = arith("MUL", *((x, k) if rng.integers(2) else (k, x)))
        elif step == 2:  # per-channel shift, its constant computed from constants
            d = t((C,))
            g.add_op(
                Op("ADD", {"fused_activation_function": "NONE"}, "AddOptions"),
                [const(rng.normal(0, 0.1, C)), const(rng.normal(0, 0.1, C))],
                [d],
            )
            x = arith("ADD", x, d)
        elif step == 3:
            y = t()
            g.add_op(Op(str(rng.choice(["RELU", "RELU6", "TANH"]))), [x], [y])
            x = y
        elif step == 4:  # clamp to [0, 6] as MINIMUM(MAXIMUM(x, 0), 6)
            x = arith("MINIMUM", arith("MAXIMUM", x, const(np.zeros(1))), const(np.full(1, 6.0)))
        elif step == 5:  # identity reshape
            y = t()
            g.add_op(
                Op("RESHAPE", {"new_shape": list(SHAPE)}, "ReshapeOptions"),
                [x, const(np.array(SHAPE), DType.INT32)],
                [y],
            )
            x = y
        elif step == 6:  # a transpose and its inverse
            mid = t((1, C, 3, 3))
            y = t()
            g.add_op(Op("TRANSPOSE"), [x, const(np.array([0, 3, 1, 2]), DType.INT32)], [mid])
            g.add_op(Op("TRANSPOSE"), [mid, const(np.array([0, 2, 3, 1]), DType.INT32)], [y])
            x = y
        elif step == 7:  # a side branch that is also a graph output
            y = t()
            g.add_op(Op("RELU"), [x], [y])
            extra.append(y)
        else:  # a dead op
            g.add_op(Op("TANH"), [x], [t()])
    g.outputs = [x, *extra]
    check(g)
    return Model([g])


@pytest.mark.parametrize("seed", range(12))
def test_every_pass_keeps_structure_and_outputs(seed: int) -> None:
    x = np.random.default_rng(100 + seed).normal(size=SHAPE).astype(np.float32)
    want = LiteRTModel(serialize_tflite(random_graph(seed))).run([x])
    for pipeline in [*PASSES, ",".join(PASSES)]:
        model = random_graph(seed)
        run_passes(model, pipeline)  # the PassManager checks structure (unique names included) after each pass
        check(model.main)
        got = LiteRTModel(serialize_tflite(model)).run([x])
        for a, b in zip(want, got, strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5, err_msg=pipeline)


def test_the_random_graphs_exercise_every_pass() -> None:
    fired = {name: 0 for name in PASSES}
    for seed in range(12):
        for name in PASSES:
            fired[name] += sum(run_passes(random_graph(seed), name).passes[0].rewrites.values())
    assert all(count > 0 for count in fired.values()), fired


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.tflite")), ids=lambda p: p.stem)
def test_converter_made_models_have_nothing_to_fold_or_clean_up(path: Path) -> None:
    """What the TF converter writes is already folded and clean: constant-fold and cleanup find
    nothing to do (and the structure checks after them pass)."""
    model = load_model(path)
    result = run_passes(model, "constant-fold,cleanup")
    assert not result.changed, [dict(p.rewrites) for p in result.passes]
