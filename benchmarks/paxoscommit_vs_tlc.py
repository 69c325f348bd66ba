"""Paxos Commit: distcheck's explorer and TLC side by side on the same model.

    .venv/bin/python benchmarks/paxoscommit_vs_tlc.py [--rms 2 --acceptors 3 --max-ballot 1]
                                                      [--symmetry] [--workers 2]

Both tools run in one invocation (benchmarks/tla/PaxosCommit.tla mirrors
spec/paxoscommit.py); the script refuses to print a ratio unless both report the
same distinct-state count (and, without symmetry, the same generated count), then
prints each tool's wall time and peak memory and the ratios distcheck/TLC.  TLC
uses ``--workers`` threads; distcheck's explorer is single-threaded.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tlc import find_tlc, run_tlc

from distcheck.checks.search.explore import explore
from distcheck.spec.paxoscommit import Config, PaxosCommit

MODULE = Path(__file__).resolve().parent / "tla" / "PaxosCommit.tla"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rms", type=int, default=2)
    parser.add_argument("--acceptors", type=int, default=3)
    parser.add_argument("--max-ballot", type=int, default=1)
    parser.add_argument("--symmetry", action="store_true", help="both tools reduce by acceptor symmetry")
    parser.add_argument("--workers", type=int, default=2, help="TLC worker threads")
    args = parser.parse_args()

    spec = PaxosCommit(Config(rms=args.rms, acceptors=args.acceptors, max_ballot=args.max_ballot))
    started = time.perf_counter()
    ours = explore(spec, symmetry=args.symmetry)
    ours_s = time.perf_counter() - started
    ours_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats = ours.stats
    print(f"model: rms={args.rms} acceptors={args.acceptors} max_ballot={args.max_ballot} symmetry={args.symmetry}")
    print(
        f"distcheck: {stats.distinct_states:,} distinct, {stats.generated_states:,} generated, depth {stats.depth}, "
        f"{ours_s:.1f} s, peak {ours_mb:,.0f} MB"
    )

    jar, why = find_tlc()
    if jar is None:
        print(f"TLC skipped: {why}")
        return 0
    rms = ", ".join(f"r{i}" for i in range(1, args.rms + 1))
    accs = ", ".join(f"a{i}" for i in range(1, args.acceptors + 1))
    ballots = ", ".join(str(b) for b in range(args.max_ballot + 1))
    cfg = f"CONSTANTS RM = {{{rms}}}\n Acceptor = {{{accs}}}\n Ballot = {{{ballots}}}\nINIT Init\nNEXT Next\n"
    cfg += "INVARIANT TCConsistent\n" + ("SYMMETRY AcceptorSymmetry\n" if args.symmetry else "")
    tlc = run_tlc(jar, MODULE, cfg, workers=args.workers)
    tlc_mb = f"{tlc.peak_rss_mb:,.0f} MB" if tlc.peak_rss_mb is not None else "unknown"
    print(
        f"TLC ({args.workers} workers): {tlc.distinct:,} distinct, {tlc.generated:,} generated, depth {tlc.depth}, "
        f"{tlc.wall_seconds:.1f} s, peak {tlc_mb}"
    )
    if tlc.distinct != stats.distinct_states or (not args.symmetry and tlc.generated != stats.generated_states):
        print("MISMATCH: the two tools explored different state spaces; no ratio")
        return 1
    print(f"wall-time ratio distcheck/TLC: {ours_s / tlc.wall_seconds:.2f}")
    if tlc.peak_rss_mb:
        print(f"peak-memory ratio distcheck/TLC: {ours_mb / tlc.peak_rss_mb:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
