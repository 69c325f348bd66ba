"""Text rendering of behaviours: the numbered step table shown wherever a
counterexample is printed (CLI, pytest failures).

Where it sits: used by the CLI and the trace tools; knows specs only through
``spec.core`` values.  Each row gives the step number, the actor, the action, and
only what changed (old → new), so a reader follows the story without re-reading
whole states.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from spec.core import Bag, BagNetwork, FifoNetwork, FrozenMap, MessageSet, sorted_values


def show(value: Any) -> str:
    """A short human form of a spec value."""
    if isinstance(value, str):
        return value
    if isinstance(value, frozenset):
        return "{" + ", ".join(show(v) for v in sorted_values(value)) + "}"
    if isinstance(value, tuple):
        return "⟨" + ", ".join(show(v) for v in value) + "⟩"
    if isinstance(value, (FrozenMap, Bag, MessageSet, BagNetwork, FifoNetwork)):
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
    if attrs.has(type(old)) and type(old) is type(new) and not isinstance(old, (MessageSet, BagNetwork, FifoNetwork)):
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
    if isinstance(value, MessageSet):
        return value.deliverable()
    if isinstance(value, BagNetwork):
        return value.deliverable()
    return None


def step_table(
    steps: Sequence[tuple[Any, Any]],
    *,
    actor: Any = None,
    width: int | None = None,
) -> str:
    """Render a behaviour given as (action, state) pairs, the first with action None.

    ``actor(action)`` names who takes a step (default: the action's ``actor``)."""
    width = width or min(shutil.get_terminal_size((100, 24)).columns, 100)
    who = actor or (lambda a: getattr(a, "actor", "env"))
    rows: list[tuple[str, str, str, list[str]]] = []
    init = steps[0][1]
    rows.append(("0", "", "Init", [line for line in _describe(init)]))
    for i in range(1, len(steps)):
        action, state = steps[i]
        diff = changes(steps[i - 1][1], state) or ["(no change)"]
        rows.append((str(i), who(action), show(action), diff))
    w_num = max(len(r[0]) for r in rows)
    w_actor = max(5, *(len(r[1]) for r in rows))
    w_action = min(max(6, *(len(r[2]) for r in rows)), 34)
    head = f"{'#':>{w_num}}  {'actor':<{w_actor}}  {'action':<{w_action}}  changes"
    lines = [head, "-" * min(width, max(len(head), 60))]
    indent = " " * (w_num + w_actor + w_action + 6)
    room = max(20, width - len(indent))
    for num, act, action, diff in rows:
        first = True
        for change in _wrap(diff, room):
            if first:
                lines.append(f"{num:>{w_num}}  {act:<{w_actor}}  {action:<{w_action}}  {change}")
                first = False
            else:
                lines.append(indent + change)
    return "\n".join(lines)


def _describe(state: Any) -> Iterable[str]:
    if attrs.has(type(state)):
        for f in attrs.fields(type(state)):
            yield f"{f.name} = {show(getattr(state, f.name))}"
    else:
        yield show(state)


def _wrap(lines: Iterable[str], room: int) -> Iterable[str]:
    for line in lines:
        while len(line) > room:
            cut = line.rfind(" ", 0, room)
            cut = cut if cut > room // 2 else room
            yield line[:cut]
            line = "  " + line[cut:].lstrip()
        yield line


def state_table(state: Any) -> str:
    return "\n".join(_describe(state))


def mapping_lines(values: Mapping[str, Any]) -> str:
    return "\n".join(f"{k}: {show(v)}" for k, v in values.items())
