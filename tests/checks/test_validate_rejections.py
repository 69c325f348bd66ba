"""``distcheck validate`` and ``replay`` as docs/trace-format.md and docs/validate.md
promise, on the kinds of trace an independent implementation (written from the docs
alone) got misclassified or badly explained: sets in a recorded ``state`` in another
order, a Paxos proposer logged under its own name, and rejections that must name the
rule broken, show a state diff, and call an unknown name or a wrong type that."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from distcheck.checks.cli import main
from distcheck.checks.conformance.validate import rule_of, validate_events, validate_trace
from distcheck.checks.search.explore import Step
from distcheck.checks.traces import trace as trace_file
from distcheck.spec.twophase import (
    Config,
    RMPrepare,
    RMRcvCommitMsg,
    TMCommit,
    TMRcvPrepared,
    TwoPhase,
)

SPEC = TwoPhase(Config(rms=3))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def committed_with_states() -> trace_file.Trace:
    """r1..r3 prepare, the TM collects all three and commits, r1 commits: states whose
    sets (``tm_prepared``, ``msgs``) have several members."""
    state = next(iter(SPEC.init_states()))
    steps = [Step(None, state)]
    actions = [RMPrepare(r) for r in ("r1", "r2", "r3")] + [TMRcvPrepared(r) for r in ("r3", "r1", "r2")]
    for action in [*actions, TMCommit(), RMRcvCommitMsg("r1")]:
        nxt = SPEC.next_state(state, action)
        assert nxt is not None, action
        steps.append(Step(action, nxt))
        state = nxt
    return trace_file.from_behaviour(SPEC, steps, spec_name="twophase", source="external")


def with_states(tr: trace_file.Trace, change: Any) -> trace_file.Trace:
    steps = [tr.steps[0]]
    for step in tr.steps[1:]:
        state = json.loads(json.dumps(step.state))
        change(state)
        steps.append(trace_file.TraceStep(step.step, step.actor, step.action, state))
    return trace_file.Trace(tr.header, tuple(steps))


def reverse_sets(state: dict[str, Any]) -> None:
    state["tm_prepared"].reverse()
    state["msgs"].reverse()


# ------------------------------------------------- 1. sets in a state, by members


def test_sets_in_a_recorded_state_compare_by_members_not_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tr = committed_with_states()
    reordered = with_states(tr, reverse_sets)
    # the reordering really changed the text of the recorded states
    assert [s.state for s in reordered.steps] != [s.state for s in tr.steps]
    assert validate_trace(SPEC, tr).ok
    assert validate_trace(SPEC, reordered).ok
    path = trace_file.write(reordered, tmp_path / "reordered.jsonl")
    code, out, err = run(capsys, "validate", "twophase", str(path))
    assert code == 0, out + err
    code, out, err = run(capsys, "replay", str(path))
    assert code == 0, out + err


def test_a_state_with_a_set_member_changed_is_still_rejected_with_a_diff_of_only_that(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tr = committed_with_states()
    last = tr.steps[-1]
    state = json.loads(json.dumps(last.state))
    reverse_sets(state)
    state["tm_prepared"].remove("r2")
    state["rm_state"]["r3"] = "aborted"
    edited = trace_file.Trace(
        tr.header, (*tr.steps[:-1], trace_file.TraceStep(last.step, last.actor, last.action, state))
    )
    result = validate_trace(SPEC, edited)
    assert result.mismatch is not None and result.mismatch.step == last.step
    assert result.mismatch.kind == "state"
    assert {tuple(sorted(c)) for c in result.mismatch.diff} == {
        ("missing", "path", "unexpected"),
        ("expected", "path", "recorded"),
    }
    by_path = {c["path"]: c for c in result.mismatch.diff}
    assert by_path["tm_prepared"]["missing"] == ["r2"] and by_path["tm_prepared"]["unexpected"] == []
    assert by_path["rm_state[r3]"]["expected"] == "prepared" and by_path["rm_state[r3]"]["recorded"] == "aborted"
    path = trace_file.write(edited, tmp_path / "edited.jsonl")
    code, out, _ = run(capsys, "validate", "twophase", str(path))
    assert code == 1
    assert "the recorded state differs from the spec's" in out
    assert 'rm_state[r3]: expected "prepared", recorded "aborted"' in out
    assert 'tm_prepared: "r2" expected but not recorded' in out
    assert "rm_state[r1]" not in out.split("the recorded state differs")[1].split("the spec state(s)")[0]
    code, out, _ = run(capsys, "validate", "twophase", str(path), "--json")
    data = json.loads(out)
    assert code == 1 and data["mismatch"]["kind"] == "state"
    assert {"path": "rm_state[r3]", "expected": "prepared", "recorded": "aborted"} in data["mismatch"]["diff"]
    # replay says what differs the same way, sets by members
    code, _, err = run(capsys, "replay", str(path))
    assert code == 2 and "rm_state[r3]" in err and "msgs" not in err


def test_a_tuple_in_a_state_still_compares_in_order() -> None:
    from distcheck.checks.traces.compare import same

    value = (("a", frozenset({"x", "y"})), 2)
    assert same(value, [["a", ["x", "y"]], 2], [["a", ["y", "x"]], 2])
    assert not same(value, [["a", ["x", "y"]], 2], [2, ["a", ["x", "y"]]])
    assert not same(value, [["a", ["x", "y"]], 2], [["a", ["x", "z"]], 2])


# ------------------------------------------- 3. rejections say what is wrong, and why


def events(*items: tuple[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{"step": i, "actor": actor, "action": dict(action)} for i, (actor, action) in enumerate(items, 1)]


def write(path: Path, spec: str, params: Mapping[str, Any], steps: Iterable[Mapping[str, Any]]) -> Path:
    header = {
        "format": "distcheck-trace",
        "version": 1,
        "spec": spec,
        "params": dict(params),
        "variant": None,
        "source": "external",
        "violation": None,
    }
    lines = [header, {"step": 0, "actor": None, "action": None}, *steps]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_a_step_whose_guard_fails_names_the_rule_and_its_statement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = events(("r1", {"type": "RMPrepare", "rm": "r1"}), ("r1", {"type": "RMRcvCommitMsg", "rm": "r1"}))
    result = validate_events(SPEC, trace)
    assert result.mismatch is not None and result.mismatch.step == 2
    assert result.mismatch.kind == "guard" and not result.mismatch.bad_input
    name, statement = rule_of(SPEC, RMRcvCommitMsg("r1"))
    assert name == "RMRcvCommitMsg" and statement and "Commit" in statement
    assert (result.mismatch.rule, result.mismatch.statement) == (name, statement)
    assert f"rule RMRcvCommitMsg ({statement})" in result.mismatch.reason
    path = write(tmp_path / "t.jsonl", "twophase", {"rms": 3}, trace)
    code, out, _ = run(capsys, "validate", "twophase", str(path))
    assert code == 1 and f"the rule: RMRcvCommitMsg: {statement}" in out
    code, out, _ = run(capsys, "validate", "twophase", str(path), "--json")
    assert code == 1
    assert json.loads(out)["mismatch"]["rule"] == {"name": "RMRcvCommitMsg", "statement": statement}


def test_a_step_by_the_wrong_actor_says_whose_step_it_is() -> None:
    result = validate_events(SPEC, events(("r2", {"type": "RMPrepare", "rm": "r1"})))
    assert result.mismatch is not None and result.mismatch.kind == "actor"
    assert "taken by r1, not by r2" in result.mismatch.reason


@pytest.mark.parametrize(
    "action,kind,words",
    [
        (
            {"type": "RMPrepare", "rm": "r4"},
            "unknown_name",
            "unknown name 'r4' for RMPrepare's rm: the spec's are r1, r2, r3",
        ),
        ({"type": "RMPrepare", "rm": 4}, "wrong_type", "RMPrepare's parameter rm: expected a string, got 4"),
        ({"type": "RMPrepare"}, "unknown_action", "missing field(s) rm"),
        ({"type": "RMPrepair", "rm": "r1"}, "unknown_action", "'RMPrepair' is not an action of the spec"),
        ({"type": "Prepared", "rm": "r1"}, "unknown_action", "Prepared is a value of the spec, not an action"),
    ],
)
def test_an_event_outside_the_specs_vocabulary_is_bad_input_saying_so(
    action: dict[str, Any], kind: str, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = events(("r1", {"type": "RMPrepare", "rm": "r1"}), ("r1", action))
    result = validate_events(SPEC, trace)
    assert result.mismatch is not None and result.mismatch.step == 2
    assert result.mismatch.kind == kind and result.mismatch.bad_input
    assert words in result.mismatch.reason
    path = write(tmp_path / "t.jsonl", "twophase", {"rms": 3}, trace)
    code, out, err = run(capsys, "validate", "twophase", str(path))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "t.jsonl line 4: " in err and words in err


def test_paxos_ballots_and_acceptors_out_of_the_spec_are_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad_type = events(("n1", {"type": "Phase1a", "bal": "0"}))
    path = write(tmp_path / "bal.jsonl", "paxos", {"acceptors": 3}, bad_type)
    code, _, err = run(capsys, "validate", "paxos", str(path))
    assert code == 2 and 'Phase1a\'s parameter bal: expected an integer, got "0"' in err
    unknown = events(("n1", {"type": "Phase1a", "bal": 0}), ("a4", {"type": "Phase1b", "acceptor": "a4", "bal": 0}))
    path = write(tmp_path / "acc.jsonl", "paxos", {"acceptors": 3}, unknown)
    code, _, err = run(capsys, "validate", "paxos", str(path))
    assert code == 2 and "unknown name 'a4' for Phase1b's acceptor: the spec's are a1, a2, a3" in err


# ------------------------------------- 2. Paxos actors: one rule, both ways of checking


def decree(proposer: str = "n1", second: str | None = None, slots: bool = False) -> list[dict[str, Any]]:
    """A proposer takes ballot 0 with a1 and a2 and gets v1 chosen; ``second`` (if
    given) then logs a Phase2a in ballot 0 as well.  With ``slots``, the steps carry
    a replicated log's ``from_slot`` and ``slot`` (all in slot 0)."""
    out = events(
        (proposer, {"type": "Phase1a", "bal": 0}),
        ("a1", {"type": "Phase1b", "acceptor": "a1", "bal": 0}),
        ("a2", {"type": "Phase1b", "acceptor": "a2", "bal": 0}),
        (proposer, {"type": "Phase2a", "bal": 0, "val": "v1"}),
        ("a1", {"type": "Phase2b", "acceptor": "a1", "bal": 0, "val": "v1"}),
        ("a2", {"type": "Phase2b", "acceptor": "a2", "bal": 0, "val": "v1"}),
        *([(second, {"type": "Phase1a", "bal": 0})] if second else []),
    )
    if slots:
        for e in out:
            e["from_slot" if e["action"]["type"] in ("Phase1a", "Phase1b") else "slot"] = 0
    return out


def validate_both_ways(tmp_path: Path, capsys: pytest.CaptureFixture[str], **kwargs: Any) -> list[tuple[int, str]]:
    """(exit code, output) of ``validate paxos`` on the single-decree trace and of
    ``validate paxos --split slot`` on the same steps logged as a replicated log."""
    params = {"acceptors": 3, "values": 2, "max_ballot": 1}
    single = write(tmp_path / "single.jsonl", "paxos", params, decree(**kwargs))
    log = write(tmp_path / "log.jsonl", "paxos", params, decree(**kwargs, slots=True))
    results = []
    for argv in (["validate", "paxos", str(single)], ["validate", "paxos", str(log), "--split", "slot"]):
        code, out, err = run(capsys, *argv)
        results.append((code, out + err))
    return results


@pytest.mark.parametrize("proposer", ["n1", "a3", "p0"])
def test_a_paxos_proposer_logged_under_its_own_name_validates_both_ways(
    proposer: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for code, out in validate_both_ways(tmp_path, capsys, proposer=proposer):
        assert code == 0, out


def test_two_proposers_in_one_ballot_are_refused_both_ways_by_the_same_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = validate_both_ways(tmp_path, capsys, proposer="n1", second="n2")
    for code, out in results:
        assert code == 1, out
        assert "step 7: n2 logs Phase1a in ballot 0, which belongs to n1 (its proposer since step 1)" in out
        assert "each ballot belongs to one proposer" in out
    # the same proposer taking its own ballot again is fine
    for code, out in validate_both_ways(tmp_path, capsys, proposer="n1", second="n1"):
        assert code == 0, out


def test_an_acceptor_step_logged_by_another_node_is_refused_both_ways(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = {"acceptors": 3, "values": 2, "max_ballot": 1}
    for slots, extra in ((False, []), (True, ["--split", "slot"])):
        steps = decree(slots=slots)
        steps[2]["actor"] = "a3"  # a2's promise, logged by a3
        path = write(tmp_path / f"wrong-{slots}.jsonl", "paxos", params, steps)
        code, out, _ = run(capsys, "validate", "paxos", str(path), *extra)
        assert code == 1, out
        assert "a3 logs Phase1b of acceptor a2" in out and "logged by that acceptor" in out


def test_a_paxos_step_the_spec_cannot_take_is_reported_under_the_proposers_own_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    steps = decree()
    del steps[1:3]  # no promises: the Phase2a has no quorum behind it
    for i, e in enumerate(steps, 1):
        e["step"] = i
    path = write(tmp_path / "early.jsonl", "paxos", {"acceptors": 3}, steps)
    code, out, _ = run(capsys, "validate", "paxos", str(path), "--json")
    data = json.loads(out)
    assert code == 1 and data["mismatch"]["step"] == 2
    assert data["mismatch"]["event"]["actor"] == "n1" and data["mismatch"]["kind"] == "guard"
    assert data["mismatch"]["rule"]["name"] == "Phase2a"
    assert "p0 is the spec's name for the proposer of ballot 0, which this trace calls n1" in data["mismatch"]["reason"]


def test_a_set_among_an_actions_parameters_compares_by_members() -> None:
    from distcheck.spec.paxoscommit import Config as PCConfig
    from distcheck.spec.paxoscommit import PaxosCommit, Phase2a

    spec = PaxosCommit(PCConfig())
    # breadth first to the first Phase2a, whose quorum is a set of acceptors
    init = next(iter(spec.init_states()))
    paths: list[tuple[Any, list[Mapping[str, Any]]]] = [(init, [])]
    found: list[Mapping[str, Any]] | None = None
    while found is None:
        state, path = paths.pop(0)
        for action, nxt in spec.successors(state):
            observed = spec.observe(state, action)
            assert observed is not None
            if isinstance(action, Phase2a) and len(action.quorum) > 1:
                found = [*path, observed]
                break
            paths.append((nxt, [*path, observed]))
    logged = [{"step": i, **json.loads(json.dumps(o))} for i, o in enumerate(found, 1)]
    assert validate_events(spec, logged).ok
    logged[-1]["action"]["quorum"].reverse()
    assert logged[-1]["action"]["quorum"] != sorted(logged[-1]["action"]["quorum"])
    assert validate_events(spec, logged).ok
    logged[-1]["action"]["quorum"][0] = "a9"
    refused = validate_events(spec, logged)
    assert refused.mismatch is not None and refused.mismatch.step == len(found)


def test_under_the_shared_ballot_variant_two_proposers_may_share_a_ballot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    steps = events(
        ("n1", {"type": "Phase1a", "bal": 0}),
        ("a1", {"type": "Phase1b", "acceptor": "a1", "bal": 0}),
        ("a2", {"type": "Phase1b", "acceptor": "a2", "bal": 0}),
        ("n1", {"type": "Phase2a", "bal": 0, "val": "v1"}),
        ("n2", {"type": "Phase2a", "bal": 0, "val": "v2"}),
    )
    path = write(tmp_path / "shared.jsonl", "paxos", {"acceptors": 3}, steps)
    code, out, _ = run(capsys, "validate", "paxos", str(path))
    assert code == 1 and "each ballot belongs to one proposer" in out
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace('"variant": null', '"variant": "shared_ballot"')
    path.write_text("\n".join(lines) + "\n")
    code, out, _ = run(capsys, "validate", "paxos", str(path))
    assert code == 0, out


def test_map_entries_with_non_string_keys_compare_in_any_order() -> None:
    from distcheck.checks.traces.compare import same
    from distcheck.spec.lock import Config as LockConfig
    from distcheck.spec.lock import Lease, Lock

    init = next(iter(Lock(LockConfig()).init_states()))
    frozen_map = type(init.server.leases)  # the spec's frozen map, whichever module defines it
    leases = frozen_map({1: Lease("c1", 0, 2), 2: Lease("c2", 2, 4)})
    first: list[Any] = [1, {"type": "Lease", "holder": "c1", "granted_at": 0, "expires": 2}]
    second: list[Any] = [2, {"type": "Lease", "holder": "c2", "granted_at": 2, "expires": 4}]
    written = {"map": [first, second]}
    swapped = {"map": [second, first]}
    assert swapped != written
    assert same(leases, written, swapped)
    changed = {"map": [first, [2, {**second[1], "holder": "c1"}]]}
    assert not same(leases, written, changed)
