"""A self-contained HTML viewer for one trace (``distcheck show TRACE --html OUT``).

Where it sits: called by ``checks.cli_trace``; reads the trace model
(``checks.trace``) and reuses ``checks.render`` for everything a step says in text
(action, changes, message arrows), so the page and the terminal tell the same story.

The page works offline (no network, no CDN: styles, script and data are inline).
Left, an SVG space-time diagram: a lane per node, time going down, a dot per step
on its actor's lane and an arrow per message from the step that sent it to the step
that received it.  Middle, the step list.  Right, for the selected step, the action,
what changed, and the full state with the changed parts highlighted.  The violated
property sits above everything.  Clicking a step (in the list or in the diagram)
selects it; the arrow keys move through the steps.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

from distcheck.checks.traces.render import arrows, change_text, lanes, show_json, step_action_text
from distcheck.checks.traces.trace import Trace, diff

ROW = 34  # pixels between steps in the diagram
LANE = 110  # pixels between lanes


def page_data(tr: Trace, notes: Mapping[int, Sequence[str]] | None = None) -> dict[str, Any]:
    """Everything the page's script needs, as one JSON-ready object.  ``notes`` (by
    index into the steps) are listed in place of a step's changes, as the text table
    shows them (``render.trace_table``)."""
    steps = []
    for i, step in enumerate(tr.steps):
        before = tr.steps[i - 1].state if i > 0 else None
        changes = diff(before, step.state) if i > 0 and before is not None and step.state is not None else []
        listed = [{"path": list(c.path), "text": change_text(c)} for c in changes]
        if notes is not None and i in notes:
            listed = [{"path": [], "text": line} for line in notes[i]]
        steps.append(
            {
                "step": step.step,
                "actor": step.actor,
                "action": step_action_text(step),
                "state": step.state,
                "changes": listed,
                "sent": [show_json(m) for m in step.sent],
                "received": [show_json(m) for m in step.received],
            }
        )
    violation = tr.header.violation
    return {
        "spec": tr.header.spec,
        "params": dict(tr.header.params),
        "variant": tr.header.variant,
        "source": tr.header.source,
        "violation": None
        if violation is None
        else {"invariant": violation.invariant, "statement": violation.statement, "kind": violation.kind},
        "lanes": lanes(tr),
        "arrows": [
            {
                "from": a.sent_at,
                "to": a.received_at,
                "sender": a.sender,
                "receiver": a.receiver,
                "label": show_json(a.message),
            }
            for a in arrows(tr)
        ],
        "steps": steps,
    }


def page(tr: Trace, *, title: str = "trace", notes: Mapping[int, Sequence[str]] | None = None) -> str:
    """The HTML document for ``tr`` (``notes``: as ``page_data`` takes them)."""
    data = json.dumps(page_data(tr, notes), ensure_ascii=False).replace("</", "<\\/")
    params = " ".join(f"{k}={v}" for k, v in tr.header.params.items())
    heading = f"{tr.header.spec} {params}" + (f" variant={tr.header.variant}" if tr.header.variant else "")
    return (
        _TEMPLATE.replace("%TITLE%", html.escape(f"{title}: {heading}"))
        .replace("%HEADING%", html.escape(heading))
        .replace("%SOURCE%", html.escape(tr.header.source))
        .replace("%ROW%", str(ROW))
        .replace("%LANE%", str(LANE))
        .replace("%DATA%", data)
    )


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>%TITLE%</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d232a; background: #f6f7f9; }
  header { padding: 10px 16px; background: #fff; border-bottom: 1px solid #d9dde3; }
  header h1 { font-size: 17px; margin: 0; }
  header .source { color: #5b6570; font-size: 12px; }
  #violation { margin-top: 6px; padding: 6px 10px; border-radius: 4px; background: #fde8e8; color: #8a1c1c; }
  #violation.none { background: #e7f6ec; color: #1c5e33; }
  main { display: grid; grid-template-columns: minmax(220px, auto) minmax(220px, 300px) 1fr; gap: 12px; padding: 12px; }
  section { background: #fff; border: 1px solid #d9dde3; border-radius: 6px; padding: 8px;
            overflow: auto; max-height: calc(100vh - 130px); }
  h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: #5b6570; margin: 2px 4px 8px; }
  ol#steps { list-style: none; margin: 0; padding: 0; }
  ol#steps li { padding: 4px 6px; border-radius: 4px; cursor: pointer;
                font-family: ui-monospace, monospace; font-size: 13px; }
  ol#steps li:hover { background: #eef2f7; }
  ol#steps li.selected { background: #dbe7fb; }
  ol#steps li.violating .num { color: #b42318; font-weight: bold; }
  ol#steps .num { display: inline-block; width: 2.2em; color: #5b6570; }
  ol#steps .actor { color: #3d5a80; }
  svg text { font: 12px ui-monospace, monospace; }
  svg .lane { stroke: #c3cad3; stroke-width: 2; }
  svg .dot { fill: #3d5a80; cursor: pointer; }
  svg .dot.selected { fill: #e07a1f; }
  svg .dot.violating { stroke: #b42318; stroke-width: 3; }
  svg .msg { stroke: #6c7a89; stroke-width: 1.5; fill: none; marker-end: url(#head); }
  svg .msg-label { fill: #45505b; font-size: 11px; }
  #detail h3 { margin: 2px 4px 6px; font: bold 15px ui-monospace, monospace; }
  #changes { margin: 0 4px 10px; padding-left: 18px; font-family: ui-monospace, monospace; font-size: 13px; }
  #state { font-family: ui-monospace, monospace; font-size: 13px; margin: 0 4px; }
  #state .node { padding-left: 16px; }
  #state .key { color: #3d5a80; }
  #state .changed { background: #fff1b8; outline: 1px solid #e0b400; border-radius: 3px; }
  #state .type { color: #7a5195; }
</style>
</head>
<body>
<header>
  <h1>%HEADING%</h1>
  <div class="source">source: %SOURCE%</div>
  <div id="violation"></div>
</header>
<main>
  <section><h2>Space-time diagram</h2><svg id="diagram" xmlns="http://www.w3.org/2000/svg"></svg></section>
  <section><h2>Steps</h2><ol id="steps"></ol></section>
  <section id="detail"><h2>Selected step</h2><h3 id="title"></h3>
    <ul id="changes"></ul><h2>State after the step</h2><div id="state"></div></section>
</main>
<script type="application/json" id="trace-data">%DATA%</script>
<script>
"use strict";
const data = JSON.parse(document.getElementById("trace-data").textContent);
const ROW = %ROW%, LANE = %LANE%, TOP = 40, LEFT = 50;
const SVG = "http://www.w3.org/2000/svg";
const last = data.steps.length - 1;
const violating = data.violation ? last : -1;

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function show(value) {
  if (value === null || typeof value !== "object") return typeof value === "string" ? value : JSON.stringify(value);
  if (Array.isArray(value)) return "[" + value.map(show).join(", ") + "]";
  if (typeof value.type === "string") {
    const args = Object.entries(value).filter(([k]) => k !== "type").map(([, v]) => show(v));
    return args.length ? value.type + "(" + args.join(", ") + ")" : value.type;
  }
  return "[" + Object.entries(value).map(([k, v]) => k + " \\u21a6 " + show(v)).join(", ") + "]";
}

const violationBox = document.getElementById("violation");
if (data.violation) {
  violationBox.textContent = data.violation.invariant + " violated at step " + last + ": " + data.violation.statement;
} else {
  violationBox.textContent = "No property is violated in this trace.";
  violationBox.className = "none";
}

// The space-time diagram.
const diagram = document.getElementById("diagram");
const laneX = {};
data.lanes.forEach((name, k) => { laneX[name] = LEFT + k * LANE; });
const height = TOP + (last + 1) * ROW;
diagram.setAttribute("width", LEFT + Math.max(1, data.lanes.length) * LANE);
diagram.setAttribute("height", height);
const defs = el("svg:defs");
const marker = el("svg:marker", {id: "head", markerWidth: 8, markerHeight: 8, refX: 7, refY: 4, orient: "auto"});
marker.appendChild(el("svg:path", {d: "M0,0 L8,4 L0,8 z", fill: "#6c7a89"}));
defs.appendChild(marker);
diagram.appendChild(defs);
for (const name of data.lanes) {
  diagram.appendChild(el("svg:text", {x: laneX[name], y: 16, "text-anchor": "middle"}, name));
  diagram.appendChild(el("svg:line", {class: "lane", x1: laneX[name], y1: 24, x2: laneX[name], y2: height}));
}
const y = (step) => TOP + step * ROW;
for (const a of data.arrows) {
  if (a.from === null || !(a.sender in laneX) || !(a.receiver in laneX)) continue;
  const x1 = laneX[a.sender], x2 = laneX[a.receiver], y1 = y(a.from), y2 = y(a.to);
  const path = x1 === x2
    ? `M${x1},${y1} C${x1 + 40},${y1} ${x2 + 40},${y2} ${x2 + 6},${y2}`
    : `M${x1},${y1} L${x2 + (x2 > x1 ? -7 : 7)},${y2}`;
  diagram.appendChild(el("svg:path", {class: "msg", d: path}));
  diagram.appendChild(el("svg:text", {class: "msg-label", x: (x1 + x2) / 2 + 4, y: (y1 + y2) / 2 - 3}, a.label));
}
for (const s of data.steps.slice(1)) {
  if (!(s.actor in laneX)) continue;
  const dot = el("svg:circle", {
    class: "dot" + (s.step === violating ? " violating" : ""),
    cx: laneX[s.actor], cy: y(s.step), r: 7, "data-step": s.step,
  });
  dot.appendChild(el("svg:title", {}, s.step + ": " + s.action));
  dot.addEventListener("click", () => select(s.step));
  diagram.appendChild(dot);
  diagram.appendChild(el("svg:text", {x: 6, y: y(s.step) + 4, fill: "#8a949e"}, String(s.step)));
}

// The step list.
const list = document.getElementById("steps");
for (const s of data.steps) {
  const item = el("li", {"data-step": s.step, class: s.step === violating ? "violating" : ""});
  item.appendChild(el("span", {class: "num"}, String(s.step)));
  if (s.actor) {
    item.appendChild(el("span", {class: "actor"}, s.actor));
    item.appendChild(document.createTextNode(" "));
  }
  item.appendChild(document.createTextNode(s.action));
  item.addEventListener("click", () => select(s.step));
  list.appendChild(item);
}

// The state of the selected step, changed parts highlighted.
function stateNode(value, path, label, changed) {
  const node = el("div", {class: "node", "data-path": JSON.stringify(path)});
  if (changed.has(JSON.stringify(path))) node.classList.add("changed");
  const isRecord = value && typeof value === "object" && !Array.isArray(value) && typeof value.type === "string";
  const isMap = value && typeof value === "object" && !Array.isArray(value) && !isRecord;
  if (label !== null) node.appendChild(el("span", {class: "key"}, label + ": "));
  if (isRecord || isMap) {
    if (isRecord) node.appendChild(el("span", {class: "type"}, value.type));
    for (const [k, v] of Object.entries(value)) {
      if (isRecord && k === "type") continue;
      node.appendChild(stateNode(v, path.concat([k]), k, changed));
    }
  } else {
    node.appendChild(document.createTextNode(show(value)));
  }
  return node;
}

function select(step) {
  const s = data.steps[step];
  for (const n of document.querySelectorAll("[data-step]")) {
    n.classList.toggle("selected", Number(n.dataset.step) === step);
  }
  const who = s.actor ? " \\u00b7 " + s.actor : "";
  document.getElementById("title").textContent = "Step " + step + who + " \\u00b7 " + s.action;
  const changes = document.getElementById("changes");
  changes.replaceChildren();
  const lines = s.changes.map((c) => c.text);
  for (const m of s.received) lines.push("received " + m);
  for (const m of s.sent) lines.push("sent " + m);
  if (step === 0) lines.push("the initial state");
  else if (!lines.length) lines.push("(no change)");
  for (const line of lines) changes.appendChild(el("li", {}, line));
  const box = document.getElementById("state");
  box.replaceChildren();
  if (s.state === null || s.state === undefined) box.textContent = "(state not recorded)";
  else box.appendChild(stateNode(s.state, [], null, new Set(s.changes.map((c) => JSON.stringify(c.path)))));
  current = step;
}

let current = 0;
document.addEventListener("keydown", (e) => {
  if (e.key === "ArrowDown" || e.key === "ArrowRight") select(Math.min(last, current + 1));
  if (e.key === "ArrowUp" || e.key === "ArrowLeft") select(Math.max(0, current - 1));
});
select(violating >= 0 ? violating : 0);
</script>
</body>
</html>
"""
