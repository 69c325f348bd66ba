"""Retries with backoff (spec/retry.py): the jitter formulas on hand-made inputs, the
invariants at the default size for every jitter kind, the guards on hand-reached
states, and each variant's counterexample pinned as an action list."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from distcheck.checks.search.explore import explore
from distcheck.spec.retry import (
    Attempt,
    Config,
    Fail,
    GiveUp,
    Process,
    Reject,
    Retry,
    RetryAction,
    RetryBackoff,
    Succeed,
    Tick,
    TimeOut,
    jitter_range,
)
from tests.spec.steps import broken, replay


def spec(variant: str | None = None, **params: object) -> RetryBackoff:
    params = {**(RetryBackoff.variants()[variant].params if variant else {}), **params}
    return RetryBackoff(Config(variant=variant, **params))  # type: ignore[arg-type]


#: The first attempt times out after the server applied it: the classic ambiguous failure.
APPLIED_THEN_TIMED_OUT: list[RetryAction] = [Attempt(), Tick(), Tick(), Process(1), TimeOut()]


def enabled(s: RetryBackoff, actions: Sequence[object]) -> list[str]:
    return [str(a) for a in s.actions(replay(s, actions))]


def quick_failures(count: int, *, retry_after_last: bool = False) -> list[RetryAction]:
    """``count`` attempts, each failed by the server in one tick, each retried at once
    (the last too when ``retry_after_last``)."""
    path: list[RetryAction] = []
    for n in range(1, count + 1):
        path += [Attempt(), Tick(), Reject(n), Fail()]
        if n < count or retry_after_last:
            path.append(Retry(0))
    return path


# ------------------------------------------------------------------ the formulas


def test_full_jitter_draws_from_zero_to_the_capped_exponential() -> None:
    assert [list(jitter_range("full", 1, 4, n, 1)) for n in range(4)] == [
        [0, 1],
        [0, 1, 2],
        [0, 1, 2, 3, 4],
        [0, 1, 2, 3, 4],  # 8, capped at 4
    ]


def test_equal_jitter_keeps_half_of_the_exponential() -> None:
    assert [list(jitter_range("equal", 1, 4, n, 1)) for n in range(4)] == [[1], [1, 2], [2, 3, 4], [2, 3, 4]]
    assert list(jitter_range("equal", 3, 8, 0, 3)) == [2, 3]  # 3/2 + [0, 3/2], in whole ticks


def test_decorrelated_jitter_grows_from_the_previous_sleep_up_to_the_cap() -> None:
    assert list(jitter_range("decorrelated", 1, 4, 0, 1)) == [1, 2, 3]
    assert list(jitter_range("decorrelated", 1, 4, 1, 3)) == [1, 2, 3, 4]  # 9, capped at 4
    assert list(jitter_range("decorrelated", 2, 16, 5, 2)) == [2, 3, 4, 5, 6]  # the retry's index plays no part


def test_a_config_out_of_range_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="jitter must be one of full, equal, decorrelated, got 'random'"):
        Config(jitter="random")
    with pytest.raises(ValueError, match=r"base \(3\) must be at most cap \(2\)"):
        Config(base=3)
    with pytest.raises(ValueError, match=r"attempt_timeout \(5\) must be at most deadline \(4\)"):
        Config(deadline=4, attempt_timeout=5)


# ------------------------------------------------------------------ exploration


@pytest.mark.parametrize(
    "jitter,size", [("full", (4100, 25)), ("equal", (514, 25)), ("decorrelated", (750, 25))], ids=str
)
def test_every_jitter_kind_keeps_the_deadline_the_budget_and_the_cap(jitter: str, size: tuple[int, int]) -> None:
    result = explore(spec(jitter=jitter))
    assert result.verdict == "ok"
    assert (result.stats.distinct_states, result.stats.depth) == size
    assert set(result.reached) == {"SucceededAfterRetries", "GaveUpAtDeadline", "GaveUpAtBudget"}


def test_an_idempotent_call_without_a_key_is_retried_and_may_apply_twice() -> None:
    s = spec(idempotent=True, idempotency_key=False)
    state = replay(s, [*APPLIED_THEN_TIMED_OUT, Retry(0), Attempt(), Process(2)])
    assert state.applied == 2 and broken(s, state) == []
    assert explore(s).verdict == "ok"


# ------------------------------------------------------------------ the guards


def test_the_key_makes_a_retry_apply_the_call_once_and_answer_ok() -> None:
    s = spec()
    state = replay(s, [*APPLIED_THEN_TIMED_OUT, Retry(1), Tick(), Attempt(), Process(2), Tick(), Succeed()])
    assert (state.phase, state.attempts, state.applied) == ("succeeded", 2, 1)
    assert broken(s, state) == []


def test_the_server_may_apply_an_attempt_the_client_gave_up_on() -> None:
    s = spec()
    state = replay(s, [Attempt(), Tick(), Tick(), TimeOut(), Retry(0), Attempt(), Process(1)])
    assert state.applied == 1 and state.reply == "none"  # the late answer is not the current attempt's
    assert "Succeed" not in enabled(s, [Attempt(), Tick(), Tick(), TimeOut(), Retry(0), Attempt(), Process(1)])


def test_an_answer_takes_a_tick_and_the_timeout_ends_the_wait() -> None:
    s = spec()
    assert enabled(s, [Attempt(), Reject(1)]) == ["Tick"]  # the error has not arrived yet
    assert enabled(s, [Attempt(), Reject(1), Tick()]) == ["Tick", "Fail"]
    assert enabled(s, [Attempt(), Tick(), Tick()]) == ["Process(1)", "Reject(1)", "TimeOut"]  # no Tick past the timer


def test_no_retry_is_drawn_that_cannot_end_by_the_deadline() -> None:
    """Failing at 5, the client may sleep 0 or 1 (ending by 7 or 8), not 2; failing at
    7, no draw fits and it gives up at the deadline."""
    s = spec()
    fail_at_5 = [Attempt(), Tick(), Tick(), TimeOut(), Retry(1), Tick(), Attempt(), Tick(), Tick(), TimeOut()]
    assert [a for a in enabled(s, fail_at_5) if a.startswith(("Retry", "GiveUp"))] == ["Retry(0)", "Retry(1)"]
    fail_at_7 = [*fail_at_5, Retry(0), Attempt(), Tick(), Tick(), TimeOut()]
    assert [a for a in enabled(s, fail_at_7) if a.startswith(("Retry", "GiveUp"))] == ["GiveUp(deadline)"]


def test_the_budget_ends_the_retries() -> None:
    """Four quick failures by time 4, with time left: the fourth is the last."""
    s = spec()
    path = quick_failures(4)
    assert [a for a in enabled(s, path) if a.startswith(("Retry", "GiveUp"))] == ["GiveUp(budget)"]
    state = replay(s, [*path, GiveUp("budget")])
    assert (state.phase, state.attempts, state.now) == ("gave_up", 4, 4)


def test_a_call_that_is_not_idempotent_and_has_no_key_is_not_retried() -> None:
    s = spec(idempotency_key=False)
    assert [a for a in enabled(s, APPLIED_THEN_TIMED_OUT) if a.startswith(("Retry", "GiveUp"))] == ["GiveUp(unsafe)"]


# ------------------------------------------------------------------ variants


def test_checking_the_deadline_only_before_sleeping_overshoots_it() -> None:
    s = spec("deadline_checked_before_sleep_only")
    timeout: list[RetryAction] = [Tick(), Tick(), TimeOut()]
    path: list[RetryAction] = [
        Attempt(),
        *timeout,  # the first attempt times out at 2
        Retry(1),
        Tick(),
        Attempt(),
        *timeout,  # the second at 5
        Retry(2),  # 5 + 2 = 7 is before the deadline, 8: the check passes
        Tick(),
        Tick(),
        Attempt(),  # started at 7, it may run until 9
        Tick(),
        Tick(),
    ]
    assert broken(s, replay(s, path)) == ["WithinDeadline"]
    assert broken(s, replay(s, path[:-1])) == []
    reference = spec()
    assert reference.next_state(replay(reference, path[:10]), path[10]) is None  # 5 + 2 + 2 > 8


def test_retries_without_a_budget_exceed_it() -> None:
    s = spec("unbounded_retries")
    path = [*quick_failures(4, retry_after_last=True), Attempt()]
    assert broken(s, replay(s, path)) == ["WithinBudget"]
    reference = spec()
    assert reference.next_state(replay(reference, path[:-2]), path[-2]) is None  # no fifth attempt


def test_a_retry_without_a_key_applies_the_call_twice() -> None:
    s = spec("retry_without_key")
    path: list[RetryAction] = [*APPLIED_THEN_TIMED_OUT, Retry(0), Attempt(), Process(2)]
    assert broken(s, replay(s, path)) == ["RetriesAreSafe"]
    assert broken(s, replay(s, path[:-1])) == []
    reference = spec(idempotency_key=False)
    assert reference.next_state(replay(reference, APPLIED_THEN_TIMED_OUT), Retry(0)) is None


def test_an_uncapped_exponential_sleeps_past_the_cap() -> None:
    s = spec("sleep_above_cap")
    path = quick_failures(3)
    assert broken(s, replay(s, [*path, Retry(3)])) == ["SleepInRange"]  # up to 4 = 1 · 2^2, the cap is 2
    assert spec().next_state(replay(spec(), path), Retry(3)) is None
