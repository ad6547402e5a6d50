"""Sparsity and cluster acceptance figures on Keras MobileNetV2 224 (weights=None, nothing downloaded).

    .venv/bin/python bench/sparsity_bench.py [--samples 2] [--cases quantile-80 ...] [--no-clusters]

encode-sparsity: the models of bench/make_pruned_models.py (built in a child process, cached under
~/.cache/npupass/pruned/; the first build takes an hour on two cores): MobileNetV2 pruned the ways
users prune (per-layer quantile, tfmot ConstantSparsity with and without depthwise, tfmot
PolynomialDecay, tfmot 2:4, 1x4 blocks; 50/80/90%), each float and per-channel int8, dense and with
the converter's EXPERIMENTAL_SPARSITY. Per model it prints our file against the converter's and the
dense one, two floors (the non-zero values alone, which no exact encoding goes below; and with one u8
index per non-zero, CSR at its narrowest), the largest per-weight ratio to the converter's encoding,
bit-exactness against the dense model in LiteRT (default delegate = XNNPACK, and builtin kernels) and
whether the converter's own file loads in each; then the per-weight table of the int8 80% quantile
model.

encode-clusters: 16-cluster MobileNetV2 (clustered before BN folding, built into ~/.cache/npupass/
sparsity/) converted full int8 with per-channel and with per-tensor weights: the distinct int8 values
per clustered layer, Vela 5.2 (ethos-u55-128) encoded weight bytes before and after, and the output
difference in quantization steps.
"""

from __future__ import annotations

import argparse
import os
import subprocess
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


def clustered_models() -> dict[str, bytes]:
    from make_sparse_fixtures import cluster, convert

    def clustered():  # type: ignore[no-untyped-def]
        m = mobilenet_v2()
        cluster(m, 16)
        return m

    return {
        "clustered_pc": build("mbv2_clustered16_int8.tflite", lambda: convert(clustered(), int8=True)),
        "clustered_pt": build(
            "mbv2_clustered16_int8_pt.tflite", lambda: convert(clustered(), int8=True, per_channel=False)
        ),
    }


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


ITEMSIZE = {"FLOAT32": 4, "FLOAT16": 2, "INT8": 1}


def stored(row: dict) -> int:  # type: ignore[type-arg]
    """Bytes of a weight's non-zero values."""
    return round(row["dense_bytes"] * (1 - row["zeros"]))


def loads(data: bytes, delegates: str) -> bool:
    from npupass.verify.litert import LiteRTModel, ReferenceError

    try:
        LiteRTModel(data, delegates)
    except ReferenceError:
        return False
    return True


def sparsity(cases: list[str], samples: int) -> None:
    from make_pruned_models import path

    from npupass.backends.tflite import serialize_tflite
    from npupass.frontends.tflite import parse_tflite
    from npupass.passes import PassManager
    from npupass.passes.encode_sparsity import size_table, weight_sizes

    subprocess.run([sys.executable, str(ROOT / "bench" / "make_pruned_models.py"), *cases], check=True)
    print("\n== encode-sparsity on MobileNetV2 224 pruned the ways users prune ==")
    print(
        f"{'model':22} {'dense bytes':>11} {'TF bytes':>10} {'ours bytes':>10} {'ours/TF':>7} {'ours/dense':>10} "
        f"{'floor/TF: values, +u8':>21} {'worst w/TF':>10}  bit-exact [xnnpack, builtin]  TF file loads  seconds"
    )
    table = None
    for case in cases:
        style, pct = case.rsplit("-", 1)
        for kind in ("float", "int8"):
            dense, tf = path(style, int(pct), kind, False).read_bytes(), path(style, int(pct), kind, True).read_bytes()
            model = parse_tflite(dense)
            manager = PassManager("encode-sparsity")
            t0 = time.perf_counter()
            manager.run(model)
            seconds = time.perf_counter() - t0
            ours = serialize_tflite(model)
            rows = weight_sizes(manager.passes)
            exact = []
            for delegates in ("default", "none"):
                a, b = outputs(dense, delegates, samples), outputs(ours, delegates, samples)
                exact.append(all(x.tobytes() == y.tobytes() for x, y in zip(a, b, strict=True)))
            # floors: the non-zero values alone (no exact encoding stores less), and with one u8
            # index each (CSR at its narrowest, no segments: element-wise pruning's practical floor)
            other = len(dense) - sum(r["dense_bytes"] for r in rows)
            values = other + sum(min(r["dense_bytes"], stored(r)) for r in rows)
            u8 = other + sum(min(r["dense_bytes"], stored(r) + stored(r) // ITEMSIZE[r["dtype"]]) for r in rows)
            worst = max((r["chosen_bytes"] / r["converter_bytes"] for r in rows if not r["note"]), default=0.0)
            tf_loads = [loads(tf, d) for d in ("default", "none")]
            print(
                f"{style + pct + '% ' + kind:22} {len(dense):11,} {len(tf):10,} {len(ours):10,} "
                f"{len(ours) / len(tf):7.3f} {len(ours) / len(dense):10.3f} "
                f"{values / len(tf):10.3f} {u8 / len(tf):10.3f} {worst:10.3f}  "
                f"{exact}  {tf_loads}  {seconds:.1f}",
                flush=True,
            )
            if (style, pct, kind) == ("quantile", "80", "int8"):
                table = rows
    if table is not None:
        header, lines, notes = size_table(table)
        print("\nper weight, quantile 80% int8 (bytes; chosen and converter include their extra ops):")
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
        for line in [header, *lines]:
            print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))))
        print("\n".join(notes))


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
    parser.add_argument("--cases", nargs="*", help="STYLE-PCT of bench/make_pruned_models.py (default: all)")
    parser.add_argument("--no-clusters", action="store_true", help="only the encode-sparsity figures")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from make_pruned_models import CASES

    sparsity(args.cases or [f"{s}-{p}" for s, p in CASES], args.samples)
    if not args.no_clusters:
        clusters(clustered_models(), args.samples)


if __name__ == "__main__":
    main()
