"""Mutated models through whole commands: `compile` for each target and `convert` for ONNX.

In-process (Vela and LiteRT run in forked children, so a crash there cannot take the test down);
the big campaign with each mutant forked is `python tests/pipeline_fuzz.py --target T --count 2000 --isolate`.
"""

from __future__ import annotations

import pytest
from pipeline_fuzz import campaign

SEMANTIC = {"zero_point", "scale", "shape", "option", "type", "opcode", "axis", "drop_quant", "buffer"}
COUNTS = {"ethos-u55-128": 120, "ethos-n78": 120, "xnnpack": 60, "onnx": 120}


@pytest.mark.parametrize("target", sorted(COUNTS))
def test_mutants_end_in_one_line_errors_or_usable_outputs(target: str) -> None:
    result = campaign(target, COUNTS[target], seed=2026, time_limit=30.0)
    assert result.runs == COUNTS[target]
    assert result.findings == []  # no internal error, signal, hang or multi-line message
    assert result.counts["error"] + result.counts["ok"] == result.runs
    assert result.counts["error"] > result.runs // 5 and result.counts["ok"] > 0  # both paths are reached
    assert result.inputs_modified == 0 and result.left_behind == 0
    assert result.bad_outputs == []
    semantic = SEMANTIC if target != "onnx" else {"init_dims", "init_type", "init_value", "attribute", "op_type"}
    assert len(semantic & set(result.kinds)) >= 4
