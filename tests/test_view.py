"""`npupass view` (terminal, JSON, DOT, SVG) and `npupass diff`, on TF-made fixtures."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from rewrites import MODELS, load

from npupass.passes import DEFAULT_PIPELINE, PassManager
from npupass.passes.pattern import input_at
from npupass.view.data import view_data
from npupass.view.diff import diff_models

MOBILENET = str(MODELS / "mobilenet_v2_035_96_int8.tflite")
QAT = str(MODELS / "qat_mobilenet_v2_035_96_fq.tflite")


def npupass(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "npupass", *args], capture_output=True, text=True, timeout=300, env=env
    )


def test_terminal_view_lists_every_op() -> None:
    proc = npupass("view", MOBILENET)
    assert proc.returncode == 0, proc.stderr
    assert "subgraph 0 'main': 65 ops" in proc.stdout


def test_terminal_view_fits_120_columns_one_line_per_op() -> None:
    """The 65-op QAT MobileNetV2, piped at 120 columns: one line per op, short names, nothing wider."""
    proc = npupass("view", str(MODELS / "qat_mobilenet_v2_035_96_int8.tflite"), env=dict(os.environ, COLUMNS="120"))
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) <= 150 and max(map(len, lines)) <= 120
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == 65
    assert "│ quant_Conv1_relu " in proc.stdout  # not "mobilenetv2_0.35_96/quant_Conv1_relu/Relu6;..."
    full = json.loads(npupass("view", str(MODELS / "qat_mobilenet_v2_035_96_int8.tflite"), "--json").stdout)
    names = [op["name"] for op in full["subgraphs"][0]["ops"]]
    assert any(name.startswith("mobilenetv2_0.35_96/quant_block_1_expand_relu/") for name in names)


def test_json_view_is_the_ir() -> None:
    proc = npupass("view", MOBILENET, "--json")
    data = json.loads(proc.stdout)
    model = load("mobilenet_v2_035_96_int8")
    (sub,) = data["subgraphs"]
    assert [op["type"] for op in sub["ops"]] == [op.type for op in model.main.ops]
    assert len(sub["tensors"]) == len(model.main.tensors)
    conv = model.main.ops[0]
    weight = input_at(model.main, conv, 1)
    row = sub["tensors"][sub["ops"][0]["inputs"][1]]
    assert row["name"] == weight.name and row["quant"]["axis"] == 0
    assert row["quant"]["scale"] == [float(s) for s in weight.quant.scale]
    assert sub["ops"][0]["weights"]["unique"] == np.unique(weight.data).size
    assert len(sub["edges"]) == sum(
        1 for op in model.main.ops for t in model.main.inputs_of(op) if t is not None and model.main.producer(t)
    )


def test_sparsity_and_cluster_stats() -> None:
    data = view_data(load("pruned_cnn_float"), "pruned")
    convs = [op for op in data["subgraphs"][0]["ops"] if op["type"] == "CONV_2D"]
    assert [round(op["weights"]["zeros"], 2) for op in convs] == [0.6, 0.6, 0.6]
    data = view_data(load("clustered_qat_cnn_int8"), "clustered")
    per_channel = [op["weights"]["unique_per_channel_max"] for op in data["subgraphs"][0]["ops"] if op["weights"]]
    assert per_channel == [16, 9, 8, 16, 12]
    # weights behind QUANTIZE -> DEQUANTIZE, and sparse weights behind DENSIFY, get their statistics too
    data = view_data(load("pruned_qat_cnn_fq"), "fq")
    convs = [op for op in data["subgraphs"][0]["ops"] if op["type"] == "CONV_2D"]
    assert [round(op["weights"]["zeros"], 2) for op in convs] == [0.6, 0.6, 0.6]
    data = view_data(load("sparse_fc_int8"), "sparse")
    fc = next(op for op in data["subgraphs"][0]["ops"] if op["type"] == "FULLY_CONNECTED")
    assert round(fc["weights"]["zeros"], 3) == 0.802


def test_svg_of_mobilenet_is_valid(tmp_path: Path) -> None:
    out = tmp_path / "m.svg"
    proc = npupass("view", MOBILENET, "--svg", str(out))
    assert proc.returncode == 0, proc.stderr
    root = ET.parse(out).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    nodes = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "node"]
    model = load("mobilenet_v2_035_96_int8")
    assert len(nodes) == len(model.main.ops) + len(model.main.inputs) + len(model.main.outputs)


def test_svg_without_graphviz_writes_dot_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "m.svg"
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))  # no dot on this PATH
    proc = npupass("view", MOBILENET, "--svg", str(out), env=env)
    assert proc.returncode == 2
    assert proc.stderr == (
        "npupass: error: Graphviz's 'dot' is not installed (Debian: apt-get install graphviz); "
        f"wrote the DOT text to {tmp_path / 'm.dot'} instead\n"
    )
    assert not out.exists()
    assert (tmp_path / "m.dot").read_text().startswith("digraph ")


def test_dot_text(tmp_path: Path) -> None:
    out = tmp_path / "m.dot"
    assert npupass("view", MOBILENET, "--dot", str(out)).returncode == 0
    text = out.read_text()
    op_nodes = [
        line for line in text.splitlines() if line.strip().startswith("op") and " [label=" in line and "->" not in line
    ]
    assert len(op_nodes) == 65 and text.rstrip().endswith("}")


def test_dot_keeps_non_ascii_names() -> None:
    from npupass.view.dot import to_dot

    model = load("mobilenet_v2_035_96_int8")
    model.main.ops[0].name = 'conv "é中文"'
    text = to_dot(view_data(model, "m"))
    assert 'conv \\"é中文\\"' in text  # quotes escaped for DOT, the letters themselves kept
    assert "\\u" not in text


def test_diff_lists_exactly_what_the_passes_rewrote() -> None:
    """QAT MobileNetV2 before/after the default pipeline (int8 I/O): every removed op is a
    QUANTIZE or DEQUANTIZE folded by a fake-quant rule (two per rewrite); every op the passes
    changed carries its rules."""
    before = load("qat_mobilenet_v2_035_96_fq")
    after = copy.deepcopy(before)
    result = PassManager(DEFAULT_PIPELINE, options={"fold-fake-quant": {"io": "int8"}}).run(after)
    diff, marks = diff_models(before, after, "before", "after")
    fold = result.passes[2].rewrites
    assert len(diff["removed"]) == 2 * (fold["activation-fake-quant"] + fold["weight-fake-quant"]) == 236
    assert {e["type"] for e in diff["removed"]} == {"QUANTIZE", "DEQUANTIZE"}
    assert diff["added"] == []
    rewritten = [op for op in after.main.ops if op.provenance]
    with_rules = [e for e in diff["changed"] if e.get("rules")]
    assert len(with_rules) == len(rewritten) == fold["bias"] == 53
    assert diff["op_counts"] == {"a": 301, "b": 65}
    assert sum(1 for mark in marks.values() if mark == "changed") == len(diff["changed"])


def test_view_passes_diff_cli() -> None:
    proc = npupass("view", QAT, "--passes", DEFAULT_PIPELINE, "--diff", "--json")
    assert proc.returncode == 0, proc.stderr
    diff = json.loads(proc.stdout)["diff"]
    # float I/O keeps the input's QUANTIZE: 236 - 1 removed
    assert len(diff["removed"]) == 235 and [e["type"] for e in diff["added"]] == ["DEQUANTIZE"]


def test_diff_of_two_files(tmp_path: Path) -> None:
    out = tmp_path / "int8.tflite"
    src = str(MODELS / "qat_cnn_fq.tflite")
    assert npupass("convert", src, "-o", str(out), "--passes", DEFAULT_PIPELINE, "--io", "int8").returncode == 0
    proc = npupass("diff", src, str(out), "--json")
    assert proc.returncode == 1  # as Unix diff: the models differ
    diff = json.loads(proc.stdout)
    assert len(diff["removed"]) == 26 and diff["added"] == []
    assert diff["op_counts"] == {"a": 34, "b": 8}
    text = " ".join(npupass("diff", src, str(out)).stdout.split())
    assert f"26 removed, 0 added, 8 changed, {len(diff['tensors_changed'])} tensors changed" in text


def test_metrics_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "m.json"
    bad.write_text('{"conv": {"latency": "slow"}}')
    proc = npupass("view", MOBILENET, "--metrics", str(bad))
    assert proc.returncode == 2
    assert proc.stderr == f"npupass: error: {bad}: metric 'latency' of op 'conv' is not a number\n"
    bad.write_text("[1, 2]")
    proc = npupass("view", MOBILENET, "--metrics", str(bad))
    assert proc.stderr == f'npupass: error: {bad}: metrics must be an object of {{"op name": {{"metric": number}}}}\n'
    assert npupass("view", MOBILENET, "--diff").stderr == (
        "npupass: error: --diff needs --passes (or use `npupass diff A B` for two files)\n"
    )


def test_view_reads_onnx() -> None:
    proc = npupass("view", str(MODELS / "mbv2_float.onnx"), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    types = [op["type"] for op in data["subgraphs"][0]["ops"]]
    assert data["source_format"] == "onnx" and types.count("BATCH_NORM") == 10 and "TRANSPOSE" not in types


def test_diff_of_a_model_with_itself_exits_0() -> None:
    proc = npupass("diff", MOBILENET, MOBILENET, "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["changed"] == []


def test_self_diff_is_empty() -> None:
    for name in ("control_flow", "lstm_float", "mobilenet_v2_035_96_int8", "qat_cnn_fq"):
        diff, marks = diff_models(load(name), load(name), "a", "b")
        assert (diff["removed"], diff["added"], diff["changed"], diff["tensors_changed"], marks) == ([], [], [], [], {})


def test_diff_sees_rewiring_shapes_and_other_subgraphs() -> None:
    a, b = load("cnn_float"), load("cnn_float")
    g = b.main
    add = next(op for op in g.ops if op.type == "ADD")
    first = g.inputs_of(add)[0]
    g.set_input(add, 1, first)  # ADD(x, y) -> ADD(x, x)
    diff, _ = diff_models(a, b, "a", "b")
    (entry,) = diff["changed"]
    assert entry["type"] == "ADD" and any(w.startswith("input 1 '") for w in entry["what"])
    a, b = load("control_flow"), load("control_flow")
    op = b.subgraphs[1].ops[0]
    op.type = "SUB" if op.type != "SUB" else "ADD"
    diff, _ = diff_models(a, b, "a", "b")
    assert {e.get("subgraph") for e in diff["removed"] + diff["added"]} == {1}


def test_diff_summary_by_default_full_list_with_full() -> None:
    """One conversion (QAT MobileNetV2 fake-quant export -> the converter's int8): a summary of counts by
    kind and op type, at most 40 lines; --full lists every op."""
    a, b = str(MODELS / "qat_mobilenet_v2_035_96_fq.tflite"), str(MODELS / "qat_mobilenet_v2_035_96_int8.tflite")
    proc = npupass("diff", a, b, env=dict(os.environ, COLUMNS="120"))
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1 and len(lines) <= 40
    assert "removed: 118 QUANTIZE, 118 DEQUANTIZE" in lines
    full = npupass("diff", a, b, "--full").stdout.splitlines()
    assert sum(1 for line in full if line.startswith("removed ")) == 236


def test_diff_text_lines(tmp_path: Path) -> None:
    proc = npupass("diff", str(MODELS / "qat_cnn_fq.tflite"), str(MODELS / "qat_cnn_int8.tflite"), "--full")
    starts = [line.split()[0] for line in proc.stdout.splitlines()[1:] if line.split()]
    assert "removed" in starts and "changed" in starts
    assert not {"remove", "adde", "change"} & set(starts)


def test_metrics_must_be_finite(tmp_path: Path) -> None:
    bad = tmp_path / "m.json"
    for text in ('{"conv": {"t": NaN}}', '{"conv": {"t": 1e400}}', '{"conv": {"t": ' + "9" * 400 + "}}"):
        bad.write_text(text)
        proc = npupass("view", MOBILENET, "--metrics", str(bad), "--json")
        assert proc.returncode == 2
        assert proc.stderr == f"npupass: error: {bad}: metric 't' of op 'conv' is not a finite number\n"


def test_outputs_follow_symlinks(tmp_path: Path) -> None:
    target = tmp_path / "real.dot"
    target.write_text("old")
    link = tmp_path / "link.dot"
    link.symlink_to(target)
    assert npupass("view", MOBILENET, "--dot", str(link)).returncode == 0
    assert link.is_symlink() and target.read_text().startswith("digraph ")


def test_svg_refuses_graphs_too_large_for_graphviz_at_once() -> None:
    import time

    from npupass.errors import NpupassError
    from npupass.view.dot import MAX_SVG_OPS, check_svg_size

    data = view_data(load("mobilenet_v2_035_96_int8"), "m")
    check_svg_size(data)  # 65 ops: fine
    sub = data["subgraphs"][0]
    sub["ops"] = sub["ops"] * (MAX_SVG_OPS // len(sub["ops"]) + 1)
    start = time.perf_counter()
    with pytest.raises(NpupassError) as info:
        check_svg_size(data)
    assert time.perf_counter() - start < 1
    assert str(info.value) == (
        f"the graph has {len(sub['ops']):,} ops, too many for Graphviz's layout (at most {MAX_SVG_OPS:,}: it takes "
        "minutes beyond that); use --html, which draws any size"
    )
