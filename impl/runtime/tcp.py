"""Length-prefixed JSON frames over TCP: the free runtime's wire format, and the
limits a node puts on what a connection may send it.

Where it sits: ``impl.runtime.free`` sends every message as one frame and cuts
what its connections bring into frames under these limits (``decode_frame`` for
each); ``FrameReader`` is the same reading for a blocking socket, for a client
that talks to a node.

A frame is a 4-byte big-endian payload length, then the payload: UTF-8 JSON of
``{"src": sender, "msg": {"type": ..., ...}}``, and, when the message belongs to a
trace, ``"traceparent"``: its W3C trace context (``impl.telemetry.context``; a
value that is not one is ignored, not an error).  A reader that meets a frame longer
than its limit, nested deeper than its limit, a connection that ends inside a
frame, a frame that does not arrive completely within its deadline, or a payload
that is not such an object raises ``FrameError`` saying which; a connection that
sends nothing for its idle timeout raises ``IdleConnection``.  The caller logs
either and closes that connection, and keeps serving the others.

Every limit is a field of ``ConnectionLimits``, with the defaults documented in
docs/runtime.md ("Limits on connections").
"""

from __future__ import annotations

import json
import math
import re
import socket
import struct
import time
from itertools import accumulate
from typing import Any

import attrs

from distcheck.impl.telemetry.context import TraceContext

_LENGTH = struct.Struct(">I")
DEFAULT_MAX_FRAME = 1 << 20


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
        raise ValueError(f"ConnectionLimits.{attribute.name} must be a positive finite number, got {value!r}")


@attrs.frozen
class ConnectionLimits:
    """What one node accepts from its connections (defaults: docs/runtime.md)."""

    #: bytes: the largest frame payload a node reads; a larger one closes its connection
    max_frame: int = attrs.field(default=DEFAULT_MAX_FRAME, validator=_positive)
    #: seconds: once the first byte of a frame has arrived, the whole frame must
    #: have arrived within this time, or the connection is closed (a slow or stuck sender)
    frame_deadline: float = attrs.field(default=10.0, validator=_positive)
    #: seconds: a connection with no frame started for this long is closed
    idle_timeout: float = attrs.field(default=300.0, validator=_positive)
    #: how deeply arrays and objects may nest in a frame's JSON
    max_depth: int = attrs.field(default=64, validator=_positive)
    #: open incoming connections per node; one more is accepted, closed at once and counted
    max_connections: int = attrs.field(default=128, validator=_positive)
    #: seconds: the first and the longest wait before accept() is tried again after it failed
    #: (descriptors exhausted, out of memory...); the wait doubles with each failure in a row
    accept_backoff: float = attrs.field(default=0.01, validator=_positive)
    accept_backoff_max: float = attrs.field(default=1.0, validator=_positive)
    #: messages waiting in a node's mailbox; past it, its connections are not read (TCP pushes
    #: back on the senders) until the node has taken some
    max_mailbox: int = attrs.field(default=10_000, validator=_positive)
    #: diagnostic lines a runtime keeps; older ones are dropped (and counted)
    diagnostics_kept: int = attrs.field(default=1000, validator=_positive)

    def evolve(self, **changes: Any) -> ConnectionLimits:
        """These limits with ``changes``."""
        return attrs.evolve(self, **changes)


@attrs.define
class ConnectionStats:
    """What one node's listener has seen (the runtime updates it under its lock)."""

    #: connections accepted and served
    accepted: int = 0
    #: connections accepted only to be closed at once: the node had ``max_connections`` open
    refused: int = 0
    #: connections open now
    open: int = 0
    #: accept() calls that failed (descriptors exhausted...) and were retried
    accept_errors: int = 0
    #: connections closed for a bad frame: malformed, oversized, too deep, truncated or late
    rejected: int = 0
    #: connections closed for starting no frame within the idle timeout
    idle: int = 0


class FrameError(Exception):
    """A frame that breaks the format or the limits; the message says how."""


class IdleConnection(Exception):
    """A connection that started no frame within its idle timeout."""


def encode_frame(src: str, msg: Any, trace: TraceContext | None = None) -> bytes:
    frame: dict[str, Any] = {"src": src, "msg": msg}
    if trace is not None:
        frame["traceparent"] = trace.traceparent
    payload = json.dumps(frame, separators=(",", ":")).encode()
    return _LENGTH.pack(len(payload)) + payload


# A JSON string literal, escapes included; what is inside one is not structure.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [1 if b in b"[{" else -1 for b in range(256)]


def json_depth(payload: bytes) -> int:
    """How deeply arrays and objects nest in ``payload``, brackets inside strings
    not counted; linear time and no recursion, so that it is safe on any input."""
    brackets = _STRING.sub(b"", payload).translate(None, _NOT_BRACKETS)
    return max(0, max(accumulate(map(_STEP.__getitem__, brackets)), default=0))


def decode_frame(payload: bytes, max_depth: int = 64) -> tuple[str, dict[str, Any]]:
    """The (sender, message) a frame's payload carries, or ``FrameError``."""
    src, msg, _ = decode_traced_frame(payload, max_depth)
    return src, msg


def decode_traced_frame(payload: bytes, max_depth: int = 64) -> tuple[str, dict[str, Any], TraceContext | None]:
    """The (sender, message, trace context) a frame's payload carries, or ``FrameError``."""
    # Nesting is measured before parsing: json.loads recurses, and a deep enough
    # document (a megabyte of "[") ends in RecursionError instead of a parse error.
    if payload.count(b"[") + payload.count(b"{") > max_depth:
        depth = json_depth(payload)
        if depth > max_depth:
            raise FrameError(f"malformed frame: JSON nested {depth} deep, the limit is {max_depth}")
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FrameError(f"malformed frame: not UTF-8 JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("src"), str):
        raise FrameError('malformed frame: expected an object with a string "src"')
    msg = data.get("msg")
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise FrameError('malformed frame: "msg" must be an object with a string "type"')
    return data["src"], msg, TraceContext.parse(data.get("traceparent"))


class FrameReader:
    """Reads frames from one connection within ``limits``: the idle timeout between
    frames, the deadline and the size and depth limits within one."""

    def __init__(self, conn: socket.socket, limits: ConnectionLimits) -> None:
        self.conn = conn
        self.limits = limits

    def read(self) -> tuple[str, dict[str, Any]] | None:
        """The next (sender, message), or None when the peer closed between frames."""
        limits = self.limits
        self.conn.settimeout(limits.idle_timeout)
        try:
            first = self.conn.recv(_LENGTH.size)
        except TimeoutError:
            raise IdleConnection(f"no frame for {limits.idle_timeout:g} s") from None
        if not first:
            return None
        deadline = time.monotonic() + limits.frame_deadline
        header = first + self._read_exactly(_LENGTH.size - len(first), "length", len(first), deadline)
        (length,) = _LENGTH.unpack(header)
        if length > limits.max_frame:
            raise FrameError(f"oversized frame: {length} bytes, the limit is {limits.max_frame}")
        payload = self._read_exactly(length, "payload", 0, deadline)
        return decode_frame(payload, limits.max_depth)

    def _read_exactly(self, n: int, what: str, before: int, deadline: float) -> bytes:
        chunks: list[bytes] = []
        got = 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._late(got + before, n + before, what)
            self.conn.settimeout(left)
            try:
                chunk = self.conn.recv(min(n - got, 1 << 16))
            except TimeoutError:
                raise self._late(got + before, n + before, what) from None
            if not chunk:
                raise FrameError(
                    f"truncated frame: the connection ended after {got + before} of {n + before} bytes of its {what}"
                )
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _late(self, got: int, n: int, what: str) -> FrameError:
        return FrameError(
            f"late frame: {got} of {n} bytes of its {what} arrived within the {self.limits.frame_deadline:g} s deadline"
        )


def read_frame(
    conn: socket.socket, max_frame: int = DEFAULT_MAX_FRAME, limits: ConnectionLimits | None = None
) -> tuple[str, dict[str, Any]] | None:
    """The next (sender, message) on ``conn``, or None when the peer closed between frames."""
    chosen = limits if limits is not None else ConnectionLimits(max_frame=max_frame)
    return FrameReader(conn, chosen).read()
