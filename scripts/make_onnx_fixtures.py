"""Build the ONNX fixtures committed under ``tests/models``.

They exist for the ONNX frontend and for the passes that undo what PyTorch and onnxruntime leave in a graph
(fold-batch-norm, fold-fake-quant / QDQ handling, fuse-activations). Every model is written by hand here (no
torchvision, no downloads), trained for a few seeded steps on a seeded synthetic task (so batch-norm
statistics, fake-quant ranges and logits are not their initial values), exported with the TorchScript
exporter (``torch.onnx.export(..., dynamo=False)``), checked with ``onnx.checker`` (full check), checked for
the property it exists for, and run in onnxruntime (CPU, graph optimizations disabled) against PyTorch on
seeded inputs.

The small MobileNetV2-style net ("mbv2"), input ``input`` 1x3x32x32 NCHW, output ``logits`` 1x10: stem Conv
3x3/2 (16) + BN + ReLU6 -> 3 inverted residual blocks (expand Conv 1x1 + BN + ReLU6, depthwise Conv 3x3
(groups = channels) + BN + ReLU6, project Conv 1x1 + BN): [16 -> 32 -> 16, stride 1, residual Add],
[16 -> 32 -> 24, stride 2, no residual], [24 -> 32 -> 24, stride 1, residual Add] -> GlobalAveragePool ->
Flatten -> Gemm (10 classes). Convs have no bias (BN follows). Synthetic task: 10 classes, each a fixed
smooth random image (3x4x4 noise upsampled bilinearly to 32x32); a sample is its class template times a random
gain in [0.5, 1.5) plus N(0, 1) noise. Trained with SGD (momentum 0.9) for TRAIN_STEPS steps of batch 32.

* ``mbv2_float.onnx``                 - the float net, opset 13, BatchNormalization KEPT (exported with
  ``training=TrainingMode.PRESERVE`` from a model in ``eval()`` mode: the exporter keeps the BN nodes with
  ``training_mode`` 0, i.e. running statistics; the script checks onnxruntime against torch's eval output).
  ReLU6 is Clip(0, 6) with min/max from Constant nodes.
* ``mbv2_conv_div_bn_float.onnx``     - the same net, but the middle (stride-2) block's convs are written as
  Conv -> Div(constant) -> BatchNormalization: the expand Conv has a bias and is divided by a scalar, the
  project Conv has no bias and is divided by a per-channel [1, C, 1, 1] constant. This is the shape PyTorch's
  QAT Conv+BN export leaves (see ``mbv2_qat_qdq.onnx``), which BN-folding tools that look for Conv -> BN
  directly miss or fold wrongly. Trained and exported like ``mbv2_float.onnx``.
* ``mbv2_qat_qdq.onnx``               - ``mbv2_float``'s trained weights after eager-mode QAT
  (``torch.ao.quantization``) and TorchScript export at opset 13: the QAT model's FakeQuantize modules become
  QuantizeLinear -> DequantizeLinear pairs. Recipe (as torchvision's quantizable MobileNetV2 does): ReLU6 is
  replaced by ReLU, because eager mode has no Conv+BN+ReLU6 fusion (keeping ReLU6 would leave ConvBn2d with
  its own output fake-quant followed by Clip and a second fake-quant); then ``fuse_modules_qat`` fuses
  [conv, bn, relu] -> ConvBnReLU2d and [conv, bn] -> ConvBn2d (project convs); QConfig: weights
  FakeQuantize(MovingAveragePerChannelMinMaxObserver, qint8 -128..127, per_channel_symmetric, ch_axis 0),
  activations FakeQuantize(MovingAverageMinMaxObserver, quint8 0..255, per_tensor_affine, no reduce_range:
  a (0, 127) range would export with an extra Clip, a [-127, 127] one does not export at all). QuantStub on
  the input, FloatFunctional for the residual Adds, DeQuantStub on the output. Fine-tuned QAT_STEPS steps,
  BN statistics and observers frozen for the last QAT_FROZEN_STEPS, exported from ``eval()`` (not
  ``convert()``: the converted model's quantized::relu etc. do not export as QDQ). What the graph looks
  like: weight QDQ pairs take a float initializer (the weight already multiplied by the BN scale factor,
  constant-folded) with per-channel int8 axis 0; each conv is QDQ(weight) -> Conv (zero-bias Constant) ->
  Div(per-channel scale factor) -> BatchNormalization (running stats) [-> Relu] -> uint8 per-tensor QDQ;
  the zero points of 13 of the 25 Q/DQ pairs come from Identity nodes (of shared zero-point initializers),
  not straight from initializers.
  Activation pairs (14): the input, after every Relu / project BN, after both residual Adds, after the Gemm;
  the GlobalAveragePool -> Flatten -> Gemm input is float (eager mode puts no observer after the pool). No
  int32 bias: Conv biases are zero Constants, the Gemm bias a float initializer. Scales and zero points have
  shape [1], not scalars: onnxruntime runs the file with graph optimizations disabled (bit-exact against
  torch), but with its default optimizations it refuses to load it (QLinearAdd: "Scale and Zero-point must
  be a scalar").
* ``mbv2_ort_qdq.onnx``               - ``mbv2_float.onnx`` quantized by onnxruntime's ``quantize_static``
  (QuantFormat.QDQ, per_channel, activations and weights QInt8, MinMax calibration on CALIBRATION_SAMPLES
  seeded samples of the synthetic task) without pre-processing: every Clip (ReLU6) is deleted (its range is
  folded into the preceding activation quantization), leaving its 14 min/max Constant nodes dead in the
  graph; BatchNormalization stays as its own QDQ op (input DQ, scale as a per-tensor int8 DQ -- per-channel
  falls back, "Axis 1 is out-of-range" --, B as an int32 DQ with a [1]-shaped scale, mean/var float). Conv
  weights are per-channel int8 (axis 0) with no bias; Gemm bias is an int32 DQ.
* ``mbv2_ort_qdq_preprocessed.onnx``  - the same after ``quant_pre_process`` (symbolic shape inference + ORT
  basic optimizations): BN folded into the convs, Conv and Gemm biases int32 DequantizeLinear (per-channel
  axis 0), no Clip / Relu left. The pre-processing also leaves opset imports for onnxruntime's own domains
  (com.microsoft, ai.onnx.ml, ...) that no node uses, and ``onnx.quant.pre_process`` metadata.
* ``transformer_block_float.onnx``    - a pre-LN transformer encoder block, input ``tokens`` 1x8x16 [batch,
  tokens, dim], output ``output`` 1x8x16: LayerNorm -> 2-head self-attention written by hand (Q/K/V Linear,
  Reshape/Transpose to heads, MatMul, scale by 1/sqrt(head_dim), Softmax, MatMul, merge heads, output
  Linear) -> residual Add -> LayerNorm -> MLP (Linear 16 -> 32, exact erf GELU, Linear 32 -> 16) -> residual
  Add. Opset 17, so each LayerNorm is a single LayerNormalization node and GELU is the Div/Erf/Add/Mul/Mul
  decomposition (Gelu is only an ONNX op from opset 20). Seeded random weights, LayerNorm gamma/beta
  randomized so they are not 1/0; not trained.

Determinism: ``torch.manual_seed``, ``torch.use_deterministic_algorithms(True)``, one intra-op thread
(PyTorch and the onnxruntime sessions), dedicated seeded generators for every batch. Re-running gives
byte-identical files.

Usage::

    .venv/bin/python scripts/make_onnx_fixtures.py [--out tests/models] [--only NAME ...]

Needs ``torch==2.13.0`` (CPU build), ``onnx==1.23.*``, ``onnxruntime==1.31.*``, ``onnxscript`` (the exporter
imports it) and ``sympy`` (onnxruntime's quantization pre-processing).
"""

from __future__ import annotations

import argparse
import collections
import copy
import functools
import math
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.ao.quantization as tq
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

SEED = 0
CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)
BATCH = 32
NOISE = 2.0
TRAIN_STEPS = 150
LEARNING_RATE = 0.05
QAT_STEPS = 40
QAT_FROZEN_STEPS = 10
QAT_LEARNING_RATE = 0.005
CALIBRATION_SAMPLES = 32
COMPARE_SAMPLES = 3
TOKENS, DIM, HEADS, MLP_DIM = 8, 16, 2, 32
FLOAT_RTOL = 1e-4  # max |ort - torch| / max |torch| for the float fixtures
MAX_FIXTURE_BYTES = 512 * 1024
MAX_TOTAL_BYTES = 2 * 1024 * 1024
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "models"

torch.manual_seed(SEED)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)
warnings.filterwarnings("ignore")  # the exporter and torch.ao.quantization deprecation chatter
ort.set_default_logger_severity(3)  # quantize_static leaves unused Clip min/max initializers: warnings


# --------------------------------------------------------------------------------------------- data


@functools.cache
def _templates() -> torch.Tensor:
    g = torch.Generator().manual_seed(SEED + 1)
    low = torch.randn(CLASSES, 3, 4, 4, generator=g)
    return nn.functional.interpolate(low, size=IMAGE_SHAPE[1:], mode="bilinear", align_corners=False)


def synthetic_batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded batch of the synthetic task: class template times a gain, plus N(0, 1) noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    gain = torch.rand(n, 1, 1, 1, generator=g) + 0.5
    x = _templates()[labels] * gain + NOISE * torch.randn(n, *IMAGE_SHAPE, generator=g)
    return x, labels


def compare_inputs(shape: tuple[int, ...], seed: int) -> list[np.ndarray]:
    """Seeded inputs for the torch / onnxruntime comparison: synthetic-task images for the CNNs (the
    distribution the quantized models were calibrated on), N(0, 1) otherwise."""
    if tuple(shape[1:]) == IMAGE_SHAPE:
        x, _ = synthetic_batch(COMPARE_SAMPLES, seed)
        return [x[i : i + 1].numpy() for i in range(COMPARE_SAMPLES)]
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(COMPARE_SAMPLES)]


# --------------------------------------------------------------------------------------------- models


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(nn.ReLU6())
        super().__init__(*layers)


class ConvDivBN(nn.Module):
    """Conv -> Div(constant) -> BatchNorm [-> ReLU6]: ``divisor`` is a scalar or a [1, C, 1, 1] tensor."""

    def __init__(self, cin: int, cout: int, divisor: torch.Tensor, bias: bool, act: bool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=bias)
        self.register_buffer("divisor", divisor)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU6() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x) / self.divisor))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, hidden: int, cout: int, stride: int, conv_div_bn: bool = False):
        super().__init__()
        if conv_div_bn:
            g = torch.Generator().manual_seed(SEED + 2)
            self.expand: nn.Module = ConvDivBN(cin, hidden, torch.tensor(4.0), bias=True, act=True)
            per_channel = (torch.rand(1, cout, 1, 1, generator=g) * 1.5 + 0.5).contiguous()
            self.project: nn.Module = ConvDivBN(hidden, cout, per_channel, bias=False, act=False)
        else:
            self.expand = ConvBNAct(cin, hidden)
            self.project = ConvBNAct(hidden, cout, act=False)
        self.dw = ConvBNAct(hidden, hidden, 3, stride, groups=hidden)
        self.residual = stride == 1 and cin == cout
        self.add = nn.quantized.FloatFunctional()  # a plain torch.add outside QAT

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return self.add.add(x, y) if self.residual else y


class MobileNetV2Tiny(nn.Module):
    def __init__(self, conv_div_bn: bool = False):
        super().__init__()
        self.quant = tq.QuantStub()  # identity until QAT
        self.stem = ConvBNAct(3, 16, 3, 2)
        self.blocks = nn.Sequential(
            InvertedResidual(16, 32, 16, 1),
            InvertedResidual(16, 32, 24, 2, conv_div_bn=conv_div_bn),
            InvertedResidual(24, 32, 24, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(24, CLASSES)
        self.dequant = tq.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(self.quant(x)))
        return self.dequant(self.fc(torch.flatten(self.pool(x), 1)))


class TransformerBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(DIM)
        self.q, self.k, self.v = nn.Linear(DIM, DIM), nn.Linear(DIM, DIM), nn.Linear(DIM, DIM)
        self.proj = nn.Linear(DIM, DIM)
        self.ln2 = nn.LayerNorm(DIM)
        self.fc1 = nn.Linear(DIM, MLP_DIM)
        self.gelu = nn.GELU(approximate="none")
        self.fc2 = nn.Linear(MLP_DIM, DIM)
        self.head_dim = DIM // HEADS

    def _heads(self, t: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, H, T, D/H]
        return t.reshape(t.shape[0], t.shape[1], HEADS, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        q, k, v = self._heads(self.q(h)), self._heads(self.k(h)), self._heads(self.v(h))
        scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        attn = torch.matmul(torch.softmax(scores, dim=-1), v)
        attn = attn.transpose(1, 2).reshape(x.shape[0], x.shape[1], DIM)
        x = x + self.proj(attn)
        return x + self.fc2(self.gelu(self.fc1(self.ln2(x))))


# --------------------------------------------------------------------------------------------- training


def train(model: nn.Module, steps: int, lr: float, seed: int, on_step: Callable[[int], None] | None = None) -> float:
    """SGD on the synthetic task; returns the accuracy over the last 20 training batches."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    correct = total = 0
    for step in range(steps):
        if on_step is not None:
            on_step(step)
        x, y = synthetic_batch(BATCH, seed * 100_003 + step)
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= steps - 20:
            correct += int((logits.argmax(1) == y).sum())
            total += len(y)
    model.eval()
    return correct / total


def eval_accuracy(model: nn.Module, seed: int = 999) -> float:
    x, y = synthetic_batch(512, seed)
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


@functools.cache
def trained_mbv2(conv_div_bn: bool = False) -> tuple[MobileNetV2Tiny, float]:
    torch.manual_seed(SEED + (10 if conv_div_bn else 0))
    model = MobileNetV2Tiny(conv_div_bn)
    acc = train(model, TRAIN_STEPS, LEARNING_RATE, seed=1 + conv_div_bn)
    print(
        f"  trained mbv2(conv_div_bn={conv_div_bn}): last-20-batch train acc {acc:.3f}, "
        f"held-out acc {eval_accuracy(model):.3f}"
    )
    return model, acc


def _replace_relu6(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU6):
            setattr(module, name, nn.ReLU())
        else:
            _replace_relu6(child)


def qat_mbv2() -> nn.Module:
    model = copy.deepcopy(trained_mbv2()[0])
    _replace_relu6(model)
    fuse: list[list[str]] = [["stem.0", "stem.1", "stem.2"]]
    for i in range(len(model.blocks)):
        for part in ("expand", "dw"):
            fuse.append([f"blocks.{i}.{part}.0", f"blocks.{i}.{part}.1", f"blocks.{i}.{part}.2"])
        fuse.append([f"blocks.{i}.project.0", f"blocks.{i}.project.1"])
    model.train()
    tq.fuse_modules_qat(model, fuse, inplace=True)
    weight_fq = tq.FakeQuantize.with_args(
        observer=tq.MovingAveragePerChannelMinMaxObserver,
        quant_min=-128,
        quant_max=127,
        dtype=torch.qint8,
        qscheme=torch.per_channel_symmetric,
        ch_axis=0,
    )
    act_fq = tq.FakeQuantize.with_args(
        observer=tq.MovingAverageMinMaxObserver,
        quant_min=0,
        quant_max=255,
        dtype=torch.quint8,
        qscheme=torch.per_tensor_affine,
        reduce_range=False,
    )
    model.qconfig = tq.QConfig(activation=act_fq, weight=weight_fq)
    tq.prepare_qat(model, inplace=True)

    def freeze(step: int) -> None:
        if step == QAT_STEPS - QAT_FROZEN_STEPS:
            model.apply(tq.disable_observer)
            model.apply(torch.ao.nn.intrinsic.qat.freeze_bn_stats)

    acc = train(model, QAT_STEPS, QAT_LEARNING_RATE, seed=3, on_step=freeze)
    model.apply(tq.disable_observer)
    print(f"  QAT fine-tune: last-20-batch train acc {acc:.3f}, held-out acc {eval_accuracy(model):.3f}")
    return model


def transformer_block() -> TransformerBlock:
    torch.manual_seed(SEED + 20)
    model = TransformerBlock()
    g = torch.Generator().manual_seed(SEED + 21)
    with torch.no_grad():
        for ln in (model.ln1, model.ln2):
            ln.weight.copy_(1.0 + 0.2 * torch.randn(DIM, generator=g))
            ln.bias.copy_(0.1 * torch.randn(DIM, generator=g))
    return model.eval()


# --------------------------------------------------------------------------------------------- export / checks


def export(
    model: nn.Module, example: torch.Tensor, path: Path, opset: int, in_name: str, out_name: str, **kw: Any
) -> None:
    model.eval()
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=[in_name],
        output_names=[out_name],
        **kw,
    )


def ort_run(path: Path, x: np.ndarray, optimize: bool = False) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def compare(path: Path, model: nn.Module, inputs: list[np.ndarray], optimize: bool = False) -> tuple[float, float]:
    """Max abs and max relative (abs / max |torch|) difference of onnxruntime against torch."""
    max_abs = max_rel = 0.0
    for x in inputs:
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        diff = float(np.abs(ort_run(path, x, optimize) - ref).max())
        max_abs = max(max_abs, diff)
        max_rel = max(max_rel, diff / float(np.abs(ref).max()))
    return max_abs, max_rel


def histogram(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(collections.Counter(n.op_type for n in model.graph.node).items()))


def _io(values: Any) -> list[str]:
    out = []
    for v in values:
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim]
        out.append(f"{v.name}{dims}")
    return out


def qdq_summary(model: onnx.ModelProto) -> dict[str, Any]:
    """Where the QDQ pairs are: weight/bias DequantizeLinear per Conv/Gemm/MatMul, activation dtype."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    for n in g.node:  # Constant nodes count as initializers
        if n.op_type == "Constant":
            inits[n.output[0]] = n.attribute[0].t

    def const(name: str) -> onnx.TensorProto | None:
        while name not in inits and name in producer and producer[name].op_type == "Identity":
            name = producer[name].input[0]
        return inits.get(name)

    def dtype(t: onnx.TensorProto | None) -> str:
        return onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name if t is not None else "?"

    def axis(n: onnx.NodeProto) -> int | None:
        return next((a.i for a in n.attribute if a.name == "axis"), None)

    weights, biases = collections.Counter(), collections.Counter()
    for n in g.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        w = producer.get(n.input[1])
        if w is not None and w.op_type == "DequantizeLinear":
            src = const(w.input[0])
            kind = "int weight init" if src is not None else f"from {producer[w.input[0]].op_type}(float init)"
            zp = const(w.input[2]) if len(w.input) > 2 else None
            per = (
                "per-channel"
                if (const(w.input[1]) is not None and const(w.input[1]).dims and const(w.input[1]).dims[0] > 1)
                else "per-tensor"
            )
            weights[f"{n.op_type}: {per} axis={axis(w)} {dtype(zp)} ({kind})"] += 1
        else:
            weights[f"{n.op_type}: float weight"] += 1
        if len(n.input) > 2 and n.input[2]:
            b = producer.get(n.input[2])
            if b is not None and b.op_type == "DequantizeLinear":
                biases[f"{n.op_type}: DQ {dtype(const(b.input[0]))}"] += 1
            else:
                biases[f"{n.op_type}: float {'Constant' if b is not None else 'initializer'}"] += 1
        else:
            biases[f"{n.op_type}: none"] += 1
    acts = collections.Counter()
    for n in g.node:
        if n.op_type == "QuantizeLinear" and const(n.input[0]) is None:
            zp = const(n.input[2]) if len(n.input) > 2 else None
            acts[f"{dtype(zp)} per-tensor" if axis(n) is None else f"{dtype(zp)} axis={axis(n)}"] += 1
    return {"weights": dict(weights), "biases": dict(biases), "activation Q": dict(acts)}


def finish(
    path: Path,
    ref_model: nn.Module | None,
    shape: tuple[int, ...],
    check: Callable[[onnx.ModelProto], None],
    rtol: float | None,
    optimize_too: bool = False,
) -> None:
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    check(model)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    size = path.stat().st_size
    assert size <= MAX_FIXTURE_BYTES, f"{path.name}: {size} bytes"
    print(f"{path.name}: opset {opset}, {size} bytes")
    print(f"  inputs {_io(model.graph.input)} outputs {_io(model.graph.output)}")
    print(f"  nodes {histogram(model)}")
    if any(n.op_type == "QuantizeLinear" for n in model.graph.node):
        for k, v in qdq_summary(model).items():
            print(f"  {k}: {v}")
    inputs = compare_inputs(shape, SEED + 7)
    if ref_model is not None:
        a, r = compare(path, ref_model, inputs)
        print(f"  onnxruntime (no graph opt) vs torch on {len(inputs)} seeded inputs: max abs {a:.3g}, max rel {r:.3g}")
        if rtol is not None:
            assert r <= rtol, f"{path.name}: relative difference {r} > {rtol}"
        if optimize_too:
            try:
                a, r = compare(path, ref_model, inputs, optimize=True)
                print(f"  onnxruntime (default graph opt) vs torch: max abs {a:.3g}, max rel {r:.3g}")
            except ort.capi.onnxruntime_pybind11_state.Fail as exc:  # reported, not fatal: see the docstring
                print(f"  onnxruntime (default graph opt) fails to load it: {str(exc).splitlines()[0]}")
    else:
        for x in inputs:
            assert np.isfinite(ort_run(path, x)).all()


def _ops(model: onnx.ModelProto) -> collections.Counter:
    return collections.Counter(n.op_type for n in model.graph.node)


# --------------------------------------------------------------------------------------------- fixtures


def _bn_kept(model: onnx.ModelProto, count: int) -> None:
    assert _ops(model)["BatchNormalization"] == count, _ops(model)
    for n in model.graph.node:
        if n.op_type == "BatchNormalization":
            assert len(n.output) == 1, "BN exported in training mode"
            assert all(a.i == 0 for a in n.attribute if a.name == "training_mode")


def make_mbv2_float(out: Path) -> None:
    model, _ = trained_mbv2()
    path = out / "mbv2_float.onnx"
    export(model, torch.zeros(1, *IMAGE_SHAPE), path, 13, "input", "logits", training=torch.onnx.TrainingMode.PRESERVE)
    finish(path, model, (1, *IMAGE_SHAPE), lambda m: _bn_kept(m, 10), FLOAT_RTOL)


def make_mbv2_conv_div_bn_float(out: Path) -> None:
    model, _ = trained_mbv2(conv_div_bn=True)
    path = out / "mbv2_conv_div_bn_float.onnx"
    export(model, torch.zeros(1, *IMAGE_SHAPE), path, 13, "input", "logits", training=torch.onnx.TrainingMode.PRESERVE)

    def check(m: onnx.ModelProto) -> None:
        _bn_kept(m, 10)
        producer = {o: n for n in m.graph.node for o in n.output}
        chains = [
            n
            for n in m.graph.node
            if n.op_type == "BatchNormalization"
            and producer[n.input[0]].op_type == "Div"
            and producer[producer[n.input[0]].input[0]].op_type == "Conv"
        ]
        assert len(chains) == 2, "expected two Conv -> Div -> BatchNormalization chains"

    finish(path, model, (1, *IMAGE_SHAPE), check, FLOAT_RTOL)


def make_mbv2_qat_qdq(out: Path) -> None:
    model = qat_mbv2()
    path = out / "mbv2_qat_qdq.onnx"
    export(model, torch.zeros(1, *IMAGE_SHAPE), path, 13, "input", "logits")

    def check(m: onnx.ModelProto) -> None:
        ops = _ops(m)
        assert ops["QuantizeLinear"] > 0 and ops["QuantizeLinear"] == ops["DequantizeLinear"], ops

    finish(path, model, (1, *IMAGE_SHAPE), check, None, optimize_too=True)


class _Calibration(CalibrationDataReader):
    def __init__(self) -> None:
        x, _ = synthetic_batch(CALIBRATION_SAMPLES, SEED + 5)
        self._it = iter([{"input": x[i : i + 1].numpy()} for i in range(CALIBRATION_SAMPLES)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def _ort_quantize(out: Path, name: str, preprocess: bool, check: Callable[[onnx.ModelProto], None]) -> None:
    model, _ = trained_mbv2()
    path = out / name
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "float.onnx"
        export(
            model, torch.zeros(1, *IMAGE_SHAPE), src, 13, "input", "logits", training=torch.onnx.TrainingMode.PRESERVE
        )
        if preprocess:
            pre = Path(tmp) / "pre.onnx"
            quant_pre_process(str(src), str(pre))
            src = pre
        quantize_static(
            str(src),
            str(path),
            _Calibration(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    finish(path, model, (1, *IMAGE_SHAPE), check, None, optimize_too=True)


def make_mbv2_ort_qdq(out: Path) -> None:
    _ort_quantize(out, "mbv2_ort_qdq.onnx", False, lambda m: None)


def make_mbv2_ort_qdq_preprocessed(out: Path) -> None:
    def check(m: onnx.ModelProto) -> None:
        assert _ops(m)["BatchNormalization"] == 0, _ops(m)

    _ort_quantize(out, "mbv2_ort_qdq_preprocessed.onnx", True, check)


def make_transformer_block_float(out: Path) -> None:
    model = transformer_block()
    path = out / "transformer_block_float.onnx"
    export(model, torch.zeros(1, TOKENS, DIM), path, 17, "tokens", "output")

    def check(m: onnx.ModelProto) -> None:
        ops = _ops(m)
        assert ops["LayerNormalization"] == 2 and ops["Softmax"] == 1, ops
        assert ops["Erf"] + ops["Gelu"] >= 1, ops

    finish(path, model, (1, TOKENS, DIM), check, FLOAT_RTOL)


TEST_IMAGES = 20
TEST_IMAGES_SEED = 4242


def make_mbv2_test_images(out: Path) -> None:
    """Held-out synthetic-task images (NCHW float32, [20, 1, 3, 32, 32]): the test samples on which the
    converted CNNs must give onnxruntime's arg-max (random noise has near-tied logits)."""
    x, _ = synthetic_batch(TEST_IMAGES, TEST_IMAGES_SEED)
    images = x.numpy().astype(np.float32).reshape(TEST_IMAGES, 1, *IMAGE_SHAPE)
    with open(out / "mbv2_test_images.npy", "wb") as f:
        np.save(f, images, allow_pickle=False)
    print(f"mbv2_test_images.npy: {images.shape}, {images.nbytes} bytes")


FIXTURES: dict[str, Callable[[Path], None]] = {
    "mbv2_float": make_mbv2_float,
    "mbv2_conv_div_bn_float": make_mbv2_conv_div_bn_float,
    "mbv2_qat_qdq": make_mbv2_qat_qdq,
    "mbv2_ort_qdq": make_mbv2_ort_qdq,
    "mbv2_ort_qdq_preprocessed": make_mbv2_ort_qdq_preprocessed,
    "transformer_block_float": make_transformer_block_float,
    "mbv2_test_images": make_mbv2_test_images,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        choices=sorted(FIXTURES) + [f"{n}.onnx" for n in FIXTURES],
        help="build only these fixtures (names with or without .onnx)",
    )
    args = parser.parse_args(argv)
    names = [n.removesuffix(".onnx") for n in args.only] if args.only else list(FIXTURES)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}")
    for name in names:
        FIXTURES[name](args.out)
    total = sum((args.out / f"{n}.onnx").stat().st_size for n in FIXTURES if (args.out / f"{n}.onnx").exists())
    print(f"total size of the ONNX fixtures in {args.out}: {total} bytes")
    assert total <= MAX_TOTAL_BYTES, total
    return 0


if __name__ == "__main__":
    sys.exit(main())
