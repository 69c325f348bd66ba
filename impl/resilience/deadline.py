"""Deadlines that propagate through calls: an absolute point in time on an
injectable clock, and the current one kept in a context variable.

Where it sits: part of ``impl/resilience``, the resilience library; ``retry`` reads
the current deadline so that a retried call nested inside another never outlives
its caller's deadline (gRPC's deadline propagation, in one process).  Nothing here
reads the time itself: every deadline carries the clock it was set on (by default
``time.monotonic``; under the project's runtime, ``ctx.now``), which is what lets
the library run under the deterministic scheduler.

    with deadline(2.0):  # everything inside has at most 2 s
        with deadline(5.0) as inner:  # a nested scope cannot extend it
            inner.remaining()  # <= 2.0
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Clock = Callable[[], float]


class DeadlineExceeded(TimeoutError):
    """Raised by ``Deadline.check`` once the deadline has passed."""


class Deadline:
    """A point in time ``at`` on ``clock`` by which the work must be done."""

    __slots__ = ("at", "clock")

    def __init__(self, at: float, clock: Clock = time.monotonic) -> None:
        if at != at:  # NaN compares false with everything: it would never expire
            raise ValueError("a deadline must be a number, got NaN")
        self.at = at
        self.clock = clock

    @classmethod
    def after(cls, seconds: float, clock: Clock = time.monotonic) -> Deadline:
        """The deadline ``seconds`` from now on ``clock``."""
        if not seconds >= 0:
            raise ValueError(f"a deadline must be at least 0 seconds away, got {seconds!r}")
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        """Seconds left, 0 once it has passed."""
        return max(0.0, self.at - self.clock())

    def expired(self) -> bool:
        return self.clock() >= self.at

    def check(self) -> None:
        """Raise ``DeadlineExceeded`` if the deadline has passed."""
        if self.expired():
            raise DeadlineExceeded(f"the deadline passed {self.clock() - self.at:.3f} s ago")

    def earlier(self, other: Deadline | None) -> Deadline:
        """Whichever of the two leaves less time (each read on its own clock)."""
        if other is None or self.remaining() <= other.remaining():
            return self
        return other

    def __repr__(self) -> str:
        return f"Deadline(at={self.at!r}, remaining={self.remaining():.3f})"


_current: ContextVar[Deadline | None] = ContextVar("distcheck_resilience_deadline", default=None)


def current_deadline() -> Deadline | None:
    """The deadline of the innermost ``deadline(...)`` scope around this code, if any."""
    return _current.get()


@contextmanager
def deadline(limit: float | Deadline, clock: Clock = time.monotonic) -> Iterator[Deadline]:
    """A scope with a deadline: ``limit`` seconds from now (on ``clock``) or a
    ``Deadline``.  Inside, ``current_deadline()`` is the earlier of this one and the
    enclosing scope's, so a callee never gets more time than its caller has."""
    own = limit if isinstance(limit, Deadline) else Deadline.after(limit, clock)
    effective = own.earlier(_current.get())
    token = _current.set(effective)
    try:
        yield effective
    finally:
        _current.reset(token)
