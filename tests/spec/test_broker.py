"""The durable queue: safe at several sizes, the variants' counterexamples pinned
as action lists, and each rule's guard and effect on hand-built states."""

from __future__ import annotations

import attrs
import pytest

from distcheck.checks.search.explore import explore
from distcheck.spec.broker import (
    ACKS,
    CONFIRMS,
    DELIVERIES,
    Ack,
    Broker,
    BrokerCrash,
    Config,
    Confirmed,
    Consume,
    Deliver,
    Delivery,
    Lose,
    Persist,
    Publish,
    Receive,
    Timeout,
    effectively_once,
    no_confirmed_loss,
    redelivery_marked,
    removed_after_ack,
)
from distcheck.spec.values import Bag, FrozenMap
from tests.spec.steps import broken, replay

STORED = [Publish("m1"), Receive("m1"), Persist()]  # m1 is stored and confirmed


@pytest.mark.parametrize(
    "config", [Config(messages=1, consumers=1), Config(messages=1, consumers=2, max_crashes=2)], ids=["one", "crashes"]
)
def test_the_queue_is_safe(config: Config) -> None:
    result = explore(Broker(config))
    assert result.ok, result.violation


def test_two_messages_break_no_invariant() -> None:
    """Two messages, one delivery each (the redelivery properties need two, and the
    state space grows past a test's budget): every invariant holds."""
    result = explore(Broker(Config(messages=2, consumers=1, max_deliveries=1)))
    assert result.violation is not None and result.violation.kind == "unreached"  # AppliedAfterCrash needs 2


def test_a_message_survives_a_crash_and_is_applied_once_after_a_redelivery() -> None:
    spec = Broker(Config())
    plan = [*STORED, Confirmed("m1"), Deliver("c1", "m1"), BrokerCrash(), Lose(DELIVERIES, "m1")]
    plan += [Deliver("c2", "m1"), Consume("c2", "m1"), Ack("m1")]
    state = replay(spec, plan)
    assert state.stored == FrozenMap() and state.applied["c2"] == ("m1",) and state.removed == {"m1"}
    assert ("m1", 2, True) in state.deliveries_made and not broken(spec, state)


# ------------------------------------------------------------------ the variants


def test_confirm_before_persist_loses_a_confirmed_message_in_a_crash() -> None:
    spec = Broker(Config(variant="confirm_before_persist"))
    state = replay(spec, [Publish("m1"), Receive("m1"), Confirmed("m1"), BrokerCrash()])
    assert broken(spec, state) == ["NoConfirmedLoss"]
    assert spec.next_state(state, Publish("m1")) is None  # the producer will not send it again


def test_delete_on_delivery_removes_a_message_nobody_applied() -> None:
    spec = Broker(Config(variant="delete_on_delivery"))
    state = replay(spec, [*STORED, Deliver("c1", "m1")])
    assert broken(spec, state) == ["RemovedAfterAck"]


def test_redelivery_unmarked_redelivers_without_the_mark() -> None:
    spec = Broker(Config(variant="redelivery_unmarked"))
    state = replay(spec, [*STORED, Deliver("c1", "m1"), Timeout("m1"), Deliver("c2", "m1")])
    assert Delivery("c2", "m1", False) in state.deliveries and broken(spec, state) == ["RedeliveryMarked"]


def test_a_non_idempotent_consumer_applies_a_redelivery_twice() -> None:
    spec = Broker(Config(variant="non_idempotent_consumer"))
    plan = [*STORED, Deliver("c1", "m1"), Consume("c1", "m1"), Timeout("m1"), Deliver("c1", "m1"), Ack("m1")]
    state = replay(spec, [*plan, Consume("c1", "m1")])
    assert state.applied["c1"] == ("m1", "m1") and broken(spec, state) == ["EffectivelyOnce"]
    reference = replay(Broker(Config()), [*plan, Consume("c1", "m1")])
    assert reference.applied["c1"] == ("m1",) and reference.acks == Bag(["m1"])  # acknowledged again, not applied


# ------------------------------------------------------------------ rules

SPEC = Broker(Config())
INIT = next(iter(SPEC.init_states()))


def test_publish_new_in_order_or_again_until_confirmed() -> None:
    assert SPEC.next_state(INIT, Publish("m1")) is not None
    two = Broker(Config(messages=2))
    first = next(iter(two.init_states()))
    assert two.next_state(first, Publish("m2")) is None  # m1 first
    confirmed = attrs.evolve(first, published=1, confirmed=frozenset({"m1"}))
    assert two.next_state(confirmed, Publish("m1")) is None


def test_a_message_published_again_is_confirmed_again_and_stored_once() -> None:
    state = replay(SPEC, [*STORED, Lose(CONFIRMS, "m1")])  # the confirm is lost: m1 is published again
    again = replay(SPEC, [*STORED, Lose(CONFIRMS, "m1"), Publish("m1"), Receive("m1")])
    assert state.confirms == Bag() and again.confirms == Bag(["m1"]) and again.pending == frozenset()
    assert again.stored == FrozenMap({"m1": False})  # stored once


def test_persist_confirms_only_what_it_persisted() -> None:
    state = replay(SPEC, [Publish("m1"), Receive("m1")])
    assert state.confirms == Bag() and state.pending == {"m1"}
    after = SPEC.next_state(state, Persist())
    assert after is not None and after.stored == FrozenMap({"m1": False}) and after.confirms == Bag(["m1"])
    assert SPEC.next_state(INIT, Persist()) is None


def test_deliver_only_ready_messages_and_only_so_often() -> None:
    state = replay(SPEC, [*STORED, Deliver("c1", "m1")])
    assert SPEC.next_state(state, Deliver("c2", "m1")) is None  # in flight
    timed_out = replay(SPEC, [*STORED, Deliver("c1", "m1"), Timeout("m1"), Deliver("c1", "m1"), Timeout("m1")])
    assert SPEC.next_state(timed_out, Deliver("c1", "m1")) is None  # max_deliveries=2


def test_a_crash_forgets_what_is_volatile_and_marks_what_is_stored() -> None:
    state = replay(SPEC, [*STORED, Deliver("c1", "m1")])
    crashed = SPEC.next_state(state, BrokerCrash())
    assert crashed is not None and crashed.inflight == FrozenMap() and crashed.stored == FrozenMap({"m1": True})
    pending = replay(SPEC, [Publish("m1"), Receive("m1"), BrokerCrash()])
    assert pending.pending == frozenset() and pending.stored == FrozenMap()
    assert SPEC.next_state(crashed, BrokerCrash()) is None  # max_crashes=1


def test_a_late_ack_after_a_timeout_still_removes_the_message() -> None:
    state = replay(SPEC, [*STORED, Deliver("c1", "m1"), Consume("c1", "m1"), Timeout("m1"), Ack("m1")])
    assert state.stored == FrozenMap() and state.removed == {"m1"} and not broken(SPEC, state)
    assert SPEC.next_state(state, Lose(ACKS, "m1")) is None


def test_invariants_on_hand_built_states() -> None:
    confirmed = attrs.evolve(INIT, published=1, confirmed=frozenset({"m1"}))
    assert not no_confirmed_loss(confirmed)
    assert no_confirmed_loss(attrs.evolve(confirmed, pending=frozenset({"m1"})))
    assert not removed_after_ack(attrs.evolve(INIT, removed=frozenset({"m1"})))
    assert not redelivery_marked(attrs.evolve(INIT, deliveries_made=frozenset({("m1", 2, False)})))
    assert redelivery_marked(attrs.evolve(INIT, deliveries_made=frozenset({("m1", 1, False), ("m1", 2, True)})))
    assert not effectively_once(attrs.evolve(INIT, applied=FrozenMap({"c1": ("m1",), "c2": ("m1",)})))
