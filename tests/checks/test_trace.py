"""The trace model: round trips, line-numbered format errors, message detection,
replay outcomes, and the schema that other implementations write against."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from distcheck.checks.search.explore import Explorer
from distcheck.checks.traces import trace
from distcheck.spec.contract import Spec
from distcheck.spec.registry import REGISTRY
from tests.checks.trace_schema import assert_valid_trace_text

VARIANTS = list(REGISTRY["twophase"].variants)


def counterexample(variant: str) -> tuple[Spec[Any, Any], trace.Trace]:
    spec = REGISTRY["twophase"].make(variant=variant)
    result = Explorer(spec).run()
    assert result.violation is not None
    v = result.violation
    return spec, trace.from_behaviour(spec, v.trace, violation=trace.violation_of(v.name, v.statement, v.kind))


@pytest.mark.parametrize("variant", VARIANTS)
def test_explorer_traces_round_trip_validate_and_replay_to_the_same_violation(variant: str, tmp_path: Path) -> None:
    spec, tr = counterexample(variant)
    path = trace.write(tr, tmp_path / "cex.jsonl")
    assert_valid_trace_text(path.read_text())
    back = trace.read(path)
    assert back == tr
    result = trace.replay(back, spec)
    assert result.verdict == "violated" and result.exit_code == 1
    assert result.matches_recorded
    assert result.step == tr.length
    assert tr.header.violation is not None and result.violation is not None
    assert result.violation.invariant == tr.header.violation.invariant


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_trace_with_one_edited_step_is_rejected_naming_that_step(variant: str) -> None:
    spec, tr = counterexample(variant)
    for index in range(1, len(tr.steps)):
        step = tr.steps[index]
        state = json.loads(json.dumps(step.state))
        state["tm_state"] = "init" if state["tm_state"] == "done" else "done"
        edited = trace.Trace(
            tr.header, (*tr.steps[:index], step.__class__(**{**_fields(step), "state": state}), *tr.steps[index + 1 :])
        )
        result = trace.replay(edited, spec)
        assert result.verdict == "invalid" and result.exit_code == 2
        assert result.step == index
        assert result.reason.startswith(f"step {index}:")
        assert "tm_state" in result.reason


def test_an_action_that_is_not_enabled_is_named_with_its_step() -> None:
    spec, tr = counterexample("commit_early")
    # Swap the first two actions: an RM receiving Commit before the TM sent it.
    first, second = tr.steps[1], tr.steps[3]
    steps = list(tr.steps)
    steps[1] = trace.TraceStep(1, second.actor, second.action)
    steps[3] = trace.TraceStep(3, first.actor, first.action)
    result = trace.replay(trace.Trace(tr.header, tuple(steps)), spec)
    assert result.verdict == "invalid" and result.step == 1
    assert "RMRcvCommitMsg(r2) is not enabled" in result.reason


def test_a_clean_behaviour_replays_to_exit_0_and_states_may_be_omitted() -> None:
    spec = REGISTRY["twophase"].make()
    explorer = Explorer(spec)
    explorer.run()
    behaviour = explorer.witness("AllCommitted")
    tr = trace.from_behaviour(spec, behaviour, source="impl")
    assert trace.replay(tr, spec).verdict == "ok"
    # An implementation's log: actions only, no global state.
    partial = trace.Trace(tr.header, tuple(trace.TraceStep(s.step, s.actor, s.action) for s in tr.steps))
    assert_valid_trace_text(trace.dumps(partial))
    result = trace.replay(trace.loads(trace.dumps(partial)), spec)
    assert result.verdict == "ok" and result.exit_code == 0
    assert [s.state for s in result.behaviour] == [s.state for s in behaviour]


def test_a_recorded_violation_that_does_not_happen_is_not_a_behaviour_of_that_claim() -> None:
    spec, tr = counterexample("commit_early")
    short = trace.Trace(tr.header, tr.steps[:2])
    result = trace.replay(short, spec)
    assert result.verdict == "invalid" and "records TCConsistent violated" in result.reason


def test_messages_sent_and_received_are_worked_out_from_the_network() -> None:
    _, tr = counterexample("commit_early")
    commit = {"type": "Commit"}
    assert [s.sent for s in tr.steps] == [(), (commit,), (), ()]
    assert [s.received for s in tr.steps] == [(), (), (), (commit,)]
    _, longer = counterexample("forgetful_tm")
    tm_receipts = [s.received for s in longer.steps if s.action and s.action["type"] == "TMRcvPrepared"]
    assert tm_receipts and all(
        r == ({"type": "Prepared", "rm": s["rm"]},)
        for r, s in zip(
            tm_receipts, [st.action for st in longer.steps if st.action and st.action["type"] == "TMRcvPrepared"]
        )
    )


def _fields(step: trace.TraceStep) -> dict[str, Any]:
    return {
        f: getattr(step, f) for f in ("step", "actor", "action", "state", "action_text", "sent", "received", "extra")
    }


BAD_LINES = [
    ("", 0, "empty file"),
    ('{"format": "other"}', 1, '"format" must be'),
    ("not json", 1, "not valid JSON"),
    ("HEADER\n[1, 2]", 2, "expected a JSON object"),
    ('HEADER\n{"step": 1, "actor": null, "action": null}', 2, '"step" must be 0'),
    ('HEADER\n{"step": 0, "actor": null, "action": {"type": "TMCommit"}}', 2, 'its "action" must be null'),
    (
        'HEADER\n{"step": 0, "actor": null, "action": null}\n{"step": 1, "actor": "tm", "action": "TMCommit"}',
        3,
        'string "type"',
    ),
    ('HEADER\n{"step": 0, "actor": null, "action": null}\n{"step": 1, "actor": "tm"}', 3, 'missing key "action"'),
    ("HEADER", 1, "not followed by any step"),
]


@pytest.mark.parametrize(("text", "line", "reason"), BAD_LINES)
def test_malformed_files_name_the_line_and_the_problem(text: str, line: int, reason: str) -> None:
    header = json.dumps(trace.header_json(trace.TraceHeader("twophase", {"rms": 3})))
    with pytest.raises(trace.TraceFormatError) as caught:
        trace.loads(text.replace("HEADER", header), "t.jsonl")
    assert caught.value.line == line
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"t.jsonl:{line}:" if line else "t.jsonl:")


def test_unknown_step_keys_are_kept() -> None:
    header = json.dumps(trace.header_json(trace.TraceHeader("twophase", {"rms": 3}, source="impl")))
    text = header + '\n{"step": 0, "actor": null, "action": null, "time": 12.5}\n'
    tr = trace.loads(text)
    assert tr.steps[0].extra == {"time": 12.5}
    assert trace.loads(trace.dumps(tr)) == tr


def test_diff_reports_paths_members_and_values() -> None:
    old = {"type": "S", "m": {"a": 1, "b": 2}, "xs": [1, 2], "n": 0}
    new = {"type": "S", "m": {"a": 1, "b": 3, "c": 4}, "xs": [2, 5], "n": 0}
    changes = {trace.path_text(c): c for c in trace.diff(old, new)}
    assert set(changes) == {"m[b]", "m[c]", "xs"}
    assert (changes["m[b]"].old, changes["m[b]"].new) == (2, 3)
    assert changes["m[c]"].old is trace.ABSENT
    assert changes["xs"].added == (5,) and changes["xs"].removed == (1,)
