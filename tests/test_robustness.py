"""Last lines of defence: native code in forked children with time limits, internal errors in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import MODELS

from npupass.cli import main
from npupass.ir.graph import Model
from npupass.isolate import call_forked
from npupass.passes import PASSES
from npupass.passes.manager import Context, Pass
from npupass.verify.litert import LiteRTModel, ReferenceError


def _segfault() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def _sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def _refuse(text: str) -> None:
    raise ValueError(text)


def test_a_child_that_crashes_hangs_or_raises_is_an_outcome_not_the_end() -> None:
    crashed = call_forked(_segfault)
    assert (crashed.status, crashed.message) == ("crashed", "signal SIGSEGV")
    start = time.perf_counter()
    hung = call_forked(_sleep, 30.0, timeout=0.5)
    assert (hung.status, hung.message) == ("timeout", "no result after 0.5 s")
    assert time.perf_counter() - start < 5.0
    refused = call_forked(_refuse, "no\n  such   thing")
    assert (refused.status, refused.message) == ("error", "no such thing")
    done = call_forked(_sleep, 0.0, timeout=30.0)
    assert (done.status, done.value) == ("ok", "slept")


def _start_and_hang(pid_file: str) -> None:
    helper = subprocess.Popen(["sleep", "60"])
    Path(pid_file).write_text(str(helper.pid))
    time.sleep(60)


def test_a_stopped_child_takes_what_it_started_along(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    outcome = call_forked(_start_and_hang, str(pid_file), timeout=1.0)
    assert outcome.status == "timeout"
    helper = int(pid_file.read_text())
    time.sleep(0.2)
    state = Path(f"/proc/{helper}/stat")
    assert not state.exists() or state.read_text().split()[2] == "Z"  # gone, or a zombie awaiting its reaper


def _nested() -> str:
    inner = call_forked(_sleep, 0.0)
    return f"{inner.status} {inner.value}"


def test_a_forked_child_may_fork_its_own() -> None:
    """Vela and LiteRT fork inside a compile that itself runs forked (the fuzz campaign's --isolate)."""
    outcome = call_forked(_nested, timeout=30.0)
    assert (outcome.status, outcome.value) == ("ok", "ok slept")


def test_litert_runs_in_a_child_and_its_hang_is_one_error() -> None:
    data = (MODELS / "cnn_int8.tflite").read_bytes()
    model = LiteRTModel(data)
    assert [s.shape for s in model.inputs] == [(1, 32, 32, 3)] and [s.shape for s in model.outputs] == [(1, 10)]
    with pytest.raises(ReferenceError) as err:
        LiteRTModel(data, timeout=0.0001)
    assert str(err.value) == "LiteRT did not load the model within 0.0001 s (stopped)"


def test_vela_watchdog_stops_a_compile_and_writes_nothing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    model = MODELS / "cnn_int8.tflite"
    before = model.read_bytes()
    argv = ["compile", str(model), "--target", "ethos-u55-128", "-o", str(out), "--vela-timeout", "0.001"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == "npupass: error: Vela did not finish compiling the model in 0.001 s (stopped; see --vela-timeout)\n"
    assert not out.exists() and model.read_bytes() == before


class _Buggy(Pass):
    name = "buggy"
    summary = "divides by zero (an internal error, for the test)"

    def run(self, model: Model, ctx: Context) -> None:
        ctx.rewrites["divide"] += 1 // len(model.subgraphs[1:])


def test_an_internal_error_is_one_line_with_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(PASSES, _Buggy.name, _Buggy)
    out = tmp_path / "out.tflite"
    argv = ["convert", str(MODELS / "cnn_int8.tflite"), "-o", str(out), "--passes", "buggy"]
    assert main(argv) == 3
    captured = capsys.readouterr()
    line = "npupass: internal error in pass buggy: ZeroDivisionError: integer division or modulo by zero; "
    assert captured.err == line + "please report with the model\n"
    assert captured.out == "" and not out.exists()
    assert main(["--debug", *argv]) == 3
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert err.endswith(line + "please report with the model\n")
    assert "in run\n" in err
