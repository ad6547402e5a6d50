"""Pass infrastructure: the pass contract, rewrite rules, the registry and the PassManager.

A pass rewrites a Model in place and reports truthfully what it did: whether the graph changed, how
many rewrites each of its rules made, and why every match it declined was declined. A rewrite rule
is pattern (`match`) + guard (`check`, which returns the reason it declines) + `rewrite`.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from npupass.errors import NpupassError
from npupass.ir.analysis import fake_quant_problem, label
from npupass.ir.check import problems
from npupass.ir.graph import Graph, Model, Op, Tensor
from npupass.ir.ops import IR_ONLY_OPS


class PipelineError(NpupassError):
    """A pipeline cannot run: unknown pass, broken pass contract, no fixed point."""


class PassVerificationError(NpupassError):
    """A pass changed the model's outputs beyond its tolerance in the reference interpreter."""

    def __init__(self, pass_name: str, detail: str) -> None:
        self.pass_name = pass_name
        self.detail = detail
        super().__init__(f"pass {pass_name} changed the outputs: {detail}")


# --- what a pass reports --------------------------------------------------------------------------
@dataclass(frozen=True)
class Decline:
    """A match a rule declined, with the reason users see in `--explain`."""

    rule: str
    message: str


@dataclass
class PassResult:
    name: str
    changed: bool = False
    rewrites: Counter[str] = field(default_factory=Counter)
    declines: list[Decline] = field(default_factory=list)
    seconds: float = 0.0
    runs: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "changed": self.changed,
            "rewrites": dict(sorted(self.rewrites.items())),
            "declined": [{"rule": d.rule, "message": d.message} for d in self.declines],
            "seconds": round(self.seconds, 6),
            "runs": self.runs,
        }


@dataclass
class PipelineResult:
    passes: list[PassResult]
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return any(p.changed for p in self.passes)

    @property
    def declines(self) -> list[Decline]:
        return [d for p in self.passes for d in p.declines]

    def to_json(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 6), "passes": [p.to_json() for p in self.passes]}


class Context:
    """What one run of a pass records: rewrites per rule, declines, and provenance of new ops."""

    def __init__(self, pass_name: str) -> None:
        self.pass_name = pass_name
        self.rewrites: Counter[str] = Counter()
        self._declines: dict[tuple[str, Op | str], Decline] = {}

    def decline(self, rule: str, message: str, anchor: Op | None = None) -> None:
        """Record why `rule` declined a match at `anchor` (the latest reason wins); dropped if the
        rule later fires there."""
        self._declines[(rule, anchor if anchor is not None else message)] = Decline(rule, message)

    def fired(self, rule: str, anchor: Op) -> None:
        self._declines.pop((rule, anchor), None)

    @staticmethod
    def origins(graph: Graph, sources: Sequence[Op]) -> list[str]:
        """The original ops behind `sources` (take it before a rewrite removes them)."""
        names: list[str] = []
        for src in sources:
            for name in src.provenance.get("from") or [label(graph, src)]:
                if name not in names:
                    names.append(name)
        return names

    def rewrote(self, rule: str, ops: Iterable[Op], origins: Sequence[str]) -> None:
        """Count one rewrite by `rule`; `ops` (new or changed) record the rule and `origins`."""
        self.rewrites[rule] += 1
        for op in ops:
            rules = [*op.provenance.get("rules", []), f"{self.pass_name}/{rule}"]
            merged = list(op.provenance.get("from", []))
            merged += [name for name in origins if name not in merged]
            op.provenance = {"rules": rules, "from": merged}

    @property
    def declines(self) -> list[Decline]:
        return list(self._declines.values())


# --- passes and rules ------------------------------------------------------------------------------
class Pass:
    """A named model-to-model rewrite. Subclasses state the algebra in their docstring.

    `requires` and `guarantees` name model properties (see PROPERTIES) the pass needs before it runs
    and establishes when it returns; the PassManager checks both. `max_steps` bounds how far outputs
    may move in `verify` runs, on at least `min_within` of the elements: 0 = same numbers (floats
    within `rtol` of the largest magnitude).
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    requires: ClassVar[frozenset[str]] = frozenset()
    guarantees: ClassVar[frozenset[str]] = frozenset()
    rtol: ClassVar[float] = 1e-5
    max_steps: ClassVar[int] = 0
    min_within: ClassVar[float] = 1.0

    def __init__(self, **options: Any) -> None:
        if options:
            raise PipelineError(f"pass {self.name} takes no options (got {', '.join(sorted(options))})")

    def run(self, model: Model, ctx: Context) -> None:
        for graph in model.subgraphs:
            self.run_on_graph(graph, ctx)

    def run_on_graph(self, graph: Graph, ctx: Context) -> None:
        raise NotImplementedError


@dataclass
class Match:
    """What a rule's pattern found; `ops[0]` and `ops[1]` name the decline message's two sides."""

    ops: list[Op]


M = TypeVar("M", bound=Match)


@dataclass
class Replacement:
    """What a rewrite asks the framework to do: replace the ops `old` by `new` ((op, inputs, outputs)
    in data order) at the place of `place` (default: the last of `old`). The graph refuses, with a
    reason that becomes a decline, when an old op's result is read outside `old` or is a graph output
    and no new op writes it (Graph.replace)."""

    old: list[Op]
    new: list[tuple[Op, Sequence[Tensor | None], Sequence[Tensor]]]
    place: Op | None = None
    options: dict[Op, dict[str, Any]] = field(default_factory=dict)
    """Option updates for ops of `new` (an old op kept in `new` keeps its identity), applied only
    when the graph accepts the replacement."""
    rewire: dict[Tensor, Tensor] = field(default_factory=dict)
    """Readers of an old op's output that read another tensor instead (a folded constant, say)."""


class Rule(Generic[M]):
    """pattern (`match`) + guard (`check` returns why it declines, or None) + `rewrite`.

    `rewrite` returns a Replacement that the framework applies (placing the new ops in execution
    order, carrying names and provenance, dropping dead tensors, refusing unsafe replacements); a
    rule may instead edit the graph itself and return the new or changed ops.
    """

    name: ClassVar[str]
    anchors: ClassVar[frozenset[str]]
    verb: ClassVar[str] = "rewritten with"

    def match(self, graph: Graph, op: Op) -> M | None:
        raise NotImplementedError

    def check(self, graph: Graph, m: M) -> str | None:
        return None

    def rewrite(self, graph: Graph, m: M) -> Replacement | list[Op]:
        """Rewrite the match: a Replacement, or (after editing the graph) the new or changed ops."""
        raise NotImplementedError

    def describe(self, graph: Graph, m: M) -> str:
        first = label(graph, m.ops[0])
        return f"{first} not {self.verb} {label(graph, m.ops[1])}" if len(m.ops) > 1 else f"{first} not rewritten"


class RewritePass(Pass):
    """Applies its rules to every op, in execution order, until none fires (at most `max_sweeps` sweeps)."""

    rules: ClassVar[tuple[Rule[Any], ...]] = ()
    max_sweeps: ClassVar[int] = 64

    def run_on_graph(self, graph: Graph, ctx: Context) -> None:
        by_anchor: dict[str, list[Rule[Any]]] = {}
        for rule in self.rules:
            for anchor in rule.anchors:
                by_anchor.setdefault(anchor, []).append(rule)
        for _ in range(self.max_sweeps):
            fired = False
            for op in graph.ops:
                if op not in graph.nx:  # removed by an earlier rewrite in this sweep
                    continue
                for rule in by_anchor.get(op.type, ()):
                    m = rule.match(graph, op)
                    if m is None:
                        continue
                    reason = rule.check(graph, m)
                    if reason is not None:
                        ctx.decline(rule.name, f"{rule.describe(graph, m)}: {reason}", op)
                        continue
                    origins = ctx.origins(graph, m.ops)
                    done = rule.rewrite(graph, m)
                    if isinstance(done, Replacement):
                        refused = graph.replace(done.old, done.new, done.place, done.rewire)
                        if refused is not None:
                            ctx.decline(rule.name, f"{rule.describe(graph, m)}: {refused}", op)
                            continue
                        for changed, updates in done.options.items():
                            changed.options.update(updates)
                        done = [new for new, _, _ in done.new]
                    ctx.fired(rule.name, op)
                    ctx.rewrote(rule.name, done, origins)
                    fired = True
                    break
            if not fired:
                return
        raise PipelineError(f"pass {self.name} was still rewriting graph '{graph.name}' after {self.max_sweeps} sweeps")


# --- registry ---------------------------------------------------------------------------------------
PASSES: dict[str, type[Pass]] = {}


def register(cls: type[Pass]) -> type[Pass]:
    PASSES[cls.name] = cls
    return cls


def available_passes() -> list[tuple[str, str]]:
    """(name, one-line summary) of every registered pass, in registration order."""
    _load_builtin_passes()
    return [(name, cls.summary) for name, cls in PASSES.items()]


def _load_builtin_passes() -> None:
    import npupass.passes  # noqa: F401 - registers the built-in passes


# --- model properties named by requires / guarantees ----------------------------------------------------
def _no_ir_only_ops(model: Model, types: Iterable[str] = IR_ONLY_OPS) -> str | None:
    for graph in model.subgraphs:
        for op in graph.iter_ops():
            if op.type in types:
                return f"{label(graph, op)} is an IR-only op"
    return None


def _no_op_property(op_type: str) -> str:
    """The property that no `op_type` op is left ("no-batch-norm"): what the pass lowering it guarantees."""
    return "no-" + op_type.lower().replace("_", "-")


PROPERTIES: dict[str, Callable[[Model], str | None]] = {
    "no-ir-only-ops": _no_ir_only_ops,
    "no-fake-quant": fake_quant_problem,
}
PROPERTIES.update({_no_op_property(t): functools.partial(_no_ir_only_ops, types=(t,)) for t in IR_ONLY_OPS})


def _providers(prop: str, model: Model) -> list[str]:
    """The passes that establish `prop` (for no-ir-only-ops: those lowering the IR-only ops the model holds)."""
    wanted = {prop}
    if prop == "no-ir-only-ops":
        wanted = {_no_op_property(op.type) for g in model.subgraphs for op in g.iter_ops() if op.type in IR_ONLY_OPS}
    return [q.name for q in PASSES.values() if wanted & q.guarantees]


# --- the manager -------------------------------------------------------------------------------------
class Verifier(Protocol):
    """Runs the model in a reference interpreter after each pass (npupass.verify.PassVerifier)."""

    def start(self, model: Model) -> None: ...

    def after(self, pass_: Pass, model: Model) -> str | None:
        """None when the outputs stayed within the pass's tolerance, else what changed."""
        ...


def parse_pipeline(pipeline: str | Sequence[str]) -> list[str]:
    names = [n.strip() for n in pipeline.split(",")] if isinstance(pipeline, str) else [n.strip() for n in pipeline]
    names = [n for n in names if n]
    if not names:
        raise PipelineError("the pipeline is empty; name at least one pass (see `npupass passes`)")
    _load_builtin_passes()
    unknown = [n for n in names if n not in PASSES]
    if unknown:
        raise PipelineError(f"unknown pass '{unknown[0]}'; available: {', '.join(PASSES)}")
    return names


class PassManager:
    """Runs a pipeline of passes to a fixed point.

    A pass runs again whenever another pass changed the model after it last ran, until every pass has
    seen the final model (at most `max_rounds` times each). With `check=True` the IR's structural check
    runs after every pass; `verify` (a Verifier, e.g. npupass.verify.passes.PassVerifier, injected so that
    passes never import the interpreters) compares outputs in LiteRT after every pass that changed the
    model and raises PassVerificationError naming the first pass that changed them.
    """

    def __init__(
        self,
        pipeline: str | Sequence[str],
        options: dict[str, dict[str, Any]] | None = None,
        max_rounds: int = 8,
        check: bool = True,
    ) -> None:
        names = parse_pipeline(pipeline)
        options = options or {}
        stray = set(options) - set(names)
        if stray:
            raise PipelineError(f"options given for pass '{sorted(stray)[0]}', which is not in the pipeline")
        self.passes: list[Pass] = [PASSES[n](**options.get(n, {})) for n in names]
        self.max_rounds = max_rounds
        self.check = check

    def run(
        self,
        model: Model,
        verify: Verifier | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> PipelineResult:
        with _frozen_heap():
            return self._run(model, verify, progress)

    def _run(self, model: Model, verify: Verifier | None, progress: Callable[[str], None] | None) -> PipelineResult:
        verifier = verify
        if verifier is not None:
            verifier.start(model)
        results = [PassResult(p.name) for p in self.passes]
        start = time.perf_counter()
        last_run = [-1] * len(self.passes)  # change counter seen at each pass's last run
        changed_last = [False] * len(self.passes)  # whether each pass's last run rewrote anything
        changes = 0
        position = 0
        while any(seen < changes or seen < 0 for seen in last_run):
            i = position % len(self.passes)
            position += 1
            if last_run[i] == changes:
                continue
            p, result = self.passes[i], results[i]
            if result.runs >= self.max_rounds:
                busy = [r.name for r, changed in zip(results, changed_last, strict=True) if changed]
                raise PipelineError(
                    f"the pipeline did not settle after {self.max_rounds} rounds; still rewriting: {', '.join(busy)}"
                )
            self._check_requires(p, model)
            if progress is not None:
                progress(p.name)
            ctx = Context(p.name)
            versions = [g.version for g in model.subgraphs]
            t0 = time.perf_counter()
            p.run(model, ctx)
            result.seconds += time.perf_counter() - t0
            result.runs += 1
            result.declines = ctx.declines
            changed_last[i] = bool(ctx.rewrites)
            if ctx.rewrites:
                result.changed = True
                result.rewrites.update(ctx.rewrites)
                changes += 1
            last_run[i] = changes
            # a pass that reported nothing and changed no graph's structure leaves nothing to re-check
            if self.check and (ctx.rewrites or versions != [g.version for g in model.subgraphs]):
                _check_structure(p, model)
            if self.check and ctx.rewrites:  # a pass that rewrote nothing left the model as valid as it was
                _check_semantics(p, model)
            self._check_guarantees(p, model)
            if verifier is not None and ctx.rewrites:
                problem = verifier.after(p, model)
                if problem is not None:
                    raise PassVerificationError(p.name, problem)
        return PipelineResult(results, time.perf_counter() - start)

    def _check_requires(self, p: Pass, model: Model) -> None:
        for prop in sorted(p.requires):
            violation = PROPERTIES[prop](model)
            if violation is not None:
                providers = _providers(prop, model)
                raise PipelineError(
                    f"pass {p.name} requires {prop}, but {violation}; run {' or '.join(providers)} before it"
                )

    def _check_guarantees(self, p: Pass, model: Model) -> None:
        for prop in sorted(p.guarantees):
            violation = PROPERTIES[prop](model)
            if violation is not None:
                raise PipelineError(f"pass {p.name} did not establish {prop}: {violation}")


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """Keep what exists before the run (the model, mostly) out of the cyclic GC's scans while the
    passes run: otherwise every full collection walks the whole IR again, which made the pipeline
    superlinear (on the 10,000-op synthetic graph, 16% of its CPU time; t(10k)/t(1k) 13.7 -> 11.6)."""
    if gc.get_freeze_count():  # the caller froze the heap already
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _check_structure(p: Pass, model: Model) -> None:
    for graph in model.subgraphs:
        found = problems(graph)
        if found:
            raise PipelineError(f"pass {p.name} left graph '{graph.name}' malformed: {found[0]}")


def _check_semantics(p: Pass, model: Model) -> None:
    """The semantic validator (ir/validate.py): every op still fits its signature."""
    from npupass.ir.validate import graph_problems

    for graph in model.subgraphs:
        found = graph_problems(graph)
        if found:
            raise PipelineError(f"pass {p.name} left graph '{graph.name}' malformed: {found[0]}")


def run_passes(
    model: Model,
    pipeline: str | Sequence[str],
    verify: Verifier | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> PipelineResult:
    """Run `pipeline` on `model` in place: `run_passes(model, "fold-batch-norm,fuse-activations")`."""
    return PassManager(pipeline, options=options).run(model, verify=verify)
