"""A span export (``impl.telemetry``'s JSON lines) as a trace, so ``distcheck show`` draws it.

Where it sits: ``distcheck show FILE [FILE ...]`` (``checks.cli.trace``) calls
``is_span_file`` on the first file; for a span export it reads every file with
``read``, picks one trace with ``choose`` and turns it into a ``checks.traces.trace.Trace``
with ``to_trace``.  From there the trace tools draw it as they draw any trace: the
step table and message-sequence chart (``checks.traces.render``), the HTML viewer
(``checks.traces.html``) and the ShiViz log (``checks.traces.shiviz``).  It reads the
files through ``checks.inputs`` (its limits), and knows the span file only as
docs/observability.md ("The span file") gives it: one JSON object per line with
``traceId``, ``spanId``, ``parentSpanId``, ``name``, ``kind``, ``node``, ``start``,
``end``, ``status``, ``attributes``.  Several processes' files, given together or
concatenated, make one export; a span read twice (the same file given twice) counts
once.

How spans become a trace:

- every span of the chosen trace is a step, on the lane of its node, in order of
  start time, except that a span never comes before its parent (the clocks of
  different machines may disagree by more than a message takes);
- a span of kind ``server`` (or ``consumer``) whose parent span ran on another node
  is a message: the parent's step sends it and this span's step receives it, so the
  chart draws an arrow from the parent's lane to this one, labelled with the span's
  name; where another step sends a message of that name between this one's send and
  its receipt, the label adds the start of the span's id
  (``AppendEntriesRequest(1a2b3c4d)``), which pairs the arrow with its sender;
- a ``server`` span whose parent is in none of the files is a message from outside
  the files: drawn from the chart's edge, its step naming the sender
  (``distcheck.src``) when the span does;
- what the file says about each span (kind, duration, status, attributes) is shown
  where a trace shows a step's changes (``notes`` of ``render.trace_text``).

Which trace: ``--trace-id`` (a trace id or a prefix of one that only one trace has);
without it, the trace with the most spans (the earliest of those that tie).  One
request's export is one trace, so that is the request; with several, the CLI says
how many others there are and how to pick one.
"""

from __future__ import annotations

import bisect
import heapq
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from distcheck.checks.inputs import DEFAULT_LIMITS, InputError, JsonReader, Limits, read_json_lines, read_lines
from distcheck.checks.traces.trace import Trace, TraceHeader, TraceStep

KINDS = ("client", "server", "internal", "producer", "consumer")
#: kinds of span that handle a message (OpenTelemetry's ``consumer`` is a queue's ``server``)
RECEIVING = ("server", "consumer")
ID_CHARS = 8  # a span id is shown by its first characters (more where two in a trace share them)
SHOWN_ATTRIBUTES = 6  # attributes listed per step beyond the node and sender; the rest are counted
_OWN_ATTRIBUTES = ("distcheck.node", "distcheck.src")
_REQUIRED = ("traceId", "spanId", "name", "kind", "start", "end")


class SpanFormatError(InputError):
    """A span file that does not follow docs/observability.md's form: ``line`` is
    1-based (0: the files as a whole), ``reason`` says what was expected."""


@attrs.frozen
class SpanRecord:
    """One finished span, as a line of a span file holds it."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    node: str
    start: int  # Unix time, nanoseconds
    end: int
    status: str
    attributes: Mapping[str, Any]
    origin: str  # FILE:LINE, for messages

    @property
    def sender(self) -> str | None:
        """The node a handled message came from, as the span names it."""
        src = self.attributes.get("distcheck.src")
        return src if isinstance(src, str) and src else None


# ------------------------------------------------------------------------ reading


def is_span_file(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> bool:
    """Whether ``path`` starts like a span export: its first non-blank line is a JSON
    object with ``traceId`` or ``spanId``.  Anything else (a trace, a file that cannot
    be read or parsed) is False, and the trace reader says what is wrong with it."""
    reader = JsonReader(limits)
    try:
        for _, text in read_lines(path, limits):
            if text.strip():
                value = reader.parse(text)
                return isinstance(value, dict) and ("traceId" in value or "spanId" in value)
    except (InputError, ValueError):
        return False
    return False


def read(paths: Sequence[str | Path], limits: Limits = DEFAULT_LIMITS) -> list[SpanRecord]:
    """Every span in ``paths`` (files read in turn; a span read twice kept once).
    ``SpanFormatError`` names the file, the line and what was expected there."""
    out: list[SpanRecord] = []
    seen: dict[tuple[str, str], SpanRecord] = {}
    for path in paths:
        origin = str(path)
        try:
            for number, value in read_json_lines(path, limits):
                record = parse_span(value, origin, number)
                key = (record.trace_id, record.span_id)
                first = seen.get(key)
                if first is None:
                    seen[key] = record
                    out.append(record)
                elif attrs.evolve(first, origin=record.origin) != record:
                    raise SpanFormatError(
                        origin,
                        number,
                        f"span {record.span_id} of trace {record.trace_id} is also at {first.origin}, "
                        "with other contents; expected each span once (or the same line again)",
                    )
        except SpanFormatError:
            raise
        except InputError as exc:
            raise SpanFormatError(exc.origin, exc.line, exc.reason) from None
    if not out:
        raise SpanFormatError(", ".join(str(p) for p in paths), 0, "no spans: expected one JSON object per line")
    return out


def parse_span(value: Any, origin: str, line: int) -> SpanRecord:
    """One line's value as a span, or ``SpanFormatError`` saying what was expected."""

    def bad(reason: str) -> SpanFormatError:
        return SpanFormatError(origin, line, reason)

    if not isinstance(value, dict):
        raise bad(f"expected a span (a JSON object with {', '.join(_REQUIRED)}), got {_kind_of(value)}")
    missing = [key for key in _REQUIRED if key not in value]
    if missing:
        raise bad(f"expected a span with {', '.join(_REQUIRED)}; missing {', '.join(missing)}")
    for key in ("traceId", "spanId"):
        if not _is_id(value[key]):
            raise bad(f'expected "{key}" to be a hex id (a non-empty string of 0-9a-f), got {_brief(value[key])}')
    parent = value.get("parentSpanId")
    if parent is not None and not _is_id(parent):
        raise bad(f'expected "parentSpanId" to be a hex id or null (a root span), got {_brief(parent)}')
    if not isinstance(value["name"], str) or not value["name"]:
        raise bad(f'expected "name" to be a non-empty string, got {_brief(value["name"])}')
    if value["kind"] not in KINDS:
        raise bad(f'expected "kind" to be one of {", ".join(KINDS)}, got {_brief(value["kind"])}')
    for key in ("start", "end"):
        if not isinstance(value[key], int) or isinstance(value[key], bool) or value[key] < 0:
            raise bad(f'expected "{key}" to be a time in Unix nanoseconds (an integer >= 0), got {_brief(value[key])}')
    if value["end"] < value["start"]:
        raise bad(f'expected "end" ({value["end"]}) not to be before "start" ({value["start"]})')
    attributes = value.get("attributes", {})
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, dict):
        raise bad(f'expected "attributes" to be an object, got {_brief(attributes)}')
    status = value.get("status", "unset")
    if status is None:
        status = "unset"
    if not isinstance(status, str):
        raise bad(f'expected "status" to be a string (unset, ok or error), got {_brief(status)}')
    node = value.get("node")
    if node is None:  # an exporter that left the field out: the attribute says the same
        node = attributes.get("distcheck.node")
    if node is None:
        node = "?"
    if not isinstance(node, str) or not node:
        raise bad(f'expected "node" to be a non-empty string or null, got {_brief(node)}')
    return SpanRecord(
        value["traceId"].lower(),
        value["spanId"].lower(),
        parent.lower() if parent is not None else None,
        value["name"],
        value["kind"],
        node,
        value["start"],
        value["end"],
        status,
        attributes,
        f"{origin}:{line}",
    )


_HEX_ID = re.compile(r"[0-9a-fA-F]{1,64}")


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and _HEX_ID.fullmatch(value) is not None


def _kind_of(value: Any) -> str:
    kinds = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true or false"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _brief(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:39] + "…"


# ------------------------------------------------------------------ choosing a trace


@attrs.frozen
class TraceInfo:
    """A trace in the files, as the CLI names it: its id, how many spans, and the
    name of its first root span (the request: ``raft.put``), "?" when it has none."""

    trace_id: str
    spans: int
    root: str


@attrs.frozen
class Choice:
    """The trace ``choose`` picked: its spans, and the other traces (most spans first)."""

    trace_id: str
    spans: tuple[SpanRecord, ...]
    others: tuple[TraceInfo, ...]


def by_trace(spans: Iterable[SpanRecord]) -> dict[str, list[SpanRecord]]:
    out: dict[str, list[SpanRecord]] = {}
    for s in spans:
        out.setdefault(s.trace_id, []).append(s)
    return out


def choose(spans: Sequence[SpanRecord], trace_id: str | None = None) -> Choice:
    """The trace ``trace_id`` names (its id, or a prefix only one trace has), or,
    without one, the trace with the most spans (of those that tie, the one that
    started first).  ``LookupError`` with a one-line reason when none or several
    match."""
    traces = by_trace(spans)
    ranked = sorted(traces, key=lambda t: (-len(traces[t]), min(s.start for s in traces[t]), t))
    if trace_id is None:
        chosen = ranked[0]
    else:
        wanted = trace_id.strip().lower()
        matches = [t for t in ranked if t == wanted] or [t for t in ranked if wanted and t.startswith(wanted)]
        if not matches:
            listed = ", ".join(ranked[:5]) + (f" and {len(ranked) - 5:,} more" if len(ranked) > 5 else "")
            raise LookupError(f"no trace {trace_id!r} in the spans; the traces there: {listed}")
        if len(matches) > 1:
            raise LookupError(
                f"{len(matches):,} traces start with {trace_id!r} ({', '.join(matches[:3])}...); give more of the id"
            )
        chosen = matches[0]
    others = tuple(_info(t, traces[t]) for t in ranked if t != chosen)
    return Choice(chosen, tuple(traces[chosen]), others)


def _info(trace_id: str, spans: Sequence[SpanRecord]) -> TraceInfo:
    ids = {s.span_id for s in spans}
    roots = sorted((s.start, s.name) for s in spans if s.parent_id is None or s.parent_id not in ids)
    return TraceInfo(trace_id, len(spans), roots[0][1] if roots else "?")


# ------------------------------------------------------------------- to a trace


@attrs.frozen
class SpanTrace:
    """A trace made of spans, with the notes ``render.trace_text`` and ``html.page``
    show in place of a step's changes (by index into the steps)."""

    trace: Trace
    notes: Mapping[int, Sequence[str]]
    nodes: tuple[str, ...]
    spans: int
    seconds: float


def ordered(spans: Sequence[SpanRecord]) -> list[SpanRecord]:
    """By start time (then end, then id), a span never before its parent."""
    ids = {s.span_id for s in spans}
    children: dict[str, list[SpanRecord]] = {}
    ready: list[tuple[int, int, str, int]] = []
    for k, s in enumerate(spans):
        if s.parent_id is not None and s.parent_id in ids and s.parent_id != s.span_id:
            children.setdefault(s.parent_id, []).append(s)
        else:
            ready.append((s.start, s.end, s.span_id, k))
    index = {s.span_id: k for k, s in enumerate(spans)}
    heapq.heapify(ready)
    out: list[SpanRecord] = []
    placed: set[str] = set()
    while ready:
        _, _, span_id, k = heapq.heappop(ready)
        if span_id in placed:
            continue
        placed.add(span_id)
        out.append(spans[k])
        for child in children.get(span_id, []):
            heapq.heappush(ready, (child.start, child.end, child.span_id, index[child.span_id]))
    # Spans in a cycle of parents (a corrupt file) have no root to reach them from.
    out += sorted((s for s in spans if s.span_id not in placed), key=lambda s: (s.start, s.end, s.span_id))
    return out


def short_ids(spans: Sequence[SpanRecord]) -> dict[str, str]:
    """Each span id cut to the fewest characters (at least ``ID_CHARS``) that keep
    every id in ``spans`` apart."""
    ids = sorted({s.span_id for s in spans})
    size = ID_CHARS
    while size < max((len(i) for i in ids), default=0) and len({i[:size] for i in ids}) < len(ids):
        size += 1
    return {i: i[:size] for i in ids}


def to_trace(choice: Choice) -> SpanTrace:
    """The chosen trace's spans as a trace: a step per span, a message per span that
    handles one sent from another node (module docstring)."""
    spans = ordered(choice.spans)
    by_id = {s.span_id: s for s in spans}
    short = short_ids(spans)
    position = {s.span_id: k for k, s in enumerate(spans)}
    receipts: list[tuple[SpanRecord, SpanRecord | None]] = []  # (span, its parent) for every arrow
    for s in spans:
        if s.kind not in RECEIVING:
            continue
        parent = by_id.get(s.parent_id) if s.parent_id is not None else None
        if parent is None and s.parent_id is None:
            continue  # a root: no one sent it within a trace
        if parent is not None and parent.node == s.node:
            continue  # handled on the node that sent it: a step, no arrow
        receipts.append((s, parent))
    # The chart pairs a receipt with the latest earlier step that sent an equal
    # message (render.arrows).  A message is its name alone where that pairs it
    # rightly: no other step sends one of that name between its send and its receipt.
    senders: dict[str, list[int]] = {}
    for s, parent in receipts:
        if parent is not None:
            senders.setdefault(s.name, []).append(position[parent.span_id])
    for sending in senders.values():
        sending.sort()
    message: dict[str, dict[str, str]] = {}  # span id -> the message its step receives
    sent: dict[str, list[dict[str, str]]] = {}  # span id -> the messages its step sends
    for s, parent in receipts:
        if parent is None:  # from outside the files: equal to nothing any step sends
            message[s.span_id] = {"type": s.name, "span": short[s.span_id]}
            continue
        sending = senders[s.name]
        between = bisect.bisect_left(sending, position[s.span_id]) - bisect.bisect_right(
            sending, position[parent.span_id]
        )
        msg = {"type": s.name} if between == 0 else {"type": s.name, "span": short[s.span_id]}
        message[s.span_id] = msg
        sent.setdefault(parent.span_id, []).append(msg)
    nodes: list[str] = []
    for s in spans:
        if s.node not in nodes:
            nodes.append(s.node)
    start = min(s.start for s in spans)
    seconds = (max(s.end for s in spans) - start) / 1e9
    initial = {
        "trace": choice.trace_id,
        "spans": len(spans),
        "nodes": nodes,
        "duration": _duration(seconds),
    }
    steps = [TraceStep(0, None, None, initial)]
    notes: dict[int, list[str]] = {}
    for k, s in enumerate(spans, start=1):
        received = (message[s.span_id],) if s.span_id in message else ()
        text = s.name
        if received and (s.parent_id not in by_id):
            text += f" from {s.sender}" if s.sender else " from outside the files"
        steps.append(
            TraceStep(
                k,
                s.node,
                {"type": s.name},
                None,
                text,
                tuple(sent.get(s.span_id, ())),
                received,
            )
        )
        notes[k] = _notes(s, start, by_id)
    notes[0] = [f"{_duration(seconds)} from the first span's start to the last one's end"]
    header = TraceHeader(f"trace {choice.trace_id}", {}, None, "impl")
    return SpanTrace(Trace(header, tuple(steps)), notes, tuple(nodes), len(spans), seconds)


def _notes(s: SpanRecord, start: int, by_id: Mapping[str, SpanRecord]) -> list[str]:
    first = (
        f"{s.kind} span {s.span_id}, at +{_duration((s.start - start) / 1e9)} for {_duration((s.end - s.start) / 1e9)}"
    )
    lines = [first]
    if s.status not in ("unset", "ok"):
        lines.append(f"status: {s.status}")
    if s.parent_id is not None and s.parent_id not in by_id:
        sender = f" (sent by {s.sender})" if s.sender else ""
        lines.append(f"parent span {s.parent_id} is in none of the files{sender}")
    extra = [(k, v) for k, v in s.attributes.items() if k not in _OWN_ATTRIBUTES]
    for key, value in extra[:SHOWN_ATTRIBUTES]:
        lines.append(f"{key} = {value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}")
    if len(extra) > SHOWN_ATTRIBUTES:
        lines.append(f"(and {len(extra) - SHOWN_ATTRIBUTES:,} more attributes)")
    return lines


def _duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} µs"
