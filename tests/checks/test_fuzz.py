"""``distcheck fuzz``: the stateful harness outside pytest finds every broken twophase
variant and shrinks it to within two steps of the explorer's shortest counterexample."""

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

# A fixed seed makes the run repeatable (the assertion is about this budget, not luck);
# twelve steps cover the deepest twophase behaviour (depth 11).
BUDGET = ["--seed", "1", "--examples", "2000", "--steps", "12"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_fuzz_finds_each_variant_close_to_the_shortest_counterexample(
    variant: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = REGISTRY["twophase"].make(variant=variant)
    shortest = Explorer(spec).run().violation
    assert shortest is not None
    out_file = tmp_path / "fuzz.jsonl"
    code = main(["fuzz", "twophase", "--variant", variant, *BUDGET, "--trace-out", str(out_file), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert {"spec", "params", "variant", "verdict", "examples", "seconds"} <= set(report)
    assert (report["spec"], report["variant"], report["verdict"]) == ("twophase", variant, "violated")
    assert report["params"] == {"rms": 3}
    assert report["violation"]["invariant"] == shortest.name
    fuzz_steps = len(report["violation"]["trace"]) - 1
    shortest_steps = len(shortest.trace) - 1
    assert shortest_steps <= fuzz_steps <= shortest_steps + 2
    written = assert_valid_trace_text(out_file.read_text())
    assert trace.steps_json(written) == report["violation"]["trace"]
    assert written.header.source == "fuzz"
    replayed = trace.replay(written, spec)
    assert replayed.verdict == "violated" and replayed.matches_recorded and replayed.step == fuzz_steps


def test_fuzz_of_a_correct_spec_is_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["fuzz", "twophase", "--seed", "3", "--examples", "40", "--steps", "12"])
    out = capsys.readouterr().out
    assert code == 0
    assert (
        out.startswith("twophase rms=3: ok: no property failed in 40 behaviours of up to 12 steps") and "seed 3" in out
    )
    assert not (tmp_path / ".distcheck").exists()


def test_fuzz_without_trace_out_writes_under_distcheck_traces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["fuzz", "twophase", "--variant", "commit_early", *BUDGET])
    out = capsys.readouterr().out
    assert code == 1
    path = Path(".distcheck/traces/twophase-commit_early-TCConsistent-fuzz.jsonl")
    assert f"trace written to {path}" in out
    assert_valid_trace_text(path.read_text())


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["fuzz", "nosuch"], "unknown spec 'nosuch'"),
        (["fuzz", "twophase", "--variant", "nope"], "unknown variant 'nope'"),
        (["fuzz", "twophase", "--examples", "0"], "must be a positive integer"),
        (["fuzz", "twophase", "--seed", "-1"], "must be a non-negative integer"),
    ],
)
def test_fuzz_usage_errors_are_one_line_and_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
