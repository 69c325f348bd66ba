"""PBFT (spec/pbft.py): safe at its default size and at a smaller one, each variant's
counterexample pinned as an action list, and the guards on hand-built states."""

from __future__ import annotations

import attrs
import pytest

from distcheck.checks.search.explore import explore
from distcheck.spec.pbft import (
    FORGED,
    NULL,
    Commit,
    Config,
    Execute,
    Message,
    MsgCommit,
    MsgNewView,
    MsgPrepare,
    MsgPrePrepare,
    MsgReply,
    MsgViewChange,
    NewView,
    Pbft,
    PbftState,
    Prepare,
    PrePrepare,
    ViewChange,
)
from tests.spec.steps import broken, replay


def spec(variant: str | None = None, **params: int) -> Pbft:
    if variant == "too_few_replicas":
        params = {"replicas": 3, "faulty": 1, **params}
    return Pbft(Config(variant=variant, **params))


def with_msgs(s: PbftState, *msgs: Message) -> PbftState:
    return attrs.evolve(s, msgs=s.msgs.send(*msgs))


# ------------------------------------------------------------------ exploration


def test_safe_at_the_default_size() -> None:
    result = explore(spec())
    assert result.verdict == "ok"
    assert (result.stats.distinct_states, result.stats.depth) == (12239, 19)
    assert set(result.reached) == {
        "EquivocationAccepted",
        "CommittedUnderByzantinePrimary",
        "CommittedAfterViewChange",
        "CarriedOver",
    }


def test_safe_with_one_request_and_with_no_faulty_replica() -> None:
    assert explore(spec(requests=1)).verdict == "ok"
    result = explore(spec(replicas=3, faulty=0, max_view=0))
    assert result.verdict == "ok"
    # No faulty replica, no equivocation to accept, no view change: only an execution.
    assert set(result.reached) == {"RequestExecuted"}


def test_config_refuses_fewer_than_3f_plus_1_replicas_except_in_the_variant() -> None:
    with pytest.raises(ValueError, match="replicas >= 3 \\* faulty \\+ 1"):
        Config(replicas=3, faulty=1)
    assert spec("too_few_replicas").quorum == 2


# ------------------------------------------------------------------ variants


def test_too_few_replicas_two_quorums_meet_only_in_the_byzantine_primary() -> None:
    s = spec("too_few_replicas")
    path = [
        Prepare("r2", 0, 1, "q1"),  # r2 takes r1's pre-prepare of q1: quorum {r1, r2}
        Commit("r2", 0, 1, "q1"),
        Prepare("r3", 0, 1, "q2"),  # r3 takes r1's pre-prepare of q2: quorum {r1, r3}
        Commit("r3", 0, 1, "q2"),
    ]
    assert broken(s, replay(s, path[:-1])) == []
    assert broken(s, replay(s, path)) == ["PreparedConsistent"]
    result = explore(s)
    assert result.violation is not None and [str(step.action) for step in result.violation.trace[1:]] == [
        str(a) for a in path
    ]


def test_commit_quorum_2f_commits_what_no_view_change_can_see() -> None:
    s = spec("commit_quorum_2f")
    path = [
        Prepare("r2", 0, 1, "q1"),
        ViewChange("r2", 1),  # r2 moves on before it is prepared: it reports nothing
        Prepare("r3", 0, 1, "q1"),
        Commit("r3", 0, 1, "q1"),
        Execute("r3", 0, 1, "q1"),  # commits from r3 and the Byzantine r1 only: 2f
        ViewChange("r4", 1),
        NewView("r2", 1, ()),  # view-changes of r2, r4 and r1 (lying): no certificate
        PrePrepare("r2", 1, 1, "q2"),
        Prepare("r4", 1, 1, "q2"),
        Commit("r2", 1, 1, "q2"),
        Execute("r2", 1, 1, "q2"),
    ]
    assert broken(s, replay(s, path[:-1])) == []
    assert broken(s, replay(s, path)) == ["Agreement"]
    assert len(explore(s).violation.trace) == len(path) + 1  # type: ignore[union-attr]
    # The reference spec waits for a third commit, which nobody sends.
    assert spec().next_state(replay(spec(), path[:4]), Execute("r3", 0, 1, "q1")) is None


def test_new_view_ignoring_a_prepared_certificate_breaks_agreement() -> None:
    s = spec("new_view_ignores_prepared")
    path = [
        Prepare("r2", 0, 1, "q1"),
        Prepare("r3", 0, 1, "q1"),
        Commit("r2", 0, 1, "q1"),
        ViewChange("r2", 1),  # reports its certificate for q1
        Commit("r3", 0, 1, "q1"),
        Execute("r3", 0, 1, "q1"),
        ViewChange("r3", 1),
        NewView("r2", 1, ()),  # ignores it
        PrePrepare("r2", 1, 1, "q2"),
        Prepare("r3", 1, 1, "q2"),
        Commit("r2", 1, 1, "q2"),
        Commit("r3", 1, 1, "q2"),
        Execute("r2", 1, 1, "q2"),
    ]
    assert broken(s, replay(s, path)) == ["Agreement"]
    assert len(explore(s).violation.trace) == len(path) + 1  # type: ignore[union-attr]
    # The reference primary must carry q1.
    state = replay(spec(), path[:7])
    assert spec().new_view_options(state, "r2", 1) == [((1, "q1"),)]


def test_accepting_a_pre_prepare_from_a_non_primary_splits_a_view() -> None:
    s = spec("accept_from_non_primary")
    path = [
        ViewChange("r2", 1),
        ViewChange("r3", 1),
        NewView("r2", 1, ()),
        Prepare("r3", 1, 1, "q1"),  # r1's pre-prepare: r1 is not the primary of view 1
        Commit("r3", 1, 1, "q1"),
        ViewChange("r4", 1),
        Prepare("r4", 1, 1, "q2"),
        Commit("r4", 1, 1, "q2"),
    ]
    assert broken(s, replay(s, path)) == ["PreparedConsistent"]
    assert len(explore(s).violation.trace) == len(path) + 1  # type: ignore[union-attr]
    assert spec().next_state(replay(spec(), path[:3]), Prepare("r3", 1, 1, "q1")) is None


def test_unsigned_request_is_executed() -> None:
    s = spec("unsigned_request")
    path = [
        Prepare("r2", 0, 1, FORGED),
        Prepare("r3", 0, 1, FORGED),
        Commit("r2", 0, 1, FORGED),
        Commit("r3", 0, 1, FORGED),
        Execute("r2", 0, 1, FORGED),
    ]
    assert broken(s, replay(s, path)) == ["Validity"]
    assert len(explore(s).violation.trace) == len(path) + 1  # type: ignore[union-attr]
    assert spec().next_state(next(iter(spec().init_states())), Prepare("r2", 0, 1, FORGED)) is None


# ------------------------------------------------------------------ guards


def test_faulty_replicas_send_only_messages_under_their_own_name() -> None:
    s = spec()
    init = next(iter(s.init_states()))
    assert {m.sender for m in init.msgs.sent} == {"r1"}
    assert not any(isinstance(m, (MsgReply, MsgNewView)) for m in init.msgs.sent)
    assert MsgPrePrepare("r1", 0, 1, "q1") in init.msgs and MsgPrePrepare("r1", 0, 1, "q2") in init.msgs
    # The faulty replica takes no steps: every action is an honest replica's.
    assert {a.replica for a in s.actions(init)} <= set(s.honest)


def test_a_backup_accepts_one_pre_prepare_per_view_and_number() -> None:
    s = spec()
    state = replay(s, [Prepare("r2", 0, 1, "q1")])
    assert s.next_state(state, Prepare("r2", 0, 1, "q2")) is None
    assert s.next_state(state, Prepare("r3", 0, 1, "q2")) is not None
    # Not before its view has started, nor the primary itself.
    moved = replay(s, [ViewChange("r3", 1)])
    assert s.next_state(moved, Prepare("r3", 1, 1, "q1")) is None
    assert s.next_state(moved, Prepare("r3", 0, 1, "q1")) is None


def test_prepared_needs_a_quorum_less_one_of_backups_and_execute_a_quorum_of_commits() -> None:
    s = spec()
    state = replay(s, [Prepare("r2", 0, 1, "q1")])
    # r1's prepare does not count: it is the primary of view 0.
    assert s.next_state(state, Commit("r2", 0, 1, "q1")) is None
    state = replay(s, [Prepare("r2", 0, 1, "q1"), Prepare("r3", 0, 1, "q1"), Commit("r2", 0, 1, "q1")])
    # Commits from r2 and r1: two of three.
    assert s.next_state(state, Execute("r2", 0, 1, "q1")) is None
    done = s.next_state(state, Commit("r3", 0, 1, "q1"))
    assert done is not None and s.next_state(done, Execute("r2", 0, 1, "q1")) is not None
    assert s.next_state(done, Execute("r4", 0, 1, "q1")) is None  # r4 is not prepared


def test_view_change_reports_the_certificates_and_the_new_view_carries_them() -> None:
    s = spec()
    state = replay(
        s,
        [
            Prepare("r2", 0, 1, "q2"),
            Prepare("r4", 0, 1, "q2"),
            Commit("r4", 0, 1, "q2"),
            ViewChange("r4", 1),
            ViewChange("r2", 1),
        ],
    )
    assert MsgViewChange("r4", 1, ((0, 1, "q2"),)) in state.msgs
    assert MsgViewChange("r2", 1, ()) in state.msgs
    # {r2, r4, r1} carries q2 whichever view-change r1 sent (its claims are checked).
    assert s.new_view_options(state, "r2", 1) == [((1, "q2"),)]
    nxt = s.next_state(state, NewView("r2", 1, ((1, "q2"),)))
    assert nxt is not None and MsgPrePrepare("r2", 1, 1, "q2") in nxt.msgs
    assert s.next_state(nxt, PrePrepare("r2", 1, 1, "q1")) is None  # the number is taken
    # A new view only once, and only by its primary, in it.
    assert s.new_view_options(nxt, "r2", 1) == []
    assert s.new_view_options(state, "r4", 1) == []


def test_a_byzantine_certificate_claim_needs_its_evidence() -> None:
    s = spec()
    state = replay(s, [ViewChange("r2", 1), ViewChange("r3", 1)])
    # r1 claims q1 prepared in view 0, but no backup prepared it: nothing is carried.
    assert s.new_view_options(state, "r2", 1) == [()]
    assert not s.certified(state, 0, 1, "q1")


def test_invariants_on_hand_built_states() -> None:
    s = spec()
    init = next(iter(s.init_states()))
    assert broken(s, init) == []
    split = with_msgs(init, MsgReply("r2", 0, 1, "q1"), MsgReply("r3", 1, 1, "q2"))
    assert broken(s, split) == ["Agreement"]
    assert broken(s, with_msgs(init, MsgReply("r2", 0, 1, FORGED))) == ["Validity"]
    assert broken(s, with_msgs(init, MsgReply("r2", 1, 1, NULL))) == []
    # The faulty replica's conflicting votes break nothing: it is not honest.
    assert broken(s, with_msgs(init, MsgCommit("r2", 0, 1, "q1"), MsgCommit("r3", 0, 1, "q2"))) == [
        "PreparedConsistent"
    ]
    assert broken(s, with_msgs(init, MsgCommit("r2", 0, 1, "q1"), MsgCommit("r3", 1, 1, "q2"))) == []
    assert broken(s, attrs.evolve(init, view=init.view.set("r2", 5))) == ["TypeOK"]
    assert broken(s, with_msgs(init, MsgPrepare("r9", 0, 1, "q1"))) == ["TypeOK"]


# --------------------------------------------------- initial message sets


def test_a_run_starts_from_what_its_faulty_replicas_really_sent() -> None:
    """``initial`` (how an implementation's trace is validated): the faulty
    replicas' real messages, a view-change claiming two certificates among them;
    a new-view counts only from its view's primary, and honest messages are refused."""
    s = spec(seqs=2)
    claims = MsgViewChange("r1", 1, ((0, 1, "q1"), (0, 2, "q2")))
    state = s.initial([MsgPrePrepare("r1", 0, 1, "q1"), claims, MsgNewView("r1", 1, ())])
    assert claims in state.msgs and len(state.msgs.sent) == 3
    moved = s.next_state(state, ViewChange("r3", 1))
    assert moved is not None
    assert not s.started(moved, "r3", 1)  # r1 is not the primary of view 1: its new-view starts nothing
    assert s.next_state(state, Prepare("r2", 0, 1, "q1")) is not None  # the faulty primary's pre-prepare
    with pytest.raises(ValueError, match="must all be the faulty replicas'"):
        s.initial([MsgPrepare("r2", 0, 1, "q1")])
