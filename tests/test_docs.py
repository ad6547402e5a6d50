"""The CLI's help and README.md against one source: the parser, the pass registry and the backends.

Fails when a pass, a target, a command or an option exists without being documented in README.md."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from npupass.backends.base import backends
from npupass.cli import build_parser
from npupass.passes.manager import available_passes

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _sections(command: str) -> str:
    """README's sections for `npupass COMMAND` (heading to the next heading)."""
    parts = re.split(r"\n(?=#{2,3} )", README)
    found = [p for p in parts if p.startswith(f"### `npupass {command}")]
    assert found, f"README.md has no section for `npupass {command}`"
    return "\n".join(found)


def test_every_command_and_option_is_in_its_readme_section() -> None:
    missing = []
    for name, parser in _commands().items():
        text = _sections(name)
        for action in parser._actions:
            flags = [o for o in action.option_strings if o not in ("-h", "--help")]
            if flags and not any(re.search(re.escape(f) + r"(?![\w-])", text) for f in flags):
                missing.append(f"{name} {flags[-1]}")
    assert missing == []


def test_every_pass_is_in_the_readme_pass_table() -> None:
    backends()  # backends register their own passes
    table = _sections("passes")
    assert [n for n, _ in available_passes() if f"| `{n}` |" not in table] == []


def test_every_target_family_is_in_the_readme() -> None:
    for backend in backends():
        for family in getattr(backend, "families", None) or [t for t, _ in backend.targets()]:
            short = family.replace("ethos-", "").split("-{")[0]
            assert family in README or short in README, family


def test_help_names_what_the_commands_read() -> None:
    def helped(*args: str) -> str:
        run = [sys.executable, "-m", "npupass", *args, "--help"]
        return " ".join(subprocess.run(run, capture_output=True, text=True, check=True).stdout.split())

    for command in ("info", "view"):
        assert "a .tflite or .onnx model" in helped(command)
    assert "TFLite in LiteRT, ONNX in onnxruntime" in helped()
    compile_help = helped("compile")
    assert "ethos-u: fold-batch-norm,fuse-activations,[fold-fake-quant],encode-clusters" in compile_help.replace(
        "- ", "-"
    )
