"""Run every npupass command on a folder of third-party models and print what happened per model.

For each .tflite/.onnx file: `info`, `convert` (plain round trip, then `verify` against the input),
`view --json`, `compile --target ethos-u55-128`; each in its own process, so that a signal (a crash)
is seen as one. For TFLite files it also compiles the file directly with Vela (in-process API, as
`vela` would) and compares its cycles and NPU op count with what npupass's compile reports, and
checks that the round trip keeps the bytes appended after the flatbuffer.

    python bench/realworld_models.py DIR [--json OUT]

The models are not part of the repository (fetch them yourself, e.g. from tensorflow/tflite-micro and
tensorflow/tflite-support); this script only reports.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

TIMEOUT = 600


def _run(*argv: str) -> tuple[int, str, str]:
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "npupass", *argv], capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return -999, "", "timeout"
    return proc.returncode, proc.stdout, proc.stderr


def _status(code: int, err: str) -> str:
    if code < 0:
        return f"SIGNAL {-code}" if code != -999 else "TIMEOUT"
    if "Traceback" in err:
        return f"TRACEBACK ({code})"
    if code == 0:
        return "ok"
    lines = [line for line in err.strip().splitlines() if line.strip()]
    return f"exit {code}: {lines[-1][:150] if lines else ''}"


def _vela_direct(path: Path) -> dict[str, Any] | None:
    """Vela on the file as it is, as its CLI would compile it (no npupass passes)."""
    from npupass.backends.ethos_u.vela import VelaConfig, compile_vela

    try:
        result = compile_vela(path.read_bytes(), VelaConfig("ethos-u55-128"))
    except Exception as exc:
        return {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
    return {"total_cycles": result.total_cycles, "cpu_ops": len(result.cpu_ops)}


def sweep(path: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"model": path.name, "bytes": path.stat().st_size}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.tflite"
        code, stdout, err = _run("info", str(path), "--json")
        row["info"] = _status(code, err)
        if code == 0:
            info = json.loads(stdout)
            row["ops"] = info["op_count"]
            row["appended"] = (info.get("appended") or {}).get("bytes", 0)
            row["notes"] = info.get("notes", [])
        code, _, err = _run("convert", str(path), "-o", str(out))
        row["convert"] = _status(code, err)
        if code == 0:
            if path.suffix == ".tflite":
                from npupass.frontends.tflite import read_tflite

                row["appended_kept"] = read_tflite(out).appended == read_tflite(path).appended
            code, stdout, err = _run("verify", str(path), str(out), "--json")
            row["verify"] = _status(code, err)
            if stdout.strip().startswith("{"):
                row["bit_exact"] = json.loads(stdout).get("bit_exact")
        code, _, err = _run("view", str(path), "--json")
        row["view"] = _status(code, err)
        code, stdout, err = _run("compile", str(path), "--target", "ethos-u55-128", "-o", tmp, "--json")
        row["compile"] = _status(code, err)
        if code == 0:
            report = json.loads(stdout)
            row["npupass_cycles"] = report["performance"]["total_cycles"]
            row["disagreements"] = len(report["ops"]["placement_disagreements"])
            row["npupass_cpu_ops"] = report["ops"]["cpu"]
    if path.suffix == ".tflite":
        row["vela"] = _vela_direct(path)
    return row


def random_weights(path: Path, out: Path, seed: int = 0) -> None:
    """A copy of an ONNX model whose ConstantOfShape weights (the onnx repository's "light" model-zoo
    files fill every weight with 0.02, which makes every output equal) are seeded random values."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    model = onnx.load(str(path))
    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    nodes = []
    for node in g.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in consts:
            shape = tuple(int(d) for d in consts[node.input[0]])
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 0
            data = rng.normal(0, 1 / np.sqrt(fan_in), shape) if fan_in else rng.uniform(0.5, 1.5, shape)
            g.initializer.append(numpy_helper.from_array(data.astype(np.float32), node.output[0]))
        else:
            nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
    model.ir_version = max(model.ir_version, 4)  # IR 3 wants every initializer listed as a graph input
    onnx.save(model, str(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--json", metavar="OUT")
    parser.add_argument("--random-weights", action="store_true", help="ONNX: seeded random ConstantOfShape weights")
    args = parser.parse_args()
    rows = []
    scratch = tempfile.TemporaryDirectory()
    for path in sorted(p for p in args.folder.iterdir() if p.suffix in (".tflite", ".onnx")):
        if args.random_weights and path.suffix == ".onnx":
            random_weights(path, Path(scratch.name) / path.name)
            path = Path(scratch.name) / path.name
        row = sweep(path)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
