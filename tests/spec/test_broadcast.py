"""FIFO and causal broadcast: safe at several sizes, the variants' counterexamples
pinned as action lists, the delivery rules on hand-built clocks, and the
invariants on hand-built histories."""

from __future__ import annotations

import attrs
import pytest

from distcheck.checks.search.explore import explore
from distcheck.spec.broadcast import (
    Broadcast,
    CausalBroadcast,
    Config,
    Deliver,
    Discard,
    Duplicate,
    Envelope,
    FifoBroadcast,
    Msg,
    causal_order,
    happened_before,
    no_duplication,
)
from distcheck.spec.values import Bag, FrozenMap
from tests.spec.steps import broken, replay

M1 = Msg("p1", (1, 0, 0))  # p1's first message
M1B = Msg("p1", (2, 0, 0))  # p1's second
REPLY = Msg("p2", (1, 1, 0))  # p2's first, sent after delivering M1


@pytest.mark.parametrize("kind", [FifoBroadcast, CausalBroadcast])
@pytest.mark.parametrize("config", [Config(processes=2, messages=2), Config(processes=3, messages=1, max_msgs=2)])
def test_both_are_safe_and_deliver_everything(kind: type[FifoBroadcast], config: Config) -> None:
    result = explore(kind(config))
    assert result.ok, result.violation


def test_fifo_broadcast_is_not_causal() -> None:
    """FIFO delivery lets p3 deliver p2's reply before p1's message it answers: a
    behaviour of FIFO broadcast that causal broadcast rules out."""
    plan = [Broadcast("p1"), Deliver("p2", M1), Broadcast("p2"), Deliver("p3", REPLY)]
    state = replay(FifoBroadcast(Config()), plan)
    assert not causal_order(state)
    with pytest.raises(AssertionError, match="not enabled"):
        replay(CausalBroadcast(Config()), plan)


def test_causal_broadcast_holds_the_reply_back_until_the_message_it_answers() -> None:
    spec = CausalBroadcast(Config())
    state = replay(spec, [Broadcast("p1"), Deliver("p2", M1), Broadcast("p2")])
    assert spec.next_state(state, Deliver("p3", REPLY)) is None
    state = replay(spec, [Broadcast("p1"), Deliver("p2", M1), Broadcast("p2"), Deliver("p3", M1), Deliver("p3", REPLY)])
    assert state.delivered["p3"] == (M1, REPLY) and state.clock["p3"] == (1, 1, 0)


# ------------------------------------------------------------------ the variants


def test_deliver_on_receipt_delivers_a_later_message_first() -> None:
    spec = FifoBroadcast(Config(messages=2, variant="deliver_on_receipt"))
    state = replay(spec, [Broadcast("p1"), Broadcast("p1"), Deliver("p2", M1B)])
    assert broken(spec, state) == ["FifoOrder"]


@pytest.mark.parametrize("kind", [FifoBroadcast, CausalBroadcast])
def test_stale_copies_deliver_a_duplicate_twice(kind: type[FifoBroadcast]) -> None:
    spec = kind(Config(variant="stale_copies"))
    state = replay(spec, [Broadcast("p1"), Duplicate("p2", M1), Deliver("p2", M1), Deliver("p2", M1)])
    assert broken(spec, state)[0] == "NoDuplication"
    # The reference discards the copy instead.
    reference = kind(Config())
    state = replay(reference, [Broadcast("p1"), Duplicate("p2", M1), Deliver("p2", M1), Discard("p2", M1)])
    assert state.delivered["p2"] == (M1,) and len(state.network) == 1  # p3's copy


def test_sender_entry_only_breaks_causal_order() -> None:
    spec = CausalBroadcast(Config(variant="sender_entry_only"))
    state = replay(spec, [Broadcast("p1"), Deliver("p2", M1), Broadcast("p2"), Deliver("p3", REPLY)])
    assert broken(spec, state) == ["CausalOrder"]


def test_ignore_sender_entry_breaks_fifo_order() -> None:
    spec = CausalBroadcast(Config(processes=2, messages=2, variant="ignore_sender_entry"))
    state = replay(spec, [Broadcast("p1"), Broadcast("p1"), Deliver("p2", Msg("p1", (2, 0)))])
    assert broken(spec, state) == ["FifoOrder", "CausalOrder"]


# ------------------------------------------------------------------ rules and invariants


def test_broadcast_stamps_counts_and_sends_to_every_other_process() -> None:
    spec = FifoBroadcast(Config(messages=1))
    state = replay(spec, [Broadcast("p1")])
    assert state.delivered["p1"] == (M1,) and state.clock["p1"] == (1, 0, 0) and state.sent["p1"] == 1
    assert state.network == Bag([Envelope("p2", M1), Envelope("p3", M1)])
    assert spec.next_state(state, Broadcast("p1")) is None  # one message each


def test_discard_only_a_copy_of_what_was_delivered() -> None:
    spec = FifoBroadcast(Config())
    state = replay(spec, [Broadcast("p1")])
    assert spec.next_state(state, Discard("p2", M1)) is None  # not delivered yet: it waits
    assert spec.next_state(state, Deliver("p2", M1B)) is None  # not in the network


def test_happened_before() -> None:
    assert happened_before(M1, REPLY) and happened_before(M1, M1B)
    assert not happened_before(REPLY, M1) and not happened_before(M1, M1)
    assert not happened_before(Msg("p1", (1, 0, 0)), Msg("p3", (0, 0, 1)))  # concurrent


def test_invariants_on_hand_built_histories() -> None:
    spec = CausalBroadcast(Config())
    init = next(iter(spec.init_states()))
    good = attrs.evolve(init, delivered=FrozenMap({"p1": (M1,), "p2": (M1, REPLY), "p3": ()}))
    assert not broken(spec, good)
    assert not no_duplication(attrs.evolve(init, delivered=init.delivered.set("p2", (M1, M1))))
    reply_first = attrs.evolve(good, delivered=good.delivered.set("p3", (REPLY,)))
    assert broken(spec, reply_first) == ["CausalOrder"]
    created = attrs.evolve(init, delivered=init.delivered.set("p2", (M1,)))  # p1 never broadcast it
    assert broken(spec, created) == ["TypeOK"]
