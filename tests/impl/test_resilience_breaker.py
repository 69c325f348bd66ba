"""impl/resilience's circuit breaker: its modes on a fake clock, generations (a
stale report changes nothing), listeners, threads hammering it (never more than
``probes`` probes, nothing admitted while open), the SQLite store shared by two
processes and kept across a restart, and one clear ValueError per bad argument.

Nothing here measures time: the breaker's clock is a fake the tests set.
(Conformance to spec/circuit_breaker.py: test_resilience_conformance.py.)
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from distcheck.impl.resilience import (
    BreakerRecord,
    CircuitBreaker,
    CircuitOpenError,
    MemoryStore,
    SQLiteStore,
    StateChange,
)


class SetClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def breaker(clock: SetClock, **kwargs: Any) -> CircuitBreaker:
    kwargs.setdefault("window", 4)
    kwargs.setdefault("failure_rate", 0.5)
    kwargs.setdefault("open_timeout", 10.0)
    return CircuitBreaker("svc", clock=clock, **kwargs)


def fail(b: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        b.acquire().failure()


def test_it_opens_when_the_windows_failure_rate_is_reached_with_enough_calls() -> None:
    b = breaker(SetClock(), min_calls=4)
    fail(b, 2)
    b.acquire().success()
    assert b.state == "closed"  # 2 of 3 failed, but fewer than min_calls kept
    b.acquire().success()
    assert b.state == "open" and b.record.opened_at == 0.0  # 2 of 4: the rate is reached


def test_the_window_slides_over_the_last_calls() -> None:
    b = breaker(SetClock(), window=3, failure_rate=0.6, min_calls=3)
    for ok in (False, True, True, False, True):  # no 3 consecutive calls hold 2 failures
        permit = b.acquire()
        permit.success() if ok else permit.failure()
    assert b.state == "closed" and b.window() == (False, True, False)  # the last three, oldest first
    b.acquire().failure()  # the window is now (True, False, True): 2 of 3 >= 0.6
    assert b.state == "open"


def test_open_rejects_until_the_timeout_then_one_probe_decides() -> None:
    clock = SetClock()
    b = breaker(clock, min_calls=2)
    fail(b, 2)
    called = []
    guarded = b(lambda: called.append(1))
    clock.now = 9.5
    with pytest.raises(CircuitOpenError) as caught:
        guarded()
    assert called == [] and caught.value.mode == "open" and caught.value.retry_after == pytest.approx(0.5)
    assert str(caught.value) == "circuit breaker 'svc' rejected the call: open for another 0.500 s"
    clock.now = 10.0
    probe = b.acquire()
    assert (probe.kind, b.state) == ("probe", "half_open")
    with pytest.raises(CircuitOpenError, match="half-open with all its probes in flight"):
        b.acquire()
    probe.failure()  # the probe failed: open again, the timeout starts over
    assert b.state == "open" and b.record.opened_at == 10.0
    clock.now = 19.0
    with pytest.raises(CircuitOpenError):
        b.acquire()
    clock.now = 20.0
    b.acquire().success()
    assert b.state == "closed" and b.window() == ()


def test_half_open_admits_at_most_probes_probes_and_a_finished_probe_frees_its_place() -> None:
    clock = SetClock()
    b = breaker(clock, min_calls=1, probes=3)
    fail(b)
    clock.now = 10.0
    permits = [b.acquire() for _ in range(3)]
    assert [p.kind for p in permits] == ["probe"] * 3
    with pytest.raises(CircuitOpenError):
        b.acquire()
    permits[0].success()  # closes: the others are now stale
    assert b.state == "closed"
    permits[1].failure()
    permits[2].failure()
    assert b.state == "closed" and b.window() == ()  # stale failures are not counted


def test_a_stale_success_from_before_the_breaker_opened_does_not_close_it() -> None:
    clock = SetClock()
    b = breaker(clock, min_calls=2)
    slow = b.acquire()  # admitted while closed
    fail(b, 2)
    assert b.state == "open"
    slow.success()  # the spec's racing_reset variant would close here
    assert b.state == "open"
    with pytest.raises(CircuitOpenError):
        b.acquire()


def test_listeners_hear_every_change_with_its_cause() -> None:
    clock = SetClock()
    heard: list[StateChange] = []
    b = breaker(clock, min_calls=1, listeners=[heard.append])
    fail(b)
    clock.now = 10.0
    b.acquire().failure()
    clock.now = 20.0
    b.acquire().success()
    assert [(c.old, c.new, c.cause, c.generation) for c in heard] == [
        ("closed", "open", "window", 1),
        ("open", "half_open", "timeout", 2),
        ("half_open", "open", "failure", 3),
        ("open", "half_open", "timeout", 4),
        ("half_open", "closed", "success", 5),
    ]


def test_the_with_form_reports_outcomes_and_lets_errors_through() -> None:
    b = breaker(SetClock(), min_calls=2, failure_on=lambda e: not isinstance(e, KeyError))
    with pytest.raises(KeyError):
        with b:
            raise KeyError("a miss is an answer")  # not a failure
    with b:
        pass
    assert b.window() == (False, False)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            with b:
                raise ConnectionError
    assert b.state == "open"


# --------------------------------------------------------------- threads

THREADS = 8


def hammer(work: Any) -> None:
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            work()
        except BaseException as exc:  # surfaced below, with its thread's traceback gone
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_threads_get_nothing_through_an_open_breaker_and_at_most_k_probes_after_it() -> None:
    clock = SetClock()
    b = breaker(clock, min_calls=1, probes=2)
    fail(b)
    admitted: list[Any] = []
    rejected = []
    guard = threading.Lock()

    def try_many() -> None:
        for _ in range(200):
            try:
                permit = b.acquire()
            except CircuitOpenError:
                rejected.append(1)
            else:
                with guard:
                    admitted.append(permit)

    hammer(try_many)  # before the timeout
    assert admitted == [] and len(rejected) == THREADS * 200
    clock.now = 10.0
    hammer(try_many)  # after it: the probes are never reported, so no place frees up
    assert [p.kind for p in admitted] == ["probe", "probe"]


def test_threads_reporting_at_random_never_have_more_than_k_probes_in_flight() -> None:
    import random

    clock = SetClock()
    k = 2
    b = breaker(clock, window=3, min_calls=2, probes=k, open_timeout=1.0)
    in_flight: dict[int, int] = {}
    most = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal most
        rng = random.Random(threading.get_ident())
        for _ in range(400):
            try:
                permit = b.acquire()
            except CircuitOpenError:
                with guard:
                    clock.now += 0.05  # time passes while callers are turned away
                continue
            if permit.kind == "probe":
                with guard:
                    in_flight[permit.generation] = in_flight.get(permit.generation, 0) + 1
                    most = max(most, in_flight[permit.generation])
                with guard:
                    in_flight[permit.generation] -= 1
            b.report(permit, success=rng.random() < 0.4)

    hammer(work)
    assert 1 <= most <= k
    assert b.record.generation > 4  # it went round open/half-open/closed several times


# --------------------------------------------------------------- the store


def test_a_restart_on_the_sqlite_store_keeps_an_open_breaker_open(tmp_path: Path) -> None:
    clock = SetClock(100.0)
    store = SQLiteStore(tmp_path / "breakers.db")
    before = breaker(clock, min_calls=1, store=store)
    fail(before)
    store.close()
    reopened = SQLiteStore(tmp_path / "breakers.db")
    after = breaker(clock, min_calls=1, store=reopened)  # the process restarted
    assert after.record == BreakerRecord("open", 100.0, 1)
    clock.now = 109.0
    with pytest.raises(CircuitOpenError):
        after.acquire()
    clock.now = 110.0
    after.acquire().success()
    assert after.state == "closed"
    # A memory store forgets: the spec's restart_closes variant, which is why a durable store exists.
    assert breaker(clock, store=MemoryStore()).state == "closed"
    reopened.close()


def test_two_breakers_on_one_store_share_the_mode_and_only_one_wins_a_change() -> None:
    clock = SetClock()
    store = MemoryStore()
    heard: list[StateChange] = []
    a = breaker(clock, min_calls=1, store=store, listeners=[heard.append])
    b = breaker(clock, min_calls=1, store=store, listeners=[heard.append])
    fail(a)
    with pytest.raises(CircuitOpenError):
        b.acquire()  # b reads the store before deciding
    clock.now = 10.0
    pa, pb = a.acquire(), b.acquire()
    assert (pa.kind, pb.kind, pa.generation, pb.generation) == ("probe", "probe", 2, 2)
    assert [c.cause for c in heard if c.new == "half_open"] == ["timeout", "store"]  # one transition, one adopter


def open_it(path: str) -> None:
    """In another process: open the breaker on the shared store at time 50."""
    b = CircuitBreaker(
        "svc", window=4, failure_rate=0.5, min_calls=1, open_timeout=10.0, clock=lambda: 50.0, store=SQLiteStore(path)
    )
    b.acquire().failure()


def race_to_half_open(path: str, start: Any, causes: Any) -> None:
    """In another process: after the timeout, take a probe; say how the breaker got half-open."""
    heard: list[StateChange] = []
    b = CircuitBreaker(
        "svc",
        window=4,
        failure_rate=0.5,
        min_calls=1,
        open_timeout=10.0,
        clock=lambda: 60.0,
        store=SQLiteStore(path),
        listeners=[heard.append],
    )
    start.wait()
    permit = b.acquire()
    causes.put((permit.kind, permit.generation, [c.cause for c in heard]))


def bump(path: str, times: int, start: Any) -> None:
    """In another process: ``times`` compare-and-set increments of the generation."""
    store = SQLiteStore(path)
    start.wait()
    for _ in range(times):
        while True:
            current = store.load("counter") or BreakerRecord("closed", None, 0)
            won, _ = store.replace("counter", current.generation, BreakerRecord("closed", None, current.generation + 1))
            if won:
                break


def test_processes_share_a_sqlite_breaker_and_never_lose_a_change(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    SQLiteStore(path).close()  # create the schema before the processes race
    spawn = multiprocessing.get_context("spawn")
    opener = spawn.Process(target=open_it, args=(path,))
    opener.start()
    opener.join(60)
    assert opener.exitcode == 0
    here = breaker(SetClock(55.0), min_calls=1, store=SQLiteStore(path))
    with pytest.raises(CircuitOpenError):
        here.acquire()  # opened by the other process
    start, causes = spawn.Event(), spawn.Queue()
    racers = [spawn.Process(target=race_to_half_open, args=(path, start, causes)) for _ in range(2)]
    counters = [spawn.Process(target=bump, args=(path, 25, start)) for _ in range(2)]
    for p in racers + counters:
        p.start()
    start.set()
    got = sorted(causes.get(timeout=60) for _ in racers)
    for p in racers + counters:
        p.join(60)
        assert p.exitcode == 0
    # Each process admits its own probe, in the one half-open generation that one of them created.
    assert [(kind, generation) for kind, generation, _ in got] == [("probe", 2), ("probe", 2)]
    # Exactly one of them made the change; the other adopted it from the store (or,
    # started late, found it there when it was built).
    heard = [cause for _, _, causes in got for cause in causes]
    assert heard.count("timeout") == 1 and set(heard) <= {"timeout", "store"}
    assert SQLiteStore(path).load("counter") == BreakerRecord("closed", None, 50)  # no increment lost


def test_a_malformed_stored_record_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO breakers VALUES ('svc', 'ajar', NULL, 3)")
    with pytest.raises(ValueError, match="the record of breaker 'svc' is malformed") as caught:
        breaker(SetClock(), store=SQLiteStore(path))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"window": 0}, "window must be an integer of at least 1"),
        ({"probes": 1.5}, "probes must be an integer"),
        ({"min_calls": 5}, r"min_calls \(5\) must be at most window \(4\)"),
        ({"failure_rate": 0}, r"failure_rate must be a number in \(0, 1\]"),
        ({"failure_rate": 1.5}, "failure_rate must be a number in"),
        ({"open_timeout": -1}, "open_timeout must be a finite number of at least 0"),
        ({"open_timeout": float("inf")}, "open_timeout must be a finite number"),
        ({"failure_on": "Exception"}, "failure_on must be an exception type"),
    ],
)
def test_each_bad_argument_is_one_clear_value_error(kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says) as caught:
        breaker(SetClock(), **kwargs)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        CircuitBreaker("")
