"""Client history files as ``Operation`` records: our JSON Lines format, Jepsen's EDN
histories (Porcupine's key-value logs among them) and Porcupine's etcd Jepsen logs.

Where it sits: ``distcheck linearizable`` (``checks.cli.histories``) reads a file here
and hands the operations to ``checks.histories.linearizability.check_history``.
Every line comes through ``checks.inputs`` (limits on size, lines, nesting, numbers
and strings); a file that breaks its format is an ``InputError`` naming the line and
what was expected.  docs/histories.md documents the formats.

All three are event logs: an invocation, then later its completion, in real-time
order, one event per line.  The shared rules, whatever the format:

- a client runs one operation at a time; ``ok`` completes it with its result;
- ``fail`` means it did not take effect: it is left out (except a compare-and-set,
  whose ``:fail`` in Jepsen's register tests is the answer false, as Porcupine reads it);
- ``info``, or no completion at all, means it may or may not have taken effect: it
  stays open to the end (the checker places it or not, as an order needs), and the
  client goes on under a new name (``p3#2``), because a client that gave up on an
  operation no longer knows when that one ends;
- an operation's ``call`` and ``ret`` are the line numbers of its events, so the
  checker's messages point into the file (when one line holds several EDN events,
  they are the events' ordinals instead, and ``History.positions`` says so).

The EDN reader is our own, for the subset histories use (maps, vectors, lists,
sets, keywords, strings, numbers, nil, booleans, symbols, characters, tagged
values, ``#_`` discards, comments): it reads line by line without recursion, so
the limits hold, and it reads Porcupine's largest key-value file (3,424 lines) in a
fraction of the time the PLY-based ``edn_format`` package takes (2.3 s).
Keywords read as their names (``:ok`` is ``"ok"``), sets as sorted lists.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from distcheck.checks.histories.linearizability import Model, Operation
from distcheck.checks.inputs import DEFAULT_LIMITS, InputError, JsonReader, Limits, read_lines

FORMATS: Final = ("jsonl", "edn", "etcd")
_OUTCOMES: Final = ("ok", "fail", "info")


@attrs.frozen
class History:
    """A file's operations, and what it took to read them."""

    operations: tuple[Operation, ...]
    format: str
    clients: int
    # "lines" when an operation's call and ret are line numbers in the file; "events"
    # when they are the events' ordinals (an EDN file with several events on a line).
    positions: str
    # Operations left out because their completion said they never took effect.
    failed: int


# ------------------------------------------------------------------ the events


@attrs.frozen
class _Event:
    line: int
    client: str
    kind: str  # invoke, ok, fail, info
    payload: Any  # the format's own: an op mapping (JSON Lines) or a _JepsenCall


@attrs.frozen
class _JepsenCall:
    f: str
    key: Any
    has_key: bool
    value: Any


# An invocation and its completion (None: none came); ``make`` turns them into the
# operation and its result, or None for an operation that never took effect.
_Maker = Callable[[_Event, "_Event | None"], "tuple[Mapping[str, Any], Any] | None"]


def _assemble(origin: str, events: Iterable[_Event], make: _Maker, fmt: str) -> History:
    """Pair invocations with completions per client, then number the events."""
    pairs: list[tuple[str, _Event, _Event | None]] = []
    open_calls: dict[str, int] = {}  # client -> index in pairs
    renamed: dict[str, str] = {}  # a client that gave up on an operation goes on as this
    generations: dict[str, int] = {}
    lines: list[int] = []
    ordinals: dict[int, int] = {}  # id(event) -> its place among the events
    for event in events:
        lines.append(event.line)
        ordinals[id(event)] = len(lines)
        client = renamed.get(event.client, event.client)
        if event.kind == "invoke":
            if client in open_calls:
                earlier = pairs[open_calls[client]][1]
                raise InputError(
                    origin,
                    event.line,
                    f"client {event.client} invokes an operation while its invocation at line {earlier.line} "
                    "has not completed; a client runs one operation at a time (complete it with ok, fail or info)",
                )
            open_calls[client] = len(pairs)
            pairs.append((client, event, None))
            continue
        index = open_calls.pop(client, None)
        if index is None:
            raise InputError(
                origin,
                event.line,
                f"a completion ({event.kind}) for client {event.client}, which has no open invocation",
            )
        name, invocation, _ = pairs[index]
        pairs[index] = (name, invocation, event)
        if event.kind == "info":
            number = generations.get(event.client, 1) + 1
            generations[event.client] = number
            renamed[event.client] = f"{event.client}#{number}"
    # Line numbers point into the file; when a line holds several events, ordinals
    # keep every event's position its own.
    by_lines = len(set(lines)) == len(lines)

    def position(event: _Event) -> int:
        return event.line if by_lines else ordinals[id(event)]

    operations: list[Operation] = []
    failed = 0
    for client, invocation, completion in pairs:
        try:
            made = make(invocation, completion)
        except ValueError as exc:
            raise InputError(origin, (completion or invocation).line, str(exc)) from None
        if made is None:
            failed += 1
            continue
        op, result = made
        done = completion is not None and completion.kind in ("ok", "fail")
        ret = position(completion) if done and completion is not None else None
        operations.append(Operation(client, position(invocation), ret, op, result if done else None))
    if not operations:
        raise InputError(origin, 0, f"no operations in the file (read as {fmt})")
    named = {name: invocation.client for name, invocation, _ in pairs}
    clients = len({named[o.client] for o in operations})
    return History(tuple(operations), fmt, clients, "lines" if by_lines else "events", failed)


# -------------------------------------------------------------- the formats


def read_history(path: str | Path, model: Model[Any], fmt: str = "auto", limits: Limits = DEFAULT_LIMITS) -> History:
    """The operations in ``path``, read as ``fmt`` (``auto``: by the first line that
    holds anything).  ``InputError`` for a file that breaks its format."""
    origin = str(path)
    if fmt == "auto":
        fmt = detect_format(path, limits)
    if fmt == "jsonl":
        return _assemble(origin, _jsonl_events(path, limits), _jsonl_maker(model), fmt)
    if fmt == "edn":
        return _assemble(origin, _edn_events(path, limits), _jepsen_maker(model), fmt)
    if fmt == "etcd":
        return _assemble(origin, _etcd_events(path, limits), _jepsen_maker(model), fmt)
    raise ValueError(f"unknown history format {fmt!r}; known: auto, {', '.join(FORMATS)}")


def detect_format(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> str:
    """``jsonl`` when the first line that holds anything starts a JSON object with a
    string key, ``edn`` when it starts an EDN map, vector or list, ``etcd`` when some
    line is a Jepsen log line (``jepsen.util -``)."""
    origin = str(path)
    first: tuple[int, str] | None = None
    for number, text in read_lines(path, limits):
        stripped = text.strip()
        if first is None and stripped and not stripped.startswith(";"):
            first = (number, stripped)
            if re.match(r'\{\s*"', stripped) or stripped == "{}":
                return "jsonl"
            if stripped[0] in "{[(#":
                return "edn"
        if _JEPSEN_LOG.search(text):
            return "etcd"
        if first is not None and number - first[0] > 1000:
            break
    if first is None:
        raise InputError(origin, 0, "no events: the file holds nothing but blank lines and comments")
    raise InputError(
        origin,
        first[0],
        'not a history: expected a JSON object per line ({"client": ..., "type": "invoke", ...}), '
        "an EDN map per line ({:process 0, :type :invoke, :f :read, :value nil}) or Jepsen log lines "
        "(INFO  jepsen.util - 3\t:invoke\t:read\tnil)",
    )


# ------------------------------------------------------------ JSON Lines


_JSONL_KEYS: Final = {
    "invoke": ({"client", "type", "op"}, {"time"}),
    "ok": ({"client", "type", "result"}, {"time"}),
    "fail": ({"client", "type"}, {"time", "error"}),
    "info": ({"client", "type"}, {"time", "error"}),
}
_JSONL_EXAMPLE: Final = '{"client": "c1", "type": "invoke", "op": {"op": "write", "value": 1}}'
_JSONL_EXAMPLES: Final = {
    "invoke": _JSONL_EXAMPLE,
    "ok": '{"client": "c1", "type": "ok", "result": "ok"}',
    "fail": '{"client": "c1", "type": "fail"}',
    "info": '{"client": "c1", "type": "info"}',
}


def _jsonl_events(path: str | Path, limits: Limits) -> Iterator[_Event]:
    origin = str(path)
    reader = JsonReader(limits)
    blank: int | None = None
    for number, text in read_lines(path, limits):
        if not text.strip():
            blank = blank or number
            continue
        if blank is not None:
            raise InputError(origin, blank, "a blank line: one JSON object per line, no blank lines between")
        try:
            value = reader.parse(text)
        except ValueError as exc:
            raise InputError(origin, number, str(exc)) from None
        yield _jsonl_event(origin, number, value)


def _jsonl_event(origin: str, number: int, value: Any) -> _Event:
    if not isinstance(value, dict):
        raise InputError(origin, number, f"expected a JSON object such as {_JSONL_EXAMPLE}")
    kind = value.get("type")
    if kind not in _JSONL_KEYS:
        raise InputError(origin, number, f'"type" is {kind!r}; expected "invoke", "ok", "fail" or "info"')
    required, optional = _JSONL_KEYS[kind]
    article = "an" if kind in ("invoke", "ok", "info") else "a"
    missing = sorted(required - value.keys())
    if missing:
        raise InputError(
            origin, number, f"{article} {kind} event needs {', '.join(missing)} (e.g. {_JSONL_EXAMPLES[kind]})"
        )
    unknown = sorted(str(k) for k in value.keys() - required - optional)
    if unknown:
        allowed = ", ".join(sorted(required | optional))
        raise InputError(origin, number, f"{article} {kind} event has {', '.join(unknown)}; it takes {allowed}")
    client = value["client"]
    if isinstance(client, bool) or not isinstance(client, str | int):
        raise InputError(origin, number, f'"client" is {client!r}; expected a string or an integer')
    if kind == "invoke":
        op = value["op"]
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise InputError(
                origin, number, f'"op" is {op!r}; expected an object naming its operation, e.g. {{"op": "read"}}'
            )
        return _Event(number, str(client), kind, op)
    return _Event(number, str(client), kind, value.get("result"))


def _jsonl_maker(model: Model[Any]) -> _Maker:
    recorded = getattr(model, "recorded", None)

    def make(invocation: _Event, completion: _Event | None) -> tuple[Mapping[str, Any], Any] | None:
        if completion is not None and completion.kind == "fail":
            return None
        op: Mapping[str, Any] = invocation.payload
        result = completion.payload if completion is not None and completion.kind == "ok" else None
        if callable(recorded) and completion is not None and completion.kind == "ok":
            result = recorded(op, result)
        return op, result

    return make


# ------------------------------------------------------------------- EDN


class _EdnError(ValueError):
    pass


_TOKEN = re.compile(
    r"""
    (?P<skip>[\s,]+|;.*)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<open>\#\{|[\[({])
  | (?P<close>[\])}])
  | (?P<discard>\#_)
  | (?P<tag>\#[A-Za-z][^\s,\[\](){}"]*)
  | (?P<char>\\(?:newline|space|tab|return|u[0-9A-Fa-f]{4}|[^\s,]))
  | (?P<atom>[^\s,\[\](){}"\\;#][^\s,\[\](){}"\\;]*)
    """,
    re.VERBOSE,
)
_INT = re.compile(r"[+-]?[0-9]+N?")
_FLOAT = re.compile(r"[+-]?[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?M?")
_ESCAPE = re.compile(r"\\(u[0-9A-Fa-f]{4}|.)")
_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "b": "\b", "f": "\f"}
_CHARS: Final = {"newline": "\n", "space": " ", "tab": "\t", "return": "\r"}
_CLOSER: Final = {"[": "]", "(": ")", "{": "}", "#{": "}"}


class EdnReader:
    """EDN text to Python values, one line at a time, forms may span lines.  ``feed``
    yields each complete top-level form with the line it began on; when the file's
    first form is a vector or list, its elements are the forms (a history written as
    one vector).  No recursion: nesting is a stack bounded by ``limits.depth``."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS, *, unwrap: bool = True) -> None:
        self.limits = limits
        # Each open container: its opening token, the line it began on, its items, and
        # how many of the next forms are discarded by #_.
        self.stack: list[tuple[str, int, list[Any]]] = []
        self.discards: list[int] = [0]
        self.wrapped: bool | None = None if unwrap else False  # the file is one vector/list of forms
        self.closed_wrapper = False
        self.form_line = 0

    def feed(self, number: int, text: str) -> Iterator[tuple[int, Any]]:
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None:
                raise _EdnError(self._unexpected(text, position))
            position = match.end()
            kind = match.lastgroup
            token = match.group()
            if kind == "skip":
                continue
            if kind == "tag":
                continue  # a tagged value (#inst "...", #jepsen.history.Op{...}) reads as its value
            if kind == "discard":
                self.discards[-1] += 1
                continue
            if kind == "open":
                if len(self.stack) >= self.limits.depth:
                    raise _EdnError(f"forms nested more than {self.limits.depth} deep")
                if not self.stack and self.wrapped is None:
                    self.wrapped = token in "[("
                    if self.wrapped:
                        self.stack.append((token, number, []))
                        self.discards.append(0)
                        continue
                if self.closed_wrapper and not self.stack:
                    raise _EdnError("a form after the vector that holds the history")
                self.stack.append((token, number, []))
                self.discards.append(0)
                continue
            if kind == "close":
                if not self.stack:
                    raise _EdnError(f"{token!r} closes nothing")
                opener, began, items = self.stack.pop()
                if _CLOSER[opener] != token:
                    raise _EdnError(f"{token!r} closes the {opener!r} of line {began}; expected {_CLOSER[opener]!r}")
                if self.discards.pop():
                    raise _EdnError(f"#_ before {token!r} discards nothing")
                if self.wrapped and not self.stack:
                    self.closed_wrapper = True
                    continue
                value = self._container(opener, items)
                yield from self._emit(began, value)
                continue
            if self.wrapped is None and not self.stack:
                self.wrapped = False
            if self.closed_wrapper and not self.stack:
                raise _EdnError("a form after the vector that holds the history")
            yield from self._emit(number, self._atom(kind or "", token))

    def finish(self) -> None:
        if self.stack:
            opener, began, _ = self.stack[-1]
            raise _EdnError(f"the {opener!r} opened on line {began} is never closed")

    def _at_top(self) -> bool:
        return len(self.stack) == (1 if self.wrapped else 0)

    def _emit(self, began: int, value: Any) -> Iterator[tuple[int, Any]]:
        if self.discards[-1]:
            self.discards[-1] -= 1
            return
        if self._at_top():
            yield began, value
        else:
            self.stack[-1][2].append(value)

    def _container(self, opener: str, items: list[Any]) -> Any:
        if opener == "{":
            if len(items) % 2:
                raise _EdnError("a map with an odd number of forms; a map holds key-value pairs")
            result: dict[Any, Any] = {}
            for key, value in zip(items[::2], items[1::2]):
                if isinstance(key, list | dict):
                    raise _EdnError("a map key that is a collection; keys are keywords, strings or numbers")
                result[key] = value
            return result
        if opener == "#{":
            return sorted(items, key=repr) if _all_hashable(items) else items
        return items

    def _atom(self, kind: str, token: str) -> Any:
        limits = self.limits
        if kind == "string":
            if len(token) - 2 > limits.string_chars:
                raise _EdnError(f"a string of {len(token) - 2:,} characters; at most {limits.string_chars:,}")
            return _ESCAPE.sub(_unescape, token[1:-1])
        if kind == "char":
            name = token[1:]
            if name.startswith("u") and len(name) == 5:
                return chr(int(name[1:], 16))
            return _CHARS.get(name, name)
        if token == "nil":
            return None
        if token in ("true", "false"):
            return token == "true"
        if token.startswith(":"):
            if len(token) == 1:
                raise _EdnError("a ':' that names no keyword")
            return token.lstrip(":")
        if token[0].isdigit() or (token[0] in "+-" and len(token) > 1 and token[1].isdigit()):
            if _INT.fullmatch(token):
                digits = len(token.rstrip("N").lstrip("+-"))
                if digits > limits.int_digits:
                    raise _EdnError(f"an integer of {digits:,} digits; at most {limits.int_digits}")
                return int(token.rstrip("N"))
            if _FLOAT.fullmatch(token) and len(token) <= 400:
                value = float(token.rstrip("M"))
                if value in (float("inf"), float("-inf")):
                    raise _EdnError(f"the number {token[:40]} is out of range")
                return value
            raise _EdnError(f"{token[:40]!r} is not a number EDN histories use (integers and decimals)")
        if len(token) > limits.string_chars:
            raise _EdnError(f"a symbol of {len(token):,} characters; at most {limits.string_chars:,}")
        return token  # a symbol

    @staticmethod
    def _unexpected(text: str, position: int) -> str:
        if text[position] == '"':
            return f"a string that does not end on its line (column {position + 1})"
        return f"unexpected {text[position]!r} at column {position + 1}"


def _unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code.startswith("u") and len(code) == 5:
        return chr(int(code[1:], 16))
    if code in _ESCAPES:
        return _ESCAPES[code]
    raise _EdnError(f"an unknown escape \\{code} in a string")


def _all_hashable(items: list[Any]) -> bool:
    return not any(isinstance(i, list | dict) for i in items)


def read_edn(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> Iterator[tuple[int, Any]]:
    """The top-level forms of an EDN file (or the elements of its one vector), each
    with the line it began on.  ``InputError`` for text that is not EDN."""
    origin = str(path)
    reader = EdnReader(limits)
    number = 0
    for number, text in read_lines(path, limits):
        try:
            yield from reader.feed(number, text)
        except _EdnError as exc:
            raise InputError(origin, number, str(exc)) from None
    try:
        reader.finish()
    except _EdnError as exc:
        raise InputError(origin, number, str(exc)) from None


_EDN_EXAMPLE: Final = "{:process 0, :type :invoke, :f :read, :value nil}"


def _edn_events(path: str | Path, limits: Limits) -> Iterator[_Event]:
    origin = str(path)
    for number, form in read_edn(path, limits):
        if not isinstance(form, dict):
            raise InputError(origin, number, f"expected a map such as {_EDN_EXAMPLE}, not {_brief(form)}")
        missing = [k for k in ("process", "type", "f") if k not in form]
        if missing:
            raise InputError(origin, number, f"a map without :{', :'.join(missing)}; expected e.g. {_EDN_EXAMPLE}")
        event = _jepsen_event(origin, number, form["process"], form["type"], form["f"], form)
        if event is not None:
            yield event


def _jepsen_event(
    origin: str, number: int, process: Any, kind: Any, f: Any, fields: Mapping[str, Any]
) -> _Event | None:
    if process == "nemesis":
        return None  # the fault injector's own events are not client operations
    if isinstance(process, bool) or not isinstance(process, int | str):
        raise InputError(origin, number, f":process is {_brief(process)}; expected an integer")
    if kind not in ("invoke", *_OUTCOMES):
        raise InputError(origin, number, f":type is {_brief(kind)}; expected :invoke, :ok, :fail or :info")
    if not isinstance(f, str):
        raise InputError(origin, number, f":f is {_brief(f)}; expected a keyword such as :read")
    client = f"p{process}" if isinstance(process, int) else process
    call = _JepsenCall(f, fields.get("key"), "key" in fields, fields.get("value"))
    return _Event(number, client, kind, call)


def _jepsen_maker(model: Model[Any]) -> _Maker:
    from_jepsen = getattr(model, "from_jepsen", None)
    recorded = getattr(model, "recorded", None)

    def make(invocation: _Event, completion: _Event | None) -> tuple[Mapping[str, Any], Any] | None:
        call: _JepsenCall = invocation.payload
        outcome = "pending" if completion is None else completion.kind
        done: _JepsenCall | None = None if completion is None else completion.payload
        if done is not None and (done.f != call.f or (done.has_key and call.has_key and done.key != call.key)):
            raise ValueError(
                f"completes :{call.f} of line {invocation.line} with :{done.f}"
                + (f" on key {done.key!r}" if done.has_key else "")
                + "; a completion repeats its invocation's :f and :key"
            )
        completed = None if done is None else done.value
        if callable(from_jepsen):
            made: tuple[Mapping[str, Any], Any] | None = from_jepsen(
                call.f, call.key, call.has_key, call.value, completed, outcome
            )
        elif outcome == "fail":
            made = None
        else:
            # A model of the user's own without ``from_jepsen``: the record as it is.
            op: dict[str, Any] = {"op": call.f, "value": call.value}
            if call.has_key:
                op["key"] = call.key
            made = op, completed
        if made is not None and callable(recorded) and outcome in ("ok", "fail"):
            made = made[0], recorded(made[0], made[1])
        return made

    return make


# ------------------------------------------------------------- etcd logs


_JEPSEN_LOG = re.compile(r"\bjepsen\.util\s+-\s+")
_LOG_OP = re.compile(r"([0-9]{1,18})\s+:([A-Za-z][\w-]*)\s+:([A-Za-z][\w.-]*)(?:\s+(.*))?$")
_ETCD_EXAMPLE: Final = "INFO  jepsen.util - 3\t:invoke\t:read\tnil"


def _etcd_events(path: str | Path, limits: Limits) -> Iterator[_Event]:
    """Jepsen's log lines of client operations (``jepsen.util - PROCESS TYPE F VALUE
    [ERROR]``); every other line of the log (startup, the nemesis) is not an event."""
    origin = str(path)
    for number, text in read_lines(path, limits):
        found = _JEPSEN_LOG.search(text)
        if found is None:
            continue
        rest = text[found.end() :].strip()
        if not rest or not rest[0].isdigit():
            continue  # :nemesis and other non-client records
        match = _LOG_OP.match(rest)
        if match is None:
            raise InputError(origin, number, f"expected a client operation such as {_ETCD_EXAMPLE!r}")
        process, kind, f, tail = match.groups()
        reader = EdnReader(limits, unwrap=False)
        try:
            forms = [form for _, form in reader.feed(number, tail or "")]
            reader.finish()
        except _EdnError as exc:
            raise InputError(origin, number, f"the value: {exc}") from None
        if not forms or len(forms) > 2:
            raise InputError(
                origin, number, f"expected a value (and perhaps an error) after :{f}, e.g. {_ETCD_EXAMPLE!r}"
            )
        event = _jepsen_event(origin, number, int(process), kind, f, {"value": forms[0]})
        if event is not None:
            yield event


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
