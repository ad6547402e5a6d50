"""Shared fixtures: the committed models under tests/models (made by scripts/make_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

MODELS = Path(__file__).parent / "models"
ALL_MODELS = sorted(p.name for p in MODELS.glob("*.tflite"))
# LiteRT has no kernel for the custom op (ExtractImagePatches) in custom_op.tflite, and refuses a rank-1
# tensor quantized along axis 3 (rank1_bias_axis3_int8.tflite).
NOT_RUNNABLE = ("custom_op.tflite", "rank1_bias_axis3_int8.tflite")
RUNNABLE_MODELS = [name for name in ALL_MODELS if name not in NOT_RUNNABLE]


@pytest.fixture
def models() -> Path:
    return MODELS
