"""The flatbuffer decoder stays linear in the file size and exact on files the TF converter would never write."""

from __future__ import annotations

import re
import struct
import time

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from npupass.backends.tflite import serialize_tflite
from npupass.errors import ModelFormatError
from npupass.frontends.tflite import parse_tflite
from npupass.ir import DType, Graph, Model, Op, Tensor
from npupass.verify import LiteRTModel


def shared_tables_model(n: int) -> bytes:
    """n subgraph offsets -> one subgraph whose n tensor offsets -> one tensor: n*n tensors in O(n) bytes."""
    b = flatbuffers.Builder(1024)
    name = b.CreateString("t")
    schema.TensorStartShapeVector(b, 1)
    b.PrependInt32(1)
    shape = b.EndVector()
    schema.TensorStart(b)
    schema.TensorAddShape(b, shape)
    schema.TensorAddName(b, name)
    tensor = schema.TensorEnd(b)
    schema.SubGraphStartTensorsVector(b, n)
    for _ in range(n):
        b.PrependUOffsetTRelative(tensor)
    tensors = b.EndVector()
    schema.SubGraphStart(b)
    schema.SubGraphAddTensors(b, tensors)
    subgraph = schema.SubGraphEnd(b)
    schema.ModelStartSubgraphsVector(b, n)
    for _ in range(n):
        b.PrependUOffsetTRelative(subgraph)
    subgraphs = b.EndVector()
    schema.BufferStart(b)
    empty = schema.BufferEnd(b)
    schema.ModelStartBuffersVector(b, 1)
    b.PrependUOffsetTRelative(empty)
    buffers = b.EndVector()
    schema.ModelStart(b)
    schema.ModelAddVersion(b, 3)
    schema.ModelAddSubgraphs(b, subgraphs)
    schema.ModelAddBuffers(b, buffers)
    b.Finish(schema.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_shared_tables_cannot_blow_up_the_decoder() -> None:
    data = shared_tables_model(1000)  # ~8 KB describing a million tensors
    start = time.perf_counter()
    expected = (
        "corrupted TFLite flatbuffer (DecodeError: the file refers to the same tables or vectors over and over "
        "(shared or looping offsets))"
    )
    with pytest.raises(ModelFormatError, match=f"^{re.escape(expected)}$"):
        parse_tflite(data)
    assert time.perf_counter() - start < 2.0


def test_a_small_model_with_shared_tables_still_reads() -> None:
    model = parse_tflite(shared_tables_model(3))  # 3 x 3 is within the budget and is a valid model
    assert [len(g.tensors) for g in model.subgraphs] == [3, 3, 3]


def elementwise_model(activations: list[str]) -> Model:
    g = Graph("main")
    x = g.add_tensor(Tensor("x", DType.FLOAT32, (1, 4)))
    g.inputs = [x]
    for i, act in enumerate(activations):
        y = Tensor(f"y{i}", DType.FLOAT32, (1, 4))
        g.add_op(Op("ADD", {"fused_activation_function": act}, "AddOptions"), [x, x], [y])
        x = y
    g.outputs = [x]
    return Model([g])


def test_options_are_decoded_per_table_content() -> None:
    """Two option tables that share a vtable whose declared size is too small still decode apart."""
    data = bytearray(serialize_tflite(elementwise_model(["RELU", "RELU6"])))
    vtable = bytes(data).find(struct.pack("<HHH", 6, 5, 4))  # AddOptions: one int8 field at offset 4
    assert vtable > 0
    struct.pack_into("<H", data, vtable + 2, 4)  # declared size 4: the field lies past it
    LiteRTModel(bytes(data))  # LiteRT's verifier accepts this file
    ops = parse_tflite(bytes(data)).main.ops
    assert [op.options["fused_activation_function"] for op in ops] == ["RELU", "RELU6"]


def test_metadata_named_many_times_is_read_and_written_once() -> None:
    model = elementwise_model(["NONE"])
    blob = bytes(range(256)) * 400  # 100 KiB
    model.legacy_metadata_buffers = [blob] * 2000
    data = serialize_tflite(model)
    assert len(data) < 2 * len(blob) + 20_000  # one buffer, 2000 indices
    start = time.perf_counter()
    again = parse_tflite(data)
    assert time.perf_counter() - start < 1.0
    assert len(again.legacy_metadata_buffers) == 2000
    assert len({id(b) for b in again.legacy_metadata_buffers}) == 1 and again.legacy_metadata_buffers[0] == blob


def test_sparse_index_arrays_take_the_narrowest_schema_type() -> None:
    from npupass.ir import DimMetadata, Sparsity

    g = Graph("main")
    x = g.add_tensor(Tensor("x", DType.FLOAT32, (1, 4)))
    dense = np.array([[0, 1.5, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4], [0, 0, 5, 0]], np.float32)
    stored = dense[dense != 0]
    sparsity = Sparsity(
        traversal_order=(0, 1),
        dim_metadata=[
            DimMetadata("DENSE", 4),
            DimMetadata("SPARSE_CSR", segments=np.array([0, 1, 1, 3, 4], np.int64), indices=np.array([1, 0, 3, 2])),
        ],
    )
    w = Tensor("w", DType.FLOAT32, (4, 4), data=stored, sparsity=sparsity)
    y = Tensor("y", DType.FLOAT32, (1, 4))
    g.add_op(Op("FULLY_CONNECTED", {}, "FullyConnectedOptions"), [x, w, None], [y])
    g.inputs, g.outputs = [x], [y]
    again = parse_tflite(serialize_tflite(Model([g])))
    csr = next(t for t in again.main.tensors if t.name == "w").sparsity
    assert csr is not None
    assert csr.dim_metadata[1].segments.dtype == np.uint8 and csr.dim_metadata[1].segments.tolist() == [0, 1, 1, 3, 4]
    assert csr.dim_metadata[1].indices.tolist() == [1, 0, 3, 2]
