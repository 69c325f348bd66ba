"""The durable queue's z3 proof: NoLossInv proves NoConfirmedLoss and
RemovedAfterAck for every consumer count and bound at once; the abstraction
simulates the spec (variants included); the two variants that lose messages make
the induction fail at the step that loses them; each conjunct is needed."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from distcheck.checks.proofs.broker import Accept, BrokerNoLossEncoding, DeleteOnDeliver
from distcheck.checks.proofs.crosscheck import cross_check
from distcheck.checks.proofs.induction import obligations
from distcheck.checks.proofs.obligations import FAILED, PROVED, Outcome, discharge
from distcheck.checks.proofs.system import Candidate, SymState, Transition
from distcheck.spec.broker import Broker, Config


def prove(config: Config, invariant: str | None = None) -> dict[str, Outcome]:
    encoding = BrokerNoLossEncoding(Broker(config))
    return {o.name: discharge(o) for o in obligations(encoding, encoding.candidate(invariant))}


@pytest.mark.parametrize("messages", [1, 2, 4])
def test_nolossinv_proves_both_properties(messages: int) -> None:
    outcomes = prove(Config(messages=messages))
    assert set(outcomes) == {"Initiation", "Consecution", "Safety(NoConfirmedLoss)", "Safety(RemovedAfterAck)"}
    assert all(o.verdict == PROVED for o in outcomes.values()), outcomes


@pytest.mark.parametrize(
    "variant,config",
    [
        (None, Config()),
        (None, Config(messages=2, consumers=1, max_deliveries=1, max_crashes=0)),
        *[(v, Config()) for v in sorted(Broker.variants())],
    ],
)
def test_the_abstraction_simulates_every_step_of_the_spec(variant: str | None, config: Config) -> None:
    spec = Broker(attrs.evolve(config, variant=variant))
    report = cross_check(BrokerNoLossEncoding(spec))
    assert report.ok, report.mismatches[:3]


@pytest.mark.parametrize(
    "variant,step", [("confirm_before_persist", Accept("m1")), ("delete_on_delivery", DeleteOnDeliver("m1"))]
)
def test_a_variant_that_loses_messages_breaks_the_induction_at_that_step(variant: str, step: Any) -> None:
    outcomes = prove(Config(variant=variant))
    consecution = outcomes["Consecution"]
    assert consecution.verdict == FAILED and consecution.counterexample is not None
    assert str(step) in str(consecution.counterexample)


@pytest.mark.parametrize("variant", ["redelivery_unmarked", "non_idempotent_consumer"])
def test_the_variants_that_lose_nothing_are_proved_too(variant: str) -> None:
    """They break RedeliveryMarked and EffectivelyOnce, which this proof is not about."""
    assert all(o.verdict == PROVED for o in prove(Config(variant=variant)).values())


def test_the_properties_alone_are_not_inductive() -> None:
    outcomes = prove(Config(), invariant="NoConfirmedLoss")
    assert outcomes["Consecution"].verdict == FAILED


def test_every_conjunct_is_needed() -> None:
    encoding = BrokerNoLossEncoding(Broker(Config()))
    full = encoding.candidate("NoLossInv")
    for dropped in full.conjuncts:
        rest = Candidate(f"NoLossInv - {dropped.name}", "", tuple(c for c in full.conjuncts if c != dropped))
        outcomes = {o.name: discharge(o) for o in obligations(encoding, rest)}
        assert any(o.verdict == FAILED for o in outcomes.values()), f"{dropped.name} is redundant"


class ApplyAnything(BrokerNoLossEncoding):
    """An abstraction that lets a consumer acknowledge a message it never applied."""

    def transition(self, action: Any, s: SymState) -> Transition:
        step = super().transition(action, s)
        if type(action).__name__ == "Apply":
            return Transition(step.guard, {k: v for k, v in step.updates.items() if not k.startswith("applied")})
        return step


def test_an_altered_abstraction_fails_the_cross_check() -> None:
    report = cross_check(ApplyAnything(Broker(Config())))
    assert not report.ok
