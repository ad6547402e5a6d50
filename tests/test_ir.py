"""The IR's graph helpers, and check() catching every structural fault it claims to detect."""

from __future__ import annotations

import re

import numpy as np
import pytest

from npupass.errors import IRCheckError
from npupass.ir import DType, Graph, Op, Quantization, Tensor, check, problems


def act(name: str, shape: tuple[int, ...] = (1, 4)) -> Tensor:
    return Tensor(name, DType.FLOAT32, shape)


def const(name: str, shape: tuple[int, ...] = (1, 4)) -> Tensor:
    return Tensor(name, DType.FLOAT32, shape, data=np.zeros(shape, np.float32))


def chain() -> tuple[Graph, list[Op], list[Tensor]]:
    """x -> ADD(x, c) -> a -> RELU -> b -> MUL(b, b) -> y"""
    g = Graph("main")
    x, c, a, b, y = act("x"), const("c"), act("a"), act("b"), act("y")
    add = g.add_op(Op("ADD", options_type="AddOptions"), [x, c], [a])
    relu = g.add_op(Op("RELU"), [a], [b])
    mul = g.add_op(Op("MUL", options_type="MulOptions"), [b, b], [y])
    g.inputs, g.outputs = [x], [y]
    return g, [add, relu, mul], [x, c, a, b, y]


def test_queries() -> None:
    g, (add, relu, mul), (x, c, a, b, y) = chain()
    check(g)
    assert g.ops == [add, relu, mul]
    assert g.producer(a) is add and g.producer(x) is None
    assert g.consumers(b) == [(mul, 0), (mul, 1)]
    assert g.consumer_ops(b) == [mul]
    assert g.inputs_of(add) == [x, c]
    assert g.outputs_of(relu) == [b]
    assert g.tensors == [x, c, a, b, y]


def test_ops_keep_original_order_when_it_is_topological() -> None:
    g = Graph()
    x, p, q, r = act("x"), act("p"), act("q"), act("r")
    first = g.add_op(Op("RELU"), [x], [q])
    second = g.add_op(Op("TANH"), [x], [p])
    third = g.add_op(Op("ADD"), [p, q], [r])
    g.inputs, g.outputs = [x], [r]
    assert g.ops == [first, second, third]


def test_ops_follow_data_when_the_order_is_not_topological() -> None:
    g = Graph()
    x, a, b = act("x"), act("a"), act("b")
    late = Op("TANH")
    early = Op("RELU")
    g.add_op(late, [a], [b])  # created first but reads `a`
    g.add_op(early, [x], [a])
    g.inputs, g.outputs = [x], [b]
    assert g.ops == [early, late]


def test_set_input_and_replace_uses() -> None:
    g, (add, relu, mul), (x, c, a, b, y) = chain()
    g.replace_uses(b, a)  # bypass the RELU
    assert g.inputs_of(mul) == [a, a]
    assert g.remove_dead() == 1
    assert relu not in g.nx and b not in g.nx
    check(g)


def test_set_input_omits_and_restores_optional_inputs() -> None:
    g = Graph()
    x, w, y, bias = act("x"), const("w", (4, 4)), act("y"), const("bias", (4,))
    fc = g.add_op(Op("FULLY_CONNECTED"), [x, w, None], [y])
    g.inputs, g.outputs = [x], [y]
    check(g)
    assert g.inputs_of(fc) == [x, w, None]
    g.set_input(fc, 2, bias)
    assert g.inputs_of(fc) == [x, w, bias] and fc.omitted_inputs == set()
    check(g)


def test_replace_op_keeps_wiring_and_position() -> None:
    g, (add, relu, mul), (x, c, a, b, y) = chain()
    relu6 = g.replace_op(relu, Op("RELU6"))
    assert g.ops == [add, relu6, mul]
    assert g.inputs_of(relu6) == [a] and g.outputs_of(relu6) == [b]


def test_remove_dead_keeps_graph_outputs_and_side_effects() -> None:
    g, (add, relu, mul), (x, c, a, b, y) = chain()
    unused = act("unused")
    g.add_op(Op("TANH"), [a], [unused])
    g.add_op(Op("ASSIGN_VARIABLE"), [a, a], [])
    g.add_op(Op("CALL", {"subgraph": 1}, "CallOptions"), [a], [act("call_out")])
    g.add_op(Op("STABLEHLO_CUSTOM_CALL"), [a], [act("custom_out")])
    assert g.remove_dead() == 1
    assert [op.type for op in g.ops] == ["ADD", "RELU", "MUL", "ASSIGN_VARIABLE", "CALL", "STABLEHLO_CUSTOM_CALL"]


def test_remove_dead_keeps_ops_named_by_any_iterable() -> None:
    g, (add, relu, mul), (x, c, a, b, y) = chain()
    tanh = g.add_op(Op("TANH"), [a], [act("t1")])
    sigmoid = g.add_op(Op("LOGISTIC"), [a], [act("t2")])
    assert g.remove_dead(keep=(op for op in (tanh, sigmoid))) == 0
    assert [op.type for op in g.ops] == ["ADD", "RELU", "MUL", "TANH", "LOGISTIC"]


def test_remove_dead_removes_a_long_dead_chain_in_one_pass() -> None:
    g, (add, relu, mul), (x, c, a, b, y) = chain()
    t = a
    for i in range(3000):
        nxt = act(f"dead{i}")
        g.add_op(Op("RELU"), [t], [nxt])
        t = nxt
    assert g.remove_dead() == 3000
    assert [op.type for op in g.ops] == ["ADD", "RELU", "MUL"]
    assert len(g.tensors) == 5


# --- check(): one test per fault -----------------------------------------------------------------
def only_problem(g: Graph) -> str:
    found = problems(g)
    assert len(found) == 1, found
    with pytest.raises(IRCheckError):
        check(g)
    return found[0]


def test_check_finds_a_cycle() -> None:
    g, (add, relu, mul), (x, c, a, b, y) = chain()
    g.set_input(add, 0, y)
    g.inputs = []
    assert only_problem(g).startswith("cycle through ")


def test_check_finds_two_producers() -> None:
    g, (add, relu, mul), (x, c, a, b, y) = chain()
    g.nx.add_edge(relu, a, key=1, slot=1)
    found = problems(g)
    assert "tensor 'a' has 2 producers" in found


def test_check_finds_a_non_bipartite_edge() -> None:
    g, (add, relu, mul), _ = chain()
    g.nx.add_edge(add, relu, key=0, slot=0)
    assert "does not join a tensor and an op" in problems(g)[0]


def test_check_finds_duplicate_input_slots() -> None:
    g, (add, relu, mul), (x, c, a, b, y) = chain()
    g.nx.add_edge(x, mul, key=5, slot=1)
    assert only_problem(g) == "MUL (output 'y') has two tensors on one input slot"


def test_check_finds_a_missing_input_slot() -> None:
    g, (add, relu, mul), (x, c, a, b, y) = chain()
    g.nx.remove_edge(x, add, key=0)
    g.inputs = []
    assert only_problem(g) == "ADD (output 'a') has no tensor on input slot(s) [0]"


def test_check_finds_a_tensor_on_an_omitted_slot() -> None:
    g, (add, relu, mul), _ = chain()
    add.omitted_inputs.add(1)
    assert only_problem(g) == "ADD (output 'a') has a tensor on an input slot marked omitted"


def test_check_finds_sparse_output_slots() -> None:
    g, (add, relu, mul), (x, c, a, b, y) = chain()
    extra = act("extra")
    g.nx.add_edge(relu, extra, key=2, slot=2)
    assert only_problem(g) == "RELU (output 'b') has output slots [0, 2], expected 0..1"


def test_check_finds_graph_ends_outside_the_graph() -> None:
    g, _, _ = chain()
    g.outputs.append(act("ghost"))
    assert only_problem(g) == "graph output tensor 'ghost' is not in the graph"


def test_check_finds_a_constant_without_data() -> None:
    g, _, (x, c, a, b, y) = chain()
    c.data = None
    assert (
        only_problem(g)
        == "tensor 'c' is read by ADD (output 'a') but has no producer, no data and is not a graph input"
    )


def test_check_finds_a_produced_constant() -> None:
    g, _, (x, c, a, b, y) = chain()
    a.data = np.zeros((1, 4), np.float32)
    assert only_problem(g) == "tensor 'a' has constant data but is produced by ADD (output 'a')"


def test_check_finds_quantized_axis_out_of_rank() -> None:
    g, _, (x, c, a, b, y) = chain()
    c.quant = Quantization(scale=[0.1] * 4, zero_point=[0] * 4, axis=2)
    assert only_problem(g) == "tensor 'c' is quantized along axis 2 but has rank 2"


def test_check_finds_scale_count_not_matching_the_axis() -> None:
    g, _, (x, c, a, b, y) = chain()
    c.quant = Quantization(scale=[0.1] * 3, zero_point=[0] * 3, axis=1)
    assert only_problem(g) == "tensor 'c' has 3 scales for axis 1 of size 4 (shape [1, 4])"


def test_check_finds_zero_point_count_mismatch() -> None:
    g, _, (x, c, a, b, y) = chain()
    c.quant = Quantization(scale=[0.1] * 4, zero_point=[0] * 2, axis=1)
    assert only_problem(g) == "tensor 'c' has 4 scales but 2 zero points"


def test_check_finds_data_of_the_wrong_shape() -> None:
    g, _, (x, c, a, b, y) = chain()
    c.data = np.zeros((4,), np.float32)
    assert only_problem(g) == "tensor 'c' has data of shape [4] for tensor shape [1, 4]"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.zeros((1, 4), np.int64), "tensor 'c' has <i8 data for FLOAT32 (expected <f4)"),
        (np.zeros((1, 4), ">f4"), "tensor 'c' has >f4 data for FLOAT32 (expected <f4)"),
    ],
)
def test_check_finds_data_of_the_wrong_type(data: np.ndarray, message: str) -> None:
    g, _, (x, c, a, b, y) = chain()
    c.data = data
    assert only_problem(g) == message
    from npupass.backends.tflite import WriteError, serialize_tflite
    from npupass.ir import Model

    with pytest.raises(WriteError, match=f"^{re.escape(message)}$"):
        serialize_tflite(Model([g]))


def test_check_finds_an_unknown_op_type() -> None:
    g, (add, relu, mul), _ = chain()
    relu.type = "FROBNICATE"
    assert only_problem(g) == "FROBNICATE (output 'b') has unknown op type"


def test_check_finds_a_negative_dimension() -> None:
    g, _, (x, c, a, b, y) = chain()
    b.shape = (1, -4)
    assert only_problem(g) == "tensor 'b' has a negative dimension in shape [1, -4]"


def test_check_finds_a_produced_graph_input() -> None:
    g, _, (x, c, a, b, y) = chain()
    g.inputs.append(b)
    assert only_problem(g) == "tensor 'b' is a graph input but is produced by RELU (output 'b')"


def test_check_names_the_op_writing_an_intermediate_graph_input() -> None:
    g, (add, relu, mul), (x, c, a, b, y) = chain()
    scratch = act("scratch")
    g.nx.add_edge(relu, scratch, key=("intermediate", 0), slot=0, intermediate=True)
    g.inputs.append(scratch)
    assert only_problem(g) == "tensor 'scratch' is a graph input but is produced by RELU (output 'b')"


def test_lookups_by_name_and_graph_output_guard() -> None:
    g, (add, relu, mul), (x, c, a, b, y) = chain()
    assert g.find_tensor("b") is b
    with pytest.raises(KeyError):
        g.find_tensor("nope")
    assert g.is_graph_output(y) and not g.is_graph_output(b)


# --- cached execution order, ordering keys, names ----------------------------------------------------
def test_reading_ops_twice_without_a_mutation_sorts_once() -> None:
    g, (add, relu, mul), (x, c, a, b, y) = chain()
    before = g.sorts
    first, second = g.ops, g.ops
    assert first == second == [add, relu, mul]
    assert g.sorts == before + 1
    first.reverse()  # a caller's copy: the cache is not touched
    assert g.ops == [add, relu, mul] and g.sorts == before + 1
    g.set_input(mul, 1, x)  # every mutation forgets the order
    assert g.ops == [add, relu, mul] and g.sorts == before + 2


def test_every_mutation_invalidates_the_cached_order() -> None:
    g, (add, relu, mul), (x, c, a, b, y) = chain()
    assert g.ops == [add, relu, mul]
    neg = g.add_op(Op("NEG"), [x], [act("n")], place=add)
    assert g.ops == [add, neg, relu, mul]
    g.remove_op(neg)
    assert g.ops == [add, relu, mul] and g.num_ops == 3
    sq = Op("SQUARE")
    g.set_output(relu, 0, act("r2"))  # relu now writes r2; b is still read by mul
    g.add_op(sq, [g.outputs_of(relu)[0]], [b], place=relu)
    assert g.ops == [add, relu, sq, mul]


def test_placed_ops_take_the_position_of_their_anchor_with_stable_ties() -> None:
    g = Graph("main")
    x = act("x")
    first = g.add_op(Op("RELU"), [x], [act("a")])
    second = g.add_op(Op("RELU"), [x], [act("b")])
    # two ops placed at `first` run right after it, in the order they were placed, before `second`
    p1 = g.add_op(Op("NEG"), [x], [act("c")], place=first)
    p2 = g.add_op(Op("ABS"), [x], [act("d")], place=first)
    assert g.ops == [first, p1, p2, second]
    # an op placed at `second` that feeds it runs before it
    position = g.position(second)
    g.remove_op(second)
    feed = g.add_op(Op("NEG"), [x], [act("e")], place=position)
    again = g.add_op(Op("RELU"), [g.outputs_of(feed)[0]], [act("b2")], place=position)
    assert g.ops == [first, p1, p2, feed, again]


def test_the_ir_hands_out_fresh_names() -> None:
    g, (add, relu, mul), (x, c, a, b, y) = chain()
    assert g.fresh_name("a") == "a_1" and g.fresh_name("a") == "a_2" and g.fresh_name("new") == "new"
    twin = act("b")  # a second tensor named 'b', added by a rewrite, is renamed as it enters the graph
    g.add_op(Op("RELU", name="r"), [x], [twin], place=add)
    assert twin.name == "b_1"
    other = g.add_op(Op("RELU", name="r"), [x], [act("z")], place=add)
    assert other.name == "r_1"
    built = act("b")  # building a graph keeps the names it is given; check reports twins
    g.add_op(Op("RELU"), [x], [built])
    assert built.name == "b" and problems(g) == ["two tensors are named 'b'"]
    g.remove_op(g.producer(built))  # type: ignore[arg-type]
    g.drop_unused(built)
    # a tensor taking the place of one that leaves the graph keeps its name
    g.set_input(add, 1, const("c"))
    assert sorted(t.name for t in g.tensors if t.name.startswith("c")) == ["c"]
    assert problems(g) == []


def test_check_finds_duplicate_names() -> None:
    g, (add, relu, mul), (x, c, a, b, y) = chain()
    b.name = "a"  # renamed behind the IR's back
    relu.name = mul.name = "twin"
    assert problems(g) == ["two tensors are named 'a'", "two ops are named 'twin'"]
