"""The PassManager: pipelines, the pass contract, fixed points and per-pass verification."""

from __future__ import annotations

import numpy as np
import pytest
from rewrites import load, unfuse, weighted_ops

from npupass.ir.graph import Graph
from npupass.passes import PASSES, PassManager, PassVerificationError, PipelineError, available_passes, run_passes
from npupass.passes.manager import Context, Pass
from npupass.passes.pattern import input_at, new_constant
from npupass.verify.passes import PassVerifier


class NegateBias(Pass):
    """A deliberately wrong pass: negates the bias of every conv (what verification must catch)."""

    name = "negate-bias"
    summary = "negate conv biases (test pass)"

    def run_on_graph(self, graph: Graph, ctx: Context) -> None:
        for op in weighted_ops(graph, "CONV_2D"):
            bias = input_at(graph, op, 2)
            if bias is not None and "negate-bias/negate" not in op.provenance.get("rules", []):
                graph.set_input(op, 2, new_constant(bias.name, -np.asarray(bias.data)))
                ctx.rewrote("negate", [op], [op.type])


class SetSame(Pass):
    """Sets the first conv's padding; with SetValid in one pipeline the two never settle."""

    name = "set-same"
    summary = "set padding SAME (test pass)"
    padding = "SAME"

    def run_on_graph(self, graph: Graph, ctx: Context) -> None:
        op = weighted_ops(graph, "CONV_2D")[0]
        if op.options["padding"] != self.padding:
            op.options["padding"] = self.padding
            ctx.rewrote("set", [], [])


class SetValid(SetSame):
    name = "set-valid"
    padding = "VALID"


def test_registry_lists_the_core_passes_with_summaries() -> None:
    names = [name for name, _ in available_passes()]
    assert {"fold-batch-norm", "fuse-activations", "fold-fake-quant"} <= set(names)
    assert all(summary for _, summary in available_passes())


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        ("", "the pipeline is empty; name at least one pass (see `npupass passes`)"),
        (" , ", "the pipeline is empty; name at least one pass (see `npupass passes`)"),
        ("fold-batch-norm,fold-bn", "unknown pass 'fold-bn'; available: "),
    ],
)
def test_pipeline_errors(pipeline: str, message: str) -> None:
    with pytest.raises(PipelineError) as err:
        PassManager(pipeline)
    assert str(err.value).startswith(message)


def test_list_and_string_pipelines_are_the_same() -> None:
    a = PassManager("fold-batch-norm, fuse-activations")
    b = PassManager(["fold-batch-norm", "fuse-activations"])
    assert [p.name for p in a.passes] == [p.name for p in b.passes] == ["fold-batch-norm", "fuse-activations"]


def test_options_must_name_a_pass_in_the_pipeline() -> None:
    stray = r"^options given for pass 'fold-fake-quant', which is not in the pipeline$"
    with pytest.raises(PipelineError, match=stray):
        PassManager("fuse-activations", options={"fold-fake-quant": {"io": "int8"}})
    with pytest.raises(PipelineError, match=r"^pass fuse-activations takes no options \(got io\)$"):
        PassManager("fuse-activations", options={"fuse-activations": {"io": "int8"}})
    with pytest.raises(PipelineError, match=r"^fold-fake-quant: io must be float or int8, not 'int4'$"):
        PassManager("fold-fake-quant", options={"fold-fake-quant": {"io": "int4"}})


def test_result_reports_rewrites_time_and_runs() -> None:
    model = load("cnn_float")
    for op in weighted_ops(model.main):
        if op.options["fused_activation_function"] != "NONE":
            unfuse(model.main, op)
    result = run_passes(model, "fold-batch-norm,fuse-activations")
    data = result.to_json()
    assert [p["name"] for p in data["passes"]] == ["fold-batch-norm", "fuse-activations"]
    fold, fuse = data["passes"]
    assert fold["changed"] is False and fold["rewrites"] == {} and fold["runs"] == 2
    assert fuse["changed"] is True and fuse["rewrites"] == {"fuse-activation": 3} and fuse["runs"] == 1
    assert all(p["seconds"] >= 0 for p in data["passes"]) and data["seconds"] >= fuse["seconds"]
    fused = [op for op in model.main.ops if op.provenance]
    assert len(fused) == 3
    assert fused[0].provenance["rules"] == ["fuse-activations/fuse-activation"]
    assert len(fused[0].provenance["from"]) == 2


def test_unchanged_model_reports_unchanged() -> None:
    model = load("cnn_float")
    result = run_passes(model, "fold-batch-norm,fuse-activations")
    assert not result.changed
    assert all(p.runs == 1 for p in result.passes)


def test_fixed_point_cap_names_the_busy_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PASSES, "set-same", SetSame)
    monkeypatch.setitem(PASSES, "set-valid", SetValid)
    with pytest.raises(PipelineError) as err:
        # check=False: flipping the padding leaves the recorded output shapes wrong, which the check would report
        PassManager("set-same,fuse-activations,set-valid", max_rounds=3, check=False).run(load("cnn_float"))
    assert str(err.value) == ("the pipeline did not settle after 3 rounds; still rewriting: set-same, set-valid")


def test_verify_names_the_first_pass_that_changed_the_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PASSES, "negate-bias", NegateBias)
    model = load("cnn_float")
    for op in weighted_ops(model.main):
        if op.options["fused_activation_function"] != "NONE":
            unfuse(model.main, op)
    with pytest.raises(PassVerificationError) as err:
        PassManager("fuse-activations,negate-bias").run(model, verify=PassVerifier())
    assert err.value.pass_name == "negate-bias"
    assert str(err.value).startswith("pass negate-bias changed the outputs: max relative error ")


def test_verify_passes_a_correct_pipeline() -> None:
    from npupass.verify.passes import PassVerifier

    model = load("cnn_float")
    for op in weighted_ops(model.main):
        if op.options["fused_activation_function"] != "NONE":
            unfuse(model.main, op)
    verifier = PassVerifier(samples=2)
    PassManager("fold-batch-norm,fuse-activations").run(model, verify=verifier)
    assert [c.name for c in verifier.checks] == ["fuse-activations"]
    assert verifier.checks[0].max_rel_error == 0.0 and verifier.checks[0].problem is None


def test_structural_check_runs_after_each_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    class Dangle(Pass):
        name = "dangle"
        summary = "make the first op read its own output: a cycle (test pass)"

        def run_on_graph(self, graph: Graph, ctx: Context) -> None:
            first = graph.ops[0]
            graph.set_input(first, 0, graph.outputs_of(first)[0])
            ctx.rewrote("cycle", [], [])

    monkeypatch.setitem(PASSES, "dangle", Dangle)
    with pytest.raises(PipelineError, match=r"^pass dangle left graph 'main' malformed: "):
        PassManager("dangle").run(load("cnn_float"))
