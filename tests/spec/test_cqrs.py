"""CQRS: safe at several sizes, the variants' counterexamples pinned as action lists,
and each rule's guard and effect on hand-built states."""

from __future__ import annotations

import attrs
import pytest

from distcheck.checks.search.explore import explore
from distcheck.spec.cqrs import (
    DEPOSITED,
    WITHDRAWN,
    Acknowledge,
    Answer,
    Config,
    Cqrs,
    Deliver,
    Deposit,
    Event,
    Project,
    ProjectorCrash,
    Query,
    Withdraw,
    exactly_once,
    no_overdraft,
    nothing_lost,
    read_model_is_fold,
    read_your_writes,
)
from distcheck.spec.values import FrozenMap
from tests.spec.steps import broken, replay

PROJECTED = [Deposit("c1", 1), Deliver(1), Project(1)]  # c1's deposit is in the read model


@pytest.mark.parametrize(
    "config", [Config(clients=1), Config(), Config(max_amount=2)], ids=["one-client", "defaults", "two-amounts"]
)
def test_cqrs_is_safe_and_converges(config: Config) -> None:
    result = explore(Cqrs(config))
    assert result.verdict == "ok", result.violation
    assert set(result.reached) == {p.name for p in Cqrs(config).reachable()}


def test_a_redelivered_copy_is_dropped_and_a_token_query_waits_for_the_projection() -> None:
    spec = Cqrs(Config())
    state = replay(spec, [Deposit("c1", 1), Deliver(1)])
    assert spec.next_state(state, Query("c1")) is None  # token 1, checkpoint 0: the query waits
    plan = [Deposit("c1", 1), Deliver(1), Project(1), Deliver(1), Project(1), Query("c1")]
    state = replay(spec, plan)
    assert state.applied == (1,) and state.read_balance == 1 and state.checkpoint == 1
    assert state.answers == FrozenMap({"c1": Answer(1, 1, 1)}) and not broken(spec, state)
    assert state.to_ack == {1}  # the copy is to be acknowledged, as the original was


def test_a_later_event_handed_over_first_is_given_back_and_applied_in_its_turn() -> None:
    spec = Cqrs(Config())
    both = [Deposit("c1", 1), Deposit("c2", 1)]
    state = replay(spec, [*both, Deliver(2), Project(2)])
    assert (state.checkpoint, state.applied, state.to_ack, state.in_hand) == (0, (), frozenset(), 0)
    state = replay(spec, [*both, Deliver(2), Project(2), Deliver(1), Project(1), Deliver(2), Project(2)])
    assert state.applied == (1, 2) and state.read_balance == 2 and not broken(spec, state)


def test_a_crash_loses_the_event_in_hand_and_the_bus_delivers_it_again() -> None:
    spec = Cqrs(Config())
    state = replay(spec, [Deposit("c1", 1), Deliver(1), ProjectorCrash(), Deliver(1), Project(1), Acknowledge(1)])
    assert (state.read_balance, state.checkpoint, state.acked, state.applied) == (1, 1, frozenset({1}), (1,))
    assert not broken(spec, state)


def test_a_crash_before_the_acknowledgement_brings_a_copy() -> None:
    spec = Cqrs(Config())
    state = replay(spec, [*PROJECTED, ProjectorCrash()])
    assert state.to_ack == frozenset() and state.acked == frozenset()
    state = replay(spec, [*PROJECTED, ProjectorCrash(), Deliver(1), Project(1), Acknowledge(1)])
    assert state.applied == (1,) and state.acked == {1} and spec.next_state(state, Deliver(1)) is None


# ------------------------------------------------------------------ the variants


def test_validating_on_the_read_model_overdraws_the_account() -> None:
    spec = Cqrs(Config(clients=3, variant="validate_on_read_model"))
    state = replay(spec, [*PROJECTED, Withdraw("c2", 1), Withdraw("c3", 1)])
    assert state.results["c3"] == (3,) and broken(spec, state) == ["NoOverdraft"]
    reference = replay(Cqrs(Config(clients=3)), [*PROJECTED, Withdraw("c2", 1), Withdraw("c3", 1)])
    assert reference.results["c3"] == (0,) and len(reference.log) == 2  # rejected: the events say 0


def test_a_projector_that_applies_every_copy_applies_a_redelivery_twice() -> None:
    spec = Cqrs(Config(variant="apply_redelivered_twice"))
    state = replay(spec, [*PROJECTED, Deliver(1), Project(1)])
    assert state.applied == (1, 1) and state.read_balance == 2
    assert broken(spec, state) == ["ExactlyOnce", "ReadModelIsFold"]


def test_a_projector_that_applies_out_of_order_skips_the_earlier_event_for_good() -> None:
    spec = Cqrs(Config(variant="apply_out_of_order"))
    plan = [Deposit("c1", 1), Withdraw("c2", 1), Deliver(2), Project(2)]
    state = replay(spec, plan)
    assert (state.checkpoint, state.read_balance) == (2, -1) and broken(spec, state) == ["ReadModelIsFold"]
    state = replay(spec, [*plan, Deliver(1), Project(1)])
    assert state.applied == (2,) and state.to_ack == {1, 2}  # 1 is taken for a copy


def test_a_checkpoint_saved_before_the_read_model_skips_an_event_after_a_crash() -> None:
    spec = Cqrs(Config(variant="checkpoint_first"))
    state = replay(spec, [Deposit("c1", 1), Deliver(1), ProjectorCrash()])
    assert (state.checkpoint, state.read_balance) == (1, 0) and broken(spec, state) == ["ReadModelIsFold"]
    again = replay(spec, [Deposit("c1", 1), Deliver(1), ProjectorCrash(), Deliver(1), Project(1)])
    assert again.read_balance == 0 and again.applied == ()  # the redelivery is dropped as a copy


def test_an_ack_on_receipt_loses_the_event_in_a_crash() -> None:
    spec = Cqrs(Config(variant="ack_before_apply"))
    state = replay(spec, [Deposit("c1", 1), Deliver(1), ProjectorCrash()])
    assert (state.acked, state.checkpoint, state.in_hand) == (frozenset({1}), 0, 0)
    assert broken(spec, state) == ["NothingLost"]
    assert spec.next_state(state, Deliver(1)) is None  # the bus will not deliver it again


def test_a_query_that_ignores_its_token_misses_its_own_deposit() -> None:
    spec = Cqrs(Config(variant="token_ignored"))
    state = replay(spec, [Deposit("c1", 1), Query("c1")])
    assert state.answers["c1"] == Answer(1, 0, 0) and broken(spec, state) == ["ReadYourWrites"]


# ------------------------------------------------------------------ rules

SPEC = Cqrs(Config())
INIT = next(iter(SPEC.init_states()))


def test_commands_are_answered_with_positions_and_limited_per_client() -> None:
    state = replay(SPEC, [Deposit("c1", 1), Withdraw("c2", 1)])
    assert state.log == (Event(DEPOSITED, 1, "c1"), Event(WITHDRAWN, 1, "c2"))
    assert state.results == FrozenMap({"c1": (1,), "c2": (2,)})
    assert SPEC.next_state(state, Deposit("c1", 1)) is None  # commands=1
    assert SPEC.next_state(INIT, Deposit("c1", 2)) is None  # max_amount=1


def test_a_withdrawal_that_would_overdraw_is_rejected_with_no_event() -> None:
    state = replay(SPEC, [Withdraw("c1", 1)])
    assert state.log == () and state.results["c1"] == (0,)
    assert SPEC.next_state(state, Query("c1")) is not None  # no token: nothing to wait for


def test_the_bus_delivers_any_unacknowledged_event_one_at_a_time() -> None:
    two = replay(SPEC, [Deposit("c1", 1), Deposit("c2", 1)])
    assert SPEC.next_state(two, Deliver(2)) is not None  # in no promised order
    held = replay(SPEC, [Deposit("c1", 1), Deposit("c2", 1), Deliver(1)])
    assert SPEC.next_state(held, Deliver(2)) is None  # the projector's hands are full
    assert SPEC.next_state(INIT, Deliver(1)) is None  # nothing in the log
    assert SPEC.next_state(INIT, ProjectorCrash()) is None  # nothing to lose


def test_project_applies_only_the_event_it_holds() -> None:
    state = replay(SPEC, [Deposit("c1", 1), Deposit("c2", 1), Deliver(1)])
    assert SPEC.next_state(state, Project(2)) is None


def test_an_acknowledged_event_is_not_delivered_again() -> None:
    state = replay(SPEC, [*PROJECTED, Acknowledge(1)])
    assert state.acked == {1} and state.to_ack == frozenset()
    assert SPEC.next_state(state, Acknowledge(1)) is None and SPEC.next_state(state, Deliver(1)) is None
    assert SPEC.next_state(replay(SPEC, [Deposit("c1", 1), Deliver(1)]), Acknowledge(1)) is None  # not yet handled


def test_invariants_on_hand_built_states() -> None:
    deposited = attrs.evolve(INIT, log=(Event(DEPOSITED, 1, "c1"),))
    assert no_overdraft(deposited)
    assert not no_overdraft(attrs.evolve(INIT, log=(Event(WITHDRAWN, 1, "c1"),)))
    assert exactly_once(attrs.evolve(deposited, applied=(1,)))
    assert not exactly_once(attrs.evolve(deposited, applied=(1, 1)))
    assert read_model_is_fold(attrs.evolve(deposited, read_balance=1, checkpoint=1))
    assert not read_model_is_fold(attrs.evolve(deposited, read_balance=0, checkpoint=1))
    assert not read_model_is_fold(attrs.evolve(deposited, read_balance=1, checkpoint=0))
    assert nothing_lost(attrs.evolve(deposited, acked=frozenset({1}), in_hand=1))  # held, though acknowledged
    assert not nothing_lost(attrs.evolve(deposited, acked=frozenset({1})))
    assert read_your_writes(attrs.evolve(INIT, answers=FrozenMap({"c1": Answer(1, 1, 1)})))
    assert not read_your_writes(attrs.evolve(INIT, answers=FrozenMap({"c1": Answer(2, 1, 1)})))
