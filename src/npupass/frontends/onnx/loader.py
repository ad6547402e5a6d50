"""Load and validate an ONNX file: checker, shape inference, external data kept inside the model's folder."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from npupass.errors import ModelFormatError, UnsupportedFeatureError

MIN_OPSET, MAX_OPSET = 11, 21


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def load_onnx(path: str | os.PathLike[str]) -> Any:
    """The checked, shape-inferred ModelProto of `path`; ModelFormatError for anything malformed."""
    return load_onnx_with_notes(path)[0]


def load_onnx_with_notes(path: str | os.PathLike[str]) -> tuple[Any, list[str]]:
    """`load_onnx`, and what the loader changed on the way (an opset upgrade), as sentences."""
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
    notes = []
    if opset is None:
        raise UnsupportedFeatureError(f"{p}: no ONNX opset imported (npupass reads opsets {MIN_OPSET} to {MAX_OPSET})")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        target = MIN_OPSET if opset < MIN_OPSET else MAX_OPSET
        model = _convert_opset(model, opset, target, p)
        way = "upgraded" if target > opset else "downgraded"
        notes.append(f"ONNX opset {opset} {way} to opset {target} with onnx.version_converter")
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise ModelFormatError(f"{p}: ONNX shape inference failed: {_first_line(exc)}") from None
    return model, notes


def _convert_opset(model: Any, opset: int, target: int, path: Path) -> Any:
    """The model converted to opset `target` (much of the ONNX model zoo is opset 7-9; newer exporters
    write opsets past 21 whose ops mostly only gained element types)."""
    import onnx
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(model, target)
        if opset < MIN_OPSET:
            for node in converted.graph.node:
                if node.op_type == "Resize":  # the 10->11 adapter drops opset 10's asymmetric floor sampling
                    _keep_opset10_resize(node)
        onnx.checker.check_model(converted)
    except Exception as exc:  # the converter raises RuntimeError/ValidationError on ops it cannot adapt
        raise UnsupportedFeatureError(
            f"{path}: ONNX opset {opset}; npupass reads opsets {MIN_OPSET} to {MAX_OPSET}, and "
            f"onnx.version_converter could not convert it: {_converter_reason(exc)}"
        ) from None
    return converted


def _converter_reason(exc: BaseException) -> str:
    """The converter's message without the C++ source location it starts with."""
    text = re.sub(r"^\S+\.(h|cc|cpp):\d+: [^:]+: ", "", _first_line(exc))
    return re.sub(r"^Assertion `.*?` failed: ", "", text)


def _keep_opset10_resize(node: Any) -> None:
    """Resize (and Upsample) before opset 11 sample at x_out / scale, rounding down for nearest:
    state it, since opset 11's defaults (half_pixel, round_prefer_floor) mean something else."""
    from onnx import helper

    names = {a.name for a in node.attribute}
    if "coordinate_transformation_mode" not in names:
        node.attribute.append(helper.make_attribute("coordinate_transformation_mode", "asymmetric"))
    if "nearest_mode" not in names:
        node.attribute.append(helper.make_attribute("nearest_mode", "floor"))


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
