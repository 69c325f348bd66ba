"""Comparing a recorded JSON value (a trace step's ``state``) with a spec value, by value.

Where it sits: ``checks.traces.trace.replay`` and ``checks.conformance.validate`` use it
wherever a trace records a state.  docs/trace-format.md ("Values") says how a spec
value is written in JSON and that readers compare sets by members: a frozenset is a
JSON array in canonical order, but a writer in another language need not know that
order.  So a recorded state is compared *by the shape of the spec's value*: an array
that stands for a set (a frozenset, a message-set network) is compared by members,
the pairs of a bag or of a map with non-string keys regardless of their order, and
an array that stands for a tuple in order.  JSON itself makes object keys unordered.

How: both sides are normalised with the spec value as the template (every
set-like array sorted by its members' normalised JSON text, duplicates dropped),
then compared as text.  The shapes are read off the value as ``to_json`` writes it
(an object with a ``to_json`` method that writes an array is a set of its
``deliverable()`` or ``sent`` members; one that writes ``{"bag": ...}`` a multiset),
so no spec type is imported here.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping, Set
from typing import Any

import attrs

from distcheck.checks.traces.trace import ABSENT, Change, diff, path_text


def canon(data: Any) -> str:
    """The JSON text of a value with object keys sorted: equal JSON, equal text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def normalise(value: Any, data: Any) -> Any:
    """``data`` (JSON) with every part that stands for an unordered part of
    ``value`` (a spec value) put in one canonical order.  Parts of ``data`` that do
    not have the shape of ``value`` are left as they are (so they compare unequal)."""
    if value is None or isinstance(value, (str, int, float, enum.Enum)):
        return data
    if isinstance(value, (tuple, list)):
        if not isinstance(data, list):
            return data
        return [normalise(v, d) for v, d in zip(value, data)] + data[len(value) :]
    if isinstance(value, (frozenset, Set)):
        return _normalise_members(list(value), data)
    method = getattr(value, "to_json", None)
    if method is not None:
        return _normalise_custom(value, method(), data)
    if attrs.has(type(value)):
        if not isinstance(data, dict) or data.get("type") != type(value).__name__:
            return data
        fields = {f.name: getattr(value, f.name) for f in attrs.fields(type(value))}
        return {k: normalise(fields[k], d) if k in fields else d for k, d in data.items()}
    return data


def _normalise_custom(value: Any, written: Any, data: Any) -> Any:
    """A container with its own ``to_json``: a set-like network, a bag, a map."""
    if isinstance(written, list):
        members = getattr(value, "deliverable", None)
        found = members() if callable(members) else getattr(value, "sent", None)
        return _normalise_members(list(found), data) if isinstance(found, Iterable) else data
    if not isinstance(written, dict) or not isinstance(data, dict):
        return data
    if set(written) == {"bag"}:
        bag = getattr(value, "in_flight", value)  # a bag network is written as its bag
        pairs = list(bag.items()) if callable(getattr(bag, "items", None)) else []
        if set(data) != {"bag"} or not isinstance(data["bag"], list):
            return data
        counted = [_normalise_pair([(m, n) for m, n in pairs], entry) for entry in data["bag"]]
        return {"bag": sorted(counted, key=canon)}
    items = getattr(value, "items", None)
    if not callable(items):
        return data
    entries = list(items())
    if set(written) == {"map"}:
        if set(data) != {"map"} or not isinstance(data["map"], list):
            return data
        return {"map": sorted((_normalise_pair(entries, entry) for entry in data["map"]), key=canon)}
    by_key = {str(k): v for k, v in entries}
    return {k: normalise(by_key[k], d) if k in by_key else d for k, d in data.items()}


def _normalise_pair(pairs: list[tuple[Any, Any]], entry: Any) -> Any:
    """One ``[key, value]`` entry of a map (or ``[member, count]`` of a bag)."""
    if not isinstance(entry, list) or len(entry) != 2 or not pairs:
        return entry
    key = normalise(_template([k for k, _ in pairs], entry[0]), entry[0])
    for k, v in pairs:
        if canon(normalise(k, _json_of(k))) == canon(key):
            return [key, normalise(v, entry[1])]
    return [key, normalise(pairs[0][1], entry[1])]


def _normalise_members(members: list[Any], data: Any) -> Any:
    if not isinstance(data, list):
        return data
    out: dict[str, Any] = {}
    for item in data:
        norm = normalise(_template(members, item), item)
        out.setdefault(canon(norm), norm)
    return [out[k] for k in sorted(out)]


def _template(members: list[Any], item: Any) -> Any:
    """The member of a spec collection whose shape a recorded member should have:
    one of the record type it names, else any (collections of one kind)."""
    if isinstance(item, dict) and isinstance(item.get("type"), str):
        for m in members:
            if type(m).__name__ == item["type"]:
                return m
        return None
    return members[0] if members else None


def _json_of(value: Any) -> Any:
    """A spec value's JSON without importing the spec's codec: records and
    containers through their own shape, the rest as it is."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, tuple):
        return [_json_of(v) for v in value]
    if isinstance(value, frozenset):
        return sorted((_json_of(v) for v in value), key=canon)
    method = getattr(value, "to_json", None)
    if method is not None:
        return method()
    if attrs.has(type(value)):
        out: dict[str, Any] = {"type": type(value).__name__}
        for f in attrs.fields(type(value)):
            out[f.name] = _json_of(getattr(value, f.name))
        return out
    return value


def same(value: Any, written: Any, recorded: Any) -> bool:
    """Is ``recorded`` (JSON from a trace) the spec value ``value``, whose own JSON
    is ``written``?  Sets, bags and maps compare by members."""
    if canon(written) == canon(recorded):
        return True
    return canon(normalise(value, written)) == canon(normalise(value, recorded))


def differences(value: Any, written: Any, recorded: Any) -> list[Change]:
    """Only the parts that differ between the spec value and the recorded JSON:
    ``old`` is the spec's (expected), ``new`` the trace's (recorded)."""
    return diff(normalise(value, written), normalise(value, recorded))


def change_json(change: Change) -> dict[str, Any]:
    """One difference as a JSON object: ``path`` and either ``expected``/``recorded``
    or, for sets and bags, the members ``missing`` from and ``unexpected`` in the trace."""
    out: dict[str, Any] = {"path": path_text(change)}
    if change.is_members:
        out["missing"] = list(change.removed)
        out["unexpected"] = list(change.added)
    else:
        out["expected"] = None if change.old is ABSENT else change.old
        out["recorded"] = None if change.new is ABSENT else change.new
        if change.old is ABSENT:
            out["expected_absent"] = True
        if change.new is ABSENT:
            out["recorded_absent"] = True
    return out


def change_text(change: Mapping[str, Any]) -> str:
    """A difference from ``change_json`` as one line people read."""
    path = change["path"]
    if "missing" in change:
        parts = []
        if change["missing"]:
            parts.append(", ".join(_short(m) for m in change["missing"]) + " expected but not recorded")
        if change["unexpected"]:
            parts.append(", ".join(_short(m) for m in change["unexpected"]) + " recorded but not expected")
        return f"{path}: " + "; ".join(parts)
    expected = "(absent)" if change.get("expected_absent") else _short(change["expected"])
    recorded = "(absent)" if change.get("recorded_absent") else _short(change["recorded"])
    return f"{path}: expected {expected}, recorded {recorded}"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."
