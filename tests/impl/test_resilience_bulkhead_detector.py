"""impl/resilience's bulkhead (bounded concurrency under threads, BulkheadFull) and
failure detectors (phi accrual against its formula, the window, the minimum
standard deviation, the acceptable pause; the timeout detector).

No timing assertions: the detectors take ``now`` from the tests, and the bulkhead
tests wait on events, not on durations.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest

from distcheck.impl.resilience import Bulkhead, BulkheadFull, PhiAccrualDetector, TimeoutDetector

# ------------------------------------------------------------------ bulkhead


def test_at_most_max_concurrent_calls_run_and_the_next_is_turned_away() -> None:
    pool = Bulkhead(3, name="db")
    inside = threading.Barrier(4)  # three workers and this thread
    leave = threading.Event()
    most = 0
    guard = threading.Lock()

    @pool
    def work() -> None:
        nonlocal most
        with guard:
            most = max(most, pool.in_flight)
        inside.wait()
        leave.wait()

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    inside.wait()  # all three are inside
    with pytest.raises(BulkheadFull, match="bulkhead 'db' is full: 3 calls in flight and none ended within 0 s"):
        pool.call(lambda: None)
    leave.set()
    for t in threads:
        t.join()
    assert most == 3 and pool.in_flight == 0
    with pool:
        assert pool.in_flight == 1


def test_a_waiting_caller_gets_the_place_a_finished_call_frees() -> None:
    pool = Bulkhead(1, max_wait=60.0)
    pool.acquire()
    got_in = threading.Event()

    def waiter() -> None:
        with pool:
            got_in.set()

    t = threading.Thread(target=waiter)
    t.start()
    assert not got_in.is_set()
    pool.release()
    t.join()
    assert got_in.is_set() and pool.in_flight == 0
    with pytest.raises(RuntimeError, match="released more often than acquired"):
        pool.release()


def test_many_threads_never_exceed_the_limit() -> None:
    pool = Bulkhead(4, max_wait=60.0)
    most = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal most
        for _ in range(300):
            with pool:
                with guard:
                    most = max(most, pool.in_flight)

    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= most <= 4 and pool.in_flight == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((0,), "max_concurrent must be an integer of at least 1"),
        ((2.0,), "max_concurrent must be an integer"),
        ((2, -1), "max_wait must be a finite number of at least 0"),
        ((2, math.inf), "max_wait must be a finite number"),
    ],
)
def test_bulkhead_bad_arguments(args: tuple[Any, ...], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Bulkhead(*args)


# ------------------------------------------------------------------ phi


def expected_phi(since: float, mean: float, std: float) -> float:
    """-log10(1 - F(since)) for the normal distribution N(mean, std)."""
    return -math.log10(1 - 0.5 * (1 + math.erf((since - mean) / (std * math.sqrt(2)))))


def test_phi_is_the_papers_formula_over_the_observed_intervals() -> None:
    d = PhiAccrualDetector(first_interval=1.0, min_std_deviation=0.01)
    t = 0.0
    d.heartbeat(t)
    for interval in (1.0, 1.2, 0.8, 1.1, 0.9) * 4:
        t += interval
        d.heartbeat(t)
    # The two seeds from first_interval (0.75, 1.25) are in the window with the 20 intervals.
    window = [0.75, 1.25, *((1.0, 1.2, 0.8, 1.1, 0.9) * 4)]
    mean = sum(window) / len(window)
    std = math.sqrt(sum((x - mean) ** 2 for x in window) / len(window))
    got_mean, got_std = d.stats()
    assert got_mean == pytest.approx(mean) and got_std == pytest.approx(std)
    for since in (0.5, 1.0, 1.3, 1.6):
        assert d.phi(t + since) == pytest.approx(expected_phi(since, mean, std), rel=1e-6)
    assert d.phi(t + 0.5) < 1 < d.phi(t + 1.5)
    assert d.is_available(t + 1.0) and not d.is_available(t + 3.0)
    assert d.phi(t + 100) == math.inf  # far beyond: certain, and no overflow


def test_phi_grows_with_silence_and_the_threshold_decides() -> None:
    d = PhiAccrualDetector(threshold=3.0)
    for t in range(10):
        d.heartbeat(float(t))
    phis = [d.phi(9.0 + s / 10) for s in range(0, 40)]
    assert phis == sorted(phis) and phis[0] < 0.5
    assert d.is_available(10.0) and not d.is_available(12.0)
    assert d.is_available(12.0, threshold=100.0)  # a per-question threshold


def test_the_minimum_standard_deviation_keeps_regular_heartbeats_from_being_too_sensitive() -> None:
    strict = PhiAccrualDetector(min_std_deviation=0.01, max_samples=5)
    tolerant = PhiAccrualDetector(min_std_deviation=0.5, max_samples=5)
    for d in (strict, tolerant):
        for t in range(10):
            d.heartbeat(float(t))  # exactly 1 s apart: the window's deviation is 0
        assert d.stats()[0] == 1.0  # the seeds have left the 5-sample window
    assert strict.stats()[1] == 0.01 and tolerant.stats()[1] == 0.5
    assert strict.phi(10.2) > 8 > tolerant.phi(10.2)


def test_the_window_forgets_old_intervals_and_the_acceptable_pause_shifts_the_mean() -> None:
    d = PhiAccrualDetector(max_samples=3, acceptable_pause=2.0)
    t = 0.0
    d.heartbeat(t)
    for interval in (10.0, 10.0, 10.0, 1.0, 1.0, 1.0):
        t += interval
        d.heartbeat(t)
    assert d.stats()[0] == pytest.approx(1.0 + 2.0)
    assert d.is_available(t + 3.0) and not d.is_available(t + 6.0)


def test_before_any_heartbeat_phi_is_zero_and_the_clock_is_read_when_now_is_omitted() -> None:
    now = [0.0]
    d = PhiAccrualDetector(clock=lambda: now[0])
    assert (d.phi(), d.is_available(), d.monitoring) == (0.0, True, False)
    d.heartbeat()
    now[0] = 1.0
    d.heartbeat()
    now[0] = 30.0
    assert d.monitoring and not d.is_available()


def test_the_timeout_detector() -> None:
    now = [0.0]
    d = TimeoutDetector(2.0, clock=lambda: now[0])
    assert d.is_available() and not d.monitoring
    d.heartbeat()
    d.heartbeat(now=-5.0)  # an older heartbeat never moves it back
    now[0] = 2.0
    assert d.is_available()
    now[0] = 2.5
    assert not d.is_available() and d.is_available(now=1.0)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"threshold": 0}, "threshold must be greater than 0"),
        ({"max_samples": 0}, "max_samples must be an integer of at least 1"),
        ({"min_std_deviation": -1}, "min_std_deviation must be greater than 0"),
        ({"acceptable_pause": math.nan}, "acceptable_pause must be a finite number"),
        ({"first_interval": "1"}, "first_interval must be a finite number"),
        ({"clock": None}, "clock must be a function"),
    ],
)
def test_detector_bad_arguments(kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says) as caught:
        PhiAccrualDetector(**kwargs)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="timeout must be greater than 0"):
        TimeoutDetector(0)
