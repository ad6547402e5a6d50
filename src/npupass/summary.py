"""What `npupass info` reports about a model, as plain data (the CLI renders it or prints it as JSON)."""

from __future__ import annotations

import io
import zipfile
from collections import Counter
from typing import Any

import numpy as np

from npupass.ir.graph import Graph, Model, Op, Tensor
from npupass.tflite_schema import non_default_options


def quant_summary(t: Tensor) -> dict[str, Any] | None:
    q = t.quant
    if q is None or not q.is_affine:
        return None
    if not q.per_axis:
        zp = int(q.zero_point[0]) if q.zero_point.size else 0
        return {"kind": "per-tensor", "scale": float(q.scale[0]), "zero_point": zp}
    return {
        "kind": "per-axis",
        "axis": q.axis,
        "channels": int(q.scale.size),
        "scale_min": float(q.scale.min()),
        "scale_max": float(q.scale.max()),
        "zero_points": sorted({int(z) for z in q.zero_point}),
    }


def tensor_summary(t: Tensor) -> dict[str, Any]:
    return {
        "name": t.name,
        "dtype": t.dtype.value,
        "shape": None if t.shape is None else list(t.shape),
        "constant": t.is_constant,
        "quantization": quant_summary(t),
    }


def _op_summary(graph: Graph, index: int, op: Op) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "index": index,
        "type": op.type if op.custom_code is None else f"CUSTOM:{op.custom_code}",
        "version": op.version,
        "options": op.options,
        "options_set": non_default_options(op.options_type, op.options),
        "inputs": [None if t is None else tensor_summary(t) for t in graph.inputs_of(op)],
        "outputs": [tensor_summary(t) for t in graph.outputs_of(op)],
    }
    if op.custom_options is not None:
        entry["custom_options_bytes"] = len(op.custom_options)
    return entry


def op_label(op: Op) -> str:
    return op.type if op.custom_code is None else f"CUSTOM:{op.custom_code}"


def parameter_bytes(model: Model) -> int:
    """Bytes of constant data, counting a buffer shared by several tensors once."""
    seen: dict[tuple[int, int], int] = {}
    for graph in model.subgraphs:
        for t in graph.tensors:
            if t.data is not None:
                arr = np.asarray(t.data)
                seen[(arr.__array_interface__["data"][0], arr.nbytes)] = arr.nbytes
    return sum(seen.values())


def appended_summary(data: bytes) -> dict[str, Any] | None:
    """What the bytes after the flatbuffer are: their size, and the files when they are a zip (as
    TFLite Support metadata stores associated files such as label maps)."""
    if not data:
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            files = [{"name": i.filename, "bytes": i.file_size} for i in archive.infolist()]
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        files = None
    return {"bytes": len(data), "zip_files": files}


def read_notes(model: Model) -> list[str]:
    """How the reader interpreted what the file states unusually (so that `info` can say so)."""
    notes = list(model.notes)
    fixed = model.quant_axis_as_read
    if fixed:
        axes = sorted({axis for _, _, axis in fixed})
        notes.append(
            f"{len(fixed)} rank-1 per-channel tensor(s) say quantized axis {'/'.join(map(str, axes))} "
            f"(e.g. '{fixed[0][0].name}'); read along axis 0, as Vela and TFLM do, since their scale count "
            "matches their only dimension; written back as they were"
        )
    return notes


def summarize(model: Model, file: str | None = None, file_bytes: int | None = None) -> dict[str, Any]:
    histogram: Counter[str] = Counter()
    dtypes: Counter[str] = Counter()
    quant: Counter[str] = Counter()
    n_tensors = n_constants = 0
    subgraphs = []
    ops: list[dict[str, Any]] = []
    for index, graph in enumerate(model.subgraphs):
        graph_ops = graph.ops
        tensors = graph.tensors
        histogram.update(op_label(op) for op in graph_ops)
        for t in tensors:
            dtypes[t.dtype.value] += 1
            q = quant_summary(t)
            quant["none" if q is None else q["kind"]] += 1
            n_constants += t.is_constant
        n_tensors += len(tensors)
        subgraphs.append(
            {
                "index": index,
                "name": graph.name,
                "ops": len(graph_ops),
                "tensors": len(tensors),
                "inputs": [tensor_summary(t) for t in graph.inputs],
                "outputs": [tensor_summary(t) for t in graph.outputs],
            }
        )
        ops.extend({"subgraph": index} | _op_summary(graph, i, op) for i, op in enumerate(graph_ops))
    return {
        "format": model.source_format,
        "file": file,
        "file_bytes": file_bytes,
        "schema_version": model.version if model.source_format == "tflite" else None,
        "description": model.description,
        "buffer_storage": model.buffer_storage,
        "subgraphs": subgraphs,
        "op_count": sum(histogram.values()),
        "op_histogram": dict(histogram.most_common()),
        "tensor_count": n_tensors,
        "constant_count": n_constants,
        "parameter_bytes": parameter_bytes(model),
        "dtypes": dict(dtypes.most_common()),
        "quantization": {k: quant.get(k, 0) for k in ("per-tensor", "per-axis", "none")},
        "signatures": [
            {
                "key": s.key,
                "subgraph": s.subgraph_index,
                "inputs": [name for name, _ in s.inputs],
                "outputs": [name for name, _ in s.outputs],
            }
            for s in model.signatures
        ],
        "metadata": [{"name": name, "bytes": len(value)} for name, value in model.metadata],
        "appended": appended_summary(model.appended),
        "notes": read_notes(model),
        "ops": ops,
    }


def info_extra_lines(info: dict[str, Any]) -> list[str]:
    """The text lines `info` prints for appended bytes and reader notes."""
    lines = []
    appended = info.get("appended")
    if appended:
        files = appended["zip_files"]
        what = (
            f"a zip of {len(files)} file(s): " + ", ".join(f"{f['name']} ({f['bytes']:,} bytes)" for f in files)
            if files is not None
            else "not a zip"
        )
        lines.append(f"appended after the flatbuffer: {appended['bytes']:,} bytes, {what}")
    lines.extend(f"note: {note}" for note in info.get("notes", []))
    return lines
