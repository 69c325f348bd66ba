"""TwoPhase with 3, 5 and 7 RMs: distcheck's explorer and TLC side by side.

    .venv/bin/python benchmarks/twophase_vs_tlc.py [--rms 3 5 7] [--symmetry]

Both tools check the same model (benchmarks/tla/TwoPhase.tla mirrors
spec/twophase.py) in one run; the script checks that both report the same state
counts and prints wall times and the ratio distcheck/TLC (below 1: distcheck is
faster).  TLC's wall time includes starting the JVM (about a second), which
dominates the small models; TLC runs with one worker, as distcheck's explorer does.
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
from distcheck.spec.twophase import Config, TwoPhase

MODULE = Path(__file__).resolve().parent / "tla" / "TwoPhase.tla"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rms", type=int, nargs="+", default=[3, 5, 7])
    parser.add_argument("--symmetry", action="store_true", help="both tools reduce by RM symmetry")
    args = parser.parse_args()
    jar, why = find_tlc()
    if jar is None:
        print(f"TLC skipped: {why}")
    header = f"{'RMs':>3} {'sym':>3} {'distinct':>9} {'generated':>10} {'distcheck s':>11} {'TLC s':>7} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for n in args.rms:
        started = time.perf_counter()
        ours = explore(TwoPhase(Config(rms=n)), symmetry=args.symmetry)
        ours_s = time.perf_counter() - started
        stats = ours.stats
        sym = "yes" if args.symmetry else "no"
        row = f"{n:>3} {sym:>3} {stats.distinct_states:>9,} {stats.generated_states:>10,} {ours_s:>11.2f}"
        if jar is not None:
            rms = ", ".join(f"r{i}" for i in range(1, n + 1))
            cfg = f"CONSTANT RM = {{{rms}}}\nINIT Init\nNEXT Next\nINVARIANT TCConsistent\n"
            if args.symmetry:
                cfg += "SYMMETRY Symmetry\n"
            tlc = run_tlc(jar, MODULE, cfg)
            same = (tlc.distinct, tlc.generated) == (ours.stats.distinct_states, ours.stats.generated_states)
            if not args.symmetry and not same:
                print(f"MISMATCH: TLC {tlc.distinct:,} distinct / {tlc.generated:,} generated")
                return 1
            if args.symmetry and tlc.distinct != ours.stats.distinct_states:
                print(f"MISMATCH: TLC {tlc.distinct:,} distinct")
                return 1
            row += f" {tlc.wall_seconds:>7.2f} {ours_s / tlc.wall_seconds:>6.2f}"
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
