"""Read -> write -> read is lossless on every fixture, structurally and numerically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import ALL_MODELS, MODELS, RUNNABLE_MODELS

from npupass.backends.tflite import serialize_tflite, write_tflite
from npupass.frontends.tflite import parse_tflite, read_tflite
from npupass.ir import check
from npupass.ir.compare import structural_differences
from npupass.verify import LiteRTModel, compare


def test_fixture_set_is_complete() -> None:
    expected = {
        "buffer_offset.tflite",
        "cnn_float.tflite",
        "cnn_int8.tflite",
        "cnn_int8_per_tensor.tflite",
        "control_flow.tflite",
        "custom_op.tflite",
        "mobilenet_v2_035_96_float.tflite",
        "mobilenet_v2_035_96_int8.tflite",
        "mobilenet_v3_small_int8.tflite",
        "sparse_fc_float.tflite",
        "sparse_fc_int8.tflite",
        "lstm_float.tflite",
        "variables.tflite",
    }
    assert expected <= set(ALL_MODELS)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_check_passes_on_every_fixture(name: str) -> None:
    model = read_tflite(MODELS / name)
    for graph in model.subgraphs:
        check(graph)


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("buffers", ["auto", "inline", "external"])
def test_round_trip_is_structurally_identical(name: str, buffers: str) -> None:
    original = read_tflite(MODELS / name)
    again = parse_tflite(serialize_tflite(original, buffers=buffers))
    if buffers == "inline" and original.buffer_storage == "external":  # the one intended change
        original.metadata = [(k, v) for k, v in original.metadata if k != "buffer_location"]
    assert structural_differences(original, again) == []
    expected_storage = original.buffer_storage if buffers == "auto" else buffers
    assert again.buffer_storage == expected_storage or not any(
        t.is_constant for g in again.subgraphs for t in g.tensors
    )


@pytest.mark.parametrize("name", RUNNABLE_MODELS)
@pytest.mark.parametrize("buffers", ["auto", "external"])
def test_round_trip_is_bit_exact_in_litert(name: str, buffers: str) -> None:
    data = (MODELS / name).read_bytes()
    written = serialize_tflite(parse_tflite(data), buffers=buffers)
    result = compare(LiteRTModel(data), LiteRTModel(written), samples=3, seed=7)
    assert result.problems == []
    assert result.bit_exact, result.to_json()


def test_custom_op_keeps_code_and_options() -> None:
    model = read_tflite(MODELS / "custom_op.tflite")
    customs = [op for op in model.main.ops if op.type == "CUSTOM"]
    assert [op.custom_code for op in customs] == ["ExtractImagePatches"]
    assert customs[0].custom_options  # flexbuffer attributes, kept byte for byte
    again = parse_tflite(serialize_tflite(model))
    assert [op.custom_options for op in again.main.ops if op.type == "CUSTOM"] == [customs[0].custom_options]


def test_metadata_survives() -> None:
    model = read_tflite(MODELS / "cnn_int8.tflite")
    names = [name for name, _ in model.metadata]
    assert "min_runtime_version" in names and "CONVERSION_METADATA" in names
    again = parse_tflite(serialize_tflite(model))
    assert again.metadata == model.metadata


def test_control_flow_keeps_subgraphs() -> None:
    model = read_tflite(MODELS / "control_flow.tflite")
    types = {op.type for g in model.subgraphs for op in g.ops}
    assert {"WHILE", "IF"} <= types
    assert len(model.subgraphs) >= 3


def test_constants_view_the_file_without_copying() -> None:
    buf = (MODELS / "mobilenet_v2_035_96_float.tflite").read_bytes()
    model = parse_tflite(buf)
    file_start = np.frombuffer(buf, np.uint8).__array_interface__["data"][0]
    constants = [t for t in model.main.tensors if t.data is not None and t.data.nbytes > 1024]
    assert constants
    for t in constants:
        address = t.data.__array_interface__["data"][0]
        assert file_start <= address < file_start + len(buf), t.name
        assert not t.data.flags.writeable


def test_external_buffers_are_read_from_after_the_flatbuffer() -> None:
    model = read_tflite(MODELS / "buffer_offset.tflite")
    assert model.buffer_storage == "external"
    assert any(t.data is not None for t in model.main.tensors)


def test_written_buffers_are_16_byte_aligned(tmp_path: Path) -> None:
    from ai_edge_litert import schema_py_generated as schema

    for buffers in ("inline", "external"):
        out = tmp_path / f"{buffers}.tflite"
        write_tflite(read_tflite(MODELS / "mobilenet_v2_035_96_float.tflite"), out, buffers=buffers)
        data = out.read_bytes()
        fb = schema.Model.GetRootAs(data, 0)
        base = np.frombuffer(data, np.uint8).__array_interface__["data"][0]
        for i in range(fb.BuffersLength()):
            b = fb.Buffers(i)
            if b.DataLength():
                assert (b.DataAsNumpy().__array_interface__["data"][0] - base) % 16 == 0
            if b.Offset() > 1:
                assert b.Offset() % 16 == 0 and b.Offset() + b.Size() <= len(data)


def test_shared_buffers_stay_shared() -> None:
    from npupass.ir import Tensor

    model = read_tflite(MODELS / "cnn_float.tflite")
    t = max((t for t in model.main.tensors if t.data is not None), key=lambda t: t.data.nbytes)
    assert t.data.nbytes > 1000
    size_before = len(serialize_tflite(model))
    # A second constant tensor viewing the same array is written as a second tensor on the same buffer.
    twin = Tensor(t.name + "_twin", t.dtype, t.shape, data=t.data)
    model.main.add_tensor(twin)
    model.main.outputs.append(twin)
    size_after = len(serialize_tflite(model))
    assert 0 < size_after - size_before < 200


def test_files_are_mapped_not_copied(tmp_path: Path) -> None:
    path = tmp_path / "m.tflite"
    path.write_bytes((MODELS / "mobilenet_v2_035_96_float.tflite").read_bytes())
    model = read_tflite(path)
    weights = max((t for t in model.main.tensors if t.data is not None), key=lambda t: t.data.nbytes)
    assert not weights.data.flags.writeable
    assert weights.data.base is not None  # a view (of the mapping), not an owned copy
    with pytest.raises(ValueError, match="read-only"):
        weights.data[...] = 0
    assert path.read_bytes() == (MODELS / "mobilenet_v2_035_96_float.tflite").read_bytes()


def test_inlining_drops_the_stale_buffer_location_entry() -> None:
    model = read_tflite(MODELS / "buffer_offset.tflite")
    assert model.metadata_entry("buffer_location") == b"outside flatbuffers"
    inline = parse_tflite(serialize_tflite(model, buffers="inline"))
    assert inline.buffer_storage == "inline" and inline.metadata_entry("buffer_location") is None
    again = parse_tflite(serialize_tflite(model))
    assert again.metadata_entry("buffer_location") == b"outside flatbuffers"


def test_empty_file_is_not_a_model(tmp_path: Path) -> None:
    from npupass.errors import ModelFormatError

    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    with pytest.raises(ModelFormatError, match=r"empty.tflite: not a TFLite file \(only 0 bytes\)$"):
        read_tflite(empty)


def test_signatures_follow_a_rewired_graph_output() -> None:
    from ai_edge_litert.interpreter import Interpreter

    from npupass.ir import Op, Tensor

    model = read_tflite(MODELS / "cnn_float.tflite")
    graph = model.main
    out = graph.outputs[0]
    negated = Tensor(out.name + "_neg", out.dtype, out.shape)
    graph.replace_uses(out, negated)
    graph.add_op(Op("NEG"), [out], [negated])
    assert model.signatures[0].output_tensors(model) == [("output_0", negated)]
    interpreter = Interpreter(model_content=serialize_tflite(model))
    interpreter.allocate_tensors()
    x = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    direct = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    via_signature = interpreter.get_signature_runner("serving_default")(image=x)["output_0"]
    assert np.array_equal(direct, via_signature) and direct.max() <= 0  # softmax, negated


def test_sparse_weights_keep_their_encoding() -> None:
    model = read_tflite(MODELS / "sparse_fc_float.tflite")
    (sparse,) = [t for t in model.main.tensors if t.sparsity is not None]
    assert sparse.shape == (128, 64) and sparse.data is not None and sparse.data.shape == (1697,)
    dims = sparse.sparsity.dim_metadata
    assert [d.format for d in dims] == ["DENSE", "SPARSE_CSR"]
    assert dims[1].segments is not None and dims[1].segments.dtype == np.uint16
    assert dims[1].indices is not None and dims[1].indices.dtype == np.uint8
    assert [op.type for op in model.main.ops].count("DENSIFY") == 1


def test_lstm_keeps_omitted_inputs_and_variable_state() -> None:
    model = read_tflite(MODELS / "lstm_float.tflite")
    (lstm,) = [op for op in model.main.ops if op.type == "UNIDIRECTIONAL_SEQUENCE_LSTM"]
    inputs = model.main.inputs_of(lstm)
    assert len(inputs) == 24 and lstm.omitted_inputs == {9, 10, 11, 16, 17, 20, 21, 22, 23}
    assert [t.is_variable for t in inputs if t is not None].count(True) == 2


def test_remove_dead_keeps_variable_updates() -> None:
    model = read_tflite(MODELS / "variables.tflite")
    before = [[op.type for op in g.ops] for g in model.subgraphs]
    assert sum(g.remove_dead() for g in model.subgraphs) == 0
    assert [[op.type for op in g.ops] for g in model.subgraphs] == before


def test_external_buffers_keep_metadata_inside_the_flatbuffer() -> None:
    from ai_edge_litert import schema_py_generated as schema

    data = serialize_tflite(read_tflite(MODELS / "cnn_int8.tflite"), buffers="external")
    fb = schema.ModelT.InitFromPackedBuf(data, 0)
    meta = {m.name.decode(): fb.buffers[m.buffer] for m in fb.metadata}
    assert bytes(meta["min_runtime_version"].data).rstrip(b"\0") == b"1.15.0"
    assert all(b.offset == 0 and b.data is not None for b in meta.values())
    weights = [b for b in fb.buffers if b.offset > 1]
    assert weights and all(b.data is None and b.size > 0 for b in weights)
