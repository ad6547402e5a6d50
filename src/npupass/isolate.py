"""Run a function in a forked child process with a time limit: native code that may crash or hang
(Vela's Regor, the LiteRT interpreter) runs there, so a segfault or an endless loop becomes an
outcome the caller turns into a one-line error instead of taking npupass down with it.

The child inherits everything already imported (import heavy modules before calling, once), writes
whatever the native code prints on file descriptors 1 and 2 to a log the parent reads back, and
returns its result through a pipe (so results must pickle).
"""

from __future__ import annotations

import contextlib
import faulthandler
import multiprocessing
import os
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Outcome:
    """How a child ended: "ok" (value is the result), "error" (an exception; message is its text),
    "crashed" (died by a signal or exited without a result; message names how) or "timeout"."""

    status: str
    value: Any = None
    message: str = ""
    log: str = ""
    seconds: float = 0.0

    @property
    def last_log_line(self) -> str:
        """The last thing the child printed, as one line ("" when it printed nothing)."""
        blocks = [" ".join(line.split()) for line in self.log.strip().split("\n\n") if line.strip()]
        return blocks[-1] if blocks else ""


def _child(fn: Callable[..., Any], args: tuple[Any, ...], log_path: str, conn: Any) -> None:
    os.setpgid(0, 0)  # its own process group: stopping it also stops whatever it started
    _die_with_parent()
    # a crash here is reported by the parent as one line; a faulthandler the parent enabled (pytest does)
    # would also dump every thread's stack into the parent's stderr
    faulthandler.disable()
    fd = os.open(log_path, os.O_WRONLY)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as exc:  # the exception travels back as its message
        text = " ".join(str(exc).split())
        conn.send(("error", text or type(exc).__name__))
    finally:
        conn.close()
        os._exit(0)  # skip the parent's exit handlers and stream flushes (a copied lock could hang them)


def call_forked(
    fn: Callable[..., Any],
    *args: Any,
    timeout: float | None = None,
    tick: Callable[[float], None] | None = None,
) -> Outcome:
    """Run `fn(*args)` in a forked child; `tick(elapsed_seconds)` is called about ten times a second.

    The child is killed when it runs longer than `timeout` seconds (None: no limit) or when the
    parent is interrupted; it is never left behind.
    """
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    start = time.perf_counter()
    with tempfile.NamedTemporaryFile(prefix="npupass-child-", suffix=".log") as log:
        # not a daemon: a daemonic process may not fork children of its own (Vela inside a forked compile)
        child = context.Process(target=_child, args=(fn, args, log.name, send), daemon=False)
        child.start()
        send.close()
        result: tuple[str, Any] | None = None
        timed_out = False
        try:
            while result is None:
                wait = 0.1 if timeout is None else max(0.0, min(0.1, timeout - (time.perf_counter() - start)))
                if receive.poll(wait):
                    try:
                        result = receive.recv()
                    except EOFError:
                        break
                elif not child.is_alive() and not receive.poll(0):
                    break
                elapsed = time.perf_counter() - start
                if timeout is not None and elapsed > timeout:
                    timed_out = True
                    break
                if tick is not None:
                    tick(elapsed)
        finally:  # interrupted, timed out or done: never leave the child (or its children) behind
            if result is None and child.is_alive():
                _kill_group(child.pid)
                child.kill()
            child.join()
            receive.close()
        text = Path(log.name).read_text(encoding="utf-8", errors="replace")
    seconds = time.perf_counter() - start
    if result is not None:
        status, payload = result
        if status == "ok":
            return Outcome("ok", value=payload, log=text, seconds=seconds)
        return Outcome("error", message=payload, log=text, seconds=seconds)
    if timed_out:
        return Outcome("timeout", message=f"no result after {timeout:g} s", log=text, seconds=seconds)
    code = child.exitcode or 0
    how = f"signal {_signal_name(-code)}" if code < 0 else f"exit code {code} without a result"
    return Outcome("crashed", message=how, log=text, seconds=seconds)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _kill_group(pid: int | None) -> None:
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _die_with_parent() -> None:
    """Linux: SIGKILL this child when the parent dies, even by a signal that skips its cleanup."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
