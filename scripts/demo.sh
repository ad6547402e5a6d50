#!/usr/bin/env bash
# Set up (idempotent) and run the main job on the bundled example model: compile a
# quantization-aware MobileNetV2 export for the Ethos-U55 (128 MACs) through Vela and print the report.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
MODEL="${1:-tests/models/qat_mobilenet_v2_035_96_fq.tflite}"
TARGET="${2:-ethos-u55-128}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
.venv/bin/npupass compile "$MODEL" --target "$TARGET" -o out
