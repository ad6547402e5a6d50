"""TFLM look-up-table (LUT) weight compression, chosen per tensor and verified in TFLM.

A constant with few distinct values is stored as `bits`-wide indices into a value table (one table per
tensor, or one per channel) and decoded at run time by a DECODE op TFLM inserts in front of its reader.
TFLM's own tool (`tflite_micro...compression.compress`) writes the format; this module decides what to
give it:

- the mode follows the tensor's quantization. TFLM's LUT decoder picks per-channel tables from the
  decoded tensor's quantization (more than one scale: one table per channel along the quantized
  axis), not from the table layout the tool wrote. Compressing a per-channel-quantized conv weight or
  bias "per tensor", or a per-tensor-quantized FC weight "per channel", therefore decodes every channel
  after the first from the wrong table: that is why the tool's output changed model outputs;
- the index width is the smallest that holds the largest table;
- a tensor is compressed only where the estimated saving exceeds what the DECODE op, its two extra
  tensors and the copied quantization cost; the whole file must come out smaller;
- verified: TFLM decodes every compressed tensor (read back from the interpreter) to exactly the
  original values, and the compressed model's outputs on seeded inputs are bit-identical to the
  uncompressed model's in TFLM. A tensor that fails is left uncompressed, with the reason.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from npupass.errors import NpupassError
from npupass.verify.tflm import run_tflm

MAX_BITS = 7  # TFLM's LUT format holds 1..7-bit indices
OVERHEAD_BYTES = 320  # DECODE op + ancillary and output tensors + alignment, measured on the int8 fixtures
PER_CHANNEL_OVERHEAD = 12  # the decoded tensor repeats each channel's scale (f32) and zero point (i64)


class CompressionError(NpupassError):
    """TFLM's compression tool refused the model."""


@dataclass
class TensorChoice:
    """One constant and what happened to it."""

    index: int
    name: str
    op: str
    shape: list[int]
    bytes: int
    mode: str = ""
    """"per-tensor", or "per-channel(axis)"."""
    bits: int = 0
    estimated_bytes: int = 0
    """Indices plus value tables plus the estimated overhead."""
    compressed: bool = False
    reason: str = ""


def _choose(tensor: Any, readers: list[str]) -> TensorChoice:
    array = tensor.array
    choice = TensorChoice(
        tensor.index, tensor.name or "", ",".join(readers), [int(d) for d in array.shape], int(array.nbytes)
    )
    q = tensor.quantization
    scales = 0 if q is None or q.scales is None else np.size(q.scales)
    if scales > 1:
        axis = int(q.axis or 0)
        if axis not in (0, array.ndim - 1):
            choice.reason = f"per-channel quantized along axis {axis}; TFLM's decoder takes axis 0 or the last only"
            return choice
        tables = [np.unique(x) for x in np.moveaxis(array, axis, 0)]
        choice.mode = f"per-channel({axis})"
        overhead = OVERHEAD_BYTES + PER_CHANNEL_OVERHEAD * len(tables)
    else:
        tables = [np.unique(array)]
        choice.mode = "per-tensor"
        overhead = OVERHEAD_BYTES
    largest = max(len(t) for t in tables)
    bits = max(1, (largest - 1).bit_length())
    if bits > MAX_BITS:
        choice.reason = f"{largest} distinct values{' in a channel' if len(tables) > 1 else ''}; LUT holds at most 128"
        return choice
    choice.bits = bits
    choice.estimated_bytes = (array.size * bits + 7) // 8 + 16 + largest * len(tables) * array.itemsize + overhead
    if choice.estimated_bytes >= choice.bytes:
        choice.reason = f"would not shrink: {choice.bytes} bytes -> about {choice.estimated_bytes} with the DECODE op"
    return choice


def _candidates(data: bytes) -> list[TensorChoice]:
    from tflite_micro.tensorflow.lite.micro.compression import constant_inputs, model_editor

    model = model_editor.read(data)
    subgraph = model.subgraphs[0]
    graph_io = {id(t) for t in [*subgraph.inputs, *subgraph.outputs]}
    choices = []
    for tensor in subgraph.tensors:
        if tensor.buffer is None or not tensor.buffer.data or id(tensor) in graph_io or tensor.is_variable:
            continue
        try:
            array = tensor.array
        except ValueError:  # buffer and shape disagree (e.g. a sparse or packed constant): leave it
            continue
        if array is None or array.size < 2 or array.dtype.kind not in "iuf":
            continue
        readers = subgraph.consumers_of(tensor)
        if not readers:
            continue
        choice = _choose(tensor, sorted({op.opcode_name for op in readers}))
        if uses := constant_inputs.find_uses(subgraph, tensor):
            choice.reason, choice.bits = "; ".join(u.describe() for u in uses), 0
        choices.append(choice)
    return choices


def _compress(data: bytes, chosen: list[TensorChoice]) -> bytes:
    from tflite_micro.tensorflow.lite.micro import compression
    from tflite_micro.tensorflow.lite.micro.compression import spec

    specs = []
    for c in chosen:
        mode = spec.PerTensor() if c.mode == "per-tensor" else spec.PerChannel(int(c.mode[12:-1]))
        specs.append(spec.Tensor(0, c.index, [spec.LookUpTableCompression(c.bits, mode)]))
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")  # expansion warnings: our estimate already decided
            return bytes(compression.compress(data, specs))
    except Exception as exc:  # the tool raises CompressionError, or anything from its flatbuffer code
        raise CompressionError(f"TFLM's compression tool failed: {' '.join(str(exc).split())}") from None


def _decoded(data: bytes, chosen: list[TensorChoice], inputs: list[np.ndarray]) -> dict[int, str]:
    """Tensors TFLM does not decode to their original values: {tensor index: reason}."""
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    original = model_editor.read(data).subgraphs[0].tensors
    compressed = _compress(data, chosen)
    model = model_editor.read(compressed)
    outputs = {}  # original tensor index -> index of the DECODE output that replaces it
    for op in model.subgraphs[0].operators:
        if op.opcode_name in ("DECODE", "TFLM_DECODE"):
            for encoded, out in zip(op.inputs[0::2], op.outputs, strict=False):
                outputs[_source(encoded, original)] = out.index
    run = run_tflm(compressed, [inputs], read_tensors=sorted(outputs.values()))
    if not run.ok:
        return {c.index: f"TFLM could not run it compressed: {run.error}" for c in chosen}
    bad = {}
    for c in chosen:
        want = original[c.index].array
        got = run.tensors.get(outputs.get(c.index, -1))
        if got is None:
            bad[c.index] = "no DECODE output found for it"
        elif got.size != want.size or not np.array_equal(got.reshape(want.shape), want):
            wrong = int(np.count_nonzero(got.ravel() != want.ravel())) if got.size == want.size else want.size
            bad[c.index] = f"TFLM decoded {wrong} of {want.size} values differently"
    return bad


def _source(encoded: Any, original: list[Any]) -> int:
    """The original tensor an encoded tensor came from (the tool keeps names)."""
    name = encoded.name or ""
    for t in original:
        if t.name == name:
            return int(t.index)
    return -1


def compress_lut(data: bytes, samples: list[list[np.ndarray]]) -> tuple[bytes, dict[str, Any]]:
    """LUT-compress `data` where it helps and TFLM reproduces it exactly; returns the model (the input
    unchanged when nothing is compressed) and a report. `samples`: seeded input lists for the check."""
    choices = _candidates(data)
    chosen = [c for c in choices if c.bits and not c.reason]
    result = data
    verified = None
    while chosen:
        bad = _decoded(data, chosen, samples[0])
        for c in chosen:
            if c.index in bad:
                c.reason = bad[c.index]
        chosen = [c for c in chosen if c.index not in bad]
        if bad or not chosen:
            continue  # again with the rest
        candidate = _compress(data, chosen)
        before, after = run_tflm(data, samples), run_tflm(candidate, samples)
        same = (
            before.ok
            and after.ok
            and all(
                x.tobytes() == y.tobytes()
                for a, b in zip(before.outputs, after.outputs, strict=True)
                for x, y in zip(a, b, strict=True)
            )
        )
        if not same:
            for c in chosen:
                c.reason = "the compressed model's TFLM outputs differed from the uncompressed model's"
            chosen = []
        elif len(candidate) >= len(data):
            for c in chosen:
                c.reason = f"the file would not shrink ({len(data)} -> {len(candidate)} bytes)"
            chosen = []
        else:
            result, verified = candidate, {"samples": len(samples), "bit_exact": True}
            break
    for c in chosen:
        c.compressed = True
    return result, {
        "method": "TFLM LUT (DECODE op)",
        "bytes_before": len(data),
        "bytes_after": len(result),
        "ratio": round(len(result) / len(data), 4),
        "compressed_tensors": len(chosen),
        "verified": verified,
        "tensors": [asdict(c) for c in choices],
    }
