"""The broker under the controlled scheduler (``distcheck simulate broker``): runs
with every fault pass the spec's invariants on the real state after every step, the
total-queue check at the end, and their traces are behaviours of spec/broker; each
broken variant (three of the broker, one of the consumers) is caught, one of them by
the trace alone; a trace with a step taken out is refused."""

from __future__ import annotations

import pytest

from distcheck.checks.conformance.simulate import SimOptions, SimOutcome, simulate
from distcheck.checks.conformance.wiring import BrokerWiring
from distcheck.checks.conformance.wiring.broker import validate_broker
from distcheck.impl.runtime import FaultPolicy
from distcheck.spec.registry import REGISTRY

FAULTS = FaultPolicy(crash=True, drop=True, duplicate=True, reorder=True, partition=True)
PARAMS: dict[str, object] = {"messages": 4, "consumers": 2}
WIRING = BrokerWiring()


def run(seed: int, variant: str | None = None, check_trace: bool = True) -> SimOutcome:
    spec = REGISTRY["broker"].make(None, **PARAMS)
    options = SimOptions(seed=seed, faults=FAULTS, steps=3000, variant=variant, check_trace=check_trace)
    return simulate(spec, WIRING, PARAMS, options)


@pytest.mark.parametrize("seed", range(8))
def test_runs_under_every_fault_lose_nothing_confirmed(seed: int) -> None:
    outcome = run(seed)
    assert outcome.ok, outcome.message
    assert outcome.validation.ok and outcome.validation.events > 10, outcome.validation.message


@pytest.mark.parametrize(
    "variant,invariant",
    [
        ("confirm_before_persist", "NoConfirmedLoss"),
        ("delete_on_delivery", "RemovedAfterAck"),
        ("redelivery_unmarked", "RedeliveryMarked"),
        ("non_idempotent_consumer", "EffectivelyOnce"),
    ],
)
def test_each_broken_variant_is_caught_by_the_real_state_checks(variant: str, invariant: str) -> None:
    caught = [outcome for seed in range(4) if not (outcome := run(seed, variant, check_trace=False)).ok]
    assert caught, f"{variant} passed 4 runs"
    assert any(invariant in o.message for o in caught), [o.message for o in caught]


def test_every_variant_is_tested() -> None:
    assert set(WIRING.variants) == {"confirm_before_persist", "delete_on_delivery", "redelivery_unmarked"} | {
        "non_idempotent_consumer"
    }


def test_the_trace_alone_catches_a_confirm_before_the_fsync() -> None:
    spec = REGISTRY["broker"].make(None, **PARAMS)
    options = SimOptions(seed=1, faults=FAULTS, steps=3000, variant="confirm_before_persist", check_invariants=False)
    outcome = simulate(spec, WIRING, PARAMS, options)
    assert outcome.kind == "invalid_trace" and "Confirmed" in outcome.message


def test_a_trace_with_a_step_taken_out_is_not_a_behaviour() -> None:
    events = list(run(3).run.trace.events)
    persist = next(i for i, e in enumerate(events) if e["action"]["type"] == "Persist")
    verdict = validate_broker(events[:persist] + events[persist + 1 :], 4, 2)[1]
    assert not verdict.ok and "no behaviour of broker explains" in verdict.message


def test_a_receipt_of_a_copy_is_explained_by_the_network_duplicating_it() -> None:
    events = [
        {"step": 1, "actor": "producer", "action": {"type": "Publish", "m": "m1"}},
        {"step": 2, "actor": "broker", "action": {"type": "Receive", "m": "m1"}},
        {"step": 3, "actor": "broker", "action": {"type": "Receive", "m": "m1"}},
    ]
    fixed, verdict = validate_broker(events, 1, 1)
    assert verdict.ok, verdict.message
    assert [e["action"]["type"] for e in fixed] == ["Publish", "Duplicate", "Receive", "Receive"]
    assert [e["step"] for e in fixed] == [1, 2, 3, 4]
