"""onnxruntime as the reference for ONNX models, and the layout bridge to their NHWC TFLite form."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from npupass.verify.litert import LiteRTModel, ReferenceError, TensorSpec, from_real, to_real

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
        # the model as written: no fusions (ORT's QDQ fusions refuse [1]-shaped scales that PyTorch
        # exports, and would swap the reference's float QDQ arithmetic for its own int8 kernels)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
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


class AsTflite:
    """An ONNX model in onnxruntime, seen through its TFLite conversion's interface: inputs arrive as
    the TFLite model takes them (NHWC, int8 when quantized) and are dequantized and transposed for
    onnxruntime; outputs are transposed back and quantized onto the TFLite output's grid, so integer
    outputs compare in quantization steps.

    `layout` is what npupass's ONNX import recorded in the TFLite metadata ({"inputs": [perm, ...],
    "outputs": [...]}); without it the shapes decide (ambiguous only when C == H == W).
    """

    def __init__(
        self, ort: OnnxRuntimeModel, tflite: LiteRTModel, layout: dict[str, list[list[int]]] | None = None
    ) -> None:
        self._ort = ort
        self.inputs, self.outputs = tflite.inputs, tflite.outputs
        if layout is not None and len(layout.get("inputs", [])) == len(ort.inputs):
            self._in = [tuple(p) == TO_NHWC for p in layout["inputs"]]
            self._out = [tuple(p) == TO_NHWC for p in layout["outputs"]]
        else:
            self._in = [_needs_transpose(o.shape, t.shape) for o, t in zip(ort.inputs, tflite.inputs, strict=False)]
            self._out = [_needs_transpose(o.shape, t.shape) for o, t in zip(ort.outputs, tflite.outputs, strict=False)]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        fed = []
        for x, spec, target, flip in zip(inputs, self.inputs, self._ort.inputs, self._in, strict=True):
            # an integer ONNX input takes the same integers (the import keeps its quantization)
            value = x.astype(target.dtype) if target.dtype.kind in "iu" else to_real(x, spec).astype(target.dtype)
            fed.append(np.ascontiguousarray(np.transpose(value, TO_NCHW)) if flip else value)
        outs = []
        for y, spec, flip in zip(self._ort.run(fed), self.outputs, self._out, strict=True):
            y = np.transpose(y, TO_NHWC) if flip else y
            if y.dtype.kind in "iu" or not spec.quantized:
                outs.append(y.astype(spec.dtype))
            else:
                outs.append(from_real(y.astype(np.float64), spec))
        return outs


def _needs_transpose(onnx_shape: tuple[int, ...], tflite_shape: tuple[int, ...]) -> bool:
    return (
        len(onnx_shape) == 4
        and onnx_shape != tuple(tflite_shape)
        and tuple(onnx_shape[i] for i in TO_NHWC) == tuple(tflite_shape)
    )
