"""The lock service's z3 proofs: LockInv proves MutualExclusion, LeaseValidity,
FencedWrites, AutomaticRelease and FirstComeFirstServed; the encoding agrees with
the executable spec (variants included) and the cross-check notices when it does
not; each broken variant makes the proof fail at the step that goes wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest
import z3

from distcheck.checks.cli import main
from distcheck.checks.proofs.crosscheck import cross_check, reachable_states
from distcheck.checks.proofs.induction import obligations
from distcheck.checks.proofs.lock import LockEncoding
from distcheck.checks.proofs.obligations import FAILED, PROVED, Outcome, discharge
from distcheck.checks.proofs.system import Evaluator, Field, SymState, Transition
from distcheck.spec.lock import (
    HOLDING,
    AcceptWrite,
    Config,
    Grant,
    LeaderChange,
    Lock,
    LockAction,
    LockState,
    Release,
    Renew,
    Tick,
)

PROPERTIES = ["MutualExclusion", "LeaseValidity", "FencedWrites", "AutomaticRelease", "FirstComeFirstServed"]


def encoding(variant: str | None = None, **params: int) -> LockEncoding:
    return LockEncoding(Lock(Config(variant=variant, **params)))


# Two small instances that between them exercise every action: one client whose
# clock drifts, whose lease lapses, expires, is renewed and acquired again; and two
# clients queueing and handing the lock (and a write in flight) to each other.
ONE_CLIENT_OVER_TIME = {"clients": 1, "max_requests": 2, "max_time": 2}
TWO_CLIENTS_AT_ONCE = {"max_time": 0}


def prove(enc: LockEncoding, invariant: str | None = None, **options: Any) -> dict[str, Outcome]:
    return {o.name: discharge(o) for o in obligations(enc, enc.candidate(invariant), **options)}


@pytest.mark.parametrize(
    "params",
    [
        {},  # the default instance: 2 clients, ttl 2, max_drift 1, max_time 2, 2 requests, 1 leader change
        {"clients": 3, "ttl": 3, "max_drift": 2, "max_time": 4, "max_requests": 3, "max_leader_changes": 2},
    ],
)
def test_lockinv_proves_every_property(params: dict[str, int]) -> None:
    outcomes = prove(encoding(None, **params))
    assert list(outcomes) == ["Initiation", "Consecution", *[f"Safety({p})" for p in PROPERTIES]]
    assert {name: o.verdict for name, o in outcomes.items()} == dict.fromkeys(outcomes, PROVED)


@pytest.mark.parametrize("params", [ONE_CLIENT_OVER_TIME, TWO_CLIENTS_AT_ONCE])
def test_every_conjunct_of_lockinv_holds_on_every_reachable_state(params: dict[str, int]) -> None:
    enc = encoding(None, **params)
    spec = enc.lock
    s = enc.symbolic()
    conjuncts = [(c.name, Evaluator(c.formula(s), s)) for c in enc.candidate("LockInv").conjuncts]
    states = reachable_states(spec)
    for state in states:
        values = enc.values(state)
        assert [name for name, holds in conjuncts if not holds.holds(values)] == [], state
    # ... and the evaluation can say no: a lease that expires when its holder's own
    # deadline comes leaves no margin for drift.
    holder = next(st for st in states if st.clients["c1"].status == HOLDING)
    odd = dict(enc.values(holder), **{f"lease[{holder.clients['c1'].token}].expires": holder.clients["c1"].deadline})
    assert [name for name, holds in conjuncts if not holds.holds(odd)] == ["HolderDeadlineWithinLease"]


# Each variant on the instance where it differs from the correct spec.
CROSS_CHECKED = [
    (None, ONE_CLIENT_OVER_TIME),
    (None, TWO_CLIENTS_AT_ONCE),
    ("unfenced_storage", TWO_CLIENTS_AT_ONCE),
    ("barging", TWO_CLIENTS_AT_ONCE),
    ("no_drift_margin", ONE_CLIENT_OVER_TIME),
    ("release_by_non_holder", ONE_CLIENT_OVER_TIME),  # it deletes the client's older, expired lease too
    ("renew_after_expiry", ONE_CLIENT_OVER_TIME),
    ("no_expiry", ONE_CLIENT_OVER_TIME),
    ("no_lease_wait", TWO_CLIENTS_AT_ONCE),
    ("no_takeover_drift_margin", ONE_CLIENT_OVER_TIME),
]


def test_every_variant_is_cross_checked() -> None:
    assert {v for v, _ in CROSS_CHECKED} == {None, *Lock.variants()}


@pytest.mark.parametrize("variant,params", CROSS_CHECKED)
def test_encoding_agrees_with_the_spec(variant: str | None, params: dict[str, int]) -> None:
    report = cross_check(encoding(variant, **params))
    assert report.ok, "\n".join(m.render() for m in report.mismatches)
    assert report.states > 100 and report.steps > report.states


class NoLapseOnTick(LockEncoding):
    """A deliberately altered copy of the encoding: Tick forgets that a holder whose
    own clock reaches its deadline lapses."""

    def transition(self, action: LockAction, s: SymState) -> Transition:
        step = super().transition(action, s)
        if isinstance(action, Tick):
            return Transition(step.guard, {"now": s["now"] + 1})
        return step


def test_cross_check_fails_on_an_altered_encoding() -> None:
    spec = Lock(Config(clients=1, max_requests=1, max_time=2))
    report = cross_check(NoLapseOnTick(spec))
    assert not report.ok
    first = report.mismatches[0]
    assert first.kind == "spec step outside the z3 relation" and first.action == Tick()
    assert "lapsed" in first.detail and "holding" in first.detail
    # ... and the proof with the altered encoding would be about another protocol:
    # a holder trusts its lease for ever, and LeaseValidity is no longer inductive.
    assert prove(NoLapseOnTick(spec))["Consecution"].verdict == FAILED


def test_properties_alone_are_not_inductive() -> None:
    outcomes = prove(encoding(None, clients=1, max_requests=1, max_time=2), invariant="Properties")
    assert outcomes["Initiation"].verdict == PROVED
    consecution = outcomes["Consecution"]
    assert consecution.verdict == FAILED and consecution.counterexample is not None
    assert consecution.counterexample.data["spec_agrees"] is True


# Each variant, on the smallest instance that shows it: the step that breaks LockInv.
BROKEN_BY: dict[str, tuple[dict[str, int], tuple[type, ...], str]] = {
    "no_drift_margin": ({"clients": 1, "max_requests": 1, "max_time": 2}, (Grant, Renew), "HolderDeadlineWithinLease"),
    "unfenced_storage": ({"ttl": 1, "max_drift": 0, "max_time": 0}, (AcceptWrite,), "FencedWrites"),
    "renew_after_expiry": ({"clients": 1, "ttl": 1, "max_drift": 0, "max_time": 1}, (Renew,), "MutualExclusion"),
    "release_by_non_holder": ({"ttl": 1, "max_drift": 0, "max_time": 1}, (Release,), "LeaseValidity"),
    "no_expiry": ({"clients": 1, "max_requests": 1, "max_time": 2}, (Tick,), "AutomaticRelease"),
    "barging": ({"ttl": 1, "max_drift": 0, "max_time": 0}, (Grant,), "FirstComeFirstServed"),
    "no_lease_wait": ({"ttl": 1, "max_drift": 0, "max_time": 0}, (LeaderChange,), "OldLeasesWithinBarrier"),
    "no_takeover_drift_margin": (
        {"clients": 1, "max_requests": 1, "max_time": 2},
        (LeaderChange,),
        "OldLeasesWithinBarrier",
    ),
}


def test_every_variant_has_a_failing_proof_below() -> None:
    assert set(BROKEN_BY) == set(Lock.variants())


@pytest.mark.parametrize("variant", sorted(BROKEN_BY))
def test_variant_breaks_consecution_with_a_real_spec_step(variant: str) -> None:
    params, actions, conjunct = BROKEN_BY[variant]
    enc = encoding(variant, **params)
    consecution = prove(enc)["Consecution"]
    assert consecution.verdict == FAILED and consecution.counterexample is not None
    cex = consecution.counterexample
    before, action, after = cex.values["state"], cex.values["action"], cex.values["next_state"]
    assert isinstance(before, LockState) and isinstance(after, LockState)
    assert cex.data["spec_agrees"] is True and enc.spec.next_state(before, action) == after
    assert isinstance(action, actions), action
    assert conjunct in cex.data["failing"]


def test_prove_lock_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["prove", "lock", "-p", "clients=1", "-p", "max_time=2", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["spec"] == "lock" and report["verdict"] == "ok"
    assert [o["name"] for o in report["obligations"]] == [
        "CrossCheck",
        "Initiation",
        "Consecution",
        *[f"Safety({p})" for p in PROPERTIES],
    ]
    assert all(o["verdict"] == PROVED for o in report["obligations"])


def test_prove_lock_cli_variant_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["prove", "lock", "--variant", "no_drift_margin", "-p", "clients=1", "-p", "max_requests=1"]
    code = main([*argv, "-p", "max_time=2"])
    out = capsys.readouterr().out
    assert code == 1 and "counterexample to induction" in out and "HolderDeadlineWithinLease" in out


def test_numeric_fields_with_values_zero_and_one_stay_integers() -> None:
    # (0, 1) == (False, True) in Python; lag with max_drift 1 must still be an Int
    # so that Drift can add one to it.
    assert Field("lag", (0, 1)).is_bool is False and Field("flag").is_bool is True
    enc = encoding(None, clients=1, max_requests=1, max_time=1)
    assert z3.is_int(enc.symbolic()["c1.lag"])
