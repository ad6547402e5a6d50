"""ONNX backend node conformance: every node test case of the installed `onnx` package, converted with
npupass and run in LiteRT against the case's expected outputs.

The cases come from `onnx.backend.test.case.node` (the generator behind the onnx repository's
`backend/test/data/node/` folders): one small model per case with its inputs and expected outputs.
Each case ends as one of

    PASS               LiteRT's outputs match the expected outputs
    WRONG              npupass wrote a model whose outputs differ (a silent wrong answer: must be 0)
    refused            npupass stopped with its one-line error (a clean refusal)
    LiteRT cannot run  npupass wrote a model that LiteRT fails to load or run, or LiteRT crashed (must be 0)
    npupass crashed    anything else npupass raised (must be 0)

LiteRT runs in a child process, so an abort inside it is counted, not fatal.

    python bench/onnx_conformance.py [--ops split,resize,...] [--show WRONG,"LiteRT cannot run"] [--json OUT]

`--ops` takes module names of onnx.backend.test.case.node (split, resize, div ...) for a quick subset.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import json
import pickle
import re
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from npupass.backends.tflite import serialize_tflite
from npupass.errors import NpupassError
from npupass.frontends.onnx import read_onnx
from npupass.frontends.onnx.importer import LAYOUT_METADATA
from npupass.passes import run_passes

OUTCOMES = ("PASS", "WRONG", "refused", "LiteRT cannot run", "npupass crashed")
PIPELINE = "fold-batch-norm,fuse-activations"  # what `npupass convert` runs on ONNX input
RTOL, ATOL = 1e-3, 1e-5

# The child: reads pickled (model bytes, inputs) from stdin, answers ("ok", outputs) or ("error", text).
_WORKER = r"""
import pickle, sys
from ai_edge_litert.interpreter import Interpreter, OpResolverType
source, sink = sys.stdin.buffer, sys.stdout.buffer
while True:
    try:
        model, inputs = pickle.load(source)
    except EOFError:
        break
    try:
        it = Interpreter(model_content=model,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        details = it.get_input_details()
        if len(details) != len(inputs):
            raise ValueError(f"{len(details)} inputs, the case has {len(inputs)}")
        for d, x in zip(details, inputs):
            if tuple(d["shape"]) != x.shape:
                it.resize_tensor_input(d["index"], list(x.shape))
        it.allocate_tensors()
        for d, x in zip(details, inputs):
            it.set_tensor(d["index"], x.astype(d["dtype"]))
        it.invoke()
        answer = ("ok", [it.get_tensor(d["index"]).copy() for d in it.get_output_details()])
    except Exception as exc:
        text = str(exc).strip().splitlines()
        answer = ("error", f"{type(exc).__name__}: {text[0] if text else ''}")
    pickle.dump(answer, sink)
    sink.flush()
"""


class LiteRTWorker:
    """LiteRT in a child process, started again after it dies."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        return self._proc

    def run(self, model: bytes, inputs: list[np.ndarray]) -> tuple[str, Any]:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            pickle.dump((model, inputs), proc.stdin)
            proc.stdin.flush()
            answer: tuple[str, Any] = pickle.load(proc.stdout)
            return answer
        except (EOFError, BrokenPipeError, pickle.UnpicklingError):
            code = proc.wait()
            return "error", f"LiteRT died (exit {code})"

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait()


@dataclass
class Outcome:
    name: str
    kind: str
    detail: str = ""


def collect(modules: list[str] | None = None) -> list[Any]:
    """The node test cases: all of them, or those made by the given modules of onnx.backend.test.case.node."""
    from onnx.backend.test.case import node

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators divide by zero on purpose
        np.seterr(all="ignore")
        if modules is None:
            return list(node.collect_testcases(None))
        before = {c.name for c in node._NodeTestCases}  # the generator's own registry
        for module in modules:
            try:
                importlib.import_module(f"onnx.backend.test.case.node.{module}")
            except ModuleNotFoundError:
                raise SystemExit(f"onnx_conformance: no module {module} in onnx.backend.test.case.node") from None
        wanted = set(modules)
        return [
            c
            for c in node._NodeTestCases
            if c.name not in before or any(c.name.startswith(f"test_{m}") for m in wanted)
        ]


def _convert(model: Any, folder: Path) -> tuple[bytes, dict[str, list[list[int]]]]:
    path = folder / "case.onnx"
    onnx.save(model, str(path))
    ir = read_onnx(path)
    quantized = any(op.type in ("QUANTIZE", "DEQUANTIZE") for op in ir.main.iter_ops())
    run_passes(ir, PIPELINE + (",fold-fake-quant" if quantized else ""))
    layout = json.loads(ir.metadata_entry(LAYOUT_METADATA) or b"{}")
    return serialize_tflite(ir), layout


def _as_array(value: Any) -> np.ndarray | None:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, onnx.TensorProto):
        return onnx.numpy_helper.to_array(value)
    return None  # sequences, optionals, maps: not tensors


def _mismatch(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> str:
    if actual.size != expected.size or (actual.shape != expected.shape and actual.size > 1):
        return f"shape {list(actual.shape)}, expected {list(expected.shape)}"
    actual = actual.reshape(expected.shape)
    if expected.dtype.kind in "fc":
        a, e = actual.astype(np.float64), expected.astype(np.float64)
        bad = ~np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
        if bad.any():
            i = int(np.argmax(bad.reshape(-1)))
            return f"{int(bad.sum())}/{bad.size} values differ, e.g. {a.reshape(-1)[i]:.6g} vs {e.reshape(-1)[i]:.6g}"
        return ""
    if expected.dtype.kind in "iub":
        bad = actual.astype(np.int64) != expected.astype(np.int64)
        if bad.any():
            i = int(np.argmax(bad.reshape(-1)))
            a, e = actual.reshape(-1)[i], expected.reshape(-1)[i]
            return f"{int(bad.sum())}/{bad.size} values differ, e.g. {a} vs {e}"
        return ""
    return "" if np.array_equal(actual, expected) else "values differ"


def run_case(case: Any, worker: LiteRTWorker) -> Outcome:
    """Convert one case with npupass and compare LiteRT's outputs with the expected ones."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            tflite, layout = _convert(case.model, Path(tmp))
        except NpupassError as exc:
            return Outcome(case.name, "refused", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except Exception as exc:  # a traceback a user would see
            return Outcome(case.name, "npupass crashed", f"{type(exc).__name__}: {exc}")
    rtol, atol = max(case.rtol, RTOL), max(case.atol, ATOL)
    for inputs, expected in case.data_sets:
        arrays = [_as_array(x) for x in inputs]
        wanted = [_as_array(x) for x in expected]
        if any(a is None for a in arrays + wanted):
            return Outcome(case.name, "refused", "not a tensor input or output (npupass converted it anyway)")
        perms = layout.get("inputs", [])
        feed = [
            x.transpose(perms[i]) if i < len(perms) and x.ndim == len(perms[i]) else x  # type: ignore[union-attr]
            for i, x in enumerate(arrays)
        ]
        status, result = worker.run(tflite, feed)
        if status != "ok":
            return Outcome(case.name, "LiteRT cannot run", result)
        if len(result) != len(wanted):
            return Outcome(case.name, "WRONG", f"{len(result)} outputs, expected {len(wanted)}")
        out_perms = layout.get("outputs", [])
        for i, (got, exp) in enumerate(zip(result, wanted, strict=True)):
            if i < len(out_perms) and got.ndim == len(out_perms[i]):
                got = got.transpose(np.argsort(out_perms[i]))
            problem = _mismatch(got, exp, rtol, atol)  # type: ignore[arg-type]
            if problem:
                return Outcome(case.name, "WRONG", f"output {i}: {problem}")
    return Outcome(case.name, "PASS")


def run_all(cases: list[Any]) -> list[Outcome]:
    worker = LiteRTWorker()
    try:
        return [run_case(case, worker) for case in cases]
    finally:
        worker.close()


def _reason(detail: str) -> str:
    """A refusal without the case's file and value names, so that equal reasons count together."""
    detail = re.sub(r"^\S+case\.onnx: ", "", detail)
    return re.sub(r"'[^']*'|\([^)]*\)", "", detail)[:90]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", help="comma-separated modules of onnx.backend.test.case.node (default: all)")
    parser.add_argument("--show", default="WRONG,LiteRT cannot run,npupass crashed", help="outcomes to list")
    parser.add_argument("--json", metavar="OUT", help="write every case's outcome as JSON")
    args = parser.parse_args()
    start = time.perf_counter()
    cases = collect(args.ops.split(",") if args.ops else None)
    collected = time.perf_counter() - start
    outcomes = run_all(cases)
    seconds = time.perf_counter() - start
    counts = collections.Counter(o.kind for o in outcomes)
    shown = set(args.show.split(",")) if args.show else set()
    for o in outcomes:
        if o.kind in shown:
            print(f"{o.kind:18} {o.name}: {o.detail}")
    refusals = collections.Counter(_reason(o.detail) for o in outcomes if o.kind == "refused")
    print(f"\nonnx {onnx.__version__}: {len(outcomes)} node test cases", end=" ")
    print(f"({collected:.0f} s to generate, {seconds:.0f} s in all)")
    for kind in OUTCOMES:
        print(f"  {kind:18} {counts.get(kind, 0)}")
    print("most frequent refusals:")
    for reason, n in refusals.most_common(10):
        print(f"  {n:5} {reason}")
    if args.json:
        Path(args.json).write_text(json.dumps([o.__dict__ for o in outcomes], indent=1) + "\n")


if __name__ == "__main__":
    main()
