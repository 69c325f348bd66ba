"""spec/raft.py: TLC's counts, the rules on hand-built states, each invariant's
clauses, the step property, observation and the refinement to Consensus."""

from __future__ import annotations

import attrs
import pytest

from distcheck.checks.search.explore import check_refinement_of, explore, follow_witness
from distcheck.spec.raft import (
    CANDIDATE,
    FOLLOWER,
    LEADER,
    AdvanceCommitIndex,
    AppendEntries,
    AppendEntriesRequest,
    AppendEntriesResponse,
    BecomeLeader,
    Config,
    DropMessage,
    Entry,
    Raft,
    RaftState,
    Receive,
    RequestVoteRequest,
    RequestVoteResponse,
    Restart,
    Timeout,
    chosen_first_value,
    leader_append_only,
)
from distcheck.spec.values import Bag, FrozenMap

E2 = Entry(2, "v1")
E3 = Entry(3, "v1")


def initial(servers: int = 2) -> tuple[Raft, RaftState]:
    spec = Raft(Config(servers=servers, max_term=9, max_log=9, max_msgs=9))
    return spec, next(iter(spec.init_states()))


def broken(spec: Raft, s: RaftState) -> list[str]:
    return [inv.name for inv in spec.invariants() if not inv.holds(s)]


def with_server(s: RaftState, server: str, **fields: object) -> RaftState:
    """``s`` with some of one server's variables set."""
    changes = {name: getattr(s, name).set(server, value) for name, value in fields.items()}
    return attrs.evolve(s, **changes)


def test_state_counts_equal_tlcs() -> None:
    """TLC on raft.tla with the same constants and CONSTRAINT (benchmarks/raft_vs_tlc.py
    runs both side by side): 1,760 distinct states, 13,797 generated, depth 28."""
    stats = explore(Raft(Config(servers=2, values=1, max_term=2, max_log=1, max_msgs=1))).stats
    assert (stats.distinct_states, stats.generated_states, stats.depth) == (1760, 13797, 28)


def test_timeout_starts_an_election_in_the_next_term_only_for_followers_and_candidates() -> None:
    spec, s = initial()
    t = spec.next_state(s, Timeout("s1"))
    assert t is not None and (t.role["s1"], t.current_term["s1"], t.voted_for["s1"]) == (CANDIDATE, 2, None)
    assert spec.next_state(with_server(s, "s1", role=LEADER), Timeout("s1")) is None


def test_a_newer_term_is_adopted_first_and_the_message_stays() -> None:
    spec, s = initial()
    request = RequestVoteRequest(3, 0, 0, "s1", "s2")
    s = attrs.evolve(s, messages=Bag([request]))
    t = spec.next_state(s, Receive(request))
    assert t is not None and (t.current_term["s2"], t.role["s2"], t.voted_for["s2"]) == (3, FOLLOWER, None)
    assert request in t.messages
    u = spec.next_state(t, Receive(request))  # now handled in the new term: a vote
    assert u is not None and u.voted_for["s2"] == "s1" and request not in u.messages
    assert RequestVoteResponse(3, True, (), "s2", "s1") in u.messages


def test_a_vote_needs_an_up_to_date_log_and_no_other_vote_in_the_term() -> None:
    spec, s = initial()
    s = with_server(s, "s2", current_term=2, log=(E2,))
    behind = RequestVoteRequest(2, 0, 0, "s1", "s2")
    t = spec.next_state(attrs.evolve(s, messages=Bag([behind])), Receive(behind))
    assert t is not None and RequestVoteResponse(2, False, (E2,), "s2", "s1") in t.messages
    voted = with_server(s, "s2", voted_for="s2", log=())
    asked = RequestVoteRequest(2, 0, 0, "s1", "s2")
    t = spec.next_state(attrs.evolve(voted, messages=Bag([asked])), Receive(asked))
    assert t is not None and t.voted_for["s2"] == "s2"


def test_stale_responses_are_dropped_unread() -> None:
    spec, s = initial()
    s = with_server(s, "s1", current_term=3, role=CANDIDATE)
    stale = RequestVoteResponse(2, True, (), "s2", "s1")
    t = spec.next_state(attrs.evolve(s, messages=Bag([stale])), Receive(stale))
    assert t is not None and t.votes_granted["s1"] == frozenset() and len(t.messages) == 0


def test_a_conflicting_entry_is_removed_one_step_at_a_time_then_the_new_one_appended() -> None:
    spec, s = initial()
    s = with_server(s, "s2", current_term=3, log=(E2,))
    request = AppendEntriesRequest(3, 0, 0, (E3,), (E3,), 0, "s1", "s2")
    s = attrs.evolve(s, messages=Bag([request]))
    removed = spec.next_state(s, Receive(request))
    assert removed is not None and removed.log["s2"] == () and request in removed.messages
    appended = spec.next_state(removed, Receive(request))
    assert appended is not None and appended.log["s2"] == (E3,) and request in appended.messages
    done = spec.next_state(appended, Receive(request))
    assert done is not None and request not in done.messages
    assert AppendEntriesResponse(3, True, 1, "s2", "s1") in done.messages


def test_a_candidate_hearing_a_leader_of_its_term_returns_to_follower_and_a_leader_ignores_its_own_term() -> None:
    spec, s = initial()
    request = AppendEntriesRequest(2, 0, 0, (), (), 0, "s1", "s2")
    s = attrs.evolve(with_server(s, "s2", current_term=2, role=CANDIDATE), messages=Bag([request]))
    t = spec.next_state(s, Receive(request))
    assert t is not None and t.role["s2"] == FOLLOWER and request in t.messages
    assert spec.next_state(with_server(s, "s2", role=LEADER), Receive(request)) is None


def test_a_leader_commits_only_an_entry_of_its_own_term() -> None:
    spec, s = initial()
    s = with_server(s, "s1", current_term=3, role=LEADER, log=(E2,), match_index=FrozenMap({"s1": 0, "s2": 1}))
    t = spec.next_state(s, AdvanceCommitIndex("s1"))
    assert t is not None and t.commit_index["s1"] == 0
    s = with_server(s, "s1", log=(E3,))
    t = spec.next_state(s, AdvanceCommitIndex("s1"))
    assert t is not None and t.commit_index["s1"] == 1


def test_append_entries_sends_the_entry_at_next_index_and_never_to_itself() -> None:
    spec, s = initial()
    s = with_server(s, "s1", current_term=2, role=LEADER, log=(E2,))
    t = spec.next_state(s, AppendEntries("s1", "s2"))
    assert t is not None
    (sent,) = t.messages.distinct()
    assert isinstance(sent, AppendEntriesRequest) and (sent.prev_log_index, sent.entries) == (0, (E2,))
    assert spec.next_state(s, AppendEntries("s1", "s1")) is None


def test_restart_keeps_term_vote_and_log_only() -> None:
    spec, s = initial()
    s = with_server(s, "s1", current_term=2, role=LEADER, voted_for="s1", log=(E2,), commit_index=1)
    t = spec.next_state(s, Restart("s1"))
    assert t is not None
    assert (t.current_term["s1"], t.voted_for["s1"], t.log["s1"]) == (2, "s1", (E2,))
    assert (t.role["s1"], t.commit_index["s1"]) == (FOLLOWER, 0)


def test_become_leader_needs_a_quorum_and_records_the_election() -> None:
    spec, s = initial(3)
    s = with_server(s, "s1", current_term=2, role=CANDIDATE, votes_granted=frozenset({"s1"}))
    assert spec.next_state(s, BecomeLeader("s1")) is None
    s = with_server(s, "s1", votes_granted=frozenset({"s1", "s3"}), votes_responded=frozenset({"s1", "s3"}))
    t = spec.next_state(s, BecomeLeader("s1"))
    assert t is not None and t.role["s1"] == LEADER and t.next_index["s1"]["s2"] == 1
    assert [(e.term, e.leader) for e in t.elections] == [(2, "s1")]


def test_each_invariant_clause_fails_on_a_hand_built_state() -> None:
    spec, s = initial()
    assert broken(spec, s) == []
    everyone = frozenset({"s1", "s2"})
    campaign = {"current_term": 2, "role": CANDIDATE, "votes_granted": everyone, "votes_responded": everyone}
    two_leaders = spec.next_state(with_server(with_server(s, "s1", **campaign), "s2", **campaign), BecomeLeader("s1"))
    assert two_leaders is not None
    both = spec.next_state(two_leaders, BecomeLeader("s2"))
    assert both is not None and broken(spec, both) == ["ElectionSafety"]
    mismatch = with_server(with_server(s, "s1", log=(E2, E3)), "s2", log=(Entry(2, "v2"), E3))
    assert "LogMatching" in broken(Raft(Config(values=2)), mismatch)
    lost = with_server(s, "s1", commit_index=1)
    assert broken(spec, lost) == ["StateMachineSafety"]
    disagree = with_server(with_server(s, "s1", log=(E2,), commit_index=1), "s2", log=(E3,), commit_index=1)
    assert "StateMachineSafety" in broken(spec, disagree)
    missing = with_server(
        with_server(s, "s1", log=(E2,), commit_index=1, current_term=2), "s2", role=LEADER, current_term=3
    )
    assert broken(spec, missing) == ["LeaderCompleteness"]
    later_commit = with_server(missing, "s1", current_term=4)  # committed after s2's term: not s2's business
    assert broken(spec, later_commit) == []


def test_leader_append_only_is_a_property_of_steps() -> None:
    _, s = initial()
    leading = with_server(s, "s1", role=LEADER, current_term=2, log=(E2,))
    assert leader_append_only(leading, with_server(leading, "s1", log=(E2, E2)))
    assert not leader_append_only(leading, with_server(leading, "s1", log=()))
    assert leader_append_only(leading, with_server(leading, "s1", log=(), current_term=3))


def test_observation_leaves_out_the_history_field() -> None:
    spec, s = initial()
    response = RequestVoteResponse(2, True, (E2,), "s2", "s1")
    seen = spec.observe(s, Receive(response))
    assert seen == {
        "actor": "s1",
        "action": {
            "type": "Receive",
            "msg": {"type": "RequestVoteResponse", "term": 2, "vote_granted": True, "source": "s2", "dest": "s1"},
        },
    }
    dropped = spec.observe(s, DropMessage(response))
    assert dropped is not None and dropped["actor"] == "network"


def test_the_first_slot_refines_consensus() -> None:
    result = check_refinement_of(Raft(Config(values=2, max_term=2)))
    assert result.violation is not None and result.violation.kind == "unreached"  # only LaterLeader, at term 2
    _, s = initial(3)
    stored = with_server(with_server(s, "s1", log=(E2,)), "s2", log=(E2,))
    assert chosen_first_value(stored).chosen == {"v1"}
    newer = attrs.evolve(with_server(stored, "s3", log=(E3,)))
    assert chosen_first_value(newer).chosen == frozenset()


@pytest.mark.parametrize("variant", ["no_log_check", "commit_old_term", "forget_vote"])
def test_pinned_counterexamples_read_as_the_docs_say(variant: str) -> None:
    info = Raft.variants()[variant]
    spec = Raft(Config(variant=variant, **info.params))
    result = follow_witness(spec, info.witness)
    expected = {"no_log_check": "LeaderCompleteness", "commit_old_term": "LeaderCompleteness"}
    assert result.violation is not None
    assert result.violation.name == expected.get(variant, "ElectionSafety")
