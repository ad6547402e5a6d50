"""TFLite reader: a .tflite file into the IR, losslessly.

Constant data becomes read-only numpy views of the file's bytes (no copy), whether the buffers sit
inside the flatbuffer or after it (Buffer.offset/size). Every index and size the file states is
checked before use, so a corrupted file ends in ModelFormatError, never a crash or a huge allocation.
"""

from __future__ import annotations

import mmap
import os
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from npupass.errors import IRCheckError, ModelFormatError, UnsupportedFeatureError
from npupass.flatbuf import STRUCTS, Reader, Table, fields_of, gc_paused
from npupass.ir.check import check
from npupass.ir.graph import Graph, Model, Op, Signature, Tensor
from npupass.ir.ops import BUILTIN_NAMES, subgraph_references
from npupass.ir.types import DimMetadata, DType, Quantization, Sparsity, VariantSubtype
from npupass.tflite_schema import OPTIONS2_TYPES, OPTIONS_TYPES, TENSOR_TYPES, enum_names, table_to_dict

IDENTIFIER = b"TFL3"
_DIMENSION_TYPES = enum_names(schema.DimensionType)
_DETAILS_TYPES = enum_names(schema.QuantizationDetails)
_CUSTOM_FORMATS = enum_names(schema.CustomOptionsFormat)


def read_tflite(source: str | os.PathLike[str] | bytes) -> Model:
    """Read a TFLite model from a path or from the file's bytes.

    A file is memory-mapped read-only: constants view the mapping, so a 100 MB model costs
    no copy and only the pages something reads become resident.
    """
    if isinstance(source, bytes):
        return parse_tflite(source)
    path = Path(source)
    try:
        with path.open("rb") as f:
            try:
                buf: bytes | mmap.mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (ValueError, OSError):  # empty files and pipes cannot be mapped
                buf = f.read()
    except IsADirectoryError:
        raise ModelFormatError(f"{path}: is a directory, not a model file") from None
    except OSError as exc:
        raise ModelFormatError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return parse_tflite(buf)
    except (ModelFormatError, UnsupportedFeatureError) as exc:
        raise type(exc)(f"{path}: {exc}") from None


def parse_tflite(buf: bytes | mmap.mmap) -> Model:
    """The IR of a TFLite file's bytes. The returned constants view `buf`."""
    if len(buf) < 8:
        raise ModelFormatError(f"not a TFLite file (only {len(buf)} bytes)")
    if buf[4:8] != IDENTIFIER:
        raise ModelFormatError("not a TFLite file (no 'TFL3' identifier at byte 4)")
    if int.from_bytes(buf[:4], "little") >= len(buf):
        raise ModelFormatError("corrupted TFLite file: root table offset points past the end of the file")
    with gc_paused():
        try:
            return _Importer(buf).model()
        except (ModelFormatError, UnsupportedFeatureError):
            raise
        except Exception as exc:  # DecodeError, or whatever the generated decoders raise on corrupt tables
            raise ModelFormatError(f"corrupted TFLite flatbuffer ({type(exc).__name__}: {exc})") from None


def _text(value: bytes | None, what: str) -> str:
    if value is None:
        return ""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelFormatError(f"{what} is not valid UTF-8") from None


def _ints(values: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


class _Fields:
    """Named access to one schema table's fields (slots and defaults from the generated code)."""

    def __init__(self, table: str) -> None:
        spec = fields_of(schema, table)
        self.slots = {name: slot for name, (slot, _, _) in spec.items()}
        self.scalars = {
            name: (slot, STRUCTS[kind], default) for name, (slot, kind, default) in spec.items() if kind in STRUCTS
        }

    def slot(self, name: str) -> int:
        return self.slots[name]

    def get(self, t: Table, name: str) -> Any:
        return t.scalar(*self.scalars[name])


_MODEL, _SUBGRAPH, _TENSOR, _OPERATOR = _Fields("Model"), _Fields("SubGraph"), _Fields("Tensor"), _Fields("Operator")
_OPCODE, _BUFFER, _QUANT = _Fields("OperatorCode"), _Fields("Buffer"), _Fields("QuantizationParameters")
_METADATA, _SIGNATURE, _TENSOR_MAP = _Fields("Metadata"), _Fields("SignatureDef"), _Fields("TensorMap")
_I32, _I64, _F32 = np.dtype("<i4"), np.dtype("<i8"), np.dtype("<f4")


def _generated(table: str, t: Table) -> Any:
    """The generated object-API value (`<table>T`) of a table, for the rarely used tables.

    What it decoded is charged to the reader's budget like everything else.
    """
    accessor = getattr(schema, table)()
    accessor.Init(t.reader.buf, t.pos)
    value = getattr(schema, table + "T").InitFromObj(accessor)
    t.reader.charge(_decoded_size(value))
    return value


def _decoded_size(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (list, tuple)):
        return 4 + sum(_decoded_size(v) for v in value)
    if isinstance(value, (bytes, str)):
        return 4 + len(value)
    if hasattr(value, "__dict__"):
        return 4 + sum(_decoded_size(v) for v in vars(value).values())
    return 1


@cache
def _scalar_field_sizes(table: str) -> tuple[int, ...] | None:
    """Byte size of each slot of a table made only of scalars; None when a field is an offset."""
    fields = fields_of(schema, table).values()
    if any(kind not in STRUCTS for _, kind, _ in fields):
        return None
    sizes = dict((slot, STRUCTS[kind].size) for slot, kind, _ in fields)
    return tuple(sizes.get(slot, 8) for slot in range(max(sizes, default=-1) + 1))


class _Importer:
    def __init__(self, buf: bytes | mmap.mmap) -> None:
        self.buf = buf
        self.root = Reader(buf).root()
        self.external = False
        self.buffers_end = 0  # where the last external buffer ends
        self.buffers = [self._buffer(i, b) for i, b in enumerate(self.root.tables(_MODEL.slot("Buffers")))]
        self._options_cache: dict[tuple[str, bytes], dict[str, Any]] = {}
        self._metadata_bytes: dict[int, bytes] = {}

    def model(self) -> Model:
        root = self.root
        if root.has(_MODEL.slot("ExternalBuffers")) or root.has(_MODEL.slot("ExternalBufferGroups")):
            raise UnsupportedFeatureError("external weight files (external buffer groups) are not supported")
        subs = root.tables(_MODEL.slot("Subgraphs"))
        if not subs:
            raise ModelFormatError("the model has no subgraphs")
        self.opcodes = [self._opcode(i, c) for i, c in enumerate(root.tables(_MODEL.slot("OperatorCodes")))]
        graphs: list[Graph] = []
        tensors: list[list[Tensor]] = []
        for index, sub in enumerate(subs):
            graph, sub_tensors = self._subgraph(index, sub)
            graphs.append(graph)
            tensors.append(sub_tensors)
        self._check_subgraph_references(graphs)
        description = root.string(_MODEL.slot("Description"))
        legacy = root.array(_MODEL.slot("MetadataBuffer"), _I32)
        model = Model(
            subgraphs=graphs,
            signatures=[self._signature(s, graphs, tensors) for s in root.tables(_MODEL.slot("SignatureDefs"))],
            metadata=[
                (
                    _text(m.string(_METADATA.slot("Name")), "metadata name"),
                    self._metadata(_METADATA.get(m, "Buffer")),
                )
                for m in root.tables(_MODEL.slot("Metadata"))
            ],
            description=None if description is None else _text(description, "model description"),
            version=_MODEL.get(root, "Version"),
            legacy_metadata_buffers=[self._metadata(int(b)) for b in (legacy if legacy is not None else [])],
            buffer_storage="external" if self.external else "inline",
            appended=self._appended(),
            quant_axis_as_read=[fix for graph in graphs for fix in _rank1_axis_fixes(graph)],
        )
        for index, graph in enumerate(graphs):
            graph.rename_twins()  # the IR keeps names unique; a file may repeat them
            try:
                check(graph)
            except IRCheckError as exc:
                raise ModelFormatError(f"invalid model: subgraph {index}: {exc}") from None
        return model

    def _appended(self) -> bytes:
        """The bytes after everything the flatbuffer refers to (read last, once all of it was read).

        Zero bytes right after it are alignment padding, and fewer than 16 other bytes are taken for
        builder leftovers (old converters leave unreferenced vtables at the end), unless they are a zip.
        """
        end = max(self.root.reader.end, self.buffers_end)
        tail = self.buf[end:]
        start = len(tail) - len(tail.lstrip(b"\0"))
        appended = bytes(tail[start:])
        if len(appended) < 16 and not appended.startswith(b"PK"):
            return b""
        return appended

    # --- buffers ------------------------------------------------------------------------------
    def _buffer(self, index: int, b: Table) -> np.ndarray | None:
        offset, size = _BUFFER.get(b, "Offset"), _BUFFER.get(b, "Size")
        if offset > 1:
            if offset + size > len(self.buf):
                raise ModelFormatError(
                    f"buffer {index} claims bytes {offset}..{offset + size} of a {len(self.buf)}-byte file"
                )
            self.external = True
            self.buffers_end = max(self.buffers_end, offset + size)
            return np.frombuffer(self.buf, np.uint8, count=size, offset=offset) if size else None
        data = b.array(_BUFFER.slot("Data"), np.dtype(np.uint8))
        return data if data is not None and data.size else None

    def _buffer_at(self, index: int, what: str) -> np.ndarray | None:
        if not 0 <= index < len(self.buffers):
            raise ModelFormatError(f"{what} refers to buffer {index}, but the file has {len(self.buffers)}")
        return self.buffers[index]

    def _metadata(self, index: int) -> bytes:
        """The bytes of buffer `index`, copied once however many entries name it."""
        if index not in self._metadata_bytes:
            data = self._buffer_at(index, "metadata")
            self._metadata_bytes[index] = b"" if data is None else data.tobytes()
        return self._metadata_bytes[index]

    # --- operator codes -----------------------------------------------------------------------
    def _opcode(self, index: int, code: Table) -> tuple[str, int, str | None]:
        builtin = max(_OPCODE.get(code, "BuiltinCode"), _OPCODE.get(code, "DeprecatedBuiltinCode"))
        name = BUILTIN_NAMES.get(builtin)
        if name is None:
            raise UnsupportedFeatureError(
                f"operator code {index} is builtin operator {builtin}, unknown to this schema"
            )
        custom = code.string(_OPCODE.slot("CustomCode"))
        custom_code = None if custom is None else _text(custom, f"custom code of operator code {index}")
        return name, _OPCODE.get(code, "Version"), custom_code

    # --- subgraphs ----------------------------------------------------------------------------
    def _subgraph(self, index: int, sub: Table) -> tuple[Graph, list[Tensor]]:
        graph = Graph(_text(sub.string(_SUBGRAPH.slot("Name")), f"subgraph {index} name"))
        graph.debug_metadata_index = _SUBGRAPH.get(sub, "DebugMetadataIndex")
        tensors = [
            graph.add_tensor(self._tensor(index, i, t)) for i, t in enumerate(sub.tables(_SUBGRAPH.slot("Tensors")))
        ]

        def tensor_at(i: int, what: str) -> Tensor:
            if not 0 <= i < len(tensors):
                raise ModelFormatError(f"subgraph {index}: {what} refers to tensor {i}, but there are {len(tensors)}")
            return tensors[i]

        def indices(t: Table, slot: int) -> list[int]:
            values = t.array(slot, _I32)
            return [] if values is None else values.tolist()

        in_slot, out_slot, inter_slot = (_OPERATOR.slot(n) for n in ("Inputs", "Outputs", "Intermediates"))
        for op_index, fb_op in enumerate(sub.tables(_SUBGRAPH.slot("Operators"))):
            what = f"operator {op_index}"
            op = self._op(index, op_index, fb_op)
            inputs = [None if i == -1 else tensor_at(i, what) for i in indices(fb_op, in_slot)]
            outputs = [tensor_at(i, what) for i in indices(fb_op, out_slot)]
            inter = [tensor_at(i, what) for i in indices(fb_op, inter_slot)]
            for t in outputs:
                if graph.nx.in_degree(t):
                    raise ModelFormatError(f"subgraph {index}: tensor '{t.name}' is written by two operators")
            graph.add_op(op, inputs, outputs, inter)
        graph.inputs = [tensor_at(i, "graph input") for i in indices(sub, _SUBGRAPH.slot("Inputs"))]
        graph.outputs = [tensor_at(i, "graph output") for i in indices(sub, _SUBGRAPH.slot("Outputs"))]
        return graph, tensors

    def _tensor(self, sub: int, index: int, t: Table) -> Tensor:
        name = _text(t.string(_TENSOR.slot("Name")), f"subgraph {sub} tensor {index} name")
        type_code = _TENSOR.get(t, "Type")
        if type_code not in TENSOR_TYPES:
            raise UnsupportedFeatureError(f"tensor '{name}' has element type {type_code}, unknown to this schema")
        if _TENSOR.get(t, "ExternalBuffer"):
            raise UnsupportedFeatureError(f"tensor '{name}' uses an external weight file (not supported)")
        dtype = TENSOR_TYPES[type_code]
        raw_shape = t.array(_TENSOR.slot("Shape"), _I32)
        shape = None if raw_shape is None else _ints(raw_shape)
        if shape is not None and any(d < 0 for d in shape):
            raise ModelFormatError(f"tensor '{name}' has a negative dimension in shape {list(shape)}")
        signature = t.array(_TENSOR.slot("ShapeSignature"), _I32)
        sparse_table = t.table(_TENSOR.slot("Sparsity"))
        sparsity = None if sparse_table is None else _sparsity(_generated("SparsityParameters", sparse_table))
        raw = self._buffer_at(_TENSOR.get(t, "Buffer"), f"tensor '{name}'")
        quant_table = t.table(_TENSOR.slot("Quantization"))
        variants = t.tables(_TENSOR.slot("VariantTensors"))
        return Tensor(
            name=name,
            dtype=dtype,
            shape=shape,
            data=None if raw is None else _typed(raw, name, dtype, shape, sparse=sparsity is not None),
            quant=None if quant_table is None else _quantization(quant_table),
            shape_signature=None if signature is None else _ints(signature),
            sparsity=sparsity,
            is_variable=bool(_TENSOR.get(t, "IsVariable")),
            has_rank=bool(_TENSOR.get(t, "HasRank")),
            variant_subtypes=[_variant(_generated("VariantSubType", v)) for v in variants],
        )

    def _options(self, table: str, t: Table) -> dict[str, Any]:
        """The options dict of an options table; tables of scalars only are decoded once per content."""
        sizes = _scalar_field_sizes(table)
        if sizes is None:
            return table_to_dict(table, _generated(table, t))
        key = (table, t.content_key(sizes))
        cached = self._options_cache.get(key)
        if cached is None:
            cached = self._options_cache[key] = table_to_dict(table, _generated(table, t))
        return dict(cached)

    def _op(self, sub: int, index: int, fb_op: Table) -> Op:
        where = f"subgraph {sub} operator {index}"
        opcode = _OPERATOR.get(fb_op, "OpcodeIndex")
        if not 0 <= opcode < len(self.opcodes):
            raise ModelFormatError(f"{where} uses operator code {opcode}, but there are {len(self.opcodes)}")
        op_type, version, custom_code = self.opcodes[opcode]
        options_type, options = None, {}
        for kind_field, table_field, names in (
            ("BuiltinOptionsType", "BuiltinOptions", OPTIONS_TYPES),
            ("BuiltinOptions2Type", "BuiltinOptions2", OPTIONS2_TYPES),
        ):
            kind = _OPERATOR.get(fb_op, kind_field)
            if kind == 0:
                continue
            if options_type is not None:
                raise UnsupportedFeatureError(f"{where} ({op_type}) has two options tables")
            table = fb_op.table(_OPERATOR.slot(table_field))
            if kind not in names or table is None:
                raise UnsupportedFeatureError(f"{where} ({op_type}) has options of type {kind}, unknown to this schema")
            options_type = names[kind]
            options = self._options(options_type, table)
        custom_options = None
        large_size = _OPERATOR.get(fb_op, "LargeCustomOptionsSize")
        if large_size > 0:
            start = _OPERATOR.get(fb_op, "LargeCustomOptionsOffset")
            if start + large_size > len(self.buf):
                raise ModelFormatError(
                    f"{where}: custom options claim bytes {start}..{start + large_size} past the file end"
                )
            custom_options = self.buf[start : start + large_size]
        else:
            raw = fb_op.array(_OPERATOR.slot("CustomOptions"), np.dtype(np.uint8))
            custom_options = None if raw is None else raw.tobytes()
        custom_format = _OPERATOR.get(fb_op, "CustomOptionsFormat")
        if custom_format not in _CUSTOM_FORMATS:
            raise UnsupportedFeatureError(f"{where}: unknown custom options format {custom_format}")
        mutating = fb_op.array(_OPERATOR.slot("MutatingVariableInputs"), np.dtype(np.bool_))
        return Op(
            type=op_type,
            options=options,
            options_type=options_type,
            version=version,
            custom_code=custom_code,
            custom_options=custom_options,
            custom_options_format=_CUSTOM_FORMATS[custom_format],
            mutating_variable_inputs=[] if mutating is None else [bool(v) for v in mutating],
            debug_metadata_index=_OPERATOR.get(fb_op, "DebugMetadataIndex"),
        )

    def _check_subgraph_references(self, graphs: list[Graph]) -> None:
        for index, graph in enumerate(graphs):
            for op in graph.iter_ops():
                for key, target in subgraph_references(op):
                    if not 0 <= target < len(graphs):
                        raise ModelFormatError(
                            f"subgraph {index}: {op.type} option {key} = {op.options[key]}, "
                            f"but there are {len(graphs)} subgraphs"
                        )

    def _signature(self, s: Table, graphs: list[Graph], tensors: list[list[Tensor]]) -> Signature:
        key = _text(s.string(_SIGNATURE.slot("SignatureKey")), "signature key")
        sub_index = _SIGNATURE.get(s, "SubgraphIndex")
        if not 0 <= sub_index < len(tensors):
            raise ModelFormatError(f"signature '{key}' refers to subgraph {sub_index}, but there are {len(tensors)}")
        sub = tensors[sub_index]

        def entries(slot: int, ends: list[Tensor], kind: str) -> list[tuple[str, int]]:
            result = []
            for m in s.tables(slot):
                index = _TENSOR_MAP.get(m, "TensorIndex")
                if not 0 <= index < len(sub):
                    raise ModelFormatError(f"signature '{key}' refers to tensor {index}, but there are {len(sub)}")
                name = _text(m.string(_TENSOR_MAP.slot("Name")), f"signature '{key}' entry name")
                position = next((i for i, t in enumerate(ends) if t is sub[index]), None)
                if position is None:
                    raise UnsupportedFeatureError(
                        f"signature '{key}' {kind} '{name}' is tensor '{sub[index].name}', not a subgraph {kind}"
                    )
                result.append((name, position))
            return result

        graph = graphs[sub_index]
        return Signature(
            key,
            sub_index,
            entries(_SIGNATURE.slot("Inputs"), graph.inputs, "input"),
            entries(_SIGNATURE.slot("Outputs"), graph.outputs, "output"),
        )


def _seq(values: Any) -> Any:
    return () if values is None else values


def _typed(raw: np.ndarray, name: str, dtype: DType, shape: tuple[int, ...] | None, sparse: bool) -> np.ndarray:
    """The tensor's data as a typed read-only view of its buffer bytes."""
    npdt = dtype.numpy
    if npdt is None:
        return raw  # packed or variable-size elements: keep the bytes
    if raw.nbytes % npdt.itemsize:
        raise ModelFormatError(f"tensor '{name}': buffer of {raw.nbytes} bytes is not a whole number of {dtype}")
    data = raw.view(npdt)
    if sparse or shape is None:
        return data
    count = 1
    for d in shape:
        count *= d
    if count != data.size:
        raise ModelFormatError(
            f"tensor '{name}': buffer holds {data.size} {dtype} values but shape {list(shape)} needs {count}"
        )
    return data.reshape(shape)


def _quantization(q: Table) -> Quantization | None:
    scale = q.array(_QUANT.slot("Scale"), _F32)
    zero_point = q.array(_QUANT.slot("ZeroPoint"), _I64)
    low, high = q.array(_QUANT.slot("Min"), _F32), q.array(_QUANT.slot("Max"), _F32)
    details_code = _QUANT.get(q, "DetailsType")
    no_arrays = all(a is None or not a.size for a in (scale, zero_point, low, high))
    if no_arrays and not details_code:
        return None
    details_type = None
    details: dict[str, Any] = {}
    if details_code:
        details_type = _DETAILS_TYPES.get(details_code)
        table = q.table(_QUANT.slot("Details"))
        if details_type is None or table is None:
            raise UnsupportedFeatureError(f"quantization details of type {details_code} are unknown to this schema")
        details = table_to_dict(details_type, _generated(details_type, table))
    return Quantization(
        scale=np.empty(0, np.float32) if scale is None else scale,
        zero_point=np.empty(0, np.int64) if zero_point is None else zero_point,
        axis=_QUANT.get(q, "QuantizedDimension"),
        min=low,
        max=high,
        details_type=details_type,
        details=details,
    )


def _rank1_axis_fixes(graph: Graph) -> list[tuple[Tensor, Quantization, int]]:
    """Read a rank-1 per-channel tensor's quantized axis as 0 when its scales match its only dimension.

    Older converters copied the 4-D weight's axis 3 onto the bias; Vela and TFLM read such a bias per
    element, so the only reading that makes sense is axis 0.
    """
    fixes = []
    for t in graph.tensors:
        q = t.quant
        rank1 = t.shape is not None and len(t.shape) == 1
        if q is not None and q.per_axis and rank1 and q.axis != 0 and q.scale.size == t.shape[0]:  # type: ignore[index]
            fixes.append((t, q, q.axis))
            q.axis = 0
    return fixes


def _variant(v: Any) -> VariantSubtype:
    if v.type not in TENSOR_TYPES:
        raise UnsupportedFeatureError(f"variant subtype has element type {v.type}, unknown to this schema")
    return VariantSubtype(TENSOR_TYPES[v.type], None if v.shape is None else _ints(v.shape), bool(v.hasRank))


def _sparsity(s: Any) -> Sparsity:
    dims = []
    for d in s.dimMetadata or []:
        if d.format not in _DIMENSION_TYPES:
            raise ModelFormatError(f"unknown sparse dimension format {d.format}")
        dims.append(
            DimMetadata(
                format=_DIMENSION_TYPES[d.format],
                dense_size=d.denseSize,
                segments=None if d.arraySegments is None else _index_vector(d.arraySegments),
                indices=None if d.arrayIndices is None else _index_vector(d.arrayIndices),
            )
        )
    return Sparsity(
        traversal_order=_ints(_seq(s.traversalOrder)),
        block_map=_ints(_seq(s.blockMap)),
        dim_metadata=dims,
    )


_INDEX_DTYPES = {"Int32VectorT": "<i4", "Uint16VectorT": "<u2", "Uint8VectorT": "u1"}


def _index_vector(v: Any) -> np.ndarray:
    values = np.asarray(v.values if v.values is not None else [], dtype=_INDEX_DTYPES[type(v).__name__])
    values.flags.writeable = False
    return values
