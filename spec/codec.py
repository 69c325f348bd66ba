"""The JSON form of spec values, as trace files carry them, and its decoding.

Where it sits: ``spec/``; the contract uses it for ``observe`` and
``action_from_json``, ``checks/`` for every trace it writes and reads.  Readable by
people and by programs in other languages: docs/trace-format.md describes it.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any

import attrs

from distcheck.spec.values import Bag, FrozenMap, _field_names, sorted_values


def to_json(value: object) -> Any:
    """The JSON form of a spec value, as it appears in trace files.

    attrs classes become objects with a ``type`` key; tuples and frozensets become
    lists (sets in canonical order).  Readable by people and by other languages.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, tuple):
        return [to_json(v) for v in value]
    if isinstance(value, frozenset):
        return [to_json(v) for v in sorted_values(value)]
    if isinstance(value, enum.Enum):
        return value.name
    method = getattr(value, "to_json", None)
    if method is not None:
        return method()
    if attrs.has(type(value)):
        out: dict[str, Any] = {"type": type(value).__name__}
        for name in _field_names(type(value)):
            out[name] = to_json(getattr(value, name))
        return out
    raise TypeError(f"{type(value).__name__} is not a spec value")


def from_json(data: Any, types: Mapping[str, type]) -> Any:
    """Rebuild a value written by ``to_json``; ``types`` names the allowed classes.

    Lists come back as tuples; a field whose attrs converter is ``frozenset`` (or
    any other converter) gets its own container back; ``{"map": [[k, v], ...]}`` and
    an object without ``type`` come back as a ``FrozenMap``, ``{"bag": [[m, n], ...]}``
    as a ``Bag``.  Raises ``ValueError`` with a readable reason on input that breaks
    these encodings (``value_problem``), names an unknown type or misses a field.
    """
    problem = value_problem(data)
    if problem is not None:
        raise ValueError(problem)
    return _decode(data, types)


def _decode(data: Any, types: Mapping[str, type]) -> Any:
    if isinstance(data, list):
        return tuple(_decode(v, types) for v in data)
    if not isinstance(data, dict):
        return data
    encoding = _encoding(data)
    try:
        if encoding == "map":
            return FrozenMap((_decode(k, types), _decode(v, types)) for k, v in data["map"])
        if encoding == "bag":
            return Bag({_decode(m, types): n for m, n in data["bag"]})
    except TypeError as exc:  # a key or member that cannot be one (unhashable)
        raise ValueError(f"a {encoding} whose key or member cannot be one: {_clipped(str(exc))}") from None
    if encoding == "object":
        return FrozenMap((k, _decode(v, types)) for k, v in data.items())
    name = data["type"]
    cls = types.get(name)
    if cls is None:
        known = ", ".join(sorted(types))
        raise ValueError(f"unknown type {_clipped(repr(name), 60)}; known: {known}")
    names = _field_names(cls)
    missing = [n for n in names if n not in data and attrs.fields_dict(cls)[n].default is attrs.NOTHING]
    extra = sorted(set(data) - set(names) - {"type"})
    if missing or extra:
        raise ValueError(
            f"{name}: "
            + "; ".join(
                ([f"missing field(s) {', '.join(missing)}"] if missing else [])
                + ([f"unknown field(s) {', '.join(_short(e) for e in extra)}"] if extra else [])
            )
        )
    kwargs = {n: _decode(data[n], types) for n in names if n in data}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        raise ValueError(f"{name}: {_clipped(str(exc))}") from None


def _encoding(data: dict[str, Any]) -> str:
    """Which encoding an object is: "record" (it has a ``type``), "map" or "bag" (the
    one-key forms with a list), else "object" (a map with string keys)."""
    if "type" in data:
        return "record"
    if len(data) == 1 and isinstance(data.get("map"), list):
        return "map"
    if len(data) == 1 and isinstance(data.get("bag"), list):
        return "bag"
    return "object"


def value_problem(data: Any) -> str | None:
    """What breaks the value encodings (docs/trace-format.md, "Values") in a JSON
    value, or None: a record's ``type`` that is not a string, a map entry that is not
    a ``[key, value]`` pair or whose key could not be a key, a bag entry that is not
    ``[member, count]`` with a positive integer count.  One pass, no recursion."""
    todo = [data]
    while todo:
        item = todo.pop()
        if isinstance(item, list):
            todo.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        encoding = _encoding(item)
        if encoding == "record" and not isinstance(item["type"], str):
            return f'a record\'s "type" names its class with a string, got {_short(item["type"])}'
        if encoding == "map":
            for entry in item["map"]:
                if not isinstance(entry, list) or len(entry) != 2:
                    return f'a map is written {{"map": [[key, value], ...]}}; an entry is {_short(entry)}'
                todo.extend(entry)
            continue
        if encoding == "bag":
            for entry in item["bag"]:
                if not isinstance(entry, list) or len(entry) != 2:
                    return f'a bag is written {{"bag": [[member, count], ...]}}; an entry is {_short(entry)}'
                count = entry[1]
                if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                    return f"a bag's count is a positive integer, got {_short(count)}"
                todo.append(entry[0])
            continue
        todo.extend(item.values())
    return None


def _short(value: Any, most: int = 60) -> str:
    """A value of the input as JSON text, ASCII only and cut short (for messages)."""
    return _clipped(json.dumps(value, ensure_ascii=True, default=repr), most)


def _clipped(text: str, most: int = 200) -> str:
    return text if len(text) <= most else text[: most - 3] + "..."


def value_types(*modules_or_types: object) -> dict[str, type]:
    """The attrs classes named in the given modules (defined or imported there), or
    given directly, by name."""
    out: dict[str, type] = {}
    for item in modules_or_types:
        if isinstance(item, type):
            out[item.__name__] = item
            continue
        for name, obj in vars(item).items():
            if isinstance(obj, type) and attrs.has(obj):
                out[name] = obj
    return out
