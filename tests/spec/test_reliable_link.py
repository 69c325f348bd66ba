"""The sliding-window link: safe as configured (Go-Back-N over a reordering channel,
the alternating-bit protocol over a FIFO one), the variants' counterexamples
pinned as action lists, each rule's guard and effect, the channel model, and the
configurations the spec refuses with the reason."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from distcheck.checks.search.explore import explore
from distcheck.spec.network import Channel
from distcheck.spec.reliable_link import (
    ACKS,
    DATA,
    Ack,
    Config,
    Data,
    Deliver,
    Duplicate,
    LinkState,
    Lose,
    ReceiverCrash,
    RecvAck,
    RecvData,
    ReliableLink,
    Reorder,
    Send,
    fifo_order,
    no_duplication,
    no_loss,
)
from tests.spec.steps import broken, replay

INIT = LinkState(0, 0, (), (), Channel(), Channel(), 0)


@pytest.mark.parametrize(
    "config,distinct",
    [
        (Config(), 3836),  # Go-Back-N, window 2, over channels that lose, duplicate and reorder
        (Config(window=1, seq_space=2, reorder=False), 302),  # the alternating-bit protocol
        (Config(window=2, seq_space=3, reorder=False), 1466),  # Go-Back-N with its smallest safe space
        (Config(messages=2, window=1, max_crashes=2), None),
    ],
    ids=["go-back-n", "alternating-bit", "go-back-n-mod-3", "two-crashes"],
)
def test_the_protocol_is_safe_and_delivers_everything(config: Config, distinct: int | None) -> None:
    result = explore(ReliableLink(config))
    assert result.ok, result.violation
    if distinct is not None:
        assert result.stats.distinct_states == distinct


def test_the_alternating_bit_protocol_delivers_everything_after_a_crash() -> None:
    """Window 1, numbers 0 and 1: m0, m1, m2 get through a lost Ack and a crash."""
    spec = ReliableLink(Config(window=1, seq_space=2, reorder=False))
    plan = [Send(0), RecvData(), Deliver(), Lose(ACKS, 0), Send(0), RecvData(), RecvAck()]
    state = replay(spec, plan)  # the retransmitted m0 (number 0) is dropped and re-acknowledged
    assert state.delivered == (0,) and state.base == 1
    state = replay(spec, [*plan, Send(1), RecvData(), ReceiverCrash(), Send(1), RecvData(), Deliver(), RecvAck()])
    assert state.delivered == (0, 1) and state.base == 2 and state.crashes == 1


# ------------------------------------------------------------------ the variants


def test_no_duplicate_suppression_delivers_a_copy_twice() -> None:
    spec = ReliableLink(Config(variant="no_duplicate_suppression"))
    state = replay(spec, [Send(0), Duplicate(DATA, 0), RecvData(), RecvData(), Deliver(), Deliver()])
    assert state.delivered == (0, 0)
    assert broken(spec, state) == ["NoDuplication", "FifoOrder"]
    # The reference drops the copy and acknowledges again.
    reference = ReliableLink(Config())
    state = replay(reference, [Send(0), Duplicate(DATA, 0), RecvData(), RecvData(), Deliver()])
    assert state.delivered == (0,) and state.acks.items == (Ack(0), Ack(1))


def test_deliver_out_of_order_delivers_past_a_gap() -> None:
    spec = ReliableLink(Config(variant="deliver_out_of_order"))
    state = replay(spec, [Send(0), Send(1), Lose(DATA, 0), RecvData(), Deliver()])
    assert state.delivered == (1,) and broken(spec, state) == ["FifoOrder"]


def test_ack_before_deliver_loses_a_message_in_a_crash() -> None:
    spec = ReliableLink(Config(variant="ack_before_deliver"))
    state = replay(spec, [Send(0), RecvData(), RecvAck(), ReceiverCrash()])
    assert state.base == 1 and state.delivered == () and broken(spec, state) == ["NoLoss"]
    # The sender, acknowledged, will not send m0 again: its window starts at m1.
    assert spec.next_state(state, Send(0)) is None


def test_a_window_as_large_as_the_sequence_space_takes_an_old_message_for_a_new_one() -> None:
    spec = ReliableLink(Config(variant="window_over_seq_space", seq_space=3, reorder=False))
    deliver_each = [a for i in range(3) for a in (Send(i), RecvData(), Deliver(), Lose(ACKS, 0))]
    state = replay(spec, [*deliver_each, Send(0), RecvData(), Deliver()])
    assert state.delivered == (0, 1, 2, 0) and broken(spec, state)[0] == "NoDuplication"
    # With the window one smaller, m2 cannot be sent before m0 is acknowledged.
    reference = ReliableLink(Config(seq_space=3, reorder=False))
    with pytest.raises(AssertionError, match="Send"):
        replay(reference, deliver_each)


# ------------------------------------------------------------------ each rule

SPEC = ReliableLink(Config())


def test_send_is_limited_to_the_window_and_to_no_gap() -> None:
    assert SPEC.next_state(INIT, Send(1)) is None  # m0 first
    one = SPEC.next_state(INIT, Send(0))
    assert one == attrs.evolve(INIT, next_new=1, data=Channel((Data(0, 0),)))
    two = SPEC.next_state(one, Send(1))
    assert two is not None and SPEC.next_state(two, Send(2)) is None  # window 2: m2 waits for an Ack
    assert SPEC.next_state(two, Send(0)) is not None  # a retransmission
    moved = attrs.evolve(two, base=1)
    assert SPEC.next_state(moved, Send(0)) is None and SPEC.next_state(moved, Send(2)) is not None


def test_recv_ack_moves_the_window_only_forward_and_only_to_what_was_sent() -> None:
    sent_two = attrs.evolve(INIT, next_new=2)
    for ack, base in [(Ack(1), 1), (Ack(2), 2), (Ack(0), 0), (Ack(3), 0)]:
        after = SPEC.next_state(attrs.evolve(sent_two, acks=Channel((ack,))), RecvAck())
        assert after is not None and after.base == base and after.acks == Channel(), ack
    assert SPEC.next_state(INIT, RecvAck()) is None
    later = SPEC.next_state(attrs.evolve(sent_two, base=2, acks=Channel((Ack(1),))), RecvAck())
    assert later is not None and later.base == 2  # an old Ack does not move it back


def test_recv_data_takes_the_expected_message_and_answers_any_other() -> None:
    expecting_1 = attrs.evolve(INIT, delivered=(0,), data=Channel((Data(1, 1),)))
    assert SPEC.next_state(expecting_1, RecvData()) == attrs.evolve(expecting_1, taken=(1,), data=Channel())
    old = attrs.evolve(expecting_1, data=Channel((Data(0, 0),)))
    assert SPEC.next_state(old, RecvData()) == attrs.evolve(old, data=Channel(), acks=Channel((Ack(1),)))
    assert SPEC.next_state(INIT, RecvData()) is None


def test_deliver_hands_over_the_oldest_taken_then_acknowledges() -> None:
    s = attrs.evolve(INIT, next_new=2, taken=(0, 1))
    after = SPEC.next_state(s, Deliver())
    assert after == attrs.evolve(s, delivered=(0,), taken=(1,), acks=Channel((Ack(1),)))
    assert SPEC.next_state(INIT, Deliver()) is None


def test_a_crash_loses_what_was_taken_and_keeps_what_was_delivered() -> None:
    s = attrs.evolve(INIT, next_new=2, delivered=(0,), taken=(1,))
    assert SPEC.next_state(s, ReceiverCrash()) == attrs.evolve(s, taken=(), crashes=1)
    assert SPEC.next_state(attrs.evolve(s, crashes=1), ReceiverCrash()) is None  # max_crashes=1


def test_channel_faults() -> None:
    s = attrs.evolve(INIT, data=Channel((Data(0, 0), Data(1, 1))))
    assert SPEC.next_state(s, Lose(DATA, 1)) == attrs.evolve(s, data=Channel((Data(0, 0),)))
    dup = SPEC.next_state(s, Duplicate(DATA, 0))
    assert dup is not None and dup.data.items == (Data(0, 0), Data(0, 0), Data(1, 1))
    swapped = SPEC.next_state(s, Reorder(DATA, 0))
    assert swapped is not None and swapped.data.items == (Data(1, 1), Data(0, 0))
    assert SPEC.next_state(s, Reorder(DATA, 1)) is None  # no neighbour behind the last one
    assert SPEC.next_state(s, Lose(ACKS, 0)) is None
    fifo = ReliableLink(Config(window=1, seq_space=2, reorder=False))
    assert fifo.next_state(s, Reorder(DATA, 0)) is None


def test_the_channel_model() -> None:
    c: Channel[str] = Channel(("a", "b"))
    assert c.head == "a" and c.take() == Channel(("b",)) and len(c) == 2
    assert c.duplicate(0).items == ("a", "a", "b") and c.swap(0).items == ("b", "a") and c.lose(0).items == ("b",)
    assert c.send("c").take().added_since(c) == ["c"] and c.without("a") == Channel(("b",))
    assert Channel[str]().head is None


# ------------------------------------------------------------------ invariants and configs


def test_each_invariant_on_hand_built_states() -> None:
    assert no_duplication(attrs.evolve(INIT, delivered=(0, 1))) and not no_duplication(
        attrs.evolve(INIT, delivered=(0, 0))
    )
    assert fifo_order(attrs.evolve(INIT, delivered=(0, 1))) and not fifo_order(attrs.evolve(INIT, delivered=(1,)))
    assert no_loss(attrs.evolve(INIT, base=2, next_new=2, delivered=(0,), taken=(1,)))
    assert not no_loss(attrs.evolve(INIT, base=2, next_new=2, delivered=(0,)))
    assert not SPEC.type_ok(attrs.evolve(INIT, base=1))  # base past next_new
    assert not SPEC.type_ok(attrs.evolve(INIT, data=Channel((Data(0, 7),))))  # no message 7


@pytest.mark.parametrize(
    "params,reason",
    [
        ({"seq_space": 2}, "no finite sequence space is safe over a channel that reorders"),
        ({"seq_space": 2, "reorder": False}, "seq_space=2 must exceed window=2"),
    ],
)
def test_unsafe_configurations_are_refused_with_the_reason(params: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Config(**params)
