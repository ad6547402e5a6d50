"""TFLite writer: the IR into a .tflite file.

Buffers are written 16-byte aligned, inside the flatbuffer ("inline") or after it with
Buffer.offset/size ("external", needed past the flatbuffer's 2 GiB limit). Tensors that view the
same memory share one buffer, as they did in the file they were read from.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from npupass.errors import NpupassError
from npupass.fileio import atomic_write
from npupass.flatbuf import Recorder, encode, gc_paused
from npupass.ir.check import data_problem
from npupass.ir.graph import Graph, Model, Op, Signature, Tensor
from npupass.ir.ops import BUILTIN_CODES
from npupass.ir.types import DimMetadata, Quantization, Sparsity
from npupass.tflite_schema import TENSOR_TYPE_CODES, dict_to_table, enum_members, options_union

IDENTIFIER = b"TFL3"
ALIGNMENT = 16
_INLINE_LIMIT = 2**31 - 2**26  # leave room for the tables next to the data
_PLACEHOLDER_OFFSET = 2**40  # any non-default value: the field must be written in the sizing pass


class WriteError(NpupassError):
    """The IR cannot be written as TFLite (e.g. an IR-only op was not lowered)."""


def serialize_tflite(model: Model, buffers: str = "auto") -> bytes:
    """The bytes of a TFLite file for `model`. `buffers`: "auto" (as read), "inline" or "external"."""
    return b"".join(_serialize(model, buffers))


def write_tflite(model: Model, path: str | os.PathLike[str], buffers: str = "auto") -> None:
    """Write `model` to `path` atomically (a reader never sees a half-written file)."""
    atomic_write(Path(path), _serialize(model, buffers))


def _align(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


class _Buffer(schema.BufferT):
    """A buffer whose data vector is 16-byte aligned (the generated Pack aligns to the element size)."""

    def __init__(self, data: memoryview | None = None, offset: int = 0, size: int = 0) -> None:
        super().__init__(None, offset, size)
        self.raw = data

    def Pack(self, builder: Recorder) -> int:  # noqa: N802 - the generated API's name
        vector = None if self.raw is None else builder.CreateAlignedBytes(self.raw, ALIGNMENT)
        schema.BufferStart(builder)
        if vector is not None:
            schema.BufferAddData(builder, vector)
        schema.BufferAddOffset(builder, self.offset)
        schema.BufferAddSize(builder, self.size)
        return int(schema.BufferEnd(builder))


def _serialize(model: Model, buffers: str) -> list[bytes | bytearray | memoryview]:
    with gc_paused():
        return _serialize_chunks(model, buffers)


def _serialize_chunks(model: Model, buffers: str) -> list[bytes | bytearray | memoryview]:
    if buffers not in ("auto", "inline", "external"):
        raise ValueError(f"buffers must be auto, inline or external, not {buffers!r}")
    if buffers == "auto":
        buffers = (
            "external" if model.buffer_storage == "external" or _constant_bytes(model) > _INLINE_LIMIT else "inline"
        )
    # The TF converter marks external-buffer files with a "buffer_location" entry; it is stale once inlined.
    stale = {"buffer_location"} if buffers == "inline" and model.buffer_storage == "external" else set()
    plan = _Plan(model, drop_metadata=stale)
    total = sum(len(d) for d in plan.data)
    tables = 2**16 + 256 * sum(len(sub.tensors) + len(sub.operators) for sub in plan.subgraphs)
    if buffers == "inline":
        if total > _INLINE_LIMIT:
            raise WriteError(f"{total} bytes of constants do not fit inside a flatbuffer; use external buffers")
        fb_model = plan.flatbuffer([_Buffer(d if len(d) else None) for d in plan.data])  # empty: no data vector
        return [_pack(fb_model, total + tables), model.appended]
    # Constants go after the flatbuffer; metadata stays inside it, where readers of metadata look (as TF does).
    metadata = plan.metadata_buffers
    outside = [bool(len(d)) and i not in metadata for i, d in enumerate(plan.data)]

    def buffer_table(i: int, offset: int) -> _Buffer:
        return _Buffer(None, offset, len(plan.data[i])) if outside[i] else _Buffer(plan.data[i] or None)

    sizing = plan.flatbuffer([buffer_table(i, _PLACEHOLDER_OFFSET) for i in range(len(plan.data))])
    fb_size = len(_pack(sizing, tables))
    offsets, end = [], _align(fb_size)
    for i, d in enumerate(plan.data):
        offsets.append(end if outside[i] else 0)
        end = _align(end + len(d)) if outside[i] else end
    head = _pack(plan.flatbuffer([buffer_table(i, off) for i, off in enumerate(offsets)]), tables)
    if len(head) != fb_size:  # the two passes differ only in scalar values, so this cannot happen
        raise WriteError("internal error: flatbuffer size changed between sizing and writing")
    chunks: list[bytes | bytearray | memoryview] = [head]
    pos = fb_size
    for d, off, out in zip(plan.data, offsets, outside, strict=True):
        if out:
            chunks.append(b"\0" * (off - pos))
            chunks.append(d)
            pos = off + len(d)
    chunks.append(b"\0" * (_align(pos) - pos))
    chunks.append(model.appended)
    return chunks


def _constant_bytes(model: Model) -> int:
    return sum(t.data.nbytes for g in model.subgraphs for t in g.tensors if t.data is not None)


def _pack(fb_model: Any, size_hint: int) -> memoryview:
    try:
        packed = encode(fb_model, IDENTIFIER, size_hint)
    except (struct.error, OverflowError, TypeError, ValueError) as exc:
        raise WriteError(f"a value does not fit its TFLite schema field ({exc})") from None
    if len(packed) >= 2**31:
        raise WriteError(f"the flatbuffer would be {len(packed):,} bytes, over its 2 GiB limit; use external buffers")
    return packed


def _bytes_of(data: np.ndarray) -> memoryview:
    return np.ascontiguousarray(data).data.cast("B")


class _Plan:
    """Index assignment for everything the flatbuffer refers to by position."""

    def __init__(self, model: Model, drop_metadata: set[str]) -> None:
        self.model = model
        self.data: list[memoryview] = [memoryview(b"")]  # buffer 0: the empty sentinel
        self._buffer_of: dict[tuple[Any, ...], int] = {}
        self.opcodes: dict[tuple[str, str | None, int], int] = {}
        self.tensor_index: list[dict[int, int]] = []
        self._options: dict[tuple[str, Any], Any] = {}
        # A rank-1 tensor read along axis 0 goes back with its file's axis while its quantization is unchanged.
        self._axis_as_read = {id(t): (q, axis) for t, q, axis in model.quant_axis_as_read}
        self.subgraphs = [self._subgraph(i, g) for i, g in enumerate(model.subgraphs)]
        self._metadata_buffer: dict[int, int] = {}
        self.metadata = [
            (name, self._bytes_buffer(value)) for name, value in model.metadata if name not in drop_metadata
        ]
        self.legacy_metadata = [self._bytes_buffer(value) for value in model.legacy_metadata_buffers]

    def _bytes_buffer(self, value: bytes) -> int:
        """One buffer per metadata bytes object, however many entries name it."""
        if id(value) not in self._metadata_buffer:
            self._metadata_buffer[id(value)] = self._new_buffer(memoryview(value))
        return self._metadata_buffer[id(value)]

    @property
    def metadata_buffers(self) -> set[int]:
        return set(self._metadata_buffer.values())

    def _new_buffer(self, data: memoryview) -> int:
        self.data.append(data)
        return len(self.data) - 1

    def _buffer(self, data: np.ndarray | None) -> int:
        """The buffer holding `data`: tensors whose arrays view the same memory the same way share one."""
        if data is None or data.nbytes == 0:
            return 0
        # The tensors keep their arrays alive for the whole write, so the address identifies the bytes.
        key = (data.__array_interface__["data"][0], data.shape, data.strides, data.dtype.str)
        if key not in self._buffer_of:
            self._buffer_of[key] = self._new_buffer(_bytes_of(data))
        return self._buffer_of[key]

    def _opcode(self, op: Op) -> int:
        key = (op.type, op.custom_code, op.version)
        if key not in self.opcodes:
            self.opcodes[key] = len(self.opcodes)
        return self.opcodes[key]

    def _subgraph(self, index: int, graph: Graph) -> Any:
        tensors = graph.tensors
        position = {id(t): i for i, t in enumerate(tensors)}
        self.tensor_index.append(position)
        sub = schema.SubGraphT()
        sub.name = graph.name
        sub.debugMetadataIndex = graph.debug_metadata_index
        sub.tensors = [self._tensor(t) for t in tensors]
        sub.inputs = [position[id(t)] for t in graph.inputs]
        sub.outputs = [position[id(t)] for t in graph.outputs]
        sub.operators = [self._op(graph, op, position) for op in graph.ops]
        return sub

    def _tensor(self, t: Tensor) -> Any:
        problem = data_problem(t)
        if problem:
            raise WriteError(problem)
        fb = schema.TensorT()
        fb.name = t.name
        fb.type = TENSOR_TYPE_CODES[t.dtype]
        fb.shape = None if t.shape is None else list(t.shape)
        fb.shapeSignature = None if t.shape_signature is None else list(t.shape_signature)
        fb.buffer = self._buffer(t.data)
        fb.quantization = None if t.quant is None else _quantization(t.quant)
        as_read = self._axis_as_read.get(id(t))
        if as_read is not None and as_read[0] is t.quant and t.quant.axis == 0:
            fb.quantization.quantizedDimension = as_read[1]
        fb.sparsity = None if t.sparsity is None else _sparsity(t.sparsity)
        fb.isVariable = t.is_variable
        fb.hasRank = t.has_rank
        if t.variant_subtypes:
            fb.variantTensors = []
            for v in t.variant_subtypes:
                sub = schema.VariantSubTypeT()
                sub.type, sub.hasRank = TENSOR_TYPE_CODES[v.dtype], v.has_rank
                sub.shape = None if v.shape is None else list(v.shape)
                fb.variantTensors.append(sub)
        return fb

    def _op(self, graph: Graph, op: Op, position: dict[int, int]) -> Any:
        if op.type not in BUILTIN_CODES:
            raise WriteError(f"{op.type} is an IR-only op: a pass must lower it before the model is written as TFLite")
        fb = schema.OperatorT()
        fb.opcodeIndex = self._opcode(op)
        fb.inputs = [-1 if t is None else position[id(t)] for t in graph.inputs_of(op)]
        fb.outputs = [position[id(t)] for t in graph.outputs_of(op)]
        intermediates = graph.intermediates_of(op)
        fb.intermediates = [position[id(t)] for t in intermediates] if intermediates else None
        if op.options_type is not None:
            union, code = options_union(op.options_type)
            table = self._options_table(op.options_type, op.options)
            if union == 1:
                fb.builtinOptionsType, fb.builtinOptions = code, table
            else:
                fb.builtinOptions2Type, fb.builtinOptions2 = code, table
        elif op.options:
            raise WriteError(f"{op.type} has options {sorted(op.options)} but no options_type naming their table")
        if op.custom_options is not None:
            fb.customOptions = np.frombuffer(op.custom_options, np.uint8)
        fb.customOptionsFormat = enum_members(schema.CustomOptionsFormat)[op.custom_options_format]
        fb.mutatingVariableInputs = list(op.mutating_variable_inputs) or None
        fb.debugMetadataIndex = op.debug_metadata_index
        return fb

    def _options_table(self, options_type: str, options: dict[str, Any]) -> Any:
        """One generated options object per distinct content (packing it twice writes it twice)."""
        key = (options_type, tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))
        try:
            table = self._options.get(key)
        except TypeError:  # an unhashable value (e.g. a numpy array): no sharing
            return dict_to_table(options_type, options)
        if table is None:
            table = self._options[key] = dict_to_table(options_type, options)
        return table

    def flatbuffer(self, buffers: Sequence[Any]) -> Any:
        m = schema.ModelT()
        m.version = self.model.version
        m.description = self.model.description
        m.operatorCodes = []
        for (op_type, custom, version), _ in sorted(self.opcodes.items(), key=lambda item: item[1]):
            code = schema.OperatorCodeT()
            code.builtinCode = BUILTIN_CODES[op_type]
            code.deprecatedBuiltinCode = min(code.builtinCode, schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
            code.customCode, code.version = custom, version
            m.operatorCodes.append(code)
        m.subgraphs = self.subgraphs
        m.buffers = list(buffers)
        m.metadataBuffer = self.legacy_metadata or None
        m.metadata = []
        for name, index in self.metadata:
            entry = schema.MetadataT()
            entry.name, entry.buffer = name, index
            m.metadata.append(entry)
        m.signatureDefs = [self._signature(s) for s in self.model.signatures]
        return m

    def _signature(self, s: Signature) -> Any:
        if not 0 <= s.subgraph_index < len(self.tensor_index):
            raise WriteError(f"signature '{s.key}' names subgraph {s.subgraph_index}, which does not exist")
        position = self.tensor_index[s.subgraph_index]
        graph = self.model.subgraphs[s.subgraph_index]

        def maps(entries: list[tuple[str, int]], ends: list[Tensor], kind: str) -> list[Any]:
            result = []
            for name, index in entries:
                if not 0 <= index < len(ends):
                    raise WriteError(
                        f"signature '{s.key}' {kind} '{name}' is {kind} {index}, but the graph has {len(ends)}"
                    )
                m = schema.TensorMapT()
                m.name, m.tensorIndex = name, position[id(ends[index])]
                result.append(m)
            return result

        fb = schema.SignatureDefT()
        fb.signatureKey, fb.subgraphIndex = s.key, s.subgraph_index
        fb.inputs = maps(s.inputs, graph.inputs, "input")
        fb.outputs = maps(s.outputs, graph.outputs, "output")
        return fb


def _quantization(q: Quantization) -> Any:
    fb = schema.QuantizationParametersT()
    fb.scale = q.scale if q.scale.size else None
    fb.zeroPoint = q.zero_point if q.zero_point.size else None
    fb.min, fb.max = q.min, q.max
    fb.quantizedDimension = q.axis
    if q.details_type is not None:
        fb.detailsType = enum_members(schema.QuantizationDetails)[q.details_type]
        fb.details = dict_to_table(q.details_type, q.details)
    return fb


_INDEX_VECTORS = {np.dtype("<i4"): "Int32Vector", np.dtype("<u2"): "Uint16Vector", np.dtype("u1"): "Uint8Vector"}


def _index_vector(values: np.ndarray | None) -> tuple[int, Any]:
    """A sparse index array as the schema's vector union; other integer types take the narrowest that fits."""
    if values is None:
        return 0, None
    if values.dtype not in _INDEX_VECTORS:
        if values.dtype.kind not in "iu" or (values.size and (values.min() < 0 or values.max() > 2**31 - 1)):
            raise WriteError(f"sparse index array of {values.dtype} does not fit uint8, uint16 or int32")
        top = int(values.max(initial=0))
        values = values.astype("u1" if top <= 255 else "<u2" if top <= 65535 else "<i4")
    name = _INDEX_VECTORS[values.dtype]
    vec = getattr(schema, name + "T")()
    vec.values = values
    return enum_members(schema.SparseIndexVector)[name], vec


def _dim(d: DimMetadata) -> Any:
    fb = schema.DimensionMetadataT()
    fb.format = enum_members(schema.DimensionType)[d.format]
    fb.denseSize = d.dense_size
    fb.arraySegmentsType, fb.arraySegments = _index_vector(d.segments)
    fb.arrayIndicesType, fb.arrayIndices = _index_vector(d.indices)
    return fb


def _sparsity(s: Sparsity) -> Any:
    fb = schema.SparsityParametersT()
    fb.traversalOrder = list(s.traversal_order)
    fb.blockMap = list(s.block_map) or None
    fb.dimMetadata = [_dim(d) for d in s.dim_metadata]
    return fb
