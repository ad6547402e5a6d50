"""A sweep's grid: models x configurations (a target and its options) x pipelines, and its cells.

A grid comes from command-line lists (`Grid.from_lists`) or a small TOML file (`Grid.from_toml`):

    models = ["models/*.tflite", "more/"]            # files, folders (their .tflite and .onnx) or globs
    pipelines = ["default", "fold-batch-norm,fuse-activations"]
    targets = [
        "ethos-u55-128",
        { target = "ethos-u55-256", system_config = "Ethos_U55_High_End_Embedded", memory_mode = "Shared_Sram" },
    ]

Everything is checked before any cell runs: every model exists, every target and pass is known, every
option is one the target's backend declares. A cell's key names what its result depends on (the model's
bytes by hash, the target, options, pipeline, npupass and Vela versions), so a result found under that key
need not be computed again.
"""

from __future__ import annotations

import glob
import hashlib
import json
import sys
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from npupass.backends.base import find_target
from npupass.errors import NpupassError
from npupass.passes.manager import parse_pipeline

MODEL_SUFFIXES = (".tflite", ".onnx")
DEFAULT_PIPELINE = "default"


class GridError(NpupassError):
    """The grid names something that does not exist or cannot be combined."""


@cache
def versions() -> dict[str, str]:
    """npupass's and Vela's versions in this process (part of every cell's key and row)."""

    def get(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "unknown"

    return {"npupass": get("npupass"), "vela": get("ethos-u-vela")}


@dataclass(frozen=True)
class Config:
    """One compile configuration: a target name and the options given for it (the rest take their defaults)."""

    target: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def options_dict(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def label(self) -> str:
        """The target, plus its options when it has some (a plot's legend, a column head)."""
        if not self.options:
            return self.target
        return self.target + " (" + ", ".join(str(v) for _, v in self.options) + ")"


@dataclass(frozen=True)
class ModelFile:
    path: str
    """As given (or found in a folder); rows name the model by this path."""
    sha256: str
    file: str = field(default="", compare=False)
    """Where it is read from (absolute)."""


@dataclass(frozen=True)
class Cell:
    """One `npupass.compile` call of the sweep."""

    model: ModelFile
    config: Config
    pipeline: str
    """A comma-separated pass list, or "default" for the target's default pipeline."""

    @property
    def key(self) -> str:
        return cell_key(self.model.sha256, self.config, self.pipeline)


def cell_key(sha256: str, config: Config, pipeline: str, found_versions: dict[str, str] | None = None) -> str:
    """What a result depends on, hashed: the model's bytes, target, options, pipeline and versions."""
    parts = {
        "model": sha256,
        "target": config.target,
        "options": config.options_dict,
        "pipeline": pipeline,
        **(found_versions or versions()),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass
class Grid:
    models: list[ModelFile]
    configs: list[Config]
    pipelines: list[str] = field(default_factory=lambda: [DEFAULT_PIPELINE])

    def cells(self) -> list[Cell]:
        """Model-major order: every configuration and pipeline of the first model, then the next model."""
        return [Cell(m, c, p) for m in self.models for c in self.configs for p in self.pipelines]

    @classmethod
    def from_lists(
        cls,
        models: list[str],
        targets: list[str],
        pipelines: list[str] | None = None,
        options: dict[str, Any] | None = None,
        base: Path | None = None,
    ) -> Grid:
        """`targets` are names (comma-separated lists allowed); `options` apply to every target whose backend
        has them (each must fit at least one target)."""
        names = [t.strip() for text in targets for t in text.split(",") if t.strip()]
        given = dict(options or {})
        configs = []
        used: set[str] = set()
        for name in names:
            known = {o.name for o in find_target(name)[0].options}
            mine = {k: v for k, v in given.items() if k in known}
            used |= set(mine)
            configs.append(_config(name, mine))
        unused = sorted(set(given) - used)
        if unused and names:
            raise GridError(f"no target in the grid has the option '{unused[0]}'")
        return cls._checked(find_models(models, base or Path.cwd()), configs, pipelines)

    @classmethod
    def from_toml(cls, path: str | Path) -> Grid:
        """Read a grid file (see the module's docstring); relative model paths are from the file's folder."""
        path = Path(path)
        data = _read_toml(path)
        allowed = {"models", "targets", "pipelines"}
        extra = sorted(set(data) - allowed)
        if extra:
            raise GridError(f"{path}: unknown key '{extra[0]}' (a grid has {', '.join(sorted(allowed))})")
        models, targets, pipelines = data.get("models", []), data.get("targets", []), data.get("pipelines")
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise GridError(f"{path}: 'models' must be a list of paths, folders or globs")
        if not isinstance(targets, list):
            raise GridError(f"{path}: 'targets' must be a list of target names or tables")
        if pipelines is not None and (
            not isinstance(pipelines, list) or not all(isinstance(p, str) for p in pipelines)
        ):
            raise GridError(f"{path}: 'pipelines' must be a list of pass lists (or \"default\")")
        configs = []
        for entry in targets:
            if isinstance(entry, str):
                configs.append(_config(entry, {}))
            elif isinstance(entry, dict) and isinstance(entry.get("target"), str):
                options = {k: v for k, v in entry.items() if k != "target"}
                configs.append(_config(entry["target"], options))
            else:
                raise GridError(f"{path}: a target is a name or a table with 'target' and options, not {entry!r}")
        return cls._checked(find_models(models, path.parent), configs, pipelines)

    @classmethod
    def _checked(cls, models: list[ModelFile], configs: list[Config], pipelines: list[str] | None) -> Grid:
        if not models:
            raise GridError("the grid has no models")
        if not configs:
            raise GridError("the grid has no targets")
        normal = [_pipeline(p) for p in (pipelines or [DEFAULT_PIPELINE])]
        return cls(models, list(dict.fromkeys(configs)), list(dict.fromkeys(normal)))


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the same parser as the tomli package (a dependency there)
        import tomli as tomllib
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise GridError(f"{path}: no such grid file") from None
    except IsADirectoryError:
        raise GridError(f"{path}: is a directory, not a grid file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GridError(f"{path}: not a TOML grid file: {exc}") from None


def _config(target: str, options: dict[str, Any]) -> Config:
    """The Config with the target's canonical name; refuses options the target's backend does not have."""
    backend, parsed = find_target(target)
    known = {o.name: o for o in backend.options}
    for name, value in options.items():
        if name not in known:
            valid = ", ".join(known) or "none"
            raise GridError(f"target {parsed.name} has no option '{name}' (its options: {valid})")
        choices = known[name].choices
        if choices and value not in choices:
            raise GridError(f"option {name} of {parsed.name}: '{value}' is not one of {', '.join(choices)}")
    return Config(parsed.name, tuple(sorted(options.items())))


def _pipeline(text: str) -> str:
    """ "default" or the pass list in its canonical form (unknown passes fail here, before anything runs)."""
    text = text.strip()
    if text.lower() == DEFAULT_PIPELINE:
        return DEFAULT_PIPELINE
    return ",".join(parse_pipeline(text))


def find_models(specs: list[str], base: Path) -> list[ModelFile]:
    """Files as given, folders' .tflite/.onnx files and glob matches, each once, in the order given."""
    paths: list[Path] = []
    for spec in specs:
        path = Path(spec) if Path(spec).is_absolute() else base / spec
        if any(c in spec for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
            found = [p for p in found if p.is_file()]
            if not found:
                raise GridError(f"{spec}: no model matches")
            paths += found
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in MODEL_SUFFIXES and p.is_file())
            if not found:
                raise GridError(f"{spec}: the folder has no .tflite or .onnx model")
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            raise GridError(f"{spec}: no such model file or folder")
    unique = list(dict.fromkeys(p.resolve() for p in paths))
    return [ModelFile(_shown(p, base), _sha256(p), str(p)) for p in unique]


def _shown(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base.resolve()))
    except ValueError:
        return str(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
