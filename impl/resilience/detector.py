"""Failure detectors over heartbeats: the phi accrual detector (Hayashibara,
Défago, Yared, Katayama, "The φ Accrual Failure Detector", SRDS 2004) and a plain
timeout detector.

Where it sits: part of ``impl/resilience``; a node feeds it the heartbeats it hears
from a peer and asks whether the peer is still available.  Time comes only from the
``now`` arguments or the injectable ``clock`` (``ctx.now`` on the project's runtime).

Phi: the detector keeps the last ``max_samples`` inter-arrival times, takes their
mean (plus ``acceptable_pause``, a pause that is still normal) and standard
deviation (at least ``min_std_deviation``), and models the next arrival as a normal
distribution; ``phi(now) = -log10(1 - F(now - last heartbeat))``.  A phi of 1 means
a 10% chance that suspecting the peer is a mistake, 2 a 1% chance, and so on; the
peer is available while phi is below ``threshold``.  Before the second heartbeat
there are no intervals: ``first_interval`` stands in for them (mean it, standard
deviation a quarter of it).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from distcheck.impl.resilience.deadline import Clock


def _positive(name: str, value: object, *, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not zero):
        raise ValueError(f"{name} must be {'at least' if zero else 'greater than'} 0, got {value!r}")
    return float(value)


class PhiAccrualDetector:
    """Defaults: Akka's cluster failure detector's (threshold 8, 1000 samples, 0.1 s
    minimum standard deviation), with ``acceptable_pause`` 0 where Akka takes 3 s:
    give the pause you can tolerate."""

    def __init__(
        self,
        *,
        threshold: float = 8.0,
        max_samples: int = 1000,
        min_std_deviation: float = 0.1,
        acceptable_pause: float = 0.0,
        first_interval: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.threshold = _positive("threshold", threshold)
        if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
            raise ValueError(f"max_samples must be an integer of at least 1, got {max_samples!r}")
        self.min_std_deviation = _positive("min_std_deviation", min_std_deviation)
        self.acceptable_pause = _positive("acceptable_pause", acceptable_pause, zero=True)
        self.first_interval = _positive("first_interval", first_interval)
        if not callable(clock):
            raise ValueError(f"clock must be a function, got {clock!r}")
        self.clock = clock
        self._intervals: deque[float] = deque(maxlen=max_samples)
        # Running sums over the window, so that phi costs O(1).
        self._sum = 0.0
        self._squares = 0.0
        self._last: float | None = None
        self._lock = threading.Lock()

    def heartbeat(self, now: float | None = None) -> None:
        """A heartbeat arrived (at ``now``, by default the clock's reading)."""
        at = self.clock() if now is None else now
        with self._lock:
            if self._last is None:
                # Seed the window as if one interval of first_interval, give or take a quarter, had been seen.
                spread = self.first_interval / 4
                for seed in (self.first_interval - spread, self.first_interval + spread):
                    self._add(seed)
            else:
                self._add(max(0.0, at - self._last))
            self._last = at

    def _add(self, interval: float) -> None:
        if len(self._intervals) == self._intervals.maxlen:
            dropped = self._intervals[0]
            self._sum -= dropped
            self._squares -= dropped * dropped
        self._intervals.append(interval)
        self._sum += interval
        self._squares += interval * interval

    def stats(self) -> tuple[float, float]:
        """The mean the detector expects between heartbeats (the acceptable pause
        included) and the standard deviation it uses."""
        with self._lock:
            n = len(self._intervals)
            if n == 0:
                return self.first_interval + self.acceptable_pause, self.first_interval / 4
            mean = self._sum / n
            variance = max(0.0, self._squares / n - mean * mean)
            return mean + self.acceptable_pause, max(self.min_std_deviation, math.sqrt(variance))

    def phi(self, now: float | None = None) -> float:
        """The suspicion level now; 0 before the first heartbeat (nothing to suspect yet)."""
        at = self.clock() if now is None else now
        last = self._last
        if last is None:
            return 0.0
        mean, std = self.stats()
        y = (at - last - mean) / std
        # 1 - F(t) of the normal distribution, computed without cancellation for large y.
        tail = 0.5 * math.erfc(y / math.sqrt(2))
        return math.inf if tail <= 0 else -math.log10(tail)

    @property
    def monitoring(self) -> bool:
        """Whether a heartbeat was ever heard."""
        return self._last is not None

    def is_available(self, now: float | None = None, threshold: float | None = None) -> bool:
        """Whether the peer counts as up: phi below the threshold."""
        return self.phi(now) < (self.threshold if threshold is None else threshold)


class TimeoutDetector:
    """Available while the last heartbeat is at most ``timeout`` old."""

    def __init__(self, timeout: float, *, clock: Clock = time.monotonic) -> None:
        self.timeout = _positive("timeout", timeout)
        if not callable(clock):
            raise ValueError(f"clock must be a function, got {clock!r}")
        self.clock = clock
        self._last: float | None = None

    def heartbeat(self, now: float | None = None) -> None:
        at = self.clock() if now is None else now
        if self._last is None or at > self._last:
            self._last = at

    @property
    def monitoring(self) -> bool:
        """Whether a heartbeat was ever heard."""
        return self._last is not None

    def is_available(self, now: float | None = None) -> bool:
        """Before the first heartbeat: available, as with the phi detector (nothing to suspect yet)."""
        last = self._last
        return last is None or (self.clock() if now is None else now) - last <= self.timeout
