"""A mutation-fuzz campaign over the fixtures (the big campaign: python tests/fuzz_harness.py --count 5000)."""

from __future__ import annotations

from fuzz_harness import fixture_files, fuzz, read_and_write_onnx


def test_mutated_fixtures_end_in_format_errors_or_valid_models() -> None:
    stats = fuzz(fixture_files(), count=1500, seed=2024, time_limit=5.0)
    assert stats.runs == 1500
    assert stats.findings == []
    assert stats.slowest_seconds < 5.0
    assert stats.rejected > 300  # the campaign really reaches the error paths
    assert set(stats.kinds) == {"bits", "field", "truncate", "bytes"}


def test_mutated_onnx_files_end_in_clear_errors_or_valid_models() -> None:
    stats = fuzz(fixture_files("onnx"), count=300, seed=7, time_limit=5.0, target=read_and_write_onnx)
    assert stats.runs == 300
    assert stats.findings == []
    assert stats.slowest_seconds < 5.0
    assert stats.rejected > 50 and stats.accepted > 0
