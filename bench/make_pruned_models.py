"""MobileNetV2-1.0@224 pruned the ways users prune, converted dense and with the TF converter's
EXPERIMENTAL_SPARSITY (the bench models of bench/sparsity_bench.py; nothing downloaded).

    TF_USE_LEGACY_KERAS=1 .venv/bin/python bench/make_pruned_models.py [STYLE-PCT ...]

Pruning styles (every one before BN folding, batch norms with random trained-looking statistics, the
batch dimension left dynamic as Keras leaves it):

* ``quantile``  - per-layer magnitude quantile over whole kernels: ``|w| <= quantile(|w|, p)`` set to
  0 in every Conv2D, DepthwiseConv2D and Dense kernel.
* ``tfmot``     - tfmot ``prune_low_magnitude`` with ``ConstantSparsity(p)`` on every Conv2D, Dense and
  DepthwiseConv2D (the latter as a ``PrunableLayer``: tfmot wraps a plain one but prunes nothing of
  it), trained a few steps so the masks apply.
* ``tfmot-nodw`` - the same, depthwise layers left unpruned (what plain tfmot does).
* ``tfmot-poly`` - tfmot ``PolynomialDecay(0 -> p)``, the weights moving under SGD while the masks
  tighten (so the kept weights are not the final weights' top magnitudes).
* ``m2n4``      - tfmot 2:4 structured sparsity (``sparsity_m_by_n=(2, 4)``; Conv2D and Dense, 50%).
* ``block1x4``  - 1x4 blocks along the input channels (TFLite's innermost weight dim) with the smallest
  L1 norm zeroed, per layer, depthwise included.

Each model is converted float and full int8 (per-channel weights, int8 I/O), each dense and with
EXPERIMENTAL_SPARSITY, and cached as ~/.cache/npupass/pruned/<style><pct>_<float|int8>[_tfsparse].tflite
(delete a file to rebuild it). MobileNetV2 conversions take minutes on two cores.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

SEED = 0
CACHE = Path.home() / ".cache" / "npupass" / "pruned"
STYLES = ("quantile", "tfmot", "tfmot-nodw", "tfmot-poly", "m2n4", "block1x4")
# (style, percent) bench cases; 2:4 is 50% by construction
CASES = [(s, p) for s in STYLES if s != "m2n4" for p in (50, 80, 90)] + [("m2n4", 50)]
TRAIN_STEPS = 4  # tfmot: masks update every step from step 0; PolynomialDecay reaches p at the last


def mobilenet_v2(batch: int | None = None):  # type: ignore[no-untyped-def]
    import tensorflow as tf

    keras = tf.keras
    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)
    inputs = keras.Input((224, 224, 3), batch_size=batch)
    model = keras.applications.MobileNetV2(weights=None, input_tensor=inputs, classifier_activation=None)
    rng = np.random.default_rng(SEED)
    for layer in model.layers:  # trained-looking batch norms: every channel rescaled differently
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.get_weights()[0].shape
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, n).astype(np.float32),
                    rng.normal(0.0, 0.1, n).astype(np.float32),
                    rng.normal(0.0, 0.1, n).astype(np.float32),
                    rng.uniform(0.5, 2.0, n).astype(np.float32),
                ]
            )
    return model


def _kernels(model):  # type: ignore[no-untyped-def]
    import tensorflow as tf

    layers = tf.keras.layers
    return [layer for layer in model.layers if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.Dense))]


def prune_quantile(model, fraction: float) -> None:  # type: ignore[no-untyped-def]
    for layer in _kernels(model):
        weights = layer.get_weights()
        k = weights[0]
        cut = np.quantile(np.abs(k), fraction)
        layer.set_weights([np.where(np.abs(k) <= cut, np.float32(0), k).astype(np.float32), *weights[1:]])


def prune_blocks(model, fraction: float, block: int = 4) -> None:  # type: ignore[no-untyped-def]
    """Blocks of `block` consecutive input channels (Keras kernels: [H, W, I, O] / [H, W, C, 1] /
    [I, O]; TFLite stores the input channels innermost), smallest L1 norm first."""
    for layer in _kernels(model):
        weights = layer.get_weights()
        k = weights[0]
        axis = k.ndim - 1 if layer.__class__.__name__ == "DepthwiseConv2D" else k.ndim - 2
        if k.shape[axis] % block:
            continue  # the stem's 3 input channels
        moved = np.moveaxis(k, axis, -1)
        blocks = moved.reshape(*moved.shape[:-1], -1, block)
        norms = np.abs(blocks).sum(axis=-1)
        cut = np.quantile(norms, fraction)
        blocks = np.where((norms <= cut)[..., None], np.float32(0), blocks)
        k = np.moveaxis(blocks.reshape(moved.shape), -1, axis).astype(np.float32)
        layer.set_weights([k, *weights[1:]])


def prune_tfmot(model, fraction: float, schedule: str, depthwise: bool, m_by_n: bool = False):  # type: ignore[no-untyped-def]
    """tfmot's prune_low_magnitude, trained TRAIN_STEPS steps on random data, then stripped."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    keras = tf.keras
    sparsity = tfmot.sparsity.keras
    if schedule == "poly":
        sched = sparsity.PolynomialDecay(0.0, fraction, begin_step=0, end_step=TRAIN_STEPS - 1, frequency=1)
    else:
        sched = sparsity.ConstantSparsity(fraction, begin_step=0, frequency=1)
    kinds = (keras.layers.Conv2D, keras.layers.Dense) + (() if not depthwise else (keras.layers.DepthwiseConv2D,))

    class PrunableDepthwiseConv2D(keras.layers.DepthwiseConv2D, sparsity.PrunableLayer):  # type: ignore[misc]
        """tfmot wraps DepthwiseConv2D but prunes none of its weights (tfmot 0.8.1, tf-keras 2.21):
        users who want it pruned say which weight, as tfmot's PrunableLayer lets them."""

        def get_prunable_weights(self):  # type: ignore[no-untyped-def]
            return [self.depthwise_kernel]

    def wrap(layer):  # type: ignore[no-untyped-def]
        if not isinstance(layer, kinds) or (isinstance(layer, keras.layers.DepthwiseConv2D) and not depthwise):
            return layer
        if m_by_n:
            return sparsity.prune_low_magnitude(layer, sparsity_m_by_n=(2, 4))
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            prunable = PrunableDepthwiseConv2D.from_config(layer.get_config())
            prunable.build(layer.input_shape)
            prunable.set_weights(layer.get_weights())
            layer = prunable
        return sparsity.prune_low_magnitude(layer, pruning_schedule=sched)

    pruned = keras.models.clone_model(model, clone_function=wrap)
    lr = 1e-3 if schedule == "poly" else 0.0  # poly: the weights move while the masks tighten
    pruned.compile(keras.optimizers.SGD(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(SEED)
    x = rng.uniform(-1, 1, (TRAIN_STEPS, *model.input_shape[1:])).astype(np.float32)
    y = rng.integers(0, model.output_shape[-1], TRAIN_STEPS)
    pruned.fit(x, y, batch_size=1, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    return sparsity.strip_pruning(pruned)


def pruned_model(style: str, pct: int):  # type: ignore[no-untyped-def]
    f = pct / 100
    model = mobilenet_v2()
    if style == "quantile":
        prune_quantile(model, f)
    elif style == "block1x4":
        prune_blocks(model, f)
    elif style == "m2n4":
        model = prune_tfmot(model, 0.5, "constant", depthwise=False, m_by_n=True)
    else:
        model = prune_tfmot(model, f, "poly" if style == "tfmot-poly" else "constant", style != "tfmot-nodw")
    return model


def representative(samples: int = 4) -> Callable[[], Iterator[list[np.ndarray]]]:
    def generate() -> Iterator[list[np.ndarray]]:
        rng = np.random.default_rng(SEED)
        for _ in range(samples):
            yield [rng.uniform(-1.0, 1.0, size=(1, 224, 224, 3)).astype(np.float32)]

    return generate


def convert(model, int8: bool, sparsity: bool) -> bytes:  # type: ignore[no-untyped-def]
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    optimizations = []
    if int8:
        optimizations.append(tf.lite.Optimize.DEFAULT)
        converter.representative_dataset = representative()
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    if sparsity:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    with contextlib.redirect_stdout(io.StringIO()):
        return bytes(converter.convert())


def path(style: str, pct: int, kind: str, tf_sparse: bool) -> Path:
    return CACHE / f"{style}{pct}_{kind}{'_tfsparse' if tf_sparse else ''}.tflite"


def build(style: str, pct: int, kinds: tuple[str, ...] = ("float", "int8")) -> dict[tuple[str, bool], Path]:
    """The four files of one case (built when missing)."""
    wanted = {(k, s): path(style, pct, k, s) for k in kinds for s in (False, True)}
    missing = [key for key, p in wanted.items() if not p.exists()]
    if missing:
        t0 = time.perf_counter()
        model = pruned_model(style, pct)
        CACHE.mkdir(parents=True, exist_ok=True)
        for kind, sparse in missing:
            data = convert(model, kind == "int8", sparse)
            tmp = wanted[(kind, sparse)].with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(wanted[(kind, sparse)])
        print(f"  built {style}{pct} ({len(missing)} files) in {time.perf_counter() - t0:.0f} s", flush=True)
    return wanted


def main() -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tfmot needs tf-keras (set before TF loads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help="STYLE-PCT, e.g. quantile-80 (default: every bench case)")
    args = parser.parse_args()
    cases = [(c.rsplit("-", 1)[0], int(c.rsplit("-", 1)[1])) for c in args.cases] or CASES
    for style, pct in cases:
        if style not in STYLES:
            sys.exit(f"unknown style {style}; one of {', '.join(STYLES)}")
        for p in build(style, pct).values():
            print(f"{p.name}: {p.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
