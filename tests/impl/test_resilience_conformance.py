"""Conformance of impl/resilience to its specs: the library's retry loop and circuit
breaker, driven through random runs, record their steps in the vocabulary of
spec/retry.py and spec/circuit_breaker.py, and ``validate_events`` accepts each
trace as a behaviour of the spec at the spec's own parameter sizes; deliberately
wrong versions of the library are rejected at the step where they break a rule.

Retry: a fake integer clock (one tick = one second) and a fake server.  Each
attempt's answer takes 1..attempt_timeout ticks or never comes; the server
processes a request (``Process``: it applies the call, at most once under a key)
or fails it (``Reject``), on time, late (after the client gave up on it) or
never.  The library draws its sleeps from an ``rng`` that returns whole ticks,
so every sleep is one of the spec's ``Retry(sleep)`` parameters.  Its events
(``on_event``) give the client's steps: ``Attempt``, ``Succeed``/``Fail``/
``TimeOut``, ``Retry(sleep)``, ``GiveUp(reason)``; the fake clock's advances give
the ``Tick`` steps.  Along the way the spec's invariants are checked on the
states the trace leads to (WithinDeadline, WithinBudget, RetriesAreSafe,
SleepInRange).

Breaker: callers c1..c3 on one breaker with a fake clock; a scripted random
interleaving of ticks, calls (``Call`` when the library admits it, ``Reject`` when
it raises ``CircuitOpenError``), reports of either outcome, and a restart (a new
breaker on the same store, the calls in flight forgotten).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import pytest

from distcheck.checks.conformance.validate import validate_events
from distcheck.impl.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    MemoryStore,
    Permit,
    RetryError,
    RetryEvent,
    Retrying,
)
from distcheck.impl.resilience.deadline import Deadline
from distcheck.spec import circuit_breaker as cb
from distcheck.spec import retry as rs
from distcheck.spec.codec import to_json

# ====================================================================== retry


class WholeTicks:
    """The library's random source, drawing whole ticks: ``uniform(a, b)`` is an
    integer in [a, b] (the spec's ranges are of integers)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def uniform(self, a: float, b: float) -> float:
        return float(self.rng.randint(math.ceil(a), math.floor(b)))


class RetryRun:
    """One call through the library's retry loop against a fake server, recorded
    as spec/retry.py steps."""

    def __init__(self, config: rs.Config, seed: int, policy: type[Retrying] = Retrying) -> None:
        self.config = config
        self.rng = random.Random(seed)
        self.now = 0
        self.events: list[dict[str, Any]] = []
        self.unprocessed: list[int] = []  # requests the server has not processed yet
        self.keys_applied: set[str] = set()
        self.applied = 0
        c = config
        self.policy = policy(
            base=c.base,
            cap=c.cap,
            jitter=c.jitter,
            max_attempts=c.max_attempts,
            deadline=Deadline(c.deadline, self.clock),  # the call starts at 0
            attempt_timeout=c.attempt_timeout,
            idempotent=c.idempotent,
            idempotency_key=True if c.idempotency_key else None,
            clock=self.clock,
            sleep=self.sleep,
            rng=WholeTicks(self.rng),
            on_event=self.on_event,
        )

    def clock(self) -> float:
        return float(self.now)

    def record(self, action: Any) -> None:
        self.events.append({"step": len(self.events) + 1, "actor": action.actor, "action": to_json(action)})

    def tick(self, ticks: int = 1) -> None:
        for _ in range(ticks):
            self.now += 1
            self.record(rs.Tick())

    def sleep(self, seconds: float) -> None:
        assert seconds == int(seconds), seconds
        self.tick(int(seconds))

    def on_event(self, event: RetryEvent) -> None:
        if event.kind == "attempt":
            self.record(rs.Attempt())
        elif event.kind == "success":
            self.record(rs.Succeed())
        elif event.kind == "failure":
            self.record(rs.TimeOut() if isinstance(event.exception, TimeoutError) else rs.Fail())
        elif event.kind == "retry":
            assert event.sleep is not None and event.sleep == int(event.sleep)
            self.record(rs.Retry(int(event.sleep)))
        else:
            assert event.reason is not None
            self.record(rs.GiveUp(event.reason))

    def process(self, number: int, key: str | None) -> None:
        self.unprocessed.remove(number)
        if key is None or key not in self.keys_applied:
            self.applied += 1
        if key is not None:
            self.keys_applied.add(key)
        self.record(rs.Process(number))

    def server(self, *, number: int, key: str | None) -> str:
        """The attempt ``number``: the server's steps, the ticks it takes, its answer."""
        self.unprocessed.append(number)
        for late in list(self.unprocessed[:-1]):  # requests the client gave up on
            if self.rng.random() < 0.3:
                self.process(late, key)
        timeout = self.config.attempt_timeout
        fate = self.rng.choice(["ok", "error", "lost", "late"])
        if fate in ("ok", "error"):
            takes = self.rng.randint(1, timeout)
            at = self.rng.randint(0, takes)  # when the server handles it, before the answer is taken
            self.tick(at)
            if fate == "ok":
                self.process(number, key)
            else:
                self.unprocessed.remove(number)
                self.record(rs.Reject(number))
            self.tick(takes - at)
            if fate == "ok":
                return "done"
            raise ConnectionError("503")
        if fate == "lost":  # applied, but the answer never arrives
            at = self.rng.randint(0, timeout)
            self.tick(at)
            self.process(number, key)
            self.tick(timeout - at)
        else:  # still unprocessed when the attempt times out: maybe later, maybe never
            self.tick(timeout)
        raise TimeoutError

    def run(self) -> str:
        """The call's outcome: succeeded, or the reason it gave up."""
        try:
            for attempt in self.policy:
                with attempt:
                    self.server(number=attempt.number, key=attempt.idempotency_key)
        except RetryError as error:
            return error.reason
        return "succeeded"


def retry_spec(**params: Any) -> rs.RetryBackoff:
    return rs.RetryBackoff(rs.Config(**params))


def check_invariants(spec: rs.RetryBackoff, events: list[dict[str, Any]]) -> None:
    """Follow the trace on the spec and check its invariants on every state."""
    state = next(iter(spec.init_states()))
    for event in events:
        following = spec.next_state(state, spec.action_from_json(event["action"]))
        assert following is not None
        state = following
        for invariant in spec.invariants():
            assert invariant.holds(state), (invariant.name, event)


RETRY_SIZES = [
    {},  # the spec's defaults: full jitter, a key, deadline 8, budget 4
    {"jitter": "equal"},
    {"jitter": "decorrelated"},
    {"jitter": "decorrelated", "base": 2, "cap": 4, "deadline": 12, "max_attempts": 5},
    {"idempotent": True, "idempotency_key": False},
    {"idempotency_key": False},  # not idempotent, no key: never retried
    {"cap": 4, "deadline": 12, "max_attempts": 5},
]


@pytest.mark.parametrize("params", RETRY_SIZES, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "defaults")
def test_the_retry_loops_traces_are_behaviours_of_the_spec(params: dict[str, Any]) -> None:
    spec = retry_spec(**params)
    outcomes: set[str] = set()
    for seed in range(60):
        run = RetryRun(spec.config, seed)
        outcomes.add(run.run())
        result = validate_events(spec, run.events)
        assert result.ok, (seed, result.message)
        check_invariants(spec, run.events)
        assert run.now <= spec.config.deadline
    if params.get("idempotency_key") is False and not params.get("idempotent"):
        assert outcomes <= {"succeeded", "unsafe"} and "unsafe" in outcomes
    elif not params:  # at the defaults the runs reach the spec's three ends
        assert outcomes == {"succeeded", "budget", "deadline"}, outcomes
    else:
        assert "succeeded" in outcomes and outcomes & {"budget", "deadline"}, outcomes


class CheckedBeforeSleepOnly(Retrying):
    """The spec's deadline_checked_before_sleep_only variant: a retry only has to
    wake by the deadline (tenacity's stop_before_delay), not to finish its attempt."""

    def _latest_sleep(self, limit: Deadline) -> float:
        return limit.remaining()


class NoBudget(Retrying):
    """The spec's unbounded_retries variant: the budget is never consulted."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_attempts = 10**9


@pytest.mark.parametrize(
    ("wrong", "rule", "params"),
    [
        (CheckedBeforeSleepOnly, "Retry", {}),
        (NoBudget, "Attempt", {"deadline": 20, "max_attempts": 2}),
    ],
)
def test_a_wrong_retry_loop_is_rejected_at_the_step_that_breaks_the_rule(
    wrong: type[Retrying], rule: str, params: dict[str, Any]
) -> None:
    spec = retry_spec(**params)
    rejected = 0
    for seed in range(60):
        run = RetryRun(spec.config, seed, policy=wrong)
        run.run()
        result = validate_events(spec, run.events)
        if result.ok:
            continue  # this run never needed the rule
        rejected += 1
        assert result.mismatch is not None
        step = run.events[result.mismatch.step - 1]
        # The first unexplained step is the retry the spec forbids (a sleep after
        # which the attempt cannot end by the deadline: at the default size the spec
        # could only give up there), or, with no budget, a retry or attempt past it.
        assert step["action"]["type"] in (rule, "Retry"), step
    assert rejected >= 10, f"only {rejected} of 60 runs showed the mistake"


def test_the_overshoot_of_checking_the_deadline_only_before_sleeping_is_real() -> None:
    """What the wrong loop's rejected traces mean on the clock: the call ran past its deadline."""
    spec = retry_spec()
    overshoots = [RetryRun(spec.config, seed, policy=CheckedBeforeSleepOnly) for seed in range(60)]
    for run in overshoots:
        run.run()
    assert any(run.now > spec.config.deadline for run in overshoots)


# ==================================================================== breaker


class BreakerRun:
    """A random interleaving of callers on one library breaker, recorded as
    spec/circuit_breaker.py steps."""

    def __init__(
        self, config: cb.Config, seed: int, build: Callable[..., CircuitBreaker] = CircuitBreaker, steps: int = 40
    ) -> None:
        self.config = config
        self.rng = random.Random(seed)
        self.now = 0
        self.store = MemoryStore()  # durable for the run: a restart reloads from it
        self.build = build
        self.breaker = self.new_breaker()
        self.callers = [f"c{i}" for i in range(1, config.callers + 1)]
        self.permits: dict[str, Permit] = {}
        self.restarts = 0
        self.steps = steps
        self.events: list[dict[str, Any]] = []

    def new_breaker(self) -> CircuitBreaker:
        c = self.config
        # The spec opens at `threshold` failures among the last `window` outcomes,
        # however few are kept; with failure_rate = threshold / window and
        # min_calls = threshold that is the same rule whenever threshold is window
        # or 1, the sizes used here.
        return self.build(
            "svc",
            window=c.window,
            failure_rate=c.threshold / c.window,
            min_calls=c.threshold,
            open_timeout=float(c.open_timeout),
            probes=c.probes,
            clock=lambda: float(self.now),
            store=self.store,
        )

    def record(self, action: Any) -> None:
        self.events.append({"step": len(self.events) + 1, "actor": action.actor, "action": to_json(action)})

    def run(self) -> None:
        for _ in range(self.steps):
            options = ["tick"] if self.now < self.config.max_time else []
            options += [f"call {c}" for c in self.callers if c not in self.permits] * 2
            options += [f"report {c}" for c in self.permits] * 2
            if self.restarts < self.config.restarts:
                options.append("restart")
            choice = self.rng.choice(options)
            if choice == "tick":
                self.now += 1
                self.record(cb.Tick())
            elif choice == "restart":
                self.restarts += 1
                self.permits.clear()
                self.breaker = self.new_breaker()
                self.record(cb.Restart())
            elif choice.startswith("call"):
                caller = choice.split()[1]
                try:
                    self.permits[caller] = self.breaker.acquire()
                except CircuitOpenError:
                    self.record(cb.Reject(caller))
                else:
                    self.record(cb.Call(caller))
            else:
                caller = choice.split()[1]
                success = self.rng.random() < 0.4
                self.breaker.report(self.permits.pop(caller), success=success)
                self.record(cb.Report(caller, cb.SUCCESS if success else cb.FAILURE))


BREAKER_SIZES = [
    {},  # the spec's defaults: 3 callers, window 2, threshold 2, timeout 2, 1 probe
    {"probes": 2},
    {"threshold": 1, "window": 2},
    {"window": 3, "threshold": 3, "open_timeout": 1, "max_time": 6},
]


@pytest.mark.parametrize(
    "params", BREAKER_SIZES, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "defaults"
)
def test_the_breakers_traces_are_behaviours_of_the_spec(params: dict[str, Any]) -> None:
    spec = cb.CircuitBreaker(cb.Config(**params))
    seen: set[str] = set()
    for seed in range(80):
        run = BreakerRun(spec.config, seed)
        run.run()
        result = validate_events(spec, run.events)
        assert result.ok, (seed, result.message)
        seen |= {e["action"]["type"] for e in run.events}
        if run.breaker.state == "half_open":
            seen.add("half_open")
    assert {"Call", "Reject", "Report", "Restart", "Tick"} <= seen  # every kind of step was exercised


class RacingReset(CircuitBreaker):
    """The spec's racing_reset variant: "on success, reset", whatever admitted the call."""

    def report(self, permit: Permit, *, success: bool) -> None:
        if success and self.state != cb.CLOSED and permit.generation != self.record.generation:
            permit = Permit(self, permit.kind, self.record.generation)  # taken as current
            if self.state == cb.OPEN:
                self._change(cb.CLOSED, "success", [])
                return
        super().report(permit, success=success)


class UnboundedProbes(CircuitBreaker):
    """The spec's unbounded_probes variant: half-open lets every call through."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.probes = 10**9


@pytest.mark.parametrize(("wrong", "rule"), [(RacingReset, "Call"), (UnboundedProbes, "Call")])
def test_a_wrong_breaker_is_rejected_where_it_admits_a_call_the_spec_rejects(
    wrong: Callable[..., CircuitBreaker], rule: str
) -> None:
    spec = cb.CircuitBreaker(cb.Config())
    rejected = 0
    for seed in range(80):
        run = BreakerRun(spec.config, seed, build=wrong)
        run.run()
        result = validate_events(spec, run.events)
        if result.ok:
            continue
        rejected += 1
        assert result.mismatch is not None
        assert run.events[result.mismatch.step - 1]["action"]["type"] == rule
    assert rejected >= 5, f"only {rejected} of 80 runs showed the mistake"
