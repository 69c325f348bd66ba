"""Nodes written as actors: handlers over explicit node state, typed messages, typed
timers, and one receive loop that every protocol shares.

Where it sits: on top of ``impl.runtime.api.Context``, so an actor runs in both
modes (controlled and free) like any node.  ``impl/twophase.py``, ``impl/paxos.py``
and the lock service's server and storage are written on it; code that must block
in the middle of its work (the lock service's ``LockClient``, a client running a
transaction) stays a plain ``main(ctx)`` node.

An actor declares

- its **messages**: attrs frozen classes with typed fields, one per wire ``type``
  (the class name), gathered in a ``Messages`` set.  A message arriving from the
  wire is decoded and shape-checked (every field present and of its declared type,
  no extra field; a bool is not an int; NaN and infinities are not numbers) before
  any handler sees it;
- its **timers**: small attrs frozen records (``VoteTimeout(txn="t1")``) armed with
  ``self.set_timer(record, delay)`` and handed back to ``on_timer`` as the record;
- its **handlers**: ``on_start()`` rebuilds the node's memory from durable storage
  (after every restart), ``on_message(src, msg)`` and ``on_timer(timer)`` react.
  The node's state is the actor's own attributes, which ``on_start`` resets.

What can go wrong, and what it costs:

- a message that does not decode (unknown ``type``, a field missing, extra or of the
  wrong type, a payload that is not an object), or one from a sender the actor does
  not accept (``peers``), is **rejected**: noted in ``diagnostics`` (a bounded
  ring, kept across restarts) and in the runtime's log; the node goes on serving.
  A handler may reject a message itself by raising ``Rejected``;
- any other exception in a handler is a **crash of the node** (``ctx.crash``): noted
  in ``diagnostics``; its threads unwind, its memory, mailbox and timers are lost
  and so is whatever it had not synced, exactly as for an injected crash.  Under the
  controlled scheduler the node is then down until the scheduler restarts it; the
  free runtime restarts it itself (``impl.runtime.free``).  Never a zombie: a node
  whose handler failed does not go on serving from a half-updated state.

Batches (group commit).  An actor that sets ``batched = True`` handles, in each turn
of its loop, the item it waited for and then every message or timer already
waiting (``ctx.receive_ready``, up to ``batch_limit`` in all), then calls
``on_batch_end()``, and only then lets out the messages its handlers sent: while a
batch runs, ``self.send`` holds each message (with the trace context it was sent
in).  ``on_start`` is a batch of its own.  So an actor that appends in its handlers
and syncs once in ``on_batch_end`` makes every decision of the batch durable with
one sync before anyone can learn of it; it records its trace steps there too,
after the sync.  A crash during a batch loses the held messages with the unsynced
records, as a crash between an append and its sync always did; in free mode,
where a stopped process's writes stay written, the actor still runs
``on_batch_end`` (sync, trace records) before it unwinds, so the trace explains
the log the node restarts from (docs/runtime.md, "Batches").
"""

from __future__ import annotations

import functools
import math
import types
import typing
from collections import deque
from collections.abc import Callable, Collection, Mapping
from typing import Any, ClassVar

import attrs

from distcheck.impl.runtime.api import Context, Envelope, Message, NodeCrashed, Received, Timer
from distcheck.impl.telemetry.context import TraceContext, current, use

#: attrs field metadata key: the field's name on the wire when it differs from the
#: Python name (``from`` is a keyword).
WIRE_NAME = "wire_name"

#: how many diagnostic lines an actor keeps (the oldest are dropped)
DIAGNOSTICS_KEPT = 64


def wire(name: str) -> dict[str, str]:
    """Field metadata naming the field ``name`` on the wire:
    ``from_slot: int = attrs.field(metadata=wire("from"))``."""
    return {WIRE_NAME: name}


class MessageError(ValueError):
    """A payload that is not one of the messages an actor accepts; says why."""


class Rejected(Exception):
    """Raised by a handler to refuse a message it cannot serve (recorded, not a crash)."""


# ------------------------------------------------------------------ messages


#: ``check(value, where)``: ``value`` (decoded JSON) as the checker's type, or
#: MessageError naming ``where``; with ``where=None`` nothing is formatted on the way
#: (the caller checks again with the place named, to say where it failed)
Checker = Callable[[Any, "str | None"], Any]


def _checked(check: Checker, value: Any, where: str) -> Any:
    try:
        return check(value, None)
    except MessageError:
        return check(value, where)  # the same failure, this time saying where


def _at(where: str | None, suffix: str) -> str | None:
    return None if where is None else where + suffix


@functools.cache
def _checker(hint: Any) -> Checker:
    """The check for values of type ``hint``, built once per type: decoding a message
    then costs a call per field, not a walk through ``typing``'s introspection."""
    if hint is Any:
        return _any
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        arms = [_checker(arm) for arm in typing.get_args(hint)]

        def union(value: Any, where: str | None) -> Any:
            problems = []
            for arm in arms:
                try:
                    return arm(value, where)
                except MessageError as exc:
                    problems.append(str(exc))
            raise MessageError("; or ".join(problems))

        return union
    simple = _SIMPLE.get(hint)
    if simple is not None:
        return simple
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _checker(args[0])

            def homogeneous(value: Any, where: str | None) -> Any:
                if not isinstance(value, list | tuple):
                    raise MessageError(f"{where} must be a list, got {_show(value)}")
                if where is None:
                    return tuple([item(v, None) for v in value])
                return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(value))

            return homogeneous
        items = [_checker(a) for a in args]

        def fixed(value: Any, where: str | None) -> Any:
            if not isinstance(value, list | tuple):
                raise MessageError(f"{where} must be a list, got {_show(value)}")
            if len(value) != len(items):
                raise MessageError(f"{where} must be a list of {len(items)} items, got {len(value)}")
            return tuple(check(v, _at(where, f"[{i}]")) for i, (v, check) in enumerate(zip(value, items)))

        return fixed
    if origin is dict:
        key_type, value_type = typing.get_args(hint)
        member = _checker(value_type)

        def mapping(value: Any, where: str | None) -> Any:
            if key_type is not str or not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
                raise MessageError(f"{where} must be an object, got {_show(value)}")
            if where is None:
                return {k: member(v, None) for k, v in value.items()}
            return {k: member(v, f"{where}.{k}") for k, v in value.items()}

        return mapping

    def unsupported(value: Any, where: str | None) -> Any:
        raise TypeError(f"{where}: a message field of type {hint!r} is not supported")  # a declaration error

    return unsupported


def _any(value: Any, where: str | None) -> Any:
    return value


def _none(value: Any, where: str | None) -> Any:
    if value is not None:
        raise MessageError(f"{where} must be null, got {_show(value)}")
    return None


def _bool(value: Any, where: str | None) -> Any:
    if not isinstance(value, bool):
        raise MessageError(f"{where} must be a boolean, got {_show(value)}")
    return value


def _int(value: Any, where: str | None) -> Any:
    # JSON's true is Python's True, an int: a flag is not a number here.
    if type(value) is not int and (isinstance(value, bool) or not isinstance(value, int)):
        raise MessageError(f"{where} must be an integer, got {_show(value)}")
    return value


def _float(value: Any, where: str | None) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MessageError(f"{where} must be a finite number, got {_show(value)}")
    return float(value)


def _str(value: Any, where: str | None) -> Any:
    if not isinstance(value, str):
        raise MessageError(f"{where} must be a string, got {_show(value)}")
    return value


_SIMPLE: dict[Any, Checker] = {type(None): _none, bool: _bool, int: _int, float: _float, str: _str}


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'…' if len(text) > 40 else ''}"


@attrs.frozen
class _FieldShape:
    name: str  # the Python name
    wire_name: str
    hint: Any
    required: bool
    check: Checker
    where: str  # "Type.wire_name", for messages


class Messages:
    """The message types a protocol speaks, by wire ``type`` name (the class name).
    Each is an attrs class whose fields are str, int, float, bool, None, Any (any
    JSON value), ``dict[str, T]``, ``tuple[T, ...]``, fixed ``tuple[A, B]`` or a
    union of these.  A class may define ``validate(self)`` raising ``MessageError``
    for what types alone cannot say."""

    def __init__(self, *kinds: type) -> None:
        self.kinds: dict[str, type] = {}
        self._shapes: dict[type, tuple[_FieldShape, ...]] = {}
        self._fields: dict[type, frozenset[str]] = {}  # the wire names a message may have, "type" included
        for kind in kinds:
            if not attrs.has(kind):
                raise TypeError(f"{kind.__name__} is not an attrs class")
            if kind.__name__ in self.kinds:
                raise ValueError(f"two message types named {kind.__name__}")
            hints = typing.get_type_hints(kind)
            self.kinds[kind.__name__] = kind
            self._shapes[kind] = tuple(
                _FieldShape(
                    f.name,
                    f.metadata.get(WIRE_NAME, f.name),
                    hints[f.name],
                    f.default is attrs.NOTHING,
                    _checker(hints[f.name]),
                    f"{kind.__name__}.{f.metadata.get(WIRE_NAME, f.name)}",
                )
                for f in attrs.fields(kind)
            )
            self._fields[kind] = frozenset({"type", *(shape.wire_name for shape in self._shapes[kind])})

    def decode(self, payload: object) -> Any:
        """The typed message ``payload`` (JSON as received) is, or MessageError."""
        if not isinstance(payload, Mapping):
            raise MessageError(f"a message must be a JSON object, got {_show(payload)}")
        type_name = payload.get("type")
        kind = self.kinds.get(type_name) if isinstance(type_name, str) else None
        if kind is None:
            raise MessageError(f"unknown message type {type_name!r}; accepted: {', '.join(self.kinds)}")
        shapes = self._shapes[kind]
        if not self._fields[kind].issuperset(payload):
            extra = sorted(set(payload) - self._fields[kind])
            raise MessageError(f"{type_name}: unexpected field(s) {', '.join(extra)}")
        values: dict[str, Any] = {}
        for shape in shapes:
            if shape.wire_name in payload:
                values[shape.name] = _checked(shape.check, payload[shape.wire_name], shape.where)
            elif shape.required:
                raise MessageError(f"{type_name}: field {shape.wire_name!r} is missing")
        try:
            msg = kind(**values)
            validate = getattr(msg, "validate", None)
            if validate is not None:
                validate()
        except MessageError:
            raise
        except (TypeError, ValueError) as exc:  # the class's own validators said no
            raise MessageError(f"{type_name}: {exc}") from None
        return msg

    def encode(self, msg: Any) -> dict[str, Any]:
        """The wire form of a typed message: ``{"type": ..., field: value, ...}``."""
        kind = type(msg)
        if kind not in self._shapes:
            raise TypeError(f"{kind.__name__} is not one of these messages: {', '.join(self.kinds)}")
        out: dict[str, Any] = {"type": kind.__name__}
        for shape in self._shapes[kind]:
            out[shape.wire_name] = getattr(msg, shape.name)
        return out


def encode(msg: Any) -> dict[str, Any]:
    """The wire form of any attrs message (``Messages.encode`` without the set)."""
    kind = type(msg)
    names = _WIRE_NAMES.get(kind)
    if names is None:
        names = _WIRE_NAMES[kind] = tuple((f.name, f.metadata.get(WIRE_NAME, f.name)) for f in attrs.fields(kind))
    out: dict[str, Any] = {"type": kind.__name__}
    for name, wire_name in names:
        out[wire_name] = getattr(msg, name)
    return out


#: attrs class -> (Python name, wire name) of each field, looked up once per class
_WIRE_NAMES: dict[type, tuple[tuple[str, str], ...]] = {}


# --------------------------------------------------------------------- actor


class Actor:
    """A node as handlers.  Subclasses set ``messages`` (what they accept), may set
    ``peers`` (the only senders they accept, None: anyone; ``accepts_sender`` refines it
    per message), and override the handlers.  ``main`` is the node function to hand
    to a runtime.  Inside handlers, ``self.ctx`` is the node's context."""

    messages: ClassVar[Messages] = Messages()
    #: handle a turn's waiting messages as one batch, sends held until after
    #: ``on_batch_end`` (module docstring, "Batches"); False: each handler's sends
    #: leave as it makes them
    batched: ClassVar[bool] = False
    #: the most messages and timers one batch handles (a batch must end now and
    #: then, or a steady stream of requests would hold every answer back)
    batch_limit: ClassVar[int] = 64

    def __init__(self, name: str, peers: Collection[str] | None = None) -> None:
        self.name = name
        self.peers = None if peers is None else frozenset(peers)
        #: what went wrong at this node, newest last (kept across restarts)
        self.diagnostics: deque[str] = deque(maxlen=DIAGNOSTICS_KEPT)
        self._timers: dict[str, Any] = {}
        #: a batched actor's sends of the batch running: (dst, wire form, trace context)
        self._held: list[tuple[str, Message, TraceContext | None]] = []

    # ------------------------------------------------------------ handlers

    def on_start(self) -> None:
        """Rebuild the node's memory from its storage; runs at every (re)start."""

    def on_message(self, src: str, msg: Any) -> None:
        """React to a decoded message; raise ``Rejected`` to refuse it."""

    def on_timer(self, timer: Any) -> None:
        """React to a timer record armed with ``set_timer``."""

    def on_batch_end(self) -> None:
        """Batched actors: runs after each batch's handlers (and after ``on_start``),
        before any message they sent leaves: sync what they appended, then record
        the steps it made durable."""

    def accepts_sender(self, src: str, msg: Any) -> bool:
        """Whether ``src`` may send ``msg``; by default, any of ``peers``."""
        return self.peers is None or src in self.peers

    # ------------------------------------------------------------ effects

    def send(self, dst: str, msg: Any) -> None:
        if self.batched:
            self._held.append((dst, encode(msg), current()))
        else:
            self.ctx.send(dst, encode(msg))

    def set_timer(self, timer: Any, delay: float) -> None:
        """Arm ``timer`` (an attrs record) to come back to ``on_timer`` after
        ``delay`` seconds; arming an equal record again replaces it."""
        name = repr(timer)  # attrs records repr their fields: equal records, one timer
        self._timers[name] = timer
        self.ctx.set_timer(name, delay)

    def cancel_timer(self, timer: Any) -> None:
        self.ctx.cancel_timer(repr(timer))

    def diagnose(self, text: str) -> None:
        """Note something that went wrong here, in ``diagnostics`` and the runtime's log."""
        self.diagnostics.append(text)
        self.ctx.log(text)

    # --------------------------------------------------------------- loop

    def main(self, ctx: Context) -> None:
        """The receive loop every actor shares; runs again from the top after a restart."""
        self.ctx = ctx
        self._timers = {}
        self._held = []
        self._batch(functools.partial(self._guard, "on_start", self.on_start))
        while True:
            item = ctx.receive()
            self._batch(functools.partial(self._take_batch, item))

    def _take_batch(self, first: Received | None) -> None:
        """Handle ``first`` and, when batched, what is already waiting after it."""
        self._handle(first)
        if self.batched:
            for _ in range(self.batch_limit - 1):
                item = self.ctx.receive_ready()
                if item is None:
                    return
                self._handle(item)

    def _batch(self, work: Callable[[], None]) -> None:
        """Run one turn's handlers; when batched, end the batch after them."""
        if not self.batched:
            work()
            return
        try:
            work()
        except NodeCrashed:
            # Stopped in the middle of the batch.  In free mode what the process
            # wrote stays written, so the durable part of the batch is finished as a
            # step in progress would be (its sync, its trace records); its messages
            # are lost with the node.  Under the controlled scheduler the crash has
            # already dropped what was not synced, and the sync raises at once.
            try:
                self.on_batch_end()
            except NodeCrashed:
                pass
            except Exception as exc:  # the node is going down: note it, and go down
                self.diagnostics.append(f"on_batch_end of a crashed batch raised {type(exc).__name__}: {exc}")
            raise
        self._end_batch()

    def _handle(self, item: Received | None) -> None:
        if isinstance(item, Timer):
            timer = self._timers.get(item.name)
            if timer is None:
                self.diagnose(f"ignored timer {item.name!r}: not armed by this incarnation")
            else:
                self._guard(f"on_timer({item.name})", functools.partial(self.on_timer, timer))
        elif isinstance(item, Envelope):
            self._receive(item)

    def _end_batch(self) -> None:
        """``on_batch_end``, then the batch's messages, in the order they were sent."""
        self._guard("on_batch_end", self.on_batch_end)
        held, self._held = self._held, []
        for dst, msg, trace in held:
            with use(trace):
                self.ctx.send(dst, msg)

    def _receive(self, envelope: Envelope) -> None:
        src = envelope.src
        try:
            msg = self.messages.decode(envelope.msg)
        except MessageError as exc:
            self.diagnose(f"rejected a message from {src}: {exc}")
            return
        if not self.ctx.knows(src):
            self.diagnose(f"rejected {type(msg).__name__} from {src}: no node of that name is known here")
            return
        if not self.accepts_sender(src, msg):
            self.diagnose(f"rejected {type(msg).__name__} from {src}: not a sender this node accepts")
            return
        self._guard(f"on_message({type(msg).__name__} from {src})", functools.partial(self.on_message, src, msg))

    def _guard(self, what: str, handler: Callable[[], None]) -> None:
        try:
            handler()
        except NodeCrashed:
            raise
        except Rejected as exc:
            self.diagnose(f"{what} rejected it: {exc}")
        except Exception as exc:
            # The handler may have changed half of the node's memory: going on from
            # there would serve from a state no one designed.  Crash, and let the
            # restart rebuild it from storage.
            reason = f"{what} raised {type(exc).__name__}: {exc}"
            self.diagnose(f"crashed: {reason}")
            self.ctx.crash(reason)
