"""Decline branches of the ported rules with their exact reasons, constant-fold, cleanup, and the
PassManager's limits - on small graphs built through the IR, run in LiteRT where numbers matter."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from npupass.backends.tflite import serialize_tflite
from npupass.ir import DType, Graph, Model, Op, Quantization, Tensor, check
from npupass.passes import PipelineError, run_passes
from npupass.passes.fold_batch_norm import FoldBatchNorm
from npupass.passes.manager import Context, RewritePass, Rule
from npupass.passes.pattern import new_constant
from npupass.verify.litert import LiteRTModel

SHAPE = (1, 2, 2, 3)


def act(name: str, dtype: DType = DType.FLOAT32, quant: Quantization | None = None) -> Tensor:
    return Tensor(name, dtype, SHAPE, quant=quant)


def arith(kind: str, **options: Any) -> Op:
    return Op(kind, {"fused_activation_function": "NONE"} | options, f"{kind.capitalize()}Options")


def model_of(g: Graph) -> Model:
    check(g)
    return Model([g])


def declines(model: Model, pipeline: str) -> list[str]:
    return [d.message for d in run_passes(model, pipeline).passes[0].declines]


def rule_declines(g: Graph, pass_: RewritePass) -> list[str]:
    """The pass's declines on `g`, run without the PassManager's guarantee checks."""
    check(g)
    ctx = Context(pass_.name)
    pass_.run_on_graph(g, ctx)
    return [d.message for d in ctx.declines]


# --- batch-norm-to-affine: its four declines ---------------------------------------------------------
def batch_norm(var: np.ndarray | None = None, dtype: DType = DType.FLOAT32, gamma_shape: int = 3) -> Graph:
    g = Graph("main")
    x, y = act("x", dtype), act("y", dtype)
    params = [new_constant(n, np.ones(gamma_shape if n == "gamma" else 3)) for n in ("gamma", "beta", "mean")]
    params.append(new_constant("var", np.ones(3) if var is None else var))
    g.add_op(Op("BATCH_NORM", {"epsilon": 1e-3}), [x, *params], [y])
    g.inputs, g.outputs = [x], [y]
    return g


@pytest.mark.parametrize(
    ("graph", "reason"),
    [
        (lambda: batch_norm(dtype=DType.INT32), "only FLOAT32 batch norms are folded, not INT32"),
        (lambda: batch_norm(gamma_shape=2), "gamma is not a constant with one value per channel"),
        (lambda: batch_norm(var=np.full(3, -1.0)), "var + epsilon is not positive"),
    ],
)
def test_batch_norm_to_affine_declines(graph: Any, reason: str) -> None:
    assert rule_declines(graph(), FoldBatchNorm()) == [f"BATCH_NORM 'y' not rewritten: {reason}"]
    with pytest.raises(PipelineError, match="did not establish no-batch-norm: BATCH_NORM 'y' is an IR-only op"):
        run_passes(model_of(graph()), "fold-batch-norm")


def test_batch_norm_to_affine_declines_a_batch_norm_without_its_parameters() -> None:
    g = batch_norm()
    bn = next(g.iter_ops())
    g.remove_op(bn)
    g.add_op(bn, [g.inputs[0]], [g.outputs[0]])
    g.drop_unused(*list(g.tensors))
    assert rule_declines(g, FoldBatchNorm()) == [
        "BATCH_NORM 'y' not rewritten: BATCH_NORM needs x of known shape and gamma, beta, mean, var"
    ]


# --- fold-scale and affine-to-depthwise ----------------------------------------------------------------
def conv_then(kind: str, constant: np.ndarray, weight: np.ndarray | None = None) -> Graph:
    g = Graph("main")
    x, c, y = act("x"), act("conv"), act("y")
    w = new_constant("w", np.ones((3, 1, 1, 3)) if weight is None else weight)
    conv = Op("CONV_2D", {"padding": "VALID", "stride_w": 1, "stride_h": 1, "fused_activation_function": "NONE"})
    conv.options_type = "Conv2DOptions"
    g.add_op(conv, [x, w, new_constant("b", np.zeros(3))], [c])
    g.add_op(arith(kind), [c, new_constant("k", constant)], [y])
    g.inputs, g.outputs = [x], [y]
    return g


def test_fold_scale_declines_a_division_by_zero() -> None:
    g = conv_then("DIV", np.array([1.0, 0.0, 2.0], np.float32))
    assert declines(model_of(g), "fold-batch-norm") == [
        "DIV 'y' not folded into CONV_2D 'conv': constant 'k' is not one finite nonzero factor per output channel"
    ]


def test_fold_scale_declines_weights_that_would_overflow() -> None:
    g = conv_then("MUL", np.full(3, 1e30, np.float32), weight=np.full((3, 1, 1, 3), 1e30))
    assert declines(model_of(g), "fold-batch-norm") == [
        "MUL 'y' not folded into CONV_2D 'conv': the folded weights would overflow float32"
    ]


def test_affine_to_depthwise_declines_an_input_that_is_not_4d() -> None:
    g = Graph("main")
    x, m, y = (Tensor(n, DType.FLOAT32, (2, 3)) for n in ("x", "m", "y"))
    g.add_op(arith("MUL"), [x, new_constant("s", np.full(3, 2.0))], [m])
    g.add_op(arith("ADD"), [m, new_constant("d", np.ones(3))], [y])
    g.inputs, g.outputs = [x], [y]
    assert declines(model_of(g), "fold-batch-norm") == ["MUL 'm' not lowered with ADD 'y': input is not 4-D (NHWC)"]


# --- clamp-to-relu: the quantization-grid guard ----------------------------------------------------------
def test_clamp_to_relu_declines_a_bound_off_the_quantization_grid() -> None:
    g = Graph("main")
    q = Quantization(np.array([0.07], np.float32), np.array([0]))  # 6 / 0.07 is not a whole step
    x, y = act("x", DType.INT8, q), act("y", DType.INT8, q)
    k = new_constant("six", np.array([96]), DType.INT8, Quantization(np.array([0.0625], np.float32), np.array([0])))
    g.add_op(Op("MINIMUM", {}, "MaximumMinimumOptions"), [x, k], [y])
    relu = Op("RELU")
    g.add_op(relu, [act("x0", DType.INT8, q)], [x])
    g.inputs, g.outputs = [g.inputs_of(relu)[0]], [y]  # type: ignore[list-item]
    found = declines(model_of(g), "fuse-activations")
    assert found == ["MINIMUM 'y' + RELU 'x' not turned into a RELU: bound 6 is not on the quantization grid"]


# --- constant-fold --------------------------------------------------------------------------------------
def shape_arithmetic() -> tuple[Graph, Tensor]:
    """x reshaped to a shape computed from constants: CONCATENATION(MUL(a, 2), b), and a TRANSPOSE of
    a constant weight that feeds an ADD."""
    g = Graph("main")
    x, r, y = Tensor("x", DType.FLOAT32, (2, 6)), Tensor("r", DType.FLOAT32, (3, 4)), Tensor("y", DType.FLOAT32, (3, 4))
    a2, shape = Tensor("a2", DType.INT32, (1,)), Tensor("shape", DType.INT32, (2,))
    g.add_op(
        arith("MUL"),
        [new_constant("a", np.array([1]), DType.INT32), new_constant("two", np.array([3]), DType.INT32)],
        [a2],
    )
    g.add_op(
        Op("CONCATENATION", {"axis": 0, "fused_activation_function": "NONE"}, "ConcatenationOptions"),
        [a2, new_constant("b", np.array([4]), DType.INT32)],
        [shape],
    )
    g.add_op(Op("RESHAPE", {"new_shape": [3, 4]}, "ReshapeOptions"), [x, shape], [r])
    wt = Tensor("wt", DType.FLOAT32, (3, 4))
    w = new_constant("w", np.arange(12, dtype=np.float32).reshape(4, 3))
    g.add_op(Op("TRANSPOSE", {}, "TransposeOptions"), [w, new_constant("perm", np.array([1, 0]), DType.INT32)], [wt])
    g.add_op(arith("ADD"), [r, wt], [y])
    g.inputs, g.outputs = [x], [y]
    return g, y


def test_constant_fold_evaluates_constant_subgraphs_and_keeps_the_numbers() -> None:
    g, _ = shape_arithmetic()
    model = model_of(g)
    before = LiteRTModel(serialize_tflite(model))
    x = np.random.default_rng(0).normal(size=(2, 6)).astype(np.float32)
    (want,) = before.run([x])
    result = run_passes(model, "constant-fold")
    assert result.passes[0].rewrites == {"fold-constant-op": 3}
    assert [op.type for op in g.ops] == ["RESHAPE", "ADD"]
    assert [t.name for t in g.inputs_of(g.ops[0])] == ["x", "shape"] and [t.name for t in g.inputs_of(g.ops[1])] == [
        "r",
        "wt",
    ]
    (got,) = LiteRTModel(serialize_tflite(model)).run([x])
    assert np.array_equal(got, want)


def test_constant_fold_respects_its_size_cap_and_graph_outputs() -> None:
    g, _ = shape_arithmetic()
    result = run_passes(model_of(g), "constant-fold", options={"constant-fold": {"max_elements": 2}})
    assert result.passes[0].rewrites == {"fold-constant-op": 2}
    assert [d.message for d in result.passes[0].declines] == [
        "TRANSPOSE 'wt' not rewritten: the result would have 12 elements (at most 2 are folded)"
    ]
    with pytest.raises(PipelineError, match="max_elements must be a non-negative integer"):
        run_passes(model_of(shape_arithmetic()[0]), "constant-fold", options={"constant-fold": {"max_elements": -1}})


# --- cleanup ---------------------------------------------------------------------------------------------
def test_cleanup_removes_identities_chains_and_dead_code() -> None:
    g = Graph("main")
    x, y = act("x"), act("y")
    same = new_constant("same", np.array(SHAPE), DType.INT32)
    t1, t2, t3, t4, t5 = (act(f"t{i}") for i in range(1, 6))
    g.add_op(Op("RESHAPE", {"new_shape": list(SHAPE)}, "ReshapeOptions"), [x, same], [t1])  # identity
    g.add_op(Op("CAST", {}, "CastOptions"), [t1], [t2])  # float -> float: identity
    flip = Tensor("flip", DType.FLOAT32, (1, 3, 2, 2))
    g.add_op(
        Op("TRANSPOSE", {}, "TransposeOptions"), [t2, new_constant("p1", np.array([0, 3, 1, 2]), DType.INT32)], [flip]
    )
    g.add_op(
        Op("TRANSPOSE", {}, "TransposeOptions"), [flip, new_constant("p2", np.array([0, 2, 3, 1]), DType.INT32)], [t3]
    )
    g.add_op(Op("RELU"), [t3], [y])
    g.add_op(Op("TANH"), [t3], [t4])  # dead: nothing reads t4
    g.add_op(Op("RELU"), [t4], [t5])
    g.add_tensor(new_constant("unused", np.ones(1000)))  # a buffer nothing reads
    g.inputs, g.outputs = [x], [y]
    model = model_of(g)
    x_value = np.random.default_rng(1).normal(size=SHAPE).astype(np.float32)
    (want,) = LiteRTModel(serialize_tflite(model)).run([x_value])
    result = run_passes(model, "cleanup")
    assert dict(result.passes[0].rewrites) == {
        "remove-identity": 3,  # RESHAPE, CAST, and the collapsed TRANSPOSE pair's identity
        "collapse-chain": 1,
        "dead-op": 2,
        "unused-tensor": 3,  # t4, t5 and the constant
    }
    assert [op.type for op in g.ops] == ["RELU"] and g.inputs_of(g.ops[0]) == [x]
    assert all(t.name != "unused" for t in g.tensors)
    (got,) = LiteRTModel(serialize_tflite(model)).run([x_value])
    assert np.array_equal(got, want)


def test_cleanup_keeps_an_identity_that_writes_a_graph_output() -> None:
    g = Graph("main")
    x, y = act("x"), act("y")
    g.add_op(
        Op("RESHAPE", {"new_shape": list(SHAPE)}, "ReshapeOptions"),
        [x, new_constant("s", np.array(SHAPE), DType.INT32)],
        [y],
    )
    g.inputs, g.outputs = [x], [y]
    assert declines(model_of(g), "cleanup") == ["RESHAPE 'y' not removed: graph output 'y' would be replaced"]


# --- the PassManager's limits ---------------------------------------------------------------------------
class Flip(Rule[Any]):
    """Swaps the operands of every ADD: never settles."""

    name = "flip"
    anchors = frozenset({"ADD"})

    def match(self, graph: Graph, op: Op) -> Any:
        from npupass.passes.manager import Match

        return Match([op])

    def rewrite(self, graph: Graph, m: Any) -> list[Op]:
        a, b = graph.inputs_of(m.ops[0])
        graph.set_input(m.ops[0], 0, b)
        graph.set_input(m.ops[0], 1, a)
        return [m.ops[0]]


class FlipPass(RewritePass):
    name = "flip"
    summary = "test pass"
    max_sweeps = 3
    rules = (Flip(),)


def test_a_rewrite_pass_that_never_settles_stops_after_its_sweep_cap() -> None:
    g = Graph("main")
    x, y = act("x"), act("y")
    g.add_op(arith("ADD"), [x, new_constant("one", np.ones(3))], [y])
    g.inputs, g.outputs = [x], [y]
    with pytest.raises(PipelineError, match="pass flip was still rewriting graph 'main' after 3 sweeps"):
        FlipPass().run_on_graph(g, Context("flip"))


class SilentBreak(RewritePass):
    """Rewires an ADD to read its own output and reports nothing: the structure check still runs."""

    name = "silent-break"
    summary = "test pass"

    def run_on_graph(self, graph: Graph, ctx: Context) -> None:
        add = next(op for op in graph.ops if op.type == "ADD")
        graph.set_input(add, 1, graph.outputs_of(add)[0])


def test_a_pass_that_changes_structure_without_reporting_it_is_still_checked() -> None:
    from npupass.passes.manager import PASSES

    g = Graph("main")
    x, y = act("x"), act("y")
    g.add_op(arith("ADD"), [x, new_constant("one", np.ones(3))], [y])
    g.inputs, g.outputs = [x], [y]
    PASSES["silent-break"] = SilentBreak
    try:
        with pytest.raises(PipelineError, match="pass silent-break left graph 'main' malformed: cycle through ADD"):
            run_passes(Model([g]), "silent-break")
    finally:
        del PASSES["silent-break"]


# --- more decline branches, one graph each ----------------------------------------------------------------
Q8 = Quantization(np.array([0.05], np.float32), np.array([0]))


def conv_graph(
    after: str | None,
    constant: np.ndarray,
    weight: np.ndarray | None = None,
    weight_dtype: DType = DType.FLOAT32,
    activation: str = "NONE",
) -> Graph:
    """x -> CONV_2D (1x1, 3 channels) -> conv -> AFTER(conv, k) -> y, or an activation AFTER(conv)."""
    g = Graph("main")
    x, c, y = act("x"), act("conv"), act("y")
    w = new_constant("w", np.ones((3, 1, 1, 3)) if weight is None else weight, weight_dtype)
    options = {"padding": "VALID", "stride_w": 1, "stride_h": 1, "fused_activation_function": activation}
    g.add_op(Op("CONV_2D", options, "Conv2DOptions"), [x, w, new_constant("b", np.zeros(3))], [c])
    if after in ("RELU", "RELU6"):
        g.add_op(Op(after), [c], [y])
    elif after is not None:
        g.add_op(arith(after), [c, new_constant("k", constant)], [y])
    g.inputs, g.outputs = [x], [y]
    return g


def affine_graph(dtype: DType = DType.FLOAT32, mul_activation: str = "NONE", scale: np.ndarray | None = None) -> Graph:
    """x -> MUL(s) -> m -> ADD(d) -> y with no op before to fold into (affine-to-depthwise's case)."""
    g = Graph("main")
    x, m, y = act("x", dtype), act("m", dtype), act("y", dtype)
    g.add_op(
        arith("MUL", fused_activation_function=mul_activation),
        [x, new_constant("s", np.full(3, 2.0) if scale is None else scale)],
        [m],
    )
    g.add_op(arith("ADD"), [m, new_constant("d", np.ones(3))], [y])
    g.inputs, g.outputs = [x], [y]
    return g


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        (
            lambda: conv_graph("MUL", np.full(3, 2.0), activation="RELU"),
            "MUL 'y' not folded into CONV_2D 'conv': CONV_2D has fused RELU, which does not commute with the MUL",
        ),
        (
            lambda: conv_graph("MUL", np.full(3, 2.0), weight=np.full((3, 1, 1, 3), np.inf)),
            "MUL 'y' not folded into CONV_2D 'conv': weight 'w' has non-finite values",
        ),
        (
            lambda: conv_graph("MUL", np.full(3, 2.0), weight_dtype=DType.FLOAT16),
            "MUL 'y' not folded into CONV_2D 'conv': weight 'w' is FLOAT16, not FLOAT32",
        ),
        (
            lambda: conv_graph("ADD", np.ones(2)),
            "ADD 'y' not folded into CONV_2D 'conv': constant 'k' is not one value per output channel",
        ),
        (
            lambda: affine_graph(mul_activation="RELU"),
            "MUL 'm' not lowered with ADD 'y': MUL has fused RELU",
        ),
        (lambda: affine_graph(DType.FLOAT16), "MUL 'm' not lowered with ADD 'y': FLOAT16 MUL + ADD kept"),
        (
            lambda: affine_graph(scale=np.arange(12, dtype=np.float32).reshape(SHAPE)),
            "MUL 'm' not lowered with ADD 'y': the MUL constant is not one value per channel",
        ),
    ],
)
def test_fold_batch_norm_declines(graph: Any, message: str) -> None:
    assert declines(model_of(graph()), "fold-batch-norm") == [message]


def test_affine_to_depthwise_declines_int8_on_one_side_only() -> None:
    g = affine_graph()
    g.inputs[0].dtype, g.inputs[0].quant = DType.INT8, Q8
    assert rule_declines(g, FoldBatchNorm()) == [
        "MUL 'm' not lowered with ADD 'y': only float or per-tensor int8 MUL + ADD become a depthwise conv"
    ]


def test_fuse_activation_declines_a_producer_with_an_activation_already() -> None:
    g = conv_graph("RELU", np.ones(1), activation="RELU6")
    assert declines(model_of(g), "fuse-activations") == [
        "CONV_2D 'conv' not fused with RELU 'y': CONV_2D already has fused RELU6"
    ]


def test_clamp_to_relu_declines_a_requantizing_clamp() -> None:
    g = Graph("main")
    x, y = act("x", DType.INT8, Q8), act("y", DType.INT8, Quantization(np.array([0.1], np.float32), np.array([0])))
    zero = new_constant("zero", np.array([0]), DType.INT8, Q8)
    g.add_op(Op("MAXIMUM", {}, "MaximumMinimumOptions"), [x, zero], [y])
    g.inputs, g.outputs = [x], [y]
    assert declines(model_of(g), "fuse-activations") == [
        "MAXIMUM 'y' not turned into a RELU: input and output are quantized differently"
    ]


def test_hard_swish_declines_a_quantized_chain() -> None:
    g = Graph("main")
    q = Quantization(np.array([0.0625], np.float32), np.array([0]))  # 3 is a whole number of steps
    x = act("x", DType.INT8, q)
    a, r, p, y = (act(n, DType.INT8, q) for n in ("a", "r", "p", "y"))

    def k(name: str, value: float) -> Tensor:
        return new_constant(name, np.array([round(value / 0.0625)]), DType.INT8, q)

    g.add_op(arith("ADD"), [x, k("three", 3.0)], [a])
    g.add_op(Op("RELU6"), [a], [r])
    g.add_op(arith("MUL"), [x, r], [p])
    g.add_op(arith("DIV"), [p, k("six", 6.0)], [y])  # int8 throughout, as the validator requires
    g.inputs, g.outputs = [x], [y]
    assert declines(model_of(g), "fuse-activations") == [
        "x * relu6(x + 3) / 6 on 'x' not turned into HARD_SWISH: "
        "quantized hard-swish chains round at every step; HARD_SWISH would change the numbers"
    ]


def q(scales: list[float], zero_points: list[int] | None = None, axis: int = 0) -> Quantization:
    return Quantization(np.array(scales, np.float32), np.array(zero_points or [0] * len(scales)), axis)


def int8_conv_graph(
    after: str, k_ints: list[int], weight_zero_point: int = 0, out_dtype: DType = DType.INT8, x_float: bool = False
) -> Graph:
    """An int8 1x1 conv (per-channel symmetric weights) followed by AFTER(conv, k), k an int8 constant."""
    g = Graph("main")
    x = act("x") if x_float else act("x", DType.INT8, q([0.05]))
    c, y = act("conv", out_dtype, q([0.1])), act("y", out_dtype, q([0.1]))
    w = new_constant("w", np.full((3, 1, 1, 3), 10), DType.INT8, q([0.01] * 3, [weight_zero_point] * 3))
    b = new_constant("b", np.zeros(3), DType.INT32, q([0.0005] * 3))
    options = {"padding": "VALID", "stride_w": 1, "stride_h": 1, "fused_activation_function": "NONE"}
    g.add_op(Op("CONV_2D", options, "Conv2DOptions", version=3), [x, w, b], [c])
    g.add_op(arith(after), [c, new_constant("k", np.array(k_ints), DType.INT8, q([0.05]))], [y])
    g.inputs, g.outputs = [x], [y]
    return g


def dequantized_weight_graph(factor: list[float], weight: np.ndarray, share: bool = False) -> Graph:
    """x -> CONV_2D(x, DEQUANTIZE(int8 w)) -> MUL(factor): a float graph with a quantized weight."""
    g = Graph("main")
    x, c, y, wf = act("x"), act("conv"), act("y"), Tensor("w_float", DType.FLOAT32, (3, 1, 1, 3))
    w = new_constant("w", weight, DType.INT8, q([0.01] * 3))
    g.add_op(Op("DEQUANTIZE"), [w], [wf])
    options = {"padding": "VALID", "stride_w": 1, "stride_h": 1, "fused_activation_function": "NONE"}
    g.add_op(Op("CONV_2D", options, "Conv2DOptions"), [x, wf, new_constant("b", np.zeros(3))], [c])
    g.add_op(arith("MUL"), [c, new_constant("k", np.array(factor, np.float32))], [y])
    g.outputs = [y]
    if share:  # a second conv reads the same dequantized weight
        other = act("other")
        g.add_op(Op("CONV_2D", dict(options), "Conv2DOptions"), [x, wf, new_constant("b2", np.zeros(3))], [other])
        g.outputs.append(other)
    g.inputs = [x]
    return g


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        (
            lambda: int8_conv_graph("MUL", [-20, 20, 20]),
            "MUL 'y' not folded into CONV_2D 'conv': "
            "a factor is not positive, so the int8 weight scales cannot absorb it",
        ),
        (
            lambda: int8_conv_graph("MUL", [20, 20, 20], weight_zero_point=1),
            "MUL 'y' not folded into CONV_2D 'conv': quantized op without a symmetric int8 weight",
        ),
        (
            lambda: int8_conv_graph("MUL", [20, 20, 20], out_dtype=DType.INT16),
            "MUL 'y' not folded into CONV_2D 'conv': only int8 graphs fold into weight scales, not INT16",
        ),
        (
            lambda: int8_conv_graph("ADD", [1, 1, 1], x_float=True),
            "ADD 'y' not folded into CONV_2D 'conv': quantized op without quantized input and weight",
        ),
        (
            lambda: dequantized_weight_graph([0.0, 1.0, 1.0], np.full((3, 1, 1, 3), 10)),
            "MUL 'y' not folded into CONV_2D 'conv': a factor is zero, and a quantization scale cannot be",
        ),
        (
            lambda: dequantized_weight_graph([-1.0, 1.0, 1.0], np.full((3, 1, 1, 3), -128)),
            "MUL 'y' not folded into CONV_2D 'conv': a negative factor would mirror an integer out of INT8's range",
        ),
        (
            lambda: dequantized_weight_graph([2.0, 1.0, 1.0], np.full((3, 1, 1, 3), 10), share=True),
            "MUL 'y' not folded into CONV_2D 'conv': weight 'w' behind DEQUANTIZE is shared",
        ),
    ],
)
def test_fold_scale_declines_in_quantized_graphs(graph: Any, message: str) -> None:
    assert declines(model_of(graph()), "fold-batch-norm") == [message]
