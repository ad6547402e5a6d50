"""The house is one-way: frontends -> ir -> passes -> backends, with verify/ and view/ beside; nothing imports
the CLI. Every import in the package (module level or inside functions) is checked."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "src" / "npupass"

# layer -> the npupass layers it must never import
FORBIDDEN = {
    "ir": {"frontends", "passes", "backends", "verify", "view", "cli", "api", "summary"},
    "frontends": {"passes", "backends", "verify", "view", "cli", "api"},
    "passes": {"frontends", "backends", "verify", "view", "cli", "api"},
    "backends": {"cli", "frontends", "api"},
    "view": {"passes", "backends", "frontends", "cli", "api"},
    "verify": {"cli", "view", "api"},
}


def layer_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, npupass module) for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, name) for line, name in found if name == "npupass" or name.startswith("npupass.")]


def violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = layer_of(path)
        for line, module in imported(path):
            target = module.split(".")[1] if "." in module else "npupass"
            if target in FORBIDDEN.get(layer, set()) or (
                target == "cli" and layer != "cli" and path.stem != "__main__"
            ):
                found.append(f"{path.relative_to(PACKAGE)}:{line} ({layer}) imports {module}")
            if module == "npupass" and layer not in ("cli", "api"):
                found.append(f"{path.relative_to(PACKAGE)}:{line} ({layer}) imports the package top (the API)")
    return found


def test_imports_flow_one_way() -> None:
    assert violations() == []


def test_the_checker_sees_a_backwards_import(tmp_path: Path) -> None:
    bad = PACKAGE / "ir" / "_backwards_probe.py"
    bad.write_text("def f() -> None:\n    from npupass.cli import main  # noqa\n", encoding="utf-8")
    try:
        assert violations() == ["ir/_backwards_probe.py:2 (ir) imports npupass.cli"]
    finally:
        bad.unlink()
