"""Linearizability: distcheck's checker and Porcupine side by side on the same history files.

    .venv/bin/python benchmarks/linearizability_vs_porcupine.py [--porcupine DIR] [--repeat 3]
        [--sets kv etcd] [--max-steps N]

Issue #21.  Porcupine (github.com/anishathalye/porcupine, the Go checker) is built
from a local copy of its source: ``--porcupine DIR`` or the ``PORCUPINE_SRC``
environment variable names the directory (its go.mod says ``module
github.com/anishathalye/porcupine``).  The script copies our driver,
``benchmarks/porcupine/main.go``, into a temporary directory with a go.mod that
requires Porcupine and replaces it with that directory, and builds it with ``go
build`` offline (``GOPROXY=off``, ``GOFLAGS=-mod=mod``).  Where ``go`` or the source
is missing it says so in one line and measures distcheck alone (exit 0).

The files, each checked by both tools:

- ``kv``: Porcupine's six key-value histories (``tests/data/porcupine-kv/``, EDN),
  ``distcheck linearizable FILE --model kv --initial '""'`` against our driver's
  ``-format kv`` (Porcupine's model partitioned by key);
- ``etcd``: Jepsen's etcd register logs from Porcupine's test data
  (``benchmarks/data/porcupine-etcd/``), ``--format etcd --model cas-register``
  against ``-format etcd`` (one compare-and-set register).

Per file, each measured ``--repeat`` times, the best counting:

- wall: the whole command, process start included (for distcheck the Python
  interpreter and its imports, for Porcupine the Go binary's start), reading the
  file, checking and printing;
- check: the check alone, in the process, the file already read.  Ours:
  ``read_history`` (checks/histories/formats.py), then ``check_history``
  (checks/histories/linearizability.py) on each sub-history, smallest first, in a
  round of short searches and then one up to ``--max-steps``, as the command orders
  them.  Porcupine's: the ``porcupine.CheckOperations`` call, as our driver reports it.

The verdicts of the three (our command, our in-process check, Porcupine) must be
the same for every file; otherwise the script prints MISMATCH and exits 1.  The
table gives the times and the ratio ours/Porcupine, per file and for each set's
total (below 1: distcheck is faster), and what starting each command costs alone
(``distcheck linearizable --help``; the driver given no file).  The load average
is printed before and after, since the machine is shared.  Benchmarks are not run by CI.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from distcheck.checks.histories.formats import read_history
from distcheck.checks.histories.linearizability import HistoryTooLarge, Model, check_history
from distcheck.checks.histories.models import load_model

ROOT = Path(__file__).resolve().parent.parent
DRIVER = Path(__file__).resolve().parent / "porcupine" / "main.go"
PORCUPINE_MODULE = "github.com/anishathalye/porcupine"
# The command's first round: a short search on every sub-history, so that one that
# fails quickly is found before another's long search (checks/cli/histories.py).
FIRST_ROUND_STEPS = 10_000


@attrs.frozen
class FileSet:
    """History files and how each tool is told to read them."""

    name: str
    files: tuple[Path, ...]
    distcheck_args: tuple[str, ...]  # after the file, for `distcheck linearizable`
    model: str
    initial: Any  # the model's initial value; None: the model's default
    format: str  # for read_history
    porcupine_format: str  # our driver's -format


SETS: dict[str, FileSet] = {
    "kv": FileSet(
        "kv",
        tuple(sorted((ROOT / "tests" / "data" / "porcupine-kv").glob("*.txt"))),
        ("--model", "kv", "--initial", '""'),
        "kv",
        "",
        "edn",
        "kv",
    ),
    "etcd": FileSet(
        "etcd",
        tuple(sorted((ROOT / "benchmarks" / "data" / "porcupine-etcd").glob("*.log"))),
        ("--format", "etcd", "--model", "cas-register"),
        "cas-register",
        None,
        "etcd",
        "etcd",
    ),
}

# The verdicts both tools can give (ours may also be "unknown": the budget ran out).
VERDICTS = ("ok", "violated")


@attrs.frozen
class Run:
    verdict: str  # ok, violated, unknown (ours); ok, violated (Porcupine's answer in our words)
    operations: int
    wall: float  # seconds, the best of the repeats
    check: float  # seconds, the best of the repeats
    read: float = 0.0  # ours: read_history, the best of the repeats
    steps: int = 0  # ours: the search's steps (the same every time)


# ------------------------------------------------------------------ distcheck


def our_model(fileset: FileSet) -> Model[Any]:
    return load_model(fileset.model) if fileset.initial is None else load_model(fileset.model, fileset.initial)


def check_in_process(path: Path, fileset: FileSet, max_steps: int) -> tuple[str, int, float, float, int]:
    """Our verdict on ``path``, its operations, the seconds read_history and the check
    took, and the search's steps (0 where the checker does not count them).  The
    sub-histories are checked smallest first, in a round of ``FIRST_ROUND_STEPS``
    each and then one of ``max_steps``, stopping at the first that no order explains."""
    model = our_model(fileset)
    started = time.perf_counter()
    history = read_history(path, model, fileset.format)
    read = time.perf_counter() - started
    started = time.perf_counter()
    verdict, steps = _check_parts(model, history.operations, max_steps)
    return verdict, len(history.operations), read, time.perf_counter() - started, steps


def _check_parts(model: Model[Any], ops: Sequence[Any], max_steps: int) -> tuple[str, int]:
    parts = sorted(model.partition(ops), key=len)
    undecided = list(range(len(parts)))
    budget = min(FIRST_ROUND_STEPS, max_steps)
    steps = 0
    while undecided:
        still = []
        for index in undecided:
            try:
                result = check_history(parts[index], model, max_steps=budget)
            except HistoryTooLarge as exc:
                steps += _steps(exc)
                still.append(index)
                continue
            steps += _steps(result)
            if not result.ok:
                return "violated", steps
        if still and budget >= max_steps:
            return "unknown", steps
        undecided, budget = still, max_steps
    return "ok", steps


def _steps(outcome: object) -> int:
    # The search's step count, where the checker reports one (on its result, or on
    # the HistoryTooLarge it raised); read by name so that this runs either way.
    steps = getattr(outcome, "steps", 0)
    return steps if isinstance(steps, int) else 0


def run_distcheck_command(path: Path, fileset: FileSet) -> tuple[str, float]:
    """The verdict `distcheck linearizable` prints for ``path`` and the command's wall time."""
    command = [sys.executable, "-m", "distcheck", "linearizable", str(path), *fileset.distcheck_args]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    first = done.stdout.splitlines()[0] if done.stdout else ""
    match = re.match(r".*: (ok|violated|unknown)$", first)
    if done.returncode not in (0, 1) or match is None:
        raise RuntimeError(f"distcheck failed on {path} (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return match.group(1), wall


def measure_ours(path: Path, fileset: FileSet, repeat: int, max_steps: int) -> Run:
    verdicts: set[str] = set()
    walls, checks, reads = [], [], []
    operations = steps = 0
    for _ in range(repeat):
        verdict, wall = run_distcheck_command(path, fileset)
        verdicts.add(f"command {verdict}")
        walls.append(wall)
        verdict, operations, read, check, steps = check_in_process(path, fileset, max_steps)
        verdicts.add(f"in-process {verdict}")
        checks.append(check)
        reads.append(read)
    said = {v.split()[1] for v in verdicts}
    verdict = said.pop() if len(said) == 1 else "disagree: " + ", ".join(sorted(verdicts))
    return Run(verdict, operations, min(walls), min(checks), min(reads), steps)


# ------------------------------------------------------------------ Porcupine


def find_porcupine(source: str | None) -> tuple[Path | None, str]:
    """Porcupine's source directory, or None and what is missing and how to get it."""
    if shutil.which("go") is None:
        return None, "go is not installed (apt-get install golang-go: Go 1.19 or later)"
    if not source:
        return None, (
            "no Porcupine source given: pass --porcupine DIR or set PORCUPINE_SRC to a copy of "
            f"{PORCUPINE_MODULE} (its go.mod, checker.go, model.go, porcupine.go, bitset.go)"
        )
    directory = Path(source).resolve()
    go_mod = directory / "go.mod"
    if not go_mod.is_file() or f"module {PORCUPINE_MODULE}" not in go_mod.read_text(errors="replace"):
        return None, f"{directory} is not Porcupine's source: it needs a go.mod saying 'module {PORCUPINE_MODULE}'"
    return directory, ""


def go_environment(work: Path) -> dict[str, str]:
    """Offline: no module proxy, no checksum database, the local toolchain."""
    env = dict(os.environ)
    env.update(GOFLAGS="-mod=mod", GOPROXY="off", GOSUMDB="off", GOTOOLCHAIN="local", GOWORK="off")
    if "HOME" not in env and "GOCACHE" not in env:
        env["GOCACHE"] = str(work / "cache")  # go needs a build cache somewhere
    return env


def build_driver(source: Path, work: Path) -> tuple[Path | None, str]:
    """Our driver built against ``source`` in ``work``: the binary, or None and why not."""
    (work / "go.mod").write_text(
        "module distcheck.local/porcupinecheck\n\ngo 1.18\n\n"
        f"require {PORCUPINE_MODULE} v0.0.0\n\nreplace {PORCUPINE_MODULE} => {source}\n"
    )
    shutil.copy(DRIVER, work / "main.go")
    binary = work / "porcupine-check"
    done = subprocess.run(
        ["go", "build", "-o", str(binary), "."], cwd=work, env=go_environment(work), capture_output=True, text=True
    )
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        return None, "go build failed: " + ("; ".join(lines[:3]) or f"exit {done.returncode}")
    return binary, ""


def run_porcupine(binary: Path, path: Path, fmt: str) -> tuple[dict[str, Any], float]:
    """Our driver's report on ``path`` and the command's wall time."""
    started = time.perf_counter()
    done = subprocess.run([str(binary), "-format", fmt, str(path)], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"porcupine-check failed on {path} (exit {done.returncode}): {done.stderr.strip()}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report, wall


def measure_porcupine(binary: Path, path: Path, fmt: str, repeat: int) -> Run:
    answers: set[bool] = set()
    walls, checks = [], []
    operations = 0
    for _ in range(repeat):
        report, wall = run_porcupine(binary, path, fmt)
        answers.add(bool(report["linearizable"]))
        operations = int(report["operations"])
        walls.append(wall)
        checks.append(float(report["check_seconds"]))
    verdict = ("ok" if answers.pop() else "violated") if len(answers) == 1 else "disagree"
    return Run(verdict, operations, min(walls), min(checks))


def start_cost(command: Sequence[str], repeat: int) -> float:
    """The best wall time of ``command`` (one that exits at once: what starting costs)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(list(command), capture_output=True, cwd=ROOT)
        best = min(best, time.perf_counter() - started)
    return best


# ---------------------------------------------------------------------- table


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}" if theirs > 0 else "-"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--porcupine",
        metavar="DIR",
        default=os.environ.get("PORCUPINE_SRC"),
        help="Porcupine's source directory (default: $PORCUPINE_SRC)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="measurements per file and tool; the best counts")
    parser.add_argument("--sets", nargs="+", choices=sorted(SETS), default=["kv", "etcd"], help="which files")
    parser.add_argument(
        "--max-steps", type=int, default=10_000_000, help="our search's budget per sub-history (second round)"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.max_steps < 1:
        print("--repeat and --max-steps must be positive", file=sys.stderr)
        return 2
    for name in args.sets:
        if not SETS[name].files:
            print(f"no history files for the {name} set", file=sys.stderr)
            return 2

    source, why = find_porcupine(args.porcupine)
    with tempfile.TemporaryDirectory(prefix="porcupine-check-") as tmp:
        binary: Path | None = None
        if source is not None:
            binary, why = build_driver(source, Path(tmp))
        if binary is None:
            print(f"Porcupine skipped: {why}; measuring distcheck alone")
        else:
            go = subprocess.run(["go", "version"], capture_output=True, text=True).stdout.strip()
            print(f"Porcupine: {source} ({go})")
        return _measure_and_print(args, binary)


def _measure_and_print(args: argparse.Namespace, binary: Path | None) -> int:
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; best of {args.repeat}")
    print(
        "wall: the whole command, process start included; check: the check alone in the process "
        "(ours: check_history, the file read; Porcupine: CheckOperations)"
    )
    header = (
        f"{'set':<5} {'file':<14} {'ops':>5} {'verdict':<9} {'ours wall':>9} {'Porc wall':>9} {'ratio':>6}"
        f" {'ours check':>10} {'Porc check':>10} {'ratio':>6} {'ours read':>9} {'ours steps':>10}"
    )
    print(header)
    print("-" * len(header))
    mismatches: list[str] = []
    for name in args.sets:
        fileset = SETS[name]
        totals = [0.0, 0.0, 0.0, 0.0]  # ours wall, Porcupine wall, ours check, Porcupine check
        for path in fileset.files:
            ours = measure_ours(path, fileset, args.repeat, args.max_steps)
            theirs = None if binary is None else measure_porcupine(binary, path, fileset.porcupine_format, args.repeat)
            row = f"{name:<5} {path.name:<14} {ours.operations:>5} {ours.verdict:<9} {ours.wall:>9.3f}"
            if ours.verdict not in VERDICTS:
                mismatches.append(f"{path.name}: distcheck says {ours.verdict}")
            if theirs is None:
                row += f" {'-':>9} {'-':>6} {ours.check:>10.3f} {'-':>10} {'-':>6}"
            else:
                if theirs.verdict != ours.verdict:
                    mismatches.append(f"{path.name}: distcheck {ours.verdict}, Porcupine {theirs.verdict}")
                if theirs.operations != ours.operations:
                    mismatches.append(
                        f"{path.name}: distcheck read {ours.operations} operations, Porcupine {theirs.operations}"
                    )
                row += (
                    f" {theirs.wall:>9.3f} {ratio(ours.wall, theirs.wall):>6} {ours.check:>10.3f}"
                    f" {theirs.check:>10.4f} {ratio(ours.check, theirs.check):>6}"
                )
                totals[1] += theirs.wall
                totals[3] += theirs.check
            totals[0] += ours.wall
            totals[2] += ours.check
            print(row + f" {ours.read:>9.3f} {ours.steps:>10,}")
        if binary is None:
            print(f"{name:<5} {'total':<14} {'':>5} {'':<9} {totals[0]:>9.3f} {'-':>9} {'-':>6} {totals[2]:>10.3f}")
        else:
            print(
                f"{name:<5} {'total':<14} {'':>5} {'':<9} {totals[0]:>9.3f} {totals[1]:>9.3f}"
                f" {ratio(totals[0], totals[1]):>6} {totals[2]:>10.3f} {totals[3]:>10.4f}"
                f" {ratio(totals[2], totals[3]):>6}"
            )
    ours_start = start_cost([sys.executable, "-m", "distcheck", "linearizable", "--help"], args.repeat)
    start = f"process start alone: distcheck linearizable --help {ours_start:.3f} s"
    if binary is not None:
        start += f", porcupine-check with no file {start_cost([str(binary)], args.repeat):.4f} s"
    print(start)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("ratio = ours / Porcupine (below 1: distcheck is faster)")
    for line in mismatches:
        print(f"MISMATCH {line}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
