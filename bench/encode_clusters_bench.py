"""What the default Ethos-U pipeline (with encode-clusters) buys over plain Vela on clustered models.

    .venv/bin/python bench/encode_clusters_bench.py [--accelerator ethos-u55-128]

Per model: plain Vela on the file as given (a fake-quant export cannot go to Vela as is: its plain figure
is Vela on the converter's int8 twin, when there is one), npupass's default pipeline without encode-clusters,
and the default pipeline (which includes it): encoded weight bytes and total cycles, and how far
encode-clusters moved the outputs in LiteRT, in output quantization steps (compile's report.json
"accuracy"). Vela's figures are deterministic: one run each.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import npupass
from npupass.backends.ethos_u.compile import NEEDS
from npupass.backends.ethos_u.vela import VelaConfig, compile_vela
from npupass.passes.policy import default_pipeline

FIXTURES = Path(__file__).parent.parent / "tests" / "models"
MODELS = [
    ("pcqat_dscnn_int8.tflite", None),
    ("pcqat_dscnn_fq.tflite", "pcqat_dscnn_int8.tflite"),
    ("pcqat_mobilenet_v2_035_96_int8.tflite", None),
    ("clustered_mbv2s_int8.tflite", None),
    ("clustered_mbv2s_int8_pt.tflite", None),
    ("clustered_qat_cnn_int8.tflite", None),
    ("clustered_qat_cnn_fq.tflite", "clustered_qat_cnn_int8.tflite"),
    ("mobilenet_v2_035_96_int8.tflite", None),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accelerator", default="ethos-u55-128")
    args = parser.parse_args()
    print(
        f"{'model':40} {'plain Vela B':>12} {'no encode B':>12} {'default B':>10} {'saved':>7} "
        f"{'plain cycles':>12} {'default cycles':>14} {'steps':>5}"
    )
    for name, twin in MODELS:
        path = FIXTURES / name
        plain = compile_vela((FIXTURES / (twin or name)).read_bytes(), VelaConfig(args.accelerator))
        names = [n for n in default_pipeline(npupass.load(path), NEEDS) if n != "encode-clusters"]
        without = npupass.compile(path, args.accelerator, passes=names).report.data
        default = npupass.compile(path, args.accelerator).report.data
        encoded = default["memory"]["encoded_weight_bytes"]
        steps = [c["max_steps"] for c in default["accuracy"] if c["pass"] == "encode-clusters"]
        print(
            f"{name:40} {plain.encoded_weights:12,} {without['memory']['encoded_weight_bytes']:12,} {encoded:10,} "
            f"{1 - encoded / plain.encoded_weights:7.1%} {plain.total_cycles:12,} "
            f"{default['performance']['total_cycles']:14,} {steps[0] if steps else '-':>5}"
        )


if __name__ == "__main__":
    main()
