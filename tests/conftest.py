"""Shared fixtures: the committed models under tests/models (made by scripts/make_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

MODELS = Path(__file__).parent / "models"
ALL_MODELS = sorted(p.name for p in MODELS.glob("*.tflite"))
# LiteRT has no kernel for the custom op (ExtractImagePatches) in custom_op.tflite.
RUNNABLE_MODELS = [name for name in ALL_MODELS if name != "custom_op.tflite"]


@pytest.fixture
def models() -> Path:
    return MODELS
