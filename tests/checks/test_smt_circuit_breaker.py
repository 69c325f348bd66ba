"""The circuit breaker's z3 proof (``distcheck prove circuit_breaker``): BreakerInv is
inductive and gives ProbesBounded, NoCallWhileOpen and RestartKeepsOpen; each
variant breaks the obligation of its property, from a reachable state where it
can say; the abstraction simulates the spec (variants and other sizes included),
and its step-property formulas agree with the spec's on every reachable step."""

from __future__ import annotations

import functools
from collections import deque

import pytest

from distcheck.checks.cli import main
from distcheck.checks.proofs import induction
from distcheck.checks.proofs.circuit_breaker import BreakerEncoding, step_obligations, step_safety
from distcheck.checks.proofs.crosscheck import bounded_successors, cross_check, reachable_steps
from distcheck.checks.proofs.obligations import FAILED, PROVED, Obligation, Outcome, discharge
from distcheck.checks.proofs.registry import find_target
from distcheck.checks.proofs.system import Candidate, Holds
from distcheck.spec.circuit_breaker import BreakerState, CircuitBreaker, Config, Report, Restart

OBLIGATIONS = [
    "CrossCheck",
    "Step(NoCallWhileOpen)",
    "Step(RestartKeepsOpen)",
    "Initiation",
    "Consecution",
    "Safety(ProbesBounded)",
]


def spec(variant: str | None = None, **params: int) -> CircuitBreaker:
    cls = CircuitBreaker.variants()[variant].cls if variant else CircuitBreaker
    made = cls(Config(**params, variant=variant))
    assert isinstance(made, CircuitBreaker)
    return made


@functools.cache
def prove(*args: str, variant: str | None = None, cross_check: bool = False) -> dict[str, Outcome]:
    """The outcomes of ``prove circuit_breaker`` (the cross-check is tested below and
    in test_smt_crosscheck, so skipped unless asked for); computed once per options.
    racing_reset's reachable states never end, so its obligations are taken
    without the reachability note (``prove`` gives up on it after 30,000 states)."""
    if variant == "racing_reset":
        made = spec(variant)
        encoding = BreakerEncoding(made)
        obligations = [*step_obligations(made), *induction.obligations(encoding, encoding.candidates()[0])]
    else:
        plan = find_target("circuit_breaker").plan(list(args), variant=variant, cross_check=cross_check)
        obligations = plan.obligations
    return {o.name: discharge(o) for o in obligations}


def first_states(made: CircuitBreaker, limit: int) -> list[BreakerState]:
    """The first ``limit`` states in breadth-first order (racing_reset's generations grow without end)."""
    seen = {s: None for s in made.init_states()}
    queue = deque(seen)
    while queue and len(seen) < limit:
        for _, nxt in bounded_successors(made, queue.popleft()):
            if nxt not in seen:
                seen[nxt] = None
                queue.append(nxt)
    return list(seen)[:limit]


# ------------------------------------------------------------------- the proof


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("callers=2", "probes=2", "window=3", "threshold=2", "restarts=2"),
    ],
)
def test_breaker_inv_is_inductive_and_proves_the_properties(args: tuple[str, ...]) -> None:
    outcomes = prove(*args, cross_check=True)
    assert list(outcomes) == OBLIGATIONS
    assert {name: o.verdict for name, o in outcomes.items()} == dict.fromkeys(OBLIGATIONS, PROVED)


def test_the_spec_s_largest_parameters_are_proved() -> None:
    largest = ["callers=4", "window=5", "threshold=5", "open_timeout=5", "probes=4", "max_time=10", "restarts=3"]
    plan = find_target("circuit_breaker").plan(largest, cross_check=False)
    outcomes = {o.name: discharge(o) for o in plan.obligations[1:]}
    assert all(o.verdict == PROVED for o in outcomes.values())


@pytest.mark.parametrize(
    ("variant", "fails", "action", "conjuncts"),
    [
        ("unbounded_probes", {"Consecution"}, "Call", {"ProbesBounded"}),
        ("racing_reset", {"Consecution"}, "Report", {"WaitedSinceOpened"}),
        (
            "restart_closes",
            {"Consecution", "Step(RestartKeepsOpen)"},
            "Restart",
            {"WaitedSinceOpened", "RecordIsCurrent"},
        ),
    ],
)
def test_each_variant_breaks_the_obligation_of_its_property(
    variant: str, fails: set[str], action: str, conjuncts: set[str]
) -> None:
    outcomes = prove(variant=variant)
    assert {name for name, o in outcomes.items() if o.verdict == FAILED} == fails
    assert {name for name, o in outcomes.items() if o.verdict == PROVED} == set(OBLIGATIONS) - fails - {"CrossCheck"}
    cti = outcomes["Consecution"].counterexample
    assert cti is not None
    assert type(cti.values["action"]).__name__ == action
    assert set(cti.data["failing"]) == conjuncts
    # The spec (the variant) takes that step from that state.
    made = spec(variant)
    assert made.next_state(cti.values["state"], cti.values["action"]) is not None
    # Where the reachable states are few enough to know, the state is one of them:
    # the mistake is the protocol's, not a weak invariant's.
    if variant != "racing_reset":
        assert cti.values["before_reachable"] is True


def test_a_stale_success_closes_a_breaker_that_just_opened_and_a_call_gets_through() -> None:
    """racing_reset's counterexample, continued on the variant's own rules: after the
    stale report, a call is admitted before the timeout, which NoCallWhileOpen forbids."""
    made = spec("racing_reset")
    cti = prove(variant="racing_reset")["Consecution"].counterexample
    assert cti is not None
    before, report = cti.values["state"], cti.values["action"]
    assert isinstance(report, Report) and report.outcome == "success"
    closed = made.next_state(before, report)
    assert closed is not None and closed.mode == "closed"
    idle = next(c for c in made.callers if closed.calls[c] is None)
    admitted = made.call(closed, idle)
    assert admitted is not None
    no_call_while_open = next(p for p in made.step_properties() if p.name == "NoCallWhileOpen")
    assert not no_call_while_open.holds(closed, admitted)
    assert before.opened_at >= 0 and admitted.now < before.opened_at + made.config.open_timeout


def test_a_restart_that_forgets_the_record_closes_an_open_breaker() -> None:
    out = prove(variant="restart_closes")["Step(RestartKeepsOpen)"].counterexample
    assert out is not None
    assert isinstance(out.values["action"], Restart)
    assert out.values["state"].mode == "open" and out.values["next_state"].mode == "closed"


@pytest.mark.parametrize(
    ("dropped", "breaks"),
    [
        ("ProbesBounded", {"Safety(ProbesBounded)"}),
        ("WaitedSinceOpened", {"Consecution", "Step(NoCallWhileOpen)"}),
        ("OpenedInPast", {"Consecution"}),
        ("CallsMatchMode", {"Consecution"}),
        ("RecordIsCurrent", {"Consecution", "Step(RestartKeepsOpen)"}),
        ("CauseMatchesMode", set()),  # only keeps counterexamples reachable
        ("WindowWhenClosed", set()),
    ],
)
def test_what_each_conjunct_is_needed_for(dropped: str, breaks: set[str]) -> None:
    encoding = BreakerEncoding(spec())
    full = encoding.candidates()[0]
    weaker = Candidate(
        "Weaker", "BreakerInv without one conjunct", tuple(c for c in full.conjuncts if c.name != dropped)
    )
    assert len(weaker.conjuncts) == len(full.conjuncts) - 1
    steps = [
        Obligation(f"Step({p.name})", "", functools.partial(step_safety, encoding, weaker, p, 60.0))
        for p in encoding.step_properties()
    ]
    outcomes = [discharge(o) for o in [*steps, *induction.obligations(encoding, weaker)]]
    assert {o.name for o in outcomes if o.verdict != PROVED} == breaks


# ------------------------------------------------------- the encoding against the spec


@pytest.mark.parametrize(
    ("variant", "params"),
    [
        (None, {"callers": 2, "probes": 2, "window": 3, "threshold": 2, "max_time": 3}),
        (None, {"callers": 2, "open_timeout": 1, "restarts": 2, "max_time": 3}),
        ("unbounded_probes", {"callers": 2}),
        ("restart_closes", {"callers": 2}),
    ],
)
def test_the_abstraction_simulates_the_spec(variant: str | None, params: dict[str, int]) -> None:
    report = cross_check(BreakerEncoding(spec(variant, **params)))
    assert report.ok, [m.render() for m in report.mismatches]
    assert report.steps > 1000


def test_the_abstraction_simulates_racing_reset_on_its_first_states() -> None:
    made = spec("racing_reset")
    report = cross_check(BreakerEncoding(made), first_states(made, 1500))
    assert report.ok, [m.render() for m in report.mismatches]


@pytest.mark.parametrize("variant", [None, "racing_reset", "restart_closes"])
def test_the_step_formulas_agree_with_the_spec_step_properties(variant: str | None) -> None:
    made = spec(variant, callers=2)
    encoding = BreakerEncoding(made)
    s, t = encoding.symbolic(), encoding.symbolic("′")
    properties = {p.name: p for p in made.step_properties()}
    states = first_states(made, 2000) if variant == "racing_reset" else list(reachable_steps(made))
    seen = dict.fromkeys(properties, 0)
    for formula in encoding.step_properties():
        # the formula over one state's fields and the next's, as one state of both
        both = encoding.symbolic()
        both.vars.update({name + "′": var for name, var in t.vars.items()})
        both.fields.update({name + "′": f for name, f in t.fields.items()})
        holds = Holds(formula.formula(s, t), both)
        for state in states:
            for _, nxt in bounded_successors(made, state):
                values = {**encoding.values(state), **{k + "′": v for k, v in encoding.values(nxt).items()}}
                expected = properties[formula.name].holds(state, nxt)
                assert holds(values) == expected, (formula.name, state, nxt)
                seen[formula.name] += not expected
    if variant == "racing_reset":
        assert seen["NoCallWhileOpen"] > 0
    if variant == "restart_closes":
        assert seen["RestartKeepsOpen"] > 0


# ----------------------------------------------------------------- the command line


def test_prove_circuit_breaker_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "circuit_breaker", "--no-cross-check"]) == 0
    assert "5 of 6 obligations proved, 0 failed, 1 skipped" in capsys.readouterr().out
    assert main(["prove", "circuit_breaker", "--variant", "unbounded_probes", "--no-cross-check"]) == 1
    assert "ProbesBounded: in half-open" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "probes=0"], "probes"),
        (["-p", "threshold=3"], "threshold (3) must be at most window (2)"),
        (["--invariant", "Nope"], "unknown invariant 'Nope'"),
        (["--variant", "nope"], "nope"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "circuit_breaker", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
