"""Pipeline policy, in one place: which passes a model needs before a target's own passes, decided from
what the model holds (IR-only ops, fake quantization, whether it is in a converter's canonical form),
never from the file format it came in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from npupass.ir.analysis import fake_quant_problem, has_fake_quant, label
from npupass.ir.graph import Model
from npupass.ir.ops import IR_ONLY_OPS

CANONICALIZE = ["fold-batch-norm", "fuse-activations"]
FOLD_FAKE_QUANT = "fold-fake-quant"
CONSTANT_FOLD, CLEANUP = "constant-fold", "cleanup"
# IR-only ops -> the passes that remove them, before canonicalization (an exact GELU's ERF)
LOWERINGS = {"ERF": ["fuse-gelu", "lower-erf"]}


@dataclass(frozen=True)
class TargetNeeds:
    """What a target asks of the pipeline.

    `canonicalize`: "always" runs batch-norm folding and activation fusion on every model (they make the
    NPU's work smaller); "when-needed" only on models that are not yet in canonical form or hold IR-only ops.
    `integer`: fake quantization is folded into a fully-int8 model with int8 I/O (NPUs compute in integers).
    `then`: the target's own passes, appended.
    """

    canonicalize: str = "when-needed"
    integer: bool = False
    then: tuple[str, ...] = ()


def needs_canonicalization(model: Model) -> bool:
    """Whether the model holds IR-only ops or is an op-by-op translation a converter has not canonicalized."""
    ir_only = any(op.type in IR_ONLY_OPS for g in model.subgraphs for op in g.iter_ops())
    return ir_only or not model.canonical


def default_pipeline(model: Model, target: TargetNeeds | None = None) -> list[str]:
    """The passes to run on `model` for `target` (None: a plain conversion, which keeps a canonical model
    exactly as it is and canonicalizes, and folds the fake quantization of, a translated one)."""
    needs = target or TargetNeeds()
    present = {op.type for g in model.subgraphs for op in g.iter_ops()}
    names = [name for op_type, passes in LOWERINGS.items() if op_type in present for name in passes]
    if needs.canonicalize == "always" or needs_canonicalization(model):
        names += CANONICALIZE
    fold = has_fake_quant(model) and (needs.integer or (target is None and not model.canonical))
    if fold:
        names = names + [n for n in CANONICALIZE if n not in names] + [FOLD_FAKE_QUANT]
    names += [n for n in needs.then if n not in names]
    # constant arithmetic folded first, dead and identity ops swept last, whenever anything runs
    return [CONSTANT_FOLD, *names, CLEANUP] if names else []


def pipeline_options(names: list[str], target: TargetNeeds | None = None) -> dict[str, dict[str, Any]]:
    """Pass options a target implies: an integer target folds fake quantization with int8 I/O."""
    if target is not None and target.integer and FOLD_FAKE_QUANT in names:
        return {FOLD_FAKE_QUANT: {"io": "int8"}}
    return {}


def extend_spec(spec: str | Sequence[str]) -> tuple[bool, list[str]]:
    """Whether a pipeline spec extends the default ("+encode-clusters", or every name prefixed "+")
    and the pass names it gives."""
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec)]
    names = [n for n in names if n]
    extend = bool(names) and names[0].startswith("+")
    return extend, [n.lstrip("+").strip() for n in names]


def extend_pipeline(default: list[str], extra: list[str]) -> list[str]:
    """The default pipeline with `extra` appended (names already in it are not repeated)."""
    added = [n for n in extra if n not in default]
    if default and default[-1] == CLEANUP:  # the sweep stays last
        return [*default[:-1], *added, CLEANUP]
    return default + added


def pipeline_leftovers(model: Model) -> str | None:
    """What a pipeline left that no backend may write: IR-only ops or fake quantization (None: nothing)."""
    for graph in model.subgraphs:
        for op in graph.iter_ops():
            if op.type in IR_ONLY_OPS:
                return f"{label(graph, op)} is an IR-only op (the pipeline needs fold-batch-norm)"
    problem = fake_quant_problem(model)
    if problem is not None:
        return f"fake quantization is left in the model ({problem}; the pipeline needs {FOLD_FAKE_QUANT})"
    return None
