"""The circuit breaker (spec/circuit_breaker.py): its properties at the default size
and beyond, its guards on hand-reached states (the window, the timeout, the probe
limit, stale reports, restarts), and each variant's counterexample pinned as an
action list."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from distcheck.checks.search.explore import explore
from distcheck.spec.circuit_breaker import (
    BreakerAction,
    BreakerState,
    Call,
    CircuitBreaker,
    Config,
    Reject,
    Report,
    Restart,
    Tick,
)
from tests.spec.steps import broken, replay


def spec(variant: str | None = None, **params: int) -> CircuitBreaker:
    return CircuitBreaker(Config(variant=variant, **params))


def broken_by_step(s: CircuitBreaker, before: BreakerState, after: BreakerState) -> list[str]:
    """The step properties the step from ``before`` to ``after`` breaks."""
    return [p.name for p in s.step_properties() if not p.holds(before, after)]


def enabled(s: CircuitBreaker, actions: Sequence[object]) -> list[str]:
    return [str(a) for a in s.actions(replay(s, actions))]


#: c1 fails twice (the window's two failures open the breaker at 0) while c2's call,
#: admitted while it was closed, is still in flight.
OPENED_WITH_C2_IN_FLIGHT: list[BreakerAction] = [
    Call("c1"),
    Report("c1", "failure"),
    Call("c1"),
    Call("c2"),
    Report("c1", "failure"),
]
#: The breaker opens at 0 and, two ticks later, turns half-open for c1's probe.
PROBING: list[BreakerAction] = [
    Call("c1"),
    Report("c1", "failure"),
    Call("c1"),
    Report("c1", "failure"),
    Tick(),
    Tick(),
    Call("c1"),
]


# ------------------------------------------------------------------ exploration


def test_the_breaker_keeps_its_promises_at_the_default_size() -> None:
    result = explore(spec())
    assert result.verdict == "ok"
    assert (result.stats.distinct_states, result.stats.depth) == (4690, 25)
    assert set(result.reached) == {"Opened", "ProbeClosed", "ProbeReopened"}


def test_two_probes_a_longer_window_and_two_restarts() -> None:
    for config in (Config(probes=2), Config(window=3, callers=2), Config(restarts=2, callers=2)):
        assert explore(CircuitBreaker(config)).verdict == "ok", config


def test_a_config_out_of_range_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match=r"threshold \(3\) must be at most window \(2\)"):
        Config(threshold=3)
    with pytest.raises(ValueError, match="callers must be between 1 and 4, got 0"):
        Config(callers=0)


# ------------------------------------------------------------------ the guards


def test_the_window_opens_the_breaker_and_it_rejects_until_its_timeout() -> None:
    s = spec()
    opened = replay(s, PROBING[:4])
    assert (opened.mode, opened.opened_at, opened.stored.mode) == ("open", 0, "open")
    assert "Reject(c1)" in enabled(s, PROBING[:4]) and "Call(c1)" not in enabled(s, PROBING[:4])
    assert "Call(c1)" not in enabled(s, PROBING[:5])  # one tick is not enough
    probing = replay(s, PROBING)
    assert (probing.mode, probing.cause, str(probing.calls["c1"])) == ("half_open", "timeout", "probe@2")


def test_one_success_in_the_window_keeps_it_closed() -> None:
    s = spec()
    state = replay(s, [Call("c1"), Report("c1", "failure"), Call("c1"), Report("c1", "success")])
    assert (state.mode, state.window) == ("closed", ("failure", "success"))
    state = replay(s, [Call("c1"), Report("c1", "failure"), Call("c1"), Report("c1", "success")] * 2)
    assert state.window == ("failure", "success")  # only the last two are kept


def test_half_open_lets_one_probe_through_and_its_outcome_decides() -> None:
    s = spec()
    assert "Reject(c2)" in enabled(s, PROBING) and "Call(c2)" not in enabled(s, PROBING)
    closed = replay(s, [*PROBING, Report("c1", "success")])
    assert (closed.mode, closed.cause, closed.window) == ("closed", "success", ())
    reopened = replay(s, [*PROBING, Report("c1", "failure")])
    assert (reopened.mode, reopened.cause, reopened.opened_at) == ("open", "failure", 2)


def test_a_stale_report_changes_nothing() -> None:
    """c2's success comes after the breaker opened: it does not close it, and the
    next call is rejected."""
    s = spec()
    before = replay(s, OPENED_WITH_C2_IN_FLIGHT)
    after = s.next_state(before, Report("c2", "success"))
    assert after is not None and (after.mode, after.generation) == ("open", before.generation)
    assert s.next_state(after, Call("c1")) is None and s.next_state(after, Reject("c1")) == after


def test_a_restart_ends_the_calls_and_reloads_the_open_breaker() -> None:
    s = spec()
    before = replay(s, OPENED_WITH_C2_IN_FLIGHT)
    after = s.next_state(before, Restart())
    assert after is not None
    assert (after.mode, after.opened_at, after.restarts) == ("open", 0, 1)
    assert all(flight is None for flight in after.calls.values())
    assert broken_by_step(s, before, after) == [] and s.next_state(after, Restart()) is None  # one restart


# ------------------------------------------------------------------ variants


def test_unbounded_probes_let_two_through() -> None:
    s = spec("unbounded_probes")
    path = [*PROBING, Call("c2")]
    assert broken(s, replay(s, path)) == ["ProbesBounded"]
    assert broken(s, replay(s, path[:-1])) == []


def test_a_stale_success_closes_the_breaker_and_a_call_gets_through_at_once() -> None:
    s = spec("racing_reset")
    closed = replay(s, [*OPENED_WITH_C2_IN_FLIGHT, Report("c2", "success")])
    assert closed.mode == "closed"  # at 0, two ticks before its timeout
    admitted = s.next_state(closed, Call("c1"))
    assert admitted is not None
    assert broken_by_step(s, closed, admitted) == ["NoCallWhileOpen"]
    assert broken(s, admitted) == []  # no state shows it: a property of the step


def test_a_breaker_kept_in_memory_closes_on_restart() -> None:
    s = spec("restart_closes")
    before = replay(s, PROBING[:4])
    after = s.next_state(before, Restart())
    assert after is not None and after.mode == "closed" and after.stored.mode == "open"
    assert broken_by_step(s, before, after) == ["RestartKeepsOpen"]
