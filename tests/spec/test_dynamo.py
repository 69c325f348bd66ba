"""Dynamo (spec/dynamo.py): the reference passes at its default size and reaches
each reachability property; each variant's counterexample is pinned as an action
list; last-writer-wins loses a later write exactly when clocks are skewed; and the
merge rules and history check on hand-made values."""

from __future__ import annotations

from typing import Any

import pytest

from distcheck.checks.search.explore import explore
from distcheck.spec.dynamo import (
    Answer,
    AntiEntropy,
    Config,
    Dynamo,
    DynamoAction,
    Event,
    Get,
    GetDone,
    Heal,
    Partition,
    Put,
    PutDone,
    Repair,
    StampedPut,
    Store,
    Version,
    linearizable,
    merge_latest,
    merge_siblings,
)
from tests.spec.steps import broken, replay


def spec(variant: str | None = None, **params: Any) -> Dynamo:
    params = {**(Dynamo.variants()[variant].params if variant else {}), **params}
    return Dynamo(Config(variant=variant, **params))


# ------------------------------------------------------------------ the merges


def test_siblings_keep_every_version_no_other_dominates() -> None:
    one, two = Version(1, (1, 0), 0, frozenset()), Version(2, (0, 1), 0, frozenset())
    two_after_one = Version(2, (1, 1), 0, frozenset({1}))
    assert merge_siblings([one, two]) == {one, two}  # concurrent: both kept
    assert merge_siblings([one, two_after_one]) == {two_after_one}  # one is in its past


def test_last_writer_wins_keeps_the_highest_timestamp_then_value() -> None:
    early, late = Version(1, (), 3, frozenset()), Version(2, (), 1, frozenset())
    assert merge_latest([early, late]) == {early}
    tied = Version(2, (), 3, frozenset())
    assert merge_latest([early, tied]) == {tied}
    assert merge_latest([]) == frozenset()


def test_a_read_that_returned_siblings_is_no_registers_answer() -> None:
    writers = {"w1": 1, "w2": 2}
    calls = [Event("call", "w1", (1,)), Event("call", "w2", (2,)), Event("call", "r1", ())]
    assert linearizable([*calls, Event("return", "r1", (1,))], writers)
    assert not linearizable([*calls, Event("return", "r1", (1, 2))], writers)


# --------------------------------------------------------------- the reference


def test_default_size_passes_and_reaches_its_goals() -> None:
    result = explore(spec())
    assert result.verdict == "ok", result.violation
    assert (result.stats.distinct_states, result.stats.depth) == (10478, 12)
    assert set(result.reached) == {"WriteAcknowledged", "Converged"}


def test_two_blind_writes_come_back_as_siblings() -> None:
    s = spec(writers=2, servers=2, partitions=0)
    result = explore(s)
    assert result.verdict == "ok", result.violation
    assert "ReadSiblings" in result.reached
    path: list[DynamoAction] = [
        Put("w1", "s1", "blind"),
        Put("w2", "s2", "blind"),
        Get("r1", "s1"),
        Answer("s2", "r1"),
        GetDone("r1"),  # s1 holds 1, s2 holds 2: the read merges them, both kept
    ]
    after = replay(s, path)
    assert after.results["r1"] == (1, 2)
    # Read repair sends the merge to both replicas, each of which was behind.
    after = replay(s, [*path, Repair("s1", "r1"), Repair("s2", "r1")])
    assert after.replica["s1"] == after.replica["s2"] and len(after.replica["s1"]) == 2


def test_a_write_that_read_first_supersedes_what_it_read() -> None:
    s = spec(writers=2, readers=0)
    after = replay(s, [Put("w1", "s1", "blind"), Store("s2", "w1"), PutDone("w1"), Put("w2", "s1", "read")])
    (held,) = after.replica["s1"]
    assert (held.value, held.vv, held.follows) == (2, (1, 1), frozenset({1}))
    assert broken(s, after) == []  # w1 is gone from s1, superseded by a write that followed it


def test_a_partition_loses_what_crosses_it_and_anti_entropy_brings_it_back() -> None:
    s = spec()
    path: list[DynamoAction] = [Put("w1", "s1", "blind"), Partition("s3"), Store("s2", "w1"), PutDone("w1")]
    cut = replay(s, path)
    assert not [m for m in cut.msgs.sent if m.server == "s3"]  # the store to s3 was lost
    assert s.next_state(cut, AntiEntropy("s2", "s3")) is None  # not across the cut
    healed = replay(s, [*path, Heal(), AntiEntropy("s2", "s3")])
    assert s.converged(healed)


# ------------------------------------------------------------------ variants


def test_per_server_version_vectors_lose_an_acknowledged_write() -> None:
    s = spec("server_version_vectors")
    path: list[DynamoAction] = [
        Put("w1", "s1", "blind"),  # 1 under [1,0,0]
        Put("w2", "s1", "blind"),  # the coordinator bumps its entry above what it holds: 2 under [2,0,0]
        AntiEntropy("s1", "s2"),
        Store("s2", "w1"),  # s2 drops 1 on arrival: [2,0,0] dominates it, yet w2 never saw it
        PutDone("w1"),
    ]
    assert broken(s, replay(s, path)) == ["NoLostWrite"]
    assert broken(s, replay(s, path[:-1])) == []
    # The reference's vectors have one entry per writer: the two writes stay siblings.
    reference = spec(writers=2, readers=0)
    assert len(replay(reference, path).replica["s2"]) == 2
    assert broken(reference, replay(reference, path)) == []


def test_without_anti_entropy_a_partition_leaves_replicas_apart_for_good() -> None:
    result = explore(spec("no_anti_entropy"))
    assert result.violation is not None and result.violation.kind == "liveness"
    assert result.violation.name == "Convergence"
    assert [str(step.action) for step in result.violation.trace[1:]] == [
        "Put(w1, s1, blind)",
        "Get(r1, s1)",
        "Partition(s1)",  # the stores and the read's questions are lost: read repair never runs
        "Heal",
    ]
    # The reference gets out of that state: anti-entropy hands 1 on.
    trap = [Put("w1", "s1", "blind"), Get("r1", "s1"), Partition("s1"), Heal()]
    reference = spec()
    after = reference.next_state(replay(reference, trap), AntiEntropy("s1", "s2"))
    assert after is not None and after.replica["s2"] == after.replica["s1"]


def test_quorums_that_overlap_still_read_new_then_old() -> None:
    s = spec("no_write_back")
    path: list[DynamoAction] = [
        Put("w1", "s1", "blind"),  # only s1 holds 1 so far
        Get("r1", "s1"),
        Answer("s2", "r1"),
        GetDone("r1"),  # s1 and s2 answered: r1 returns 1; its repair of s2 is still in flight
        Get("r2", "s2"),
        Answer("s3", "r2"),
        GetDone("r2"),  # s2 and s3 answered: r2, which began after r1 returned, returns nothing
    ]
    assert broken(s, replay(s, path)) == ["Linearizable"]
    assert broken(s, replay(s, path[:-1])) == []
    assert s.config.r + s.config.w > s.config.servers
    result = explore(s)
    assert result.violation is not None and result.violation.name == "Linearizable"
    assert len(result.violation.trace) - 1 == len(path)


# ------------------------------------------------------------ last writer wins


def test_last_writer_wins_with_skewed_clocks_discards_a_later_write() -> None:
    s = spec(mode="lww", skew=1, writers=2, readers=0, coordinators=1)
    path: list[DynamoAction] = [
        StampedPut("w2", "s1", 1),  # true time 0, w2's clock 1 ahead
        Store("s2", "w2"),
        PutDone("w2"),
        StampedPut("w1", "s1", 1),  # begins after w2 returned, at true time 1: a tie that w2 wins
    ]
    after = replay(s, path)
    assert after.replica["s1"] == {Version(2, (), 1, frozenset())}
    assert broken(s, after) == ["LaterWriteWins"]
    result = explore(s)
    assert result.violation is not None and result.violation.name == "LaterWriteWins"


@pytest.mark.parametrize("readers", [0, 1])
def test_last_writer_wins_with_synchronised_clocks_keeps_the_later_write(readers: int) -> None:
    s = spec(mode="lww", skew=0, writers=2, readers=readers, coordinators=1, servers=3 - readers)
    assert s.next_state(replay(s, []), StampedPut("w2", "s1", 1)) is None  # no clock reads ahead
    result = explore(s)
    assert result.verdict == "ok", result.violation
    assert {"WriteAcknowledged", "WriteDiscarded", "Converged"} <= set(result.reached)


# ------------------------------------------------------------------ parameters


@pytest.mark.parametrize(
    "params,message",
    [
        ({"mode": "crdt"}, "mode must be one of vv, lww"),
        ({"r": 4}, "at most servers"),
        ({"coordinators": 4}, "at most servers"),
        ({"skew": 9}, "skew must be between"),
    ],
)
def test_bad_parameters_are_one_clear_error(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Config(**params)
