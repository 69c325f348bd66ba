"""ABD (spec/abd.py): linearizable at its default size, each variant's counterexample
pinned as an action list, and the history check on hand-made histories."""

from __future__ import annotations

from distcheck.checks.search.explore import explore
from distcheck.spec.abd import (
    INITIAL,
    Abd,
    AbdAction,
    Config,
    Copy,
    EndQuery,
    EndUpdate,
    Event,
    Invoke,
    ReplyQuery,
    ReplyUpdate,
    Tag,
    linearizable,
)
from tests.spec.steps import broken, replay


def spec(variant: str | None = None, **params: int) -> Abd:
    params = {**(Abd.variants()[variant].params if variant else {}), **params}
    return Abd(Config(variant=variant, **params))


OLD = Copy(INITIAL, 0)
NEW = Copy(Tag(1, "w1"), 1)
WRITERS = {"w1": 1}


# ------------------------------------------------------------- the history check


def call(client: str, value: int | None = None) -> Event:
    return Event("call", client, value)


def ret(client: str, value: int | None = None) -> Event:
    return Event("return", client, value)


def test_a_read_after_a_write_returned_must_see_it() -> None:
    assert linearizable([call("w1", 1), ret("w1"), call("r1"), ret("r1", 1)], WRITERS)
    assert not linearizable([call("w1", 1), ret("w1"), call("r1"), ret("r1", 0)], WRITERS)


def test_a_read_overlapping_a_write_may_see_either_value() -> None:
    for seen in (0, 1):
        assert linearizable([call("w1", 1), call("r1"), ret("r1", seen)], WRITERS)  # the write still pending
        assert linearizable([call("w1", 1), call("r1"), ret("w1"), ret("r1", seen)], WRITERS)


def test_new_then_old_is_not_linearizable() -> None:
    """The new-old inversion: two reads that do not overlap, both overlapping a
    write, return its value and then the old one."""
    history = [call("w1", 1), call("r1"), ret("r1", 1), call("r2"), ret("r2", 0)]
    assert not linearizable(history, WRITERS)
    assert linearizable([call("w1", 1), call("r1"), call("r2"), ret("r1", 1), ret("r2", 0)], WRITERS)


def test_a_read_never_returns_a_value_no_one_wrote() -> None:
    assert not linearizable([call("r1"), ret("r1", 7)], WRITERS)


# ------------------------------------------------------------------ exploration


def test_linearizable_at_the_default_size() -> None:
    result = explore(spec())
    assert result.verdict == "ok"
    assert (result.stats.distinct_states, result.stats.depth) == (37879, 19)
    assert set(result.reached) == {"AllDone", "ReadNewValue"}


def test_two_writers_on_two_servers_reach_every_end() -> None:
    result = explore(spec(servers=2, writers=2, readers=0))
    assert result.verdict == "ok"
    assert set(result.reached) == {"AllDone"}


# ------------------------------------------------------------------ variants


def test_a_read_that_skips_its_write_back_returns_new_then_old() -> None:
    s = spec("read_skips_write_back")
    path: list[AbdAction] = [
        Invoke("w1"),
        ReplyQuery("s1", "w1"),
        ReplyQuery("s2", "w1"),
        EndQuery("w1", OLD),  # the writer tags 1 above the highest it saw
        ReplyUpdate("s2", "w1"),  # only s2 holds the new value so far
        Invoke("r1"),
        ReplyQuery("s2", "r1"),
        ReplyQuery("s3", "r1"),
        EndQuery("r1", NEW),  # r1 sees s2's new value and returns it at once
        Invoke("r2"),
        ReplyQuery("s1", "r2"),
        ReplyQuery("s3", "r2"),
        EndQuery("r2", OLD),  # r2's quorum misses s2: the old value, after r1 returned the new
    ]
    assert broken(s, replay(s, path)) == ["Linearizable"]
    assert broken(s, replay(s, path[:-1])) == []
    # The reference writes back: r1's query ends in a write-back, not a return.
    reference = spec(readers=2)
    after = reference.next_state(replay(reference, path[:8]), path[8])
    assert after is not None and after.phase["r1"] == "update"


def test_quorums_that_need_not_meet_lose_a_completed_write() -> None:
    s = spec("small_quorums")
    assert s.quorum == 1
    path: list[AbdAction] = [
        Invoke("w1"),
        ReplyQuery("s1", "w1"),
        EndQuery("w1", OLD),
        ReplyUpdate("s1", "w1"),
        EndUpdate("w1"),  # the write returns with one server holding it
        Invoke("r1"),
        ReplyQuery("s2", "r1"),
        EndQuery("r1", OLD),
        ReplyUpdate("s2", "r1"),
        EndUpdate("r1"),  # the read returns 0 after the write of 1 returned
    ]
    assert broken(s, replay(s, path)) == ["Linearizable"]
    assert spec().next_state(replay(spec(), path[:2]), path[2]) is None  # the reference needs 2 answers
