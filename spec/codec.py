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

from distcheck.spec.values import _field_names, sorted_values


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
    any other converter) gets its own container back.  Raises ``ValueError`` with a
    readable reason on input that names an unknown type or misses a field.
    """
    if isinstance(data, list):
        return tuple(from_json(v, types) for v in data)
    if isinstance(data, dict):
        if "type" not in data:
            raise ValueError(f"object without a 'type' key: {json.dumps(data)[:80]}")
        name = data["type"]
        cls = types.get(name)
        if cls is None:
            raise ValueError(f"unknown type {name!r}; known: {', '.join(sorted(types))}")
        names = _field_names(cls)
        missing = [n for n in names if n not in data and attrs.fields_dict(cls)[n].default is attrs.NOTHING]
        extra = sorted(set(data) - set(names) - {"type"})
        if missing or extra:
            raise ValueError(
                f"{name}: "
                + "; ".join(
                    ([f"missing field(s) {', '.join(missing)}"] if missing else [])
                    + ([f"unknown field(s) {', '.join(extra)}"] if extra else [])
                )
            )
        kwargs = {n: from_json(data[n], types) for n in names if n in data}
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}: {exc}") from None
    return data


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
