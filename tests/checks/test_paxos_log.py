"""checks/paxos_log: a Multi-Paxos trace projected onto each log slot and validated
slot by slot against spec/paxos.  Small hand-written traces in impl/paxos's
vocabulary (phase 1 with ``from_slot``, phase 2 with ``slot``), then one trace
recorded by the real implementation under the controlled scheduler."""

from __future__ import annotations

from typing import Any

import pytest

from distcheck.checks.conformance.simulate import SimOptions, simulate
from distcheck.checks.conformance.wiring import PaxosWiring
from distcheck.checks.conformance.wiring.paxos_log import LogTraceError, SlotTrace, project, validate_log
from distcheck.impl.runtime import FaultPolicy
from distcheck.spec.paxos import Config, Paxos

REPLICAS = ["r1", "r2", "r3"]

Event = dict[str, Any]


class Trace:
    """Builds an event list, numbering steps 1, 2, ... as a trace file does."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def _add(self, actor: str, action: dict[str, Any], **where: Any) -> Trace:
        self.events.append({"step": len(self.events) + 1, "actor": actor, "action": action, **where})
        return self

    def p1a(self, leader: str, bal: int, from_slot: int = 0) -> Trace:
        return self._add(leader, {"type": "Phase1a", "bal": bal}, from_slot=from_slot)

    def p1b(self, acceptor: str, bal: int, from_slot: int = 0) -> Trace:
        return self._add(acceptor, {"type": "Phase1b", "acceptor": acceptor, "bal": bal}, from_slot=from_slot)

    def p2a(self, leader: str, bal: int, val: str, slot: int) -> Trace:
        return self._add(leader, {"type": "Phase2a", "bal": bal, "val": val}, slot=slot)

    def p2b(self, acceptor: str, bal: int, val: str, slot: int) -> Trace:
        return self._add(acceptor, {"type": "Phase2b", "acceptor": acceptor, "bal": bal, "val": val}, slot=slot)

    def phase1(self, leader: str, bal: int, promisers: tuple[str, ...], from_slot: int = 0) -> Trace:
        self.p1a(leader, bal, from_slot)
        for acceptor in promisers:
            self.p1b(acceptor, bal, from_slot)
        return self

    def chosen(self, leader: str, bal: int, val: str, slot: int, voters: tuple[str, ...]) -> Trace:
        self.p2a(leader, bal, val, slot)
        for acceptor in voters:
            self.p2b(acceptor, bal, val, slot)
        return self


def two_slot_trace() -> Trace:
    """r1 leads ballot 7 (one phase 1 for every slot from 0), then gets c1:1 chosen
    in slot 0 and c2:1 in slot 1."""
    return (
        Trace()
        .phase1("r1", 7, ("r1", "r2", "r3"))
        .chosen("r1", 7, "c1:1", 0, ("r1", "r2"))
        .chosen("r1", 7, "c2:1", 1, ("r1", "r3"))
    )


def by_slot(slots: list[SlotTrace]) -> dict[int, SlotTrace]:
    return {s.slot: s for s in slots}


# ---------------------------------------------------------------- a valid trace


def test_a_correct_two_slot_trace_validates() -> None:
    events = two_slot_trace().events
    result = validate_log(events, REPLICAS)
    assert result.ok, result.message
    assert result.mismatch is None
    assert result.message == "all 10 events explained, in 2 slot(s)"
    assert result.states_explored > 0


def test_the_same_trace_missing_a_promise_quorum_is_refused() -> None:
    # The valid trace above is valid for a reason: with only r1's promise, the
    # leader has no quorum and may not propose (so the check is not vacuous).
    events = Trace().phase1("r1", 7, ("r1",)).chosen("r1", 7, "c1:1", 0, ("r1", "r2")).events
    result = validate_log(events, REPLICAS)
    assert result.verdict == "violated"
    assert result.mismatch is not None and result.mismatch.step == 3


# ------------------------------------------------------------------ projection


def test_a_phase1_event_lands_in_exactly_the_slots_from_its_from_slot_on() -> None:
    t = (
        Trace()
        .phase1("r1", 7, ("r1", "r2"), from_slot=0)
        .chosen("r1", 7, "c1:1", 0, ("r1", "r2"))
        .phase1("r2", 12, ("r2", "r3"), from_slot=1)
        .chosen("r2", 12, "c2:1", 1, ("r2", "r3"))
        .chosen("r2", 12, "c2:2", 2, ("r2", "r3"))
    )
    original = {e["step"]: e for e in t.events}
    slots = by_slot(project(t.events, REPLICAS))
    assert sorted(slots) == [0, 1, 2]
    ballot_12_phase1 = [7, 8, 9]  # steps of 1a(12) and its two 1b
    for slot, st in slots.items():
        steps = [e["step"] for e in st.events]
        phase1 = [e["step"] for e in st.events if e["action"]["type"] in ("Phase1a", "Phase1b")]
        assert [1, 2, 3] == phase1[:3]  # ballot 7's phase 1 covers every slot
        assert (set(ballot_12_phase1) <= set(steps)) == (slot >= 1)
        # and no slot holds another slot's phase 2
        phase2 = [e["step"] for e in st.events if e["action"]["type"] in ("Phase2a", "Phase2b")]
        assert phase2 and all(original[step]["slot"] == slot for step in phase2)
        assert steps == sorted(steps)  # in trace order
    assert [e["step"] for e in slots[0].events] == [1, 2, 3, 4, 5, 6]
    assert [e["step"] for e in slots[2].events] == [1, 2, 3, 7, 8, 9, 13, 14, 15]


def test_projection_renumbers_ballots_renames_values_and_acceptors_and_keeps_the_originals() -> None:
    t = (
        Trace()
        .phase1("r1", 7, ("r1", "r2"))
        .chosen("r1", 7, "c9:4", 0, ("r1", "r2"))
        .phase1("r3", 12, ("r2", "r3"))
        .chosen("r3", 12, "c9:4", 0, ("r3",))
        .chosen("r3", 12, "noop", 1, ("r3", "r2"))
    )
    slots = by_slot(project(t.events, REPLICAS))
    zero, one = slots[0], slots[1]
    # ballots 7 and 12 keep their order as 0 and 1; the spec names a proposer by its ballot
    assert [(e["action"]["type"], e["action"]["bal"], e["ballot"]) for e in zero.events[:4]] == [
        ("Phase1a", 0, 7),
        ("Phase1b", 0, 7),
        ("Phase1b", 0, 7),
        ("Phase2a", 0, 7),
    ]
    assert {e["action"]["bal"]: e["ballot"] for e in zero.events} == {0: 7, 1: 12}
    assert [e["actor"] for e in zero.events if e["action"]["type"] in ("Phase1a", "Phase2a")] == [
        "p0",
        "p0",
        "p1",
        "p1",
    ]
    # acceptors r1..r3 become a1..a3, as actor and in the action; the node keeps its name
    promises = [e for e in zero.events if e["action"]["type"] == "Phase1b"]
    assert [(e["actor"], e["action"]["acceptor"], e["node"]) for e in promises] == [
        ("a1", "a1", "r1"),
        ("a2", "a2", "r2"),
        ("a2", "a2", "r2"),
        ("a3", "a3", "r3"),
    ]
    # values are renamed per slot by first appearance, the command kept alongside
    votes0 = [(e["action"]["val"], e["command"]) for e in zero.events if e["action"]["type"] == "Phase2b"]
    assert votes0 == [("v1", "c9:4")] * 3
    votes1 = [(e["action"]["val"], e["command"]) for e in one.events if e["action"]["type"] == "Phase2b"]
    assert votes1 == [("v1", "noop")] * 2  # slot 1's first value is v1 again
    # the spec instance fits the slot: 3 acceptors, its ballots and its values
    assert zero.config == Config(acceptors=3, values=1, max_ballot=1)
    assert one.config == Config(acceptors=3, values=1, max_ballot=1)
    assert validate_log(t.events, REPLICAS).ok


def test_values_are_numbered_by_first_appearance_not_by_name() -> None:
    t = (
        Trace()
        .phase1("r1", 1, ("r1", "r2"))
        .chosen("r1", 1, "c2:1", 0, ("r1",))
        .phase1("r2", 2, ("r2", "r3"))
        .chosen("r2", 2, "c1:1", 0, ("r2", "r3"))
    )
    (zero,) = project(t.events, REPLICAS)
    proposals = [(e["action"]["val"], e["command"]) for e in zero.events if e["action"]["type"] == "Phase2a"]
    assert proposals == [("v1", "c2:1"), ("v2", "c1:1")]
    assert zero.config.values == 2


# ---------------------------------------------------------------- broken leaders


def test_a_leader_ignoring_the_reported_value_is_refused_in_its_own_names() -> None:
    t = (
        Trace()
        .phase1("r1", 1, ("r1", "r2"))
        .chosen("r1", 1, "c1:1", 0, ("r1",))  # r1 voted c1:1 (maybe chosen, as far as r2 can tell)
        .phase1("r2", 2, ("r1", "r2"))  # r1's promise reports that vote
        .p2a("r2", 2, "c2:5", 0)  # the ignore_reported_value bug: r2 proposes its own command
    )
    result = validate_log(t.events, REPLICAS)
    assert result.verdict == "violated"
    assert result.mismatch is not None
    assert result.mismatch.step == len(t.events)
    assert result.mismatch.group == "slot 0"
    assert "(recorded by r2 in slot 0: Phase2a at ballot 2 for c2:5)" in result.message
    # proposing the reported value instead is fine
    t.events[-1]["action"]["val"] = "c1:1"
    assert validate_log(t.events, REPLICAS).ok


def test_an_acceptor_breaking_its_promise_is_refused() -> None:
    t = (
        Trace()
        .phase1("r1", 1, ("r1", "r2"))
        .p2a("r1", 1, "c1:1", 0)
        .phase1("r2", 2, ("r3",), from_slot=0)  # r3 promises ballot 2 in every slot from 0
        .p2b("r3", 1, "c1:1", 0)  # the broken_promise bug: then votes in ballot 1
    )
    result = validate_log(t.events, REPLICAS)
    assert result.verdict == "violated"
    assert result.mismatch is not None and result.mismatch.step == len(t.events)
    assert "(recorded by r3 in slot 0: Phase2b at ballot 1 for c1:1)" in result.message
    # r1, which promised nothing above 1, may still vote
    t.events[-1]["actor"] = t.events[-1]["action"]["acceptor"] = "r1"
    assert validate_log(t.events, REPLICAS).ok


def test_a_promise_from_a_later_slot_does_not_bind_an_earlier_slot() -> None:
    # Why this is right: a Prepare for ballot 5 from slot 3 is phase 1 of slots
    # 3, 4, ... only.  Its leader will never propose in slot 1 at ballot 5, so in
    # slot 1's instance of Paxos ballot 5 does not exist, and r3 voting there at
    # ballot 2 breaks no promise that instance knows of; single-decree Paxos per
    # slot is what the projection checks.  Our implementation is stricter (an
    # acceptor keeps one promised ballot for all slots and would refuse ballot 2
    # everywhere after promising 5), but stricter is a subset of the behaviours,
    # and another implementation with per-slot promises must still validate.
    def trace(from_slot: int) -> Trace:
        return (
            Trace()
            .phase1("r1", 2, ("r1", "r2"), from_slot=0)
            .p2a("r1", 2, "c1:1", 1)
            .phase1("r2", 5, ("r3",), from_slot=from_slot)
            .p2b("r3", 2, "c1:1", 1)
        )

    later = trace(from_slot=3)
    by_slot = {st.slot: st for st in project(later.events, REPLICAS)}
    assert sorted(by_slot) == [0, 1, 3]  # slot 3: where the later phase 1 starts
    one = by_slot[1]
    assert {e["ballot"] for e in one.events} == {2}  # ballot 5 is not in slot 1 at all
    assert validate_log(later.events, REPLICAS).ok
    # the same promise made from slot 1 (or earlier) does bind slot 1
    for from_slot in (0, 1):
        covering = validate_log(trace(from_slot).events, REPLICAS)
        assert covering.verdict == "violated"
        assert covering.mismatch is not None and covering.mismatch.step == len(trace(from_slot).events)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("event", "words"),
    [
        (
            {"step": 1, "actor": "r1", "action": {"type": "Phase1a", "bal": 1}},
            "step 1: a Phase1a event needs a non-negative integer 'from_slot'",
        ),
        (
            {"step": 1, "actor": "r1", "action": {"type": "Phase1b", "acceptor": "r1", "bal": 1}, "slot": 0},
            "step 1: a Phase1b event needs a non-negative integer 'from_slot'",
        ),
        (
            {"step": 1, "actor": "r1", "action": {"type": "Phase2a", "bal": 1, "val": "c1:1"}, "from_slot": 0},
            "step 1: a Phase2a event needs a non-negative integer 'slot'",
        ),
        (
            {
                "step": 1,
                "actor": "r1",
                "action": {"type": "Phase2b", "acceptor": "r1", "bal": 1, "val": "x"},
                "slot": "0",
            },
            "step 1: a Phase2b event needs a non-negative integer 'slot'",
        ),
        (
            {"step": 1, "actor": "r1", "action": {"type": "Prepare", "bal": 1}, "from_slot": 0},
            "step 1: action {'type': 'Prepare', 'bal': 1} is not a Paxos step; allowed: "
            "Phase1a, Phase1b, Phase2a, Phase2b",
        ),
        (
            {"step": 1, "actor": "r1", "action": None, "slot": 0},
            "step 1: action None is not a Paxos step",
        ),
    ],
    ids=["1a-no-from_slot", "1b-slot-not-from_slot", "2a-no-slot", "2b-slot-not-int", "not-paxos", "no-action"],
)
def test_an_event_that_is_not_a_multi_paxos_step_is_one_clear_line(event: Event, words: str) -> None:
    events = [*two_slot_trace().events, {**event, "step": 1}]
    with pytest.raises(LogTraceError) as raised:
        project(events, REPLICAS)
    assert str(raised.value).startswith(words)
    result = validate_log(events, REPLICAS)
    assert result.verdict == "violated"
    assert result.message == str(raised.value)
    assert "\n" not in result.message
    assert result.mismatch is not None and result.mismatch.reason == result.message
    assert result.mismatch.bad_input
    assert result.mismatch.kind == ("unknown_action" if "is not a Paxos step" in words else "wrong_type")


def test_an_acceptor_not_among_the_given_names_is_refused() -> None:
    t = Trace().phase1("r1", 1, ("r1", "r4")).chosen("r1", 1, "c1:1", 0, ("r1",))
    with pytest.raises(LogTraceError, match=r"^step 3: acceptor 'r4' is not one of r1, r2, r3$"):
        project(t.events, REPLICAS)
    result = validate_log(t.events, REPLICAS)
    assert result.verdict == "violated"
    assert result.message == "step 3: acceptor 'r4' is not one of r1, r2, r3"
    assert result.mismatch is not None and result.mismatch.kind == "unknown_name"
    # named, r4 counts: its promise with r1's and r2's is a quorum of four
    four = Trace().phase1("r1", 1, ("r1", "r4", "r2")).chosen("r1", 1, "c1:1", 0, ("r1",))
    assert validate_log(four.events, [*REPLICAS, "r4"]).ok


# ----------------------------------------------------------------- end to end


def test_a_trace_recorded_by_the_implementation_validates_slot_by_slot() -> None:
    spec = Paxos(Config(acceptors=3))
    options = SimOptions(seed=3, faults=FaultPolicy(drop=True, duplicate=True), steps=5000)
    outcome = simulate(spec, PaxosWiring(), {"acceptors": 3}, options)
    assert outcome.ok, outcome.run.render(compact=True)
    events = outcome.run.trace.events
    assert validate_log(events, REPLICAS).ok
    slots = project(events, REPLICAS)
    assert len(slots) >= 2
    assert all(st.events for st in slots)
