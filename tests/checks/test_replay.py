"""``distcheck check --trace-out`` and ``distcheck replay``: every written trace replays
to the same violation; an edited step, an edited action or a broken line is rejected
with exit 2 and one line naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distcheck.checks.cli import main
from distcheck.checks.search.explore import Explorer
from distcheck.checks.traces import trace
from distcheck.spec.registry import REGISTRY
from tests.checks.trace_schema import assert_valid_trace_text

VARIANTS = list(REGISTRY["twophase"].variants)
EVERY_VARIANT = [(name, variant) for name, entry in REGISTRY.items() for variant in entry.variants]


def check_to_file(variant: str, path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["check", "twophase", "--variant", variant, "--trace-out", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"trace written to {path}" in out
    return path.read_text().splitlines()


@pytest.mark.parametrize("variant", VARIANTS)
def test_check_writes_a_valid_trace_that_replays_to_the_same_violation(
    variant: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cex.jsonl"
    lines = check_to_file(variant, path, capsys)
    tr = assert_valid_trace_text("\n".join(lines))
    expected = Explorer(REGISTRY["twophase"].make(variant=variant)).run().violation
    assert expected is not None and tr.header.violation is not None
    assert tr.header.violation.invariant == expected.name and tr.length == len(expected.trace) - 1
    assert main(["replay", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "violated"
    assert report["violation"]["invariant"] == expected.name
    assert report["violation"]["step"] == tr.length and report["violation"]["matches_recorded"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_trace_with_one_step_edited_is_rejected_naming_that_step(
    variant: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = check_to_file(variant, tmp_path / "cex.jsonl", capsys)
    for step in range(1, len(lines) - 1):
        edited = list(lines)
        record = json.loads(edited[step + 1])
        record["state"]["tm_state"] = "init" if record["state"]["tm_state"] == "done" else "done"
        edited[step + 1] = json.dumps(record)
        path = tmp_path / f"edited-{step}.jsonl"
        path.write_text("\n".join(edited) + "\n")
        assert main(["replay", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"is not a behaviour of twophase: step {step}: " in err and "tm_state" in err


def test_an_edited_action_is_rejected_naming_its_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = check_to_file("commit_early", tmp_path / "cex.jsonl", capsys)
    record = json.loads(lines[3])  # step 2: RMChooseToAbort(r1)
    record["action"]["rm"] = "r9"
    lines[3] = json.dumps(record)
    path = tmp_path / "edited.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert "step 2: RMChooseToAbort(r9) is not enabled in the state after step 1" in err


def test_a_malformed_line_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = check_to_file("commit_early", tmp_path / "cex.jsonl", capsys)
    lines[2] = lines[2][:-5]
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"distcheck: error: malformed trace {path}:3: not valid JSON")
    assert err.count("\n") == 1


def test_a_header_naming_an_unknown_spec_or_parameter_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = check_to_file("commit_early", tmp_path / "cex.jsonl", capsys)
    for field, value, needle in (
        ("spec", "nosuch", "unknown spec 'nosuch'"),
        ("params", {"nodes": 3}, "unknown parameter 'nodes'"),
    ):
        header = json.loads(lines[0])
        header[field] = value
        path = tmp_path / "header.jsonl"
        path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
        assert main(["replay", str(path)]) == 2
        assert f"{path}:1: header: {needle}" in capsys.readouterr().err


def test_a_clean_behaviour_replays_to_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = REGISTRY["twophase"].make()
    explorer = Explorer(spec)
    explorer.run()
    path = trace.write(trace.from_behaviour(spec, explorer.witness("AllCommitted")), tmp_path / "ok.jsonl")
    assert_valid_trace_text(path.read_text())
    assert main(["replay", str(path)]) == 0
    assert "a clean behaviour of twophase" in capsys.readouterr().out


def test_check_without_trace_out_writes_under_distcheck_traces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["check", "twophase", "--variant", "commit_early", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    path = Path(report["trace_file"])
    assert path.parts[:2] == (".distcheck", "traces")
    written = assert_valid_trace_text(path.read_text())
    assert written.header.source == "explorer" and written.header.variant == "commit_early"
    # The existing --json keys are kept.
    assert {"spec", "params", "variant", "verdict", "violation"} <= set(report)
    assert [s["state"] for s in report["violation"]["trace"]] == [s.state for s in written.steps]
    assert main(["check", "twophase"]) == 0
    assert "trace written" not in capsys.readouterr().out


@pytest.mark.parametrize(("spec_name", "variant"), EVERY_VARIANT)
def test_every_registered_variant_writes_a_valid_trace_that_replays(
    spec_name: str, variant: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cex.jsonl"
    # A variant too deep to search in a test replays its pinned counterexample.
    pinned = ["--witness"] if REGISTRY[spec_name].build.variants()[variant].witness else []
    assert main(["check", spec_name, "--variant", variant, *pinned, "--trace-out", str(path)]) == 1
    capsys.readouterr()
    tr = assert_valid_trace_text(path.read_text())
    assert tr.header.violation is not None
    assert main(["replay", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["violation"]["invariant"] == tr.header.violation.invariant
    assert report["violation"]["step"] == tr.length and report["violation"]["matches_recorded"]
