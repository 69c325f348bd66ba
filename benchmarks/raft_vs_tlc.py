"""Raft: distcheck's explorer and TLC side by side on the same model.

    .venv/bin/python benchmarks/raft_vs_tlc.py [--servers 2] [--values 1] [--max-term 2 3]
                                               [--max-log 1] [--max-msgs 1]

Both tools check the same model (benchmarks/tla/Raft.tla mirrors spec/raft.py,
history variables included) with the same bounds as a state constraint, one row per
``--max-term``.  The script checks that both report the same distinct states,
generated states and depth, and otherwise prints MISMATCH and exits 1; then it
prints the wall times and the ratio distcheck/TLC (below 1: distcheck is faster).
TLC's wall time includes starting the JVM (about a second); TLC runs with one
worker, as distcheck's explorer does.  TLC checks the invariants of spec/raft.py
and LeaderAppendOnly; distcheck checks those and its reachability properties (with
terms up to 2 no leaders are elected in two different terms, so LaterLeader is
reported unreached: that is no disagreement between the tools).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tlc import find_tlc, run_tlc

from distcheck.checks.search.explore import Result, explore
from distcheck.spec.raft import Config, Raft, server_names, value_names

MODULE = Path(__file__).resolve().parent / "tla" / "Raft.tla"
INVARIANTS = ("TypeOK", "ElectionSafety", "LogMatching", "LeaderCompleteness", "StateMachineSafety")


def tlc_config(config: Config) -> str:
    """The .cfg text for Raft.tla with ``config``'s constants and bounds."""
    return (
        "CONSTANTS\n"
        f"  Server = {{{', '.join(server_names(config.servers))}}}\n"
        f"  Value = {{{', '.join(value_names(config.values))}}}\n"
        f"  MaxTerm = {config.max_term}\n"
        f"  MaxLog = {config.max_log}\n"
        f"  MaxMsgs = {config.max_msgs}\n"
        "SPECIFICATION Spec\n"
        "CONSTRAINT Bounds\n"
        f"INVARIANTS {' '.join(INVARIANTS)}\n"
        "PROPERTY LeaderAppendOnly\n"
    )


def failed(result: Result) -> bool:
    """An invariant or step property failed (an unreached reachability property is
    no failure here: it says nothing about the state counts)."""
    return result.violation is not None and result.violation.kind != "unreached"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--values", type=int, default=1)
    parser.add_argument("--max-term", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--max-log", type=int, default=1)
    parser.add_argument("--max-msgs", type=int, default=1)
    args = parser.parse_args()
    jar, why = find_tlc()
    if jar is None:
        print(f"TLC skipped: {why}")
    print(f"model: servers={args.servers} values={args.values} max_log={args.max_log} max_msgs={args.max_msgs}")
    header = (
        f"{'max term':>8} {'distinct':>9} {'generated':>10} {'depth':>5} {'distcheck s':>11} {'TLC s':>7} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for max_term in args.max_term:
        config = Config(
            servers=args.servers,
            values=args.values,
            max_term=max_term,
            max_log=args.max_log,
            max_msgs=args.max_msgs,
        )
        started = time.perf_counter()
        ours = explore(Raft(config))
        ours_s = time.perf_counter() - started
        if failed(ours):
            print(f"distcheck: {ours.verdict} {ours.violation}")
            return 1
        stats = ours.stats
        row = f"{max_term:>8} {stats.distinct_states:>9,} {stats.generated_states:>10,} {stats.depth:>5}"
        if jar is not None:
            tlc = run_tlc(jar, MODULE, tlc_config(config), workers=1)
            if (tlc.distinct, tlc.generated, tlc.depth) != (stats.distinct_states, stats.generated_states, stats.depth):
                print(row)
                print(
                    f"MISMATCH (max term {max_term}): distcheck {stats.distinct_states:,} distinct, "
                    f"{stats.generated_states:,} generated, depth {stats.depth}; TLC {tlc.distinct:,} distinct, "
                    f"{tlc.generated:,} generated, depth {tlc.depth}"
                )
                return 1
            row += f" {ours_s:>11.2f} {tlc.wall_seconds:>7.2f} {ours_s / tlc.wall_seconds:>6.2f}"
        else:
            row += f" {ours_s:>11.2f} {'-':>7} {'-':>6}"
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
