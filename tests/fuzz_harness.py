"""Mutation fuzzing of the TFLite and ONNX readers (and of the writer on whatever they accept).

Every mutant must end in npupass's own errors (ModelFormatError, UnsupportedFeatureError ...) or in
a model that writes as TFLite without error; anything else, or a run over the time limit, is a finding.

    python tests/fuzz_harness.py --count 5000 [--format tflite|onnx] [--seed 1] [--json]

runs the big campaign (memory capped at 4 GiB); the test suite runs a smaller count.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import numpy as np

from npupass.backends.tflite import serialize_tflite
from npupass.errors import NpupassError
from npupass.frontends.tflite import parse_tflite

MODELS = Path(__file__).parent / "models"


class _TimeLimitError(Exception):
    pass


def mutate(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One random corruption of `data`: bit flips, a changed 32-bit size/offset field, or truncation."""
    buf = bytearray(data)
    kind = str(rng.choice(["bits", "field", "truncate", "bytes"], p=[0.35, 0.35, 0.15, 0.15]))
    if kind == "bits":
        for _ in range(int(rng.integers(1, 9))):
            pos = int(rng.integers(0, len(buf)))
            buf[pos] ^= 1 << int(rng.integers(0, 8))
    elif kind == "field":
        # Flatbuffer offsets, vector lengths and scalars are little-endian 32-bit words at aligned positions.
        pos = int(rng.integers(0, len(buf) // 4)) * 4
        old = int.from_bytes(buf[pos : pos + 4], "little")
        new = int(
            rng.choice(
                [
                    old + int(rng.integers(-4, 5)),
                    int(rng.integers(0, 2**32)),
                    0xFFFFFFFF,
                    0x7FFFFFFF,
                    len(buf) - pos + int(rng.integers(-8, 9)),
                    0,
                ]
            )
        )
        buf[pos : pos + 4] = (new % 2**32).to_bytes(4, "little")
    elif kind == "truncate":
        buf = buf[: int(rng.integers(0, len(buf)))]
    else:
        pos = int(rng.integers(0, len(buf)))
        length = int(rng.integers(1, 17))
        buf[pos : pos + length] = bytes(rng.integers(0, 256, min(length, len(buf) - pos), dtype=np.uint8))
    return kind, bytes(buf)


@dataclass
class FuzzStats:
    runs: int = 0
    accepted: int = 0
    rejected: int = 0
    slowest_seconds: float = 0.0
    over_limit: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "runs": self.runs,
            "accepted": self.accepted,
            "rejected_with_format_error": self.rejected,
            "uncaught": len(self.findings) - self.over_limit,
            "over_time_limit": self.over_limit,
            "slowest_seconds": round(self.slowest_seconds, 4),
            "mutations": dict(self.kinds),
            "findings": self.findings[:20],
        }


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise _TimeLimitError


def read_and_write_tflite(data: bytes) -> None:
    serialize_tflite(parse_tflite(data))


def read_and_write_onnx(data: bytes) -> None:
    """Import a mutated ONNX file (from a temporary file, as users pass paths) and write it as TFLite."""
    import tempfile

    from npupass.frontends.onnx import read_onnx
    from npupass.passes import run_passes

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mutant.onnx"
        path.write_bytes(data)
        model = read_onnx(path)
    run_passes(model, "fold-batch-norm,fuse-activations")
    serialize_tflite(model)


def fuzz(
    files: list[Path],
    count: int,
    seed: int = 0,
    time_limit: float = 5.0,
    target: Callable[[bytes], None] = read_and_write_tflite,
) -> FuzzStats:
    """Run `count` mutants spread over `files` through `target`; stop a run at `time_limit` seconds."""
    rng = np.random.default_rng(seed)
    originals = [(p.name, p.read_bytes()) for p in files]
    stats = FuzzStats()
    target(originals[0][1])  # untimed: first-use imports (onnx, onnxruntime) must not count against the limit
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        for i in range(count):
            name, data = originals[i % len(originals)]
            kind, mutant = mutate(data, rng)
            stats.kinds[kind] += 1
            stats.runs += 1
            start = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, time_limit)
            try:
                target(mutant)
                stats.accepted += 1
            except NpupassError:
                stats.rejected += 1
            except _TimeLimitError:
                stats.over_limit += 1
                stats.findings.append(f"{name} #{i} ({kind}): over {time_limit} s")
            except Exception as exc:  # anything else is a finding
                stats.findings.append(f"{name} #{i} ({kind}): {type(exc).__name__}: {exc}")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            stats.slowest_seconds = max(stats.slowest_seconds, time.perf_counter() - start)
    finally:
        signal.signal(signal.SIGALRM, previous)
    return stats


def fixture_files(kind: str = "tflite") -> list[Path]:
    return sorted(MODELS.glob(f"*.{kind}"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--format", choices=("tflite", "onnx"), default="tflite")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    start = time.perf_counter()
    files = fixture_files(args.format)
    target = read_and_write_onnx if args.format == "onnx" else read_and_write_tflite
    stats = fuzz(files, args.count, args.seed, target=target)
    report = stats.to_json() | {"seconds": round(time.perf_counter() - start, 1), "files": len(files)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    return 1 if stats.findings else 0


if __name__ == "__main__":
    sys.exit(main())
