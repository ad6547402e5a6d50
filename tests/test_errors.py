"""Bad input ends in one clear line and exit code 2: never a traceback, a hang or a huge allocation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import flatbuffers
import pytest
from ai_edge_litert import schema_py_generated as schema
from conftest import MODELS

from npupass.cli import main
from npupass.errors import ModelFormatError, UnsupportedFeatureError
from npupass.frontends.tflite import parse_tflite


def repack(path: Path, edit: object) -> bytes:
    """The fixture at `path` with `edit(model_object)` applied, packed again."""
    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    edit(model)  # type: ignore[operator]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def cli_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert (
        cli_error(capsys, "info", str(tmp_path / "nope.tflite"))
        == f"npupass: error: {tmp_path / 'nope.tflite'}: no such file"
    )


def test_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli_error(capsys, "info", str(tmp_path)) == f"npupass: error: {tmp_path}: is a directory, not a model file"


def test_not_a_tflite_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a model\n")
    assert cli_error(capsys, "info", str(text)) == (
        f"npupass: error: {text}: not a TFLite file (no 'TFL3' identifier at byte 4)"
    )


def test_tiny_file() -> None:
    with pytest.raises(ModelFormatError, match=r"^not a TFLite file \(only 3 bytes\)$"):
        parse_tflite(b"abc")


@pytest.mark.parametrize("keep", [8, 100, 1000, 5000, 20000])
def test_truncated_file(keep: int) -> None:
    data = (MODELS / "cnn_float.tflite").read_bytes()[:keep]
    with pytest.raises(ModelFormatError, match=r"^corrupted TFLite"):
        parse_tflite(data)


def test_root_offset_past_the_end() -> None:
    data = bytearray((MODELS / "cnn_float.tflite").read_bytes())
    data[0:4] = (len(data) + 10).to_bytes(4, "little")
    with pytest.raises(
        ModelFormatError, match=r"^corrupted TFLite file: root table offset points past the end of the file$"
    ):
        parse_tflite(bytes(data))


def test_lying_buffer_offset() -> None:
    def edit(m: object) -> None:
        buf = next(b for b in m.buffers if b.offset > 1)  # type: ignore[attr-defined]
        buf.offset = 10**12

    data = repack(MODELS / "buffer_offset.tflite", edit)
    with pytest.raises(ModelFormatError, match=r"^buffer \d+ claims bytes 1000000000000\.\.\d+ of a \d+-byte file$"):
        parse_tflite(data)


def test_lying_shape_on_a_constant() -> None:
    def edit(m: object) -> None:
        t = next(t for t in m.subgraphs[0].tensors if t.buffer and m.buffers[t.buffer].data is not None)  # type: ignore[attr-defined]
        t.shape = [1 << 30, 1 << 30]

    with pytest.raises(
        ModelFormatError,
        match=r"buffer holds \d+ FLOAT32 values but shape \[1073741824, 1073741824\] needs 1152921504606846976$",
    ):
        parse_tflite(repack(MODELS / "cnn_float.tflite", edit))


def test_tensor_index_out_of_range() -> None:
    def edit(m: object) -> None:
        m.subgraphs[0].operators[0].inputs[0] = 9999  # type: ignore[attr-defined]

    with pytest.raises(ModelFormatError, match=r"^subgraph 0: operator 0 refers to tensor 9999, but there are \d+$"):
        parse_tflite(repack(MODELS / "cnn_float.tflite", edit))


def test_buffer_index_out_of_range() -> None:
    def edit(m: object) -> None:
        m.subgraphs[0].tensors[0].buffer = 4000  # type: ignore[attr-defined]

    with pytest.raises(ModelFormatError, match=r"^tensor '.*' refers to buffer 4000, but the file has \d+$"):
        parse_tflite(repack(MODELS / "cnn_float.tflite", edit))


def test_opcode_index_out_of_range() -> None:
    def edit(m: object) -> None:
        m.subgraphs[0].operators[0].opcodeIndex = 77  # type: ignore[attr-defined]

    with pytest.raises(ModelFormatError, match=r"^subgraph 0 operator 0 uses operator code 77, but there are \d+$"):
        parse_tflite(repack(MODELS / "cnn_float.tflite", edit))


def test_unknown_builtin_operator_is_an_unsupported_feature() -> None:
    def edit(m: object) -> None:
        m.operatorCodes[0].builtinCode = 5000  # type: ignore[attr-defined]

    with pytest.raises(
        UnsupportedFeatureError, match=r"^operator code 0 is builtin operator 5000, unknown to this schema$"
    ):
        parse_tflite(repack(MODELS / "cnn_float.tflite", edit))


def test_subgraph_reference_out_of_range() -> None:
    def edit(m: object) -> None:
        for op in m.subgraphs[0].operators:  # type: ignore[attr-defined]
            if hasattr(op.builtinOptions, "bodySubgraphIndex"):
                op.builtinOptions.bodySubgraphIndex = 42

    with pytest.raises(
        ModelFormatError, match=r"^subgraph 0: WHILE option body_subgraph_index = 42, but there are \d+ subgraphs$"
    ):
        parse_tflite(repack(MODELS / "control_flow.tflite", edit))


def test_cycle_is_reported_as_invalid_model() -> None:
    def edit(m: object) -> None:
        ops = m.subgraphs[0].operators  # type: ignore[attr-defined]
        ops[0].inputs[0] = ops[-1].outputs[0]

    with pytest.raises(ModelFormatError, match=r"^invalid model: subgraph 0: cycle through "):
        parse_tflite(repack(MODELS / "cnn_float.tflite", edit))


def test_convert_refuses_to_overwrite_its_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = tmp_path / "m.tflite"
    model.write_bytes((MODELS / "cnn_float.tflite").read_bytes())
    before = model.read_bytes()
    link = tmp_path / "link.tflite"
    link.symlink_to(model)
    for target in (model, link):
        assert cli_error(capsys, "convert", str(model), "-o", str(target)) == (
            f"npupass: error: refusing to overwrite the input model {model}; choose another -o path"
        )
    assert model.read_bytes() == before


def test_convert_into_a_missing_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "dir" / "out.tflite"
    assert cli_error(capsys, "convert", str(MODELS / "cnn_float.tflite"), "-o", str(out)) == (
        f"npupass: error: {out}: directory {out.parent} does not exist"
    )


def test_a_failed_convert_leaves_no_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes((MODELS / "cnn_float.tflite").read_bytes()[:5000])
    out = tmp_path / "out.tflite"
    assert cli_error(capsys, "convert", str(bad), "-o", str(out)).startswith(f"npupass: error: {bad}: corrupted TFLite")
    assert list(tmp_path.iterdir()) == [bad]


def test_command_line_errors_have_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"TFL3" * 100)
    proc = subprocess.run(
        [sys.executable, "-m", "npupass", "verify", str(bad), str(MODELS / "cnn_float.tflite")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("npupass: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_verify_refuses_a_lying_activation_shape(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    def edit(m: object) -> None:
        sub = m.subgraphs[0]  # type: ignore[attr-defined]
        sub.tensors[sub.outputs[0]].shape = [1, 1 << 20, 1 << 20, 10]

    lying = tmp_path / "lying.tflite"
    lying.write_bytes(repack(MODELS / "cnn_float.tflite", edit))
    assert cli_error(capsys, "verify", str(lying), str(lying)) == (  # the validator sees the lie at import
        "npupass: error: invalid model: SOFTMAX 'StatefulPartitionedCall_1:0': "
        "output [1,1048576,1048576,10] differs from input [1,10]"
    )
