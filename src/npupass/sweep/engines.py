"""Where a sweep's cells run: local worker processes (the default) or the tasks of a Ray cluster.

Both engines send each cell's model as bytes (a remote worker shares no file system with us) and get
its row back as plain data. A cell that fails (a file that is no model, a Vela crash, a refusal) comes
back as a row with its one-line error: only the engine itself failing stops a sweep.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from npupass.errors import NpupassError
from npupass.sweep.grid import DEFAULT_PIPELINE, Cell, versions


@dataclass(frozen=True)
class Task:
    """What a worker needs for one cell, apart from the model's bytes (sent once per model where it can)."""

    key: str
    model: str
    model_sha256: str
    target: str
    options: dict[str, Any]
    pipeline: str

    @classmethod
    def of(cls, cell: Cell) -> Task:
        return cls(
            cell.key,
            cell.model.path,
            cell.model.sha256,
            cell.config.target,
            cell.config.options_dict,
            cell.pipeline,
        )


def one_line(exc: BaseException) -> str:
    """An error as one line: its message's first line, or its type when it has no message."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def run_cell(task: Task, model: bytes) -> dict[str, Any]:
    """Compile one cell and return its row (see npupass.sweep.results.COLUMNS); never raises for the cell."""
    from npupass.api import compile as compile_model

    start = time.perf_counter()
    row: dict[str, Any] = {
        "key": task.key,
        "model": task.model,
        "model_sha256": task.model_sha256,
        "target": task.target,
        "options": task.options,
        "pipeline": task.pipeline,
        "npupass_version": versions()["npupass"],
        "vela_version": versions()["vela"],
        "host": socket.gethostname(),
    }
    suffix = Path(task.model).suffix or ".tflite"
    with tempfile.TemporaryDirectory(prefix="npupass-sweep-") as tmp:
        path = Path(tmp) / f"model{suffix}"  # the loader recognises the format by content
        try:
            path.write_bytes(model)
            passes = None if task.pipeline == DEFAULT_PIPELINE else task.pipeline
            result = compile_model(path, task.target, passes=passes, options=task.options)
            row.update(status="ok", error="", **_figures(result.report))
        except Exception as exc:  # a failing cell is a row, whatever failed
            row.update(status="failed", error=one_line(exc).replace(str(path), task.model))
    row["wall_seconds"] = round(time.perf_counter() - start, 4)
    return row


def _figures(report: Any) -> dict[str, Any]:
    """The figures a row keeps from a compile report (None where the target has no such figure)."""
    data = report.to_dict()
    memory = data.get("memory") or {}
    peaks = memory.get("peak_bytes") or {}
    return {
        "npu_ops": report.npu_ops,
        "cpu_ops": report.cpu_ops,
        "cpu_reasons": report.cpu_reasons,
        "cycles": report.cycles,
        "inference_seconds": report.inference_seconds,
        "sram_peak_bytes": peaks.get("Sram"),
        # Where the weights live off the chip: flash on the systems that have it, else DRAM.
        "offchip_peak_bytes": peaks.get("OffChipFlash", peaks.get("Dram")),
        "encoded_weight_bytes": memory.get("encoded_weight_bytes"),
        "arena_bytes": memory.get("arena_bytes"),
        "applied_passes": ",".join(p["name"] for p in (data.get("passes") or {}).get("passes", [])),
    }


class Engine(Protocol):
    """Runs cells and yields their rows as they finish; `close` stops whatever still runs."""

    name: str
    workers: int

    def run(self, tasks: list[Task], models: dict[str, bytes]) -> Iterator[dict[str, Any]]: ...

    def close(self) -> None: ...


# --- local worker processes --------------------------------------------------------------------------
def _worker_init() -> None:
    """Ctrl-C goes to the whole process group: the parent decides, workers ignore it. SIGTERM (the
    parent stopping us) unwinds through Python, so a Vela child that is running is killed too."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    import npupass.api  # noqa: F401  (pay the import before the first cell, not inside its wall time)


def cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


class LocalEngine:
    """`jobs` worker processes on this machine, forked from a fresh single-threaded server process that has
    imported npupass once (multiprocessing's forkserver): nothing of the caller's state or threads is
    shared, and N workers do not pay N imports. As with any multiprocessing start method but fork, a
    script that runs a sweep needs the `if __name__ == "__main__":` guard."""

    name = "local"

    def __init__(self, jobs: int | None = None) -> None:
        self.workers = jobs or cores()
        self._pool: ProcessPoolExecutor | None = None

    def run(self, tasks: list[Task], models: dict[str, bytes]) -> Iterator[dict[str, Any]]:
        import multiprocessing

        if not tasks:
            return
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["npupass.sweep.engines", "npupass.api", "npupass.backends.ethos_u.compile"])
        workers = min(self.workers, len(tasks))
        self._pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init)
        pending: set[Future[dict[str, Any]]] = {self._pool.submit(run_cell, t, models[t.model_sha256]) for t in tasks}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    row = future.result()
                except BrokenProcessPool:
                    raise NpupassError(
                        "a sweep worker process died (killed, out of memory, or a script without the "
                        "`if __name__ == '__main__':` guard); finished rows are kept, run again to resume"
                    ) from None
                yield row
        pool, self._pool = self._pool, None
        pool.shutdown(wait=True)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list(getattr(pool, "_processes", {}).values())  # the executor has no public kill
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()


# --- Ray ----------------------------------------------------------------------------------------------
RAY_MISSING = "--engine ray needs Ray: pip install 'npupass[ray]'"


def _ray_cell(task: Task, model: bytes) -> dict[str, Any]:
    """run_cell in a Ray worker. Ray's core installs crash-signal handlers that log to stderr; the Vela
    child a compile forks would inherit them and their log line would end up as the cell's error, so
    the default handlers come back first (a crashing Vela child then dies as it does anywhere else)."""
    for name in ("SIGSEGV", "SIGABRT", "SIGFPE", "SIGBUS", "SIGILL"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    return run_cell(task, model)


class RayEngine:
    """Cells as Ray tasks (one CPU each) on the cluster at `address`, or on a local one started for the sweep."""

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise NpupassError(RAY_MISSING) from None
        self._ray = ray
        self.address = address
        self._pending: list[Any] = []
        self._started = False
        if address:
            _probe(address)
        options: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False}
        if address is None:
            options["include_dashboard"] = False
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = address or "a local cluster"
            raise NpupassError(f"cannot reach the Ray cluster at {where}: {one_line(exc)}") from None
        self._started = True
        self.workers = int(ray.cluster_resources().get("CPU", 1))

    def run(self, tasks: list[Task], models: dict[str, bytes]) -> Iterator[dict[str, Any]]:
        ray = self._ray
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_cell)
        refs = {sha: ray.put(data) for sha, data in models.items()}  # each model crosses the network once
        self._pending = [remote.remote(t, refs[t.model_sha256]) for t in tasks]
        while self._pending:
            done, self._pending = ray.wait(self._pending, num_returns=1)
            for ref in done:
                yield ray.get(ref)
        self.close()

    def close(self) -> None:
        ray = self._ray
        for ref in self._pending:
            ray.cancel(ref, force=True)  # force: end the worker running it, so nothing keeps running
        self._pending = []
        if self._started:
            self._started = False
            ray.shutdown()


def _probe(address: str, seconds: float = 5.0) -> None:
    """Fail at once when nothing listens at HOST:PORT (ray.init would retry for minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and other forms Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as exc:
        raise NpupassError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def make_engine(engine: str, jobs: int | None = None, address: str | None = None) -> Engine:
    if engine == "local":
        if address:
            raise NpupassError("--address is for --engine ray")
        return LocalEngine(jobs)
    if engine == "ray":
        if jobs:
            raise NpupassError("--jobs is for the local engine; a Ray cluster runs as many cells as it has CPUs")
        return RayEngine(address)
    raise NpupassError(f"unknown engine '{engine}': choose local or ray")
