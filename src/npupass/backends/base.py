"""The backend contract: what a compile target declares and returns, and the registry that finds backends.

A backend is an object with a name, its targets, its options, what it asks of the pipeline and a
`compile(model, target, options, passes, progress)` that returns a CompileResult and writes nothing.
npupass's own backends register below; third parties register through the `npupass.backends` entry-point
group (`[project.entry-points."npupass.backends"] mine = "my_package:BACKEND"`) or `register()`.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

from npupass.errors import NpupassError
from npupass.fileio import atomic_write_all
from npupass.ir.graph import Graph, Model, Op
from npupass.passes.policy import TargetNeeds


class UnknownTargetError(NpupassError):
    """The target name is not one any registered backend compiles for."""


class RefusedModelError(NpupassError):
    """The target cannot take this model (a float model for an NPU, unfolded fake quantization ...)."""


@dataclass(frozen=True)
class Target:
    """A compile target: `backend` names the backend that serves it; `params` holds what that backend
    parsed from the name (Ethos-U: core and MACs; Ethos-N: the variant)."""

    name: str
    backend: str
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __getattr__(self, key: str) -> Any:
        params = self.__dict__.get("params", {})
        if key in params:
            return params[key]
        raise AttributeError(key)


def positive_int(text: str) -> int:
    """An option's value that must be a whole number of at least 1 (argparse shows the message)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


@dataclass(frozen=True)
class Option:
    """A backend option: the API takes it as `options={name: value}`, the CLI as `--name-with-dashes`."""

    name: str
    type: Callable[[str], Any]
    """What the value is: str, int, bool (a switch) or a converter from the flag's text."""
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass
class Report:
    """What a compile found, as data. `data` is report.json; the fields are the facts every target
    states (None where the target has no such figure)."""

    target: str
    data: dict[str, Any]
    npu_ops: int | None = None
    cpu_ops: int | None = None
    cycles: int | None = None
    inference_seconds: float | None = None
    cpu_reasons: dict[str, list[str]] = field(default_factory=dict)
    """CPU op (as messages name it) -> why it is not on the accelerator."""
    equivalent: bool | None = None
    """Whether the compiled model's outputs matched the input's in the reference interpreter (None: not checked)."""

    def to_dict(self) -> dict[str, Any]:
        return self.data


@dataclass
class CompileResult:
    """A compile's report and files, in memory: nothing is written until `write(outdir)`.

    `files` maps file names to bytes; `paths` maps report keys to the file names they name, so the
    report written next to the files names where they went.
    """

    target: str
    report: Report
    files: dict[str, bytes]
    paths: dict[str, str] = field(default_factory=dict)
    report_name: str = "report.json"

    @property
    def artifacts(self) -> dict[str, bytes]:
        """Every file the compile makes, report.json included (paths relative to the output folder)."""
        return self.files | {self.report_name: _json(self.report.to_dict())}

    def write(self, outdir: str | Path) -> list[Path]:
        """Write every artifact into `outdir` (created if needed), atomically and all or nothing."""
        out = Path(outdir)
        if out.exists() and not out.is_dir():
            raise NpupassError(f"{out}: exists and is not a directory")
        for key, name in self.paths.items():
            self.report.data[key] = str(out / name)
        files = {out / name: data for name, data in self.artifacts.items()}
        source = self.report.data.get("input")
        for path in files:
            if source and path.exists() and path.resolve() == Path(source).resolve():
                raise NpupassError(f"refusing to overwrite the input model {source}; choose another output directory")
        atomic_write_all(files)
        return list(files)


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, indent=2).encode() + b"\n"


Progress = Callable[[str], None]


class Backend:
    """A compile backend. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    summary: ClassVar[str]
    options: ClassVar[tuple[Option, ...]] = ()
    option_group: ClassVar[str] = ""
    """The title of this backend's options in `npupass compile --help`."""
    needs: ClassVar[TargetNeeds] = TargetNeeds()

    def targets(self) -> list[tuple[str, str]]:
        """(target name, one-line description) for every target this backend compiles for."""
        raise NotImplementedError

    def parse_target(self, name: str) -> Target | None:
        """The Target for `name` (already lower-case), None when the name is not this backend's; raises
        UnknownTargetError for a near miss (a known core with an unknown size)."""
        raise NotImplementedError

    def placement(self, target: Target) -> Callable[[Graph, Op], list[str]] | None:
        """Why an op cannot run on the accelerator (empty: it can), for partitioning and the viewer."""
        return None

    def compile(
        self,
        model: Model,
        target: Target,
        options: dict[str, Any],
        passes: list[str] | None = None,
        progress: Progress | None = None,
    ) -> CompileResult:
        """Compile `model` (rewritten in place) for `target`; `passes` replaces the default pipeline."""
        raise NotImplementedError

    def render(self, report: Report, console: Any) -> None:
        """Print the report for people (the CLI calls it; `console` is a rich Console)."""
        console.print(json.dumps(report.to_dict(), indent=2))


# --- the registry ------------------------------------------------------------------------------------
BUILTIN = (
    "npupass.backends.ethos_u:BACKEND",
    "npupass.backends.ethos_n:BACKEND",
    "npupass.backends.xnnpack:BACKEND",
    "npupass.backends.cortex_m:BACKEND",
)
ENTRY_POINT_GROUP = "npupass.backends"
_BACKENDS: dict[str, Backend] = {}
_loaded = False


def register(backend: Backend) -> Backend:
    """Add a backend (a later one with the same name replaces the earlier)."""
    _BACKENDS[backend.name] = backend
    return backend


def _load(spec: str) -> Backend:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def backends() -> list[Backend]:
    """Every registered backend: npupass's own, then those of the `npupass.backends` entry points."""
    global _loaded
    if not _loaded:
        _loaded = True
        for spec in BUILTIN:
            backend = _load(spec)
            _BACKENDS.setdefault(backend.name, backend)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                backend = ep.load()
            except Exception as exc:  # a broken plugin must not take npupass down
                raise NpupassError(f"backend plugin '{ep.name}' ({ep.value}) failed to load: {exc}") from None
            _BACKENDS.setdefault(backend.name, backend)
    return list(_BACKENDS.values())


def target_list() -> list[tuple[str, str]]:
    """(target name, description) of every registered target."""
    return [t for b in backends() for t in b.targets()]


def find_target(name: str) -> tuple[Backend, Target]:
    """The backend and Target for a target name; raises UnknownTargetError naming the valid ones."""
    text = name.strip().lower()
    for backend in backends():
        target = backend.parse_target(text)
        if target is not None:
            return backend, target
    raise UnknownTargetError(f"unknown target '{name}': choose {_families(backends())}")


def parse_target(name: str) -> Target:
    """The Target for a target name (find_target without the backend)."""
    return find_target(name)[1]


def _families(found: Iterable[Backend]) -> str:
    """The targets in short: each backend's `families` (ethos-u55-{32,64,128,256}) or its target names."""
    names: list[str] = []
    for b in found:
        names += getattr(b, "families", None) or [t for t, _ in b.targets()]
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)
