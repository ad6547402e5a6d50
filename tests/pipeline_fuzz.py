"""Whole-pipeline mutation fuzzing: mutated models through `npupass compile` and `npupass convert`.

Each mutant is a fixture with one corruption: bytes (bit flips, a changed size/offset field,
truncation, random bytes; see fuzz_harness.mutate) or one semantic edit through the schema (a zero
point, a scale, a shape dimension, an op option, a tensor type, an op code, a quantized axis, a
dropped quantization, a swapped buffer; for ONNX an initializer's dims/type/values, a node attribute
or op type). The mutant goes through the whole command for one target, and each run is classified:

    ok          exit 0 (or 1: compiled, but the outputs are not equivalent); what it wrote must load
    error       exit 2 with exactly one line "npupass: error: ..."
    multiline   exit 2 with more (or other) output on stderr, or a warning on stderr
    internal    exit 3 (npupass caught one of its own bugs) or an exception escaped main()
    signal      the run died by a signal (only seen with --isolate: each mutant in a forked child)
    hang        the run took longer than the time limit

Every run also checks that the input file is unchanged (sha256) and that nothing is left in the
output location after a failure.

    python tests/pipeline_fuzz.py --target ethos-n78 --count 2000 --isolate [--json]

runs a campaign (the bench); the test suite runs a smaller one in-process.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from fuzz_harness import mutate

MODELS = Path(__file__).parent / "models"
CATEGORIES = ("error", "ok", "internal", "signal", "hang", "multiline")

INT8_SEEDS = (
    "cnn_int8.tflite",
    "cnn_int8_per_tensor.tflite",
    "qat_cnn_int8.tflite",
    "qat_cnn_fq.tflite",
    "preact_resnet_int8.tflite",
    "cpu_ops_int8.tflite",
    "clustered_qat_cnn_int8.tflite",
    "mbv2_ethos_n_int8.tflite",
)
FLOAT_SPARSE_SEEDS = (
    "pruned_cnn_float.tflite",
    "sparse_fc_float.tflite",
    "clustered_cnn_float.tflite",
    "pruned_mbv2s_float.tflite",
)
ONNX_SEEDS = (
    "mbv2_ort_qdq.onnx",
    "mbv2_qat_qdq.onnx",
    "mbv2_ort_qdq_preprocessed.onnx",
    "mbv2_float.onnx",
    "mbv2_conv_div_bn_float.onnx",
    "transformer_block_float.onnx",
)


@dataclass(frozen=True)
class FuzzTarget:
    """A command to fuzz: its seed fixtures and how to build its argv for (input, output location)."""

    seeds: tuple[str, ...]
    argv: Callable[[str, Path, Path], list[str]]
    output_is_dir: bool = True


def _compile(target: str) -> Callable[[str, Path, Path], list[str]]:
    return lambda seed, src, out: ["compile", str(src), "--target", target, "-o", str(out)]


def _convert(seed: str, src: Path, out: Path) -> list[str]:
    qdq = "qdq" in seed
    return ["convert", str(src), "-o", str(out), *(["--io", "int8"] if qdq else [])]


TARGETS: dict[str, FuzzTarget] = {
    "ethos-u55-128": FuzzTarget(INT8_SEEDS, _compile("ethos-u55-128")),
    "ethos-n78": FuzzTarget(INT8_SEEDS, _compile("ethos-n78")),
    "xnnpack": FuzzTarget(FLOAT_SPARSE_SEEDS, _compile("xnnpack")),
    "cortex-m": FuzzTarget(INT8_SEEDS, _compile("cortex-m")),
    "onnx": FuzzTarget(ONNX_SEEDS, _convert, output_is_dir=False),
}


# --- semantic mutations ---------------------------------------------------------------------------
_ZERO_POINTS = (-300, -192, -129, -128, -1, 0, 1, 127, 128, 255, 256, 40_000, 2**31 - 1)
_SCALES = (0.0, -1.0, float("nan"), float("inf"), 1e-30, 1e30, 1e-12, 1e12)
_OPTION_VALUES = (0, -1, 1, 2, 3, 5, 7, 99, 2**31 - 1, -(2**31))


def _pick(rng: np.random.Generator, items: list[Any]) -> Any:
    return items[int(rng.integers(0, len(items)))]


def _quantized(sub: Any) -> list[Any]:
    return [t for t in sub.tensors or [] if t.quantization is not None and t.quantization.scale is not None]


def semantic_tflite(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One semantic edit of a TFLite model through the schema's object API."""
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    sub = model.subgraphs[0]
    tensors = list(sub.tensors or [])
    ops = list(sub.operators or [])
    kind = str(rng.choice(["zero_point", "scale", "shape", "option", "type", "opcode", "axis", "drop_quant", "buffer"]))
    quantized = _quantized(sub)
    if kind in ("zero_point", "scale", "axis", "drop_quant") and not quantized:
        kind = "shape"
    if kind == "zero_point":
        q = _pick(rng, quantized).quantization
        zp = np.array(q.zeroPoint if q.zeroPoint is not None else [0] * len(q.scale), dtype=np.int64)
        zp[int(rng.integers(0, zp.size))] = _pick(rng, list(_ZERO_POINTS))
        q.zeroPoint = zp
    elif kind == "scale":
        q = _pick(rng, quantized).quantization
        scale = np.array(q.scale, dtype=np.float32)
        value = _pick(rng, list(_SCALES)) if rng.random() < 0.7 else float(scale[0]) * float(rng.uniform(0.1, 10))
        scale[int(rng.integers(0, scale.size))] = value
        q.scale = scale
    elif kind == "shape":
        t = _pick(rng, [t for t in tensors if t.shape is not None and len(t.shape)] or tensors)
        if t.shape is not None and len(t.shape):
            shape = np.array(t.shape, dtype=np.int32)
            i = int(rng.integers(0, shape.size))
            shape[i] = _pick(rng, [0, 1, int(shape[i]) + 1, int(shape[i]) - 1, 2 * int(shape[i]), 65536, -1])
            t.shape = shape
    elif kind == "option":
        with_options = [op for op in ops if op.builtinOptions is not None and vars(op.builtinOptions)]
        if with_options:
            options = _pick(rng, with_options).builtinOptions
            key = _pick(rng, sorted(vars(options)))
            old = getattr(options, key)
            if isinstance(old, bool):
                setattr(options, key, not old)
            elif isinstance(old, float):
                setattr(options, key, _pick(rng, [0.0, -1.0, float("nan"), float("inf"), 1e30, old * 2]))
            elif isinstance(old, int):
                setattr(options, key, _pick(rng, list(_OPTION_VALUES)))
    elif kind == "type":
        _pick(rng, tensors).type = int(rng.integers(0, 18))
    elif kind == "opcode":
        if rng.random() < 0.5 and len(model.operatorCodes or []) > 1:
            _pick(rng, ops).opcodeIndex = int(rng.integers(0, len(model.operatorCodes)))
        else:
            code = _pick(rng, model.operatorCodes)
            new = int(rng.integers(0, 210))
            code.builtinCode, code.deprecatedBuiltinCode = new, min(new, 127)
    elif kind == "axis":
        _pick(rng, quantized).quantization.quantizedDimension = int(rng.integers(0, 5))
    elif kind == "drop_quant":
        _pick(rng, quantized).quantization = None
    else:
        constants = [t for t in tensors if t.buffer and model.buffers[t.buffer].data is not None]
        if len(constants) >= 2:
            a, b = _pick(rng, constants), _pick(rng, constants)
            a.buffer, b.buffer = b.buffer, a.buffer
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return kind, bytes(builder.Output())


def semantic_onnx(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One semantic edit of an ONNX model: an initializer's dims, type or values, a node attribute, an op type."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(data)
    graph = model.graph
    kind = str(rng.choice(["init_dims", "init_type", "init_value", "attribute", "op_type", "input_swap"]))
    inits = list(graph.initializer)
    nodes = list(graph.node)
    if kind.startswith("init") and inits:
        init = _pick(rng, inits)
        if kind == "init_dims" and len(init.dims):
            i = int(rng.integers(0, len(init.dims)))
            init.dims[i] = _pick(rng, [0, 1, init.dims[i] + 1, max(init.dims[i] - 1, 0), 2 * init.dims[i]])
        elif kind == "init_type":
            init.data_type = int(rng.integers(1, 17))
        else:
            array = numpy_helper.to_array(init).copy()
            if array.size:
                flat = array.reshape(-1)
                i = int(rng.integers(0, flat.size))
                if flat.dtype.kind == "f":
                    flat[i] = _pick(rng, [0.0, -1.0, float("nan"), float("inf"), 1e30, 1e-30])
                elif flat.dtype.kind in "iu":
                    info = np.iinfo(flat.dtype)
                    flat[i] = _pick(rng, [info.min, info.max, 0, 1, -1 if info.min < 0 else 2])
                init.CopyFrom(numpy_helper.from_array(array, init.name))
    elif kind == "attribute":
        with_attrs = [n for n in nodes if n.attribute]
        if with_attrs:
            attr = _pick(rng, list(_pick(rng, with_attrs).attribute))
            if attr.ints:
                attr.ints[int(rng.integers(0, len(attr.ints)))] = _pick(rng, [0, -1, 1, 2, 7, 1000])
            elif attr.type == onnx.AttributeProto.INT:
                attr.i = _pick(rng, [0, -1, 1, 2, 7, 1000])
            elif attr.type == onnx.AttributeProto.FLOAT:
                attr.f = _pick(rng, [0.0, -1.0, float("nan"), float("inf"), 1e30])
    elif kind == "op_type" and nodes:
        _pick(rng, nodes).op_type = _pick(rng, sorted({n.op_type for n in nodes}))
    elif nodes:
        node = _pick(rng, [n for n in nodes if len(n.input) >= 2] or nodes)
        if len(node.input) >= 2:
            node.input[0], node.input[1] = node.input[1], node.input[0]
    return kind, model.SerializeToString()


def mutant(seed: str, data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """Half byte-level corruptions, half semantic edits."""
    if rng.random() < 0.5:
        return mutate(data, rng)
    try:
        return semantic_onnx(data, rng) if seed.endswith(".onnx") else semantic_tflite(data, rng)
    except Exception:  # the object API could not express this edit: fall back to bytes
        return mutate(data, rng)


def nth_mutant(target: str, seed: int, index: int) -> tuple[str, str, bytes]:
    """(seed fixture, mutation kind, bytes) of mutant `index` of a campaign, to reproduce a finding."""
    spec = TARGETS[target]
    rng = np.random.default_rng(seed)
    originals = [(name, (MODELS / name).read_bytes()) for name in spec.seeds]
    for i in range(index + 1):
        name, data = originals[i % len(originals)]
        kind, bad = mutant(name, data, rng)
    return name, kind, bad


# --- running one mutant -------------------------------------------------------------------------------
class _TimeLimit(BaseException):  # not an Exception: main()'s last line of defence must not catch it
    pass


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise _TimeLimit


def drive(argv: list[str]) -> tuple[int | None, str, str | None]:
    """Run `npupass ARGV` in this process: (exit code, stderr, escaped exception or None)."""
    from npupass.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        except _TimeLimit:
            raise
        except BaseException as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1]
            return None, err.getvalue(), f"{type(exc).__name__} at {Path(where.filename).name}:{where.lineno}: {exc}"
    return code, err.getvalue(), None


@dataclass
class RunResult:
    category: str
    detail: str = ""
    seconds: float = 0.0
    code: int | None = None
    """The exit code (None when the run died, hung or raised)."""


def run_one(argv: list[str], isolate: bool, time_limit: float) -> RunResult:
    """One run of the command: in a forked child (signals and hangs become results) or in this process."""
    start = time.perf_counter()
    if isolate:
        from npupass.isolate import call_forked

        outcome = call_forked(drive, argv, timeout=time_limit)
        seconds = time.perf_counter() - start
        if outcome.status == "timeout":
            return RunResult("hang", f"over {time_limit:g} s", seconds)
        if outcome.status == "crashed":
            return RunResult("signal", f"{outcome.message}: {outcome.last_log_line[:200]}", seconds)
        if outcome.status == "error":
            return RunResult("internal", outcome.message, seconds)
        code, err, escaped = outcome.value
    else:
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, time_limit)
        try:
            code, err, escaped = drive(argv)
        except _TimeLimit:
            return RunResult("hang", f"over {time_limit:g} s", time.perf_counter() - start)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        seconds = time.perf_counter() - start
    seconds = time.perf_counter() - start
    if escaped is not None:
        return RunResult("internal", escaped, seconds)
    if code in (0, 1) and "Warning" not in err:
        return RunResult("ok", f"exit {code}", seconds, code)
    lines = err.splitlines()
    if code == 2 and len(lines) == 1 and lines[0].startswith("npupass: error: "):
        return RunResult("error", lines[0], seconds, code)
    if code == 3:
        return RunResult("internal", lines[-1] if lines else "", seconds, code)
    return RunResult("multiline", f"exit {code}: {err[:300]!r}", seconds, code)


def _litert_once(data: bytes) -> str | None:
    from npupass.verify.litert import LiteRTModel, make_inputs

    try:
        m = LiteRTModel(data)
        m.run(make_inputs(m.inputs, 0))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _runs_in_litert(data: bytes) -> str | None:
    """Why LiteRT cannot load and run `data` once (None when it can); in a child, as npupass versions
    before issue 21 ran LiteRT in-process."""
    from npupass.isolate import call_forked

    outcome = call_forked(_litert_once, data, timeout=60.0)
    if outcome.status == "ok":
        return outcome.value  # type: ignore[no-any-return]
    return f"LiteRT {outcome.status}: {outcome.message}"


def check_outputs(out: Path, output_is_dir: bool, source: Path) -> tuple[str | None, bool]:
    """(why what an accepted run wrote is unusable, whether the input itself runs in LiteRT).

    Every .tflite written must load back in npupass and, except Vela's output (whose NPU op only an
    Ethos-U runs), run in LiteRT. An output LiteRT refuses only counts when LiteRT runs the input:
    a mutant no interpreter takes cannot become one by compiling it.
    """
    from npupass.frontends import load_model

    files = sorted(out.glob("*.tflite")) if output_is_dir else [out]
    if not files:
        return "nothing written", True
    for path in files:
        try:
            load_model(path)
        except Exception as exc:
            return f"{path.name}: does not load back: {type(exc).__name__}: {exc}", True
        if path.name.endswith("_vela.tflite"):
            continue
        problem = _runs_in_litert(path.read_bytes())
        if problem is not None:
            if source.suffix == ".tflite" and _runs_in_litert(source.read_bytes()) is not None:
                return None, False
            return f"{path.name}: {problem}", True
    return None, True


def _preload(target: str) -> None:
    """Import what every run needs once, so that forked runs do not import it again."""
    import importlib

    import ai_edge_litert.interpreter  # noqa: F401

    import npupass.cli
    import npupass.frontends.onnx  # noqa: F401

    backend = {"ethos-u55-128": "ethos_u", "ethos-n78": "ethos_n", "xnnpack": "xnnpack"}.get(target)
    if backend is not None:
        importlib.import_module(f"npupass.backends.{backend}.compile")
    if backend == "ethos_u":
        from npupass.backends.ethos_u.vela import VelaConfig, vela_setup

        vela_setup(VelaConfig("ethos-u55-128"))


@dataclass
class Campaign:
    target: str
    runs: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)
    inputs_modified: int = 0
    left_behind: int = 0
    bad_outputs: list[str] = field(default_factory=list)
    accepted_input_not_runnable: int = 0
    seconds: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "runs": self.runs,
            **{c: self.counts[c] for c in CATEGORIES},
            "inputs_modified": self.inputs_modified,
            "outputs_left_after_failure": self.left_behind,
            "accepted_outputs_unusable": len(self.bad_outputs),
            "accepted_but_input_not_runnable_in_litert": self.accepted_input_not_runnable,
            "median_seconds": round(float(np.median(self.seconds)), 3) if self.seconds else 0.0,
            "slowest_seconds": round(max(self.seconds, default=0.0), 2),
            "mutations": dict(sorted(self.kinds.items())),
            "findings": self.findings[:40],
            "bad_outputs": self.bad_outputs[:10],
        }


def campaign(
    target: str,
    count: int,
    seed: int = 0,
    isolate: bool = False,
    time_limit: float = 60.0,
    verify_outputs: bool = True,
    progress: Callable[[Campaign], None] | None = None,
) -> Campaign:
    """Run `count` mutants of `target`'s seeds through its command."""
    _preload(target)
    spec = TARGETS[target]
    rng = np.random.default_rng(seed)
    originals = [(name, (MODELS / name).read_bytes()) for name in spec.seeds]
    result = Campaign(target)
    with tempfile.TemporaryDirectory(prefix="npupass-fuzz-") as folder:
        work = Path(folder)
        for i in range(count):
            name, data = originals[i % len(originals)]
            kind, bad = mutant(name, data, rng)
            src = work / f"mutant{Path(name).suffix}"
            src.write_bytes(bad)
            digest = hashlib.sha256(bad).hexdigest()
            out = work / ("out" if spec.output_is_dir else "out.tflite")
            run = run_one(spec.argv(name, src, out), isolate, time_limit)
            result.runs += 1
            result.kinds[kind] += 1
            result.counts[run.category] += 1
            result.seconds.append(run.seconds)
            if hashlib.sha256(src.read_bytes()).hexdigest() != digest:
                result.inputs_modified += 1
            if run.category not in ("ok", "error"):
                result.findings.append(f"{name} #{i} ({kind}) {run.category}: {run.detail}")
            if run.category == "ok" and verify_outputs:
                problem, input_runs = check_outputs(out, spec.output_is_dir, src)
                result.accepted_input_not_runnable += not input_runs
                if problem is not None:
                    result.bad_outputs.append(f"{name} #{i} ({kind}): {problem}")
            elif run.code not in (0, 1) and out.exists() and (not spec.output_is_dir or any(out.iterdir())):
                result.left_behind += 1  # a failed run wrote something
            if out.is_dir():
                shutil.rmtree(out)
            elif out.exists():
                out.unlink()
            if progress is not None:
                progress(result)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=sorted(TARGETS), required=True)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--isolate", action="store_true", help="each mutant in a forked child (catches signals)")
    parser.add_argument("--no-output-check", dest="verify_outputs", action="store_false")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--json-out", type=Path, help="also write the report there, updated every 100 runs")
    args = parser.parse_args()
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
    start = time.perf_counter()

    def progress(c: Campaign) -> None:
        if c.runs % 100 == 0 and args.json_out is not None:
            report = c.to_json() | {"seconds": round(time.perf_counter() - start, 1)}
            args.json_out.write_text(json.dumps(report, indent=2) + "\n")
        if c.runs % 100 == 0:
            done = " ".join(f"{k}={c.counts[k]}" for k in CATEGORIES)
            print(f"[{c.target}] {c.runs}/{args.count} {done} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)

    result = campaign(args.target, args.count, args.seed, args.isolate, args.time_limit, args.verify_outputs, progress)
    report = result.to_json() | {"seconds": round(time.perf_counter() - start, 1)}
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    return 1 if result.findings or result.inputs_modified or result.left_behind else 0


if __name__ == "__main__":
    sys.exit(main())
