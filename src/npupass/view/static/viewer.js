/* npupass HTML viewer: draws the view data embedded in the page (script#npupass-data) as SVG.
 * Plain ES2017, no libraries, nothing fetched. Every string from the model reaches the DOM through
 * esc() or textContent. Positions come from the data (x/y/w/h), so drawing needs no layout reads. */
(function () {
  "use strict";

  const SVG_NS = "http://www.w3.org/2000/svg";
  const GREY = "#d9dce1";
  const PLACEMENT_COLOURS = { NPU: "#8fd19e", CPU: "#f5b27a" };
  const RAMP = [
    [255, 247, 236],
    [253, 212, 158],
    [252, 141, 89],
    [222, 74, 50],
  ];
  const $ = (id) => document.getElementById(id);

  // ---- formatting ------------------------------------------------------------------------------

  const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  function esc(value) {
    return String(value).replace(/[&<>"']/g, (c) => ESC[c]);
  }

  /** Numbers as the panel prints them: integers as is, others to 6 significant digits. */
  function fmtNum(v) {
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return String(v);
    return String(Number(v.toPrecision(6)));
  }

  function fmtVal(v) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "number") return fmtNum(v);
    if (Array.isArray(v)) return "[" + v.map(fmtVal).join(", ") + "]";
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  function fmtShape(shape) {
    return shape === null || shape === undefined ? "shape unknown" : "[" + shape.join(", ") + "]";
  }

  function clip(s, n) {
    return s.length > n ? s.slice(0, n - 1) + "…" : s;
  }

  /** The last two path segments of the first ';'-separated part, at most 28 characters. */
  function shortName(name) {
    let s = String(name);
    const semi = s.indexOf(";");
    if (semi > 0) s = s.slice(0, semi);
    const parts = s.split("/").filter((p) => p.length > 0);
    if (parts.length > 2) s = parts.slice(-2).join("/");
    if (s.length > 28) s = "…" + s.slice(-27);
    return s;
  }

  function typeLabel(op) {
    return op.type === "CUSTOM" && op.custom_code ? "CUSTOM " + op.custom_code : op.type;
  }

  function isNum(v) {
    return typeof v === "number" && isFinite(v);
  }

  // ---- colours ---------------------------------------------------------------------------------

  function hashStr(s) {
    let h = 2166136261;
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 16777619);
    }
    return h >>> 0;
  }

  function typeColour(type) {
    const h = hashStr(type);
    return "hsl(" + (h % 360) + "," + (50 + ((h >>> 9) % 30)) + "%," + (76 + ((h >>> 17) % 10)) + "%)";
  }

  function ramp(t) {
    const x = Math.min(1, Math.max(0, t)) * (RAMP.length - 1);
    const i = Math.min(RAMP.length - 2, Math.floor(x));
    const f = x - i;
    const a = RAMP[i];
    const b = RAMP[i + 1];
    const c = [0, 1, 2].map((j) => Math.round(a[j] + (b[j] - a[j]) * f));
    return "rgb(" + c.join(",") + ")";
  }

  const RAMP_CSS =
    "linear-gradient(to right," + RAMP.map((_, i) => ramp(i / (RAMP.length - 1))).join(",") + ")";

  function swatch(colour, label) {
    return '<span class="item"><span class="sw" style="background:' + colour + '"></span>' + esc(label) + "</span>";
  }

  function rampLegend(title, lo, hi, missing) {
    return (
      '<div><b>' + esc(title) + '</b></div><span class="item">' + esc(lo) + '<span class="ramp" style="background:' +
      RAMP_CSS + '"></span>' + esc(hi) + "</span>" + swatch(GREY, missing)
    );
  }

  /** fills: one colour per op; legend: HTML. */
  function colouring(mode, ops) {
    if (mode === "placement") {
      const fills = ops.map((op) => (op.placement ? PLACEMENT_COLOURS[op.placement.target] || GREY : GREY));
      return {
        fills: fills,
        legend: "<div><b>Placement</b></div>" + swatch(PLACEMENT_COLOURS.NPU, "NPU") +
          swatch(PLACEMENT_COLOURS.CPU, "CPU") + swatch(GREY, "no placement"),
      };
    }
    if (mode === "sparsity") {
      const fills = ops.map((op) => (op.weights && isNum(op.weights.zeros) ? ramp(op.weights.zeros) : GREY));
      return { fills: fills, legend: rampLegend("Weight zeros", "0%", "100%", "no weights") };
    }
    if (mode.indexOf("metric:") === 0) {
      const name = mode.slice(7);
      const values = ops.map((op) => (op.metrics && isNum(op.metrics[name]) ? op.metrics[name] : null));
      const present = values.filter((v) => v !== null);
      const lo = present.length ? Math.min.apply(null, present) : 0;
      const hi = present.length ? Math.max.apply(null, present) : 0;
      const span = hi - lo || 1;
      const fills = values.map((v) => (v === null ? GREY : ramp((v - lo) / span)));
      return { fills: fills, legend: rampLegend(name, fmtNum(lo), fmtNum(hi), "missing") };
    }
    const counts = new Map();
    for (const op of ops) counts.set(op.type, (counts.get(op.type) || 0) + 1);
    const types = Array.from(counts.keys()).sort((a, b) => counts.get(b) - counts.get(a) || (a < b ? -1 : 1));
    return {
      fills: ops.map((op) => typeColour(op.type)),
      legend:
        "<div><b>Op type</b></div>" +
        types.map((t) => swatch(typeColour(t), t + " (" + counts.get(t) + ")")).join(""),
    };
  }

  // ---- state -----------------------------------------------------------------------------------

  const DATA = JSON.parse($("npupass-data").textContent);
  const svg = $("np-svg");
  const viewport = $("np-viewport");
  const view = { k: 1, tx: 0, ty: 0 };
  let sg = null; // current subgraph
  let ops = [];
  let lowerNames = [];
  let nodeEls = [];
  let rectEls = [];
  let edgeEls = [];
  let edgeEnds = []; // [from, to] per drawn edge
  let parts = []; // NPU partitions: {k, ids, x, y, w, h}
  let partOf = []; // op id -> partition index or -1
  const collapsed = new Set();
  let matches = [];
  let current = -1;
  let selected = -1;
  let hotEdges = [];

  // ---- drawing ---------------------------------------------------------------------------------

  function computeParts() {
    parts = [];
    partOf = ops.map(() => -1);
    let run = null;
    for (const op of ops) {
      if (op.placement && op.placement.target === "NPU") {
        if (!run) {
          run = { k: parts.length, ids: [] };
          parts.push(run);
        }
        run.ids.push(op.id);
        partOf[op.id] = run.k;
      } else {
        run = null;
      }
    }
    const pad = 8;
    for (const p of parts) {
      let x0 = Infinity;
      let y0 = Infinity;
      let x1 = -Infinity;
      let y1 = -Infinity;
      for (const id of p.ids) {
        const op = ops[id];
        x0 = Math.min(x0, op.x);
        y0 = Math.min(y0, op.y);
        x1 = Math.max(x1, op.x + op.w);
        y1 = Math.max(y1, op.y + op.h);
      }
      p.x = x0 - pad;
      p.y = y0 - pad;
      p.w = x1 - x0 + 2 * pad;
      p.h = y1 - y0 + 2 * pad;
    }
  }

  function partsHTML(layer) {
    const out = [];
    for (const p of parts) {
      const cls = "part" + (collapsed.has(p.k) ? " collapsed" : "");
      if (layer === "box") {
        out.push(
          '<g class="' + cls + '" data-part="' + p.k + '"><rect class="box" rx="8" x="' + p.x + '" y="' + p.y +
            '" width="' + p.w + '" height="' + p.h + '"/></g>'
        );
      } else {
        const label = "NPU #" + (p.k + 1) + " · " + p.ids.length + " op" + (p.ids.length === 1 ? "" : "s");
        // right of the top centre, where graph-input markers (left of centre) cannot sit
        const tx = p.x + p.w / 2 + 12;
        out.push(
          '<g class="' + cls + '" data-part="' + p.k + '"><g class="toggle" data-part="' + p.k + '"><rect x="' + tx +
            '" y="' + (p.y - 17) + '" width="' + (label.length * 6.6 + 22) + '" height="16" rx="3"/><text x="' +
            (tx + 5) + '" y="' + (p.y - 5) + '">' + (collapsed.has(p.k) ? "▸ " : "▾ ") + esc(label) +
            "</text><title>Collapse or expand this NPU partition</title></g>" + '<text class="ctitle" x="' +
            (p.x + p.w / 2) + '" y="' + (p.y + Math.min(p.h / 2, 40) + 5) + '" text-anchor="middle">' +
            (collapsed.has(p.k) ? "NPU partition " + (p.k + 1) + " (" + p.ids.length + " ops)" : "") + "</text></g>"
        );
      }
    }
    return out.join("");
  }

  function ioHTML() {
    const firstConsumer = new Map();
    const producer = new Map();
    for (const op of ops) {
      for (const t of op.inputs) if (t >= 0 && !firstConsumer.has(t)) firstConsumer.set(t, op.id);
      for (const t of op.outputs) producer.set(t, op.id);
    }
    const out = [];
    const perOp = new Map();
    let loose = 0;
    const slot = (key) => {
      const n = perOp.get(key) || 0;
      perOp.set(key, n + 1);
      return n;
    };
    for (const t of sg.inputs) {
      const name = sg.tensors[t] ? sg.tensors[t].name : "#" + t;
      const c = firstConsumer.get(t);
      let x;
      let y;
      let line = "";
      if (c !== undefined) {
        const op = ops[c];
        const n = slot("i" + c); // more inputs into one op: up and to the left
        x = op.x + op.w / 2 - n * 16;
        y = op.y - 20 - n * 13;
        line = '<line x1="' + x + '" y1="' + (y + 6) + '" x2="' + x + '" y2="' + op.y + '"/>';
      } else {
        x = 12;
        y = 12 + 16 * loose++;
      }
      const at = c !== undefined ? ' text-anchor="end" x="' + (x - 10) : ' x="' + (x + 10); // label left of it
      out.push(
        '<g class="io in">' + line + '<circle cx="' + x + '" cy="' + y + '" r="6"/><text' + at + '" y="' + (y + 3) +
          '">' + esc("in: " + shortName(name)) + "</text><title>" + esc("graph input: " + name) + "</title></g>"
      );
    }
    for (const t of sg.outputs) {
      const name = sg.tensors[t] ? sg.tensors[t].name : "#" + t;
      const p = producer.get(t);
      let x;
      let y;
      let line = "";
      if (p !== undefined) {
        const op = ops[p];
        x = op.x + op.w / 2 + slot("o" + p) * 16;
        y = op.y + op.h + 14;
        line = '<line x1="' + x + '" y1="' + (op.y + op.h) + '" x2="' + x + '" y2="' + (y - 5) + '"/>';
      } else {
        x = 12;
        y = 12 + 16 * loose++;
      }
      out.push(
        '<g class="io out">' + line + '<rect x="' + (x - 5) + '" y="' + (y - 5) +
          '" width="10" height="10"/><text x="' +
          (x + 10) + '" y="' + (y + 3) + '">' + esc("out: " + shortName(name)) + "</text><title>" +
          esc("graph output: " + name) + "</title></g>"
      );
    }
    return out.join("");
  }

  function nodesHTML(fills) {
    const out = new Array(ops.length);
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i];
      let cls = "node";
      if (op.change === "added") cls += " chg-added";
      else if (op.change === "changed") cls += " chg-changed";
      if (partOf[i] >= 0 && collapsed.has(partOf[i])) cls += " hidden";
      out[i] =
        '<g class="' + cls + '" data-id="' + i + '" transform="translate(' + op.x + "," + op.y + ')"><rect width="' +
        op.w + '" height="' + op.h + '" rx="5" fill="' + fills[i] + '"/><text class="ty" x="8" y="17">' +
        esc(clip(typeLabel(op), 24)) + '</text><text class="nm" x="8" y="34">' + esc(op.short_name || shortName(op.name)) +
        "</text><title>" + esc(typeLabel(op) + "\n" + op.name) + "</title></g>";
    }
    return out.join("");
  }

  function renderEdges() {
    const out = [];
    edgeEnds = [];
    for (const e of sg.edges) {
      const a = ops[e.from];
      const b = ops[e.to];
      const pa = partOf[e.from];
      const pb = partOf[e.to];
      const ca = pa >= 0 && collapsed.has(pa);
      const cb = pb >= 0 && collapsed.has(pb);
      if (ca && cb && pa === pb) continue; // inside one collapsed partition
      const x1 = a.x + a.w / 2;
      const y1 = ca ? parts[pa].y + parts[pa].h : a.y + a.h;
      const x2 = b.x + b.w / 2;
      const y2 = cb ? parts[pb].y : b.y;
      const dy = Math.max(18, Math.abs(y2 - y1) / 2);
      out.push(
        '<path class="edge" d="M' + x1 + " " + y1 + "C" + x1 + " " + (y1 + dy) + " " + x2 + " " + (y2 - dy) + " " + x2 +
          " " + y2 + '"/>'
      );
      edgeEnds.push([e.from, e.to]);
    }
    const layer = $("np-edges");
    layer.innerHTML = out.join("");
    edgeEls = Array.from(layer.children);
    hotEdges = [];
    if (selected >= 0) markEdges(selected);
  }

  function renderSubgraph(index) {
    sg = DATA.subgraphs[index];
    ops = sg.ops;
    lowerNames = ops.map((op) => (op.name + "\u0000" + op.type + "\u0000" + typeLabel(op)).toLowerCase());
    collapsed.clear();
    selected = -1;
    matches = [];
    current = -1;
    computeParts();
    const colours = colouring($("np-colour").value, ops);
    viewport.innerHTML =
      '<g id="np-parts">' + partsHTML("box") + '</g><g id="np-edges"></g><g id="np-io">' + ioHTML() +
      '</g><g id="np-nodes">' + nodesHTML(colours.fills) + '</g><g id="np-toggles">' + partsHTML("toggle") + "</g>";
    nodeEls = Array.from($("np-nodes").children);
    rectEls = nodeEls.map((g) => g.firstChild);
    renderEdges();
    $("np-legend").innerHTML = colours.legend;
    $("np-collapse-wrap").classList.toggle("hidden", parts.length === 0);
    $("np-collapse-all").checked = false;
    showSummary();
    runSearch();
  }

  function applyColour() {
    const colours = colouring($("np-colour").value, ops);
    for (let i = 0; i < rectEls.length; i++) rectEls[i].setAttribute("fill", colours.fills[i]);
    $("np-legend").innerHTML = colours.legend;
  }

  // ---- partitions ------------------------------------------------------------------------------

  function setCollapsed(k, on) {
    if (on) collapsed.add(k);
    else collapsed.delete(k);
    for (const id of parts[k].ids) nodeEls[id].classList.toggle("hidden", on);
  }

  function redrawParts() {
    $("np-parts").innerHTML = partsHTML("box");
    $("np-toggles").innerHTML = partsHTML("toggle");
    renderEdges();
  }

  function togglePart(k) {
    setCollapsed(k, !collapsed.has(k));
    redrawParts();
  }

  // ---- pan and zoom ----------------------------------------------------------------------------

  function applyTransform() {
    viewport.setAttribute("transform", "translate(" + view.tx + "," + view.ty + ") scale(" + view.k + ")");
  }

  function canvasSize() {
    return { w: svg.clientWidth || 800, h: svg.clientHeight || 600 };
  }

  function zoomAt(factor, px, py) {
    const k = Math.min(4, Math.max(0.01, view.k * factor));
    view.tx = px - ((px - view.tx) * k) / view.k;
    view.ty = py - ((py - view.ty) * k) / view.k;
    view.k = k;
    applyTransform();
  }

  function zoomCentre(factor) {
    const s = canvasSize();
    zoomAt(factor, s.w / 2, s.h / 2);
  }

  function fit() {
    const s = canvasSize();
    const k = Math.min(2, Math.max(0.01, Math.min((s.w - 20) / sg.width, (s.h - 20) / sg.height)));
    view.k = k;
    view.tx = (s.w - sg.width * k) / 2;
    view.ty = (s.h - sg.height * k) / 2;
    applyTransform();
  }

  /** First view: the whole width, from the top (fit() when the whole graph fits). */
  function initialView() {
    const s = canvasSize();
    const k = Math.min(1, Math.max(0.05, (s.w - 20) / sg.width));
    if (sg.height * k <= s.h) {
      fit();
      view.k = Math.min(view.k, 1);
      view.tx = (s.w - sg.width * view.k) / 2;
      view.ty = (s.h - sg.height * view.k) / 2;
    } else {
      view.k = k;
      view.tx = (s.w - sg.width * k) / 2;
      view.ty = 0;
    }
    applyTransform();
  }

  function centreOn(id) {
    const op = ops[id];
    const s = canvasSize();
    view.k = Math.max(view.k, 0.8);
    view.tx = s.w / 2 - (op.x + op.w / 2) * view.k;
    view.ty = s.h / 2 - (op.y + op.h / 2) * view.k;
    applyTransform();
  }

  let drag = null;
  let suppressClick = false;
  svg.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    drag = { x: e.clientX, y: e.clientY, tx: view.tx, ty: view.ty, id: e.pointerId, moved: false };
    suppressClick = false;
  });
  svg.addEventListener("pointermove", (e) => {
    if (!drag || e.pointerId !== drag.id) return;
    const dx = e.clientX - drag.x;
    const dy = e.clientY - drag.y;
    if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
    if (!drag.moved) {
      drag.moved = true;
      svg.setPointerCapture(e.pointerId);
      svg.classList.add("dragging");
    }
    view.tx = drag.tx + dx;
    view.ty = drag.ty + dy;
    applyTransform();
  });
  const endDrag = (e) => {
    if (!drag || e.pointerId !== drag.id) return;
    suppressClick = drag.moved;
    drag = null;
    svg.classList.remove("dragging");
  };
  svg.addEventListener("pointerup", endDrag);
  svg.addEventListener("pointercancel", endDrag);
  svg.addEventListener(
    "wheel",
    (e) => {
      e.preventDefault();
      const r = svg.getBoundingClientRect();
      const unit = e.deltaMode === 1 ? 20 : e.deltaMode === 2 ? 400 : 1;
      zoomAt(Math.exp(-e.deltaY * unit * 0.0015), e.clientX - r.left, e.clientY - r.top);
    },
    { passive: false }
  );
  svg.addEventListener("click", (e) => {
    if (suppressClick) {
      suppressClick = false;
      return;
    }
    const toggle = e.target.closest(".toggle");
    if (toggle) {
      togglePart(Number(toggle.getAttribute("data-part")));
      return;
    }
    const node = e.target.closest(".node");
    if (node) select(Number(node.getAttribute("data-id")));
  });

  // ---- selection and the side panel ------------------------------------------------------------

  function markEdges(id) {
    for (const el of hotEdges) el.classList.remove("hot");
    hotEdges = [];
    if (id < 0) return;
    for (let i = 0; i < edgeEnds.length; i++) {
      if (edgeEnds[i][0] === id || edgeEnds[i][1] === id) {
        edgeEls[i].classList.add("hot");
        hotEdges.push(edgeEls[i]);
      }
    }
  }

  function select(id) {
    if (selected >= 0 && nodeEls[selected]) nodeEls[selected].classList.remove("selected");
    selected = id;
    nodeEls[id].classList.add("selected");
    markEdges(id);
    showOp(id);
  }

  function row(label, valueHTML) {
    return "<tr><td>" + esc(label) + "</td><td>" + valueHTML + "</td></tr>";
  }

  function table(rows) {
    return rows.length ? "<table>" + rows.join("") + "</table>" : '<div class="muted">none</div>';
  }

  function weightsHTML(w) {
    return table([
      row("zeros", esc(fmtNum(Number((w.zeros * 100).toFixed(2))) + "%")),
      row("unique values", esc(w.unique)),
      row("unique per channel (max)", esc(w.unique_per_channel_max)),
    ]);
  }

  function quantHTML(q) {
    if (!q) return '<div class="muted">not quantized</div>';
    if (q.axis === null || q.axis === undefined) {
      return (
        "<div>per-tensor · scale <code>" + esc(q.scale.map(fmtNum).join(", ")) + "</code> · zero point <code>" +
        esc(q.zero_point.join(", ")) + "</code></div>"
      );
    }
    return (
      "<div>per-axis · axis <code>" + esc(q.axis) + "</code> · " + q.scale.length + " channels</div>" +
      '<div class="muted">scale</div><div class="arr">' + esc(q.scale.map(fmtNum).join(", ")) + "</div>" +
      '<div class="muted">zero point</div><div class="arr">' + esc(q.zero_point.join(", ")) + "</div>"
    );
  }

  function tensorHTML(index, slot) {
    if (index < 0) return '<div class="tensor muted">' + slot + ": (none)</div>";
    const t = sg.tensors[index];
    const flags = [];
    if (t.constant) flags.push("constant");
    if (t.variable) flags.push("variable");
    if (t.sparse_storage) flags.push("sparse storage");
    return (
      '<div class="tensor"><div class="tname">' + esc(t.name) + '</div><div><span class="muted">' + slot + " · #" +
      t.index + "</span> <code>" + esc(t.dtype) + "</code> <code>" + esc(fmtShape(t.shape)) + "</code> " +
      flags.map((f) => '<span class="badge">' + esc(f) + "</span>").join("") + "</div>" + quantHTML(t.quant) +
      (t.weights ? weightsHTML(t.weights) : "") + "</div>"
    );
  }

  function showOp(id) {
    const op = ops[id];
    const info = [row("id", esc(op.id)), row("version", esc(op.version))];
    if (op.custom_code) info.push(row("custom code", esc(op.custom_code)));
    if (op.fused_activation) info.push(row("fused activation", esc(op.fused_activation)));
    if (op.placement) {
      const target = String(op.placement.target);
      info.push(
        row("placement", '<span class="badge ' + esc(target.toLowerCase()) + '">' + esc(target) + "</span>"),
        row("reason", esc(op.placement.reason || "–"))
      );
    } else {
      info.push(row("placement", '<span class="muted">–</span>'));
    }
    if (op.change) info.push(row("change", '<span class="badge ' + esc(op.change) + '">' + esc(op.change) + "</span>"));
    const options = Object.keys(op.options || {}).map((k) => row(k, esc(fmtVal(op.options[k]))));
    const metrics = Object.keys(op.metrics || {})
      .sort()
      .map((k) => row(k, esc(fmtNum(op.metrics[k]))));
    let prov = '<div class="muted">none</div>';
    if (op.provenance) {
      prov = table([
        row("rules", esc((op.provenance.rules || []).join(", ") || "–")),
        row("from", esc((op.provenance.from || []).join(", ") || "–")),
      ]);
    }
    $("np-panel").innerHTML =
      "<h2>" + esc(typeLabel(op)) + "</h2>" + '<div class="name">' + esc(op.name) + "</div>" + table(info) +
      "<h3>Options</h3>" + table(options) + "<h3>Provenance</h3>" + prov + "<h3>Metrics</h3>" + table(metrics) +
      "<h3>Weights</h3>" + (op.weights ? weightsHTML(op.weights) : '<div class="muted">none</div>') +
      "<h3>Inputs</h3>" + op.inputs.map((t, i) => tensorHTML(t, "in " + i)).join("") +
      "<h3>Outputs</h3>" + op.outputs.map((t, i) => tensorHTML(t, "out " + i)).join("");
  }

  function showSummary() {
    const tensors = sg.tensors.length;
    $("np-panel").innerHTML =
      "<h2>" + esc(DATA.title) + "</h2>" + table([
        row("format", esc(DATA.source_format || "–")),
        row("subgraph", esc(sg.index + ": " + sg.name)),
        row("ops", esc(ops.length)),
        row("tensors", esc(tensors)),
        row("edges", esc(sg.edges.length)),
        row("NPU partitions", esc(parts.length)),
      ]) + '<p class="muted">Click an op to see its details. Drag to pan, wheel to zoom.</p>';
  }

  // ---- search ----------------------------------------------------------------------------------

  function updateCount() {
    const el = $("np-search-count");
    const q = $("np-search").value.trim();
    el.setAttribute("data-count", String(matches.length));
    if (!q) el.textContent = "";
    else if (!matches.length) el.textContent = "no match";
    else if (current >= 0) el.textContent = current + 1 + " / " + matches.length;
    else el.textContent = matches.length + (matches.length === 1 ? " match" : " matches");
  }

  function runSearch() {
    for (const id of matches) nodeEls[id].classList.remove("match", "current");
    const q = $("np-search").value.trim().toLowerCase();
    matches = [];
    current = -1;
    if (q) {
      for (let i = 0; i < ops.length; i++) {
        if (lowerNames[i].indexOf(q) >= 0) {
          matches.push(i);
          nodeEls[i].classList.add("match");
        }
      }
    }
    updateCount();
  }

  function step(delta) {
    if (!matches.length) return;
    if (current >= 0) nodeEls[matches[current]].classList.remove("current");
    current = current < 0 ? (delta > 0 ? 0 : matches.length - 1) : (current + delta + matches.length) % matches.length;
    const id = matches[current];
    if (partOf[id] >= 0 && collapsed.has(partOf[id])) {
      setCollapsed(partOf[id], false);
      redrawParts();
    }
    nodeEls[id].classList.add("current");
    centreOn(id);
    select(id);
    updateCount();
  }

  // ---- diff ------------------------------------------------------------------------------------

  let diffTargets = [];

  function renderDiff() {
    const diff = DATA.diff;
    const box = $("np-diff");
    if (!diff) {
      box.classList.add("hidden");
      return;
    }
    diffTargets = [];
    const link = (item) => {
      diffTargets.push(item);
      return ' class="link" data-k="' + (diffTargets.length - 1) + '"';
    };
    const list = (items, render, clickable) =>
      items && items.length
        ? "<ul>" +
          items.map((it) => "<li" + (clickable ? link(it) : "") + ">" + render(it) + "</li>").join("") +
          "</ul>"
        : '<div class="muted">none</div>';
    const opItem = (it) => '<span class="badge">' + esc(it.type) + "</span>" + esc(it.name);
    const what = (it) =>
      it.what && it.what.length ? ' <span class="muted">(' + esc(it.what.join("; ")) + ")</span>" : "";
    const removed = diff.removed || [];
    const added = diff.added || [];
    const changed = diff.changed || [];
    const tensors = diff.tensors_changed || [];
    box.innerHTML =
      "<details open><summary>Diff: " + esc(diff.a) + " → " + esc(diff.b) + " (" + removed.length + " removed, " +
      added.length + " added, " + changed.length + " changed ops; " + tensors.length + " changed tensors)</summary>" +
      "<h3>Removed ops</h3>" + list(removed, opItem, false) + "<h3>Added ops</h3>" + list(added, opItem, true) +
      "<h3>Changed ops</h3>" + list(changed, (it) => opItem(it) + what(it), true) + "<h3>Changed tensors</h3>" +
      list(tensors, (it) => esc(it.name) + what(it), false) + "</details>";
  }

  $("np-diff").addEventListener("click", (e) => {
    const li = e.target.closest("li.link");
    if (!li) return;
    const item = diffTargets[Number(li.getAttribute("data-k"))];
    const op = ops.find((o) => o.name === item.name && o.type === item.type) || ops.find((o) => o.name === item.name);
    if (!op) return;
    if (partOf[op.id] >= 0 && collapsed.has(partOf[op.id])) {
      setCollapsed(partOf[op.id], false);
      redrawParts();
    }
    centreOn(op.id);
    select(op.id);
  });

  // ---- wiring ----------------------------------------------------------------------------------

  function init() {
    document.title = "npupass · " + DATA.title;
    $("np-title").textContent = DATA.title;
    $("np-title").title = DATA.title;
    const colourSel = $("np-colour");
    const modes = [
      ["type", "op type"],
      ["placement", "placement"],
      ["sparsity", "sparsity"],
    ].concat((DATA.metrics || []).map((m) => ["metric:" + m, "metric: " + m]));
    for (const m of modes) {
      const o = document.createElement("option");
      o.value = m[0];
      o.textContent = m[1];
      colourSel.appendChild(o);
    }
    // A compile report opens coloured by placement: the page says what runs where first.
    if (DATA.colour && modes.some((m) => m[0] === DATA.colour)) colourSel.value = DATA.colour;
    colourSel.addEventListener("change", applyColour);
    const sgSel = $("np-subgraph");
    for (const s of DATA.subgraphs) {
      const o = document.createElement("option");
      o.value = String(s.index);
      o.textContent = s.index + ": " + s.name + " (" + s.ops.length + " ops)";
      sgSel.appendChild(o);
    }
    sgSel.classList.toggle("hidden", DATA.subgraphs.length < 2);
    sgSel.addEventListener("change", () => {
      renderSubgraph(Number(sgSel.value));
      initialView();
    });
    const search = $("np-search");
    search.addEventListener("input", runSearch);
    search.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        step(e.shiftKey ? -1 : 1);
      }
    });
    $("np-next").addEventListener("click", () => step(1));
    $("np-prev").addEventListener("click", () => step(-1));
    $("np-zoom-in").addEventListener("click", () => zoomCentre(1.25));
    $("np-zoom-out").addEventListener("click", () => zoomCentre(0.8));
    $("np-fit").addEventListener("click", fit);
    $("np-collapse-all").addEventListener("change", (e) => {
      for (const p of parts) setCollapsed(p.k, e.target.checked);
      redrawParts();
    });
    svg.setAttribute("xmlns", SVG_NS);
    renderDiff();
    if (DATA.subgraphs.length) {
      renderSubgraph(0);
      initialView();
    }
    requestAnimationFrame(() =>
      setTimeout(() => {
        window.npupassReady = performance.now();
        document.body.dataset.ready = "1";
      }, 0)
    );
  }

  try {
    init();
  } catch (err) {
    document.body.dataset.error = String(err && err.message ? err.message : err);
    $("np-panel").textContent = "npupass viewer failed: " + document.body.dataset.error;
    throw err;
  }
})();
