"""Time one sweep on the local engine with 1 and 2 workers, and on a Ray cluster of 2 CPUs on this machine.

    .venv/bin/python bench/sweep_bench.py [--repeats 3]

The sweep: 4 committed fixtures x 6 Ethos-U configurations = 24 cells (npupass.compile each). Every run
writes to a fresh folder (nothing cached) and is timed from making the engine (worker processes started,
or connecting to the cluster) to the last row, tables included, summary.html not. The Ray head is started
once (`ray start --head`, 127.0.0.1, 2 CPUs, its own process group) before the timed runs and stopped
after them; its start-up is printed apart. Needs the `ray` extra.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from npupass.sweep import Grid, LocalEngine, RayEngine, sweep
from npupass.sweep.engines import Engine

MODELS = Path(__file__).parent.parent / "tests" / "models"
FOUR = ["cnn_int8", "qat_cnn_int8", "mobilenet_v2_035_96_int8", "mobilenet_v3_small_int8"]
TARGETS = ["ethos-u55-32,ethos-u55-64,ethos-u55-128,ethos-u55-256,ethos-u65-256,ethos-u85-256"]


def timed(grid: Grid, make: Callable[[], Engine], cells: list[float], setup: list[float]) -> float:
    """The sweep's wall time; appends the sum of its cells' own wall times to `cells` and the time making
    the engine took (connecting to Ray; nothing for the local pool, which starts with the first cell) to `setup`."""
    with tempfile.TemporaryDirectory(prefix="npupass-sweep-bench-") as out:
        start = time.perf_counter()
        engine = make()
        setup.append(time.perf_counter() - start)
        result = sweep(grid, out, engine, summary=False)
        seconds = time.perf_counter() - start
    assert result.ran == result.total and result.failed == 0, (result.ran, result.failed)
    cells.append(sum(r["wall_seconds"] for r in result.rows))
    return seconds


@contextlib.contextmanager
def ray_head() -> Iterator[tuple[str, float]]:
    """A Ray head on 127.0.0.1 with 2 CPUs: (address, seconds it took to start)."""
    temp = tempfile.mkdtemp(prefix="npr")
    # Ray keeps an auth token under HOME; one left by an earlier cluster makes this one refuse its clients
    os.environ["HOME"] = temp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray = Path(sys.executable).parent / "ray"
    log = Path(temp) / "start.log"
    command = [
        *(str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2"),
        *("--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"),
    ]
    start = time.perf_counter()
    with log.open("w") as fh:
        head = subprocess.Popen(
            command,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        while "Ray runtime started" not in log.read_text():
            if head.poll() is not None:
                raise SystemExit(log.read_text())
            time.sleep(0.2)
        yield f"127.0.0.1:{port}", time.perf_counter() - start
    finally:
        head.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    grid = Grid.from_lists([str(MODELS / f"{m}.tflite") for m in FOUR], TARGETS)
    print(f"{len(grid.cells())} cells ({len(grid.models)} models x {len(grid.configs)} configurations), ", end="")
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    runs: dict[str, list[float]] = {"jobs 1": [], "jobs 2": [], "ray": []}
    cells: dict[str, list[float]] = {name: [] for name in runs}
    setup: dict[str, list[float]] = {name: [] for name in runs}
    with ray_head() as (address, started):
        print(f"ray head started in {started:.1f} s (not in the figures below)")
        for _ in range(args.repeats):  # interleaved, so a change in the machine's load hits every engine alike
            runs["jobs 1"].append(timed(grid, lambda: LocalEngine(1), cells["jobs 1"], setup["jobs 1"]))
            runs["jobs 2"].append(timed(grid, lambda: LocalEngine(2), cells["jobs 2"], setup["jobs 2"]))
            runs["ray"].append(timed(grid, lambda: RayEngine(address), cells["ray"], setup["ray"]))
    median = {name: statistics.median(times) for name, times in runs.items()}
    for name, times in runs.items():
        print(
            f"{name:7s} median {median[name]:6.2f} s  ({', '.join(f'{t:.2f}' for t in times)}); "
            f"engine set-up {statistics.median(setup[name]):.2f} s, "
            f"cells' own wall time summed {statistics.median(cells[name]):.2f} s"
        )
    print(f"speed-up of --jobs 2 over --jobs 1: {median['jobs 1'] / median['jobs 2']:.2f}x")
    print(f"Ray (2 CPUs) against --jobs 2: {100 * (median['ray'] / median['jobs 2'] - 1):+.1f}% wall time")


if __name__ == "__main__":
    main()
