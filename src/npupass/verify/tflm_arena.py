"""TFLM's side of an Ethos-U model: can TFLM run the ops Vela left on the CPU, and how big is the arena.

The host interpreter cannot run Vela's `ethos-u` custom op (no NPU driver), so the CPU ops are each run
alone in TFLM on seeded inputs, and the arena is planned the way TFLM plans it: every non-constant tensor
of the Vela model (the ethos-u op's scratch and fast-scratch tensors included, which TFLM allocates in
the arena like any other) gets a lifetime from the op order and a 16-byte-aligned place by TFLM's greedy
first-fit rule (largest first). `plan_arena_head` reproduces the head TFLM's recording allocator reports
for plain int8 models; the persistent tail is not measurable here.
"""

from __future__ import annotations

from typing import Any

from npupass.ir.graph import Graph, Model, Tensor

ALIGNMENT = 16
ETHOS_U = "ethos-u"


def _size(t: Tensor) -> int:
    itemsize = t.dtype.numpy.itemsize if t.dtype.numpy is not None else 1
    n = (t.num_elements or 0) * itemsize
    return -(-n // ALIGNMENT) * ALIGNMENT


def plan_arena_head(graph: Graph) -> int:
    """Bytes of the arena's head for `graph`: TFLM's greedy memory plan of its non-constant tensors."""
    ops = graph.ops
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    tensors: dict[int, Tensor] = {}
    for t in graph.inputs:
        tensors[id(t)], first[id(t)] = t, 0
    for i, op in enumerate(ops):
        for read in graph.inputs_of(op):
            if read is not None and not read.is_constant and not read.is_variable:
                tensors[id(read)] = read
                first.setdefault(id(read), i)
                last[id(read)] = i
        for t in [*graph.outputs_of(op), *graph.intermediates_of(op)]:
            tensors[id(t)] = t
            first.setdefault(id(t), i)
            last[id(t)] = max(last.get(id(t), i), i)
    for t in graph.outputs:
        tensors[id(t)] = t
        last[id(t)] = len(ops) - 1
    # largest first; among equal sizes the later-created first (TFLM's reverse sort), which matters: with
    # the other tie order a residual block needs 3 buffers where TFLM uses 4
    order = sorted(tensors, key=lambda k: (-_size(tensors[k]), -first.get(k, 0)))
    placed: list[tuple[int, int, int, int]] = []  # offset, size, first, last
    high = 0
    for k in order:
        size, a, b = _size(tensors[k]), first.get(k, 0), last.get(k, first.get(k, 0))
        offset = 0
        for off, sz, _, _ in sorted(p for p in placed if not (p[3] < a or p[2] > b)):
            if offset + size <= off:
                break
            offset = max(offset, off + sz)
        placed.append((offset, size, a, b))
        high = max(high, offset + size)
    return high


def check_vela_model(vela_model: bytes) -> dict[str, Any]:
    """For a `_vela.tflite`: the CPU ops TFLM cannot run (each with TFLM's reason), and the arena estimate.

    Returns plain data: {"cpu_ops": [types], "unsupported_ops": [{op, index, reason}], "arena": {...}}.
    """
    from npupass.frontends.tflite import parse_tflite
    from npupass.verify.tflm import check_ops

    model: Model = parse_tflite(vela_model)
    graph = model.main
    ops = graph.ops
    npu = [op for op in ops if op.type == "CUSTOM" and op.custom_code == ETHOS_U]
    cpu = [op for op in ops if op not in npu]
    problems = check_ops(model, cpu) if cpu else []
    scratch = fast = 0
    shared = False
    for op in npu:  # inputs: command stream, flash, scratch, fast scratch, then the feature maps
        inputs = graph.inputs_of(op)
        if len(inputs) > 2 and inputs[2] is not None and not inputs[2].is_constant:
            scratch = max(scratch, _size(inputs[2]))
        if len(inputs) > 3 and inputs[3] is not None and not inputs[3].is_constant:
            fast = max(fast, _size(inputs[3]))
            shared = shared or inputs[3] is inputs[2]
    return {
        "cpu_ops": [op.type for op in cpu],
        "unsupported_ops": [{"op": p.op, "index": p.index, "reason": p.reason} for p in problems],
        "arena": {
            "head_bytes": plan_arena_head(graph),
            "scratch_bytes": scratch,
            "fast_scratch_bytes": fast,
            "fast_scratch_is_scratch": shared,
            "method": "TFLM's greedy plan (16-byte aligned, largest first) of every non-constant tensor of the "
            "Vela model, Vela's scratch and fast scratch included; TFLM's persistent tail not included",
        },
    }
