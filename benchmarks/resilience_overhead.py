"""Overhead per guarded call: distcheck's retry against tenacity, and distcheck's
circuit breaker against pybreaker, side by side in one run.

    .venv/bin/python benchmarks/resilience_overhead.py [--calls 200000] [--repeat 5]

Each case wraps a trivial function (it returns its argument) and calls it
``--calls`` times, ``--repeat`` times over; the script prints the best run's
nanoseconds per call, the same less the bare function's cost (the overhead), and
the ratio ours/theirs of the overheads.  The call always succeeds: this measures
what guarding costs on the path every call takes, not backoff (which sleeps).

- retry, decorator: ``retry(max_attempts=3, idempotent=True)`` against
  ``tenacity.retry(stop=stop_after_attempt(3))``.
- retry, loop: ``for attempt in Retrying(...): with attempt: ...`` against
  tenacity's ``for attempt in Retrying(...): with attempt: ...``.
- retry with a deadline: ours with ``deadline=60, attempt_timeout=1`` against
  tenacity with ``stop_after_attempt(3) | stop_after_delay(60)``.
- breaker, decorator: ``CircuitBreaker`` (in-memory) against ``pybreaker.CircuitBreaker``.
- breaker, with: ``with breaker:`` against pybreaker's ``with breaker.calling():``.

Where tenacity or pybreaker is missing (``pip install -e '.[bench]'``) its cases
say so and ours are measured alone.  Benchmarks are not run by CI.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from distcheck.impl.resilience import CircuitBreaker, Retrying, retry


def trivial(x: int) -> int:
    return x


def per_call_ns(run: Callable[[int], object], calls: int, repeat: int) -> float:
    """The best of ``repeat`` timings of ``run(calls)``, in nanoseconds per call."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        run(calls)
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


def calling(fn: Callable[[int], int]) -> Callable[[int], object]:
    def run(calls: int) -> None:
        for i in range(calls):
            fn(i)

    return run


def our_retry_loop(calls: int) -> None:
    policy = Retrying(max_attempts=3, idempotent=True)
    for i in range(calls):
        for attempt in policy:
            with attempt:
                trivial(i)


def our_breaker_with(calls: int) -> None:
    breaker = CircuitBreaker("bench")
    for i in range(calls):
        with breaker:
            trivial(i)


def peers() -> dict[str, Callable[[int], object] | str]:
    """The peers' cases, or why each is missing."""
    cases: dict[str, Callable[[int], object] | str] = {}
    try:
        # Imported by name: mypy then needs neither peer installed (CI installs only .[dev]).
        tenacity = importlib.import_module("tenacity")
    except ImportError:
        why = "tenacity is not installed (pip install 'tenacity>=8.2,<10')"
        cases.update({"retry decorator": why, "retry loop": why, "retry with deadline": why})
    else:
        cases["retry decorator"] = calling(tenacity.retry(stop=tenacity.stop_after_attempt(3))(trivial))
        cases["retry with deadline"] = calling(
            tenacity.retry(stop=tenacity.stop_after_attempt(3) | tenacity.stop_after_delay(60))(trivial)
        )

        def tenacity_loop(calls: int) -> None:
            policy = tenacity.Retrying(stop=tenacity.stop_after_attempt(3))
            for i in range(calls):
                for attempt in policy:
                    with attempt:
                        trivial(i)

        cases["retry loop"] = tenacity_loop
    try:
        pybreaker = importlib.import_module("pybreaker")
    except ImportError:
        why = "pybreaker is not installed (pip install 'pybreaker>=1.0,<2')"
        cases.update({"breaker decorator": why, "breaker with": why})
    else:
        cases["breaker decorator"] = calling(pybreaker.CircuitBreaker()(trivial))

        def pybreaker_with(calls: int) -> None:
            breaker = pybreaker.CircuitBreaker()
            for i in range(calls):
                with breaker.calling():
                    trivial(i)

        cases["breaker with"] = pybreaker_with
    return cases


def ours() -> dict[str, Callable[[int], object]]:
    return {
        "retry decorator": calling(retry(max_attempts=3, idempotent=True)(trivial)),
        "retry loop": our_retry_loop,
        "retry with deadline": calling(retry(max_attempts=3, idempotent=True, deadline=60, attempt_timeout=1)(trivial)),
        "breaker decorator": calling(CircuitBreaker("bench")(trivial)),
        "breaker with": our_breaker_with,
    }


def measure(calls: int, repeat: int) -> list[dict[str, Any]]:
    """One row per case: ours and the peer's ns per call and overheads, and the ratio."""
    bare = per_call_ns(calling(trivial), calls, repeat)
    theirs = peers()
    rows = []
    for case, run in ours().items():
        mine = per_call_ns(run, calls, repeat)
        row: dict[str, Any] = {"case": case, "bare": bare, "ours": mine, "ours_overhead": mine - bare}
        peer = theirs[case]
        if isinstance(peer, str):
            row["skipped"] = peer
        else:
            other = per_call_ns(peer, calls, repeat)
            row.update(theirs=other, theirs_overhead=other - bare, ratio=(mine - bare) / (other - bare))
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000, help="calls per timing")
    parser.add_argument("--repeat", type=int, default=5, help="timings per case; the best counts")
    args = parser.parse_args()
    if args.calls < 1 or args.repeat < 1:
        print("--calls and --repeat must be positive", file=sys.stderr)
        return 2
    rows = measure(args.calls, args.repeat)
    print(f"bare call: {rows[0]['bare']:.0f} ns; per guarded call (overhead = less the bare call):")
    print(f"{'case':<20} {'ours ns':>9} {'overhead':>9} {'theirs ns':>10} {'overhead':>9} {'ours/theirs':>12}  peer")
    for row in rows:
        peer = "tenacity" if row["case"].startswith("retry") else "pybreaker"
        if "skipped" in row:
            print(f"{row['case']:<20} {row['ours']:>9.0f} {row['ours_overhead']:>9.0f}  skipped: {row['skipped']}")
            continue
        print(
            f"{row['case']:<20} {row['ours']:>9.0f} {row['ours_overhead']:>9.0f} {row['theirs']:>10.0f}"
            f" {row['theirs_overhead']:>9.0f} {row['ratio']:>12.2f}  {peer}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
