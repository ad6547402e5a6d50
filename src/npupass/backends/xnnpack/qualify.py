"""Would XNNPACK run this model on its sparse (NCHW SpMM) path?

XNNPACK decides from the model itself (XNNPACK's subgraph rewrite for NCHW, LiteRT 2.3):
- the model asks for it: a delegated op reads DENSIFY of a static sparse weight;
- fp32 or fp16 weights (an int8 model never takes it);
- the first op is a 3x3 stride-2 CONV_2D on 3 channels padded exactly 1 on every side;
- depthwise convs are 3x3 padded 1 or 5x5 padded 2, stride 1 or 2, multiplier 1;
- the other convs are 1x1, stride 1, unpadded;
- the NCHW part ends in a global mean / average pool;
- at least 2/3 of the 1x1 conv weights are zero.
XNNPACK skips the path on x86 CPUs with AVX, so this is a qualification, never a latency claim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from npupass.ir.analysis import label, weight_source
from npupass.ir.graph import Graph, Model, Op, Tensor
from npupass.ir.ops import WEIGHTED_OPS
from npupass.ir.quant import is_quantized
from npupass.passes.pattern import input_at

MIN_1X1_ZEROS = 2 / 3
NOTE = "XNNPACK skips its sparse path on x86 CPUs with AVX: qualification only, no latency measured"


@dataclass
class ConvQualification:
    op: str
    kind: str  # stem, depthwise, 1x1, other
    ok: bool
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "kind": self.kind, "sparse_path": self.ok, "reason": self.reason}


@dataclass
class Qualification:
    reasons: list[str] = field(default_factory=list)
    convs: list[ConvQualification] = field(default_factory=list)
    zeros_1x1: float = 0.0

    @property
    def qualifies(self) -> bool:
        return not self.reasons and all(c.ok for c in self.convs)

    @property
    def why_not(self) -> list[str]:
        return self.reasons + [f"{c.op}: {c.reason}" for c in self.convs if not c.ok and c.reason]

    def to_json(self) -> dict[str, Any]:
        return {
            "qualifies": self.qualifies,
            "reasons": self.why_not,
            "zeros_1x1": round(self.zeros_1x1, 6),
            "convs": [c.to_json() for c in self.convs],
            "note": NOTE,
        }


def _pads(graph: Graph, op: Op) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) padding of a conv, counting an explicit constant PAD before it."""
    x, w = input_at(graph, op, 0), input_at(graph, op, 1)
    if x is None or w is None or x.shape is None or w.shape is None or len(x.shape) != 4:
        return None
    kh, kw = w.shape[1], w.shape[2]
    sh, sw = int(op.options.get("stride_h", 1)), int(op.options.get("stride_w", 1))
    h, wd = x.shape[1], x.shape[2]
    top = bottom = left = right = 0
    if op.options.get("padding") == "SAME":
        total_h = max((-(-h // sh) - 1) * sh + kh - h, 0)
        total_w = max((-(-wd // sw) - 1) * sw + kw - wd, 0)
        top, left = total_h // 2, total_w // 2
        bottom, right = total_h - top, total_w - left
    pad = graph.producer(x)
    if pad is not None and pad.type in ("PAD", "PADV2"):
        amounts = input_at(graph, pad, 1)
        if amounts is not None and amounts.data is not None and np.asarray(amounts.data).shape == (4, 2):
            p = np.asarray(amounts.data)
            top, bottom, left, right = (
                top + int(p[1, 0]),
                bottom + int(p[1, 1]),
                left + int(p[2, 0]),
                right + int(p[2, 1]),
            )
    return top, bottom, left, right


def _pad_text(p: tuple[int, int, int, int]) -> str:
    return "(" + ",".join(map(str, p)) + ")"


def _kernel(w: Tensor | None) -> tuple[int, int]:
    return (w.shape[1], w.shape[2]) if w is not None and w.shape is not None and len(w.shape) == 4 else (0, 0)


def _stem_problem(graph: Graph, op: Op) -> str | None:
    w = input_at(graph, op, 1)
    kh, kw = _kernel(w)
    stride = (int(op.options.get("stride_h", 1)), int(op.options.get("stride_w", 1)))
    channels = w.shape[3] if w is not None and w.shape is not None and len(w.shape) == 4 else 0
    if (kh, kw) != (3, 3) or stride != (2, 2):
        return f"the first op is a {kh}x{kw} stride-{stride[0]} conv; the sparse path needs a 3x3 stride-2 stem"
    if channels != 3:
        return f"the stem conv reads {channels} channels; the sparse path needs 3"
    pads = _pads(graph, op)
    if pads != (1, 1, 1, 1):
        return f"stem conv pads {_pad_text(pads or (0, 0, 0, 0))}; the sparse path needs 1 on every side"
    return None


def _depthwise_problem(graph: Graph, op: Op) -> str | None:
    kh, kw = _kernel(input_at(graph, op, 1))
    stride = int(op.options.get("stride_h", 1)), int(op.options.get("stride_w", 1))
    if (kh, kw) not in ((3, 3), (5, 5)):
        return f"{kh}x{kw} depthwise; the sparse path takes 3x3 and 5x5"
    if stride not in ((1, 1), (2, 2)):
        return f"depthwise stride {stride}; the sparse path takes 1 or 2"
    if int(op.options.get("depth_multiplier", 1)) != 1:
        return "depthwise multiplier is not 1"
    if (op.options.get("dilation_h_factor", 1), op.options.get("dilation_w_factor", 1)) != (1, 1):
        return "dilated depthwise"
    pads = _pads(graph, op)
    want = kh // 2
    if pads != (want,) * 4:
        return f"depthwise {kh}x{kw} pads {_pad_text(pads or (0, 0, 0, 0))}; the sparse path needs {want} on every side"
    return None


def _pointwise_problem(graph: Graph, op: Op) -> str | None:
    kh, kw = _kernel(input_at(graph, op, 1))
    if (kh, kw) != (1, 1):
        return f"{kh}x{kw} conv inside the network; the sparse path takes 1x1 convs (and a 3x3 stem)"
    if (op.options.get("stride_h", 1), op.options.get("stride_w", 1)) != (1, 1):
        return "1x1 conv with stride 2; the sparse path needs stride 1"
    if _pads(graph, op) != (0, 0, 0, 0):
        return "padded 1x1 conv"
    return None


def _weight(graph: Graph, op: Op) -> Tensor | None:
    return weight_source(graph, input_at(graph, op, WEIGHTED_OPS[op.type].weight))


def _sparse_request(graph: Graph) -> bool:
    for op in graph.iter_ops():
        if op.type == "DENSIFY":
            src = input_at(graph, op, 0)
            if src is not None and src.is_constant and src.sparsity is not None:
                return True
    return False


def _global_exit(graph: Graph) -> bool:
    return _exit_op(graph) is not None


def _downstream_of_exit(graph: Graph) -> set[Op]:
    exit_op = _exit_op(graph)
    found: set[Op] = set()
    frontier = [exit_op] if exit_op is not None else []
    while frontier:
        op = frontier.pop()
        for t in graph.outputs_of(op):
            for reader in graph.consumer_ops(t):
                if reader not in found:
                    found.add(reader)
                    frontier.append(reader)
    return found


def _exit_op(graph: Graph) -> Op | None:
    """The global mean / average pool (or depth-to-space) that ends the NCHW part."""
    for op in graph.ops:
        x = input_at(graph, op, 0)
        if x is None or x.shape is None or len(x.shape) != 4:
            continue
        if op.type == "MEAN":
            axes = input_at(graph, op, 1)
            if (
                axes is not None
                and axes.data is not None
                and sorted(int(a) % 4 for a in np.asarray(axes.data).reshape(-1)) == [1, 2]
            ):
                return op
        if (
            op.type == "AVERAGE_POOL_2D"
            and (op.options.get("filter_height"), op.options.get("filter_width")) == x.shape[1:3]
        ):
            return op
        if op.type == "DEPTH_TO_SPACE":
            return op
    return None


def qualify(model: Model) -> Qualification:
    """Per conv of the main graph: would it run on XNNPACK's sparse path, and if not, why."""
    graph = model.main
    q = Qualification()
    weights = [(op, _weight(graph, op)) for op in graph.ops if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    integer = {str(w.dtype).lower() for _, w in weights if w is not None and not w.dtype.is_float}
    integer |= {str(t.dtype).lower() for t in graph.inputs if is_quantized(t)}
    if integer:
        kinds = "/".join(sorted(integer))
        q.reasons.append(f"quantized {kinds} model; the sparse path runs fp32 and fp16 models only")
    elif not _sparse_request(graph):
        q.reasons.append("no DENSIFY of a sparse weight: the model does not ask for the sparse path")
    if not _global_exit(graph):
        q.reasons.append("no global mean or average pool ends the convolutional part")
    stem = _stem(graph)
    after_exit = _downstream_of_exit(graph)
    params = zeros = 0
    for op, w in weights:
        if op in after_exit:  # past the global pool XNNPACK runs NHWC again (an FC made a conv)
            continue
        name = label(graph, op)
        if op is stem:
            problem, kind = _stem_problem(graph, op), "stem"
        elif op.type == "DEPTHWISE_CONV_2D":
            problem, kind = _depthwise_problem(graph, op), "depthwise"
        else:
            problem = _pointwise_problem(graph, op)
            kind = "1x1" if problem is None or not problem.endswith("(and a 3x3 stem)") else "other"
            if kind == "1x1" and w is not None and w.data is not None:
                values = _values(w)
                params += values.size
                zeros += int(np.count_nonzero(values == 0))
        q.convs.append(ConvQualification(name, kind, problem is None, problem))
    if stem is None:
        q.reasons.append("the first op is not a conv; the sparse path needs a 3x3 stride-2 stem conv")
    q.zeros_1x1 = zeros / params if params else 0.0
    if params and q.zeros_1x1 < MIN_1X1_ZEROS:
        q.reasons.append(f"1x1 conv weights are {q.zeros_1x1:.1%} zeros; the sparse path needs at least 66.7%")
    if not params:
        q.reasons.append("no 1x1 convs")
    return q


def _values(w: Tensor) -> np.ndarray:
    if w.sparsity is not None and w.shape is not None:
        from npupass.passes.encode_sparsity import decode

        return decode(np.asarray(w.data), w.sparsity, tuple(w.shape))
    return np.asarray(w.data)


def _stem(graph: Graph) -> Op | None:
    """The first op that computes on the graph input (through PAD, QUANTIZE), if it is a conv."""
    if not graph.inputs:
        return None
    t = graph.inputs[0]
    for _ in range(3):
        readers = graph.consumer_ops(t)
        if len(readers) != 1:
            return None
        op = readers[0]
        if op.type in ("CONV_2D",):
            return op
        if op.type not in ("PAD", "PADV2", "QUANTIZE"):
            return None
        t = graph.outputs_of(op)[0]
    return None
