"""impl/resilience retry and deadlines: the rules of spec/retry.py on a fake clock
(backoff ranges, the deadline never overshot, the budget, keys for calls that are
not idempotent), the two forms (decorator, attempts), deadline propagation, and one
clear ValueError for each bad argument.

Nothing here measures time: the clock and the sleep are a fake the tests advance
(conformance to the spec itself: test_resilience_conformance.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distcheck.impl.resilience import (
    Deadline,
    DeadlineExceeded,
    RetryError,
    RetryEvent,
    Retrying,
    backoff_range,
    current_deadline,
    deadline,
    retry,
)


class FakeTime:
    """A clock that moves only when someone sleeps or an attempt takes time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


class Flaky:
    """A call that fails ``failures`` times (each taking ``takes`` seconds), then answers."""

    def __init__(self, time: FakeTime, failures: int, error: Exception | None = None, takes: float = 0.0) -> None:
        self.time, self.failures, self.takes = time, failures, takes
        self.error = error or ConnectionError("refused")
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> str:
        self.calls.append(kwargs)
        self.time.now += self.takes
        if len(self.calls) <= self.failures:
            raise self.error
        return "answer"


def policy(time: FakeTime, **kwargs: Any) -> Retrying:
    kwargs.setdefault("idempotent", True)
    return Retrying(clock=time.clock, sleep=time.sleep, **kwargs)


# --------------------------------------------------------------- the outcomes


def test_a_call_that_recovers_is_retried_until_it_answers() -> None:
    time = FakeTime()
    flaky = Flaky(time, failures=2)
    assert policy(time, max_attempts=3).call(flaky) == "answer"
    assert len(flaky.calls) == 3 and len(time.sleeps) == 2


def test_the_budget_counts_the_first_attempt_and_the_error_says_why() -> None:
    time = FakeTime()
    flaky = Flaky(time, failures=10)
    with pytest.raises(RetryError) as caught:
        policy(time, max_attempts=3).call(flaky)
    error = caught.value
    assert (error.reason, error.attempts, len(flaky.calls)) == ("budget", 3, 3)
    assert error.last_exception is flaky.error and error.__cause__ is flaky.error
    assert str(error) == (
        "gave up after 3 attempts (budget: its attempts are spent); last error: ConnectionError: refused"
    )
    assert len(time.sleeps) == 2  # no sleep after the last attempt


def test_an_error_retry_on_does_not_select_is_not_retried() -> None:
    time = FakeTime()
    flaky = Flaky(time, failures=5, error=KeyError("k"))
    with pytest.raises(RetryError) as caught:
        policy(time, retry_on=(ConnectionError, TimeoutError)).call(flaky)
    assert (caught.value.reason, caught.value.attempts, time.sleeps) == ("not_retryable", 1, [])
    # A predicate works the same way.
    time2 = FakeTime()
    flaky2 = Flaky(time2, failures=1, error=OSError(503, "busy"))
    assert policy(time2, retry_on=lambda e: isinstance(e, OSError) and e.errno == 503).call(flaky2) == "answer"


def test_keyboard_interrupt_goes_straight_through() -> None:
    time = FakeTime()
    calls = []

    def interrupted() -> None:
        calls.append(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        policy(time, max_attempts=5).call(interrupted)
    assert calls == [1]


# ------------------------------------------------------- idempotency and keys


def test_a_call_that_is_not_idempotent_is_not_retried_without_a_key() -> None:
    time = FakeTime()
    flaky = Flaky(time, failures=1)
    with pytest.raises(RetryError) as caught:
        policy(time, idempotent=False, max_attempts=5).call(flaky)
    assert (caught.value.reason, caught.value.attempts, time.sleeps) == ("unsafe", 1, [])
    assert "not idempotent and has no idempotency key" in str(caught.value)


def test_with_a_key_every_attempt_of_one_call_carries_the_same_key_and_each_call_a_new_one() -> None:
    time = FakeTime()
    flaky = Flaky(time, failures=2)
    charge = policy(time, idempotent=False, idempotency_key=True, max_attempts=5)(flaky)
    assert charge() == "answer"
    keys = {c["idempotency_key"] for c in flaky.calls}
    assert len(flaky.calls) == 3 and len(keys) == 1
    flaky.failures = 4
    assert charge() == "answer"
    second = {c["idempotency_key"] for c in flaky.calls[3:]}
    assert len(second) == 1 and second != keys


def test_a_call_that_brings_its_own_key_is_retried_under_it() -> None:
    time = FakeTime()
    flaky = Flaky(time, failures=1)
    assert policy(time, idempotent=False, key_argument="token").call(flaky, token="order-17") == "answer"
    assert [c["token"] for c in flaky.calls] == ["order-17", "order-17"]
    # A fixed key, and a key function, also work; the iterator form exposes the key.
    keys = iter(["k1", "k2"])
    attempts = list(policy(time, idempotent=False, idempotency_key=lambda: next(keys)))
    assert [a.idempotency_key for a in attempts] == ["k1"]  # the loop body succeeded at once
    with pytest.raises(ValueError, match="must return a non-empty string"):
        list(policy(time, idempotency_key=lambda: ""))


# ---------------------------------------------------------------- the backoff


@pytest.mark.parametrize(
    ("jitter", "retry", "previous", "expected"),
    [
        ("full", 0, 1.0, (0.0, 1.0)),
        ("full", 3, 1.0, (0.0, 5.0)),  # 1 * 2**3 = 8, capped at 5
        ("equal", 2, 1.0, (2.0, 4.0)),
        ("none", 1, 1.0, (2.0, 2.0)),
        ("decorrelated", 0, 1.0, (1.0, 3.0)),
        ("decorrelated", 7, 4.0, (1.0, 5.0)),  # 3 * 4 = 12, capped at 5
        ("full", 5000, 1.0, (0.0, 5.0)),  # no float overflow, however many retries
    ],
)
def test_backoff_ranges_are_the_specs(jitter: str, retry: int, previous: float, expected: tuple[float, float]) -> None:
    assert backoff_range(jitter, 1.0, 5.0, retry, previous) == expected


@settings(max_examples=60)
@given(
    base=st.floats(0.01, 2.0),
    factor=st.floats(1.0, 50.0),
    jitter=st.sampled_from(["full", "equal", "decorrelated", "none"]),
    seed=st.integers(0, 2**32),
)
def test_every_sleep_lies_in_its_range_and_under_the_cap(base: float, factor: float, jitter: str, seed: int) -> None:
    import random

    cap = base * factor
    time = FakeTime()
    with pytest.raises(RetryError):
        policy(time, base=base, cap=cap, jitter=jitter, max_attempts=12, rng=random.Random(seed)).call(
            Flaky(time, failures=99)
        )
    previous = base
    for n, sleep in enumerate(time.sleeps):
        low, high = backoff_range(jitter, base, cap, n, previous)
        assert low <= sleep <= high <= cap
        if jitter == "decorrelated":  # the rule in its own words
            assert min(cap, base) <= sleep <= min(cap, 3 * previous)
        previous = sleep
    assert len(time.sleeps) == 11


# ---------------------------------------------------------------- the deadline


@settings(max_examples=200)
@given(
    base=st.floats(0.01, 3.0),
    factor=st.floats(1.0, 20.0),
    jitter=st.sampled_from(["full", "equal", "decorrelated", "none"]),
    limit=st.floats(0.5, 30.0),
    timeout_share=st.floats(0.01, 1.0),
    durations=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=40),
    seed=st.integers(0, 2**32),
)
def test_the_deadline_is_never_overshot_and_the_call_gives_up_only_when_no_retry_fits(
    base: float,
    factor: float,
    jitter: str,
    limit: float,
    timeout_share: float,
    durations: list[float],
    seed: int,
) -> None:
    import random

    attempt_timeout = limit * timeout_share
    time = FakeTime()
    events: list[RetryEvent] = []
    taken = iter(durations * 40)

    def slow_failure() -> None:
        time.now += next(taken) * attempt_timeout  # an attempt ends by its timeout
        raise TimeoutError

    retrying = policy(
        time,
        base=base,
        cap=base * factor,
        jitter=jitter,
        max_attempts=40,
        deadline=limit,
        attempt_timeout=attempt_timeout,
        rng=random.Random(seed),
        on_event=events.append,
    )
    with pytest.raises(RetryError) as caught:
        retrying.call(slow_failure)
    # Float sums may differ from the exact ones by a rounding step, never by more.
    assert time.now <= limit + 1e-9
    if caught.value.reason == "deadline":
        failures = [e for e in events if e.kind == "failure"]
        sleeps = [e.sleep for e in events if e.kind == "retry"]
        previous = sleeps[-1] if sleeps else base
        low, _ = backoff_range(jitter, base, base * factor, len(sleeps), previous)  # type: ignore[arg-type]
        assert failures[-1].at + low + attempt_timeout > limit - 1e-9  # no draw would have fitted


def test_attempt_timeouts_and_the_give_up_at_the_deadline() -> None:
    time = FakeTime()
    seen: list[tuple[float | None, float]] = []
    with pytest.raises(RetryError) as caught:
        for attempt in policy(
            time, base=0.5, cap=0.5, jitter="none", deadline=5.0, attempt_timeout=2.0, max_attempts=9
        ):
            with attempt:
                inner = current_deadline()
                assert inner is not None
                seen.append((attempt.timeout, inner.remaining()))
                time.now += 2.0
                raise TimeoutError
    # 0-2 attempt, sleep .5, 2.5-4.5 attempt; at 4.5 a retry needs .5 + 2 > .5 left: give up.
    assert seen == [(2.0, 5.0), (2.0, 2.5)]
    assert (caught.value.reason, caught.value.attempts, time.now) == ("deadline", 2, 4.5)
    assert current_deadline() is None  # the scope ended with the attempt


def test_without_an_attempt_timeout_a_retry_needs_time_left_and_gets_it_as_its_timeout() -> None:
    time = FakeTime()
    seen: list[float | None] = []
    with pytest.raises(RetryError) as caught:
        for attempt in policy(time, base=1.0, cap=1.0, jitter="none", deadline=3.5, max_attempts=9):
            with attempt:
                seen.append(attempt.timeout)
                time.now += 0.5
                raise TimeoutError
    # attempts at 0 (3.5 left), 1.5 (2.0 left), 3.0 (0.5 left); then 1 s of sleep would reach the deadline
    assert seen == [3.5, 2.0, 0.5] and caught.value.reason == "deadline"


def test_an_enclosing_deadline_bounds_a_nested_retry_and_a_passed_one_makes_no_attempt() -> None:
    time = FakeTime()
    calls = []

    def call() -> None:
        calls.append(time.now)
        time.now += 1.0
        raise ConnectionError

    with deadline(3.0, clock=time.clock) as outer:
        assert current_deadline() is outer
        with deadline(100.0, clock=time.clock) as inner:
            assert inner is outer  # a nested scope cannot extend its caller's deadline
        with pytest.raises(RetryError) as caught:
            policy(time, base=0.5, cap=0.5, jitter="none", deadline=60.0, attempt_timeout=1.0, max_attempts=99).call(
                call
            )
        assert caught.value.reason == "deadline" and time.now <= 3.0
        time.now = 10.0
        calls.clear()
        with pytest.raises(RetryError) as late:
            policy(time).call(call)
        assert (late.value.reason, late.value.attempts, late.value.last_exception, calls) == ("deadline", 0, None, [])
        with pytest.raises(DeadlineExceeded):
            outer.check()
    assert current_deadline() is None


def test_a_deadline_object_reads_its_own_clock() -> None:
    time = FakeTime()
    limit = Deadline.after(2.0, clock=time.clock)
    sooner = Deadline(1.0, time.clock)
    assert sooner.earlier(limit) is sooner and limit.earlier(sooner) is sooner and limit.earlier(None) is limit
    assert (limit.remaining(), limit.expired()) == (2.0, False)
    time.now = 2.5
    assert (limit.remaining(), limit.expired()) == (0.0, True)


def test_the_decorator_keeps_the_functions_name_and_passes_its_arguments() -> None:
    time = FakeTime()

    @retry(idempotent=True, clock=time.clock, sleep=time.sleep)
    def add(a: int, b: int = 1) -> int:
        """Adds."""
        return a + b

    assert (add(2, b=3), add.__name__, add.__doc__) == (5, "add", "Adds.")


# ------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"base": 0}, "base must be a finite number greater than 0"),
        ({"base": math.nan}, "base must be a finite number"),
        ({"base": "1"}, "base must be a finite number"),
        ({"base": 2.0, "cap": 1.0}, r"base \(2.0\) must be at most cap \(1.0\)"),
        ({"jitter": "gaussian"}, "jitter must be one of full, equal, decorrelated, none"),
        ({"max_attempts": 0}, "max_attempts must be an integer of at least 1"),
        ({"max_attempts": 2.5}, "max_attempts must be an integer"),
        ({"max_attempts": True}, "max_attempts must be an integer"),
        ({"deadline": -1}, "deadline must be a finite number greater than 0"),
        ({"attempt_timeout": 0}, "attempt_timeout must be a finite number greater than 0"),
        ({"deadline": 1.0, "attempt_timeout": 2.0}, r"attempt_timeout \(2.0\) must be at most deadline \(1.0\)"),
        ({"retry_on": "OSError"}, "retry_on must be an exception type"),
        ({"retry_on": (OSError, int)}, "retry_on must hold exception types only"),
        ({"idempotent": "yes"}, "idempotent must be True or False"),
        ({"idempotency_key": ""}, "idempotency_key must be True, a non-empty string"),
        ({"key_argument": "not an identifier"}, "key_argument must be a Python identifier"),
        ({"clock": 3}, "clock must be a function"),
        ({"rng": object()}, "rng must have a uniform"),
    ],
)
def test_each_bad_argument_is_one_clear_value_error(kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says) as caught:
        Retrying(**kwargs)
    assert "\n" not in str(caught.value)


def test_a_bad_deadline_is_one_clear_value_error() -> None:
    builds: list[Callable[[], Deadline]] = [
        lambda: Deadline.after(-1.0),
        lambda: Deadline.after(math.nan),
        lambda: Deadline(math.nan),
    ]
    for build in builds:
        with pytest.raises(ValueError, match="deadline") as caught:
            build()
        assert "\n" not in str(caught.value)
