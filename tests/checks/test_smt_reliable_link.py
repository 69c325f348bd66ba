"""The sliding window's z3 proof: LinkInv proves NoDuplication, FifoOrder and
NoLoss for every channel and crash bound; the abstraction simulates the spec; the
two encoded variants fail the induction at the step that breaks it; each
conjunct is needed; a finite sequence space is refused with the reason."""

from __future__ import annotations

import attrs
import pytest

from distcheck.checks.proofs.crosscheck import cross_check
from distcheck.checks.proofs.induction import obligations
from distcheck.checks.proofs.obligations import FAILED, PROVED, Outcome, discharge
from distcheck.checks.proofs.reliable_link import LinkEncoding
from distcheck.checks.proofs.system import Candidate
from distcheck.spec.reliable_link import Config, ReliableLink


def prove(config: Config, invariant: str | None = None) -> dict[str, Outcome]:
    encoding = LinkEncoding(ReliableLink(config))
    return {o.name: discharge(o) for o in obligations(encoding, encoding.candidate(invariant))}


@pytest.mark.parametrize("messages,window", [(1, 1), (3, 2), (5, 3)])
def test_linkinv_proves_the_three_properties(messages: int, window: int) -> None:
    outcomes = prove(Config(messages=messages, window=window))
    assert set(outcomes) == {
        "Initiation",
        "Consecution",
        "Safety(NoDuplication)",
        "Safety(FifoOrder)",
        "Safety(NoLoss)",
    }
    assert all(o.verdict == PROVED for o in outcomes.values()), outcomes


@pytest.mark.parametrize(
    "config",
    [
        Config(),
        Config(reorder=False, max_crashes=0),
        Config(messages=2, window=1, max_msgs=3),
        Config(variant="ack_before_deliver"),
        Config(variant="deliver_out_of_order"),
    ],
    ids=["default", "fifo", "window-1", "ack_before_deliver", "deliver_out_of_order"],
)
def test_the_abstraction_simulates_every_step_of_the_spec(config: Config) -> None:
    report = cross_check(LinkEncoding(ReliableLink(config)))
    assert report.ok, report.mismatches[:3]


@pytest.mark.parametrize(
    "variant,step,conjunct",
    [
        ("ack_before_deliver", "DataArrives(0", "AcksBelowDelivered"),
        ("deliver_out_of_order", "DataArrives(1", "TakenNext"),
    ],
)
def test_a_broken_variant_fails_the_induction_at_the_step_that_breaks_it(
    variant: str, step: str, conjunct: str
) -> None:
    consecution = prove(Config(variant=variant))["Consecution"]
    assert consecution.verdict == FAILED and consecution.counterexample is not None
    text = str(consecution.counterexample)
    assert step in text and conjunct in text


def test_the_properties_alone_are_not_inductive() -> None:
    assert prove(Config(), invariant="Safety")["Consecution"].verdict == FAILED


def test_every_conjunct_is_needed() -> None:
    encoding = LinkEncoding(ReliableLink(Config()))
    full = encoding.candidate("LinkInv")
    for dropped in full.conjuncts:
        rest = Candidate(f"LinkInv - {dropped.name}", "", tuple(c for c in full.conjuncts if c != dropped))
        outcomes = {o.name: discharge(o) for o in obligations(encoding, rest)}
        assert any(o.verdict == FAILED for o in outcomes.values()), f"{dropped.name} is redundant"


@pytest.mark.parametrize(
    "config,reason",
    [
        (Config(window=1, seq_space=2, reorder=False), "covers unbounded sequence numbers"),
        (Config(variant="no_duplicate_suppression"), "has no z3 encoding"),
    ],
)
def test_what_the_encoding_does_not_cover_is_refused_with_the_reason(config: Config, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        LinkEncoding(ReliableLink(attrs.evolve(config)))
