"""Lossless round trip on the big Keras models: read -> write -> read is structurally identical and
gives bit-identical outputs in LiteRT on several seeded inputs.

    .venv/bin/python bench/roundtrip.py [--samples 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from make_keras_models import DEFAULT_CACHE, ensure_models

from npupass.backends.tflite import write_tflite
from npupass.frontends.tflite import read_tflite
from npupass.ir.compare import structural_differences
from npupass.verify import verify_files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in ensure_models(args.cache).items():
            out = Path(tmp) / f"{name}.tflite"
            write_tflite(read_tflite(path), out)
            diffs = structural_differences(read_tflite(path), read_tflite(out))
            result = verify_files(path, out, samples=args.samples, seed=0)
            row = {
                "model": name,
                "ops": sum(len(g.ops) for g in read_tflite(out).subgraphs),
                "structural_differences": diffs,
                "bit_exact": result.bit_exact,
                "samples": args.samples,
            }
            failed |= bool(diffs) or not result.bit_exact
            rows.append(row)
            if not args.json:
                verdict = "identical" if not diffs else f"{len(diffs)} differences: {diffs[:3]}"
                print(f"{name:24s} {row['ops']:4d} ops  structure {verdict}  outputs bit-exact: {result.bit_exact}")
    if args.json:
        print(json.dumps(rows, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
