"""Observability (impl/telemetry): trace context on the wire, spans across nodes, metrics, JSON logs.

The issue's line: one client request is one trace spanning at least three nodes (a
Raft cluster of three server processes, each writing its spans to its own file), and
each server's metrics endpoint serves the named metrics.  Around it: the W3C parser
on hostile input, the runtime's rules for which work joins a trace (a traced
message's handler, a timer it armed, not a timer armed by a timer), and the JSON log.
"""

from __future__ import annotations

import io
import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from distcheck.impl.resilience import UNBOUNDED, CircuitBreaker, RetryError, Retrying
from distcheck.impl.runtime.api import Context, Envelope, Timer
from distcheck.impl.runtime.free import FreeRuntime
from distcheck.impl.runtime.tcp import decode_traced_frame, encode_frame
from distcheck.impl.telemetry import TraceContext, count, current, install, otel, span, use

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


# ------------------------------------------------------------------ the W3C context


def test_traceparent_round_trips_and_rejects_what_is_not_one() -> None:
    ctx = TraceContext.parse(VALID)
    assert ctx == TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", True)
    assert ctx.traceparent == VALID
    assert TraceContext.parse(VALID[:-2] + "00") == TraceContext(ctx.trace_id, ctx.span_id, False)
    for bad in [
        None,
        7,
        "",
        VALID.upper(),  # W3C: lower-case hex only
        "01" + VALID[2:],  # a version this parser does not know
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",  # all-zero span id
        VALID + "-extra",
        VALID.replace("-", "_"),
    ]:
        assert TraceContext.parse(bad) is None, bad


@given(st.one_of(st.text(max_size=80), st.integers(), st.none(), st.lists(st.text(max_size=5))))
def test_parse_never_raises_on_any_value(value: object) -> None:
    parsed = TraceContext.parse(value)
    assert parsed is None or parsed.traceparent == value


def test_a_frame_carries_the_context_and_a_bad_one_is_ignored_not_fatal() -> None:
    ctx = TraceContext.new_root()
    src, msg, trace = decode_traced_frame(encode_frame("c1", {"type": "Ping"}, ctx)[4:])
    assert (src, msg, trace) == ("c1", {"type": "Ping"}, ctx)
    hostile = json.dumps({"src": "c1", "msg": {"type": "Ping"}, "traceparent": {"nested": [1]}}).encode()
    assert decode_traced_frame(hostile) == ("c1", {"type": "Ping"}, None)


# ------------------------------------------------------- spans across runtime nodes


@pytest.fixture
def memory() -> Iterator[tuple[Any, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    telemetry = otel.OpenTelemetry("test", spans=exporter, batch=False)
    previous = install(telemetry)
    try:
        yield telemetry, exporter
    finally:
        install(previous)
        telemetry.close()


def relay(next_hop: str | None, *, defer: bool = False) -> Any:
    """A node that passes each Ping on to ``next_hop`` (through a zero-delay timer when
    ``defer``), and re-arms a periodic Tick from the Tick's own handler."""

    def main(ctx: Context) -> None:
        ctx.set_timer("tick", 0.01)
        while True:
            item = ctx.receive()
            if isinstance(item, Timer) and item.name == "tick":
                ctx.set_timer("tick", 0.01)  # a timer armed by a timer: in no trace
            elif isinstance(item, Timer) and item.name == "flush" and next_hop is not None:
                ctx.send(next_hop, {"type": "Ping"})
            elif isinstance(item, Envelope) and next_hop is not None:
                if defer:
                    ctx.set_timer("flush", 0.0)
                else:
                    ctx.send(next_hop, {"type": "Ping"})

    return main


def test_one_request_is_one_trace_across_three_nodes(tmp_path: Path, memory: tuple[Any, InMemorySpanExporter]) -> None:
    telemetry, exporter = memory
    nodes = {"a": relay("b"), "b": relay("c", defer=True), "c": relay(None), "client": lambda ctx: None}
    with FreeRuntime(nodes, tmp_path) as rt:
        with span("request", attributes={"distcheck.node": "tester"}) as root:
            assert current() == root.context
            rt.send("client", "a", {"type": "Ping"})
        assert current() is None
        finished = _wait_for(lambda: {r["node"] for r in _records(exporter)}, "c")
    records = _records(exporter)
    assert root.context is not None
    in_trace = [r for r in records if r["traceId"] == root.context.trace_id]
    assert {r["node"] for r in in_trace} >= {"tester", "a", "b", "c"}, finished
    # Each span's parent is the span of the work that sent its message (or armed its timer).
    by_id = {r["spanId"]: r for r in in_trace}
    chain = {}
    for r in in_trace:
        parent = by_id.get(r["parentSpanId"])
        chain[(r["node"], r["name"])] = (parent["node"], parent["name"]) if parent else None
    assert chain[("a", "Ping")] == ("tester", "request")
    assert chain[("b", "Ping")] == ("a", "Ping")
    assert chain[("b", "timer flush")] == ("b", "Ping")  # deferred work stays in the trace
    assert chain[("c", "Ping")] == ("b", "timer flush")
    # Periodic ticks are in no trace: nothing untraced makes a span.
    assert not [r for r in records if r["name"] == "timer tick"]
    assert telemetry.records_spans


def _records(exporter: InMemorySpanExporter) -> list[dict[str, Any]]:
    return [otel.span_record(s) for s in exporter.get_finished_spans()]


def _wait_for(observe: Any, wanted: str, timeout: float = 10.0) -> Any:
    polls = Retrying(base=0.02, cap=0.02, jitter="none", max_attempts=UNBOUNDED, deadline=timeout, idempotent=True)
    try:
        for attempt in polls:
            with attempt:
                seen = observe()
                if wanted not in seen:
                    raise LookupError(f"{wanted!r} not among {seen!r}")
            if attempt.exception is None:
                return seen
    except RetryError as error:
        raise AssertionError(str(error.last_exception)) from None
    raise AssertionError("unreachable")


def recorder(seen: list[TraceContext | None]) -> Any:
    """A node that keeps the trace context of every message it receives."""

    def main(ctx: Context) -> None:
        while True:
            item = ctx.receive()
            if isinstance(item, Envelope):
                seen.append(item.trace)

    return main


def test_without_telemetry_the_context_passes_through_untouched(tmp_path: Path) -> None:
    seen: list[TraceContext | None] = []

    last = recorder(seen)

    incoming = TraceContext.new_root()
    with FreeRuntime({"a": relay("b"), "b": last, "client": lambda ctx: None}, tmp_path) as rt:
        with_trace = _traced_send(rt, incoming)
        _wait_for(lambda: "x" if seen else "", "x")
    assert with_trace is None  # nothing records spans: a call outside any trace starts none
    assert seen == [incoming]  # a's handler forwarded the context it came with


@pytest.mark.parametrize("sample", [0.0, 1.0])
def test_a_sampled_out_trace_is_carried_but_recorded_nowhere(tmp_path: Path, sample: float) -> None:
    # The client's share decides; every node follows the traceparent's sampled flag.
    exporter = InMemorySpanExporter()
    telemetry = otel.OpenTelemetry("test", spans=exporter, batch=False, sample=sample)
    previous = install(telemetry)
    seen: list[TraceContext | None] = []

    last = recorder(seen)

    try:
        with FreeRuntime({"a": relay("b"), "b": last, "client": lambda ctx: None}, tmp_path) as rt:
            with span("request") as root:
                rt.send("client", "a", {"type": "Ping"})
            _wait_for(lambda: "x" if seen else "", "x")
    finally:
        install(previous)
        telemetry.close()
    assert root.context is not None and seen[0] is not None
    assert seen[0].trace_id == root.context.trace_id  # carried through a either way
    assert seen[0].sampled is root.context.sampled is (sample == 1.0)
    recorded = {r["name"] for r in _records(exporter) if r["traceId"] == root.context.trace_id}
    assert recorded == (set() if sample == 0.0 else {"request", "Ping"}), recorded


def test_sample_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        otel.OpenTelemetry("test", sample=1.5)


def _traced_send(rt: FreeRuntime, context: TraceContext) -> TraceContext | None:
    with span("outside") as outside:
        pass
    with use(context):
        rt.send("client", "a", {"type": "Ping"})
    return outside.context


# ------------------------------------------------------------------------- logs


def test_steps_go_to_the_json_log_with_node_term_and_trace(tmp_path: Path) -> None:
    out = io.StringIO()
    telemetry = otel.OpenTelemetry("test", logs=out)
    previous = install(telemetry)
    try:

        def stepper(ctx: Context) -> None:
            item = ctx.receive()
            if isinstance(item, Envelope):
                ctx.record({"type": "Vote", "term": 3}, role="follower")
                ctx.record({"type": "Phase1b", "bal": 2})

        with FreeRuntime({"a": stepper, "client": lambda ctx: None}, tmp_path) as rt:
            root = TraceContext.new_root()
            with use(root):
                rt.send("client", "a", {"type": "Go"})
            _wait_for(lambda: out.getvalue(), "Phase1b")
    finally:
        install(previous)
        telemetry.close()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    steps = [line for line in lines if "action" in line]
    assert [s["action"]["type"] for s in steps] == ["Vote", "Phase1b"]
    assert steps[0]["node"] == "a" and steps[0]["term"] == 3 and "ballot" not in steps[0]
    assert steps[1]["ballot"] == 2
    # the step was taken while handling a traced message: the log names that trace
    assert {s["trace_id"] for s in steps} == {root.trace_id}


# ------------------------------------------------- the line: Raft processes


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def test_a_raft_request_is_one_trace_across_three_servers_and_each_serves_metrics(tmp_path: Path) -> None:
    from distcheck.impl.raft.cluster import LocalCluster

    spans_of = tmp_path / "{name}.spans.jsonl"
    args = ["--spans", str(spans_of), "--metrics-port", "0", "--log-json", str(tmp_path / "{name}.log.jsonl")]
    client_spans = tmp_path / "client.spans.jsonl"
    telemetry = otel.OpenTelemetry("client", spans=client_spans, metrics_port=0)
    previous = install(telemetry)
    try:
        with LocalCluster(3, tmp_path, server_args=args) as cluster:
            leader = cluster.leader()
            with cluster.client() as client:
                client.put("k", "v")  # its own span: a new trace
                assert client.get("k") == "v"
            urls = {}
            for name in cluster.names:
                printed = (tmp_path / f"{name}.out").read_text()
                match = re.search(r"metrics on (http://\S+)", printed)
                assert match, printed
                urls[name] = match.group(1)
            leader_metrics = _metrics(urls[leader])
            follower_metrics = _metrics(urls[next(n for n in cluster.names if n != leader)])
        # A breaker in front of the stopped cluster opens: its state is a metric too.
        breaker = CircuitBreaker("raft", window=2, min_calls=2, open_timeout=60)
        for _ in range(2):
            with pytest.raises(ConnectionRefusedError), breaker:
                raise ConnectionRefusedError
        client_metrics = _metrics(str(telemetry.metrics_url))
    finally:
        install(previous)
        telemetry.close()

    # Every process wrote its spans when it stopped; gather them as a collector would.
    records = otel.read_spans(client_spans)
    for name in ("n1", "n2", "n3"):
        records += otel.read_spans(tmp_path / f"{name}.spans.jsonl")
    puts = [r for r in records if r["name"] == "raft.put"]
    assert len(puts) == 1 and puts[0]["kind"] == "client" and puts[0]["parentSpanId"] is None
    trace = [r for r in records if r["traceId"] == puts[0]["traceId"]]
    servers = {r["node"] for r in trace} - {puts[0]["node"]}
    assert servers == {"n1", "n2", "n3"}, sorted((r["node"], r["name"]) for r in trace)
    by_id = {r["spanId"]: r for r in trace}
    for r in trace:  # one tree: every span but the root has its parent in the trace
        assert r is puts[0] or r["parentSpanId"] in by_id, r
    # the client may ask a follower first (it answers with the leader's name); the leader's
    # Command span is a child of the client's call
    command = [r for r in trace if r["name"] == "Command" and r["node"] == leader]
    assert len(command) == 1 and command[0]["parentSpanId"] == puts[0]["spanId"]
    assert {r["node"] for r in trace if r["name"] == "AppendEntriesRequest"} == set(cluster.names) - {leader}

    for text in (leader_metrics, follower_metrics):
        assert re.search(r"^distcheck_messages_sent_total\{.*type=\"AppendEntries", text, re.M)
        assert re.search(r"^distcheck_messages_received_total\{", text, re.M)
        assert "distcheck_retries_total" in text
        assert "distcheck_elections_total" in text
    assert re.search(rf'^distcheck_leader_changes_total\{{.*node="{leader}"', leader_metrics, re.M)
    assert re.search(r"^distcheck_commit_latency_seconds_count\{.*\} [1-9]", leader_metrics, re.M)
    assert re.search(r'^distcheck_client_latency_seconds_count\{.*operation="raft.put"', client_metrics, re.M)
    assert re.search(r'^distcheck_breaker_state(_ratio)?\{.*breaker="raft".*\} 2\.0', client_metrics, re.M)

    # The leader's JSON log: its steps, each with the term, those of the put in its trace.
    log = [json.loads(line) for line in (tmp_path / f"{leader}.log.jsonl").read_text().splitlines()]
    steps = [line for line in log if "action" in line]
    assert steps and all(s["node"] == leader and isinstance(s["term"], int) for s in steps)
    assert any(s.get("trace_id") == puts[0]["traceId"] and s["action"]["type"] == "ClientRequest" for s in steps)


def test_a_metric_not_in_the_table_is_an_error() -> None:
    with otel.OpenTelemetry("test") as telemetry:
        previous = install(telemetry)
        try:
            with pytest.raises(KeyError):
                count("distcheck.no.such.metric")
        finally:
            install(previous)
