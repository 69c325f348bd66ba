"""The distcheck command: output keys scripts depend on, exit codes, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from distcheck.checks.cli import main
from distcheck.spec.registry import REGISTRY


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "--json")
    assert code == 0
    listing = json.loads(out)
    assert [item["name"] for item in listing] == list(REGISTRY)
    twophase = next(item for item in listing if item["name"] == "twophase")
    assert twophase["params"] == {"rms": 3}
    assert set(twophase["variants"]) == set(REGISTRY["twophase"].variants)
    assert all(isinstance(text, str) and text for text in twophase["variants"].values())


def test_check_json_keys_and_parity(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "twophase", "-p", "rms=3", "--json")
    report = json.loads(out)
    assert code == 0
    assert {
        "spec",
        "params",
        "variant",
        "symmetry",
        "verdict",
        "distinct_states",
        "generated_states",
        "depth",
        "seconds",
    } <= set(report)
    assert (report["spec"], report["params"], report["verdict"]) == ("twophase", {"rms": 3}, "ok")
    assert report["distinct_states"] == 288 and report["generated_states"] == 1146 and report["depth"] == 11


def test_check_symmetry_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "twophase", "-p", "rms=5", "--symmetry", "--json")
    assert code == 0 and json.loads(out)["distinct_states"] == 314


def test_check_tcommit_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "tcommit", "-p", "rms=3")
    assert code == 0 and "34 distinct states" in out


def test_variant_exits_1_with_a_step_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "twophase", "--variant", "commit_early")
    assert code == 1
    assert "TCConsistent violated after 3 steps" in out
    assert "TMCommit" in out and "rm_state[r2]: working → committed" in out
    assert "no RM has committed while another has aborted" in out


def test_variant_json_violation(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "twophase", "--variant", "commit_early", "--json")
    report = json.loads(out)
    assert code == 1 and report["verdict"] == "violated"
    assert report["violation"]["invariant"] == "TCConsistent"
    trace = report["violation"]["trace"]
    assert trace[0]["action"] is None and trace[1]["action"] == {"type": "TMCommit"}
    assert all("state" in step for step in trace)


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["check", "nope"], "unknown spec 'nope'; known specs: twophase"),
        (["check", "twophase", "-p", "rms=0"], "must be between 1 and 9, got 0"),
        (["check", "twophase", "-p", "rms=three"], "must be an integer, got 'three'"),
        (["check", "twophase", "-p", "acceptors=3"], "unknown parameter 'acceptors' for twophase; allowed: rms"),
        (["check", "twophase", "-p", "rms"], "is not NAME=VALUE"),
        (["check", "twophase", "--variant", "bogus"], "unknown variant 'bogus' for twophase; allowed: commit_early"),
        (["check", "tcommit", "--variant", "x"], "this spec has no variants"),
        (["check", "tcommit", "--symmetry"], "declares no symmetry"),
        (["check", "twophase", "--max-depth", "-1"], "must be a positive integer"),
        (["check", "all", "-p", "rms=3"], "'check all' runs every spec at its default size"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "required: command"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("distcheck: error: ")
    assert fragment in err


def test_check_all_summary(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Two specs stand for all of them here (twophase has a refinement to check): that
    # every spec is safe at its default size and every variant caught is
    # tests/spec/test_contract.py's, spec by spec, on both cores.
    few = {name: REGISTRY[name] for name in ("twophase", "tcommit")}
    monkeypatch.setattr(sys.modules["distcheck.checks.cli.main"], "REGISTRY", few)
    code, out, _ = run(capsys, "check", "all", "--json")
    rows = json.loads(out)
    assert code == 0
    assert [r["spec"] for r in rows] == list(few)
    for row in rows:
        assert row["verdict"] == "ok"
        assert all(v["caught"] for v in row["variants"].values())
        assert set(row["variants"]) == set(REGISTRY[row["spec"]].variants)
    assert rows[0]["refinement"]
    # --workers 2 checks two specs at a time and reports the same rows, in order.
    code, out, _ = run(capsys, "check", "all", "--json", "--workers", "2")
    spread = json.loads(out)
    assert code == 0
    for row in (*rows, *spread):
        row.pop("seconds")
    assert spread == rows


def test_console_script_runs_without_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "distcheck.checks.cli", "check", "twophase", "-p", "rms=99"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
