"""The Raft service against spec/raft (``checks/conformance/wiring/raft.py``): runs
under every fault pass, each broken variant of the server is caught, the trace of a
run is a behaviour of the spec for the generic validator too, and a tampered trace
is not."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from distcheck.checks.conformance.simulate import SimOptions, SimOutcome, simulate
from distcheck.checks.conformance.validate import validate_events
from distcheck.checks.conformance.wiring import find_wiring
from distcheck.checks.conformance.wiring.raft import RaftWiring, raft_spec, spec_events, validate_raft
from distcheck.checks.params import build_spec
from distcheck.checks.traces import trace as trace_file
from distcheck.impl.raft import VARIANTS
from distcheck.impl.runtime import FaultPolicy

ALL_FAULTS = FaultPolicy.parse("crash,drop,duplicate,reorder,partition")

#: a seed of ``distcheck simulate raft --variant V`` (all faults) that catches V, and how
#: (the end-of-run check, an invariant on the real state, or the trace)
CAUGHT = {
    "unsafe_commit": 0,
    "volatile_vote": 42,
    "stale_read": 21,
}


def run(seed: int, variant: str | None = None, faults: FaultPolicy = ALL_FAULTS, **checks: bool) -> SimOutcome:
    wiring = find_wiring("raft")
    _, params, spec = build_spec("raft", list(wiring.default_params))
    return simulate(
        spec, wiring, params, SimOptions(seed, "random", faults, wiring.default_steps, 3, variant, **checks)
    )


@pytest.mark.parametrize("seed", range(3))
def test_simulated_runs_pass_under_every_fault(seed: int) -> None:
    outcome = run(seed)
    assert outcome.ok, outcome.message
    assert outcome.validation.ok
    events = outcome.run.trace.events
    kinds = {e["action"]["type"] for e in events}
    assert {"Timeout", "BecomeLeader", "ClientRequest", "AdvanceCommitIndex", "AppendEntries", "Receive"} <= kinds
    header = outcome.run.trace.header["params"]
    assert header["servers"] == 3 and header["values"] >= 2  # the no-op and at least one command


def test_every_variant_has_a_pinned_seed() -> None:
    assert set(CAUGHT) == set(VARIANTS) == set(RaftWiring.variants)


@pytest.mark.parametrize("variant", sorted(CAUGHT))
def test_each_broken_variant_is_caught(variant: str) -> None:
    outcome = run(CAUGHT[variant], variant)
    assert not outcome.ok
    assert outcome.kind in ("invariant", "invalid_trace"), outcome.message


def test_the_real_state_checks_alone_catch_an_unsafe_commit() -> None:
    caught = [s for s in range(12) if not run(s, "unsafe_commit", check_trace=False).ok]
    assert caught, "no run of 12 caught unsafe_commit without the trace"


def test_the_trace_of_a_run_is_a_behaviour_for_the_generic_validator() -> None:
    """The directed validation of the wiring and the generic search agree (on a
    prefix: the generic search is slow on a whole run)."""
    outcome = run(1)
    assert outcome.ok, outcome.message
    events = outcome.run.trace.events[:150]
    values = outcome.run.trace.header["params"]["values"]
    generic = validate_events(raft_spec(3, values), events)
    assert generic.ok, generic.message
    assert validate_raft(events, 3).ok


def tampered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A denied vote shown as granted (or a granted one as denied)."""
    out = copy.deepcopy(events)
    for event in out:
        msg = event["action"].get("msg")
        if (
            event["action"]["type"] == "Receive"
            and msg["type"] == "RequestVoteResponse"
            and msg["source"] != msg["dest"]
        ):
            msg["vote_granted"] = not msg["vote_granted"]
            return out
    raise AssertionError("no vote answered by another server")


def test_a_tampered_vote_is_rejected(tmp_path: Path) -> None:
    outcome = run(1)
    events = outcome.run.trace.events
    bad = tampered(events)
    result = validate_raft(bad, 3)
    assert not result.ok and result.mismatch is not None
    assert result.mismatch.event["action"]["msg"]["type"] == "RequestVoteResponse"
    # written as spec/raft logs it (without the history field): a violation, not bad input
    assert not result.mismatch.bad_input and result.mismatch.kind == "guard", result.mismatch.reason
    # The same through `distcheck validate raft FILE`, on the trace up to the tampered step.
    index = next(i for i, (a, b) in enumerate(zip(bad, events)) if a != b)
    path = tmp_path / "bad.jsonl"
    header, step0 = outcome.run.trace.lines()[:2]
    path.write_text("\n".join([header, step0, *(json.dumps(e) for e in bad[: index + 1])]) + "\n")
    _, _, spec = build_spec("raft", ["servers=3", "values=1"])
    verdict = find_wiring("raft").validate_file(spec, trace_file.read(path), None, 100_000)
    assert verdict is not None and not verdict.ok
    assert verdict.mismatch is not None and verdict.mismatch.step == index + 1


def test_a_message_received_twice_is_a_network_duplicate() -> None:
    """A receipt the spec cannot explain because every copy sent was received gets a
    ``DuplicateMessage`` of the network before the earlier receipt."""

    def ev(actor: str, action: dict[str, Any]) -> dict[str, Any]:
        return {"step": 0, "actor": actor, "action": action}

    request = {
        "type": "RequestVoteRequest",
        "term": 2,
        "last_log_term": 0,
        "last_log_index": 0,
        "source": "s1",
        "dest": "s2",
    }
    own = {**request, "dest": "s1"}
    events = [
        ev("s1", {"type": "Timeout", "server": "s1"}),
        ev("s1", {"type": "RequestVote", "server": "s1", "peer": "s1"}),
        ev("s1", {"type": "Receive", "msg": own}),
        ev("s1", {"type": "RequestVote", "server": "s1", "peer": "s2"}),
        ev("s2", {"type": "Receive", "msg": request}),  # UpdateTerm
        ev("s2", {"type": "Receive", "msg": request}),  # the vote
        ev("s2", {"type": "Receive", "msg": request}),  # a second copy: voted already, granted again
    ]
    out, values, validation = spec_events(events, 2)
    assert validation.ok, validation.message
    kinds = [e["action"]["type"] for e in out]
    assert kinds.count("DuplicateMessage") == 1
    assert kinds.index("DuplicateMessage") == 5  # before the receipt that took the first copy
    assert [e["step"] for e in out] == list(range(1, len(out) + 1))
    assert values == 1
    # Without the network's duplicate the generic validator rejects it; with it, accepts.
    assert not validate_events(raft_spec(2, 1), events).ok
    assert validate_events(raft_spec(2, 1), out).ok


def test_command_ids_become_spec_values_in_order() -> None:
    outcome = run(2)
    values = [e["action"]["value"] for e in outcome.run.trace.events if e["action"]["type"] == "ClientRequest"]
    assert values and all(v.startswith("v") for v in values)
    assert values[0] == "v1"
