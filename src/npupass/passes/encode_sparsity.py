"""encode-sparsity: constant weights stored in TFLite's sparse format where that is smaller.

A sparse constant keeps only the values its `SparsityParameters` do not leave out: the weight is
walked level by level in `traversal_order` (original dims, then the dims of `block_map`'s blocks);
a DENSE level keeps every index, a SPARSE_CSR level only the indices whose subtree holds a non-zero
(`array_segments` per parent, `array_indices` per kept index, each stored u8 / u16 / i32 by its
largest value). DENSIFY (builtin 124) turns the stored values back into the dense weight, so

    DENSIFY(encode(W)) == W, bit for bit,

which this pass checks for every tensor before it rewrites anything. Per weight it weighs every
traversal order, every choice of CSR levels and dense blocks the runtime accepts, and keeps the
smallest encoding only when it is smaller than the dense tensor plus DENSIFY's own tensor and op.

FULLY_CONNECTED is special twice over (LiteRT 2.3, measured):
- int8 weights in 1x16 blocks run natively (no DENSIFY), but in LiteRT's builtin sparse kernel, whose
  outputs differ from XNNPACK's dense FC (per-channel requantization): not used, not exact;
- its XNNPACK delegate fails to prepare DENSIFY -> int8 FULLY_CONNECTED, and an FC weight's long
  input dim makes u16 indices. Such an FC becomes RESHAPE -> CONV_2D -> RESHAPE: a VALID conv whose
  kernel [O, k, 1, I/k] covers the whole reshaped input [B, k, 1, I/k] computes the same dot
  products in the same order, and I/k <= 256 makes the column indices u8.

An integer CONV_2D whose weight dims are all > 256 (the [1280,1,1,320] head of MobileNetV2) has u16
indices in any traversal order. It can become CONCATENATION (channel axis) of CONV_2Ds over runs of
<= 256 output channels, each with its own DENSIFY and u8 output-channel indices: every output channel
is computed on its own and integer sums do not depend on their order, so the outputs keep their bits.
Float convs are not split: LiteRT's builtin float GEMM blocks the sum over input channels by the
problem's size, so a part can round differently from the whole (measured on [264,1,1,288]).
A 1x1 stride-1 CONV_2D that wide is an FC over its pixels and becomes RESHAPE -> CONV_2D -> RESHAPE
like one (`1x1-as-kx1`, float and int8): the same GEMM, the same sums in the same order.

The TF converter's own encoding (`EXPERIMENTAL_SPARSITY`: every dim DENSE in order but the last,
SPARSE_CSR; FULLY_CONNECTED's 1x4 float / 1x16 int8 blocks where they are nearly as sparse as the
elements) is always among the candidates wherever LiteRT runs it bit-exactly, so no weight is stored
larger than the converter stores it, nor larger than dense. `EncodeSparsity.sizes` (and
`weight_sizes`) says, per weight, the bytes of each.

Options: `threshold` (skip weights with fewer zeros than this fraction), `fp16` (float weights
become FLOAT16, sparse or dense, followed by DEQUANTIZE to float32: halves the values, not exact)
and `like_converter` (store each weight exactly as the TF converter would: for comparisons).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from npupass.ir.graph import Graph, Op, Tensor
from npupass.ir.types import DimMetadata, DType, Quantization, Sparsity
from npupass.passes.manager import Context, Pass, PipelineError, label, register
from npupass.passes.pattern import WEIGHTED_OPS, new_constant
from npupass.tflite_schema import default_options

DENSE, CSR = "DENSE", "SPARSE_CSR"
BLOCK_SIZES = (2, 4, 8, 16)
# Bytes DENSIFY adds besides the encoding: its op, the dense output tensor, the sparsity tables
# and one dimension-metadata table per level (an upper bound of what LiteRT files measure, plus the
# tensor name twice), so tiny gains stay dense. The quantization stays on the dense tensor only:
# DENSIFY copies raw values, and LiteRT (XNNPACK and builtin kernels) reads the scales downstream.
DENSIFY_OVERHEAD, LEVEL_OVERHEAD = 200, 32
MAX_FC_COLUMNS = 256  # u8 column indices for an FC rewritten as a conv
MAX_PART_CHANNELS = 256  # u8 output-channel indices for each part of a split CONV_2D
# Bytes each extra part of a split CONV_2D adds besides its DENSIFY: a CONV_2D op, its output
# tensor, a weight and a bias tensor with their buffers (plus three names); once: the CONCATENATION.
SPLIT_PART_OVERHEAD, CONCAT_OVERHEAD = 450, 100


@dataclass(frozen=True)
class Layout:
    """Where the levels of a sparse encoding come from: the order of the original dims, the blocked
    dims with their block sizes (block levels come last and are DENSE), and each level's format."""

    traversal: tuple[int, ...]
    block_map: tuple[int, ...] = ()
    block_sizes: tuple[int, ...] = ()
    formats: tuple[str, ...] = ()

    def describe(self) -> str:
        order = ",".join(map(str, self.traversal))
        levels = "".join("C" if f == CSR else "D" for f in self.formats)
        blocks = "".join(f" block {b} on dim {d}" for d, b in zip(self.block_map, self.block_sizes, strict=True))
        return f"order ({order}) levels {levels}{blocks}"


@dataclass
class Encoding:
    """A weight in sparse storage: the stored values and their SparsityParameters."""

    layout: Layout
    values: np.ndarray
    sparsity: Sparsity

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes) + index_bytes(self.sparsity)


def index_bytes(s: Sparsity) -> int:
    return sum(
        (d.segments.nbytes if d.segments is not None else 0) + (d.indices.nbytes if d.indices is not None else 0)
        for d in s.dim_metadata
    )


def densify_bytes(ndim: int, name: str) -> int:
    """What a DENSIFY of a sparse `ndim`-D weight named `name` adds to a file besides the encoding."""
    return DENSIFY_OVERHEAD + LEVEL_OVERHEAD * (ndim + 1) + 2 * len(name) + 16


def index_width(largest: int) -> int:
    """Bytes per entry TFLite uses for an index array whose largest value is `largest`."""
    return 1 if largest <= 0xFF else 2 if largest <= 0xFFFF else 4


def _index_array(values: np.ndarray) -> np.ndarray:
    dtype = {1: "u1", 2: "<u2", 4: "<i4"}[index_width(int(values.max(initial=0)))]
    out = np.ascontiguousarray(values, dtype=dtype)
    out.flags.writeable = False
    return out


def _levels(x: np.ndarray, layout: Layout) -> np.ndarray:
    """`x` with one axis per level of `layout` (blocked dims split into outer and inner parts)."""
    expanded: list[int] = []
    axis: dict[tuple[str, int], int] = {}
    for d, size in enumerate(x.shape):
        if d in layout.block_map:
            j = layout.block_map.index(d)
            b = layout.block_sizes[j]
            axis[("outer", d)], axis[("block", j)] = len(expanded), len(expanded) + 1
            expanded += [size // b, b]
        else:
            axis[("outer", d)] = len(expanded)
            expanded.append(size)
    order = [axis[("outer", d)] for d in layout.traversal] + [axis[("block", j)] for j in range(len(layout.block_map))]
    return x.reshape(expanded).transpose(order)


def nonzero_mask(data: np.ndarray) -> np.ndarray:
    """Elements that are not zero. Pruning leaves -0.0 where it zeroed negative weights; it is a zero
    like any other (DENSIFY gives +0.0: acc + x * (+-0) == acc for every non-zero accumulator)."""
    return np.asarray(data != 0)


def encode(data: np.ndarray, layout: Layout) -> Encoding:
    """The sparse storage of dense `data` in `layout` (stored nodes are numbered level by level, as
    LiteRT's FormatConverter walks them: a DENSE child is parent * size + i, a CSR child its rank)."""
    t = _levels(np.asarray(data), layout)
    nz = _levels(nonzero_mask(np.asarray(data)), layout)
    sizes = t.shape
    parents = np.zeros(1, dtype=np.int64)  # flat prefix index of each stored node of the level above
    dims: list[DimMetadata] = []
    for level, size in enumerate(sizes):
        children = (parents[:, None] * size + np.arange(size)).reshape(-1)
        if layout.formats[level] == DENSE:
            dims.append(DimMetadata(DENSE, dense_size=int(size)))
            parents = children
            continue
        keep = np.asarray(nz.reshape(int(np.prod(sizes[: level + 1])), -1).any(axis=1))[children]
        segments = np.concatenate([[0], np.cumsum(keep.reshape(-1, size).sum(axis=1))])
        dims.append(DimMetadata(CSR, segments=_index_array(segments), indices=_index_array((children % size)[keep])))
        parents = children[keep]
    values = np.ascontiguousarray(t.reshape(-1)[parents])
    values.flags.writeable = False
    n = data.ndim
    traversal = layout.traversal + tuple(range(n, n + len(layout.block_map)))
    return Encoding(layout, values, Sparsity(traversal, layout.block_map, dims))


def decode(values: np.ndarray, sparsity: Sparsity, shape: tuple[int, ...]) -> np.ndarray:
    """The dense tensor DENSIFY makes of sparse storage (a reference for tests and the exactness check)."""
    n = len(shape)
    blocks = dict(zip(sparsity.block_map, (d.dense_size for d in sparsity.dim_metadata[n:]), strict=True))
    sizes = [shape[d] // blocks.get(d, 1) for d in sparsity.traversal_order[:n]] + [
        d.dense_size for d in sparsity.dim_metadata[n:]
    ]
    coords: list[np.ndarray] = []
    for meta, size in zip(sparsity.dim_metadata, sizes, strict=True):
        if meta.format == DENSE:
            coords = [np.repeat(c, size) for c in coords] + [np.tile(np.arange(size), max(1, _count(coords)))]
        else:
            assert meta.segments is not None and meta.indices is not None
            counts = np.diff(meta.segments.astype(np.int64)).astype(np.int64)
            coords = [np.repeat(c, counts) for c in coords] + [meta.indices.astype(np.int64)]
    flat = np.ravel_multi_index(tuple(coords), sizes) if coords else np.zeros(0, dtype=np.int64)
    levels = np.zeros(int(np.prod(sizes)), dtype=values.dtype)
    levels[flat] = values
    layout = Layout(tuple(sparsity.traversal_order[:n]), tuple(sparsity.block_map), tuple(blocks.values()))
    # undo _levels: inverse transpose, then merge each blocked dim's outer and inner axes
    probe = _levels(np.arange(int(np.prod(shape))).reshape(shape), layout)
    dense = np.empty(int(np.prod(shape)), dtype=values.dtype)
    dense[probe.reshape(-1)] = levels
    return dense.reshape(shape)


def _count(coords: list[np.ndarray]) -> int:
    return int(coords[0].size) if coords else 1


def _structures(shape: tuple[int, ...]) -> list[Layout]:
    """Traversal orders (only the order of dims > 1 matters) and single dense blocks."""
    n = len(shape)
    units = [d for d in range(n) if shape[d] == 1]
    big = [d for d in range(n) if shape[d] > 1]
    result = [Layout(tuple(units) + perm) for perm in itertools.permutations(big)]
    identity = tuple(range(n))
    for d in big:
        for b in BLOCK_SIZES:
            if shape[d] % b == 0 and shape[d] > b:
                result.append(Layout(identity, (d,), (b,)))
    return result


def _sizes(shape: tuple[int, ...], s: Layout) -> list[int]:
    blocks = dict(zip(s.block_map, s.block_sizes, strict=True))
    return [shape[d] // blocks.get(d, 1) for d in s.traversal] + list(s.block_sizes)


def candidates(mask: np.ndarray, itemsize: int) -> list[tuple[int, Layout]]:
    """(exact bytes, layout) of every encoding considered for a weight whose non-zeros are `mask`.

    Counted without encoding: a CSR level stores the prefixes whose subtree holds a non-zero, a
    DENSE level all children of the level above; segments get one entry per parent plus one."""
    shape = mask.shape
    found: list[tuple[int, Layout]] = []
    for s in _structures(shape):
        t = _levels(mask, Layout(s.traversal, s.block_map, s.block_sizes))
        sizes = _sizes(shape, s)
        depth = len(sizes)
        # nonempty[l]: which prefixes of length l+1 hold a non-zero; computed from the leaves up
        nonempty: list[np.ndarray] = [t] * depth
        for level in range(depth - 2, -1, -1):
            nonempty[level] = np.asarray(nonempty[level + 1].any(axis=-1))
        counts = [int(a.sum()) for a in nonempty]
        top_index = [
            int(np.flatnonzero(a.reshape(-1, sizes[i]).any(axis=0)).max(initial=0)) for i, a in enumerate(nonempty)
        ]
        outer = len(s.traversal)
        choosable = [i for i in range(outer) if sizes[i] > 1]
        for k in range(1, len(choosable) + 1):
            for chosen in itertools.combinations(choosable, k):
                formats = tuple(CSR if i in chosen else DENSE for i in range(depth))
                stored, total = 1, 0
                for i in range(depth):
                    if formats[i] == DENSE:
                        stored *= sizes[i]
                        continue
                    total += (stored + 1) * index_width(counts[i]) + counts[i] * index_width(top_index[i])
                    stored = counts[i]
                total += stored * itemsize
                found.append((total, Layout(s.traversal, s.block_map, s.block_sizes, formats)))
    found.sort(key=lambda c: (c[0], bool(c[1].block_map), c[1].formats.count(CSR), c[1].traversal))
    return found


def best_encoding(data: np.ndarray) -> Encoding | None:
    """The smallest exact sparse encoding of `data`, or None when the weight has no zeros."""
    mask = nonzero_mask(data)
    if mask.all() or data.size == 0:
        return None
    size, layout = candidates(mask, data.dtype.itemsize)[0]
    encoding = encode(data, layout)
    assert encoding.nbytes == size, (encoding.nbytes, size, layout)
    return encoding


# --- the TF converter's own choice (EXPERIMENTAL_SPARSITY: MLIR DenseToSparsePass, TF 2.21) ----------
CONVERTER_MIN_ZEROS = 0.3  # below this the converter keeps a weight dense
# FULLY_CONNECTED's blocks the converter tries, and how close the block sparsity must come to the
# element sparsity (block zeros / element zeros > ratio) for it to keep the FC native, without DENSIFY
CONVERTER_FC_BLOCK = {DType.FLOAT32: (4, 0.9), DType.FLOAT16: (4, 0.9), DType.INT8: (16, 0.8)}


@dataclass
class ConverterStyle:
    """How the TF converter stores a weight: "dense", "densify" (sparse + DENSIFY) or "fc-native"
    (FULLY_CONNECTED reading 1xN blocks itself), with its encoding and its bytes in the file."""

    kind: str
    encoding: Encoding | None
    nbytes: int

    def describe(self) -> str:
        return self.kind if self.encoding is None else f"{self.kind} {self.encoding.layout.describe()}"


def converter_layout(shape: tuple[int, ...], block: int = 1) -> Layout:
    """The converter's layout: dims in their own order, every level DENSE but the last original
    dim's, which is SPARSE_CSR; a block (FULLY_CONNECTED only) on dim 1, as a trailing DENSE level."""
    n = len(shape)
    if block == 1:
        return Layout(tuple(range(n)), formats=(DENSE,) * (n - 1) + (CSR,))
    return Layout(tuple(range(n)), (1,), (block,), (DENSE,) * (n - 1) + (CSR, DENSE))


def converter_style(data: np.ndarray, op_type: str, dtype: DType, densify_bytes: int) -> ConverterStyle:
    """What `EXPERIMENTAL_SPARSITY` writes for weight `data` of an `op_type`, and its bytes (the
    DENSIFY it adds counted as `densify_bytes`). Its rules: rank 2 or 4, at least 30% zeros; a
    FULLY_CONNECTED weight whose 1x4 (float) / 1x16 (int8) block sparsity is close enough to its
    element sparsity stays native; everything else is CSR over the last dim behind a DENSIFY."""
    dense = ConverterStyle("dense", None, int(data.nbytes))
    if data.ndim not in (2, 4) or data.size == 0:
        return dense
    zeros = 1.0 - np.count_nonzero(nonzero_mask(data)) / data.size
    if zeros < CONVERTER_MIN_ZEROS:
        return dense
    if op_type == "FULLY_CONNECTED" and data.ndim == 2 and dtype in CONVERTER_FC_BLOCK:
        block, ratio = CONVERTER_FC_BLOCK[dtype]
        if data.shape[1] % block == 0:
            blocked = encode(data, converter_layout(data.shape, block))
            if (1.0 - blocked.values.size / data.size) / zeros > ratio:
                return ConverterStyle("fc-native", blocked, blocked.nbytes)
    enc = encode(data, converter_layout(data.shape))
    return ConverterStyle("densify", enc, enc.nbytes + densify_bytes)


def fc_split(columns: int) -> int:
    """The smallest k dividing `columns` with columns / k <= 256 (k rows of a conv kernel)."""
    for k in range(1, columns + 1):
        if columns % k == 0 and columns // k <= MAX_FC_COLUMNS:
            return k
    return columns


def exact(encoding: Encoding, data: np.ndarray) -> bool:
    """DENSIFY gives `data` back: the same bits everywhere but in the sign of zeros."""
    dense = decode(encoding.values, encoding.sparsity, tuple(data.shape))
    same_bits = dense.tobytes() == np.ascontiguousarray(data).tobytes()
    return same_bits or bool(
        np.array_equal(dense, data, equal_nan=data.dtype.kind == "f")
        and np.all((dense == 0) | (dense.view(f"u{dense.dtype.itemsize}") == data.view(f"u{data.dtype.itemsize}")))
    )


# --- the pass ------------------------------------------------------------------------------------------
@dataclass
class _Plan:
    kind: str  # "densify", "fc-native", "fc-as-conv", "1x1-as-kx1", "split-conv", "dense-fp16"
    encoding: Encoding | None
    values: np.ndarray  # the dense values the encoding stores (fp16 when converting)
    split: int = 1
    parts: list[tuple[Encoding, np.ndarray]] = dataclasses.field(default_factory=list)  # split-conv

    def describe(self) -> str:
        if self.kind == "split-conv":
            return f"split-conv {len(self.parts)} parts: " + "; ".join(e.layout.describe() for e, _ in self.parts)
        if self.kind in ("fc-as-conv", "1x1-as-kx1") and self.encoding is not None:
            return f"{self.kind} {list(self.values.shape)} {self.encoding.layout.describe()}"
        return self.kind if self.encoding is None else f"{self.kind} {self.encoding.layout.describe()}"


@dataclass
class _Row:
    """One weight's sizes: dense, as chosen and as the TF converter stores it (bytes in the file:
    values, index arrays and the ops and tensors an encoding adds, the latter estimated)."""

    op: str
    tensor: str
    shape: tuple[int, ...]
    dtype: str
    zeros: float
    dense_bytes: int
    chosen: str = "dense"
    chosen_bytes: int = -1
    converter: str = "dense"
    converter_bytes: int = -1
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "tensor": self.tensor,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "zeros": round(self.zeros, 4),
            "dense_bytes": self.dense_bytes,
            "chosen": self.chosen,
            "chosen_bytes": self.chosen_bytes if self.chosen_bytes >= 0 else self.dense_bytes,
            "converter": self.converter,
            "converter_bytes": self.converter_bytes if self.converter_bytes >= 0 else self.dense_bytes,
            "note": self.note,
        }


@register
class EncodeSparsity(Pass):
    """W (dense constant weight)  ==>  DENSIFY(sparse W) when the sparse storage is smaller.

    Requires nothing; guarantees that every weight reads bit-identical values after DENSIFY (fp16:
    the float16 rounding of W). A weight already sparse, or read by something other than a weight
    slot, is left alone."""

    name = "encode-sparsity"
    summary = "store pruned weights sparse (CSR + DENSIFY, FC blocks) where it is smaller; exact"

    def __init__(self, threshold: float = 0.0, fp16: bool = False, like_converter: bool = False) -> None:
        if not 0.0 <= float(threshold) <= 1.0:
            raise PipelineError(f"encode-sparsity threshold must be a fraction in [0, 1], not {threshold}")
        self.threshold = float(threshold)
        self.fp16 = bool(fp16)
        self.like_converter = bool(like_converter)  # store every weight as the TF converter would
        self.sizes: list[_Row] = []  # every weight this pass weighed, in the order it met them

    def run_on_graph(self, graph: Graph, ctx: Context) -> None:
        for op in graph.ops:
            where = WEIGHTED_OPS.get(op.type)
            if where is None or op not in graph.nx:
                continue
            inputs = graph.inputs_of(op)
            w = inputs[where.weight] if where.weight < len(inputs) else None
            if w is None or not w.is_constant or w.sparsity is not None or w.shape is None:
                continue
            plan = self._plan(graph, op, w, ctx)
            if plan is not None:
                self._rewrite(graph, op, w, plan, ctx)

    # -- choosing ---------------------------------------------------------------------------------
    def _plan(self, graph: Graph, op: Op, w: Tensor, ctx: Context) -> _Plan | None:
        rule = "encode-sparse"
        what = f"{label(graph, op)} weight '{w.name}'"
        uses = len(graph.consumers(w))
        if uses > 1 or graph.is_graph_output(w):  # one encoding per op would store the weight twice
            ctx.decline(rule, f"{what} not encoded: it is read {uses} times or is a graph output", op)
            return None
        data = np.asarray(w.data)
        if data.dtype.kind not in "fiu" or data.shape != w.shape:
            return None
        fp16 = self.fp16 and w.dtype is DType.FLOAT32
        if fp16:
            with np.errstate(over="ignore"):
                half = data.astype(np.float16)
            if not np.all(np.isfinite(half[np.isfinite(data)])):
                ctx.decline("fp16-weights", f"{what} not stored as FLOAT16: values beyond its range", op)
                fp16 = False
            elif np.count_nonzero(nonzero_mask(half)) != np.count_nonzero(nonzero_mask(data)):
                ctx.decline("fp16-weights", f"{what} not stored as FLOAT16: non-zero values would round to zero", op)
                fp16 = False
            else:
                data = half
        zeros = 1.0 - np.count_nonzero(nonzero_mask(data)) / max(1, data.size)
        dense_fallback = _Plan("dense-fp16", None, data) if fp16 else None
        overhead = densify_bytes(data.ndim, w.name)
        row = _Row(label(graph, op), w.name, tuple(data.shape), w.dtype.name, zeros, int(np.asarray(w.data).nbytes))
        self.sizes.append(row)
        if fp16:  # until something smaller turns up: the float16 values behind DEQUANTIZE
            row.chosen, row.chosen_bytes = "dense-fp16", int(data.nbytes)
        # the converter's own encoding, always a candidate where LiteRT runs it exactly
        conv = converter_style(data, op.type, DType.FLOAT16 if fp16 else w.dtype, overhead)
        row.converter, row.converter_bytes = conv.describe(), conv.nbytes
        if zeros < self.threshold or zeros == 0.0:
            if zeros > 0.0:
                ctx.decline(
                    rule, f"{what} not encoded: {zeros:.0%} zeros, below the {self.threshold:.0%} threshold", op
                )
            return dense_fallback
        if self.like_converter:
            if conv.encoding is None:
                return dense_fallback
            row.chosen, row.chosen_bytes = conv.describe(), conv.nbytes
            return _Plan("fc-native" if conv.kind == "fc-native" else "densify", conv.encoding, data)
        int8_fc = op.type == "FULLY_CONNECTED" and w.dtype is DType.INT8
        options: list[tuple[int, _Plan]] = []
        if conv.encoding is not None:
            if not int8_fc:  # a float FC's own 1xN kernel sums in another order: DENSIFY keeps the bits
                options.append((conv.encoding.nbytes + overhead, _Plan("densify", conv.encoding, data)))
            elif conv.kind == "fc-native":
                row.note = "the converter's native int8 FC blocks: LiteRT's sparse kernel, not XNNPACK's bits"
            else:
                row.note = "the converter's DENSIFY -> int8 FULLY_CONNECTED fails in LiteRT's XNNPACK delegate"
        if op.type == "FULLY_CONNECTED":
            problem = _fc_conv_problem(graph, op, w)
            if problem is None:
                k = fc_split(data.shape[1])
                kernel = data.reshape(data.shape[0], k, 1, data.shape[1] // k)
                enc = best_encoding(kernel)
                if enc is not None:
                    extra = _fc_as_conv_bytes(graph, op, data.shape[0])
                    options.append((enc.nbytes + overhead + extra, _Plan("fc-as-conv", enc, kernel, k)))
            if not int8_fc:
                enc = best_encoding(data)
                if enc is not None:
                    options.append((enc.nbytes + overhead, _Plan("densify", enc, data)))
            elif problem is not None and not options:
                ctx.decline(
                    rule,
                    f"{what} not encoded: {problem}, and DENSIFY -> int8 FULLY_CONNECTED fails "
                    "in LiteRT's XNNPACK delegate",
                    op,
                )
                return dense_fallback
        else:
            enc = best_encoding(data)
            if enc is not None:
                options.append((enc.nbytes + overhead, _Plan("densify", enc, data)))
            integer = data.dtype.kind in "iu"  # a float part may sum in another order (module docstring)
            if (
                integer
                and op.type == "CONV_2D"
                and data.shape[0] > MAX_PART_CHANNELS
                and _conv_split_problem(graph, op, w) is None
            ):
                split = _split_plan(data, graph, op, w)
                if split is not None:
                    options.append(split)
            wide = data.ndim == 4 and min(data.shape[0], data.shape[3]) > MAX_FC_COLUMNS
            if wide and data.dtype.kind == "f" and _sparse_path_stem(graph):
                ctx.decline("1x1-as-kx1", f"{what} kept 1x1: the model can take XNNPACK's sparse path", op)
            elif wide and _conv1x1_problem(graph, op, w) is None:  # as rows of pixels, like an FC
                k = fc_split(data.shape[3])
                kernel = data.reshape(data.shape[0], k, 1, data.shape[3] // k)
                enc = best_encoding(kernel)
                if enc is not None:
                    extra = _fc_as_conv_bytes(graph, op, data.shape[0])
                    options.append((enc.nbytes + overhead + extra, _Plan("1x1-as-kx1", enc, kernel, k)))
        if not options:
            return dense_fallback
        cost, plan = min(options, key=lambda o: (o[0], o[1].kind != "densify"))
        if cost >= data.nbytes:
            ctx.decline(
                rule,
                f"{what} not encoded: {zeros:.0%} zeros, sparse storage {cost:,} bytes >= dense {data.nbytes:,}",
                op,
            )
            return dense_fallback
        checks = plan.parts or ([(plan.encoding, plan.values)] if plan.encoding is not None else [])
        for encoding, values in checks:
            if not exact(encoding, values):  # the guarantee, checked rather than assumed
                raise PipelineError(f"encode-sparsity: internal error: {what} does not decode to itself")
        row.chosen, row.chosen_bytes = plan.describe(), cost
        return plan

    # -- rewriting --------------------------------------------------------------------------------
    def _rewrite(self, graph: Graph, op: Op, w: Tensor, plan: _Plan, ctx: Context) -> None:
        origins = ctx.origins(graph, [op])
        if plan.kind == "split-conv":
            ctx.rewrote("split-conv", _split_conv(graph, op, w, plan.parts), origins)
            graph.drop_unused(w)
            return
        slot = WEIGHTED_OPS[op.type].weight
        dtype = DType.FLOAT16 if plan.values.dtype == np.float16 else w.dtype
        stored_shape = tuple(plan.values.shape)
        new_ops: list[Op] = []
        if plan.encoding is None:  # fp16, kept dense
            weight_source = new_constant(f"{w.name}_fp16", plan.values, DType.FLOAT16)
        else:
            weight_source = Tensor(
                w.name if dtype is w.dtype else f"{w.name}_fp16",
                dtype,
                stored_shape,
                plan.encoding.values,
                quant=w.quant if plan.kind == "fc-native" else None,  # DENSIFY: on its output only
                sparsity=plan.encoding.sparsity,
            )
        if plan.kind == "fc-native":
            graph.set_input(op, slot, weight_source)
            graph.drop_unused(w)
            ctx.rewrote("fc-block-sparse", [op], origins)
            return
        current = weight_source
        if plan.encoding is not None:
            dense = Tensor(f"{weight_source.name}_densified", dtype, stored_shape, quant=w.quant)
            densify = graph.add_op(Op("DENSIFY", version=1), [weight_source], [dense])
            new_ops.append(densify)
            current = dense
        if dtype is DType.FLOAT16:
            as_float = Tensor(f"{w.name}_dequantized", DType.FLOAT32, stored_shape)
            new_ops.append(graph.add_op(Op("DEQUANTIZE", version=2), [current], [as_float]))
            current = as_float
        if plan.kind in ("fc-as-conv", "1x1-as-kx1"):
            new_ops += _fc_as_conv(graph, op, current, plan.split)
            ctx.rewrote(plan.kind, new_ops, origins)
        else:
            graph.set_input(op, slot, current)
            ctx.rewrote("densify" if plan.encoding is not None else "fp16-weights", [*new_ops, op], origins)
        graph.drop_unused(w)


def weight_sizes(passes: Iterable[object]) -> list[dict[str, Any]]:
    """Per weight, what encode-sparsity passes among `passes` (e.g. a PassManager's) weighed: dense
    bytes, the chosen storage and its bytes, the converter's storage and its bytes (plain data for
    reports; a weight weighed again in a later round counts once, as last weighed)."""
    rows: dict[str, _Row] = {}
    for p in passes:
        if isinstance(p, EncodeSparsity):
            for row in p.sizes:
                rows.pop(row.tensor, None)
                rows[row.tensor] = row
    return [r.to_json() for r in rows.values()]


def size_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]], list[str]]:
    """`weight_sizes` rows as text columns for a terminal table (sizes in bytes), the totals last,
    and the notes that a `*` in the converter column points to."""
    header = ["weight", "shape", "zeros", "dense", "chosen", "bytes", "converter", "bytes", "ours/conv."]
    lines = []
    for r in rows:
        name = r["tensor"].split(";")[-1]  # converter names join every fused op's name
        lines.append(
            [
                name if len(name) <= 48 else "..." + name[-45:],
                "x".join(map(str, r["shape"])),
                f"{r['zeros']:.0%}",
                f"{r['dense_bytes']:,}",
                r["chosen"].split(" ")[0],
                f"{r['chosen_bytes']:,}",
                r["converter"].split(" ")[0] + ("*" if r["note"] else ""),
                f"{r['converter_bytes']:,}",
                f"{r['chosen_bytes'] / max(1, r['converter_bytes']):.3f}",
            ]
        )
    ours, conv = sum(r["chosen_bytes"] for r in rows), sum(r["converter_bytes"] for r in rows)
    dense = sum(r["dense_bytes"] for r in rows)
    lines.append(["total", "", "", f"{dense:,}", "", f"{ours:,}", "", f"{conv:,}", f"{ours / max(1, conv):.3f}"])
    notes = sorted({f"* {r['note']}" for r in rows if r["note"]})
    return header, lines, notes


def _fc_conv_problem(graph: Graph, op: Op, w: Tensor) -> str | None:
    """Why FULLY_CONNECTED `op` cannot become RESHAPE -> CONV_2D -> RESHAPE."""
    inputs = graph.inputs_of(op)
    x = inputs[0]
    bias = inputs[2] if len(inputs) > 2 else None
    y = graph.outputs_of(op)[0]
    if op.options.get("weights_format", "DEFAULT") != "DEFAULT":
        return f"weights format {op.options['weights_format']}"
    if x is None or x.shape is None or y.shape is None or any(d < 1 for d in (*x.shape, *y.shape)):
        return "its input or output shape is not static"
    if _dynamic_batch(x) is None or _dynamic_batch(y) is None:
        return "its input or output has a dynamic dimension other than the batch"
    if bias is None and w.dtype is not DType.FLOAT32 and (x.quant is None or w.quant is None):
        return "it has no bias and no quantization to give a zero bias"
    if len(graph.outputs_of(op)) != 1 or w.shape is None or len(w.shape) != 2:
        return "it is not a plain [O, I] FULLY_CONNECTED"
    columns = w.shape[1]
    if int(np.prod(x.shape)) % columns:
        return "its input does not flatten to rows of its weight's width"
    rows = int(np.prod(x.shape)) // columns
    if int(np.prod(y.shape)) != rows * w.shape[0]:
        return "its output shape does not match"
    return None


def _conv1x1_problem(graph: Graph, op: Op, w: Tensor) -> str | None:
    """Why CONV_2D `op` with weight [O, 1, 1, I] cannot become RESHAPE -> CONV_2D -> RESHAPE: a 1x1
    conv with stride 1 is an FC over the pixels (padding cannot matter), so `_fc_as_conv` applies."""
    if w.shape is None or len(w.shape) != 4 or w.shape[1:3] != (1, 1):
        return "its kernel is not 1x1"
    if op.options.get("stride_w", 1) != 1 or op.options.get("stride_h", 1) != 1:
        return "its stride is not 1"
    inputs, outputs = graph.inputs_of(op), graph.outputs_of(op)
    x, y = inputs[0], outputs[0]
    if x is None or x.shape is None or y.shape is None or len(outputs) != 1:
        return "its input or output shape is unknown"
    if any(d < 1 for d in (*x.shape, *y.shape)) or _dynamic_batch(x) is None or _dynamic_batch(y) is None:
        return "its input or output has a dynamic dimension other than the batch"
    if _bias(graph, op) is None and w.dtype is not DType.FLOAT32 and (x.quant is None or w.quant is None):
        return "it has no bias and no quantization to give a zero bias"
    if w.quant is not None and w.quant.per_axis and w.quant.axis != 0:
        return "its weight is quantized along another axis than the output channels"
    return None


def _sparse_path_stem(graph: Graph) -> bool:
    """Whether the model starts as XNNPACK's sparse (NCHW) path needs (a 3x3 stride-2 float conv on
    3 channels, padded 1 on every side by SAME or by a PAD before it; backends/xnnpack/qualify.py has
    the whole list): such a float model keeps its 1x1 convs, which that path needs."""
    ops = graph.ops
    first = next((op for op in ops if op.type not in ("PAD", "PADV2")), None)
    if first is None or first.type != "CONV_2D":
        return False
    x, w = graph.inputs_of(first)[:2]
    if x is None or w is None or x.shape is None or w.shape is None or w.dtype is not DType.FLOAT32:
        return False
    if len(w.shape) != 4 or w.shape[1:] != (3, 3, 3) or len(x.shape) != 4:
        return False
    if (first.options.get("stride_h"), first.options.get("stride_w")) != (2, 2):
        return False
    pad = graph.producer(x)
    if pad is not None and pad.type in ("PAD", "PADV2"):
        amounts = graph.inputs_of(pad)[1]
        data = None if amounts is None or amounts.data is None else np.asarray(amounts.data)
        return (
            first.options.get("padding") == "VALID"
            and data is not None
            and data.tolist() == [[0, 0], [1, 1], [1, 1], [0, 0]]
        )
    # SAME pads a 3x3 stride-2 window 1 on every side only on odd sides
    return first.options.get("padding") == "SAME" and x.shape[1] % 2 == 1 and x.shape[2] % 2 == 1


def _dynamic_batch(t: Tensor) -> bool | None:
    """Whether `t`'s first dim is dynamic (-1 in its shape signature, as Keras leaves the batch);
    None when another dim is."""
    sig = t.shape_signature
    if sig is None or all(d >= 0 for d in sig):
        return False
    return None if any(d < 0 for d in sig[1:]) else True


def _fc_as_conv_bytes(graph: Graph, op: Op, out_channels: int) -> int:
    """What RESHAPE -> CONV_2D -> RESHAPE adds to the file: four tensors named after the FC's input
    and output, two shape constants, two ops, and a zero bias when the FC has none (the sizes of
    LiteRT's tables, rounded up)."""
    x, y = graph.inputs_of(op)[0], graph.outputs_of(op)[0]
    names = 2 * (len(x.name) if x is not None else 0) + 2 * len(y.name) + 4 * 16
    tensors, ops, buffers = 4 * 72, 2 * 56, 2 * 48
    bias = 0 if _bias(graph, op) is not None else 72 + len(y.name) + 16 + _align16(4 * out_channels) + 48
    return names + tensors + ops + buffers + bias + 32


def _align16(n: int) -> int:
    return -(-n // 16) * 16


def _bias(graph: Graph, op: Op) -> Tensor | None:
    inputs = graph.inputs_of(op)
    return inputs[2] if len(inputs) > 2 else None


def _fc_as_conv(graph: Graph, fc: Op, kernel: Tensor, k: int) -> list[Op]:
    """FC(x, W[O, I], b) ==> RESHAPE(CONV_2D(RESHAPE(x, [B, k, 1, I/k]), W[O, k, 1, I/k], b, VALID), y.shape).

    An FC without bias gets a zero one (acc + 0 == acc), as every kernel of CONV_2D expects one."""
    x, w = graph.inputs_of(fc)[:2]
    bias = _bias(graph, fc)
    y = graph.outputs_of(fc)[0]
    assert x is not None and x.shape is not None and y.shape is not None and kernel.shape is not None
    out_channels, columns = kernel.shape[0], kernel.shape[1] * kernel.shape[3]
    if bias is None:
        if kernel.dtype is DType.FLOAT32:
            bias = new_constant(f"{y.name}_zero_bias", np.zeros(out_channels), DType.FLOAT32)
        else:
            assert x.quant is not None and w is not None and w.quant is not None
            scale = float(x.quant.scale[0]) * w.quant.scale.astype(np.float64)
            zero = Quantization(scale.astype(np.float32), np.zeros(scale.size, dtype=np.int64), 0)
            bias = new_constant(f"{y.name}_zero_bias", np.zeros(out_channels), DType.INT32, zero)
    rows = int(np.prod(x.shape)) // columns
    x4 = Tensor(f"{x.name}_as_image", x.dtype, (rows, k, 1, columns // k), quant=x.quant)
    y4 = Tensor(f"{y.name}_as_image", y.dtype, (rows, 1, 1, out_channels), quant=y.quant)
    x_shape, y_shape = list(x4.shape or ()), list(y.shape)
    if _dynamic_batch(x):  # a dynamic batch stays dynamic: RESHAPE works the rows out at run time
        x4.shape_signature, y4.shape_signature = (-1, k, 1, columns // k), (-1, 1, 1, out_channels)
        x_shape[0] = -1
    if _dynamic_batch(y):
        y_shape = list(y.shape_signature or y.shape)
    conv_options: dict[str, Any] = default_options("Conv2DOptions") | {
        "padding": "VALID",
        "stride_w": 1,
        "stride_h": 1,
        "fused_activation_function": fc.options.get("fused_activation_function", "NONE"),
    }
    position = graph.position(fc)
    graph.remove_op(fc)
    into = graph.add_op(
        Op("RESHAPE", {"new_shape": x_shape}, "ReshapeOptions"),
        [x, new_constant(f"{x4.name}/shape", np.array(x_shape), DType.INT32)],
        [x4],
        place=position,
    )
    conv_op = Op("CONV_2D", conv_options, "Conv2DOptions", version=3)
    conv = graph.add_op(conv_op, [x4, kernel, bias], [y4], place=position)
    out = graph.add_op(
        Op("RESHAPE", {"new_shape": y_shape}, "ReshapeOptions"),
        [y4, new_constant(f"{y.name}/shape", np.array(y_shape), DType.INT32)],
        [y],
        place=position,
    )
    return [into, conv, out]


# --- CONV_2D split by output channels -----------------------------------------------------------------
def _conv_split_problem(graph: Graph, op: Op, w: Tensor) -> str | None:
    """Why CONV_2D `op` cannot become CONCATENATION(CONV_2D(x, W[part], b[part]) for each part)."""
    bias = _bias(graph, op)
    outputs = graph.outputs_of(op)
    if len(outputs) != 1 or outputs[0].shape is None or len(outputs[0].shape) != 4:
        return "its output is not one 4-D tensor"
    if any(d < 1 for d in outputs[0].shape):
        return "its output shape is not static"
    if w.quant is not None and w.quant.per_axis and w.quant.axis != 0:
        return "its weight is quantized along another axis than the output channels"
    if bias is not None and (bias.data is None or bias.shape is None or len(bias.shape) != 1):
        return "its bias is not a constant vector"
    if bias is not None and bias.quant is not None and bias.quant.per_axis and bias.quant.axis != 0:
        return "its bias is quantized along another axis"
    return None


def _part_bounds(channels: int) -> list[tuple[int, int]]:
    """Near-equal runs of at most MAX_PART_CHANNELS output channels covering `channels`."""
    n = -(-channels // MAX_PART_CHANNELS)
    edges = [channels * i // n for i in range(n + 1)]
    return list(itertools.pairwise(edges))


def _split_plan(data: np.ndarray, graph: Graph, op: Op, w: Tensor) -> tuple[int, _Plan] | None:
    """Each run of <= 256 output channels encoded on its own: its CSR level can be the output
    channels with u8 indices. Every output channel of a conv is computed on its own, from the same
    inputs in the same order, so the parts, concatenated on the channel axis, give the same bits."""
    parts: list[tuple[Encoding, np.ndarray]] = []
    cost = CONCAT_OVERHEAD
    names = len(w.name) + len(graph.outputs_of(op)[0].name) + (len(b.name) if (b := _bias(graph, op)) else 0)
    for i, (lo, hi) in enumerate(_part_bounds(data.shape[0])):
        values = data[lo:hi]
        enc = best_encoding(values)
        if enc is None:
            return None  # a part without zeros: the split is not the point here
        parts.append((enc, values))
        cost += enc.nbytes + densify_bytes(values.ndim, w.name + "_part0")
        cost += SPLIT_PART_OVERHEAD + 3 * names if i else 0
    return cost, _Plan("split-conv", None, data, parts=parts)


def _slice_quant(q: Quantization | None, lo: int, hi: int) -> Quantization | None:
    if q is None or not q.per_axis:
        return q
    return dataclasses.replace(
        q,
        scale=q.scale[lo:hi],
        zero_point=q.zero_point[lo:hi],
        min=None if q.min is None else q.min[lo:hi],
        max=None if q.max is None else q.max[lo:hi],
    )


def _split_conv(graph: Graph, conv: Op, w: Tensor, parts: list[tuple[Encoding, np.ndarray]]) -> list[Op]:
    """CONV_2D(x, W, b) ==> CONCATENATION(CONV_2D(x, DENSIFY(W[lo:hi]), b[lo:hi]) ..., axis 3)."""
    inputs = graph.inputs_of(conv)
    x, bias, y = inputs[0], _bias(graph, conv), graph.outputs_of(conv)[0]
    assert y.shape is not None
    position = graph.position(conv)
    graph.remove_op(conv)
    new_ops: list[Op] = []
    outs: list[Tensor] = []
    lo = 0
    for i, (enc, values) in enumerate(parts):
        hi = lo + values.shape[0]
        fp16 = values.dtype == np.float16
        dtype = DType.FLOAT16 if fp16 else w.dtype
        name = f"{w.name}_part{i}{'_fp16' if fp16 else ''}"
        quant = _slice_quant(w.quant, lo, hi)
        stored = Tensor(name, dtype, tuple(values.shape), enc.values, quant=None, sparsity=enc.sparsity)
        current = Tensor(f"{name}_densified", dtype, tuple(values.shape), quant=quant)
        new_ops.append(graph.add_op(Op("DENSIFY", version=1), [stored], [current], place=position))
        if fp16:
            as_float = Tensor(f"{w.name}_part{i}_dequantized", DType.FLOAT32, tuple(values.shape))
            new_ops.append(graph.add_op(Op("DEQUANTIZE", version=2), [current], [as_float], place=position))
            current = as_float
        part_bias = None
        if bias is not None:
            assert bias.data is not None
            part_bias = new_constant(
                f"{bias.name}_part{i}", np.asarray(bias.data)[lo:hi], bias.dtype, _slice_quant(bias.quant, lo, hi)
            )
        out = Tensor(f"{y.name}_part{i}", y.dtype, (*y.shape[:3], hi - lo), quant=y.quant)
        if y.shape_signature is not None:
            out.shape_signature = (*y.shape_signature[:3], hi - lo)
        part = Op("CONV_2D", dict(conv.options), conv.options_type, conv.version)
        new_ops.append(graph.add_op(part, [x, current, part_bias], [out], place=position))
        outs.append(out)
        lo = hi
    concat = Op("CONCATENATION", {"axis": 3, "fused_activation_function": "NONE"}, "ConcatenationOptions")
    new_ops.append(graph.add_op(concat, outs, [y], place=position))
    if bias is not None:
        graph.drop_unused(bias)
    return new_ops
