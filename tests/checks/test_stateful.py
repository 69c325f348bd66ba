"""The hypothesis stateful harness: one line declares a test for a spec, and a broken
spec fails with a readable, shrunk, replayable counterexample."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from distcheck.checks.search.explore import Step
from distcheck.checks.search.stateful import spec_machine
from distcheck.checks.traces import trace
from distcheck.spec.twophase import Config, RMRcvCommitMsg, TCommit, TMCommit, TwoPhase
from tests.checks.trace_schema import assert_valid_trace_text

# The one-line declarations (run under the HYPOTHESIS_PROFILE settings).
TestTwoPhase = spec_machine(TwoPhase()).TestCase
TestTCommit = spec_machine(TCommit()).TestCase


def test_a_broken_spec_fails_with_the_rendering_and_a_replayable_trace(tmp_path: Path) -> None:
    spec = TwoPhase(Config(variant="commit_early"))
    machine = spec_machine(spec, trace_path=tmp_path / "cex.jsonl")
    fixed = settings(
        max_examples=300,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
        stateful_step_count=12,
    )
    with pytest.raises(AssertionError) as caught:
        run_state_machine_as_test(machine, settings=fixed)
    message = str(caught.value)
    assert message.startswith("TCConsistent violated after 3 steps")
    assert "#  actor  action" in message and "Message sequence chart" in message
    assert message.rstrip().endswith(f"(replay it with: distcheck replay {tmp_path / 'cex.jsonl'})")
    written = assert_valid_trace_text((tmp_path / "cex.jsonl").read_text())
    assert written == machine.last_failure
    assert written.header.source == "hypothesis" and written.header.variant == "commit_early"
    result = trace.replay(written, spec)
    assert result.verdict == "violated" and result.matches_recorded and result.step == 3


def test_the_harness_offers_enabled_actions_but_no_stutters() -> None:
    spec = TwoPhase(Config(variant="commit_early"))
    machine = spec_machine(spec)()
    state = next(iter(spec.init_states()))
    for action in (TMCommit(), RMRcvCommitMsg("r1")):
        nxt = spec.next_state(state, action)
        assert nxt is not None
        state = nxt
    machine._enter(Step(None, state))
    # r1 has committed: receiving Commit again is enabled but changes nothing.
    assert spec.next_state(state, RMRcvCommitMsg("r1")) == state
    assert RMRcvCommitMsg("r1") not in machine._choices
    assert RMRcvCommitMsg("r2") in machine._choices
    assert all(spec.next_state(state, a) not in (None, state) for a in machine._choices)
