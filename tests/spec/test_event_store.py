"""The event store: safe at several sizes, the gap race handled (a late commit is
waited for and applied), the variants' counterexamples pinned as action lists, and
the rules' guards on hand-built states."""

from __future__ import annotations

import pytest

from distcheck.checks.search.explore import explore
from distcheck.spec.event_store import (
    Append,
    Commit,
    Config,
    Conflict,
    EventStore,
    Fetch,
    Handle,
    PassHole,
    ProjectorCrash,
    Read,
    WriterCrash,
)
from distcheck.spec.registry import REGISTRY
from tests.spec.steps import broken, replay


def variant(name: str) -> EventStore:
    spec = REGISTRY["event_store"].make(variant=name)
    assert isinstance(spec, EventStore)
    return spec


#: w1 and w2 take positions 1 and 2 on different streams; 2 commits first
GAP = [Read("w1", "s1"), Read("w2", "s2"), Append("w1"), Append("w2"), Commit("w2")]


@pytest.mark.parametrize(
    "config",
    [Config(), Config(writers=3), Config(writers=2, streams=1, appends=2), Config(writers=2, max_crashes=0)],
    ids=["defaults", "three-writers", "one-stream-two-appends", "no-crashes"],
)
def test_the_store_is_safe(config: Config) -> None:
    result = explore(EventStore(config))
    assert result.violation is None or result.violation.kind == "unreached", result.violation


def test_the_subscription_waits_for_a_lower_position_and_applies_it_first() -> None:
    spec = EventStore()
    state = replay(spec, GAP)
    assert spec.next_state(state, Fetch()) is None  # position 1 is in flight: wait
    state = replay(spec, [*GAP, Commit("w1"), Fetch(), Handle(), Fetch(), Handle()])
    assert state.applied == (1, 2) and state.committed_order == (2, 1) and state.checkpoint == 2
    assert not broken(spec, state)


def test_a_conflict_leaves_a_hole_that_the_subscription_passes() -> None:
    spec = EventStore()
    plan = [Read("w1", "s1"), Read("w2", "s1"), Append("w1"), Append("w2"), Commit("w2"), Conflict("w1")]
    state = replay(spec, plan)
    assert state.aborted == {1} and state.version["s1"] == 1 and state.conflicts == 1
    assert spec.next_state(state, Commit("w1")) is None  # the transaction is over
    state = replay(spec, [*plan, PassHole(), Fetch(), Handle()])
    assert state.checkpoint == 2 and state.applied == (2,) and not broken(spec, state)


def test_a_writer_crash_before_it_appends_takes_no_position() -> None:
    spec = EventStore()
    state = replay(spec, [Read("w1", "s1"), WriterCrash("w1")])
    assert state.aborted == frozenset() and state.next_position == 1 and state.txns["w1"] is None


def test_a_projector_crash_loses_only_the_fetched_event_which_is_fetched_again() -> None:
    spec = EventStore()
    state = replay(spec, [Read("w1", "s1"), Append("w1"), Commit("w1"), Fetch(), ProjectorCrash()])
    assert state.fetched == 0 and state.checkpoint == 0 and not broken(spec, state)
    state = replay(spec, [Read("w1", "s1"), Append("w1"), Commit("w1"), Fetch(), ProjectorCrash(), Fetch(), Handle()])
    assert state.applied == (1,) and state.read_model["s1"] == 1


def test_each_writer_begins_at_most_appends_transactions() -> None:
    spec = EventStore()
    state = replay(spec, [Read("w1", "s1"), Append("w1"), Commit("w1")])
    assert spec.next_state(state, Read("w1", "s1")) is None


# ------------------------------------------------------------------ the variants


def test_no_expected_version_lets_two_writers_commit_the_same_version() -> None:
    spec = variant("no_expected_version")
    state = replay(spec, [Read("w1", "s1"), Read("w2", "s1"), Append("w1"), Append("w2"), Commit("w1"), Commit("w2")])
    assert sorted(e.version for e in state.events.values()) == [1, 1]
    assert broken(spec, state)[0] == "VersionsGapless"


def test_append_at_head_loses_an_update() -> None:
    spec = variant("append_at_head")
    state = replay(spec, [Read("w1", "s1"), Read("w2", "s1"), Append("w1"), Append("w2"), Commit("w1"), Commit("w2")])
    late = state.events[2]
    assert (late.read, late.version, late.state) == (0, 2, 1)  # decided on version 0, written as 2
    assert broken(spec, state) == ["NoLostUpdate", "ReplayMatches"]


def test_loading_every_stream_gives_the_aggregate_a_wrong_state() -> None:
    spec = variant("load_reads_all_streams")
    plan = [Read("w1", "s1"), Append("w1"), Commit("w1"), Read("w2", "s2"), Append("w2"), Commit("w2")]
    state = replay(spec, plan)
    assert state.events[2].state == 2  # s2's first event, loaded as if s1's counted
    assert broken(spec, state) == ["ReplayMatches"]


def test_a_reader_that_skips_the_gap_never_applies_the_late_commit() -> None:
    spec = variant("reader_skips_gap")
    state = replay(spec, [*GAP, Fetch(), Commit("w1"), Handle()])
    assert state.checkpoint == 2 and state.applied == (2,) and 1 in state.events
    assert broken(spec, state) == ["NoSkippedEvent"]


def test_a_checkpoint_saved_before_the_update_skips_the_event_in_a_crash() -> None:
    spec = variant("checkpoint_before_update")
    state = replay(spec, [Read("w1", "s1"), Append("w1"), Commit("w1"), Fetch(), ProjectorCrash()])
    assert state.checkpoint == 1 and state.applied == ()
    assert broken(spec, state) == ["NoSkippedEvent"]


def test_a_checkpoint_in_memory_applies_events_again_after_a_crash() -> None:
    spec = variant("volatile_checkpoint")
    plan = [Read("w1", "s1"), Append("w1"), Commit("w1"), Fetch(), Handle(), ProjectorCrash(), Fetch(), Handle()]
    state = replay(spec, plan)
    assert state.applied == (1, 1) and state.read_model["s1"] == 2
    assert broken(spec, state) == ["AppliedOnce"]
