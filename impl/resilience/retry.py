"""Retries with exponential backoff and jitter, under a deadline and a budget, safe
for calls that are not idempotent: spec/retry.py's rules as a library.

Where it sits: part of ``impl/resilience``; the blocking clients in ``impl/`` (and
anyone) use it to retry a call.  It never reads the time or sleeps by itself: the
clock and the sleep are parameters (by default ``time.monotonic`` and
``time.sleep``; on the project's runtime, ``ctx.now`` and ``ctx.sleep``), so a retry
loop runs unchanged under the deterministic scheduler and under a test's fake clock.

The rules, each the spec's (docs/retry.md explains them; the spec's variants are
the mistakes this module avoids):

- The n-th sleep (n = 0, 1, ...) is drawn from its jitter's range, e = min(cap,
  base * 2**n): ``full`` [0, e]; ``equal`` [e/2, e]; ``decorrelated`` [min(cap, base),
  min(cap, 3 * previous sleep)] (previous = base before the first); ``none``: e.
- Deadline: a retry is made only if its attempt, after the sleep, can end by the
  deadline: the sleep is drawn from the part of the range that leaves
  ``attempt_timeout`` before the deadline, and when no part does, the call gives up
  (reason ``deadline``).  Checking only that the sleep ends by the deadline (as
  tenacity's ``stop_before_delay`` does) lets the last attempt run past it.
- Budget: at most ``max_attempts`` attempts, the first included (reason ``budget``).
- Safety: a call that is not idempotent is retried only with an idempotency key,
  the same key on every attempt (reason ``unsafe`` otherwise): a timed-out attempt
  may have been applied, and only the key lets the server apply it once.
- The reasons are checked in the spec's order: budget, unsafe, deadline.  An
  exception that ``retry_on`` does not select is not retried (``not_retryable``).

Using it::

    @retry(max_attempts=5, deadline=2.0, attempt_timeout=0.5, idempotent=True)
    def fetch() -> bytes: ...

    for attempt in Retrying(max_attempts=5, deadline=2.0, attempt_timeout=0.5, idempotency_key=True):
        with attempt:
            reply = post(body, key=attempt.idempotency_key, timeout=attempt.timeout)

Giving up raises ``RetryError`` (its ``reason``, ``attempts`` and the last
exception, also its ``__cause__``).
"""

from __future__ import annotations

import functools
import math
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, NoReturn, ParamSpec, Protocol, TypeVar

from distcheck.impl.resilience.deadline import Clock, Deadline, _current, current_deadline
from distcheck.impl.telemetry import count

P = ParamSpec("P")
T = TypeVar("T")

Jitter = Literal["full", "equal", "decorrelated", "none"]
JITTERS: tuple[str, ...] = ("full", "equal", "decorrelated", "none")

#: ``max_attempts`` for a call retried until it succeeds or its deadline passes (a
#: client that re-sends until it is answered): a budget no run reaches.
UNBOUNDED = sys.maxsize

BUDGET, UNSAFE, DEADLINE, NOT_RETRYABLE = "budget", "unsafe", "deadline", "not_retryable"
_WHY = {
    BUDGET: "its attempts are spent",
    UNSAFE: "the call is not idempotent and has no idempotency key",
    DEADLINE: "no retry could end by the deadline",
    NOT_RETRYABLE: "the error is not one retry_on selects",
}


class Uniform(Protocol):
    """A source of random draws: ``random.Random`` is one."""

    def uniform(self, a: float, b: float, /) -> float: ...


class RetryError(Exception):
    """The call gave up: ``reason`` is ``budget``, ``unsafe``, ``deadline`` or
    ``not_retryable``; ``last_exception`` the last attempt's error (None when the
    deadline had passed before any attempt)."""

    def __init__(self, reason: str, attempts: int, last_exception: BaseException | None) -> None:
        self.reason = reason
        self.attempts = attempts
        self.last_exception = last_exception
        last = "" if last_exception is None else f"; last error: {type(last_exception).__name__}: {last_exception}"
        plural = "" if attempts == 1 else "s"
        super().__init__(f"gave up after {attempts} attempt{plural} ({reason}: {_WHY[reason]}){last}")


@dataclass(frozen=True)
class RetryEvent:
    """One step of a retried call, for ``on_event`` (logging, metrics, traces):
    ``attempt`` (one starts), ``success``, ``failure`` (with its ``exception``),
    ``retry`` (with the ``sleep`` drawn) or ``give_up`` (with its ``reason``)."""

    kind: str
    attempt: int
    at: float
    sleep: float | None = None
    reason: str | None = None
    exception: BaseException | None = None


def backoff_range(jitter: str, base: float, cap: float, retry: int, previous: float) -> tuple[float, float]:
    """The range the ``retry``-th sleep (0, 1, ...) is drawn from; ``previous`` is the
    sleep before it (``base`` before the first), which only decorrelated jitter reads."""
    if jitter == "decorrelated":
        return min(cap, base), min(cap, 3 * previous)
    # min() first: base * 2**retry overflows a float long before retry gets large
    exponential = cap if retry >= 1075 else min(cap, base * 2.0**retry)
    if jitter == "full":
        return 0.0, exponential
    if jitter == "equal":
        return exponential / 2, exponential
    return exponential, exponential


class Attempt:
    """One attempt of a retried call: a context manager that records the attempt's
    error (and keeps it from propagating: the retry loop decides what follows).

    ``timeout``: how long this attempt may take, the attempt timeout cut to what is
    left of the deadline (None: no limit); pass it on to the call.
    ``idempotency_key``: the call's key, the same on every attempt (None: no key)."""

    __slots__ = (
        "_emit",
        "_token",
        "at_once",
        "deadline",
        "exception",
        "exited",
        "idempotency_key",
        "number",
        "timeout",
    )

    def __init__(
        self,
        number: int,
        timeout: float | None,
        idempotency_key: str | None,
        limit: Deadline | None,
        emit: Callable[[str, Attempt], None] | None,
    ) -> None:
        self.number = number
        self.timeout = timeout
        self.idempotency_key = idempotency_key
        self.deadline = limit
        self.exception: BaseException | None = None
        self.exited = False
        #: set by ``retry_at_once``: the next attempt follows without a backoff
        self.at_once = False
        self._emit = emit
        self._token: Any = None

    def retry_at_once(self) -> None:
        """If this attempt fails, make the next one at once, without a sleep and
        without moving the backoff on (a redirect to the server that can answer,
        rather than a failure to back off from); the deadline and budget still hold."""
        self.at_once = True

    def bounded(self, seconds: float) -> float:
        """``seconds``, cut to this attempt's timeout: how long to wait for an answer
        within this attempt (a client re-sending every ``seconds`` under a deadline)."""
        return seconds if self.timeout is None else min(seconds, self.timeout)

    def __enter__(self) -> Attempt:
        if self.deadline is not None:
            # Code inside the attempt (a nested retry, a client) sees the call's deadline.
            self._token = _current.set(self.deadline)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None
        self.exited = True
        if exc is not None and not isinstance(exc, Exception):
            return False  # KeyboardInterrupt, SystemExit: never retried, never swallowed
        self.exception = exc
        if self._emit is not None:
            self._emit("success" if exc is None else "failure", self)
        return exc is not None


RetryOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
KeySource = bool | str | Callable[[], str] | None


class Retrying:
    """A retry policy: iterate over it for the attempts of one call (``for attempt
    in policy: with attempt: ...``), call ``policy.call(fn, ...)``, or decorate a
    function with it (``@policy``; ``retry(...)`` builds one).

    Parameters (seconds, unless the clock counts otherwise):

    - ``base``, ``cap`` (0 < base <= cap), ``jitter``: the backoff (module docstring).
    - ``max_attempts``: the budget, the first attempt included.
    - ``deadline``: seconds from the call's start, or a ``Deadline``; the current
      deadline (``with deadline(...)``) applies too, whichever is earlier.
    - ``attempt_timeout``: the longest an attempt takes; a retry must fit it before
      the deadline.  Without it a retry only needs to wake before the deadline, and
      each attempt is given what is left (``attempt.timeout``) to keep to.
    - ``retry_on``: exception types or a predicate of the exception.
    - ``idempotent``; ``idempotency_key``: True (a fresh key per call), a string, or
      a function returning one.  The decorator and ``call`` pass the key to the
      function as the keyword argument ``key_argument``; a call that is given that
      keyword argument itself is retried under the key it was given.
    - ``clock``, ``sleep``, ``rng`` (an object with ``uniform(a, b)``), ``on_event``.
    - ``backoff``: False retries at once, with no sleep (``base``, ``cap`` and
      ``jitter`` unused), for a client whose attempt is itself the wait: it sends,
      waits up to its resend interval for the answer, and sends again.  The deadline
      and the budget hold as with a backoff.
    - ``name``: what the retries are counted under (the ``distcheck.retries``
      metric's ``operation``, ``impl.telemetry``).
    """

    def __init__(
        self,
        *,
        base: float = 0.1,
        cap: float = 10.0,
        jitter: str = "full",
        max_attempts: int = 3,
        deadline: float | Deadline | None = None,
        attempt_timeout: float | None = None,
        retry_on: RetryOn = Exception,
        idempotent: bool = False,
        idempotency_key: KeySource = None,
        key_argument: str = "idempotency_key",
        clock: Clock = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        rng: Uniform | None = None,
        on_event: Callable[[RetryEvent], object] | None = None,
        backoff: bool = True,
        name: str = "call",
    ) -> None:
        _check_number("base", base, minimum=0.0, strict=True)
        _check_number("cap", cap, minimum=0.0, strict=True)
        if base > cap:
            raise ValueError(f"base ({base}) must be at most cap ({cap})")
        if jitter not in JITTERS:
            raise ValueError(f"jitter must be one of {', '.join(JITTERS)}, got {jitter!r}")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer of at least 1, got {max_attempts!r}")
        if deadline is not None and not isinstance(deadline, Deadline):
            _check_number("deadline", deadline, minimum=0.0, strict=True)
        if attempt_timeout is not None:
            _check_number("attempt_timeout", attempt_timeout, minimum=0.0, strict=True)
            if isinstance(deadline, (int, float)) and attempt_timeout > deadline:
                raise ValueError(f"attempt_timeout ({attempt_timeout}) must be at most deadline ({deadline})")
        if not isinstance(idempotent, bool):
            raise ValueError(f"idempotent must be True or False, got {idempotent!r}")
        if not isinstance(backoff, bool):
            raise ValueError(f"backoff must be True or False, got {backoff!r}")
        if not (
            idempotency_key is None
            or isinstance(idempotency_key, bool)
            or (isinstance(idempotency_key, str) and idempotency_key)
            or callable(idempotency_key)
        ):
            raise ValueError(
                f"idempotency_key must be True, a non-empty string or a function returning one, got {idempotency_key!r}"
            )
        if not key_argument.isidentifier():
            raise ValueError(f"key_argument must be a Python identifier, got {key_argument!r}")
        for name, value in (("clock", clock), ("sleep", sleep)):
            if not callable(value):
                raise ValueError(f"{name} must be a function, got {value!r}")
        if rng is not None and not callable(getattr(rng, "uniform", None)):
            raise ValueError(f"rng must have a uniform(a, b) method, got {rng!r}")
        self.base, self.cap, self.jitter = float(base), float(cap), jitter
        self.max_attempts = max_attempts
        self.deadline = deadline
        self.attempt_timeout = attempt_timeout
        self.retryable = _retry_predicate(retry_on)
        self.idempotent = idempotent
        self.idempotency_key = None if idempotency_key is False else idempotency_key
        self.key_argument = key_argument
        self.clock = clock
        self.sleep = sleep
        self.rng: Uniform = rng if rng is not None else random.Random()
        self.on_event = on_event
        self.backoff = backoff
        self.name = name

    # ------------------------------------------------------------ the loop

    def __iter__(self) -> Iterator[Attempt]:
        return self.attempts()

    def attempts(self, idempotency_key: str | None = None) -> Iterator[Attempt]:
        """The attempts of one call (``idempotency_key``: the call's own key, which
        overrides the policy's)."""
        key = idempotency_key if idempotency_key is not None else self._new_key()
        safe = self.idempotent or key is not None
        limit = self._call_deadline()
        emit = None if self.on_event is None else self._emit
        if limit is not None and limit.expired():
            self._give_up(DEADLINE, 0, None)
        previous = self.base
        number = 0
        backoffs = 0  # sleeps taken so far: the exponent of the next one
        while True:
            number += 1
            attempt = Attempt(number, self._attempt_window(limit), key, limit, emit)
            if emit is not None:
                emit("attempt", attempt)
            yield attempt
            if not attempt.exited and emit is not None:
                emit("success", attempt)  # the loop body ran without ``with attempt``
            error = attempt.exception
            if error is None:
                return
            if not self.retryable(error):
                self._give_up(NOT_RETRYABLE, number, error)
            if number >= self.max_attempts:
                self._give_up(BUDGET, number, error)
            if not safe:
                self._give_up(UNSAFE, number, error)
            pause = self.backoff and not attempt.at_once
            sleep = self._draw(backoffs, previous, limit) if pause else self._no_sleep(limit)
            if sleep is None:
                self._give_up(DEADLINE, number, error)
            count("distcheck.retries", operation=self.name)
            if emit is not None:
                emit("retry", attempt, sleep=sleep)
            if pause:  # a retry at once takes no pause, not even a yield, and leaves the backoff where it was
                self.sleep(sleep)
                previous = sleep
                backoffs += 1

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` under this policy; the idempotency key, if any, is
        passed as the keyword argument ``key_argument``."""
        given = kwargs.get(self.key_argument)
        for attempt in self.attempts(given if isinstance(given, str) and given else None):
            if attempt.idempotency_key is not None:
                kwargs[self.key_argument] = attempt.idempotency_key
            with attempt:
                result = fn(*args, **kwargs)
            if attempt.exception is None:
                return result
        raise AssertionError("unreachable: the attempts end in a return or a RetryError")  # pragma: no cover

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Use the policy as a decorator."""

        @functools.wraps(fn)
        def retried(*args: P.args, **kwargs: P.kwargs) -> T:
            return self.call(fn, *args, **kwargs)

        return retried

    # ------------------------------------------------------------ the rules

    def backoff_range(self, retry: int, previous: float) -> tuple[float, float]:
        """The range of the ``retry``-th sleep, before the deadline cuts it."""
        if not self.backoff:
            return 0.0, 0.0
        return backoff_range(self.jitter, self.base, self.cap, retry, previous)

    def _latest_sleep(self, limit: Deadline) -> float:
        """The longest sleep after which another attempt can still end by the
        deadline: what is left of it, less one attempt's timeout."""
        return limit.remaining() - (self.attempt_timeout or 0.0)

    def _draw(self, retry: int, previous: float, limit: Deadline | None) -> float | None:
        """The next sleep: a draw from its range, cut so that the attempt after it
        can end by the deadline; None when no sleep in the range lets it."""
        low, high = self.backoff_range(retry, previous)
        if limit is not None:
            latest = self._latest_sleep(limit)
            # Without an attempt timeout the attempt needs some time left: strictly before.
            if low > latest or (self.attempt_timeout is None and low >= latest):
                return None
            high = min(high, latest)
        return low if high <= low else self.rng.uniform(low, high)

    def _no_sleep(self, limit: Deadline | None) -> float | None:
        """A retry at once (no backoff): 0, or None when its attempt cannot end by the
        deadline (the same rule as ``_draw``'s, for a sleep of 0)."""
        if limit is not None:
            latest = self._latest_sleep(limit)
            if latest < 0 or (self.attempt_timeout is None and latest <= 0):
                return None
        return 0.0

    def _attempt_window(self, limit: Deadline | None) -> float | None:
        if limit is None:
            return self.attempt_timeout
        left = limit.remaining()
        return left if self.attempt_timeout is None else min(self.attempt_timeout, left)

    def _call_deadline(self) -> Deadline | None:
        own = self.deadline
        if own is None:
            return current_deadline()
        if not isinstance(own, Deadline):
            own = Deadline.after(own, self.clock)
        return own.earlier(current_deadline())

    def _new_key(self) -> str | None:
        source = self.idempotency_key
        if source is None:
            return None
        if source is True:
            return uuid.uuid4().hex
        if isinstance(source, str):
            return source
        key = source()
        if not isinstance(key, str) or not key:
            raise ValueError(f"idempotency_key() must return a non-empty string, got {key!r}")
        return key

    def _emit(self, kind: str, attempt: Attempt, sleep: float | None = None) -> None:
        assert self.on_event is not None
        self.on_event(RetryEvent(kind, attempt.number, self.clock(), sleep=sleep, exception=attempt.exception))

    def _give_up(self, reason: str, attempts: int, error: BaseException | None) -> NoReturn:
        if self.on_event is not None:
            self.on_event(RetryEvent("give_up", attempts, self.clock(), reason=reason, exception=error))
        raise RetryError(reason, attempts, error) from error


#: ``@retry(max_attempts=5, ...)`` reads as a decorator; a policy is one already
#: (``Retrying.__call__``), so the name is the class itself, not a second copy of
#: its parameters.
retry = Retrying


def _check_number(name: str, value: object, *, minimum: float, strict: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= minimum if strict else value < minimum):  # type: ignore[operator]
        relation = "greater than" if strict else "at least"
        raise ValueError(f"{name} must be a finite number {relation} {minimum:g}, got {value!r}")


def _retry_predicate(retry_on: RetryOn) -> Callable[[BaseException], bool]:
    if isinstance(retry_on, type) and issubclass(retry_on, BaseException):
        kinds: tuple[type[BaseException], ...] = (retry_on,)
    elif isinstance(retry_on, tuple) and retry_on:
        if not all(isinstance(k, type) and issubclass(k, BaseException) for k in retry_on):
            raise ValueError(f"retry_on must hold exception types only, got {retry_on!r}")
        kinds = retry_on
    elif callable(retry_on) and not isinstance(retry_on, type):
        return retry_on
    else:
        raise ValueError(f"retry_on must be an exception type, a tuple of them or a predicate, got {retry_on!r}")
    return lambda error: isinstance(error, kinds)
