"""A client history as a self-contained HTML timeline, with the checker's answer on it.

Where it sits: ``distcheck linearizable HISTORY --html OUT.html``
(``checks.cli.histories``) reads a history (``checks.histories.formats``), checks it
(``checks.histories.linearizability``) and hands both here; ``page`` returns the
HTML text.  It knows no model and no protocol: it sees ``Operation`` records, the
sub-histories the model split them into, and the verdict.

What the page shows:

- one lane per client, each operation a bar from its invocation to its response;
  an operation that never returned runs to the end of the timeline, marked open;
- linearizable: the witness order, numbered on the bars (an open operation the
  witness did not need has no number: it need not have taken effect);
- not linearizable: the sub-history no order explains (one key, for a keyed
  model) is shown by default, and the page says so; the longest order of its
  operations the model explains is numbered on the bars, and the operations that
  could come next but whose results no order gives are highlighted;
- hovering a bar shows the operation, its arguments and result, its call and
  return positions, and its part in the answer;
- a menu chooses the sub-history (each key), or all of them, each key with its
  own stripe colour.

The time axis is the order of events, not their spacing: each distinct call or
return position among the operations shown takes one step, so a key's few
operations in a long file stay readable.

Histories come from untrusted files.  Everything the page shows from them travels
as JSON inside a ``<script type="application/json">`` element, with ``<``, ``>``
and ``&`` written as ``\\u`` escapes so that no text can close the element, and
the script puts it into the page with ``textContent`` only; the few strings
written into the HTML itself go through ``html.escape``.  Nothing is fetched:
the style and the script are inline.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from distcheck.checks.histories.linearizability import Operation, Stuck, describe
from distcheck.checks.verdict import OK, VIOLATED

# What each bar is in the answer (its CSS class, and the legend's words).
ORDERED: Final = "ordered"  # numbered: in the witness, or in the longest explained prefix
STUCK: Final = "stuck"  # could come next, but no order gives its result
UNPLACED: Final = "unplaced"  # in the failing sub-history, after the point where every order stops
OMITTED: Final = "omitted"  # open, and the witness did not need it to take effect
OTHER: Final = "other"  # outside the failing sub-history, or the search gave no answer

_LEGEND: Final[Mapping[str, str]] = {
    ORDERED: "numbered in the order",
    STUCK: "no order explains its result",
    UNPLACED: "not reached by any order",
    OMITTED: "never returned; need not have taken effect",
    OTHER: "another sub-history",
}


def page(
    *,
    title: str,
    operations: Sequence[Operation],
    sub_histories: Sequence[Sequence[Operation]],
    verdict: str,
    message: str,
    order: Sequence[Operation] = (),
    stuck: Sequence[Stuck] = (),
    failing: Sequence[Operation] = (),
    positions: str = "lines",
) -> str:
    """The HTML page for ``operations`` as checked.

    ``sub_histories``: the model's split of the operations (one per key); ``order``:
    the witness when ``verdict`` is ok, the longest explained prefix of ``failing``
    (the sub-history no order explains) when it is violated; ``stuck``: the
    operations no order places next; ``positions``: what ``call`` and ``ret`` count,
    "lines" of the file or "events"."""
    data = _page_data(title, operations, sub_histories, verdict, message, order, stuck, failing, positions)
    return _TEMPLATE.format(
        title=html.escape(title),
        verdict=html.escape(verdict),
        verdict_class=html.escape(verdict, quote=True),
        message=html.escape(message),
        style=_STYLE,
        script=_SCRIPT,
        data=script_json(data),
    )


def script_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` (so
    no ``</script>`` or ``<!--``), and no line separators JavaScript once refused."""
    text = json.dumps(value, ensure_ascii=False, default=repr, separators=(",", ":"))
    for raw, escaped in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text


def _page_data(
    title: str,
    operations: Sequence[Operation],
    sub_histories: Sequence[Sequence[Operation]],
    verdict: str,
    message: str,
    order: Sequence[Operation],
    stuck: Sequence[Stuck],
    failing: Sequence[Operation],
    positions: str,
) -> dict[str, Any]:
    part_of: dict[tuple[str, int], int] = {}
    for number, part in enumerate(sub_histories):
        for operation in part:
            part_of[_identity(operation)] = number
    rank = {_identity(operation): place for place, operation in enumerate(order, start=1)}
    answers = {_identity(s.operation): s.answer for s in stuck}
    failing_ids = {_identity(operation) for operation in failing}
    failing_part = next((part_of[i] for i in failing_ids if i in part_of), None)

    def kind(identity: tuple[str, int], operation: Operation) -> str:
        if verdict == OK:
            return ORDERED if identity in rank else OMITTED if operation.ret is None else OTHER
        if verdict != VIOLATED or identity not in failing_ids:
            return OTHER
        if identity in rank:
            return ORDERED
        return STUCK if identity in answers else UNPLACED

    ops: list[dict[str, Any]] = []
    for operation in sorted(operations, key=lambda o: o.call):
        identity = _identity(operation)
        entry: dict[str, Any] = {
            "client": operation.client,
            "call": operation.call,
            "ret": operation.ret,
            "label": _call_text(operation),
            "result": None if operation.ret is None else _value_text(operation.result),
            "text": describe(operation),
            "part": part_of.get(identity, -1),
            "kind": kind(identity, operation),
            "rank": rank.get(identity),
        }
        if identity in answers:
            entry["answer"] = _value_text(answers[identity])
        ops.append(entry)
    parts = [
        {"label": _part_label(number, part), "size": len(part), "failing": number == failing_part}
        for number, part in enumerate(sub_histories)
    ]
    return {
        "title": title,
        "verdict": verdict,
        "message": message,
        "positions": "line" if positions == "lines" else "event",
        "clients": sorted({o.client for o in operations}, key=_natural),
        "ops": ops,
        "parts": parts,
        "shown": -1 if failing_part is None else failing_part,
        "ordered": len(order),
        "legend": _LEGEND,
    }


def _identity(operation: Operation) -> tuple[str, int]:
    # Each call position holds one event, so a client and a call name one operation
    # (two equal records would otherwise be one key).
    return (operation.client, operation.call)


def _part_label(number: int, part: Sequence[Operation]) -> str:
    keys = {json.dumps(o.op.get("key"), sort_keys=True, default=repr) for o in part}
    if part and len(keys) == 1 and all("key" in o.op for o in part):
        key = part[0].op["key"]
        return f"key {key if isinstance(key, str) else json.dumps(key, default=repr)}"
    return f"sub-history {number + 1}"


def _call_text(operation: Operation) -> str:
    op = operation.op
    args = [_value_text(op["key"]) if not isinstance(op["key"], str) else op["key"]] if "key" in op else []
    args += [_value_text(v) for k, v in op.items() if k not in ("op", "key")]
    return f"{op.get('op')}({', '.join(args)})"


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "absent"
    return str(value)


def _natural(name: str) -> list[Any]:
    # p2 before p10: digits compare as numbers.
    return [(0, int(piece), "") if piece.isdigit() else (1, 0, piece) for piece in re.split(r"(\d+)", name)]


_TEMPLATE: Final = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}: {verdict}</title>
<style>{style}</style>
</head>
<body>
<header>
<h1><span id="verdict" class="{verdict_class}">{verdict}</span> <span id="title">{title}</span></h1>
<p id="message">{message}</p>
<p id="controls"><label>show <select id="part"></select></label> <span id="note"></span></p>
<p id="legend"></p>
</header>
<div id="timeline"></div>
<div id="tip" hidden></div>
<section id="lists"></section>
<script type="application/json" id="data">{data}</script>
<script>{script}</script>
</body>
</html>
"""

_STYLE: Final = """
body { font: 13px/1.4 system-ui, sans-serif; margin: 0; color: #222; }
header { padding: 10px 16px; border-bottom: 1px solid #ddd; background: #fafafa; }
h1 { font-size: 16px; margin: 0 0 4px; }
#verdict { padding: 1px 8px; border-radius: 3px; color: #fff; background: #777; }
#verdict.ok { background: #2e7d32; } #verdict.violated { background: #c62828; }
#message { margin: 4px 0; max-width: 110em; font-family: ui-monospace, monospace; font-size: 12px; }
#controls, #legend { margin: 4px 0; }
#legend .op { position: static; display: inline-block; width: 26px; height: 12px; margin: 0 4px 0 12px;
  vertical-align: middle; }
#timeline { position: relative; overflow-x: auto; padding: 8px 0 16px; }
.axis, .lane { position: relative; height: 30px; }
.axis { height: 18px; color: #888; font-size: 10px; }
.lane:nth-child(odd) { background: #f6f6f6; }
.who { position: sticky; left: 0; z-index: 2; display: inline-block; width: 84px; height: 100%;
  padding-left: 8px; line-height: 30px; background: inherit; font-weight: 600; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; box-sizing: border-box; border-right: 1px solid #ddd; }
.track { position: absolute; top: 0; left: 84px; height: 100%; }
.tick { position: absolute; top: 2px; border-left: 1px solid #ccc; padding-left: 2px; height: 14px; }
.op { position: absolute; top: 4px; height: 20px; box-sizing: border-box; border: 1px solid #999;
  border-left-width: 4px; border-radius: 3px; background: #eee; overflow: hidden; white-space: nowrap;
  font-size: 11px; line-height: 18px; padding: 0 3px; cursor: default; }
.op.ordered { background: #d6e6ff; border-color: #3a6fb0; }
.op.stuck { background: #ffcdd2; border-color: #c62828; border-width: 2px; border-left-width: 4px;
  font-weight: 700; z-index: 1; }
.op.unplaced { background: #eeeeee; border-color: #9e9e9e; color: #555; }
.op.omitted { background: #fff; border-style: dashed; color: #777; }
.op.other { background: #f7f7f7; border-color: #c8c8c8; color: #666; }
.op.open { border-right: 0; border-top-right-radius: 0; border-bottom-right-radius: 0;
  -webkit-mask-image: linear-gradient(to right, #000 80%, rgba(0,0,0,0.35)); }
.op:hover { outline: 2px solid #222; z-index: 3; }
.op .num { font-weight: 700; margin-right: 3px; }
#tip { position: fixed; z-index: 10; max-width: 560px; padding: 6px 8px; background: #222; color: #fff;
  border-radius: 4px; font: 12px/1.45 ui-monospace, monospace; white-space: pre-wrap; pointer-events: none; }
#lists { padding: 4px 16px 24px; }
#lists h2 { font-size: 14px; margin: 14px 0 4px; }
#lists ol, #lists ul { margin: 0; padding-left: 3.5em; font-family: ui-monospace, monospace; font-size: 12px; }
#lists .stuck { color: #c62828; }
"""

# The script builds the lanes from the JSON data.  It writes text only through
# textContent, never innerHTML: what the history holds is shown, never run.
_SCRIPT: Final = r"""
"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
const timeline = document.getElementById("timeline");
const tip = document.getElementById("tip");
const select = document.getElementById("part");
const WHO = 84;
data.ops.forEach((o, i) => { o.index = i; });

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function hue(part) { return part < 0 ? 0 : (part * 137.508) % 360; }

function positionText(o) {
  const end = o.ret === null ? "never returned (open to the end)" : data.positions + " " + o.ret;
  return "call at " + data.positions + " " + o.call + ", return: " + end;
}

function tipText(o) {
  const lines = [o.client + " " + o.label + " \u2192 " + (o.ret === null ? "(no response)" : o.result)];
  lines.push(positionText(o));
  if (o.part >= 0) lines.push(data.parts[o.part].label);
  if (o.kind === "ordered" && data.verdict === "ok") lines.push("#" + o.rank + " in the witness order");
  if (o.kind === "ordered" && data.verdict !== "ok")
    lines.push("#" + o.rank + " of the longest order the model explains");
  if (o.kind === "stuck") lines.push("could come next, but the model answers " + o.answer);
  if (o.kind === "unplaced") lines.push("after the point where every order stops");
  if (o.kind === "omitted") lines.push("never returned, and the witness does not need it to take effect");
  return lines.join("\n");
}

function render() {
  const chosen = Number(select.value);
  const ops = data.ops.filter((o) => chosen < 0 || o.part === chosen);
  const points = [...new Set(ops.flatMap((o) => (o.ret === null ? [o.call] : [o.call, o.ret])))];
  points.sort((a, b) => a - b);
  const step = new Map(points.map((p, i) => [p, i]));
  const last = points.length;
  const room = Math.max(timeline.clientWidth - WHO - 24, 200);
  // At least room for an order number on the shortest bar; wider histories scroll.
  const width = Math.max(22, Math.min(96, Math.floor(room / (last + 1))));
  const x = (i) => (i + 0.5) * width;
  const clients = data.clients.filter((c) => ops.some((o) => o.client === c));
  timeline.replaceChildren();
  const axis = el("div", "axis");
  axis.append(el("span", "who", data.positions));
  const ticks = el("div", "track");
  const every = Math.max(1, Math.ceil(60 / width));
  for (let i = 0; i < last; i += every) {
    const tick = el("span", "tick", String(points[i]));
    tick.style.left = x(i) + "px";
    ticks.append(tick);
  }
  axis.append(ticks);
  timeline.append(axis);
  const total = (last + 1) * width;
  for (const client of clients) {
    const lane = el("div", "lane");
    lane.dataset.client = client;
    lane.style.width = WHO + total + "px";
    lane.append(el("span", "who", client));
    const track = el("div", "track");
    track.style.width = total + "px";
    for (const o of ops.filter((op) => op.client === client)) {
      const bar = el("div", "op " + o.kind + (o.ret === null ? " open" : ""));
      const start = x(step.get(o.call));
      const end = o.ret === null ? total : x(step.get(o.ret));
      bar.style.left = start + "px";
      bar.style.width = Math.max(end - start, 6) + "px";
      bar.style.borderLeftColor = "hsl(" + hue(o.part) + ", 65%, 40%)";
      bar.dataset.index = String(o.index);
      bar.dataset.call = String(o.call);
      if (o.rank !== null) {
        bar.dataset.rank = String(o.rank);
        bar.append(el("span", "num", "#" + o.rank));
      }
      bar.append(document.createTextNode(o.label + " \u2192 " + (o.ret === null ? "open" : o.result)));
      track.append(bar);
    }
    lane.append(track);
    timeline.append(lane);
  }
  const note = document.getElementById("note");
  const part = chosen >= 0 ? data.parts[chosen] : null;
  if (part && part.failing) {
    note.textContent = "showing " + part.label + ", the part no order explains: " + ops.length + " of " +
      data.ops.length + " operations (the menu shows the others)";
  } else {
    note.textContent = ops.length + " of " + data.ops.length + " operations, " + clients.length + " clients";
  }
}

function lists() {
  const box = document.getElementById("lists");
  const ordered = data.ops.filter((o) => o.rank !== null).sort((a, b) => a.rank - b.rank);
  const failing = data.parts.find((p) => p.failing);
  const heading = data.verdict === "ok" ? "The witness order (" + ordered.length + " operations)"
    : failing ? "The longest order of " + failing.label + " that the model explains (" + ordered.length + " operations)"
    : null;
  if (heading) {
    box.append(el("h2", null, heading));
    const list = el("ol", "order");
    for (const o of ordered) list.append(el("li", null, o.text));
    box.append(list);
  }
  const stuck = data.ops.filter((o) => o.kind === "stuck");
  if (stuck.length) {
    box.append(el("h2", "stuck", "Then no order explains these, which real time allows next"));
    const list = el("ul", "stuck");
    for (const o of stuck) list.append(el("li", null, o.text + ", where the model answers " + o.answer));
    box.append(list);
  }
}

function legend() {
  const box = document.getElementById("legend");
  const used = new Set(data.ops.map((o) => o.kind));
  for (const [kind, words] of Object.entries(data.legend)) {
    if (!used.has(kind)) continue;
    box.append(el("span", "op " + kind), document.createTextNode(words));
  }
  if (data.ops.some((o) => o.ret === null))
    box.append(el("span", "op open"), document.createTextNode("never returned: open to the end"));
}

const all = el("option", null, "all " + data.parts.length + " sub-histories");
all.value = "-1";
select.append(all);
data.parts.forEach((p, i) => {
  const words = p.label + " (" + p.size + " operations" + (p.failing ? ", not linearizable" : "") + ")";
  const option = el("option", null, words);
  option.value = String(i);
  select.append(option);
});
select.value = String(data.shown);
if (data.parts.length < 2) document.getElementById("controls").querySelector("label").hidden = true;
select.addEventListener("change", render);
timeline.addEventListener("mouseover", (event) => {
  const bar = event.target.closest(".op");
  if (!bar) return;
  tip.textContent = tipText(data.ops[Number(bar.dataset.index)]);
  tip.hidden = false;
});
timeline.addEventListener("mousemove", (event) => {
  tip.style.left = Math.min(event.clientX + 14, window.innerWidth - 380) + "px";
  tip.style.top = event.clientY + 16 + "px";
});
timeline.addEventListener("mouseout", (event) => {
  if (event.target.closest(".op")) tip.hidden = true;
});
legend();
render();
lists();
"""
