"""Smoke test of ``benchmarks/linearizability_vs_porcupine.py``: our side on small
files in the process and as the command, the script run without Porcupine (one
line saying what is missing, exit 0), and, where Go and Porcupine's source
(``PORCUPINE_SRC``) are present, our Go driver built against it giving the same
verdicts and operation counts as distcheck.

It checks that the benchmark runs and that both tools agree, not how fast either is.
The expected verdicts are Porcupine's own classification of its files: ``-ok``
linearizable, ``-bad`` not (tests/data/porcupine-kv/README.md); for its etcd logs,
Porcupine's test expects etcd_000 not linearizable and etcd_002 linearizable.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import attrs
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import linearizability_vs_porcupine as bench  # a script folder, put on the path above

KV = bench.SETS["kv"]
ETCD = bench.SETS["etcd"]
KV_DIR = bench.ROOT / "tests" / "data" / "porcupine-kv"
ETCD_DIR = bench.ROOT / "benchmarks" / "data" / "porcupine-etcd"

# (file, its set, Porcupine's verdict in our words)
SMALL = [
    (KV_DIR / "c01-ok.txt", KV, "ok"),
    (KV_DIR / "c01-bad.txt", KV, "violated"),
    (ETCD_DIR / "etcd_000.log", ETCD, "violated"),
    (ETCD_DIR / "etcd_002.log", ETCD, "ok"),
]


@pytest.mark.parametrize(("path", "fileset", "expected"), SMALL, ids=[p.name for p, _, _ in SMALL])
def test_our_in_process_check_classifies_porcupines_files_as_porcupine_does(
    path: Path, fileset: bench.FileSet, expected: str
) -> None:
    verdict, operations, read, check, steps = bench.check_in_process(path, fileset, max_steps=1_000_000)
    assert verdict == expected
    assert operations > 0 and read >= 0 and check >= 0 and steps >= 0


def test_the_command_gives_the_in_process_verdict() -> None:
    path = KV_DIR / "c01-bad.txt"
    verdict, wall = bench.run_distcheck_command(path, KV)
    assert verdict == bench.check_in_process(path, KV, max_steps=1_000_000)[0]
    assert wall > 0


def test_without_porcupine_the_script_says_what_is_missing_and_measures_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    one = attrs.evolve(ETCD, files=(ETCD_DIR / "etcd_000.log",))
    monkeypatch.setitem(bench.SETS, "etcd", one)
    missing = tmp_path / "no-porcupine-here"
    code = bench.main(["--sets", "etcd", "--repeat", "1", "--porcupine", str(missing)])
    out = capsys.readouterr().out
    assert code == 0, out
    skipped = [line for line in out.splitlines() if line.startswith("Porcupine skipped:")]
    assert len(skipped) == 1, out
    assert "golang-go" in skipped[0] or str(missing) in skipped[0], skipped
    assert "etcd_000.log" in out and "violated" in out and "MISMATCH" not in out


def test_find_porcupine_names_what_is_missing(tmp_path: Path) -> None:
    source, why = bench.find_porcupine(str(tmp_path))
    assert source is None
    assert "golang-go" in why or "go.mod" in why
    source, why = bench.find_porcupine(None)
    assert source is None
    assert "golang-go" in why or "PORCUPINE_SRC" in why


PORCUPINE, WHY_NOT = bench.find_porcupine(os.environ.get("PORCUPINE_SRC"))


@pytest.mark.skipif(PORCUPINE is None, reason=f"Porcupine cannot run: {WHY_NOT}")
def test_porcupine_and_distcheck_agree_on_small_files(tmp_path: Path) -> None:
    assert PORCUPINE is not None
    binary, why = bench.build_driver(PORCUPINE, tmp_path)
    assert binary is not None, why
    for path, fileset, _ in SMALL:
        theirs = bench.measure_porcupine(binary, path, fileset.porcupine_format, repeat=1)
        verdict, operations, *_ = bench.check_in_process(path, fileset, max_steps=1_000_000)
        assert (theirs.verdict, theirs.operations) == (verdict, operations), path.name
