"""``distcheck simulate lock --service replicated``: the Raft lock service under
the controlled scheduler, from the command line.  A few runs with every fault
pass; the ``no_lease_wait`` server is caught by MutualExclusion, its trace file
validates as the Raft behaviour it is; bad ``--service`` input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distcheck.checks.cli import main

ALL_FAULTS = "crash,drop,duplicate,reorder,partition"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_replicated_service_passes_with_every_fault(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "simulate", "lock", "--service", "replicated", "--runs", "3", "--faults", ALL_FAULTS)
    assert code == 0, out
    assert "service=replicated: ok: 3 schedules passed" in out
    assert "MutualExclusion, FencedWrites on the storage's contents" in out and "every trace valid" in out


def test_a_new_leader_that_does_not_wait_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "failure.jsonl"
    argv = ["simulate", "lock", "--service", "replicated", "--variant", "no_lease_wait", "--faults", "crash,partition"]
    code, out, _ = run(capsys, *argv, "--runs", "10", "--json", "--trace-out", str(path))
    assert code == 1, out
    failure = json.loads(out)["failure"]
    assert failure["kind"] == "invariant" and "MutualExclusion violated" in failure["message"]
    assert "--service replicated --variant no_lease_wait" in failure["replay"]
    # the servers' steps are a behaviour of spec/raft: the mistake is in the lease
    # clock above the log, which only the lock's own checks see
    code, out, _ = run(capsys, "validate", "lock", str(path))
    assert code == 0 and "against raft servers=3 (the replicated lock service's trace): ok" in out, out


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["simulate", "lock", "--service", "nope"], "no service 'nope' of lock; its alternative implementations: "),
        (["simulate", "twophase", "--service", "replicated"], "no service 'replicated' of twophase"),
        (["simulate", "lock", "--service", "replicated", "--variant", "x"], "allowed: no_lease_wait"),
    ],
)
def test_bad_service_usage_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and fragment in err, err
