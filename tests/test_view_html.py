"""The HTML viewer in a real headless Chromium (/usr/bin/chromium, driven by Playwright), offline.

Every page is opened from file:// in a context that is offline and aborts any request that is not
file://; each test then checks that no such request was even attempted.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import playwright.sync_api as sync_api
import pytest

from npupass.frontends import load_model
from npupass.ir.graph import Model
from npupass.view.data import op_label, view_data
from npupass.view.html import render_html, write_html

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
MODEL = Path(__file__).parent / "models" / "mobilenet_v2_035_96_int8.tflite"
GREY = "#d9dce1"  # viewer.js: ops with no value for the colouring
HOSTILE = "</script><script>alert(1)</script>"


@dataclass
class Session:
    page: Any
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[[Path], Session]]:
    """Opens an HTML file offline; afterwards asserts no network request was attempted."""
    contexts: list[Any] = []
    attempted: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            attempted.append(r.request.url)
            r.abort()

    def open_(path: Path) -> Session:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        contexts.append(context)
        context.route("**/*", route)
        context.on("request", lambda req: None if req.url.startswith("file://") else attempted.append(req.url))
        context.set_offline(True)
        page = context.new_page()
        session = Session(page)

        def on_dialog(dialog: Any) -> None:
            session.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda exc: session.errors.append(str(exc)))
        page.goto(path.as_uri())
        page.wait_for_selector('body[data-ready="1"]', state="attached", timeout=10_000)
        return session

    yield open_
    for context in contexts:
        context.close()
    assert attempted == [], f"the page tried the network: {attempted}"


@pytest.fixture(scope="module")
def model() -> Model:
    return load_model(MODEL)


@pytest.fixture(scope="module")
def page_file(model: Model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("view") / "mobilenet.html"
    write_html(view_data(model, MODEL.name), path)
    return path


def js_number(v: float) -> str:
    """What viewer.js fmtNum prints for a non-integer: String(Number(v.toPrecision(6)))."""
    r = float(f"{v:.6g}")
    if r.is_integer():
        return str(int(r))
    assert 1e-7 <= abs(r) < 1e21, "JS prints this one with an exponent"
    return format(Decimal(repr(r)), "f")


def png_colours(png: bytes) -> set[bytes]:
    """The distinct pixel values of an 8-bit RGB or RGBA PNG (pure Python: zlib + unfiltering)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, bytearray()
    width = height = bpp = 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        body = png[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour_type in (2, 6) and interlace == 0
            bpp = 3 if colour_type == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(bytes(idat))
    stride = width * bpp
    prev = bytearray(stride)
    colours: set[bytes] = set()
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = prev[i]
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                up_left = prev[i - bpp] if i >= bpp else 0
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 0xFF
        colours.update(bytes(line[x : x + bpp]) for x in range(0, stride, bpp))
        prev = line
    return colours


def fills(page: Any) -> list[str]:
    return list(page.eval_on_selector_all(".node > rect", "els => els.map(e => e.getAttribute('fill'))"))


def test_loads_offline_and_draws_every_op(open_page: Callable[[Path], Session], page_file: Path, model: Model) -> None:
    text = page_file.read_text(encoding="utf-8")
    assert "<link" not in text and " src=" not in text and "@import" not in text and "url(" not in text
    s = open_page(page_file)
    graph = model.main
    assert s.page.locator(".node").count() == len(graph.ops)
    assert s.page.locator(".io").count() == len(graph.inputs) + len(graph.outputs)
    assert s.page.locator("path.edge").count() == len(view_data(model, "x")["subgraphs"][0]["edges"])
    assert s.page.evaluate("typeof window.npupassReady") == "number"
    assert s.errors == [] and s.dialogs == []


def test_search_finds_an_op_by_name(open_page: Callable[[Path], Session], page_file: Path, model: Model) -> None:
    graph = model.main
    labels = [op_label(graph, op) for op in graph.ops]
    # a name no other op's name contains, so the first match is this op
    index = next(i for i in range(5, len(labels)) if sum(labels[i].lower() in n.lower() for n in labels) == 1)
    s = open_page(page_file)
    s.page.fill("#np-search", labels[index])
    count = s.page.locator("#np-search-count")
    assert int(count.get_attribute("data-count") or 0) >= 1
    assert s.page.locator(f'.node.match[data-id="{index}"]').count() == 1
    s.page.press("#np-search", "Enter")
    assert s.page.locator(".node.current").get_attribute("data-id") == str(index)
    assert labels[index] in s.page.inner_text("#np-panel")
    s.page.fill("#np-search", "depthwise_conv_2d")  # op types match too, case-insensitively
    n_depthwise = sum(op.type == "DEPTHWISE_CONV_2D" for op in graph.ops)
    assert count.get_attribute("data-count") == str(n_depthwise)
    assert s.page.locator(".node.match").count() == n_depthwise


def test_conv_panel_shows_per_axis_quantization(
    open_page: Callable[[Path], Session], page_file: Path, model: Model
) -> None:
    graph = model.main
    index, conv = next((i, op) for i, op in enumerate(graph.ops) if op.type == "CONV_2D")
    weight = graph.inputs_of(conv)[1]
    assert weight is not None and weight.quant is not None and weight.quant.per_axis
    s = open_page(page_file)
    s.page.click(f'.node[data-id="{index}"]')
    panel = s.page.inner_text("#np-panel")
    assert weight.name in panel
    assert "axis" in panel
    assert js_number(float(weight.quant.scale[0])) in panel
    assert f"{len(weight.quant.scale)} channels" in panel
    assert s.page.locator(f'.node.selected[data-id="{index}"]').count() == 1


def test_screenshot_is_not_blank(open_page: Callable[[Path], Session], page_file: Path) -> None:
    s = open_page(page_file)
    box = s.page.locator("#np-canvas").bounding_box()
    assert box is not None
    png = s.page.screenshot(clip={"x": box["x"], "y": box["y"], "width": min(box["width"], 640), "height": 320})
    assert len(png_colours(png)) > 1


def test_zoom_and_pan_move_the_drawing(open_page: Callable[[Path], Session], page_file: Path) -> None:
    s = open_page(page_file)
    page = s.page

    def transform() -> str:
        return str(page.get_attribute("#np-viewport", "transform"))

    start = transform()
    page.click("#np-zoom-in")
    zoomed = transform()
    assert zoomed != start and "scale(1.25)" in zoomed
    box = page.locator("#np-canvas").bounding_box()
    assert box is not None
    x, y = box["x"] + 60, box["y"] + 300  # empty canvas left of the graph
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 40, y + 90, steps=4)
    page.mouse.up()
    panned = transform()
    assert panned != zoomed and "scale(1.25)" in panned
    page.click("#np-fit")
    assert transform() != panned


def test_subgraph_selector(open_page: Callable[[Path], Session], tmp_path: Path) -> None:
    model = load_model(MODEL.with_name("control_flow.tflite"))
    assert len(model.subgraphs) > 1
    path = tmp_path / "control_flow.html"
    write_html(view_data(model, "control flow"), path)
    s = open_page(path)
    assert s.page.locator(".node").count() == len(model.subgraphs[0].ops)
    s.page.select_option("#np-subgraph", "1")
    assert s.page.locator(".node").count() == len(model.subgraphs[1].ops)
    assert s.errors == []


def test_colour_by_metric_changes_fills(open_page: Callable[[Path], Session], model: Model, tmp_path: Path) -> None:
    graph = model.main
    missing = 3
    metrics = {op_label(graph, op): {"cycles": float(i * 10)} for i, op in enumerate(graph.ops) if i != missing}
    path = tmp_path / "metrics.html"
    write_html(view_data(model, "metrics", metrics=metrics), path)
    s = open_page(path)
    before = fills(s.page)
    assert s.page.eval_on_selector_all("#np-colour option", "els => els.map(e => e.value)")[-1] == "metric:cycles"
    s.page.select_option("#np-colour", "metric:cycles")
    after = fills(s.page)
    assert len(after) == len(graph.ops)
    assert after != before
    assert after[missing] == GREY
    assert len({f for i, f in enumerate(after) if i != missing}) > 2
    assert "cycles" in s.page.inner_text("#np-legend")


def test_partitions_collapse_and_diff_marks(open_page: Callable[[Path], Session], model: Model, tmp_path: Path) -> None:
    graph = model.main
    ops = graph.ops
    placement = {op: {"target": "CPU" if i == 10 else "NPU", "reason": f"r{i}"} for i, op in enumerate(ops)}
    diff = {
        "a": "before",
        "b": "after",
        "removed": [{"type": "MUL", "name": "gone/mul"}],
        "added": [{"type": ops[2].type, "name": op_label(graph, ops[2])}],
        "changed": [{"type": ops[4].type, "name": op_label(graph, ops[4]), "what": ["options"]}],
        "tensors_changed": [{"name": "some/tensor", "what": ["quantization"]}],
    }
    data = view_data(model, "parts", placement=placement, changed={ops[2]: "added", ops[4]: "changed"}, diff=diff)
    path = tmp_path / "parts.html"
    write_html(data, path)
    s = open_page(path)
    page = s.page
    assert page.locator("#np-parts .part").count() == 2  # ops 0-9 and 11-end
    page.click('#np-toggles .toggle[data-part="0"]')
    assert page.locator(".node.hidden").count() == 10
    assert page.locator(".node").count() == len(ops)
    page.click('#np-toggles .toggle[data-part="0"]')
    assert page.locator(".node.hidden").count() == 0
    assert page.locator(".node.chg-added").get_attribute("data-id") == "2"
    assert page.locator(".node.chg-changed").get_attribute("data-id") == "4"
    diff_text = page.inner_text("#np-diff")
    for name in ("gone/mul", "some/tensor", "quantization", op_label(graph, ops[4])):
        assert name in diff_text
    page.click("#np-diff li.link >> nth=1")  # the changed op: centred and selected
    assert page.locator(".node.selected").get_attribute("data-id") == "4"
    page.select_option("#np-colour", "placement")
    colours = fills(page)
    assert colours[10] != colours[0] and colours[0] == colours[11]
    page.click('.node[data-id="0"]')
    panel = page.inner_text("#np-panel")
    assert "NPU" in panel and "r0" in panel


def test_hostile_names_do_not_run(open_page: Callable[[Path], Session], tmp_path: Path) -> None:
    model = load_model(MODEL)
    graph = model.main
    first = graph.ops[0]
    assert not first.name  # so the op is labelled with its output tensor's name
    graph.outputs_of(first)[0].name = HOSTILE
    data = view_data(model, HOSTILE)
    text = render_html(data)
    assert HOSTILE not in text
    path = tmp_path / "hostile.html"
    write_html(data, path)
    assert path.read_text(encoding="utf-8") == text
    s = open_page(path)
    assert s.page.locator(".node").count() == len(graph.ops)
    s.page.click('.node[data-id="0"]')
    assert HOSTILE in s.page.inner_text("#np-panel")  # shown as text
    assert HOSTILE in s.page.title()
    s.page.fill("#np-search", "<script>")
    assert s.page.locator("#np-search-count").get_attribute("data-count") == "1"
    assert s.page.evaluate("document.querySelectorAll('script').length") == 2
    assert s.dialogs == [] and s.errors == []


def test_data_block_round_trips(model: Model) -> None:
    graph = model.main
    metrics = {op_label(graph, graph.ops[0]): {"cycles": float("nan"), "bytes": 3.0}}
    data = view_data(model, HOSTILE + " & <!-- \u2028", metrics=metrics)
    text = render_html(data)
    start = text.index('<script type="application/json" id="npupass-data">') + len(
        '<script type="application/json" id="npupass-data">'
    )
    block = text[start : text.index("</script>", start)]
    assert "<" not in block and ">" not in block and "&" not in block
    expected = json.loads(json.dumps(data, default=str).replace("NaN", '"nan"'))
    assert json.loads(block) == expected


NPU_FILL, CPU_FILL = "#8fd19e", "#f5b27a"  # viewer.js PLACEMENT_COLOURS


def test_compile_report_page_colours_ops_by_where_vela_placed_them(
    open_page: Callable[[Path], Session], tmp_path: Path
) -> None:
    """`npupass compile` writes report.html: it opens coloured by placement, each op's colour is the device
    report.json gives it, NPU runs are outlined as partitions, a CPU op's panel gives Vela's reason."""
    from npupass.cli import main

    assert (
        main(["compile", str(MODEL.parent / "cpu_ops_int8.tflite"), "--target", "ethos-u55-128", "-o", str(tmp_path)])
        == 0
    )
    report = json.loads((tmp_path / "report.json").read_text())
    devices = [row["device"] for row in report["layers"]]
    assert devices.count("CPU") == report["ops"]["cpu"] == 2
    s = open_page(tmp_path / "report.html")
    page = s.page
    assert page.locator("#np-colour").input_value() == "placement"
    assert fills(page) == [NPU_FILL if d == "NPU" else CPU_FILL for d in devices]
    assert page.locator("#np-parts .part").count() == report["ops"]["npu_partitions"] == 3
    page.click("#np-fit")
    png = page.screenshot()
    seen = png_colours(png)
    for colour in (NPU_FILL, CPU_FILL):
        assert bytes.fromhex(colour[1:]) in {c[:3] for c in seen}, f"{colour} not drawn"
    cpu = devices.index("CPU")
    page.click(f'.node[data-id="{cpu}"]')
    panel = page.inner_text("#np-panel")
    assert "CPU" in panel and "L2_NORMALIZATION is not an operator Vela runs on Ethos-U55" in panel
    page.select_option("#np-colour", "metric:cycles")  # the per-layer cycles colour the NPU ops
    assert len(set(fills(page))) > 2
    assert s.errors == []


def test_view_target_draws_the_predicted_placement(open_page: Callable[[Path], Session], tmp_path: Path) -> None:
    from npupass.cli import main

    out = tmp_path / "placed.html"
    assert (
        main(["view", str(MODEL.parent / "cpu_ops_int8.tflite"), "--target", "ethos-u55-128", "--html", str(out)]) == 0
    )
    page = open_page(out).page
    assert page.locator("#np-colour").input_value() == "placement"
    assert fills(page).count(CPU_FILL) == 2 and page.locator("#np-parts .part").count() == 3
