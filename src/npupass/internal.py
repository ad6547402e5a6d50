"""Naming where an unexpected exception (a bug in npupass, never bad input) came from.

The CLI's last line of defence turns any exception that is not an NpupassError into one line,
"npupass: internal error in STAGE: ...; please report with the model". The stage is read from the
traceback: the innermost frame that belongs to a pass (the PassManager knows which pass it was
running), a frontend, a backend, the verifier or the viewer.
"""

from __future__ import annotations

import traceback
from types import TracebackType

MAX_DETAIL = 300  # characters of the exception's message in the one-line report


def stage_of(tb: TracebackType | None) -> str:
    """The pipeline stage a traceback went through last ("pass legalize-ethos-n", "backend ethos_n" ...)."""
    stage = "npupass"
    for frame, _ in traceback.walk_tb(tb):
        module = str(frame.f_globals.get("__name__", ""))
        parts = module.split(".")
        if parts[0] != "npupass" or len(parts) < 2:
            continue
        if module == "npupass.passes.manager":
            name = getattr(frame.f_locals.get("p"), "name", None)
            if frame.f_code.co_name in ("run", "_run") and isinstance(name, str):
                stage = f"pass {name}"
        elif parts[1] == "passes" and len(parts) > 2 and not stage.startswith("pass "):
            stage = f"pass {parts[2].replace('_', '-')}"  # a pass's code used outside the PassManager
        elif parts[1] == "frontends":
            stage = "import" if len(parts) < 3 else f"import ({parts[2]})"
        elif parts[1] == "backends" and len(parts) > 2:
            stage = f"backend {parts[2]}" + (f" ({parts[3]})" if len(parts) > 3 else "")
        elif parts[1] in ("verify", "view"):
            stage = {"verify": "verification", "view": "view"}[parts[1]]
    return stage


def internal_error_line(exc: BaseException) -> str:
    """One line for an unexpected exception: its stage, type and message."""
    text = " ".join(str(exc).split())
    if len(text) > MAX_DETAIL:
        text = text[:MAX_DETAIL] + "..."
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return f"npupass: internal error in {stage_of(exc.__traceback__)}: {detail}; please report with the model"
