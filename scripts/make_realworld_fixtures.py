"""Build the fixtures for the defect classes found on real third-party TFLite models (issue 15).

Each is the TensorFlow-made ``tests/models/cnn_int8.tflite`` changed the way a class of shipped models is:

* ``rank1_bias_axis3_int8.tflite`` - the depthwise conv's per-channel bias says quantized_dimension 3
  (copied from its 4-D weight by older converters, as in TFLM's person-detection model). LiteRT refuses
  it; Vela and TFLM read the bias per element.
* ``appended_zip_int8.tflite`` - a zip with ``labels.txt`` appended after the flatbuffer, the way TFLite
  Support's metadata populator stores associated files (``zipfile`` in append mode on the model bytes).
* ``unnamed_tensors_int8.tflite`` - every tensor name empty (as in TFLM's keyword_scrambled models).

Usage::

    .venv/bin/python scripts/make_realworld_fixtures.py [--out tests/models]

Needs only the installed runtime (ai-edge-litert's schema and flatbuffers). Re-running gives
byte-identical files.
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path
from typing import Any

import flatbuffers
from ai_edge_litert import schema_py_generated as schema

MODELS = Path(__file__).parent.parent / "tests" / "models"
SOURCE = MODELS / "cnn_int8.tflite"
LABELS = "".join(f"class_{i}\n" for i in range(10)).encode()


def _unpack(data: bytes) -> Any:
    return schema.ModelT.InitFromPackedBuf(data, 0)


def _pack(model: Any) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def rank1_bias_axis3(data: bytes) -> bytes:
    """Every depthwise conv's per-channel bias says quantized_dimension 3, as its weight does."""
    model = _unpack(data)
    codes = model.operatorCodes
    changed = 0
    for sub in model.subgraphs:
        for op in sub.operators:
            code = codes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) != schema.BuiltinOperator.DEPTHWISE_CONV_2D:
                continue
            bias = sub.tensors[op.inputs[2]]
            assert len(bias.shape) == 1 and len(bias.quantization.scale) == bias.shape[0] > 1
            bias.quantization.quantizedDimension = 3
            changed += 1
    assert changed, "no depthwise conv with a per-channel bias"
    return _pack(model)


def appended_zip(data: bytes) -> bytes:
    """The model with a zip of labels.txt after it, appended as TFLite Support's populator does."""
    buffer = io.BytesIO(data)
    with zipfile.ZipFile(buffer, "a") as archive:
        info = zipfile.ZipInfo("labels.txt", date_time=(2020, 1, 1, 0, 0, 0))
        archive.writestr(info, LABELS)
    return buffer.getvalue()


def unnamed_tensors(data: bytes) -> bytes:
    model = _unpack(data)
    for sub in model.subgraphs:
        for t in sub.tensors:
            t.name = ""
    model.signatureDefs = None  # their entries name tensors
    return _pack(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=MODELS)
    args = parser.parse_args()
    data = SOURCE.read_bytes()
    for name, build in (
        ("rank1_bias_axis3_int8.tflite", rank1_bias_axis3),
        ("appended_zip_int8.tflite", appended_zip),
        ("unnamed_tensors_int8.tflite", unnamed_tensors),
    ):
        out = args.out / name
        out.write_bytes(build(data))
        print(f"wrote {out} ({out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
