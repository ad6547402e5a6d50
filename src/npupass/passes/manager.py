"""Pass infrastructure: the pass contract, rewrite rules, the registry and the PassManager.

A pass rewrites a Model in place and reports truthfully what it did: whether the graph changed, how
many rewrites each of its rules made, and why every match it declined was declined. A rewrite rule
is pattern (`match`) + guard (`check`, which returns the reason it declines) + `rewrite`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from npupass.errors import NpupassError
from npupass.ir.check import problems
from npupass.ir.graph import Graph, Model, Op


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


def op_name(graph: Graph, op: Op) -> str:
    """The op's name, or its first output's name ("" when it has neither)."""
    if op.name or op not in graph.nx:
        return op.name
    outputs = graph.outputs_of(op)
    return outputs[0].name if outputs else ""


def label(graph: Graph, op: Op) -> str:
    """An op as messages name it: its type and its name, or its first output's name."""
    name = op_name(graph, op)
    return f"{op.type} '{name}'" if name else op.type


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


class Rule:
    """pattern (`match`) + guard (`check` returns why it declines, or None) + `rewrite`."""

    name: ClassVar[str]
    anchors: ClassVar[frozenset[str]]
    verb: ClassVar[str] = "rewritten with"

    def match(self, graph: Graph, op: Op) -> Match | None:
        raise NotImplementedError

    def check(self, graph: Graph, m: Match) -> str | None:
        return None

    def rewrite(self, graph: Graph, m: Match) -> list[Op]:
        """Rewrite the match; returns the new or changed ops (they get provenance)."""
        raise NotImplementedError

    def describe(self, graph: Graph, m: Match) -> str:
        first = label(graph, m.ops[0])
        return f"{first} not {self.verb} {label(graph, m.ops[1])}" if len(m.ops) > 1 else f"{first} not rewritten"


class RewritePass(Pass):
    """Applies its rules to every op, in execution order, until none fires (at most `max_sweeps` sweeps)."""

    rules: ClassVar[tuple[Rule, ...]] = ()
    max_sweeps: ClassVar[int] = 64

    def run_on_graph(self, graph: Graph, ctx: Context) -> None:
        by_anchor: dict[str, list[Rule]] = {}
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
                    ctx.fired(rule.name, op)
                    origins = ctx.origins(graph, m.ops)
                    ctx.rewrote(rule.name, rule.rewrite(graph, m), origins)
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
def _no_ir_only_ops(model: Model) -> str | None:
    from npupass.ir.ops import IR_ONLY_OPS

    for graph in model.subgraphs:
        for op in graph.iter_ops():
            if op.type in IR_ONLY_OPS:
                return f"{label(graph, op)} is an IR-only op"
    return None


def _no_fake_quant(model: Model) -> str | None:
    """No FAKE_QUANT, and QUANTIZE/DEQUANTIZE only where float meets a graph input or output."""
    for graph in model.subgraphs:
        for op in graph.iter_ops():
            if op.type == "FAKE_QUANT":
                return f"{label(graph, op)} remains"
            if op.type == "DEQUANTIZE" and not all(graph.is_graph_output(t) for t in graph.outputs_of(op)):
                return f"{label(graph, op)} is inside the graph"
            if op.type == "QUANTIZE":
                source = graph.inputs_of(op)[0]
                if source is not None and source.dtype.is_float and source not in graph.inputs:
                    return f"{label(graph, op)} is inside the graph"
    return None


def has_fake_quant(model: Model) -> bool:
    """Whether the model still carries fake quantization (what fold-fake-quant folds)."""
    return _no_fake_quant(model) is not None


PROPERTIES: dict[str, Callable[[Model], str | None]] = {
    "no-ir-only-ops": _no_ir_only_ops,
    "no-fake-quant": _no_fake_quant,
}


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
    runs after every pass; `verify` (True or a Verifier) compares outputs in LiteRT after every pass
    that changed the model and raises PassVerificationError naming the first pass that changed them.
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
        verify: bool | Verifier = False,
        progress: Callable[[str], None] | None = None,
    ) -> PipelineResult:
        verifier = _verifier(verify)
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
            if self.check:
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
                providers = [q.name for q in PASSES.values() if prop in q.guarantees]
                raise PipelineError(
                    f"pass {p.name} requires {prop}, but {violation}; run {' or '.join(providers)} before it"
                )

    def _check_guarantees(self, p: Pass, model: Model) -> None:
        for prop in sorted(p.guarantees):
            violation = PROPERTIES[prop](model)
            if violation is not None:
                raise PipelineError(f"pass {p.name} did not establish {prop}: {violation}")


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


def _verifier(verify: bool | Verifier) -> Verifier | None:
    if verify is True:
        from npupass.verify.passes import PassVerifier  # verify sits above passes; imported only when asked

        return PassVerifier()
    return verify or None


def run_passes(
    model: Model,
    pipeline: str | Sequence[str],
    verify: bool | Verifier = False,
    options: dict[str, dict[str, Any]] | None = None,
) -> PipelineResult:
    """Run `pipeline` on `model` in place: `run_passes(model, "fold-batch-norm,fuse-activations")`."""
    return PassManager(pipeline, options=options).run(model, verify=verify)
