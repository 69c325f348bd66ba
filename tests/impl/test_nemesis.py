"""The nemesis (impl/runtime/nemesis.py): its schedule is the seed's and keeps its own
rules; on a free runtime each kind of fault does what it says (a crashed node is down
until the heal, a partition drops both ways, a slow node holds what it takes, a clock
jump is what ``ctx.now()`` reads), is counted and noted, and everything is healed at
the end, or at ``stop()``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from distcheck.impl.runtime.api import Context, Envelope
from distcheck.impl.runtime.free import FreeRuntime
from distcheck.impl.runtime.nemesis import KINDS, Fault, Nemesis, plan
from distcheck.impl.telemetry import install, otel
from tests.impl.waiting import wait_for

TARGETS = {"crash": ["s1", "s2"], "partition": ["s1", "s2", "s3"], "slow": ["s3"], "clock": ["c1", "c2"]}


# ------------------------------------------------------------------ the schedule


def test_the_schedule_is_the_seeds() -> None:
    assert plan(7, 30.0, TARGETS) == plan(7, 30.0, TARGETS)
    assert plan(7, 30.0, TARGETS) != plan(8, 30.0, TARGETS)
    assert len({plan(seed, 30.0, TARGETS) for seed in range(20)}) == 20


@pytest.mark.parametrize("seed", range(30))
def test_a_schedule_keeps_its_rules(seed: int) -> None:
    duration, settle, gap = 20.0, 1.0, 0.5
    faults = plan(seed, duration, TARGETS, settle=settle, gap=gap, concurrent=2)
    assert faults == tuple(sorted(faults, key=lambda f: (f.start, f.kind, f.nodes)))
    assert {f.kind for f in faults} == set(TARGETS)  # each kind placed once first
    for f in faults:
        assert set(f.nodes) <= set(TARGETS[f.kind])
        assert 0 <= f.start and f.end <= duration - settle + 1e-6
        if f.kind == "slow":
            assert f.amount > 0
    for i, f in enumerate(faults):
        for g in faults[i + 1 :]:
            if set(f.nodes) & set(g.nodes):  # one node, one fault at a time, with a gap
                assert g.start >= f.end + gap - 1e-6 or f.start >= g.end + gap - 1e-6, (f, g)
            if f.kind == g.kind == "partition":
                assert g.start >= f.end or f.start >= g.end, (f, g)
    # never more than two at once
    for f in faults:
        assert sum(1 for g in faults if g.start <= f.start < g.end) <= 2


def test_a_bad_schedule_request_says_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="unknown fault kinds flood"):
        plan(1, 10.0, {"flood": ["s1"]})
    with pytest.raises(ValueError, match="duration"):
        plan(1, -1.0, TARGETS)
    with pytest.raises(ValueError, match="no targets"):
        plan(1, 10.0, {"slow": []})
    with pytest.raises(ValueError, match="lengths of crash"):
        plan(1, 10.0, TARGETS, lengths={"crash": (2.0, 1.0)})
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("meteor", ("s1",), 0.0, 1.0)
    with pytest.raises(ValueError, match="amount must be > 0"):
        Fault("slow", ("s1",), 0.0, 1.0)


# ----------------------------------------------------------- on a free runtime


@pytest.fixture
def metrics() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    telemetry = otel.OpenTelemetry("test", metric_readers=[reader])
    previous = install(telemetry)
    try:
        yield reader
    finally:
        install(previous)
        telemetry.close()


def injected(reader: InMemoryMetricReader) -> dict[str, float]:
    out: dict[str, float] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "distcheck.faults.injected":
                    for point in metric.data.data_points:
                        kind = (point.attributes or {}).get("kind")
                        if kind is not None:  # (the counter's zero, added at the start, has none)
                            out[str(kind)] = float(point.value)  # type: ignore[union-attr]
    return out


def clock_watcher(samples: list[tuple[float, float]]) -> Any:
    """A node that samples (its ctx.now(), the machine's monotonic clock) every 10 ms."""

    def main(ctx: Context) -> None:
        while True:
            samples.append((ctx.now(), time.monotonic()))
            ctx.sleep(0.01)

    return main


def test_a_clock_jump_is_what_ctx_now_reads_and_it_jumps_back_at_the_heal(
    tmp_path: Path, metrics: InMemoryMetricReader
) -> None:
    samples: list[tuple[float, float]] = []
    nemesis = Nemesis([Fault("clock", ("w",), 0.3, 0.5, 5.0), Fault("clock", ("w",), 1.0, 0.4, -3.0)])
    runtime = FreeRuntime(nemesis.wrap({"w": clock_watcher(samples)}), tmp_path)
    nemesis.attach(runtime)
    with runtime, nemesis:
        assert nemesis.wait(30.0)
        count = len(samples)
        wait_for(lambda: len(samples) > count + 3, "samples after the last heal")
    offsets = [round(now - real, 1) for now, real in samples]
    # The offsets the node's clock showed, in order, without repeats: none, +5, none, -3, none.
    runs = [o for i, o in enumerate(offsets) if i == 0 or o != offsets[i - 1]]
    assert runs == [0.0, 5.0, 0.0, -3.0, 0.0], runs
    assert [(e.what, e.fault.amount) for e in nemesis.events] == [
        ("inject", 5.0),
        ("heal", 5.0),
        ("inject", -3.0),
        ("heal", -3.0),
    ]
    assert injected(metrics) == {"clock": 2.0}
    assert sum("nemesis: clock w jumps +5.00 s" in d for d in runtime.diagnostics) == 1
    assert runtime.errors == []


def pinger(peer: str, heard: list[tuple[float, str]], every: float = 0.02) -> Any:
    """Sends a Ping to ``peer`` every ``every`` seconds; notes when it hears one (the
    receiving node's own clock) and from whom."""

    def main(ctx: Context) -> None:
        ctx.set_timer("tick", every)
        while True:
            item = ctx.receive()
            if isinstance(item, Envelope):
                heard.append((time.monotonic(), item.src))
            else:
                ctx.send(peer, {"type": "Ping", "sent": time.monotonic()})
                ctx.set_timer("tick", every)

    return main


def test_a_partition_drops_both_ways_and_traffic_resumes_after_the_heal(
    tmp_path: Path, metrics: InMemoryMetricReader
) -> None:
    heard_a: list[tuple[float, str]] = []
    heard_b: list[tuple[float, str]] = []
    nemesis = Nemesis([Fault("partition", ("a",), 0.3, 0.6)])
    nodes = nemesis.wrap({"a": pinger("b", heard_a), "b": pinger("a", heard_b)})
    # two runtimes, as two processes: the partition is the nemesis's, not a runtime's
    first, second = FreeRuntime({"a": nodes["a"]}, tmp_path), FreeRuntime({"b": nodes["b"]}, tmp_path)
    first.add_peers(second.listen())
    second.add_peers(first.listen())
    nemesis.attach(first, second)
    with first, second, nemesis:
        assert nemesis.wait(30.0)
        healed = time.monotonic()
        wait_for(lambda: sum(t > healed for t, _ in heard_a) >= 3, "a to hear b again")
        wait_for(lambda: sum(t > healed for t, _ in heard_b) >= 3, "b to hear a again")
    assert nemesis.dropped[("a", "b")] > 0 and nemesis.dropped[("b", "a")] > 0
    assert set(nemesis.dropped) == {("a", "b"), ("b", "a")}
    assert injected(metrics) == {"partition": 1.0}
    for rt in (first, second):  # noted on both sides of the cut
        assert [d for d in rt.diagnostics if d.startswith("nemesis:")] == [
            "nemesis: partition a | the rest, 0.6 s",
            "nemesis: healed: partition a | the rest, 0.6 s",
        ]
        assert rt.errors == []


def test_a_crashed_node_stays_down_until_the_heal_then_runs_again_from_the_top(
    tmp_path: Path, metrics: InMemoryMetricReader
) -> None:
    starts: list[float] = []

    def node(ctx: Context) -> None:
        starts.append(time.monotonic())
        log = ctx.storage("starts")
        log.append({"start": len(starts)})
        log.sync()
        while True:
            ctx.receive()

    nemesis = Nemesis([Fault("crash", ("n",), 0.2, 0.8)])
    runtime = FreeRuntime(nemesis.wrap({"n": node}), tmp_path, max_restarts=1, restart_delay=0.01)
    nemesis.attach(runtime)
    with runtime, nemesis:
        assert nemesis.wait(30.0)
        wait_for(lambda: len(starts) == 2, "the node to run again")
        assert [r["start"] for r in runtime.nodes["n"].logs["starts"].records()] == [1, 2]
    assert [e.what for e in nemesis.events] == ["inject", "heal"]
    assert nemesis.origin is not None
    # its main ran again only after the heal, although the runtime restarted it at once
    assert starts[1] >= nemesis.origin + nemesis.events[1].at
    assert runtime.crashes == ["n: nemesis: crash n, down 0.8 s"]
    assert injected(metrics) == {"crash": 1.0}
    assert runtime.errors == []


def test_the_schedule_crashing_a_node_more_often_than_its_runtime_restarts_it_is_refused(tmp_path: Path) -> None:
    nemesis = Nemesis([Fault("crash", ("n",), 0.1, 0.1), Fault("crash", ("n",), 1.0, 0.1)])
    runtime = FreeRuntime(nemesis.wrap({"n": clock_watcher([])}), tmp_path, max_restarts=1)
    with pytest.raises(ValueError, match="max_restarts >= 2"):
        nemesis.attach(runtime)
    unattached = Nemesis([Fault("crash", ("n",), 0.1, 0.1)])
    unattached.wrap({"n": clock_watcher([])})
    with pytest.raises(ValueError, match="no runtime attached hosts n"):
        unattached.start()


def test_a_slow_node_holds_what_it_takes_and_catches_up_after_the_heal(
    tmp_path: Path, metrics: InMemoryMetricReader
) -> None:
    held: list[tuple[float, float]] = []  # (when the ping was sent, how long until its handler saw it)

    def slow(ctx: Context) -> None:
        while True:
            item = ctx.receive()
            if isinstance(item, Envelope):
                held.append((item.msg["sent"], time.monotonic() - item.msg["sent"]))

    nemesis = Nemesis([Fault("slow", ("s",), 0.2, 1.0, 0.3)])
    nodes = nemesis.wrap({"s": slow, "p": pinger("s", [], every=0.05)})
    runtime = FreeRuntime(nodes, tmp_path)
    nemesis.attach(runtime)
    with runtime, nemesis:
        assert nemesis.wait(30.0)
        healed = time.monotonic()
        wait_for(lambda: any(sent > healed for sent, _ in held), "a ping sent after the heal to be handled")
    # while slow, each ping waited at least the hold before its handler saw it
    assert max(h for _, h in held) >= 0.3
    assert injected(metrics) == {"slow": 1.0}
    assert runtime.errors == []


def test_stop_heals_every_fault_in_force_and_injects_no_more(tmp_path: Path, metrics: InMemoryMetricReader) -> None:
    samples: list[tuple[float, float]] = []
    schedule = [
        Fault("clock", ("w",), 0.1, 60.0, 10.0),
        Fault("partition", ("w",), 0.1, 60.0),
        Fault("slow", ("w",), 50.0, 5.0, 1.0),
    ]
    nemesis = Nemesis(schedule)
    runtime = FreeRuntime(nemesis.wrap({"w": clock_watcher(samples)}), tmp_path)
    nemesis.attach(runtime)
    with runtime:
        nemesis.start()
        wait_for(lambda: len(nemesis.active) == 2, "the first two faults")
        nemesis.stop()
        assert nemesis.active == () and not nemesis.cut("w", "x")
        count = len(samples)
        wait_for(lambda: len(samples) > count + 3, "samples after the stop")
    assert round(samples[-1][0] - samples[-1][1], 1) == 0.0
    assert sorted((e.what, e.fault.kind) for e in nemesis.events) == [
        ("heal", "clock"),
        ("heal", "partition"),
        ("inject", "clock"),
        ("inject", "partition"),
    ]
    assert injected(metrics) == {"clock": 1.0, "partition": 1.0}


def test_every_kind_has_a_default_length() -> None:
    faults = plan(3, 40.0, {kind: ("x",) for kind in KINDS}, concurrent=1)
    assert {f.kind for f in faults} == set(KINDS)
