"""npupass as a library: load, convert, compile and verify models, with results as plain data.

Nothing here writes a file until asked (`ConvertResult.write`, `CompileResult.write`), and every result
pickles, so it can come back from a worker process.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from npupass.backends.base import CompileResult, backends, find_target, target_list
from npupass.errors import NpupassError
from npupass.ir.graph import Model
from npupass.passes import PassManager, PassVerificationError, PipelineResult
from npupass.passes.manager import parse_pipeline
from npupass.passes.policy import default_pipeline as _default_pipeline
from npupass.passes.policy import extend_pipeline, extend_spec, pipeline_options
from npupass.verify import Comparison, Tolerance

ModelSource = Model | str | os.PathLike[str]


def load(
    path: str | os.PathLike[str],
    *,
    keep_nchw_io: bool = False,
    calibration: str | os.PathLike[str] | None = None,
    integer: bool = False,
) -> Model:
    """Read a model into the IR: TFLite or ONNX (recognised by content), or a Keras model (SavedModel folder,
    .keras, .h5) converted by TensorFlow's converter; `calibration` (.npy/.npz) quantizes a float Keras model
    to full int8, and `integer` refuses a float Keras model without it."""
    from npupass.frontends import load_model

    return load_model(path, keep_nchw_io=keep_nchw_io, calibration=calibration, integer=integer)


def targets() -> list[tuple[str, str]]:
    """(name, one-line description) of every target `compile` accepts, from every registered backend."""
    return target_list()


def default_pipeline(model: Model, target: str | None = None) -> list[str]:
    """The passes `convert` (target None) or `compile` for `target` runs on `model` by default."""
    if target is None:
        return _default_pipeline(model)
    backend, _ = find_target(target)
    return _default_pipeline(model, backend.needs)


def _model(source: ModelSource, in_place: bool = False, **load_options: Any) -> Model:
    """A Model given (copied unless `in_place`), or the file read with `load_options`."""
    if isinstance(source, Model):
        return source if in_place else copy.deepcopy(source)
    return load(source, **load_options)


def _names(passes: str | Sequence[str] | None) -> list[str] | None:
    return parse_pipeline(passes) if passes else None


def compile(
    model: ModelSource,
    target: str,
    *,
    passes: str | Sequence[str] | None = None,
    options: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    in_place: bool = False,
    calibration: str | os.PathLike[str] | None = None,
) -> CompileResult:
    """Compile a model (a path, or a Model, left untouched unless `in_place`) for `target` (see `targets()`).

    `passes` replaces the target's default pipeline, or extends it when it starts with "+"
    ("+encode-clusters"); `options` are the target's options by name
    (e.g. {"system_config": "Ethos_U55_High_End_Embedded"}); `calibration` quantizes a float Keras model.
    Returns the report and the files, unwritten.
    """
    backend, parsed = find_target(target)
    known = {o.name: o for o in backend.options}
    given = dict(options or {})
    unknown = sorted(set(given) - set(known))
    if unknown:
        valid = ", ".join(known) or "none"
        raise NpupassError(f"target {parsed.name} has no option '{unknown[0]}' (its options: {valid})")
    values = {name: given.get(name, o.default) for name, o in known.items()}
    extend, names = extend_spec(passes) if passes else (False, [])
    names = parse_pipeline(names) if names else []  # an unknown pass fails before the model is read
    ir = _model(model, in_place, calibration=calibration, integer=backend.needs.integer)
    if extend:
        names = extend_pipeline(_default_pipeline(ir, backend.needs), names)
    return backend.compile(ir, parsed, values, names or None, progress)


def place(model: ModelSource, target: str, *, in_place: bool = False) -> tuple[Model, dict[Any, dict[str, str]]]:
    """Where each op of the main graph would run on `target`, without compiling: the model after the
    target's default pipeline, and {op: {"target": "NPU"|"CPU", "reason": ...}} from the backend's own
    placement predicate, partitioned as its compile does (what `npupass view --target` draws)."""
    from npupass.passes.partition import partition

    backend, parsed = find_target(target)
    predicate = backend.placement(parsed)
    if predicate is None:
        raise NpupassError(f"target {parsed.name} does not predict placement")
    ir = _model(model, in_place)
    names = _default_pipeline(ir, backend.needs)
    if names:
        PassManager(names, options=pipeline_options(names, backend.needs)).run(ir)
    return ir, partition(ir.main, predicate).view_placement()


@dataclass
class ConvertResult:
    """A conversion: the rewritten model, what the passes did, and the checks asked for."""

    model: Model
    pipeline: PipelineResult | None = None
    pass_checks: list[dict[str, Any]] = field(default_factory=list)
    """LiteRT after each pass (verify=True on a model LiteRT runs): PassCheck.to_json() rows."""
    preservation: dict[str, Any] | None = None
    failure: str | None = None
    """Why verification failed (the first pass that changed the outputs); the model is then not to be written."""
    failed_pass: str | None = None
    comparison: Comparison | None = None
    """The converted model against the source, when that was the check (no passes, or an ONNX source)."""
    seconds: float = 0.0

    @property
    def equivalent(self) -> bool:
        return self.failure is None and (self.comparison is None or self.comparison.equivalent)

    def serialize(self, buffers: str = "auto") -> bytes:
        from npupass.backends.tflite import serialize_tflite

        return serialize_tflite(self.model, buffers=buffers)

    def write(self, path: str | os.PathLike[str], buffers: str = "auto") -> Path:
        """Write the model as TFLite, atomically; refuses when verification failed."""
        from npupass.backends.tflite import write_tflite

        if self.failure is not None:
            raise NpupassError(f"{self.failure}; nothing written")
        out = Path(path)
        write_tflite(self.model, out, buffers=buffers)
        return out


def convert(
    model: ModelSource,
    *,
    passes: str | Sequence[str] | None = None,
    io: str | None = None,
    verify: bool = False,
    samples: int = 3,
    seed: int = 0,
    preservation: bool = False,
    check: bool = True,
    keep_nchw_io: bool = False,
    progress: Callable[[str], None] | None = None,
    verify_progress: Callable[[int], None] | None = None,
    in_place: bool = False,
    pass_options: dict[str, dict[str, Any]] | None = None,
) -> ConvertResult:
    """Run `passes` (default: what the model needs to be written, see `default_pipeline`) and return the model.

    `io` ("float" or "int8") is fold-fake-quant's boundary type. `verify` checks every pass in LiteRT when
    the source runs there, else compares the result with the source (onnxruntime for ONNX) on `samples`
    seeded inputs. `preservation` records zeros and distinct values of every weight after each pass.
    A Model given is left untouched unless `in_place`. `pass_options` gives passes their options by
    name ({"encode-clusters": {"max_values": 20}}).
    """
    start = time.perf_counter()
    ir = _model(model, in_place, keep_nchw_io=keep_nchw_io)
    source = ir.source_path
    runs_in_litert = ir.source_format == "tflite"
    names = _names(passes) or _default_pipeline(ir)
    result = ConvertResult(ir)
    if names:
        result = _run_passes(
            ir, names, io, verify and runs_in_litert, samples, seed, preservation, check, progress, pass_options
        )
        if result.failure is not None:
            result.seconds = time.perf_counter() - start
            return result
    elif io or preservation:
        raise NpupassError(f"{'io' if io else 'preservation'} needs passes")
    if verify and not (names and runs_in_litert):
        if source is None:
            raise NpupassError("verify against the source needs the model's file: pass its path")
        result.comparison = _compare_with_source(source, ir, samples, seed, verify_progress)
    result.seconds = time.perf_counter() - start
    return result


def _run_passes(
    model: Model,
    names: list[str],
    io: str | None,
    verify: bool,
    samples: int,
    seed: int,
    preservation: bool,
    check: bool,
    progress: Callable[[str], None] | None,
    pass_options: dict[str, dict[str, Any]] | None = None,
) -> ConvertResult:
    from npupass.verify.passes import PassVerifier

    options: dict[str, dict[str, Any]] = {name: dict(values) for name, values in (pass_options or {}).items()}
    if io:
        if "fold-fake-quant" not in names:
            raise NpupassError("io applies to fold-fake-quant, which is not in the pipeline")
        options.setdefault("fold-fake-quant", {})["io"] = io
    _check_pass_options(options)
    manager = PassManager(names, options=options, check=check)
    verifier = PassVerifier(samples=samples, seed=seed) if verify else None
    observer: Any = verifier
    report = None
    if preservation:  # snapshots the weights after each pass, then runs the verifier if any
        from npupass.passes.preservation import PreservationReport

        observer = report = PreservationReport(inner=verifier)
    result = ConvertResult(model)
    try:
        result.pipeline = manager.run(model, verify=observer, progress=progress)
    except PassVerificationError as failure:
        result.failure, result.failed_pass = str(failure), failure.pass_name
    result.pass_checks = [c.to_json() for c in verifier.checks] if verifier else []
    result.preservation = report.to_json() if report is not None else None
    return result


def _check_pass_options(options: dict[str, dict[str, Any]]) -> None:
    """Each option names a parameter of its pass ("pass encode-clusters has no option 'x' (its options: ...)")."""
    import inspect

    from npupass.passes import PASSES

    for name, values in options.items():
        if name not in PASSES:
            continue  # the PassManager names unknown passes
        known = [p for p in inspect.signature(PASSES[name].__init__).parameters if p not in ("self", "options")]
        for key in values:
            if key not in known:
                raise NpupassError(f"pass {name} has no option '{key}' (its options: {', '.join(known) or 'none'})")


def _compare_with_source(
    source: str | os.PathLike[str], model: Model, samples: int, seed: int, progress: Callable[[int], None] | None
) -> Comparison:
    from npupass.backends.tflite import write_tflite
    from npupass.verify import verify_files

    with tempfile.TemporaryDirectory(prefix="npupass-") as tmp:
        out = Path(tmp) / "converted.tflite"
        write_tflite(model, out)
        return verify_files(source, out, samples=samples, seed=seed, progress=progress)


def verify(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    *,
    samples: int = 3,
    seed: int = 0,
    tolerance: Tolerance | None = None,
    delegates: str = "none",
    progress: Callable[[int], None] | None = None,
) -> Comparison:
    """Compare two model files on seeded inputs: TFLite in LiteRT, ONNX in onnxruntime. Without a
    `tolerance`, the one that fits the pair (npupass.verify.default_tolerance)."""
    from npupass.verify import verify_files

    return verify_files(a, b, samples=samples, seed=seed, tolerance=tolerance, delegates=delegates, progress=progress)


__all__ = [
    "CompileResult",
    "ConvertResult",
    "backends",
    "compile",
    "convert",
    "default_pipeline",
    "load",
    "place",
    "targets",
    "verify",
]
