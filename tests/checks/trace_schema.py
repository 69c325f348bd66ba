"""Validation of written traces against docs/trace-format.schema.json, shared by the
trace tests: every trace the project writes goes through ``assert_valid_trace_text``."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]

from distcheck.checks.traces import trace

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "trace-format.schema.json"


@cache
def _validators() -> tuple[Any, Any]:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    header = jsonschema.Draft202012Validator({"$ref": "#/$defs/header", "$defs": schema["$defs"]})
    step = jsonschema.Draft202012Validator({"$ref": "#/$defs/step", "$defs": schema["$defs"]})
    return header, step


def assert_valid_trace_text(text: str) -> trace.Trace:
    """Check every line against the schema (line 1 as a header, the rest as steps)
    and that our own reader accepts it; returns the parsed trace."""
    header, step = _validators()
    lines = text.splitlines()
    assert lines, "empty trace"
    for number, line in enumerate(lines, start=1):
        validator = header if number == 1 else step
        errors = [e.message for e in validator.iter_errors(json.loads(line))]
        assert not errors, f"line {number}: {errors}"
    return trace.loads(text)
