"""Time the HTML viewer on a synthetic 2,100-op graph: view_data + write_html in Python, then the page's
own time to interactive in headless Chromium (/usr/bin/chromium via Playwright, offline).

Targets: the HTML is written in <= 2 s and the page is interactive in <= 3 s. Interactive is what the
page itself records: `window.npupassReady`, the performance.now() (milliseconds since navigation
start) after the graph is drawn and the first frame has gone by. Medians of several runs; every page
load is a fresh browser context.

    python bench/view_bench.py [--ops 2100] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from synthetic import synthetic_model

from npupass.view.data import view_data
from npupass.view.html import write_html

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
WRITE_TARGET_S = 2.0
INTERACTIVE_TARGET_S = 3.0


def time_write(n_ops: int, fake_quant: bool, path: Path, repeats: int) -> tuple[list[float], int]:
    """Seconds for view_data + write_html of a fresh synthetic model, `repeats` times; and its op count."""
    seconds = []
    n = 0
    for _ in range(repeats):
        model = synthetic_model(n_ops, fake_quant=fake_quant)
        n = len(model.main.ops)
        start = time.perf_counter()
        write_html(view_data(model, f"synthetic {n_ops} ops"), path)
        seconds.append(time.perf_counter() - start)
    return seconds, n


def time_interactive(path: Path, repeats: int, n_ops: int) -> list[float]:
    """The page's own time to interactive in seconds, `repeats` fresh pages."""
    from playwright.sync_api import sync_playwright

    seconds = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for _ in range(repeats):
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                context.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort())
                context.set_offline(True)
                page = context.new_page()
                page.goto(path.as_uri(), wait_until="commit")
                page.wait_for_selector('body[data-ready="1"]', state="attached", timeout=60_000)
                ready_ms = page.evaluate("window.npupassReady")
                drawn = page.locator(".node").count()
                if drawn != n_ops:
                    raise SystemExit(f"the page drew {drawn} ops, not {n_ops}")
                seconds.append(ready_ms / 1000)
                context.close()
        finally:
            browser.close()
    return seconds


def run(n_ops: int, fake_quant: bool, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "view.html"
        write_s, n = time_write(n_ops, fake_quant, path, repeats)
        size = path.stat().st_size
        ready_s = time_interactive(path, repeats, n)
    write_median = statistics.median(write_s)
    ready_median = statistics.median(ready_s)
    return {
        "model": f"synthetic({n_ops}{', fake_quant=True' if fake_quant else ''})",
        "ops": n,
        "html_bytes": size,
        "write_s": write_s,
        "write_median_s": write_median,
        "interactive_s": ready_s,
        "interactive_median_s": ready_median,
        "write_ok": write_median <= WRITE_TARGET_S,
        "interactive_ok": ready_median <= INTERACTIVE_TARGET_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=2100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [run(args.ops, fake_quant, args.repeats) for fake_quant in (False, True)]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['model']}: {row['ops']} ops, {row['html_bytes']:,} bytes of HTML")
            print(
                f"  view_data + write_html  median {row['write_median_s']:.3f} s "
                f"(target <= {WRITE_TARGET_S:g} s: {'ok' if row['write_ok'] else 'MISSED'})"
            )
            print(
                f"  time to interactive     median {row['interactive_median_s']:.3f} s "
                f"(target <= {INTERACTIVE_TARGET_S:g} s: {'ok' if row['interactive_ok'] else 'MISSED'})"
            )
    if not all(row["write_ok"] and row["interactive_ok"] for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
