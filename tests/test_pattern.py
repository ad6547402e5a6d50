"""The pattern layer (passes/pattern.py) and framework-owned replacement (Graph.replace, Replacement)."""

from __future__ import annotations

import numpy as np

from npupass.ir import DType, Graph, Op, Tensor, check
from npupass.passes.manager import Context, Match, Replacement, RewritePass, Rule
from npupass.passes.pattern import NoMatch, const, either, intermediate, match, new_constant, op, var


def act(name: str) -> Tensor:
    return Tensor(name, DType.FLOAT32, (1, 4))


def scale_shift() -> tuple[Graph, dict[str, Op], dict[str, Tensor]]:
    """y = ADD(MUL(k, x), d), with the MUL's constant on the left."""
    g = Graph("main")
    x, m, y = act("x"), act("m"), act("y")
    k, d = new_constant("k", np.full((1, 4), 2.0)), new_constant("d", np.ones((1, 4)))
    mul = g.add_op(Op("MUL", {"fused_activation_function": "NONE"}, "MulOptions", name="mul"), [k, x], [m])
    add = g.add_op(Op("ADD", {"fused_activation_function": "NONE"}, "AddOptions", name="add"), [m, d], [y])
    g.inputs, g.outputs = [x], [y]
    return g, {"mul": mul, "add": add}, {"x": x, "m": m, "y": y, "k": k, "d": d}


AFFINE = op("ADD", op("MUL", var("x"), const("k"), commutative=True, name="mul"), const("d"), name="add")


def test_a_pattern_binds_ops_tensors_and_constant_values_in_either_operand_order() -> None:
    g, ops, ts = scale_shift()
    found = match(AFFINE, g, ops["add"])
    assert not isinstance(found, NoMatch)
    assert found.op("mul") is ops["mul"] and found.op("add") is ops["add"]
    assert found.tensor("x") is ts["x"] and np.array_equal(found.value("k"), np.full((1, 4), 2.0))
    assert found.matched == [ops["mul"], ops["add"]]  # data order


def test_a_failed_match_says_why() -> None:
    g, ops, ts = scale_shift()
    not_commutative = op("ADD", op("MUL", var("x"), const("k"), name="mul"), const("d"))
    assert match(not_commutative, g, ops["add"]) == NoMatch("'x' is not a constant")  # MUL(k, x)
    assert match(op("SUB"), g, ops["add"]) == NoMatch("ADD is not SUB")
    assert match(op("ADD", var(), const(equals=3.0)), g, ops["add"]) == NoMatch("constant 'd' is not 3")
    g.outputs.append(ts["m"])
    assert match(op("ADD", intermediate(op("MUL")), const()), g, ops["add"]) == NoMatch("'m' is a graph output")


def test_one_use_and_a_name_bound_twice() -> None:
    g, ops, ts = scale_shift()
    g.add_op(Op("RELU"), [ts["m"]], [act("r")])
    assert match(op("ADD", intermediate(op("MUL")), const()), g, ops["add"]) == NoMatch("'m' has 2 consumers")
    # ADD(x, x): var("a") bound twice must be one tensor
    square = g.add_op(Op("ADD"), [ts["x"], ts["x"]], [act("xx")])
    assert not isinstance(match(op("ADD", var("a"), var("a")), g, square), NoMatch)
    assert match(op("ADD", var("a"), var("a")), g, ops["add"]) == NoMatch("'d' is not 'm'")
    assert not isinstance(match(op("ADD", either(op("SUB"), op("MUL")), const()), g, ops["add"]), NoMatch)


def test_replace_places_new_ops_names_them_and_drops_dead_tensors() -> None:
    g, ops, ts = scale_shift()
    tail = g.add_op(Op("RELU", name="tail"), [ts["y"]], [act("z")])
    g.outputs = [g.outputs_of(tail)[0]]
    fused = Op("DEPTHWISE_CONV_2D")
    w, b = new_constant("k", np.full((1, 1, 1, 4), 2.0)), new_constant("d", np.ones(4))
    assert g.replace([ops["mul"], ops["add"]], [(fused, [ts["x"], w, b], [ts["y"]])]) is None
    assert g.ops == [fused, tail] and fused.name == "add"  # the place and the name of the last old op
    assert ts["m"] not in g.nx and ts["k"] not in g.nx and w.name == "k"  # dead tensors gone, names free
    check(g)


def test_replace_refuses_when_an_intermediate_is_read_outside_the_match() -> None:
    g, ops, ts = scale_shift()
    g.add_op(Op("RELU"), [ts["m"]], [act("r")])
    before = g.ops
    reason = g.replace([ops["mul"], ops["add"]], [(Op("ABS"), [ts["x"]], [ts["y"]])])
    assert reason == "'m' is also read by RELU, outside the match"
    assert g.ops == before  # nothing changed


def test_replace_refuses_when_a_graph_output_would_vanish() -> None:
    g, ops, ts = scale_shift()
    g.outputs.append(ts["m"])
    assert g.replace([ops["mul"], ops["add"]], [(Op("ABS"), [ts["x"]], [ts["y"]])]) == "graph output 'm' would vanish"


class AbsOfAffine(Rule[Match]):
    name = "abs-of-affine"
    anchors = frozenset({"ADD"})

    def match(self, graph: Graph, op: Op) -> Match | None:
        found = match(AFFINE, graph, op)
        return None if isinstance(found, NoMatch) else Match(found.matched[::-1])

    def rewrite(self, graph: Graph, m: Match) -> Replacement:
        x = graph.inputs_of(m.ops[1])[1]
        return Replacement(m.ops[::-1], [(Op("ABS"), [x], [graph.outputs_of(m.ops[0])[0]])])


class AbsPass(RewritePass):
    name = "abs-of-affine"
    summary = "test pass"
    rules = (AbsOfAffine(),)


def test_a_refused_replacement_is_a_decline_and_an_accepted_one_has_provenance() -> None:
    g, ops, ts = scale_shift()
    g.outputs.append(ts["m"])
    ctx = Context("abs-of-affine")
    AbsPass().run_on_graph(g, ctx)
    assert not ctx.rewrites
    assert [d.message for d in ctx.declines] == [
        "ADD 'add' not rewritten with MUL 'mul': graph output 'm' would vanish"
    ]
    g.outputs.pop()
    AbsPass().run_on_graph(g, ctx)
    (new,) = g.ops
    assert ctx.rewrites == {"abs-of-affine": 1} and not ctx.declines
    assert new.provenance == {"rules": ["abs-of-affine/abs-of-affine"], "from": ["ADD 'add'", "MUL 'mul'"]}
