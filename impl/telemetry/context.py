"""The W3C trace context a message carries, and the one the current thread works in.

Where it sits: the part of ``impl.telemetry`` that needs no OpenTelemetry.  A frame
between nodes (``impl.runtime.tcp``) may carry a ``traceparent`` beside its sender
and message, in the W3C Trace Context format::

    00-<trace id: 32 hex>-<parent span id: 16 hex>-<flags: 2 hex>

The runtime parses it when the frame arrives, makes it (or the span started for it)
the receiving thread's current context while the message is handled, and stamps the
current context on every message that thread sends, so one client request is one
trace across every node it reaches.  Without a tracer installed the context passes
through unchanged (a node in the middle keeps the trace whole); with one, each node
adds a span.

The current context is a ``contextvars.ContextVar``: each thread has its own, which
is what a node's threads need (every thread handles its own messages).

A traceparent is input from the network: ``TraceContext.parse`` accepts exactly the
W3C form (version 00; lower-case hex; trace and span ids not all zeros) and returns
None for anything else, which then starts no trace rather than failing the message.
"""

from __future__ import annotations

import contextvars
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import attrs

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


@attrs.frozen
class TraceContext:
    """Which trace a piece of work belongs to and which span is its parent."""

    #: 32 lower-case hex digits, the same on every span of one trace
    trace_id: str
    #: 16 lower-case hex digits: the span this context points at (the parent of spans started in it)
    span_id: str
    #: the W3C "sampled" flag: whether the trace's spans are being recorded somewhere
    sampled: bool = True

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    @classmethod
    def parse(cls, text: object) -> TraceContext | None:
        """The context a ``traceparent`` header names, or None when it is not one."""
        if not isinstance(text, str) or len(text) != 55:
            return None
        match = _TRACEPARENT.fullmatch(text)
        if match is None:
            return None
        trace_id, span_id, flags = match.groups()
        if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
            return None
        return cls(trace_id, span_id, bool(int(flags, 16) & 1))

    @classmethod
    def new_root(cls) -> TraceContext:
        """A context for a new trace (random ids, as W3C asks)."""
        return cls(os.urandom(16).hex(), os.urandom(8).hex())


_CURRENT: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar("distcheck_trace", default=None)


def current() -> TraceContext | None:
    """The current thread's trace context (None: its work belongs to no trace)."""
    return _CURRENT.get()


def set_current(context: TraceContext | None) -> None:
    """Make ``context`` the current thread's (the runtime does, per message handled)."""
    _CURRENT.set(context)


@contextmanager
def use(context: TraceContext | None) -> Iterator[TraceContext | None]:
    """Work in ``context`` inside the block; the previous context after it."""
    token = _CURRENT.set(context)
    try:
        yield context
    finally:
        _CURRENT.reset(token)
