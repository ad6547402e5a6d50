"""Sparsity and cluster acceptance figures on Keras MobileNetV2 224 (weights=None, nothing downloaded).

    .venv/bin/python bench/sparsity_bench.py [--samples 2]

Builds once into ~/.cache/npupass/ (delete it to rebuild): MobileNetV2 with trained-looking batch
norms, per-layer magnitude-pruned to 50% and 80% (before BN folding), converted float and full int8
(int8 I/O), each dense and with the converter's EXPERIMENTAL_SPARSITY; and 16-cluster MobileNetV2
(clustered before BN folding) converted full int8 with per-channel and with per-tensor weights.

Prints: our encode-sparsity file against the converter's and the dense one, bit-exactness against
the dense model in LiteRT (default delegate = XNNPACK, and builtin kernels), and for encode-clusters
the distinct int8 values per clustered layer, Vela 5.2 (ethos-u55-128) encoded weight bytes before
and after, and the output difference in quantization steps.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "bench")]
CACHE = Path.home() / ".cache" / "npupass" / "sparsity"  # logits (no softmax): outputs that show every step
MIB = 1024 * 1024


def build(name: str, make) -> bytes:  # type: ignore[no-untyped-def]
    path = CACHE / name
    if not path.exists():
        t0 = time.perf_counter()
        CACHE.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make())
        print(f"  built {name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return path.read_bytes()


def mobilenet_v2():  # type: ignore[no-untyped-def]
    import keras
    from make_sparse_fixtures import SEED, randomize_batch_norms

    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)
    inputs = keras.Input((224, 224, 3), batch_size=1)
    model = keras.applications.MobileNetV2(weights=None, input_tensor=inputs, classifier_activation=None)
    randomize_batch_norms(model)
    return model


def models() -> dict[str, bytes]:
    from make_sparse_fixtures import cluster, convert, prune

    def pruned(fraction: float):  # type: ignore[no-untyped-def]
        m = mobilenet_v2()
        prune(m, fraction)
        return m

    def clustered():  # type: ignore[no-untyped-def]
        m = mobilenet_v2()
        cluster(m, 16)
        return m

    files = {}
    for pct in (50, 80):
        f = pct / 100
        files[f"float{pct}_dense"] = build(f"mbv2_pruned{pct}_float.tflite", lambda f=f: convert(pruned(f)))
        files[f"float{pct}_tf"] = build(
            f"mbv2_pruned{pct}_float_tfsparse.tflite", lambda f=f: convert(pruned(f), sparsity=True)
        )
        files[f"int8{pct}_dense"] = build(f"mbv2_pruned{pct}_int8.tflite", lambda f=f: convert(pruned(f), int8=True))
        files[f"int8{pct}_tf"] = build(
            f"mbv2_pruned{pct}_int8_tfsparse.tflite", lambda f=f: convert(pruned(f), int8=True, sparsity=True)
        )
    files["clustered_pc"] = build("mbv2_clustered16_int8.tflite", lambda: convert(clustered(), int8=True))
    files["clustered_pt"] = build(
        "mbv2_clustered16_int8_pt.tflite", lambda: convert(clustered(), int8=True, per_channel=False)
    )
    return files


def outputs(data: bytes, delegates: str, samples: int) -> list[np.ndarray]:
    from npupass.verify.litert import LiteRTModel, make_inputs

    m = LiteRTModel(data, delegates)
    return [y for s in range(samples) for y in m.run(make_inputs(m.inputs, s))]


def run_pass(data: bytes, pipeline: str) -> tuple[bytes, object, float]:
    from npupass.backends.tflite import serialize_tflite
    from npupass.frontends.tflite import parse_tflite
    from npupass.passes import run_passes

    model = parse_tflite(data)
    t0 = time.perf_counter()
    result = run_passes(model, pipeline)
    seconds = time.perf_counter() - t0
    return serialize_tflite(model), result, seconds


def sparsity(files: dict[str, bytes], samples: int) -> None:
    print("\n== encode-sparsity on pruned MobileNetV2 224 ==")
    header = f"{'model':10} {'dense MiB':>9} {'TF MiB':>8} {'ours MiB':>9} {'ours/TF':>8} {'ours/dense':>10}"
    print(f"{header}  bit-exact vs dense [xnnpack, builtin]  rewrites  seconds")
    for kind in ("float", "int8"):
        for pct in (50, 80):
            dense, tf = files[f"{kind}{pct}_dense"], files[f"{kind}{pct}_tf"]
            ours, result, seconds = run_pass(dense, "encode-sparsity")
            exact = []
            for delegates in ("default", "none"):
                a, b = outputs(dense, delegates, samples), outputs(ours, delegates, samples)
                exact.append(all(x.tobytes() == y.tobytes() for x, y in zip(a, b, strict=True)))
            rewrites = dict(result.passes[0].rewrites)  # type: ignore[attr-defined]
            print(
                f"{kind} {pct}%   {len(dense) / MIB:9.2f} {len(tf) / MIB:8.2f} {len(ours) / MIB:9.2f} "
                f"{len(ours) / len(tf):8.3f} {len(ours) / len(dense):10.3f}  {exact}  {rewrites}  {seconds:.1f}",
                flush=True,
            )


def distinct_per_layer(data: bytes) -> list[int]:
    from npupass.frontends.tflite import parse_tflite
    from npupass.passes.pattern import WEIGHTED_OPS

    model = parse_tflite(data)
    g = model.main
    counts = []
    for op in g.ops:
        if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            w = g.inputs_of(op)[WEIGHTED_OPS[op.type].weight]
            counts.append(int(np.unique(np.asarray(w.data)).size))
    return counts


def clusters(files: dict[str, bytes], samples: int) -> None:
    from npupass.backends.ethos_u.vela import VelaConfig, compile_vela
    from npupass.verify.litert import LiteRTModel, make_inputs

    print("\n== encode-clusters on 16-cluster MobileNetV2 224 (int8) ==")
    for key, what in (("clustered_pc", "per-channel"), ("clustered_pt", "per-tensor")):
        data = files[key]
        ours, result, seconds = run_pass(data, "encode-clusters")
        before, after = distinct_per_layer(data), distinct_per_layer(ours)
        rep_a, rep_b = (compile_vela(m, VelaConfig("ethos-u55-128"), isolate=False) for m in (data, ours))
        ma, mb = LiteRTModel(data), LiteRTModel(ours)
        steps, total, moved = 0, 0, 0
        for s in range(samples):
            inputs = make_inputs(ma.inputs, s)
            for x, y in zip(ma.run(inputs), mb.run(inputs), strict=True):
                d = np.abs(x.astype(np.int64) - y.astype(np.int64))
                steps, total, moved = max(steps, int(d.max())), total + d.size, moved + int(np.count_nonzero(d))
        rewrites = dict(result.passes[0].rewrites)  # type: ignore[attr-defined]
        print(f"{what}: {len(before)} weighted layers, rewrites {rewrites} in {seconds:.1f} s")
        median, small_before, small_after = (
            int(np.median(before)),
            sum(c <= 17 for c in before),
            sum(c <= 17 for c in after),
        )
        print(f"  distinct int8 values per layer: before max {max(before)} (median {median}), after max {max(after)}")
        print(f"  layers with <= 17 values: before {small_before}, after {small_after} of {len(after)}")
        print(
            f"  Vela ethos-u55-128 encoded weights: {rep_a.encoded_weights:,} -> {rep_b.encoded_weights:,} bytes "
            f"({rep_b.encoded_weights / rep_a.encoded_weights:.3f}x; original {rep_a.original_weights:,})"
        )
        print(
            f"  outputs vs input model: max {steps} step(s), {moved}/{total} elements moved ({samples} samples)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    files = models()
    sparsity(files, args.samples)
    clusters(files, args.samples)


if __name__ == "__main__":
    main()
