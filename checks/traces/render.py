"""Text rendering of behaviours: the numbered step table and, for message-passing
specs, the message-sequence chart, shown wherever a counterexample is printed (the
CLI, pytest and hypothesis failures).

Where it sits: used by the CLI, ``checks.stateful`` and the trace tools.  It renders
a ``checks.trace.Trace`` (the JSON form every source shares), so a trace from the
explorer, from hypothesis or from another program's log reads the same; a behaviour
held as spec values (``step_table``) is turned into a trace first.  Each row gives
the step number, the actor, the action, and only what changed (old → new), so a
reader follows the story without re-reading whole states.  Output fits 100 columns
and carries colour only when asked to (the CLI asks when stdout is a terminal).
``show``, ``changes`` and ``state_table`` render spec values directly, for tools
that hold single states rather than traces.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from distcheck.checks.inputs import clip, printable
from distcheck.checks.traces.trace import (
    ABSENT,
    Change,
    Trace,
    TraceHeader,
    TraceStep,
    actors,
    diff,
    frozen,
    is_record,
    path_text,
)
from distcheck.spec.codec import to_json
from distcheck.spec.network import MessageSet, Network
from distcheck.spec.values import Bag, FrozenMap, sorted_values


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``1 step``, ``3 steps``, ``1,000 examples``."""
    word = noun if count == 1 else plural_form or noun + "s"
    return f"{count:,} {word}"


def show(value: Any) -> str:
    """A short human form of a spec value."""
    if isinstance(value, str):
        return value
    if isinstance(value, frozenset):
        return "{" + ", ".join(show(v) for v in sorted_values(value)) + "}"
    if isinstance(value, tuple):
        return "⟨" + ", ".join(show(v) for v in value) + "⟩"
    if isinstance(value, (FrozenMap, Bag, MessageSet)) or isinstance(value, Network):
        return str(value)
    if attrs.has(type(value)) and type(value).__str__ is object.__str__:  # type: ignore[comparison-overlap]
        fields = ", ".join(f"{f.name}={show(getattr(value, f.name))}" for f in attrs.fields(type(value)))
        return f"{type(value).__name__}({fields})"
    return str(value)


def changes(old: Any, new: Any, path: str = "") -> list[str]:
    """What differs between two values, one line per changed part: ``path: old → new``
    for plain values, ``path[key]: ...`` inside maps, ``path +x -y`` for sets."""
    if old == new:
        return []
    if attrs.has(type(old)) and type(old) is type(new) and not isinstance(old, Network):
        out: list[str] = []
        for f in attrs.fields(type(old)):
            out += changes(getattr(old, f.name), getattr(new, f.name), f"{path}.{f.name}" if path else f.name)
        return out
    if isinstance(old, FrozenMap) and isinstance(new, FrozenMap):
        out = []
        for key in sorted_values(set(old) | set(new)):
            out += changes(old.get(key, "∅"), new.get(key, "∅"), f"{path}[{show(key)}]")
        return out
    members = _members(old), _members(new)
    if members[0] is not None and members[1] is not None:
        added = [m for m in members[1] if m not in members[0]]
        removed = [m for m in members[0] if m not in members[1]]
        parts = [f"+{show(m)}" for m in added] + [f"-{show(m)}" for m in removed]
        if not parts:  # multiplicities changed
            return [f"{path}: {show(old)} → {show(new)}"]
        return [f"{path} " + " ".join(parts)]
    return [f"{path}: {show(old)} → {show(new)}"]


def _members(value: Any) -> list[Any] | None:
    if isinstance(value, frozenset):
        return sorted_values(value)
    if isinstance(value, Network):
        return value.deliverable()
    return None


def step_table(
    steps: Sequence[tuple[Any, Any]],
    *,
    actor: Any = None,
    width: int | None = None,
) -> str:
    """Render a behaviour given as (action, state) spec values, the first with action
    None.  ``actor(action)`` names who takes a step (default: the action's ``actor``)."""
    who = actor or (lambda a: getattr(a, "actor", "env"))
    out = [TraceStep(0, None, None, to_json(steps[0][1]))]
    for i in range(1, len(steps)):
        action, state = steps[i]
        out.append(TraceStep(i, who(action), to_json(action), to_json(state), show(action)))
    return trace_table(Trace(TraceHeader(""), tuple(out)), width=width)


def _width(width: int | None) -> int:
    return width or min(shutil.get_terminal_size((100, 24)).columns, 100)


# ----------------------------------------------------------- traces (JSON values)


VALUE_CHARS = 200  # a longer string in a value is shown cut, with a marker saying how much is left out
LINE_CHARS = 2_000  # a longer line of the step table is cut the same way before it is wrapped
ACTOR_CHARS = 24  # the actor column is at most this wide; a longer name is cut with "…"
MAX_LANES = 16  # more nodes than this and the sequence chart is left out (it would be unreadable)


def show_json(value: Any) -> str:
    """A short human form of a value in its JSON form: records as ``Type(a, b)``
    (like an action's ``str``), maps as ``[k ↦ v]``, bags as ``⟅m ×2⟆``."""
    if isinstance(value, str):
        return clip(value, VALUE_CHARS)
    if value is ABSENT:
        return "∅"
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(show_json(v) for v in value) + "]"
    if is_record(value):
        fields = [(k, v) for k, v in value.items() if k != "type"]
        if len(fields) > 3:  # a wide record (a node's state) reads better with names
            args = [f"{k}={show_json(v)}" for k, v in fields]
        else:  # a message or action: short, like its str
            args = [show_json(v) for _, v in fields]
        return f"{value['type']}({', '.join(args)})" if args else str(value["type"])
    if isinstance(value, dict) and set(value) == {"bag"} and isinstance(value["bag"], list):
        return "⟅" + ", ".join(show_json(m) + ("" if n == 1 else f" ×{n}") for m, n in value["bag"]) + "⟆"
    if isinstance(value, dict) and set(value) == {"map"} and isinstance(value["map"], list):
        return "[" + ", ".join(f"{show_json(k)} ↦ {show_json(v)}" for k, v in value["map"]) + "]"
    if isinstance(value, dict):
        return "[" + ", ".join(f"{k} ↦ {show_json(v)}" for k, v in value.items()) + "]"
    return str(value)


def change_text(change: Change) -> str:
    """One change as a line: ``path: old → new`` or ``path +added -removed``."""
    path = path_text(change)
    if change.is_members:
        return (
            path
            + " "
            + " ".join([f"+{show_json(m)}" for m in change.added] + [f"-{show_json(m)}" for m in change.removed])
        )
    return f"{path}: {show_json(change.old)} → {show_json(change.new)}"


def describe_json(state: Any) -> list[str]:
    """A whole state, one line per top-level field."""
    if is_record(state):
        return [f"{k} = {show_json(v)}" for k, v in state.items() if k != "type"]
    if isinstance(state, dict):
        return [f"{k} = {show_json(v)}" for k, v in state.items()]
    return [show_json(state)]


def step_action_text(step: TraceStep) -> str:
    if step.action is None:
        return "Init"
    return step.action_text if step.action_text is not None else show_json(step.action)


def step_changes(trace: Trace, index: int) -> list[str]:
    """What step ``index`` changed, as lines (the whole state for step 0)."""
    step = trace.steps[index]
    if step.state is None:
        return ["(state not recorded)"]
    if index == 0:
        return describe_json(step.state)
    before = trace.steps[index - 1].state
    if before is None:
        return describe_json(step.state)
    return [change_text(c) for c in diff(before, step.state)] or ["(no change)"]


def trace_table(
    trace: Trace,
    *,
    width: int | None = None,
    highlight: int | None = None,
    colour: bool = False,
    notes: Mapping[int, Sequence[str]] | None = None,
) -> str:
    """The numbered step table: step, actor, action, and only what changed.
    ``highlight`` marks one step (the violating one) in bold when ``colour`` is on.
    ``notes`` (by index into the steps) replaces the changes column of those steps:
    for a trace whose steps have no state by nature (a span export, ``checks.traces.spans``),
    what the writer knows about each step."""
    width = _width(width)
    rows: list[tuple[str, str, str, list[str]]] = [
        (
            str(s.step),
            _cell(s.actor or "", ACTOR_CHARS),
            printable(clip(step_action_text(s), LINE_CHARS)),
            [
                printable(clip(line, LINE_CHARS))
                for line in (notes[i] if notes is not None and i in notes else step_changes(trace, i))
            ],
        )
        for i, s in enumerate(trace.steps)
    ]
    w_num = max(len(r[0]) for r in rows)
    w_actor = max(5, *(len(r[1]) for r in rows))
    w_action = min(max(6, *(len(r[2]) for r in rows)), 34)
    head = f"{'#':>{w_num}}  {'actor':<{w_actor}}  {'action':<{w_action}}  changes"
    lines = [head, "-" * min(width, max(len(head), 60))]
    indent = " " * (w_num + w_actor + w_action + 6)
    room = max(20, width - len(indent))
    for index, (num, act, action, diff_lines) in enumerate(rows):
        if len(action) > w_action:
            diff_lines = [f"({action})", *diff_lines]
            action = action[: w_action - 1] + "…"
        first = True
        for change in _wrap(diff_lines, room):
            if first:
                line = f"{num:>{w_num}}  {act:<{w_actor}}  {action:<{w_action}}  {change}"
                first = False
            else:
                line = indent + change
            lines.append(_bold(line) if colour and index == highlight else line)
    return "\n".join(line.rstrip() for line in lines)


def _cell(text: str, most: int) -> str:
    text = printable(text)
    return text if len(text) <= most else text[: most - 1] + "…"


def _bold(text: str) -> str:
    return f"\x1b[1m{text}\x1b[0m"


def _red(text: str) -> str:
    return f"\x1b[31;1m{text}\x1b[0m"


@attrs.frozen
class Arrow:
    """A message drawn from the step that sent it to a step that received it."""

    message: Any
    sender: str | None  # None: no earlier step of the trace sent it, and the message names no sender
    sent_at: int | None  # 0: in the initial state (a message naming its ``sender`` that no step sent)
    receiver: str
    received_at: int


def arrows(trace: Trace) -> list[Arrow]:
    """Every receipt in the trace, matched to the latest earlier step that sent an
    equal message (docs/trace-format.md, "Messages").  A message no step sent was in
    the initial state: drawn from the lane its ``sender`` field names, if it has one
    (a Byzantine replica's vocabulary, which it takes no step to send)."""
    out: list[Arrow] = []
    latest: dict[Any, tuple[int, str | None]] = {}  # a message (frozen) -> the latest step that sent it
    for step in trace.steps:
        for msg in step.received:
            named = msg.get("sender") if isinstance(msg, Mapping) else None
            initial = (0, named) if isinstance(named, str) and named else (None, None)
            origin = latest.get(frozen(msg), initial)
            out.append(Arrow(msg, origin[1], origin[0], step.actor or "?", step.step))
        for msg in step.sent:
            latest[frozen(msg)] = (step.step, step.actor)
    return out


def has_messages(trace: Trace) -> bool:
    return any(s.sent or s.received for s in trace.steps)


def lanes(trace: Trace) -> list[str]:
    """The nodes that get a lane: every actor, in order of first appearance, then
    every sender of a message in the initial state that takes no step."""
    out = actors(trace)
    for arrow in arrows(trace):
        if arrow.sender is not None and arrow.sender not in out:
            out.append(arrow.sender)
    return out


def sequence_chart(trace: Trace, *, width: int | None = None) -> str:
    """An ASCII message-sequence chart: a column per node, time going down, a ``*``
    where a node takes a step and an arrow for each message received, drawn on the
    row of the receipt from the sender's lane.  Notes on the right name the action."""
    width = _width(width)
    nodes = lanes(trace)
    if len(nodes) > MAX_LANES:
        return f"(left out: {len(nodes):,} nodes take steps, and a chart is readable up to {MAX_LANES})"
    margin = max(3, len(str(len(trace.steps)))) + 1
    lane_w = max(6, min(14, (width - margin - 44) // max(1, len(nodes))))
    centre = {node: margin + k * lane_w + lane_w // 2 for k, node in enumerate(nodes)}
    chart_w = margin + lane_w * len(nodes)
    note_room = max(10, width - chart_w - 2)

    def row(number: str, cells: dict[int, str], note: str) -> str:
        line = list(number.rjust(margin - 1) + " " + " " * (chart_w - margin))
        for node in nodes:
            line[centre[node]] = "|"
        for col, ch in cells.items():
            line[col] = ch
        text = "".join(line)
        note = printable(note[: note_room + 1])
        if len(note) > note_room:
            note = note[: note_room - 1] + "…"
        return (text + "  " + note).rstrip()

    header = list(" " * chart_w)
    for node in nodes:
        name = printable(node)[: lane_w - 1]
        start = centre[node] - len(name) // 2
        header[start : start + len(name)] = list(name)
    lines = ["".join(header).rstrip()]
    by_step: dict[int, list[Arrow]] = {}
    for arrow in arrows(trace):
        by_step.setdefault(arrow.received_at, []).append(arrow)
    for step in trace.steps[1:]:
        number = str(step.step)
        for arrow in by_step.get(step.step, []):
            lines.append(row(number, _arrow_cells(arrow, centre, margin), _arrow_note(arrow)))
            number = ""
        cells = {centre[step.actor]: "*"} if step.actor in centre else {}
        note = step_action_text(step)
        if step.sent:
            note += "  sends " + ", ".join(show_json(m) for m in step.sent)
        lines.append(row(number, cells, note))
    return "\n".join(lines)


def _arrow_cells(arrow: Arrow, centre: dict[str, int], margin: int) -> dict[int, str]:
    end = centre.get(arrow.receiver)
    if end is None:
        return {}
    start = centre.get(arrow.sender, margin) if arrow.sender is not None else margin
    if start == end:
        return {end: "@"}
    lo, hi = min(start, end), max(start, end)
    cells = {col: "-" for col in range(lo + 1, hi)}
    if start < end:
        cells[end - 1] = ">"
    else:
        cells[end + 1] = "<"
    label = show_json(arrow.message)
    run = hi - lo - 3  # dashes, less the arrow head and a dash on each side of the label
    if len(label) <= run:
        first = lo + 2 + (run - len(label)) // 2
        for k, ch in enumerate(label):
            cells[first + k] = ch
    cells[start] = "+" if arrow.sender is not None else "?"
    return cells


def _arrow_note(arrow: Arrow) -> str:
    if arrow.sender is None:
        origin = "sender not in the trace"
    elif arrow.sent_at == 0:
        origin = f"sent by {arrow.sender} in the initial state"
    else:
        origin = f"sent at step {arrow.sent_at}"
    return f"{arrow.receiver} receives {show_json(arrow.message)} ({origin})"


def trace_text(
    trace: Trace,
    *,
    width: int | None = None,
    colour: bool = False,
    notes: Mapping[int, Sequence[str]] | None = None,
) -> str:
    """Everything a person needs to follow a counterexample: the step table, the
    message-sequence chart when messages flow, and the violated property
    (``notes``: as ``trace_table`` takes them)."""
    violation = trace.header.violation
    highlight = len(trace.steps) - 1 if violation is not None else None
    parts = [trace_table(trace, width=width, highlight=highlight, colour=colour, notes=notes)]
    if has_messages(trace):
        parts.append("Message sequence chart\n\n" + sequence_chart(trace, width=width))
    if violation is not None:
        line = f"{violation.invariant}: {violation.statement}" if violation.statement else violation.invariant
        if violation.kind != "invariant":
            line += f" ({violation.kind})"
        line = printable(clip(line, LINE_CHARS))
        parts.append(_red(line) if colour else line)
    return "\n\n".join(parts)


def _describe(state: Any) -> Iterable[str]:
    if attrs.has(type(state)):
        for f in attrs.fields(type(state)):
            yield f"{f.name} = {show(getattr(state, f.name))}"
    else:
        yield show(state)


def _wrap(lines: Iterable[str], room: int) -> Iterable[str]:
    """Each line cut into pieces of at most ``room`` characters (at a space where one
    is near), continuation pieces indented by two; linear in the line's length."""
    for line in lines:
        start, first = 0, True
        while True:
            space = room if first else room - 2
            if len(line) - start <= space:
                yield line[start:] if first else "  " + line[start:]
                break
            cut = line.rfind(" ", start, start + space)
            cut = cut if cut > start + space // 2 else start + space
            yield line[start:cut] if first else "  " + line[start:cut]
            start, first = cut, False
            while start < len(line) and line[start] == " ":
                start += 1
            if start >= len(line):
                break


def state_table(state: Any) -> str:
    return "\n".join(_describe(state))


def mapping_lines(values: Mapping[str, Any]) -> str:
    return "\n".join(f"{k}: {show(v)}" for k, v in values.items())


def python_snippet(trace: Trace) -> str:
    """A short Python program that replays the trace's actions on its spec and fails
    the way the trace says (like hypothesis's reproduction snippets): paste it into a
    test to pin a counterexample as a list of actions, not as one search's path."""
    header = trace.header
    args = [f"variant={header.variant!r}"] if header.variant else []
    args += [f"{k}={v!r}" for k, v in header.params.items()]
    actions = [repr(s.action) for s in trace.steps[1:]]  # JSON read into Python: dicts, lists, True, None
    lines = [
        "from distcheck.spec.registry import REGISTRY",
        "",
        f"spec = REGISTRY[{header.spec!r}].make({', '.join(args)})",
        "state = next(iter(spec.init_states()))",
        "for action in [",
        *(f"    {a}," for a in actions),
        "]:",
        "    state = spec.next_state(state, spec.action_from_json(action))",
        '    assert state is not None, f"{action} is not enabled"',
        "broken = [inv.name for inv in spec.invariants() if not inv.holds(state)]",
    ]
    violation = header.violation
    if violation is not None and violation.kind == "invariant":
        lines.append(f"assert broken == [{violation.invariant!r}], broken  # {violation.statement}")
    else:
        lines.append("assert broken == [], broken")
    return "\n".join(lines)
