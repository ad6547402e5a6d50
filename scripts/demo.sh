#!/usr/bin/env bash
# Set up (idempotent) and run the main job on the bundled example model:
# inspect it, then convert it through the IR and verify the result in LiteRT.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
MODEL="${1:-tests/models/mobilenet_v2_035_96_int8.tflite}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
mkdir -p out
.venv/bin/npupass info "$MODEL" --max-ops 12
.venv/bin/npupass convert "$MODEL" -o "out/$(basename "$MODEL" .tflite)_npupass.tflite" --verify
