"""Turning ``-p NAME=VALUE`` options into a spec, with one clear error per mistake.

Where it sits: shared by every CLI command that takes a spec (check, and later
fuzz, prove, simulate, validate).  Errors are ``UsageError`` (``checks.inputs``,
re-exported here with ``output_file``); the CLI prints the message on one line and
exits 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, Protocol

from distcheck.checks.inputs import UsageError as UsageError  # re-exported: every command raises it
from distcheck.checks.inputs import output_file as output_file  # re-exported with it
from distcheck.spec.contract import Spec
from distcheck.spec.registry import REGISTRY, ParamInfo, SpecEntry


class HasParams(Protocol):
    """Anything with named parameters: a spec entry, or a provable target that is
    not an executable spec (``checks.proofs.registry``)."""

    @property
    def name(self) -> str: ...

    def params(self) -> list[ParamInfo]: ...


def find_spec(name: str) -> SpecEntry:
    entry = REGISTRY.get(name)
    if entry is None:
        raise UsageError(f"unknown spec {name!r}; known specs: {', '.join(REGISTRY)}")
    return entry


def parse_params(entry: HasParams, raw: Sequence[str]) -> dict[str, Any]:
    """Parse NAME=VALUE strings against the spec's parameters (type and range)."""
    infos = {p.name: p for p in entry.params()}
    values: dict[str, Any] = {}
    for item in raw:
        name, sep, text = item.partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name:
            raise UsageError(f"parameter {item!r} is not NAME=VALUE (e.g. -p {next(iter(infos), 'n')}=3)")
        info = infos.get(name)
        if info is None:
            allowed = ", ".join(infos) or "none"
            raise UsageError(f"unknown parameter {name!r} for {entry.name}; allowed: {allowed}")
        if name in values:
            raise UsageError(f"parameter {name} of {entry.name} is given twice; give each parameter once")
        values[name] = _convert(entry, info.name, info.type, text, info.minimum, info.maximum)
    return values


def _convert(entry: HasParams, name: str, kind: type, text: str, lo: int | None, hi: int | None) -> Any:
    if kind is bool:
        lowered = text.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise UsageError(f"parameter {name} of {entry.name} must be true or false, got {text!r}")
    if kind is int:
        try:
            value = int(text)
        except ValueError:
            raise UsageError(f"parameter {name} of {entry.name} must be an integer, got {text!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise UsageError(f"parameter {name} of {entry.name} must be between {lo} and {hi}, got {value}")
        return value
    return text


def check_variant(entry: SpecEntry, variant: str | None) -> None:
    if variant is not None and variant not in entry.variants:
        allowed = ", ".join(entry.variants) or "none (this spec has no variants)"
        raise UsageError(f"unknown variant {variant!r} for {entry.name}; allowed: {allowed}")


def build_spec(
    name: str, raw_params: Sequence[str], variant: str | None = None
) -> tuple[SpecEntry, dict[str, Any], Spec[Any, Any]]:
    """Entry, parsed parameters (defaults filled in) and the spec itself."""
    entry = find_spec(name)
    params = parse_params(entry, raw_params)
    check_variant(entry, variant)
    try:
        spec = entry.make(variant=variant, **params)
    except ValueError as exc:  # a Config rejects a combination, e.g. lock's max_drift >= ttl
        raise UsageError(f"parameters of {entry.name}: {exc}") from None
    full = {**entry.defaults(variant), **params}
    return entry, full, spec


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type: an integer of at least 0."""
    return _int_at_least(text, 0, "a non-negative integer")


def _int_at_least(text: str, lowest: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if value < lowest:
        raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
    return value
