"""Runs in TensorFlow Lite for Microcontrollers (TFLM): the interpreter from the `tflite-micro` wheel, which
runs TFLM's own reference kernels on the host and measures the tensor arena with its recording allocator.

TFLM aborts the process on some models (a failed TFLITE_CHECK, e.g. an int8 SOFTMAX whose input scale is
too small), so every run happens in a forked child with a timeout: a crash becomes a TflmRun with `crash`
set. What TFLM prints (kernel errors, the recording allocator's figures) goes to the child's fd 1/2, which
are read back and parsed here.
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import re
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from npupass.errors import NpupassError
from npupass.ir.graph import Model, Op

INSTALL_HINT = "pip install tflite-micro (TFLM's host interpreter; wheels for CPython 3.11 on x86-64 Linux)"
MEASURE_ARENA = 64 << 20  # the arena offered when measuring: more SRAM than any Cortex-M has
TIMEOUT = 300.0


class TflmUnavailableError(NpupassError):
    """The tflite-micro package is not installed (or has no build for this platform)."""


def require_tflm() -> None:
    """Raise TflmUnavailableError, saying what to install, unless TFLM's host interpreter imports."""
    try:
        from tflite_micro.python.tflite_micro import runtime  # noqa: F401
    except ImportError as exc:
        raise TflmUnavailableError(f"this target needs TFLM's host interpreter ({exc}): {INSTALL_HINT}") from None


@dataclass
class Arena:
    """The tensor arena TFLM's recording allocator reports: head (the planned tensors, reused between ops)
    plus tail (persistent data: tensor structs, kernel state, quantization params)."""

    total: int
    head: int
    tail: int


@dataclass
class OpProblem:
    """An op TFLM cannot run, with TFLM's own reason."""

    op: str
    reason: str
    index: int | None = None
    """The op's index in the main graph, when TFLM named it."""

    def text(self) -> str:
        where = f" (op {self.index})" if self.index is not None else ""
        return f"{self.op}{where}: {self.reason}"


@dataclass
class TflmRun:
    """What one TFLM run of a model gave: outputs per sample, the arena, or why it failed."""

    outputs: list[list[np.ndarray]] = field(default_factory=list)
    arena: Arena | None = None
    stage: str = "done"
    """Where it stopped: "done", "allocate" (load/prepare), "invoke", "crash" or "timeout"."""
    error: str = ""
    problems: list[OpProblem] = field(default_factory=list)
    arena_missing: int | None = None
    """Bytes TFLM said the arena lacked, when it failed for want of arena."""
    log: list[str] = field(default_factory=list)
    tensors: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.stage == "done"


_NO_BUILTIN = re.compile(r"Didn't find op for builtin opcode '(\w+)'")
_NO_REGISTRATION = re.compile(r"Failed to get registration from op code (\w+)")
_NODE_FAILED = re.compile(r"Node (\S+) \(number (\d+)\) failed to (prepare|invoke) with status")
_MISSING = re.compile(r"Failed to (?:resize buffer|allocate tail memory|allocate temp memory)\. .*missing: (\d+)")
_ARENA = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


def parse_log(lines: list[str], custom_codes: list[str] | None = None) -> tuple[list[OpProblem], int | None]:
    """Ops TFLM refused, with reasons, and the arena bytes missing, from what TFLM printed."""
    problems: list[OpProblem] = []
    missing = None
    for i, line in enumerate(lines):
        if m := _NO_BUILTIN.search(line):
            problems.append(OpProblem(m.group(1), "TFLM has no kernel for this op"))
        elif (m := _NO_REGISTRATION.search(line)) and m.group(1) == "CUSTOM":
            names = ", ".join(custom_codes or []) or "a custom op"
            problems.append(OpProblem("CUSTOM", f"TFLM has no kernel registered for custom code {names}"))
        elif m := _NODE_FAILED.search(line):
            before = [x for x in lines[max(0, i - 2) : i] if not _NODE_FAILED.search(x) and not _MISSING.search(x)]
            reason = before[-1] if before else f"failed to {m.group(3)}"
            if "missing:" in reason or (i > 0 and _MISSING.search(lines[i - 1])):
                continue  # out of arena, reported as such
            problems.append(OpProblem(m.group(1), f"{m.group(3)} failed: {reason}", int(m.group(2))))
        elif m := _MISSING.search(line):
            missing = int(m.group(1))
    return problems, missing


def _child(
    model: bytes, inputs: list[list[np.ndarray]], arena_size: int, read: list[int], log_path: str, conn: Any
) -> None:
    faulthandler.disable()  # an abort inside TFLM is reported by the parent, not as a Python traceback
    fd = os.open(log_path, os.O_WRONLY)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    stage = "allocate"
    try:
        from tflite_micro.python.tflite_micro import runtime

        config = runtime.InterpreterConfig
        interp = runtime.Interpreter.from_bytes(
            model,
            arena_size=arena_size,
            intrepreter_config=config.kPreserveAllTensors if read else config.kAllocationRecording,
        )
        stage = "invoke"
        outputs = []
        count = _count(interp)
        for sample in inputs:
            for i, x in enumerate(sample):
                interp.set_input(x, i)
            interp.invoke()
            outputs.append([np.array(interp.get_output(i), copy=True) for i in range(count)])
        tensors = {i: np.array(interp.GetTensor(i, 0)["tensor_data"], copy=True) for i in read}
        if not read:
            interp.print_allocations()  # the recording allocator's figures, to the log
        conn.send(("ok", (outputs, tensors)))
    except BaseException as exc:
        conn.send((stage, " ".join(str(exc).split())))
    finally:
        conn.close()
        os._exit(0)  # skip the parent's exit handlers (a copied lock could hang them)


def _count(interp: Any) -> int:
    """Number of outputs: the wrapper has no count, so probe until it refuses."""
    n = 0
    while True:
        try:
            interp.get_output_details(n)
        except (IndexError, RuntimeError, ValueError):
            return n
        n += 1
        if n > 4096:
            return n


def run_tflm(
    model: bytes,
    inputs: list[list[np.ndarray]] | None = None,
    arena_size: int = MEASURE_ARENA,
    timeout: float = TIMEOUT,
    custom_codes: list[str] | None = None,
    read_tensors: list[int] | None = None,
) -> TflmRun:
    """Load `model` in TFLM with an `arena_size`-byte arena, run it on each sample of `inputs` (a list of
    input lists; none: load and prepare only) and read back the outputs and the arena it used.

    `read_tensors`: also read these tensors of subgraph 0 after the last sample (TFLM then keeps every
    tensor, so the arena is not measured)."""
    require_tflm()
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    outcome: tuple[str, Any] | None = None
    timed_out = False
    with tempfile.NamedTemporaryFile(prefix="npupass-tflm-", suffix=".log") as log:
        args = (model, inputs or [], arena_size, read_tensors or [], log.name, send)
        child = context.Process(target=_child, args=args, daemon=True)
        child.start()
        send.close()
        deadline = time.monotonic() + timeout
        try:
            while outcome is None:
                if receive.poll(0.05):
                    try:
                        outcome = receive.recv()
                    except EOFError:
                        break
                elif not child.is_alive() and not receive.poll(0):
                    break
                elif time.monotonic() > deadline:
                    timed_out = True
                    break
        finally:  # done, failed or interrupted: never leave the child behind
            if outcome is None and child.is_alive():
                child.kill()
            child.join()
            receive.close()
        lines = [x.strip() for x in Path(log.name).read_text(encoding="utf-8", errors="replace").splitlines()]
    lines = [x for x in lines if x]
    problems, missing = parse_log(lines, custom_codes)
    run = TflmRun(log=lines, problems=problems, arena_missing=missing)
    if outcome is None:
        code = child.exitcode or 0
        run.stage = "timeout" if timed_out else "crash"
        run.error = (
            f"TFLM did not finish within {timeout:g} s"
            if timed_out
            else f"TFLM crashed ({signal.Signals(-code).name if code < 0 else f'exit code {code}'})"
        )
        return run
    status, payload = outcome
    if status != "ok":
        run.stage, run.error = status, payload
        return run
    run.outputs, run.tensors = payload
    figures = {m.group(1): int(m.group(2)) for x in lines if (m := _ARENA.search(x))}
    if {"total", "head", "tail"} <= figures.keys():
        run.arena = Arena(figures["total"], figures["head"], figures["tail"])
    return run


def arena_json(arena: Arena | None) -> dict[str, int] | None:
    return asdict(arena) if arena is not None else None


def op_model(model: Model, op: Op) -> bytes:
    """A TFLite model of `op` alone: its non-constant inputs become graph inputs, its outputs graph outputs
    (the other subgraphs are kept, for ops that call them)."""
    from npupass.backends.tflite import serialize_tflite
    from npupass.ir.graph import Graph
    from npupass.ir.graph import Model as IRModel

    graph = model.main
    alone = Graph(graph.name)
    inputs = graph.inputs_of(op)
    alone.add_op(op, inputs, graph.outputs_of(op), graph.intermediates_of(op))
    seen: set[int] = set()
    for t in inputs:
        if t is not None and not t.is_constant and not t.is_variable and id(t) not in seen:
            seen.add(id(t))
            alone.inputs.append(t)
    alone.outputs = list(graph.outputs_of(op))
    return serialize_tflite(IRModel([alone, *model.subgraphs[1:]]))


def custom_codes(model: Model) -> list[str]:
    return sorted({op.custom_code or "?" for g in model.subgraphs for op in g.iter_ops() if op.type == "CUSTOM"})


def check_ops(model: Model, ops: list[Op] | None = None, samples: int = 1, seed: int = 0) -> list[OpProblem]:
    """Each op of the main graph (or `ops`) run alone in TFLM on seeded inputs: the ops TFLM cannot load,
    prepare or run, with TFLM's reason ("crashed" when it aborted the process). `index` is the op's
    position in `model.main.ops`."""
    from npupass.verify.litert import LiteRTModel, ReferenceError, make_inputs

    order = model.main.ops
    problems = []
    for op in ops if ops is not None else order:
        data = op_model(model, op)
        try:
            specs = LiteRTModel(data).inputs
            inputs = [make_inputs(specs, seed + s) for s in range(samples)]
        except ReferenceError:
            inputs = []  # LiteRT cannot run it either: TFLM still says whether it loads
        run = run_tflm(data, inputs, custom_codes=[op.custom_code or "?"] if op.type == "CUSTOM" else None)
        if run.ok:
            continue
        reasons = [p.reason for p in run.problems] or [run.error]
        if run.stage == "crash" and (why := known_abort(model, op)):
            reasons = [f"{run.error}: {why}"]
        problems.append(OpProblem(op.type, "; ".join(dict.fromkeys(reasons)), order.index(op)))
    return problems


def known_abort(model: Model, op: Op) -> str | None:
    """Why TFLM aborts on `op`, where the cause is known (TFLM stops the process with no message)."""
    x = model.main.inputs_of(op)[0] if op.type == "SOFTMAX" else None
    if x is None or x.quant is None or not x.quant.scale.size or x.dtype.numpy is None or x.dtype.numpy.kind != "i":
        return None
    beta, scale = float(op.options.get("beta", 1.0)), float(x.quant.scale[0])
    value = beta * scale * 2.0**26
    if value > 1.0:
        return None
    return (
        f"input scale {scale:.3g} x beta {beta:g} x 2^26 = {value:.3g} is not above 1, which TFLM's int8 softmax "
        "requires (QuantizeMultiplierGreaterThanOne); the logits' range is degenerate (recalibrate the model)"
    )


@dataclass
class OpDifference:
    """An op whose TFLM kernel gives other values than LiteRT's on the same inputs."""

    index: int
    op: str
    max_steps: int
    mismatched: int
    elements: int


def op_differences(model: Model, samples: int = 3, seed: int = 0) -> list[OpDifference]:
    """Each integer op of the main graph run alone in LiteRT and in TFLM on the same seeded inputs: the ops
    whose outputs differ, by how many quantization steps (where a model-level difference comes from)."""
    from npupass.verify.compare import compare_arrays
    from npupass.verify.litert import LiteRTModel, ReferenceError, make_inputs

    result = []
    for index, op in enumerate(model.main.ops):
        outs = model.main.outputs_of(op)
        if not outs or any(t.dtype.is_float for t in outs):
            continue
        data = op_model(model, op)
        try:
            reference = LiteRTModel(data)
            inputs = [make_inputs(reference.inputs, seed + s) for s in range(samples)]
            expected = [reference.run(x) for x in inputs]
        except ReferenceError:
            continue
        run = run_tflm(data, inputs)
        if not run.ok:
            continue
        worst, mismatched, elements = 0, 0, 0
        for got, want in zip(run.outputs, expected, strict=True):
            for x, y in zip(got, want, strict=True):
                c = compare_arrays(y, x.reshape(y.shape))
                worst = max(worst, c.max_steps or 0)
                mismatched += c.mismatched
                elements += c.elements
        if mismatched:
            result.append(OpDifference(index, op.type, worst, mismatched, elements))
    return result
