"""``distcheck simulate saga`` and ``distcheck validate saga``: both styles pass with
every fault, an implementation variant fails with a trace that ``validate`` refuses,
and a choreographed run's file (the broker's steps in it too) validates saga by saga."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distcheck.checks.cli import main

FAULTS = ("--faults", "crash,drop,duplicate,reorder")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, _ = capsys.readouterr()
    return code, out


def test_orchestrated_sagas_pass_with_every_fault(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "simulate", "saga", "--runs", "60", *FAULTS)
    assert code == 0, out
    assert "60 schedules passed" in out and "every trace valid" in out


def test_choreographed_sagas_pass_and_their_file_validates(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    code, out = run(
        capsys, "simulate", "saga", "-p", "style=choreography", "--runs", "2", *FAULTS, "--trace-out", str(path)
    )
    assert code == 0, out
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert any(e.get("actor") == "broker" for e in lines)  # the broker's own steps are in the file
    code, out = run(capsys, "validate", "saga", str(path))
    assert code == 0 and "explained" in out, out


@pytest.mark.parametrize(
    "variant", ["compensate_forward", "forget_compensation", "give_up_compensation", "non_idempotent", "no_tombstone"]
)
def test_a_broken_implementation_fails_and_its_trace_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, variant: str
) -> None:
    path = tmp_path / "bad.jsonl"
    argv = ["simulate", "saga", "--variant", variant, "--runs", "200", *FAULTS, "--trace-out", str(path)]
    code, out = run(capsys, *argv)
    assert code == 1 and "replay: distcheck simulate saga" in out, out
    code, out = run(capsys, "validate", "saga", str(path))
    assert code == 1 and "is not explained" in out, out


def test_an_orchestrator_variant_with_the_choreography_style_is_one_line_of_bad_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["simulate", "saga", "-p", "style=choreography", "--variant", "compensate_forward", "--runs", "1"])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "a choreography has none" in err, err
