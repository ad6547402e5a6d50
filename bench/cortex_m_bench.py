"""TFLM LUT compression on 16-cluster MobileNetV2 224 int8 (clustered before BN folding), the issue's figure.

    .venv/bin/python bench/cortex_m_bench.py [--samples 2]

Builds the models as bench/sparsity_bench.py does (needs `pip install -e ".[fixtures]"`; cached in
~/.cache/npupass/sparsity), then for the per-channel and per-tensor int8 conversions, and for the
per-channel one after encode-clusters: the flash bytes before and after `compress_lut`, the number of
tensors compressed, whether TFLM's outputs stayed bit-identical, and the TFLM arena before and after.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "bench")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=2)
    args = parser.parse_args()
    from sparsity_bench import build, mobilenet_v2

    from npupass.backends.cortex_m.lut import compress_lut
    from npupass.backends.tflite import serialize_tflite
    from npupass.frontends.tflite import parse_tflite
    from npupass.passes import PassManager
    from npupass.verify.litert import LiteRTModel, make_inputs
    from npupass.verify.tflm import run_tflm

    def clustered():  # type: ignore[no-untyped-def]
        from make_sparse_fixtures import cluster

        m = mobilenet_v2()
        cluster(m, 16)
        return m

    from make_sparse_fixtures import convert

    files = {
        "per-channel int8": build("mbv2_clustered16_int8.tflite", lambda: convert(clustered(), int8=True)),
        "per-tensor int8": build(
            "mbv2_clustered16_int8_pt.tflite", lambda: convert(clustered(), int8=True, per_channel=False)
        ),
    }
    model = parse_tflite(files["per-channel int8"])
    PassManager(["encode-clusters"]).run(model)
    files["per-channel int8 after encode-clusters"] = serialize_tflite(model)
    for label, data in files.items():
        ref = LiteRTModel(data)
        inputs = [make_inputs(ref.inputs, s) for s in range(args.samples)]
        t0 = time.perf_counter()
        out, report = compress_lut(data, inputs)
        seconds = time.perf_counter() - t0
        before, after = run_tflm(data, inputs[:1]), run_tflm(out, inputs[:1])
        print(
            f"{label}: {report['bytes_before']:,} -> {report['bytes_after']:,} bytes ({report['ratio']:.3f}x), "
            f"{report['compressed_tensors']} tensors, TFLM outputs bit-identical: {bool(report['verified'])}, "
            f"arena {before.arena.total if before.arena else '?':,} -> {after.arena.total if after.arena else '?':,} "
            f"bytes, {seconds:.0f} s",
            flush=True,
        )
        reasons: dict[str, int] = {}
        for t in report["tensors"]:
            if not t["compressed"]:
                key = t["reason"].split(":")[0]
                reasons[key] = reasons.get(key, 0) + 1
        print(f"  left uncompressed: {reasons}")


if __name__ == "__main__":
    main()
