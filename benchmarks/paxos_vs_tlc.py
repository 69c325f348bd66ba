"""Paxos with 3 acceptors, majority quorums and 2 values: distcheck and TLC side by side.

    .venv/bin/python benchmarks/paxos_vs_tlc.py [--max-ballot 1 2] [--symmetry]

Both tools check the same model (benchmarks/tla/Paxos.tla mirrors spec/paxos.py)
with Agreement as the invariant, in one run; the script checks that both report
the same distinct states and depth, and prints generated states, wall times and
the ratio distcheck/TLC (below 1: distcheck is faster).  Generated counts differ
by design: TLC generates one Phase2a successor per quorum that allows it.  TLC's
wall time includes starting the JVM (about a second); TLC runs with one worker,
as distcheck's explorer does.  With --max-ballot 2 (185,369 states) distcheck
takes minutes: it checks the whole inductive invariant, TLC only Agreement.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tlc import find_tlc, run_tlc

from distcheck.checks.search.explore import explore
from distcheck.spec.paxos import Config, Paxos

MODULE = Path(__file__).resolve().parent / "tla" / "Paxos.tla"
CFG = """CONSTANTS
  Value = {v1, v2}
  Acceptor = {a1, a2, a3}
  Quorum = {{a1, a2}, {a1, a3}, {a2, a3}}
  MaxBallot = %d
SPECIFICATION Spec
INVARIANT Agreement
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-ballot", type=int, nargs="+", default=[1])
    parser.add_argument("--symmetry", action="store_true", help="both tools reduce by acceptor symmetry")
    args = parser.parse_args()
    jar, why = find_tlc()
    if jar is None:
        print(f"TLC skipped: {why}")
    header = (
        f"{'ballots':>7} {'distinct':>9} {'depth':>5} {'generated':>10} {'TLC generated':>13}"
        f" {'distcheck s':>11} {'TLC s':>7} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for max_ballot in args.max_ballot:
        started = time.perf_counter()
        ours = explore(Paxos(Config(acceptors=3, values=2, max_ballot=max_ballot)), symmetry=args.symmetry)
        ours_s = time.perf_counter() - started
        if not ours.ok:
            print(f"distcheck: {ours.verdict} {ours.violation}")
            return 1
        stats = ours.stats
        row = f"{'0..' + str(max_ballot):>7} {stats.distinct_states:>9,} {stats.depth:>5} {stats.generated_states:>10,}"
        if jar is not None:
            tlc = run_tlc(jar, MODULE, CFG % max_ballot + ("SYMMETRY Symmetry\n" if args.symmetry else ""))
            if (tlc.distinct, tlc.depth) != (stats.distinct_states, stats.depth):
                print(f"MISMATCH: TLC {tlc.distinct:,} distinct, depth {tlc.depth}")
                return 1
            row += f" {tlc.generated:>13,} {ours_s:>11.2f} {tlc.wall_seconds:>7.2f} {ours_s / tlc.wall_seconds:>6.2f}"
        else:
            row += f" {'-':>13} {ours_s:>11.2f}"
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
