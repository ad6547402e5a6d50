"""onnxruntime as the reference for ONNX models, and the layout bridge to their NHWC TFLite form."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from npupass.verify.litert import LiteRTModel, ReferenceError, TensorSpec

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}
TO_NHWC, TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


class OnnxRuntimeModel:
    """An ONNX model in onnxruntime, with the same run() as LiteRTModel (symbolic dims become 1)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ReferenceError(f"onnxruntime cannot load the model: {str(exc).splitlines()[0]}") from None
        self.inputs = [_spec(i) for i in self._session.get_inputs()]
        self.outputs = [_spec(o) for o in self._session.get_outputs()]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        feed = {spec.name: value for spec, value in zip(self.inputs, inputs, strict=True)}
        try:
            return [np.asarray(out) for out in self._session.run(None, feed)]
        except Exception as exc:
            raise ReferenceError(f"onnxruntime failed to run the model: {str(exc).splitlines()[0]}") from None


def _spec(arg: Any) -> TensorSpec:
    dtype = _ORT_TYPES.get(arg.type)
    if dtype is None:
        raise ReferenceError(f"ONNX input/output '{arg.name}' has type {arg.type}, which npupass cannot compare")
    shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in arg.shape)
    return TensorSpec(arg.name, np.dtype(dtype), shape, 0.0, 0)


class InOnnxLayout:
    """A TFLite model seen in its ONNX model's layout: NCHW inputs are transposed to the NHWC the
    TFLite model reads, and NHWC outputs back to NCHW. `layout` is what npupass's ONNX import
    recorded in the TFLite metadata ({"inputs": [perm, ...], "outputs": [...]}); without it the
    shapes decide (ambiguous only when C == H == W)."""

    def __init__(
        self,
        model: LiteRTModel,
        onnx_inputs: list[TensorSpec],
        onnx_outputs: list[TensorSpec],
        layout: dict[str, list[list[int]]] | None = None,
    ) -> None:
        self._model = model
        if layout is not None and len(layout["inputs"]) == len(onnx_inputs):
            self._in = [tuple(p) == TO_NHWC for p in layout["inputs"]]
            self._out = [tuple(p) == TO_NHWC for p in layout["outputs"]]
        else:
            self._in = [_needs_transpose(o.shape, t.shape) for o, t in zip(onnx_inputs, model.inputs, strict=False)]
            self._out = [_needs_transpose(o.shape, t.shape) for o, t in zip(onnx_outputs, model.outputs, strict=False)]
        self.inputs = [
            _with_shape(t, o.shape) if flip else t
            for t, o, flip in zip(model.inputs, onnx_inputs, self._in, strict=False)
        ]
        self.outputs = [
            _with_shape(t, o.shape) if flip else t
            for t, o, flip in zip(model.outputs, onnx_outputs, self._out, strict=False)
        ]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        fed = [
            np.ascontiguousarray(np.transpose(x, TO_NHWC)) if flip else x
            for x, flip in zip(inputs, self._in, strict=True)
        ]
        outs = self._model.run(fed)
        return [np.transpose(y, TO_NCHW) if flip else y for y, flip in zip(outs, self._out, strict=True)]


def _needs_transpose(onnx_shape: tuple[int, ...], tflite_shape: tuple[int, ...]) -> bool:
    return (
        len(onnx_shape) == 4
        and onnx_shape != tuple(tflite_shape)
        and tuple(onnx_shape[i] for i in TO_NHWC) == tuple(tflite_shape)
    )


def _with_shape(spec: TensorSpec, shape: tuple[int, ...]) -> TensorSpec:
    return TensorSpec(spec.name, spec.dtype, shape, spec.scale, spec.zero_point)
