"""Observability for every implementation: trace context, spans, metrics and JSON logs.

Where it sits: in ``impl/``, beside the runtime, used by the runtime itself
(``impl.runtime.free``: a span per traced message handled, the messages counted, the
trace context stamped on every frame), by the clients (a span per call) and by the
pieces that have something to report (``impl.resilience``: retries, breaker state,
suspicion; ``impl.raft``: elections, commit latency).  Protocol code never calls an
exporter: it calls the small facade below, which does nothing until a ``Telemetry``
is installed, and then forwards to it.

Two implementations of ``Telemetry``:

- the base class here: spans pass the parent's context through (a node in the
  middle of a trace keeps it whole, at the cost of a string), metrics and steps go
  nowhere;
- ``impl.telemetry.otel.OpenTelemetry``: spans and metrics through OpenTelemetry's
  SDK (an optional dependency, ``pip install 'distcheck[telemetry]'``), spans
  written as JSON lines (or to the console, or to any exporter), metrics served in
  Prometheus's text format over HTTP, steps logged as JSON lines.

The metrics have fixed names, listed in ``METRICS`` (docs/observability.md is the
table a reader sees); a name not listed there is a programming error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

from distcheck.impl.telemetry.context import TraceContext, current, set_current, use

Kind = Literal["counter", "histogram", "gauge"]

#: every metric: name -> (kind, unit, what it measures).  OpenTelemetry's names; the
#: Prometheus endpoint shows them with "_" for "." and a unit / "_total" suffix
#: (``distcheck.messages.sent`` is ``distcheck_messages_sent_total``).
METRICS: dict[str, tuple[Kind, str, str]] = {
    "distcheck.messages.sent": ("counter", "{message}", "messages a node sent, by node and type"),
    "distcheck.messages.received": ("counter", "{message}", "messages a node took from its mailbox, by node and type"),
    "distcheck.retries": ("counter", "{retry}", "attempts a retry policy made again after a failure, by operation"),
    "distcheck.elections": (
        "counter",
        "{election}",
        "elections a node started (Raft: became candidate; Paxos: a new ballot), by node",
    ),
    "distcheck.leader.changes": ("counter", "{change}", "times a node became leader, by node"),
    "distcheck.commit.latency": (
        "histogram",
        "s",
        "time from a leader writing a batch of commands to committing it, by node",
    ),
    "distcheck.client.latency": ("histogram", "s", "a client call from its start to its answer, by operation"),
    "distcheck.breaker.state": ("gauge", "1", "a circuit breaker's state: 0 closed, 1 half-open, 2 open, by breaker"),
    "distcheck.breaker.transitions": (
        "counter",
        "{transition}",
        "a circuit breaker's state changes, by breaker and to",
    ),
    "distcheck.detector.suspected": ("gauge", "1", "1 while a failure detector suspects a peer, else 0"),
    "distcheck.detector.phi": ("gauge", "1", "a phi-accrual detector's suspicion level for a peer"),
    "distcheck.faults.injected": ("counter", "{fault}", "faults a nemesis injected, by kind"),
}


class Span:
    """A span as the runtime and clients see it: its context (what messages sent
    inside it carry), attributes to add, and its end.  The base class records
    nothing: its context is the parent's, so a trace passes through untouched."""

    def __init__(self, context: TraceContext | None) -> None:
        self.context = context

    def set(self, key: str, value: str | int | float | bool) -> None:
        """Add an attribute (ignored when nothing records spans)."""

    def fail(self, error: BaseException) -> None:
        """Mark the span failed with ``error`` (ignored when nothing records spans)."""

    def end(self) -> None:
        """The span's work is done (ending twice is harmless)."""


class Telemetry:
    """Where spans, metrics and steps go.  This base class drops them all (the default
    until ``install``); ``impl.telemetry.otel.OpenTelemetry`` records them."""

    #: whether spans are recorded (False: contexts pass through, no span is made)
    records_spans = False

    def start_span(
        self,
        name: str,
        parent: TraceContext | None,
        *,
        kind: Literal["client", "server", "internal"] = "internal",
        attributes: Mapping[str, str | int | float | bool] | None = None,
    ) -> Span:
        return Span(parent)

    def record_metric(self, name: str, value: float, attributes: Mapping[str, str]) -> None:
        """Add to a counter, record in a histogram or set a gauge (``METRICS`` says which)."""

    def log_step(self, node: str, action: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
        """A node's step (``ctx.record``), for the structured log."""

    def log_note(self, text: str) -> None:
        """A runtime's diagnostic line, for the structured log."""

    def close(self) -> None:
        """Flush what is buffered and stop serving (idempotent)."""


_NOTHING = Telemetry()
_installed: Telemetry = _NOTHING


def install(telemetry: Telemetry | None) -> Telemetry:
    """Make ``telemetry`` the process's (None: back to recording nothing); the one it replaces."""
    global _installed
    previous, _installed = _installed, telemetry if telemetry is not None else _NOTHING
    return previous


def installed() -> Telemetry:
    return _installed


def count(name: str, value: float = 1, **attributes: str) -> None:
    """Add ``value`` to counter ``name`` (a name in ``METRICS``)."""
    if _installed is not _NOTHING:
        _installed.record_metric(name, value, attributes)


def observe(name: str, value: float, **attributes: str) -> None:
    """Record ``value`` in histogram ``name``."""
    if _installed is not _NOTHING:
        _installed.record_metric(name, value, attributes)


def gauge(name: str, value: float, **attributes: str) -> None:
    """Set gauge ``name`` to ``value``."""
    if _installed is not _NOTHING:
        _installed.record_metric(name, value, attributes)


@contextmanager
def span(
    name: str,
    *,
    kind: Literal["client", "server", "internal"] = "client",
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> Iterator[Span]:
    """A span around the block, child of the current context (a new trace when there is
    none and spans are recorded); messages sent inside carry it.  Clients wrap each
    call in one, so a request is one trace from the caller to every node it reaches."""
    telemetry = _installed
    parent = current()
    if parent is None and not telemetry.records_spans:
        yield Span(None)
        return
    started = telemetry.start_span(name, parent, kind=kind, attributes=attributes)
    try:
        with use(started.context):
            yield started
    except BaseException as exc:
        started.fail(exc)
        raise
    finally:
        started.end()


__all__ = [
    "METRICS",
    "Span",
    "Telemetry",
    "TraceContext",
    "count",
    "current",
    "gauge",
    "install",
    "installed",
    "observe",
    "set_current",
    "span",
    "use",
]
