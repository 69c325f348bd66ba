"""The input boundary: every file distcheck reads is parsed here, within explicit limits.

Where it sits: ``checks.traces.trace`` reads trace files through it, and any other
reader of a file (a history, a parameter file) should too; ``spec.codec.from_json``
checks the value encodings once parsed.  Nothing past this module sees a value
deeper, longer or larger than the limits below, so no later code (rendering,
replay, validation) can be driven into a RecursionError, a memory blow-up or an
exception of Python's own int-string limit by a file.

The limits are documented in docs/trace-format.md ("Limits"); each, when exceeded,
is reported as an ``InputError`` naming the file, the line and what is allowed.

- a file of at most ``file_bytes`` bytes, and at most ``lines`` lines;
- a line of at most ``line_chars`` characters, UTF-8, ending in ``\\n`` (``\\r\\n`` too);
- JSON (RFC 8259: no ``NaN``/``Infinity``), arrays and objects nested at most
  ``depth`` deep;
- integers of at most ``int_digits`` digits, finite floats;
- strings (keys included) of at most ``string_chars`` characters.

Parsed values are plain JSON values (dict, list, str, int, float, bool, None).  Small
objects whose members are all scalars (an action, a message) are shared between
lines that repeat them, so that a long trace costs memory per step, not per
repeated value: callers must treat what they read as immutable.

It also holds what every command says of bad usage, ``UsageError`` (printed on one
line, exit 2), and the check of a file to write (``output_file``): importing them
costs nothing, where ``checks.params`` imports every spec.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import attrs


@attrs.frozen
class Limits:
    """The most a file may hold.  The defaults are far above anything the project's
    tools or a real implementation writes, and far below what would exhaust memory."""

    file_bytes: int = 4 * 1024**3
    lines: int = 10_000_000
    line_chars: int = 16 * 1024**2
    depth: int = 100
    int_digits: int = 20
    string_chars: int = 1024**2


DEFAULT_LIMITS = Limits()


class UsageError(Exception):
    """Bad usage or bad input: the message says what is wrong and what is allowed."""


def output_file(text: str) -> str:
    """argparse type: a file to write.  Its folder must exist already: a mistyped
    folder is the user's to fix, not ours to create (and never at ``/``)."""
    path = Path(text)
    if not text or path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a file to write")
    folder = path.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: the folder {folder} does not exist (create it first)")
    return text


class InputError(ValueError):
    """A file that breaks the format or a limit: ``line`` is 1-based (0: the file as a
    whole), ``reason`` says what is wrong and what is allowed."""

    def __init__(self, origin: str, line: int, reason: str) -> None:
        self.origin, self.line, self.reason = origin, line, reason
        where = f"{origin}:{line}" if line else origin
        super().__init__(f"{where}: {reason}")


class _Rejected(Exception):
    """A value the JSON hooks refuse (carried out of ``json.loads`` as is)."""


_SCALAR_TYPES = frozenset((str, int, float, bool, type(None)))
_SHARED_MAX = 50_000  # distinct small objects remembered at a time while reading one file
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class JsonReader:
    """JSON text to values within ``limits``; one reader per file (it remembers the
    small objects it has seen, to share them)."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._shared: dict[tuple[Any, ...], dict[str, Any]] = {}
        # The integer hook costs a Python call per integer; the plain decoder (floats
        # and constants still checked: they are rare) is used when a line holds no run
        # of digits longer than the limit.
        self._checked = json.JSONDecoder(
            parse_int=self._int,
            parse_float=self._float,
            parse_constant=self._constant,
        )
        self._plain = json.JSONDecoder(parse_float=self._float, parse_constant=self._constant)
        self._long_digits = re.compile("[0-9]{" + str(limits.int_digits + 1) + "}")

    # -- hooks called by the JSON scanner
    def _int(self, text: str) -> int:
        digits = len(text) - (text[0] == "-")
        if digits > self.limits.int_digits:
            raise _Rejected(f"an integer of {digits:,} digits; integers have at most {self.limits.int_digits} digits")
        return int(text)

    def _float(self, text: str) -> float:
        if len(text) > 400:
            raise _Rejected(f"a number written with {len(text):,} characters; at most 400")
        value = float(text)
        if not math.isfinite(value):
            raise _Rejected(f"the number {text[:40]} is out of range")
        return value

    @staticmethod
    def _constant(text: str) -> Any:
        raise _Rejected(f"{text} is not JSON (numbers must be finite)")

    def share(self, value: dict[str, Any]) -> dict[str, Any]:
        """``value``, or an equal object read before when its members are all scalars
        (an action, a transaction id): a long trace then holds one copy of each."""
        if len(value) > 8:
            return value
        values = tuple(value.values())
        types = tuple(map(type, values))
        if not _SCALAR_TYPES.issuperset(types):
            return value
        key = (tuple(value), values, types)  # the types keep 1, 1.0 and true apart
        shared = self._shared.get(key)
        if shared is not None:
            return shared
        if len(self._shared) >= _SHARED_MAX:  # start over: what repeats now is what is shared
            self._shared.clear()
        self._shared[key] = value
        return value

    # -- parsing
    def parse(self, text: str) -> Any:
        """One JSON text; ``ValueError`` with the reason (no file or line: the caller adds them)."""
        limits = self.limits
        if len(text) > limits.line_chars:
            raise ValueError(f"a line of {len(text):,} characters; lines have at most {limits.line_chars:,}")
        if text.count("[") + text.count("{") > limits.depth:
            depth = nesting_depth(text)
            if depth > limits.depth:
                raise ValueError(f"arrays and objects nested {depth:,} deep; at most {limits.depth}")
        plain = self._long_digits.search(text) is None
        try:
            value = (self._plain if plain else self._checked).decode(text)
        except _Rejected as exc:
            raise ValueError(str(exc)) from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:  # cannot happen within the depth limit; kept as a last fence
            raise ValueError(f"arrays and objects nested too deep; at most {limits.depth}") from None
        if len(text) > limits.string_chars:
            longest = longest_string(value)
            if longest > limits.string_chars:
                raise ValueError(f"a string of {longest:,} characters; strings have at most {limits.string_chars:,}")
        return value


def nesting_depth(text: str) -> int:
    """How deep arrays and objects nest in a JSON text (brackets inside strings do
    not count), in one pass and without recursion."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def longest_string(value: Any) -> int:
    """The length of the longest string (key or value) in a parsed JSON value."""
    longest = 0
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            longest = max(longest, len(item))
        elif isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, dict):
            todo.extend(item)
            todo.extend(item.values())
    return longest


def read_lines(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> Iterator[tuple[int, str]]:
    """The lines of a UTF-8 text file as (line number, text without its line end),
    one at a time, within ``limits`` (``InputError`` otherwise).  Only ``\\n`` ends a
    line (JSON strings may hold other line separators); a final ``\\r`` is dropped."""
    origin = str(path)
    try:
        handle: BinaryIO = open(path, "rb")  # closed by the with below, also when the caller stops early
    except FileNotFoundError:
        raise InputError(origin, 0, "no such file") from None
    except OSError as exc:
        raise InputError(origin, 0, f"cannot read the file: {exc.strerror or exc}") from None
    with handle:
        try:
            size = os.fstat(handle.fileno()).st_size
        except OSError as exc:
            raise InputError(origin, 0, f"cannot read the file: {exc.strerror or exc}") from None
        if size > limits.file_bytes:
            raise InputError(origin, 0, f"a file of {size:,} bytes; at most {limits.file_bytes:,}")
        # A UTF-8 character is at most 4 bytes: a line within the limit fits in this many.
        most = 4 * limits.line_chars + 2
        number = 0
        while True:
            try:
                raw = handle.readline(most + 1)
            except OSError as exc:
                raise InputError(origin, number + 1, f"cannot read the file: {exc.strerror or exc}") from None
            if not raw:
                return
            number += 1
            if number > limits.lines:
                raise InputError(origin, number, f"more than {limits.lines:,} lines")
            if len(raw) > most:
                raise InputError(origin, number, f"a line longer than {limits.line_chars:,} characters")
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    origin, number, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line)"
                ) from None
            if len(text) > limits.line_chars:
                raise InputError(
                    origin, number, f"a line of {len(text):,} characters; lines have at most {limits.line_chars:,}"
                )
            yield number, text


def read_json_lines(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> Iterator[tuple[int, Any]]:
    """A JSON Lines file as (line number, value), one line at a time; blank lines at
    the end are ignored, a blank line before another line is an error."""
    reader = JsonReader(limits)
    blank: int | None = None
    for number, text in read_lines(path, limits):
        if not text.strip():
            blank = blank or number
            continue
        if blank is not None:
            raise InputError(str(path), blank, "a blank line: one JSON value per line, no blank lines between")
        try:
            yield number, reader.parse(text)
        except ValueError as exc:
            raise InputError(str(path), number, str(exc)) from None


# ------------------------------------------------------------------------ output


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with what a terminal would not print as itself escaped: control
    characters (an escape sequence in a node's name cannot recolour or clear the
    screen), bidirectional overrides, and lone surrogates (which no encoder writes)."""

    def escape(match: re.Match[str]) -> str:
        ch = match.group()
        if keep_newlines and ch == "\n":
            return ch
        code = ord(ch)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _UNPRINTABLE.sub(escape, text)


def clip(text: str, most: int) -> str:
    """``text`` cut to ``most`` characters, with a marker saying how much was left out."""
    if len(text) <= most:
        return text
    left = len(text) - most
    return f"{text[:most]}…(+{left:,} characters)"
