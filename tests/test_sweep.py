"""`npupass sweep`: grids, the local engine against separate compiles, failing cells, resume after Ctrl-C,
summary.html in headless Chromium. The Ray engine has its own file (test_sweep_ray.py)."""

from __future__ import annotations

import csv
import html
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import playwright.sync_api as sync_api
import pytest
from test_view_html import CHROMIUM, CHROMIUM_ARGS, png_colours

from npupass.cli import main
from npupass.sweep import COLUMNS, Grid, GridError
from npupass.sweep.summary import PLOTS_MISSING, pareto_front

MODELS = Path(__file__).parent / "models"
FOUR = ["cnn_int8.tflite", "qat_cnn_int8.tflite", "cpu_ops_int8.tflite", "pruned_qat_cnn_int8.tflite"]
SIX = [
    ("ethos-u55-32", {}),
    ("ethos-u55-64", {}),
    ("ethos-u55-256", {}),
    ("ethos-u65-256", {}),
    ("ethos-u85-256", {}),
    ("ethos-u55-128", {"system_config": "Ethos_U55_High_End_Embedded", "memory_mode": "Shared_Sram"}),
]


def grid_toml(models: list[str], targets: list[tuple[str, dict[str, str]]], pipelines: list[str]) -> str:
    def target(name: str, options: dict[str, str]) -> str:
        if not options:
            return json.dumps(name)
        return "{ target = " + json.dumps(name) + "".join(f", {k} = {json.dumps(v)}" for k, v in options.items()) + " }"

    return (
        f"models = {json.dumps(models)}\n"
        f"pipelines = {json.dumps(pipelines)}\n"
        "targets = [\n" + "".join(f"  {target(n, o)},\n" for n, o in targets) + "]\n"
    )


def rows_of(outdir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (outdir / "results.jsonl").read_text().splitlines()]


def csv_rows(outdir: Path) -> list[dict[str, str]]:
    with (outdir / "results.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


# --- the grid ---------------------------------------------------------------------------------------------
def test_grid_from_a_toml_file_with_per_target_options(tmp_path: Path) -> None:
    (tmp_path / "grid.toml").write_text(
        grid_toml([str(MODELS / "cnn_int8.tflite"), str(MODELS / "qat_cnn_*.tflite")], SIX[:2] + SIX[5:], ["default"])
    )
    grid = Grid.from_toml(tmp_path / "grid.toml")
    assert [Path(m.path).name for m in grid.models] == [
        "cnn_int8.tflite",
        "qat_cnn_fq.tflite",
        "qat_cnn_int8.tflite",
        "qat_cnn_int8_floatio.tflite",
    ]
    assert [c.label for c in grid.configs] == [
        "ethos-u55-32",
        "ethos-u55-64",
        "ethos-u55-128 (Shared_Sram, Ethos_U55_High_End_Embedded)",
    ]
    cells = grid.cells()
    assert len(cells) == 12 and len({c.key for c in cells}) == 12


def test_grid_from_lists_folders_and_pipelines(tmp_path: Path) -> None:
    (tmp_path / "a.tflite").write_bytes((MODELS / "cnn_int8.tflite").read_bytes())
    (tmp_path / "b.onnx").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not a model")
    grid = Grid.from_lists(
        [str(tmp_path)], ["ethos-u55-128,ETHOS-U65-256"], ["default", " fuse-activations , fold-batch-norm"]
    )
    assert [Path(m.path).name for m in grid.models] == ["a.tflite", "b.onnx"]
    assert [c.target for c in grid.configs] == ["ethos-u55-128", "ethos-u65-256"]
    assert grid.pipelines == ["default", "fuse-activations,fold-batch-norm"]
    # The key follows the model's bytes, not its name: the same file under two names is the same cell.
    assert (
        grid.models[0].sha256 == Grid.from_lists([str(MODELS / "cnn_int8.tflite")], ["ethos-u55-128"]).models[0].sha256
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--targets", "ethos-u55-512"],
            "unknown target 'ethos-u55-512': Ethos-U55 comes as ethos-u55-32, "
            "ethos-u55-64, ethos-u55-128, ethos-u55-256",
        ),
        (["--targets", "ethos-u55-128", "--passes", "fold-everything"], "unknown pass 'fold-everything'; available: "),
        (["--targets", "ethos-u55-128", "--set", "memory_mode"], "--set memory_mode: expected NAME=VALUE"),
        (
            ["--targets", "xnnpack", "--set", "memory_mode=Shared_Sram"],
            "no target in the grid has the option 'memory_mode'",
        ),
        (
            ["--targets", "ethos-u55-128", "--set", "optimise=Fast"],
            "option optimise of ethos-u55-128: 'Fast' is not one of Performance, Size",
        ),
        (
            ["--targets", "ethos-u55-128", "--engine", "ray", "--jobs", "2"],
            "--jobs is for the local engine; a Ray cluster runs as many cells as it has CPUs",
        ),
        (["--targets", "ethos-u55-128", "--address", "127.0.0.1:1"], "--address is for --engine ray"),
        ([], "sweep needs --grid FILE, or --models and --targets"),
    ],
)
def test_bad_grids_fail_in_one_line_before_anything_runs(
    tmp_path: Path, capsys: Any, args: list[str], message: str
) -> None:
    models = ["--models", str(MODELS / "cnn_int8.tflite")] if args else []
    assert main(["sweep", *models, *args, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"npupass: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_bad_grid_files(tmp_path: Path, capsys: Any) -> None:
    cases = {
        "models = [": "not a TOML grid file: ",
        'models = ["nowhere.tflite"]\ntargets = ["ethos-u55-128"]': "nowhere.tflite: no such model file or folder",
        'models = ["*.nothing"]\ntargets = ["ethos-u55-128"]': "*.nothing: no model matches",
        'model = ["x"]': "unknown key 'model' (a grid has models, pipelines, targets)",
        f'models = ["{MODELS / "cnn_int8.tflite"}"]\ntargets = [{{ target = "ethos-u55-128", speed = 2 }}]': (
            "target ethos-u55-128 has no option 'speed' (its options: config, system_config, memory_mode, optimise, "
            "max_cluster_values, cluster_tolerance, vela_timeout, emit, c_section)"
        ),
        f'models = ["{MODELS / "cnn_int8.tflite"}"]\ntargets = [3]': "a target is a name or a table",
    }
    for text, message in cases.items():
        path = tmp_path / "grid.toml"
        path.write_text(text)
        with pytest.raises(GridError) as info:
            Grid.from_toml(path)
        assert message in str(info.value)
    assert main(["sweep", "--grid", str(tmp_path / "missing.toml")]) == 2
    assert capsys.readouterr().err == f"npupass: error: {tmp_path / 'missing.toml'}: no such grid file\n"
    assert main(["sweep", "--grid", str(path), "--targets", "ethos-u55-128"]) == 2
    assert (
        capsys.readouterr().err == "npupass: error: --grid and --targets do not go together: put it in the grid file\n"
    )


def test_pareto_front_keeps_the_points_nothing_beats() -> None:
    points = [(1.0, 9.0), (2.0, 5.0), (3.0, 6.0), (4.0, 1.0), (2.5, 5.0), (5.0, 0.5)]
    assert pareto_front(points) == [0, 1, 3, 5]


# --- 24 cells against 24 separate compiles --------------------------------------------------------------------
@pytest.fixture(scope="module")
def sweep24(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sweep24")
    (folder / "grid.toml").write_text(grid_toml([str(MODELS / m) for m in FOUR], SIX, ["default"]))
    assert main(["sweep", "--grid", str(folder / "grid.toml"), "-o", str(folder / "out"), "--jobs", "2"]) == 0
    return folder / "out"


def test_24_cells_give_the_cycles_of_separate_compiles(sweep24: Path, tmp_path: Path, capsys: Any) -> None:
    rows = csv_rows(sweep24)
    assert len(rows) == 24 and {r["status"] for r in rows} == {"ok"}
    assert list(rows[0]) == list(COLUMNS)
    for i, row in enumerate(rows):
        options = json.loads(row["options"] or "{}")
        flags = [x for k, v in options.items() for x in (f"--{k.replace('_', '-')}", v)]
        out = tmp_path / str(i)
        assert main(["compile", row["model"], "--target", row["target"], "-o", str(out), *flags]) == 0
        report = json.loads((out / "report.json").read_text())
        cell = (Path(row["model"]).name, row["target"], row["options"])
        assert int(row["cycles"]) == report["performance"]["total_cycles"], cell
        assert int(row["npu_ops"]) == report["ops"]["npu"] and int(row["cpu_ops"]) == report["ops"]["cpu"], cell
        assert int(row["sram_peak_bytes"]) == report["memory"]["peak_bytes"]["Sram"], cell
        assert int(row["encoded_weight_bytes"]) == report["memory"]["encoded_weight_bytes"], cell
        assert float(row["inference_seconds"]) == report["performance"]["inference_seconds"], cell
    capsys.readouterr()
    # The CPU ops come with their reasons, as compile reports them.
    cpu = [r for r in rows if r["model"].endswith("cpu_ops_int8.tflite") and r["target"] == "ethos-u55-32"]
    reasons = json.loads(cpu[0]["cpu_reasons"])
    assert len(reasons) == int(cpu[0]["cpu_ops"]) == 2 and all(reasons.values())


def test_a_second_run_computes_nothing(sweep24: Path, capsys: Any) -> None:
    grid = sweep24.parent / "grid.toml"
    before = (sweep24 / "results.csv").read_text()
    assert main(["sweep", "--grid", str(grid), "-o", str(sweep24), "--json"]) == 0
    assert capsys.readouterr().out == ""  # --json streams the rows computed: none
    assert (sweep24 / "results.csv").read_text() == before


# --- failing cells and the summary page -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two good models, a file that is no model, and one Vela crashes on (npupass's validator now refuses it
    before Vela sees it); two targets, two pipelines."""
    folder = tmp_path_factory.mktemp("mixed")
    (folder / "corrupt.tflite").write_bytes(b"TFL3" + bytes(range(60)))
    models = [
        str(MODELS / "pruned_qat_cnn_int8.tflite"),
        str(folder / "corrupt.tflite"),
        str(MODELS / "broken" / "vela_crash_int8.tflite"),
        str(MODELS / "cpu_ops_int8.tflite"),
    ]
    code = main(
        [
            *("sweep", "--models", *models, "--targets", "ethos-u55-64,ethos-u85-256"),
            *("--passes", "default", "fold-batch-norm,fuse-activations,encode-sparsity", "-o", str(folder / "out")),
        ]
    )
    assert code == 1  # some cells failed
    return folder / "out"


def test_failing_cells_are_rows_that_say_why(mixed: Path) -> None:
    rows = csv_rows(mixed)
    assert len(rows) == 16
    errors = {(Path(r["model"]).name, r["status"], r["error"]) for r in rows if r["status"] != "ok"}
    corrupt = next(r["error"] for r in rows if r["model"].endswith("corrupt.tflite"))
    assert corrupt.startswith(str(mixed.parent / "corrupt.tflite") + ": ")  # names the model, not a temporary file
    assert errors == {
        ("corrupt.tflite", "failed", corrupt),
        (
            "vela_crash_int8.tflite",
            "failed",
            "invalid model: tensor 'cnn_1/conv2d_1_2/convolution': zero point -192 is outside INT8 [-128, 127] "
            "(and 1 more)",
        ),
    }
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 8 and all(int(r["cycles"]) > 0 and r["error"] == "" for r in ok)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_summary_html_in_chromium_offline(mixed: Path, browser: Any) -> None:
    attempted: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            attempted.append(r.request.url)
            r.abort()

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.route("**/*", route)
    context.on("request", lambda req: None if req.url.startswith("file://") else attempted.append(req.url))
    context.set_offline(True)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto((mixed / "summary.html").as_uri())
        page.wait_for_selector('body[data-ready="1"]', state="attached", timeout=10_000)
        assert page.inner_text("#counts").startswith("16 of 16 cells: 8 ok, 8 failed.")
        for plot in ("inference_time", "latency_sram", "cpu_ops", "speedup"):
            box = page.locator(f"#plot-{plot} svg").bounding_box()
            assert box is not None and box["width"] > 400 and box["height"] > 200, plot
        inference = page.text_content("#plot-inference_time svg") or ""
        assert "inference time (ms)" in inference and "pruned_qat_cnn_int8.tflite" in inference
        assert "ethos-u85-256" in inference and "corrupt.tflite" not in inference
        assert "Pareto front" in (page.text_content("#plot-latency_sram svg") or "")
        assert "fold-batch-norm,fuse-activations,encode-sparsity" in (page.text_content("#plot-speedup svg") or "")
        assert page.locator("#failures li").count() == 8
        assert page.locator("#results tbody tr").count() == 16
        assert page.locator("#results tbody tr.failed").count() == 8
        shot = page.screenshot(full_page=True)
        assert len(png_colours(shot)) > 20  # drawn plots, not a blank page
        assert errors == []
    finally:
        context.close()
    assert attempted == [], f"the page tried the network: {attempted}"
    for plot in ("inference_time", "latency_sram", "cpu_ops", "speedup"):
        assert (mixed / "plots" / f"{plot}.svg").read_bytes().startswith(b"<?xml")
        assert (mixed / "plots" / f"{plot}.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_without_matplotlib_the_table_is_still_written(mixed: Path, tmp_path: Path) -> None:
    """matplotlib made unimportable in a fresh interpreter: summary.html has the table and says why no plots."""
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from pathlib import Path\n"
        "from npupass.sweep import Grid\n"
        "from npupass.sweep.results import read_rows\n"
        "from npupass.sweep.summary import write_summary\n"
        f"rows = list(read_rows(Path({str(mixed)!r})).values())\n"
        f"grid = Grid.from_lists([{str(MODELS / 'cpu_ops_int8.tflite')!r}], ['ethos-u55-64'])\n"
        f"files, note = write_summary(Path({str(tmp_path)!r}), rows, grid)\n"
        "print(note); print(sorted(p.name for p in files))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == [PLOTS_MISSING, "['summary.html']"]
    page = (tmp_path / "summary.html").read_text()
    assert html.escape(PLOTS_MISSING) in page and page.count('<tr class="') == 16 and "<svg" not in page


# --- Ctrl-C half-way, then resume ----------------------------------------------------------------------------
def test_interrupted_sweep_resumes_with_only_the_missing_cells(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "npupass", "sweep", "--jobs", "1", "--json", "-o", str(out),
        "--models", str(MODELS / "cnn_int8.tflite"), str(MODELS / "qat_cnn_int8.tflite"),
        "--targets", "ethos-u55-32,ethos-u55-128,ethos-u65-256,ethos-u85-256",
    ]  # fmt: skip
    # A session of its own, so Ctrl-C can go to the whole process group, as a terminal sends it.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    streamed = []
    assert proc.stdout is not None
    for line in proc.stdout:
        streamed.append(json.loads(line))
        if len(streamed) == 3:
            os.killpg(proc.pid, signal.SIGINT)
            break
    rest = proc.stdout.read()
    streamed += [json.loads(line) for line in rest.splitlines()]
    assert proc.wait(timeout=60) == 130
    err = proc.stderr.read() if proc.stderr else ""
    kept = rows_of(out)
    assert err == (
        f"npupass: interrupted: {len(kept)} of 8 cells kept in {out}; "
        f"run the same sweep again to compute the other {8 - len(kept)}\n"
    )
    assert 3 <= len(kept) < 8 and [r["key"] for r in kept] == [r["key"] for r in streamed]
    assert len(csv_rows(out)) == len(kept)
    deadline = time.monotonic() + 10
    while True:  # every worker (and Vela child) of the process group is gone
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "a worker outlived the interrupted sweep"
        time.sleep(0.1)

    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    computed = [json.loads(line) for line in again.stdout.splitlines()]
    assert len(computed) == 8 - len(kept)  # only the missing cells ran
    assert not {r["key"] for r in computed} & {r["key"] for r in kept}
    table = csv_rows(out)
    assert len(table) == 8 and len({r["key"] for r in table}) == 8 and {r["status"] for r in table} == {"ok"}
    assert len(rows_of(out)) == 8


def test_the_readme_grid_file_reads(tmp_path: Path) -> None:
    text = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### `npupass sweep") : text.index("### Exit codes")]
    (block,) = re.findall(r"```toml\n(.*?)```", section, re.S)
    for folder, name in (("models", "a.tflite"), ("more", "b.tflite")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_bytes((MODELS / "cnn_int8.tflite").read_bytes())
    (tmp_path / "grid.toml").write_text(block)
    grid = Grid.from_toml(tmp_path / "grid.toml")
    assert [m.path for m in grid.models] == ["models/a.tflite", "more/b.tflite"]
    assert [c.label for c in grid.configs] == [
        "ethos-u55-128",
        "ethos-u55-256 (Shared_Sram, Ethos_U55_High_End_Embedded)",
    ]
    assert grid.pipelines == ["default", "fold-batch-norm,fuse-activations,encode-sparsity"]
