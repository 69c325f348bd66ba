"""Chaos: a small key-value service on the free runtime under a nemesis, watched only
through its Prometheus endpoint.

    .venv/bin/python examples/chaos.py [--seconds 20] [--seed 1] [--directory DIR]

Three servers (s1, s2, s3) keep a key-value map in a durable log, answer ``Put`` and
``Get``, and send every client a heartbeat every 0.1 s.  Two clients (c1, c2) call
every server in turn, each server behind a circuit breaker of the client's
(``c1->s3``: open after half of its last 4 calls failed, half-open after 1 s), and
feed each server's heartbeats to a phi-accrual failure detector of their own, whose
phi and verdict they publish as the gauges ``distcheck.detector.phi`` and
``distcheck.detector.suspected`` (``detector=c1, peer=s3``) ten times a second.
Each node runs in a runtime of its own (a process of its own, in production), so
everything goes over TCP on loopback.

After a second of warm-up a nemesis (``impl.runtime.nemesis``) plays a schedule
drawn from the seed: servers crashed and restarted, cut off by a partition, made
slow (each message and timer held 1.5-2 s, for 3-5 s), and the clients' clocks
jumped forward or back.  Every fault heals at least 2 s before the end.  Meanwhile
the program scrapes the metrics endpoint five times a second, and at the end prints
the timeline (each fault, and each change in what the metrics show: the peers
suspected, the breakers not closed), then a verdict from the scraped text alone:

- breakers opened and closed again (``distcheck_breaker_transitions_total`` to
  ``open`` and to ``closed`` both above zero);
- every slow server was suspected (``distcheck_detector_suspected`` 1) by some
  client during its slow period, and healthy servers (no fault on them, none in the
  second before) were not suspected in at least 90% of the readings;
- no read went back: a client's ``Get`` never returned less than the last value a
  ``Put`` of its had been acknowledged for (servers sync before they answer, so a
  crash loses nothing acknowledged).

It exits 0 when the verdict holds, 1 when it does not.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import attrs
from prometheus_client.parser import text_string_to_metric_families

from distcheck.impl.resilience import CircuitBreaker, CircuitOpenError, Permit, PhiAccrualDetector
from distcheck.impl.runtime.actor import Actor, Messages
from distcheck.impl.runtime.free import FreeRuntime, connect
from distcheck.impl.runtime.nemesis import Event, Fault, Nemesis, plan
from distcheck.impl.telemetry import gauge, install
from distcheck.impl.telemetry.otel import OpenTelemetry

SERVERS = ("s1", "s2", "s3")
CLIENTS = ("c1", "c2")

HEARTBEAT = 0.1  # seconds between a server's heartbeats
TICK = 0.05  # seconds between a client's rounds (calls sent, deadlines checked)
GAUGES_EVERY = 2  # ticks between two publications of the detector gauges
CALL_TIMEOUT = 0.3  # seconds a client waits for an answer
THRESHOLD = 8.0  # phi above which a peer is suspected (Akka's default)
WARMUP = 1.0  # seconds before the nemesis starts: the detectors learn the heartbeat rate
SETTLE = 2.0  # seconds at the end with no fault: breakers close again
RECOVERY = 1.0  # seconds after a fault on a server during which it does not count as healthy
PHI_CAP = 100.0  # the phi gauge's ceiling (OpenTelemetry drops an infinite reading)
MIN_SECONDS, MAX_SECONDS = 5.0, 600.0

#: what the nemesis may hit, and how hard; slow first, so every schedule has one
TARGETS: Mapping[str, Sequence[str]] = {
    "slow": SERVERS,
    "crash": SERVERS,
    "partition": SERVERS,
    "clock": CLIENTS,
}
LENGTHS = {"slow": (3.0, 5.0), "crash": (0.8, 1.5), "partition": (1.0, 2.0), "clock": (1.0, 2.0)}
AMOUNTS = {"slow": (1.5, 2.0), "clock": (0.5, 2.0)}


# ------------------------------------------------------------------ the service


@attrs.frozen
class Put:
    id: int
    key: str
    value: int


@attrs.frozen
class Get:
    id: int
    key: str


@attrs.frozen
class Ack:
    id: int


@attrs.frozen
class Value:
    id: int
    value: int | None


@attrs.frozen
class Heartbeat:
    pass


@attrs.frozen
class Beat:  # a server's heartbeat timer
    pass


@attrs.frozen
class Tick:  # a client's round
    pass


class KvServer(Actor):
    """A key-value map in a durable log; heartbeats to every client."""

    messages = Messages(Put, Get)

    def __init__(self, name: str) -> None:
        super().__init__(name, peers=CLIENTS)

    def on_start(self) -> None:
        self.log = self.ctx.storage("kv")
        self.data = {r["key"]: r["value"] for r in self.log.records()}
        self.set_timer(Beat(), 0.0)

    def on_timer(self, timer: Any) -> None:
        for client in CLIENTS:
            self.send(client, Heartbeat())
        self.set_timer(Beat(), HEARTBEAT)

    def on_message(self, src: str, msg: Any) -> None:
        match msg:
            case Put(id, key, value):
                self.log.append({"key": key, "value": value})
                self.log.sync()
                self.data[key] = value
                self.send(src, Ack(id))
            case Get(id, key):
                self.send(src, Value(id, self.data.get(key)))


@dataclass
class _Call:
    id: int
    permit: Permit
    deadline: float
    put: int | None  # the value written, or None for a read
    floor: int  # the last value acknowledged for this client's key when the call was sent


@dataclass
class ClientStats:
    calls: Counter[str] = field(default_factory=Counter)  # ok, failed, rejected
    stale_reads: list[str] = field(default_factory=list)


class ChaosClient(Actor):
    """Calls each server in turn through a breaker; a phi detector per server."""

    messages = Messages(Ack, Value, Heartbeat)

    def __init__(self, name: str) -> None:
        super().__init__(name, peers=SERVERS)
        self.stats = ClientStats()

    def on_start(self) -> None:
        clock = self.ctx.now  # the node's clock: the one a clock jump moves
        self.breakers = {
            s: CircuitBreaker(f"{self.name}->{s}", window=4, failure_rate=0.5, open_timeout=1.0, probes=1, clock=clock)
            for s in SERVERS
        }
        self.detectors = {
            s: PhiAccrualDetector(threshold=THRESHOLD, max_samples=200, first_interval=HEARTBEAT, clock=clock)
            for s in SERVERS
        }
        self.calls: dict[str, _Call] = {}
        self.acked = dict.fromkeys(SERVERS, 0)  # the last value acknowledged on each server
        self.next_id = 0
        self.ticks = 0
        self.set_timer(Tick(), 0.0)

    def on_timer(self, timer: Any) -> None:
        now = self.ctx.now()
        for server in SERVERS:
            call = self.calls.get(server)
            if call is not None and now >= call.deadline:
                del self.calls[server]
                call.permit.failure()
                self.stats.calls["failed"] += 1
            if server not in self.calls:
                self._call(server, now)
        self.ticks += 1
        if self.ticks % GAUGES_EVERY == 0:
            for server, detector in self.detectors.items():
                phi = detector.phi(now)
                gauge("distcheck.detector.phi", min(phi, PHI_CAP), detector=self.name, peer=server)
                gauge("distcheck.detector.suspected", int(phi >= THRESHOLD), detector=self.name, peer=server)
        self.set_timer(Tick(), TICK)

    def _call(self, server: str, now: float) -> None:
        try:
            permit = self.breakers[server].acquire()
        except CircuitOpenError:
            self.stats.calls["rejected"] += 1
            return
        self.next_id += 1
        floor = self.acked[server]
        if self.next_id % 2:
            value = floor + 1
            self.calls[server] = _Call(self.next_id, permit, now + CALL_TIMEOUT, value, floor)
            self.send(server, Put(self.next_id, self.name, value))
        else:
            self.calls[server] = _Call(self.next_id, permit, now + CALL_TIMEOUT, None, floor)
            self.send(server, Get(self.next_id, self.name))

    def on_message(self, src: str, msg: Any) -> None:
        if isinstance(msg, Heartbeat):
            self.detectors[src].heartbeat()
            return
        call = self.calls.get(src)
        if call is None or call.id != msg.id:
            return  # the answer to a call given up on
        del self.calls[src]
        call.permit.success()
        self.stats.calls["ok"] += 1
        if isinstance(msg, Ack) and call.put is not None:
            self.acked[src] = max(self.acked[src], call.put)
        elif isinstance(msg, Value) and (msg.value or 0) < call.floor:
            self.stats.stale_reads.append(
                f"{self.name} read {msg.value} from {src} after {call.floor} was acknowledged"
            )


# ------------------------------------------------------------------ the metrics


@dataclass
class Reading:
    """What one scrape of the metrics endpoint says, at ``at`` seconds into the run."""

    at: float
    suspected: dict[tuple[str, str], float]  # (detector, peer) -> 0 or 1
    phi: dict[tuple[str, str], float]
    state: dict[str, float]  # breaker -> 0 closed, 1 half-open, 2 open
    transitions: dict[tuple[str, str], float]  # (breaker, to) -> count
    faults: dict[str, float]  # kind -> count


_LABELS = {
    "distcheck_detector_suspected": ("detector", "peer"),
    "distcheck_detector_phi": ("detector", "peer"),
    "distcheck_breaker_state": ("breaker",),
    "distcheck_breaker_transitions_total": ("breaker", "to"),
    "distcheck_faults_injected_total": ("kind",),
}


def read_metrics(at: float, text: str) -> Reading:
    """Parse a scrape (Prometheus's text format); a sample without the metric's labels
    is a counter's zero, shown before its first event."""
    r = Reading(at, {}, {}, {}, {}, {})
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            wanted = _LABELS.get(sample.name)
            if wanted is None or any(not labels.get(key) for key in wanted):
                continue  # another metric, or a counter's zero
            if sample.name == "distcheck_detector_suspected":
                r.suspected[(labels["detector"], labels["peer"])] = sample.value
            elif sample.name == "distcheck_detector_phi":
                r.phi[(labels["detector"], labels["peer"])] = sample.value
            elif sample.name == "distcheck_breaker_state":
                r.state[labels["breaker"]] = sample.value
            elif sample.name == "distcheck_breaker_transitions_total":
                r.transitions[(labels["breaker"], labels["to"])] = sample.value
            elif sample.name == "distcheck_faults_injected_total":
                r.faults[labels["kind"]] = sample.value
    return r


class Scraper:
    """Fetches the metrics endpoint every ``every`` seconds on a thread of its own;
    ``scrapes``: (seconds since ``origin``, the text served)."""

    def __init__(self, url: str, origin: float, every: float) -> None:
        self.url, self.origin, self.every = url, origin, every
        self.scrapes: list[tuple[float, str]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)

    def scrape(self) -> None:
        at = time.monotonic() - self.origin
        try:
            with urllib.request.urlopen(self.url, timeout=5) as response:
                self.scrapes.append((at, response.read().decode()))
        except OSError as exc:
            self.failures.append(f"{at:.1f} s: {exc}")

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.scrape()

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.scrape()  # the last word: the counters at the end


# ------------------------------------------------------------------ the run


@dataclass
class ChaosRun:
    """What a run did: the schedule (times since the run's start, warm-up included),
    the nemesis's events, every scrape, and what the clients and runtimes noted."""

    seconds: float
    seed: int
    schedule: tuple[Fault, ...]
    events: list[Event]
    scrapes: list[tuple[float, str]]
    clients: dict[str, ClientStats]
    errors: list[str]
    dropped: int
    scrape_failures: list[str]


def schedule_for(seconds: float, seed: int) -> tuple[Fault, ...]:
    """The nemesis's schedule for a run of ``seconds``, its times from the nemesis's start."""
    return plan(seed, seconds - WARMUP, TARGETS, lengths=LENGTHS, amounts=AMOUNTS, settle=SETTLE, concurrent=2)


def run(seconds: float, seed: int, directory: Path, *, scrape_every: float = 0.2) -> ChaosRun:
    """Run the service under the nemesis for ``seconds`` and scrape its metrics."""
    schedule = schedule_for(seconds, seed)
    nemesis = Nemesis(schedule)
    servers = {s: KvServer(s) for s in SERVERS}
    clients = {c: ChaosClient(c) for c in CLIENTS}
    nodes = nemesis.wrap({**{s: a.main for s, a in servers.items()}, **{c: a.main for c, a in clients.items()}})
    # One runtime per node, as one process per node: every message crosses TCP on loopback.
    runtimes = [
        FreeRuntime({name: main}, directory, max_restarts=len(schedule) + 1, restart_delay=0.05, fsync=False)
        for name, main in nodes.items()
    ]
    connect(runtimes)
    nemesis.attach(*runtimes)
    telemetry = OpenTelemetry("chaos", metrics_port=0)
    previous = install(telemetry)
    try:
        origin = time.monotonic()
        with Scraper(str(telemetry.metrics_url), origin, scrape_every) as scraper:
            for rt in runtimes:
                rt.start()
            try:
                time.sleep(WARMUP)
                with nemesis:
                    nemesis.wait(seconds - WARMUP + 5.0)
                    time.sleep(max(0.0, origin + seconds - time.monotonic()))
            finally:
                for rt in runtimes:
                    rt.stop()
    finally:
        install(previous)
        telemetry.close()
    shift = (nemesis.origin or origin) - origin  # nemesis times -> run times
    return ChaosRun(
        seconds=seconds,
        seed=seed,
        schedule=tuple(attrs.evolve(f, start=round(f.start + shift, 3)) for f in schedule),
        events=[attrs.evolve(e, at=e.at + shift) for e in nemesis.events],
        scrapes=scraper.scrapes,
        clients={c: a.stats for c, a in clients.items()},
        errors=[e for rt in runtimes for e in rt.errors],
        dropped=sum(nemesis.dropped.values()),
        scrape_failures=scraper.failures,
    )


# ------------------------------------------------------------------ the verdict


@dataclass
class Verdict:
    ok: bool
    lines: list[str]


def faulted(schedule: Sequence[Fault], node: str, at: float, recovery: float = RECOVERY) -> bool:
    """Whether ``node`` is under a fault that cuts it off or slows it at ``at`` (or was,
    ``recovery`` seconds before)."""
    return any(
        f.kind in ("crash", "partition", "slow") and node in f.nodes and f.start <= at <= f.end + recovery
        for f in schedule
    )


def judge(result: ChaosRun) -> Verdict:
    """The verdict, from the scraped text (and the clients' read check)."""
    readings = [read_metrics(at, text) for at, text in result.scrapes]
    lines: list[str] = []
    ok = True
    if not readings:
        return Verdict(False, ["no scrape succeeded: " + "; ".join(result.scrape_failures[:3])])
    last = readings[-1]
    opened = sum(v for (_, to), v in last.transitions.items() if to == "open")
    closed = sum(v for (_, to), v in last.transitions.items() if to == "closed")
    ok &= opened > 0 and closed > 0
    lines.append(f"breakers opened {opened:g} times and closed {closed:g} times")
    still = sorted(b for b, s in last.state.items() if s != 0)
    lines.append(f"at the end {len(last.state) - len(still)} of the {len(last.state)} breakers that opened are closed")
    for fault in (f for f in result.schedule if f.kind == "slow"):
        during = [r for r in readings if fault.start <= r.at <= fault.end]
        (peer,) = fault.nodes
        seen = {c: sum(r.suspected.get((c, peer), 0) == 1 for r in during) for c in CLIENTS}
        ok &= any(seen.values())
        per = ", ".join(f"{c} in {n}" for c, n in seen.items())
        lines.append(f"slow {peer} ({fault.start:.1f}-{fault.end:.1f} s) suspected in {len(during)} scrapes: {per}")
    healthy = [
        r.suspected[(c, s)]
        for r in readings
        for c in CLIENTS
        for s in SERVERS
        if (c, s) in r.suspected and not faulted(result.schedule, s, r.at)
    ]
    share = sum(v == 1 for v in healthy) / len(healthy) if healthy else 1.0
    ok &= share <= 0.1
    lines.append(f"healthy peers suspected in {share:.1%} of {len(healthy)} readings")
    stale = [s for stats in result.clients.values() for s in stats.stale_reads]
    ok &= not stale and not result.errors
    calls: Counter[str] = Counter()
    for stats in result.clients.values():
        calls.update(stats.calls)
    lines.append(
        f"calls: {calls['ok']} answered, {calls['failed']} failed, {calls['rejected']} rejected by a breaker; "
        f"{len(stale)} stale reads; {result.dropped} messages dropped by partitions"
    )
    lines += stale[:5] + result.errors[:5]
    return Verdict(bool(ok), lines)


def timeline(result: ChaosRun) -> list[tuple[float, str]]:
    """Each fault injected and healed, and each change in what the scrapes show."""
    out = [
        (e.at, f"nemesis: {e.fault.describe()}" if e.what == "inject" else f"healed: {e.fault.describe()}")
        for e in result.events
    ]
    shown: tuple[tuple[tuple[str, str], ...], tuple[str, ...]] | None = None
    modes = {1.0: "half-open", 2.0: "open"}
    for at, text in result.scrapes:
        r = read_metrics(at, text)
        suspected = tuple(sorted(pair for pair, v in r.suspected.items() if v == 1))
        breakers = tuple(f"{b} {modes[v]}" for b, v in sorted(r.state.items()) if v in modes)
        if (suspected, breakers) != shown:
            shown = (suspected, breakers)
            who = ", ".join(f"{c}→{s} (phi {r.phi.get((c, s), 0.0):.0f})" for c, s in suspected) or "none"
            out.append((at, f"metrics: suspected {who}; breakers: {', '.join(breakers) or 'all closed'}"))
    return sorted(out, key=lambda x: x[0])


# ------------------------------------------------------------------ the command


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not MIN_SECONDS <= value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{text} is outside {MIN_SECONDS:g}-{MAX_SECONDS:g} seconds")
    return value


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> int:
    parser = _Parser(prog="examples/chaos.py", description="A key-value service under a nemesis, through its metrics.")
    parser.add_argument("--seconds", type=_seconds, default=20.0, help="how long the run lasts (5-600; default 20)")
    parser.add_argument("--seed", type=int, default=1, help="the nemesis's seed (default 1)")
    parser.add_argument("--directory", type=Path, help="where the servers keep their logs (default: a temporary one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.directory if args.directory is not None else Path(scratch)
        result = run(args.seconds, args.seed, directory)
    out(f"chaos: {args.seconds:g} s, seed {args.seed}, {len(result.scrapes)} scrapes of the metrics endpoint")
    for at, line in timeline(result):
        out(f"{at:6.2f} s  {line}")
    verdict = judge(result)
    for line in verdict.lines:
        out(f"  {line}")
    faults = read_metrics(0.0, result.scrapes[-1][1]).faults if result.scrapes else {}
    injected = ", ".join(f"{k} {v:g}" for k, v in sorted(faults.items())) or "none"
    out(f"verdict: {'ok' if verdict.ok else 'FAILED'} (faults injected: {injected})")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
