"""`npupass sweep --engine ray` against a real Ray cluster started on 127.0.0.1 for this module (`ray start
--head --block`, 2 CPUs, in a process group of its own that the teardown ends), compared with the local engine."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from npupass.sweep.engines import RAY_MISSING

MODELS = Path(__file__).parent / "models"
RAY = Path(sys.executable).parent / "ray"
GRID = [
    "--models",
    str(MODELS / "cnn_int8.tflite"),
    str(MODELS / "broken" / "vela_crash_int8.tflite"),
    str(MODELS / "cpu_ops_int8.tflite"),
    "--targets",
    "ethos-u55-128,ethos-u85-256",
]


# The cluster and its clients share a HOME of their own: Ray keeps an auth token in ~/.ray, and another
# Ray on this machine may have left a different one there.
ENV: dict[str, str] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A head node on 127.0.0.1 with 2 CPUs; yields its address. Its own temporary folder (short: Ray's
    sockets live there) and its own process group, so the teardown stops it and nothing else."""
    temp = tempfile.mkdtemp(prefix="npr")
    port = free_port()
    command = [
        str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
        "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
    ]  # fmt: skip
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HOME": temp}
    ENV.update(env)
    log = Path(temp) / "start.log"
    with log.open("w") as out:
        head = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the Ray head did not start in 120 s"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)  # --block: ray start stops what it started
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)  # anything left of the group
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def sweep(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "npupass", "sweep", *GRID, "--json", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=ENV or None)


def test_ray_cluster_through_address_gives_the_local_rows(cluster: str, tmp_path: Path) -> None:
    ray = sweep("--engine", "ray", "--address", cluster, "-o", str(tmp_path / "ray"))
    assert ray.returncode == 1, ray.stderr  # the Vela-crash cells failed, as rows
    local = sweep("--jobs", "2", "-o", str(tmp_path / "local"))
    assert local.returncode == 1, local.stderr

    def table(out: Path) -> dict[str, tuple[object, ...]]:
        rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        figures = ("status", "error", "npu_ops", "cpu_ops", "cycles", "sram_peak_bytes", "encoded_weight_bytes")
        return {r["key"]: tuple(r[f] for f in figures) for r in rows}

    from_ray = table(tmp_path / "ray")
    assert len(from_ray) == 6 and from_ray == table(tmp_path / "local")
    streamed = [json.loads(line) for line in ray.stdout.splitlines()]
    assert sorted(r["key"] for r in streamed) == sorted(from_ray)
    failed = [v for v in from_ray.values() if v[0] == "failed"]  # refused by the validator before Vela
    assert [v[1] for v in failed] == [
        "invalid model: tensor 'cnn_1/conv2d_1_2/convolution': zero point -192 is outside INT8 [-128, 127] (and 1 more)"
    ] * 2


def test_unreachable_cluster_is_one_line(tmp_path: Path) -> None:
    done = sweep("--engine", "ray", "--address", f"127.0.0.1:{free_port()}", "-o", str(tmp_path / "out"))
    assert done.returncode == 2 and done.stdout == ""
    assert (
        done.stderr.startswith("npupass: error: cannot reach the Ray cluster at 127.0.0.1:")
        and done.stderr.count("\n") == 1
    )


def test_without_ray_the_engine_says_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['ray'] = None\n"  # as if Ray were not installed
        "from npupass.cli import main\n"
        f"sys.exit(main(['sweep', *{GRID!r}, '--engine', 'ray', '-o', {str(tmp_path / 'out')!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (2, f"npupass: error: {RAY_MISSING}\n")
    assert not (tmp_path / "out").exists()
