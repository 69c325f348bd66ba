"""A bulkhead: at most ``max_concurrent`` calls at once through one guard, a caller
waiting at most ``max_wait`` seconds for a place.

Where it sits: part of ``impl/resilience``; it keeps one slow dependency from
taking every thread (Nygard's bulkheads).  Unlike retry and the breaker it waits on
a ``threading.Condition``, real time: under the project's deterministic scheduler
use ``max_wait=0`` (reject at once when full), which never blocks.

    pool = Bulkhead(max_concurrent=8, max_wait=0.1)

    @pool
    def render(page: Page) -> bytes: ...
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class BulkheadFull(Exception):
    """No place became free within ``max_wait``."""

    def __init__(self, name: str, max_concurrent: int, max_wait: float) -> None:
        self.name = name
        super().__init__(
            f"bulkhead {name!r} is full: {max_concurrent} calls in flight and none ended within {max_wait:g} s"
        )


class Bulkhead:
    def __init__(self, max_concurrent: int, max_wait: float = 0.0, *, name: str = "bulkhead") -> None:
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ValueError(f"max_concurrent must be an integer of at least 1, got {max_concurrent!r}")
        if (
            isinstance(max_wait, bool)
            or not isinstance(max_wait, (int, float))
            or not math.isfinite(max_wait)
            or max_wait < 0
        ):
            raise ValueError(f"max_wait must be a finite number of at least 0, got {max_wait!r}")
        self.name = name
        self.max_concurrent = max_concurrent
        self.max_wait = float(max_wait)
        self._in_flight = 0
        self._free = threading.Condition()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def acquire(self) -> None:
        """Take a place, waiting at most ``max_wait``; ``BulkheadFull`` otherwise."""
        with self._free:
            if self._in_flight >= self.max_concurrent and (
                self.max_wait == 0
                or not self._free.wait_for(lambda: self._in_flight < self.max_concurrent, self.max_wait)
            ):
                raise BulkheadFull(self.name, self.max_concurrent, self.max_wait)
            self._in_flight += 1

    def release(self) -> None:
        with self._free:
            if self._in_flight == 0:
                raise RuntimeError(f"bulkhead {self.name!r} released more often than acquired")
            self._in_flight -= 1
            self._free.notify()

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        self.acquire()
        try:
            return fn(*args, **kwargs)
        finally:
            self.release()

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            return self.call(fn, *args, **kwargs)

        return guarded

    def __enter__(self) -> Bulkhead:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
