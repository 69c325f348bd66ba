"""Chaos (examples/chaos.py): a key-value service on the free runtime under the
nemesis, judged from its Prometheus endpoint as scraped during the run.

What happened, not how fast: breakers opened and closed again, the slow server was
suspected during its slow period and the healthy ones mostly were not, every fault
scheduled was injected (and counted) and healed, no acknowledged write was lost.
The faults' sizes leave wide margins: a slow server holds each message and timer
over a second, for three seconds or more, so the heartbeats it sends stop for far
longer than the detectors' threshold needs (about 0.7 s) even on a loaded machine;
the breakers' open timeout (1 s) is half the quiet time at the end (2 s)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from distcheck.impl.runtime.nemesis import Fault

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

import chaos  # examples/chaos.py, on the path above

ROOT = Path(__file__).resolve().parents[2]

SECONDS = 8.0


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of metric ``name`` in a scrape, with their labels (a counter's zero,
    which carries empty labels, left out)."""
    out = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if not k.startswith("otel_")}
            if sample.name == name and all(labels.values()):
                out.append((labels, sample.value))
    return out


# seed 1: a crash, a slow server and a partition; seed 2: a slow server, a crash and
# a client's clock jumping back while the server is slow
@pytest.mark.parametrize("seed", [1, 2])
def test_under_the_nemesis_breakers_open_and_close_and_the_slow_server_is_suspected(tmp_path: Path, seed: int) -> None:
    result = chaos.run(SECONDS, seed, tmp_path)
    assert result.errors == [] and result.scrapes, result.scrape_failures
    slow = [f for f in result.schedule if f.kind == "slow"]
    assert slow, "every schedule of the example has a slow server"
    scrapes = result.scrapes
    last = scrapes[-1][1]

    # Breakers opened and closed again: the counters at the end.
    transitions = Counter[str]()
    for labels, value in samples(last, "distcheck_breaker_transitions_total"):
        transitions[labels["to"]] += int(value)
    assert transitions["open"] > 0 and transitions["closed"] > 0, transitions
    breakers = {labels["breaker"] for labels, _ in samples(last, "distcheck_breaker_state")}
    assert breakers <= {f"{c}->{s}" for c in chaos.CLIENTS for s in chaos.SERVERS} and breakers

    # Every fault scheduled was injected, counted by kind, and healed.
    injected = {labels["kind"]: value for labels, value in samples(last, "distcheck_faults_injected_total")}
    assert injected == dict(Counter(f.kind for f in result.schedule))

    def key(f: Fault) -> tuple[float, str, tuple[str, ...]]:
        return (f.length, f.kind, f.nodes)

    injects = sorted(key(e.fault) for e in result.events if e.what == "inject")
    assert injects == sorted(key(e.fault) for e in result.events if e.what == "heal")
    assert injects == sorted(key(f) for f in result.schedule)

    # The slow server was suspected by some client during its slow period...
    def suspected(text: str) -> dict[tuple[str, str], float]:
        found = samples(text, "distcheck_detector_suspected")
        return {(labels["detector"], labels["peer"]): value for labels, value in found}

    for fault in slow:
        (peer,) = fault.nodes
        during = [suspected(text) for at, text in scrapes if fault.start <= at <= fault.end]
        assert any(r.get((c, peer)) == 1.0 for r in during for c in chaos.CLIENTS), (fault, during)
    # ...and a server with no fault on it (nor one in the second before) was not,
    # most of the time.
    healthy = [
        value
        for at, text in scrapes
        for (c, s), value in suspected(text).items()
        if not chaos.faulted(result.schedule, s, at)
    ]
    assert healthy and sum(healthy) <= 0.2 * len(healthy), (sum(healthy), len(healthy))

    # No read went back behind an acknowledged write, crashes included.
    assert all(not stats.stale_reads for stats in result.clients.values())
    assert sum(stats.calls["ok"] for stats in result.clients.values()) > 0
    # The example's own verdict and timeline agree.
    lines = [line for _, line in chaos.timeline(result)]
    assert any(line.startswith("nemesis: slow") for line in lines)
    assert any("suspected c" in line for line in lines)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--seconds", "2"], "outside 5-600 seconds"),
        (["--seconds", "soon"], "not a number"),
        (["--seed", "x"], "invalid int value"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args: list[str], says: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "chaos.py"), *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
