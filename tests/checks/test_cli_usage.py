"""A new user's first hour with the command (issue #12): each rough edge found there,
held fixed.  README's usage block is the parser's own summary; bounded checks say they
were bounded; mistakes are one-line usage errors (exit 2), never silently accepted."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from distcheck.checks.cli import main
from distcheck.checks.cli.main import build_parser
from distcheck.checks.cli.usage import subcommands, usage_text
from distcheck.checks.search import stateful
from distcheck.checks.traces import trace
from distcheck.spec.registry import REGISTRY

README = Path(__file__).resolve().parents[2] / "README.md"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_usage_error(code: int, out: str, err: str) -> None:
    assert code == 2 and out == "", (code, out, err)
    assert err.count("\n") == 1 and err.startswith("distcheck: error: ") and "Traceback" not in err


# ------------------------------------------------------------------ README usage


def readme_usage_block() -> str:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- usage: generated from the parser[^\n]*-->\n```text\n(.*?)\n```", text, re.S)
    assert found is not None, "README.md lost its generated usage block"
    return found.group(1)


def test_readme_usage_block_is_the_parsers() -> None:
    expected = usage_text(build_parser())
    assert readme_usage_block() == expected, (
        "README.md's usage block is stale; replace it with the output of "
        "`.venv/bin/python -m distcheck.checks.cli.usage`:\n" + expected
    )


def test_the_usage_summary_names_every_option_of_every_subcommand() -> None:
    # The summary is generated, so check the generator against the parser: a flag
    # it dropped would be missing from README as well.
    summary = usage_text(build_parser())
    for name in ("list", "check", "show", "replay", "fuzz", "prove", "simulate", "validate"):
        assert re.search(rf"^distcheck {name}\b", summary, re.M), name
    for flag in ("--trace-out", "--workers", "--scheduler", "--pct-depth", "--max-states", "--no-cross-check", "-p"):
        assert flag in summary
    assert "[swarm]" in README.read_text(encoding="utf-8")


# ------------------------------------------------------------------------ fuzz


def test_fuzz_runs_the_behaviours_it_is_asked_for() -> None:
    # hypothesis's target phase once ran 28,133 behaviours for 1,000 asked; a few
    # more than asked remain (ones hypothesis discards as too long do not count).
    result = stateful.fuzz(REGISTRY["twophase"].make(), examples=60, steps=12, seed=5)
    assert result.verdict == "ok" and result.examples == 60
    assert 60 <= result.runs <= 60 * 1.3


def test_fuzz_default_examples_is_what_help_says() -> None:
    fuzz = subcommands(build_parser())["fuzz"]
    examples = next(a for a in fuzz._actions if a.dest == "examples")
    assert f"default {examples.default}" in str(examples.help)
    assert examples.default <= 200


def test_fuzz_progress_goes_to_a_terminal_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "fuzz", "twophase", "--seed", "1", "--examples", "30", "--steps", "8")
    assert code == 0 and err == ""  # not a terminal: no progress
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    code, out, err = run(capsys, "fuzz", "twophase", "--seed", "1", "--examples", "30", "--steps", "8")
    assert code == 0 and "\r  fuzz: 1/30" in err and "fuzz" not in out
    seen: list[tuple[int, bool]] = []
    stateful.fuzz(REGISTRY["twophase"].make(), examples=30, steps=8, seed=1, on_run=lambda n, s: seen.append((n, s)))
    assert [n for n, _ in seen] == list(range(1, len(seen) + 1)) and len(seen) >= 30
    assert not any(shrinking for _, shrinking in seen)


# --------------------------------------------------------- check: bounds, words


def test_a_depth_bounded_check_says_so_and_does_not_fail_on_what_lies_deeper(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "check", "paxos", "--max-depth", "5")
    assert code == 0
    first, second = out.splitlines()[:2]
    assert "bounded" in first and "--max-depth 5" in first and "not exhaustive" in first
    assert "ChosenAgain" in second and "within the bound" in second
    code, out, _ = run(capsys, "check", "paxos", "--max-depth", "5", "--json")
    report = json.loads(out)
    assert (report["verdict"], report["complete"], report["max_depth"]) == ("bounded", False, 5)
    assert "ChosenAgain" in report["unreached"]


def test_refinement_says_what_was_checked(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "twophase", "--refinement")
    assert code == 0
    assert "refines tcommit" in out and "288 states" in out and "1,145 steps" in out
    code, out, _ = run(capsys, "check", "twophase", "--refinement", "--json")
    assert json.loads(out)["refinement"] == {"abstract": "tcommit", "verdict": "ok", "states": 288, "steps": 1145}


def test_swarm_reports_its_longest_walk_not_a_depth(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "twophase", "--swarm", "1", "--walks", "5", "--json")
    report = json.loads(out)
    assert code == 0 and report["verdict"] == "bounded"
    assert report["depth"] is None and report["longest_walk"] > 11  # walks go past the depth, 11
    code, out, _ = run(capsys, "check", "twophase", "--swarm", "1", "--walks", "5")
    assert "longest walk" in out and "depth" not in out.splitlines()[-1]


def test_one_step_is_singular(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "voting", "--variant", "unsafe_vote")
    assert code == 1 and "after 1 step\n" in out and "1 steps" not in out


def test_every_command_names_its_answer_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.jsonl"
    reports: dict[str, Any] = {}
    codes: dict[str, int] = {}
    for name, argv in {
        "check": ["check", "twophase", "--variant", "commit_early", "--trace-out", str(path)],
        "replay": ["replay", str(path)],
        "fuzz": ["fuzz", "tcommit", "--examples", "5", "--seed", "1"],
        "prove": ["prove", "quorums", "-p", "n=4", "-p", "f=1"],
        "simulate": ["simulate", "twophase", "-p", "rms=2"],
    }.items():
        codes[name], out, _ = run(capsys, *argv, "--json")
        reports[name] = json.loads(out)
        assert "result" not in reports[name] and "outcome" not in reports[name]
    assert {k: r["verdict"] for k, r in reports.items()} == {
        "check": "violated",
        "replay": "violated",
        "fuzz": "ok",
        "prove": "ok",
        "simulate": "ok",
    }
    assert codes == {"check": 1, "replay": 1, "fuzz": 0, "prove": 0, "simulate": 0}


# ------------------------------------------------------------------ simulate


def test_simulate_writes_a_failing_runs_trace_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["simulate", "twophase", "--runs", "400", "--faults", "crash,drop,duplicate,reorder"]
    code, out, _ = run(capsys, *argv, "--variant", "commit_before_log")
    assert code == 1
    written = re.search(r"trace written to (\S+)", out)
    assert written is not None
    path = Path(written.group(1))
    assert path.parts[:2] == (".distcheck", "traces") and trace.read(path).header.spec == "twophase"
    code, out, _ = run(capsys, "simulate", "twophase", "-p", "rms=2")
    assert code == 0 and "written" not in out  # a passing run writes nothing unless asked


# -------------------------------------------------------------- usage errors


@pytest.fixture
def twophase_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "t.jsonl"
    assert main(["check", "twophase", "--variant", "commit_early", "--trace-out", str(path)]) == 1
    capsys.readouterr()
    return path


def test_an_unknown_split_key_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "sim.jsonl"
    assert main(["simulate", "twophase", "-p", "rms=2", "--trace-out", str(path)]) == 0
    capsys.readouterr()
    one_line_usage_error(*run(capsys, "validate", "twophase", str(path), "--split", "tnx"))
    assert main(["validate", "twophase", str(path), "--split", "txn"]) == 0
    capsys.readouterr()
    code, out, err = run(capsys, "validate", "twophase", str(path), "--split", "slot")
    one_line_usage_error(code, out, err)
    assert "allowed: txn" in err


def test_show_refuses_an_unknown_variant_in_the_header(
    twophase_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = twophase_trace.read_text(encoding="utf-8").replace('"commit_early"', '"commit_erly"', 1)
    twophase_trace.write_text(text, encoding="utf-8")
    code, out, err = run(capsys, "show", str(twophase_trace))
    one_line_usage_error(code, out, err)
    assert "unknown variant 'commit_erly'" in err


def test_show_html_with_python_is_a_usage_error(
    twophase_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one_line_usage_error(*run(capsys, "show", str(twophase_trace), "--python", "--html", str(tmp_path / "x.html")))
    assert not (tmp_path / "x.html").exists()


def test_a_repeated_parameter_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", "twophase", "-p", "rms=2", "-p", "rms=3")
    one_line_usage_error(code, out, err)
    assert "given twice" in err


@pytest.mark.parametrize("subcommand", ["check", "fuzz", "simulate", "show-html", "show-shiviz"])
def test_output_paths_do_not_create_missing_folders(
    subcommand: str, tmp_path: Path, twophase_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing" / "out"
    argv = {
        "check": ["check", "twophase", "--variant", "commit_early", "--trace-out", str(target)],
        "fuzz": ["fuzz", "twophase", "--variant", "commit_early", "--trace-out", str(target)],
        "simulate": ["simulate", "twophase", "--trace-out", str(target)],
        "show-html": ["show", str(twophase_trace), "--html", str(target)],
        "show-shiviz": ["show", str(twophase_trace), "--shiviz", str(target)],
    }[subcommand]
    code, out, err = run(capsys, *argv)
    one_line_usage_error(code, out, err)
    assert "does not exist" in err and not target.parent.exists()


def test_a_malformed_scheduler_address_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    for address in ("localhost", "tcp://host", "tcp://host:99999", "http://host:8786"):
        code, out, err = run(capsys, "check", "twophase", "--swarm", "1", "--scheduler", address)
        one_line_usage_error(code, out, err)
        assert "tcp://HOST:PORT" in err


def test_a_scheduler_without_the_swarm_extra_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else real(name, *a))
    code, out, err = run(capsys, "check", "twophase", "--swarm", "1", "--scheduler", "tcp://127.0.0.1:8786")
    one_line_usage_error(code, out, err)
    assert "distcheck[swarm]" in err


def test_fuzz_says_which_behaviour_failed_before_shrinking() -> None:
    result = stateful.fuzz(REGISTRY["twophase"].make(variant="commit_early"), examples=500, steps=12, seed=2)
    assert result.verdict == "violated" and result.trace is not None
    assert 1 <= result.examples < 500 and result.runs > result.examples  # shrinking ran more
