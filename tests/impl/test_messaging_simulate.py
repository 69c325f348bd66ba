"""The broker under the controlled scheduler (``distcheck simulate broker``): runs
with every fault pass the spec's invariants on the real state after every step and
the total-queue check at the end; each broken variant (three of the broker, one of
the consumers) is caught."""

from __future__ import annotations

import pytest

from distcheck.checks.conformance.simulate import SimOptions, SimOutcome, simulate
from distcheck.checks.conformance.wiring import BrokerWiring
from distcheck.impl.runtime import FaultPolicy
from distcheck.spec.registry import REGISTRY

FAULTS = FaultPolicy(crash=True, drop=True, duplicate=True, reorder=True, partition=True)
PARAMS: dict[str, object] = {"messages": 4, "consumers": 2}
WIRING = BrokerWiring()


def run(seed: int, variant: str | None = None) -> SimOutcome:
    spec = REGISTRY["broker"].make(None, **PARAMS)
    return simulate(spec, WIRING, PARAMS, SimOptions(seed=seed, faults=FAULTS, steps=3000, variant=variant))


@pytest.mark.parametrize("seed", range(8))
def test_runs_under_every_fault_lose_nothing_confirmed(seed: int) -> None:
    outcome = run(seed)
    assert outcome.ok, outcome.message
    assert "no trace" in outcome.validation.message  # not logged yet: said, not passed off as validated


@pytest.mark.parametrize(
    "variant,invariant",
    [
        ("confirm_before_persist", "NoConfirmedLoss"),
        ("delete_on_delivery", "RemovedAfterAck"),
        ("redelivery_unmarked", "RedeliveryMarked"),
        ("non_idempotent_consumer", "EffectivelyOnce"),
    ],
)
def test_each_broken_variant_is_caught(variant: str, invariant: str) -> None:
    caught = [outcome for seed in range(4) if not (outcome := run(seed, variant)).ok]
    assert caught, f"{variant} passed 4 runs"
    assert any(invariant in o.message for o in caught), [o.message for o in caught]


def test_every_variant_is_tested() -> None:
    assert set(WIRING.variants) == {"confirm_before_persist", "delete_on_delivery", "redelivery_unmarked"} | {
        "non_idempotent_consumer"
    }
