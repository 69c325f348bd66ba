"""How long ``distcheck validate`` takes on a long trace, and how much memory.

Writes a valid trace of two-phase commit (``spec/twophase.py``, 3 RMs) with
2,000,000 steps: many transactions interleaved, each one a behaviour of the spec
as an implementation logs it (no states; ``txn`` names the transaction), then runs
``distcheck validate twophase FILE --split txn`` in this process and prints the
wall time, the CPU time and the peak memory (``resource.getrusage``).

    .venv/bin/python benchmarks/validate_large_trace.py [--steps N] [--keep FILE]

The behaviours are random walks of the spec to a final state (every RM committed or
aborted), drawn once from a fixed seed and reused under fresh transaction ids, so
the file is the same on every run.  Issue #13 asks for well under a minute and
under 1 GB at 2 million steps.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from distcheck.checks.cli.main import main as distcheck
from distcheck.spec.registry import REGISTRY

LIVE = 64  # transactions in progress at any time (their steps interleave)


def behaviours(count: int, seed: int) -> list[list[dict[str, Any]]]:
    """``count`` random complete behaviours of TwoPhase, as the events a log holds."""
    spec = REGISTRY["twophase"].make(rms=3)
    rng = random.Random(seed)
    out: list[list[dict[str, Any]]] = []
    for _ in range(count):
        state = next(iter(spec.init_states()))
        events: list[dict[str, Any]] = []
        while True:
            options = [(a, s) for a, s in spec.successors(state) if s != state]
            if not options or len(events) > 40:
                break
            action, state = rng.choice(options)
            observed = spec.observe(state, action)
            if observed is not None:
                events.append(dict(observed))
        out.append(events)
    return out


def write_trace(path: Path, steps: int, seed: int = 13) -> int:
    """A valid trace of ``steps`` steps after step 0; returns the transactions in it."""
    rng = random.Random(seed)
    pool = [[json.dumps(e, sort_keys=True)[1:-1] for e in b] for b in behaviours(200, seed)]
    header = {
        "format": "distcheck-trace",
        "version": 1,
        "spec": "twophase",
        "params": {"rms": 3},
        "variant": None,
        "source": "impl",
        "violation": None,
    }
    live: list[tuple[str, list[str], int]] = []
    txns = 0
    written = 0
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps(header) + "\n")
        out.write('{"step": 0, "actor": null, "action": null}\n')
        while written < steps:
            while len(live) < LIVE:
                txns += 1
                live.append((f"t{txns}", rng.choice(pool), 0))
            k = rng.randrange(len(live))
            txn, events, at = live[k]
            written += 1
            out.write(f'{{"step": {written}, {events[at]}, "txn": "{txn}"}}\n')
            if at + 1 == len(events):
                live[k] = live[-1]
                live.pop()
            else:
                live[k] = (txn, events, at + 1)
    return txns


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2_000_000, help="steps in the trace (default 2,000,000)")
    parser.add_argument("--keep", metavar="FILE", help="write the trace here and keep it (default: a temporary file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep) if args.keep else Path(tmp) / "large.jsonl"
        started = time.perf_counter()
        txns = write_trace(path, args.steps)
        wrote = time.perf_counter() - started
        size = path.stat().st_size
        print(f"wrote {args.steps:,} steps ({txns:,} transactions, {size / 1e6:,.0f} MB) in {wrote:.1f} s")
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        code = distcheck(["validate", "twophase", str(path), "--split", "txn"])
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    peak_mb = after.ru_maxrss / 1024  # Linux reports kilobytes
    print(
        f"validate: exit {code}, {seconds:.1f} s wall, {cpu:.1f} s CPU, peak memory {peak_mb:,.0f} MB "
        f"({args.steps / seconds:,.0f} steps/s)"
    )
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
