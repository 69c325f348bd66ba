"""The CAP demonstration (``distcheck simulate cap``, ``checks.conformance.wiring.cap``): under
one partition schedule the ABD store refuses the minority side and stays
linearizable, the Dynamo store answers everywhere, fails the linearizability
check (the checker names the stale read) and converges after healing with no
acknowledged write lost.  And the demonstration's own checks can fail."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from distcheck.checks.cli import main
from distcheck.checks.conformance.wiring import cap


def test_the_two_stores_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "dynamo.jsonl"
    assert main(["simulate", "cap", "--runs", "3", "--trace-out", str(trace)]) == 0
    out = capsys.readouterr().out
    rows = {line[:31].strip(): line[31:].split() for line in out.splitlines() if line.startswith(("c", "a", "h", "r"))}
    assert rows["c1 get x   (minority side)"][:3] == ["Unavailable", "(no", "majority)"]
    assert rows["answered on the minority side"] == ["0", "of", "3", "3", "of", "3"]
    assert rows["history"] == ["linearizable", "NOT", "linearizable"]
    assert rows["replicas after healing"] == ["all", "hold", "b", "all", "hold", "a,", "b"]
    assert rows["acknowledged writes"] == ["none", "lost", "none", "lost"]
    # the checker names the operation no order explains: c1's read after c2's write returned
    assert "c1 get(x) → absent" in out and "where the model answers 'b'" in out
    assert "3 seeds (0..2)" in out and "every run as above" in out
    # the Dynamo run's trace, with the clients' invocations and returns, is shown
    assert main(["show", str(trace)]) == 0
    shown = capsys.readouterr().out
    assert "Invoke(c1" in shown and "Return(c1" in shown and "AntiEntropy" in shown


def test_each_store_s_run_at_another_seed() -> None:
    abd_run, dynamo_run = cap.run_store("abd", 4), cap.run_store("dynamo", 4)
    assert abd_run.results == {"c1": ["unavailable"] * 3, "c2": ["ok", "b"]}
    assert abd_run.linearizable and abd_run.converged
    assert dynamo_run.results == {"c1": [[], "ok", ["a"]], "c2": ["ok", ["a", "b"]]}
    assert not dynamo_run.linearizable and dynamo_run.converged
    assert cap.surprises(abd_run, dynamo_run) == []


def test_the_demonstration_s_checks_can_fail() -> None:
    abd_run, dynamo_run = cap.run_store("abd", 1), cap.run_store("dynamo", 1)
    lost = attrs.evolve(dynamo_run, replicas={**dynamo_run.replicas, "s3": ["b"]}, converged=False)
    assert cap.lost_writes(lost) == ["c1 put x=a"]
    found = cap.surprises(abd_run, lost)
    assert any("did not converge" in f for f in found) and any("lost an acknowledged write" in f for f in found)
    answered = attrs.evolve(abd_run, results={**abd_run.results, "c1": [None, "ok", "a"]})
    assert any(f.startswith("ABD answered 3 on the minority side") for f in cap.surprises(answered, dynamo_run))


def test_json_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["simulate", "cap", "--json", "--trace-out", str(tmp_path / "t.jsonl")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "ok" and out["runs"][0]["dynamo"]["linearizable"] is False
    assert out["runs"][0]["abd"]["results"]["c1"] == ["unavailable"] * 3


@pytest.mark.parametrize("flag", [["--faults", "crash"], ["--variant", "x"], ["-p", "servers=5"], ["--steps", "99"]])
def test_options_of_other_simulations_are_refused_in_one_line(
    flag: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "cap", *flag]) == 2
    err = capsys.readouterr().err
    assert "simulate cap runs one fixed partition schedule" in err and len(err.strip().splitlines()) == 1
