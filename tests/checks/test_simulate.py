"""``distcheck simulate``: our implementation under the controlled scheduler, from
the command line: passing runs, a broken variant's failure with its replay command,
identical reruns from a seed, and bad usage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distcheck.checks.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("strategy", ["random", "pct"])
def test_correct_implementation_passes_with_every_fault(capsys: pytest.CaptureFixture[str], strategy: str) -> None:
    code, out, _ = run(
        capsys,
        "simulate",
        "twophase",
        "--runs",
        "25",
        "--strategy",
        strategy,
        "--faults",
        "crash,drop,duplicate,reorder",
    )
    assert code == 0
    assert "25 schedules passed" in out


def test_json_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "simulate", "twophase", "-p", "rms=2", "--runs", "5", "--faults", "drop", "--json")
    data = json.loads(out)
    assert code == 0
    assert data["verdict"] == "ok" and data["passed"] == 5 and data["failed"] == 0
    assert data["params"] == {"rms": 2} and data["faults"] == ["drop"]


def test_broken_variant_fails_with_a_trace_and_replays_from_its_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["simulate", "twophase", "--runs", "400", "--faults", "crash,drop,duplicate,reorder"]
    code, out, _ = run(capsys, *argv, "--variant", "commit_before_log", "--json")
    assert code == 1
    failure = json.loads(out)["failure"]
    assert failure["kind"] in ("invariant", "invalid_trace")
    assert f"--seed {failure['seed']}" in failure["replay"]
    # the replay command, run again, fails the same way, step for step
    replay = failure["replay"].split()[1:]
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    code_a, text_a, _ = run(capsys, *replay, "--trace-out", str(first))
    code_b, text_b, _ = run(capsys, *replay, "--trace-out", str(second))
    assert code_a == code_b == 1
    # the same report, but for the file it names last
    assert text_a.replace(str(first), str(second)) == text_b and first.read_bytes() == second.read_bytes()
    assert f"trace written to {first}" in text_a
    assert "replay: distcheck simulate twophase" in text_a
    # the written trace is exactly where validation stops: it is not a behaviour
    code, out, _ = run(capsys, "validate", "twophase", str(first))
    assert code == 1 and "is not explained" in out


def test_a_parameter_given_on_the_command_line_replaces_the_wirings_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the lock wiring's defaults set ttl=3; the command line's ttl wins, once
    code, out, err = run(capsys, "simulate", "lock", "-p", "ttl=2", "--runs", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["params"]["ttl"] == 2


def test_same_seed_writes_the_same_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = [tmp_path / "1.jsonl", tmp_path / "2.jsonl"]
    for path in paths:
        code, _, _ = run(
            capsys, "simulate", "twophase", "--seed", "7", "--faults", "crash,reorder", "--trace-out", str(path)
        )
        assert code == 0
    assert paths[0].read_bytes() == paths[1].read_bytes()


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["simulate", "twophase", "--faults", "crash,flood"], "unknown fault(s) flood; allowed: crash, drop"),
        (["simulate", "twophase", "--variant", "nope"], "allowed: commit_before_log, forgetful_rm"),
        (["simulate", "tcommit"], "no implementation of 'tcommit'"),
        (["simulate", "twophase", "--steps", "3"], "at least 10"),
        (["simulate", "twophase", "--strategy", "dfs"], "invalid choice"),
        (["simulate", "twophase", "-p", "rms=0"], "between 1 and 9"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and fragment in err, err
