"""The logical clocks' lemmas (``distcheck prove clocks``): each holds for all
integers, each fails on the broken rule of spec/clocks.py's variant it is about,
and its counterexample is a real one when replayed on the spec's own rules."""

from __future__ import annotations

import pytest

from distcheck.checks.cli import main
from distcheck.checks.proofs.clocks import obligations
from distcheck.checks.proofs.obligations import FAILED, PROVED, Outcome, discharge
from distcheck.spec.clocks import Clocks, Config, Hlc


def run(broken: str | None = None) -> dict[str, Outcome]:
    return {o.name: discharge(o) for o in obligations({}, broken=broken)}


def test_every_lemma_holds_for_all_integers() -> None:
    assert {name: o.verdict for name, o in run().items()} == {
        "LamportStep": PROVED,
        "HlcStep": PROVED,
        "HlcNearPhysical": PROVED,
        "HlcCounterResets": PROVED,
    }


@pytest.mark.parametrize(
    ("broken", "fails"),
    [
        ("lamport_skips_max", {"LamportStep"}),
        ("hlc_physical_only", {"HlcStep"}),
        ("hlc_no_counter", {"HlcStep"}),
        ("hlc_without_physical", {"HlcNearPhysical"}),
        ("hlc_counter_never_resets", {"HlcCounterResets"}),
    ],
)
def test_each_lemma_fails_on_the_mistake_it_is_about(broken: str, fails: set[str]) -> None:
    outcomes = run(broken)
    assert fails <= {name for name, o in outcomes.items() if o.verdict == FAILED}


def test_the_hlc_step_counterexample_of_a_wall_clock_stamp_is_one_the_spec_takes() -> None:
    """z3's values, put through the variant's own rule in spec/clocks.py: the
    receipt's stamp is not above the message's."""
    outcome = run("hlc_physical_only")["HlcStep"]
    assert outcome.counterexample is not None
    v = outcome.counterexample.data["values"]
    spec = Clocks.variants()["hlc_physical_only"].cls(Config(variant="hlc_physical_only"))
    own, msg = Hlc(v["l"], v["c"]), Hlc(v["lm"], v["cm"])
    local, receipt = spec.hlc(own, v["pt"], None), spec.hlc(own, v["pt"], msg)
    assert not (own < local and own < receipt and msg < receipt)
    reference = Clocks(Config())
    assert own < reference.hlc(own, v["pt"], None) and msg < reference.hlc(own, v["pt"], msg)


def test_prove_clocks_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "clocks"]) == 0
    assert "4 of 4 obligations proved" in capsys.readouterr().out
    # A variant states the lemmas with its broken rule: the one it is about fails.
    assert main(["prove", "clocks", "--variant", "hlc_no_counter"]) == 1
    assert "HlcStep                   failed" in capsys.readouterr().out
    assert main(["prove", "clocks", "--variant", "vector_skips_merge"]) == 2  # no lemma is about vectors
