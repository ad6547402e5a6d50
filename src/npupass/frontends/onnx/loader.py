"""Load and validate an ONNX file: checker, shape inference, external data kept inside the model's folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from npupass.errors import ModelFormatError, UnsupportedFeatureError

MIN_OPSET, MAX_OPSET = 11, 21


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def load_onnx(path: str | os.PathLike[str]) -> Any:
    """The checked, shape-inferred ModelProto of `path`; ModelFormatError for anything malformed."""
    import onnx

    p = Path(path)
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf and onnx raise many types on damaged input
        raise ModelFormatError(f"{p}: not a valid ONNX file ({_first_line(exc)})") from None
    if not model.HasField("graph"):
        raise ModelFormatError(f"{p}: not a valid ONNX file (no graph)")
    _check_names(model, p)
    _load_external_data(model, p)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # ValidationError, and UnicodeDecodeError on a corrupted name
        raise ModelFormatError(f"{p}: invalid ONNX model: {_first_line(exc)}") from None
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not MIN_OPSET <= opset <= MAX_OPSET:
        raise UnsupportedFeatureError(f"{p}: ONNX opset {opset}; npupass reads opsets {MIN_OPSET} to {MAX_OPSET}")
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise ModelFormatError(f"{p}: ONNX shape inference failed: {_first_line(exc)}") from None
    return model


def _check_names(model: Any, path: Path) -> None:
    """protobuf hands back bytes for a name that is not valid UTF-8: refuse those files up front."""
    g = model.graph
    names: list[Any] = [o.domain for o in model.opset_import]
    for node in g.node:
        names += [node.name, node.op_type, node.domain, *node.input, *node.output]
    for value in [*g.input, *g.output, *g.value_info, *g.initializer]:
        names.append(value.name)
    if any(not isinstance(name, str) for name in names):
        raise ModelFormatError(f"{path}: invalid ONNX model: a name is not valid UTF-8")


def _load_external_data(model: Any, path: Path) -> None:
    """Load tensors stored in side files, refusing any location outside the model's folder."""
    from onnx import TensorProto
    from onnx.external_data_helper import load_external_data_for_model

    base = path.parent.resolve()
    external = False
    for tensor in model.graph.initializer:
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        external = True
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (base / location).resolve()
        if not location or not target.is_relative_to(base):
            raise ModelFormatError(f"{path}: tensor '{tensor.name}' refers to data outside the model's folder")
        if not target.is_file():
            raise ModelFormatError(f"{path}: tensor '{tensor.name}': external data file {location} is missing")
    if external:
        try:
            load_external_data_for_model(model, str(base))
        except Exception as exc:
            raise ModelFormatError(f"{path}: cannot read external data: {_first_line(exc)}") from None
