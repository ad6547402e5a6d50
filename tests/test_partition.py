"""The generic partitioner: convex NPU regions, merging without cycles, reasons for every CPU op."""

from __future__ import annotations

import numpy as np

from npupass.ir.graph import Graph, Op, Tensor
from npupass.ir.types import DType
from npupass.passes.partition import CPU, NPU, partition


def _t(name: str) -> Tensor:
    return Tensor(name, DType.INT8, (1, 4))


def _graph(edges: dict[str, list[str]]) -> tuple[Graph, dict[str, Op]]:
    """Ops named by letters; `edges[name]` lists the ops it reads from ("in" = the graph input)."""
    g = Graph("g")
    x = _t("in")
    g.inputs = [x]
    outs = {"in": x}
    ops = {}
    for name, sources in edges.items():
        outs[name] = _t(name)
        ops[name] = g.add_op(
            Op("ADD" if len(sources) > 1 else "RELU", name=name), [outs[s] for s in sources], [outs[name]]
        )
    g.outputs = [outs[list(edges)[-1]]]
    return g, ops


def _cpu(*names: str):
    return lambda graph, op: [f"{op.name} is CPU-only"] if op.name in names else []


def _regions(graph: Graph, predicate, worth=None) -> list[list[str]]:
    return [[op.name for op in region] for region in partition(graph, predicate, worth).regions]


def test_a_cpu_op_in_a_chain_splits_it() -> None:
    g, _ = _graph({"a": ["in"], "b": ["a"], "c": ["b"], "d": ["c"]})
    result = partition(g, _cpu("b"))
    assert [[op.name for op in r] for r in result.regions] == [["a"], ["c", "d"]]
    assert [(op.name, p.device, p.reasons) for op, p in result.placement.items() if p.device == CPU] == [
        ("b", CPU, ["b is CPU-only"])
    ]
    assert all(result.placement[op].device == NPU for op in result.regions[1])


def test_a_region_never_contains_a_path_through_the_cpu() -> None:
    # a -> b(CPU) -> d and a -> c -> d: d may not join {a, c}, or the region would wait on itself
    g, _ = _graph({"a": ["in"], "b": ["a"], "c": ["a"], "d": ["b", "c"]})
    assert _regions(g, _cpu("b")) == [["a", "c"], ["d"]]


def test_branches_from_a_cpu_op_merge_where_they_meet() -> None:
    g, _ = _graph({"x": ["in"], "a": ["x"], "b": ["x"], "c": ["a", "b"]})
    assert _regions(g, _cpu("x")) == [["a", "b", "c"]]


def test_regions_that_depend_through_the_cpu_are_not_merged() -> None:
    # a -> x(CPU) -> b; a and b both feed c: merging {a}, {b} and c would put x inside a cycle
    g, _ = _graph({"a": ["in"], "x": ["a"], "b": ["x"], "c": ["a", "b"]})
    assert _regions(g, _cpu("x")) == [["a"], ["b", "c"]]


def test_everything_on_the_npu_is_one_region() -> None:
    g, _ = _graph({"a": ["in"], "b": ["a"], "c": ["a"], "d": ["b", "c"]})
    assert _regions(g, _cpu()) == [["a", "b", "c", "d"]]


def test_regions_not_worth_offloading_go_back_to_the_cpu_with_the_reason() -> None:
    g, ops = _graph({"a": ["in"], "b": ["a"], "c": ["b"], "d": ["c"]})
    result = partition(g, _cpu("b"), worth=lambda graph, members: "a lone op" if len(members) == 1 else None)
    assert [[op.name for op in r] for r in result.regions] == [["c", "d"]]
    assert result.placement[ops["a"]].device == CPU and result.placement[ops["a"]].reasons == ["a lone op"]
    assert result.view_placement()[ops["b"]] == {"target": "CPU", "reason": "b is CPU-only"}
    assert result.to_json(g) == {
        "regions": [[2, 3]],
        "cpu_ops": [
            {"index": 0, "op": "RELU 'a'", "reasons": ["a lone op"]},
            {"index": 1, "op": "RELU 'b'", "reasons": ["b is CPU-only"]},
        ],
    }


def _contracted_is_acyclic(graph: Graph, predicate) -> bool:
    """Regions as single nodes (CPU ops as themselves): the regions can run in some order iff this is a DAG."""
    import networkx as nx

    result = partition(graph, predicate)
    node = {op: ("region", p.region) if p.region is not None else ("op", op.name) for op, p in result.placement.items()}
    contracted = nx.DiGraph()
    contracted.add_nodes_from(node.values())
    for op in graph.iter_ops():
        for t in graph.inputs_of(op):
            producer = graph.producer(t) if t is not None else None
            if producer is not None and node[producer] != node[op]:
                contracted.add_edge(node[producer], node[op])
    return nx.is_directed_acyclic_graph(contracted)


def test_regions_never_wait_on_each_other_in_a_loop() -> None:
    # region {z2, z1} is reached from r1 through cpuA and feeds x through cpuB: x may not join r1's region
    g, _ = _graph(
        {"r1": ["in"], "cpuA": ["r1"], "z2": ["in"], "z1": ["cpuA", "z2"], "cpuB": ["z2"], "x": ["r1", "cpuB"]}
    )
    assert _regions(g, _cpu("cpuA", "cpuB")) == [["r1"], ["z2", "z1"], ["x"]]
    assert _contracted_is_acyclic(g, _cpu("cpuA", "cpuB"))


def test_random_graphs_partition_into_regions_that_can_be_ordered() -> None:
    rng = np.random.default_rng(0)
    for _ in range(400):
        n = int(rng.integers(3, 26))
        edges: dict[str, list[str]] = {}
        for i in range(n):
            earlier = ["in", *list(edges)]
            k = min(len(earlier), int(rng.integers(1, 3)))
            edges[f"o{i}"] = [str(s) for s in rng.choice(earlier, size=k, replace=False)]
        cpu = {name for name in edges if rng.random() < 0.3}
        g, _ = _graph(edges)
        result = partition(g, _cpu(*cpu))
        assert {op.name for op in result.cpu_ops} == cpu
        assert _contracted_is_acyclic(g, _cpu(*cpu)), edges
