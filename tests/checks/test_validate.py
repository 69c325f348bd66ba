"""``checks.validate`` and ``distcheck validate``: traces of our implementation are
accepted, a trace with one event changed is rejected at that event, steps the log
does not show are searched, malformed files exit 2 with their line."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from distcheck.checks.cli import main
from distcheck.checks.conformance.simulate import SimOptions, simulate
from distcheck.checks.conformance.validate import validate_events, validate_trace
from distcheck.checks.conformance.wiring import TwoPhaseWiring
from distcheck.checks.search.explore import Explorer
from distcheck.checks.traces import trace as trace_file
from distcheck.impl.runtime import FaultPolicy
from distcheck.spec.twophase import Config, TMAction, TPState, TwoPhase
from tests.checks.trace_schema import assert_valid_trace_text

SPEC = TwoPhase(Config(rms=3))
ALL_FAULTS = FaultPolicy(crash=True, drop=True, duplicate=True, reorder=True)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def simulated_events(seed: int, faults: FaultPolicy = ALL_FAULTS) -> list[dict[str, Any]]:
    outcome = simulate(SPEC, TwoPhaseWiring(), {"rms": 3}, SimOptions(seed, "random", faults))
    assert outcome.ok, outcome.message
    return [dict(e) for e in outcome.run.trace.events]


def committed_run() -> list[dict[str, Any]]:
    for seed in range(50):
        events = simulated_events(seed)
        if any(e["action"]["type"] == "TMCommit" for e in events):
            return events
    raise AssertionError("no seed committed")


def write_trace(path: Path, events: Iterable[Mapping[str, Any]], header: Mapping[str, Any] | None = None) -> Path:
    head = {
        "format": "distcheck-trace",
        "version": 1,
        "spec": "twophase",
        "params": {"rms": 3},
        "variant": None,
        "source": "external",
        "violation": None,
    }
    head.update(header or {})
    lines = [head, {"step": 0, "actor": None, "action": None}, *events]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_simulated_traces_follow_the_format_and_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for seed in range(5):
        out = tmp_path / f"run{seed}.jsonl"
        code, _, err = run(
            capsys, "simulate", "twophase", "--seed", str(seed), "--faults", "crash,drop", "--trace-out", str(out)
        )
        assert code == 0, err
        assert_valid_trace_text(out.read_text())
        code, text, err = run(capsys, "validate", "twophase", str(out))
        assert code == 0, err
        assert "ok, all" in text


# The three kinds of one-event change that no behaviour can explain at that event.
def to_abort(event: dict[str, Any]) -> dict[str, Any] | None:
    # in a run that committed, no Abort message was ever sent
    if event["action"]["type"] != "RMRcvCommitMsg":
        return None
    event["action"]["type"] = "RMRcvAbortMsg"
    return event


def to_unknown_rm(event: dict[str, Any]) -> dict[str, Any] | None:
    if "rm" not in event["action"]:
        return None
    event["action"]["rm"] = "r7"
    return event


def to_wrong_actor(event: dict[str, Any]) -> dict[str, Any]:
    event["actor"] = "r2" if event["actor"] != "r2" else "r1"
    return event


@pytest.mark.parametrize("change", [to_abort, to_unknown_rm, to_wrong_actor])
def test_one_changed_event_is_rejected_at_that_event(change: Any) -> None:
    events = committed_run()
    assert validate_events(SPEC, events, split_key="txn").ok
    tried = 0
    for k in range(len(events)):
        changed = copy.deepcopy(events)
        if change(changed[k]) is None:
            continue
        tried += 1
        result = validate_events(SPEC, changed, split_key="txn")
        assert result.verdict == "violated"
        assert result.mismatch is not None
        assert result.mismatch.step == events[k]["step"], (k, result.message)
        assert result.mismatch.event == changed[k]
    assert tried > 0


def test_cli_names_the_changed_event_and_the_states_before_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = committed_run()
    k = next(i for i, e in enumerate(events) if e["action"]["type"] == "RMRcvCommitMsg")
    changed = copy.deepcopy(events)
    to_abort(changed[k])
    path = write_trace(tmp_path / "changed.jsonl", changed)
    step = events[k]["step"]
    code, out, _ = run(capsys, "validate", "twophase", str(path))
    assert code == 1
    assert f"step {step} (line {step + 2}) is not explained" in out
    assert "RMRcvAbortMsg" in out and "tm_state = done" in out
    code, out, _ = run(capsys, "validate", "twophase", str(path), "--json")
    data = json.loads(out)
    assert code == 1 and data["verdict"] == "violated"
    assert data["mismatch"]["step"] == step and data["mismatch"]["line"] == step + 2
    assert data["mismatch"]["possible_count"] >= 1
    assert {"actor": changed[k]["actor"], "action": {"type": "RMRcvCommitMsg", "rm": changed[k]["actor"]}} in data[
        "mismatch"
    ]["expected"]


@pytest.mark.parametrize(
    "mutate,fragment",
    [
        (lambda lines: lines.__setitem__(3, "{not json"), ":4: not valid JSON"),
        (lambda lines: lines.__delitem__(3), ":4: step 2:"),
        (lambda lines: lines.__setitem__(0, lines[0].replace('"distcheck-trace"', '"other"')), ":1: header"),
        (lambda lines: lines.__setitem__(0, lines[0].replace('"rms": 3', '"rms": 99')), "between 1 and 9"),
        (lambda lines: lines.__setitem__(0, lines[0].replace('"twophase"', '"tcommit"')), "not 'twophase'"),
    ],
)
def test_malformed_traces_exit_2_with_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate: Any, fragment: str
) -> None:
    lines = write_trace(tmp_path / "t.jsonl", committed_run()).read_text().splitlines()
    mutate(lines)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    code, out, err = run(capsys, "validate", "twophase", str(bad))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and fragment in err, err


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "validate", "twophase", str(tmp_path / "nope.jsonl"))
    assert code == 2 and "no such file" in err


class QuietTM(TwoPhase):
    """TwoPhase whose TM logs nothing: its steps are left for validation to search."""

    def observe(self, state: TPState, action: Any) -> Mapping[str, Any] | None:
        return None if isinstance(action, TMAction) else super().observe(state, action)


def test_steps_the_log_does_not_show_are_searched() -> None:
    spec = QuietTM(Config(rms=2))
    # r1, r2 prepare; the TM (silently) collects both votes and commits; r2 commits.
    events = [
        {"step": 1, "actor": "r1", "action": {"type": "RMPrepare", "rm": "r1"}},
        {"step": 2, "actor": "r2", "action": {"type": "RMPrepare", "rm": "r2"}},
        {"step": 3, "actor": "r2", "action": {"type": "RMRcvCommitMsg", "rm": "r2"}},
    ]
    result = validate_events(spec, events)
    assert result.ok
    assert result.states_explored > len(events) + 1  # unlogged TM steps were explored
    # ... but a commit cannot be received before both RMs prepared, logged or not
    early = [events[0], {"step": 2, "actor": "r2", "action": {"type": "RMRcvCommitMsg", "rm": "r2"}}]
    bad = validate_events(spec, early)
    assert bad.mismatch is not None and bad.mismatch.step == 2
    # the possible states before it include ones where the TM silently did what it could
    assert any(s.tm_prepared for s in bad.mismatch.possible)


def test_too_many_unlogged_possibilities_give_up_with_a_reason() -> None:
    spec = QuietTM(Config(rms=2))
    events = [{"step": 1, "actor": "r1", "action": {"type": "RMPrepare", "rm": "r1"}}]
    result = validate_events(spec, events, max_states=1)  # init, and the TM silently aborting
    assert result.verdict == "unknown" and "before step 1" in result.message
    assert validate_events(spec, events).ok


def test_a_recorded_initial_state_must_be_the_specs() -> None:
    cex = explorer_counterexample()
    first = cex.steps[0]
    state = copy.deepcopy(first.state)
    state["tm_state"] = "done"
    changed = trace_file.Trace(cex.header, (trace_file.TraceStep(0, None, None, state), *cex.steps[1:]))
    result = validate_trace(TwoPhase(Config(rms=3, variant="commit_early")), changed)
    assert result.mismatch is not None and result.mismatch.step == 0


def explorer_counterexample() -> trace_file.Trace:
    broken = TwoPhase(Config(rms=3, variant="commit_early"))
    violation = Explorer(broken).run().violation
    assert violation is not None
    return trace_file.from_behaviour(broken, list(violation.trace), spec_name="twophase")


def test_explorer_traces_with_states_validate_and_a_changed_state_is_caught() -> None:
    cex = explorer_counterexample()
    assert validate_trace(TwoPhase(Config(rms=3, variant="commit_early")), cex).ok
    # the correct spec cannot commit early: the TMCommit step is the one not explained
    against_correct = validate_trace(SPEC, cex)
    assert against_correct.mismatch is not None
    assert against_correct.mismatch.event["action"] == {"type": "TMCommit"}
    # a recorded state that differs from the spec's successor is caught at that step
    steps = list(cex.steps)
    last = steps[-1]
    state = copy.deepcopy(last.state)
    state["tm_state"] = "init"
    steps[-1] = trace_file.TraceStep(last.step, last.actor, last.action, state)
    changed = trace_file.Trace(cex.header, tuple(steps))
    result = validate_trace(TwoPhase(Config(rms=3, variant="commit_early")), changed)
    assert result.mismatch is not None and result.mismatch.step == last.step


def test_independent_instances_validate_with_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = simulated_events(0, FaultPolicy())
    two = [dict(e, txn="t2") for e in simulated_events(1, FaultPolicy())]
    merged: list[dict[str, Any]] = []
    for a, b in zip(one, two):
        merged += [a, b]
    merged += one[len(two) :] + two[len(one) :]
    merged = [dict(e, step=i) for i, e in enumerate(merged, start=1)]
    path = write_trace(tmp_path / "two.jsonl", merged)
    code, _, _ = run(capsys, "validate", "twophase", str(path))
    assert code == 1  # as one transaction, the second RMPrepare(r1) is not a step
    code, out, _ = run(capsys, "validate", "twophase", str(path), "--split", "txn")
    assert code == 0, out
