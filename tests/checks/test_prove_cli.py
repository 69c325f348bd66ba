"""``distcheck prove``: exit codes, the JSON keys scripts rely on, readable
counterexamples, and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest

from distcheck.checks.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


OBLIGATIONS = ["CrossCheck", "Initiation", "Consecution", "Safety(TCConsistent)"]


@pytest.mark.parametrize("rms", ["3", "5"])
def test_twophase_proves_every_obligation(capsys: pytest.CaptureFixture[str], rms: str) -> None:
    code, out, err = run(capsys, "prove", "twophase", "-p", f"rms={rms}")
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0] == f"twophase rms={rms}, invariant TPInv"
    for name in OBLIGATIONS:
        row = next(line for line in lines if line.split()[:1] == [name])
        assert row.split()[1] == "proved"
        assert " s " in row  # its time is shown
    assert lines[-1].startswith("ok: 4 of 4 obligations proved, 0 failed")


def test_twophase_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "prove", "twophase", "-p", "rms=2", "--json")
    report = json.loads(out)
    assert code == 0
    assert {"spec", "params", "verdict", "obligations"} <= set(report)
    assert report["spec"] == "twophase"
    assert report["params"] == {"rms": 2}
    assert report["verdict"] == "ok"
    assert [o["name"] for o in report["obligations"]] == OBLIGATIONS
    for o in report["obligations"]:
        assert o["verdict"] == "proved"
        assert isinstance(o["seconds"], float) and o["seconds"] >= 0
        assert "counterexample" not in o
    assert "56 reachable states" in report["obligations"][0]["detail"]


def test_tcconsistent_alone_is_reported_non_inductive(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "prove", "twophase", "--invariant", "TCConsistent")
    assert code == 1
    assert "Consecution               failed" in out
    assert "counterexample to induction" in out
    assert "not reachable from Init: TCConsistent is too weak" in out
    assert "RMChooseToAbort" in out and "working → aborted" in out
    assert out.splitlines()[-1].startswith("violated:")

    code, out, _ = run(capsys, "prove", "twophase", "--invariant", "TCConsistent", "--json")
    report = json.loads(out)
    assert code == 1 and report["verdict"] == "violated" and report["invariant"] == "TCConsistent"
    failed = [o for o in report["obligations"] if o["verdict"] == "failed"]
    assert [o["name"] for o in failed] == ["Consecution"]
    cex = failed[0]["counterexample"]
    assert cex["failing"] == ["TCConsistent"]
    assert cex["state"]["type"] == "TPState" and cex["next_state"]["type"] == "TPState"
    assert cex["action"]["type"] == "RMChooseToAbort"


def test_a_broken_variant_fails_the_proof(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "prove", "twophase", "--variant", "commit_early")
    assert code == 1
    assert "CrossCheck                proved" in out  # the encoding matches the broken spec
    assert "TMCommit" in out and "CommitAfterAllPrepared" in out


def test_quorums_bft(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "prove", "quorums", "-p", "n=4", "-p", "f=1")
    assert code == 0, out
    assert out.splitlines()[-1].startswith("ok: 3 of 3 obligations proved")

    code, out, _ = run(capsys, "prove", "quorums", "-p", "n=3", "-p", "f=1")
    assert code == 1
    assert "QuorumIntersection        failed" in out
    assert "Q1 = {" in out and "Q2 = {" in out and "Q1 ∩ Q2 = {" in out

    code, out, _ = run(capsys, "prove", "quorums", "-p", "n=3", "-p", "f=1", "--json")
    report = json.loads(out)
    assert code == 1 and report["verdict"] == "violated"
    assert report["params"] == {"n": 3, "f": 1, "q": 2}
    cex = next(o for o in report["obligations"] if o["name"] == "QuorumIntersection")["counterexample"]
    assert len(cex["quorum_1"]) == 2 and len(cex["quorum_2"]) == 2 and len(cex["common"]) == 1


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["prove", "paxos9"], "nothing to prove called 'paxos9'; provable: twophase, "),  # more follow
        (["prove", "twophase", "-p", "rms=0"], "parameter rms of twophase must be between 1 and 9"),
        (["prove", "twophase", "-p", "n=3"], "unknown parameter 'n' for twophase; allowed: rms"),
        (["prove", "twophase", "--variant", "nope"], "unknown variant 'nope' for twophase"),
        (["prove", "twophase", "--invariant", "Nope"], "unknown invariant 'Nope'; known: TPInv, TCConsistent"),
        (["prove", "quorums", "-p", "n=0"], "parameter n of quorums must be between 1 and 40"),
        (["prove", "quorums", "-p", "f=x"], "parameter f of quorums must be an integer"),
        (["prove", "quorums", "-p", "n=3", "-p", "f=3"], "f must be less than n"),
        (["prove", "quorums", "--variant", "v"], "quorums has no variants"),
        (["prove", "quorums", "--invariant", "I"], "drop --invariant"),
        (["prove", "twophase", "--timeout", "0"], "must be a positive number of seconds"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert fragment in err


def test_no_cross_check_is_reported_as_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "prove", "twophase", "-p", "rms=2", "--no-cross-check")
    assert code == 0
    assert out.splitlines()[-1].startswith("ok: 3 of 4 obligations proved, 0 failed, 1 skipped")
    code, out, _ = run(capsys, "prove", "twophase", "-p", "rms=2", "--no-cross-check", "--json")
    report = json.loads(out)
    assert code == 0
    assert report["obligations"][0]["verdict"] == "skipped"
    assert [o["verdict"] for o in report["obligations"][1:]] == ["proved"] * 3
