"""Retries' lemmas (``distcheck prove retry``): RetryInv is inductive for every
parameter in a range and gives the spec's four invariants; each variant's rule
breaks exactly the step of the conjunct it is about, and its counterexample is a
step the variant takes (and the reference refuses), which leads on the variant's
own rules to the violation; the rules' formulas take exactly the spec's steps on
every reachable state (variants and jitters included) and along random walks of
larger configs; the command line proves them and rejects bad options."""

from __future__ import annotations

import random

import pytest
import z3

from distcheck.checks.cli import main
from distcheck.checks.proofs.crosscheck import bounded_successors, reachable_steps
from distcheck.checks.proofs.obligations import FAILED, PROVED, Outcome, discharge
from distcheck.checks.proofs.retry import (
    BROKEN,
    CONJUNCTS,
    Bounds,
    Client,
    Params,
    RuleChecker,
    check_params,
    obligations,
    retry_inv,
    rules,
)
from distcheck.spec.retry import (
    CALLING,
    SLEEPING,
    Attempt,
    Config,
    Retry,
    RetryBackoff,
    RetryState,
    Tick,
)

LEMMAS = [
    "Initiation",
    *(f"Step({c.name})" for c in CONJUNCTS),
    *(f"Safety({p})" for p in ("WithinDeadline", "WithinBudget", "RetriesAreSafe", "SleepInRange")),
]


def run(broken: str | None = None, bounds: dict[str, int] | None = None) -> dict[str, Outcome]:
    return {o.name: discharge(o) for o in obligations(check_params(bounds or {}), broken=broken)}


def spec(variant: str | None = None, **params: object) -> RetryBackoff:
    info = RetryBackoff.variants()[variant] if variant else None
    cls = info.cls if info else RetryBackoff
    made = cls(Config(**{**(info.params if info else {}), **params}, variant=variant))
    assert isinstance(made, RetryBackoff)
    return made


# --------------------------------------------------------------------- the lemmas


@pytest.mark.parametrize(
    "bounds",
    [
        {},  # the spec's own largest parameters
        {"max_cap": 1, "max_base": 1, "max_attempts": 1, "max_deadline": 1, "max_timeout": 1},
        {"max_cap": 2**62, "max_base": 2**62, "max_deadline": 10**9, "max_timeout": 10**9, "max_attempts": 10**9},
    ],
)
def test_every_lemma_holds_for_every_parameter_in_range(bounds: dict[str, int]) -> None:
    assert {name: o.verdict for name, o in run(bounds=bounds).items()} == dict.fromkeys(LEMMAS, PROVED)


def test_every_rule_can_be_taken_from_a_state_of_the_invariant() -> None:
    """The lemmas are not vacuous: for each rule, some parameters in range and some
    state satisfying RetryInv enable it."""
    p, s, sleep = Params.fresh(), Client.fresh(), z3.Int("sleep")
    for name, step in rules(p, s, sleep, Bounds.of(check_params({}))).items():
        solver = z3.Solver()
        solver.add(*p.in_range(check_params({})), retry_inv(p, s), step.guard)
        assert solver.check() == z3.sat, name


@pytest.mark.parametrize(
    ("broken", "fails"),
    [
        ("deadline_checked_before_sleep_only", "Step(DeadlineKept)"),
        ("unbounded_retries", "Step(BudgetKept)"),
        ("retry_without_key", "Step(AppliedOnce)"),
        ("sleep_above_cap", "Step(SleepsInRange)"),
    ],
)
def test_each_variant_breaks_exactly_the_step_it_is_about(broken: str, fails: str) -> None:
    outcomes = run(broken)
    assert {name for name, o in outcomes.items() if o.verdict == FAILED} == {fails}
    counterexample = outcomes[fails].counterexample
    assert counterexample is not None and counterexample.data["step"] == "Retry"


def test_every_broken_rule_is_a_variant_of_the_spec() -> None:
    assert set(BROKEN) == set(RetryBackoff.variants())


# ------------------------------------------------ counterexamples, replayed on the spec


def replayed(broken: str, lemma: str) -> tuple[RetryBackoff, RetryState, Retry]:
    """The counterexample's parameters as a Config of the variant, its state as a
    spec state (older requests numbered from 1, the sleep history filled with its
    last sleep) and its step as a spec action."""
    outcome = run(broken)[lemma]
    assert outcome.counterexample is not None
    params, state = outcome.counterexample.values["params"], outcome.counterexample.values["state"]
    made = spec(broken, **params)
    attempts = state["attempts"]
    unprocessed = set(range(1, state["older"] + 1)) | ({attempts} if state["current_unprocessed"] else set())
    before = RetryState(
        now=state["now"],
        phase=state["phase"],
        attempts=attempts,
        timer=state["timer"],
        reply=state["reply"],
        reason=state["reason"],
        unprocessed=frozenset(unprocessed),
        applied=state["applied"],
        key_recorded=state["key_recorded"],
        sleeps=(state["last"],) * state["retries"],
    )
    assert outcome.counterexample.values["step"] == "Retry"
    return made, before, Retry(outcome.counterexample.values["sleep"])


def run_to_attempt_end(made: RetryBackoff, state: RetryState) -> RetryState:
    """From a sleep: wake, attempt, and wait until the attempt times out, by the spec's rules."""
    while state.phase == SLEEPING and state.now < state.timer:
        nxt = made.next_state(state, Tick())
        assert nxt is not None
        state = nxt
    nxt = made.next_state(state, Attempt())
    assert nxt is not None and nxt.phase == CALLING
    state = nxt
    while state.now < state.timer:
        nxt = made.next_state(state, Tick())
        assert nxt is not None
        state = nxt
    return state


@pytest.mark.parametrize(
    ("broken", "lemma", "invariant"),
    [
        ("deadline_checked_before_sleep_only", "Step(DeadlineKept)", "WithinDeadline"),
        ("unbounded_retries", "Step(BudgetKept)", "WithinBudget"),
    ],
)
def test_the_retry_leads_to_the_violation_on_the_variant_s_rules(broken: str, lemma: str, invariant: str) -> None:
    made, before, retry = replayed(broken, lemma)
    after = made.next_state(before, retry)
    assert after is not None
    end = run_to_attempt_end(made, after)
    holds = next(i for i in made.invariants() if i.name == invariant).holds
    assert holds(before) and not holds(end)


@pytest.mark.parametrize(
    ("broken", "lemma"),
    [
        ("deadline_checked_before_sleep_only", "Step(DeadlineKept)"),
        ("unbounded_retries", "Step(BudgetKept)"),
        ("retry_without_key", "Step(AppliedOnce)"),
        ("sleep_above_cap", "Step(SleepsInRange)"),
    ],
)
def test_the_variant_takes_the_step_the_reference_refuses(broken: str, lemma: str) -> None:
    made, before, retry = replayed(broken, lemma)
    c = made.config
    reference = RetryBackoff(
        Config(
            base=c.base,
            cap=c.cap,
            deadline=c.deadline,
            attempt_timeout=c.attempt_timeout,
            max_attempts=c.max_attempts,
            jitter=c.jitter,
            idempotent=c.idempotent,
            idempotency_key=c.idempotency_key,
        )
    )
    assert made.next_state(before, retry) is not None
    assert reference.next_state(before, retry) is None
    if broken == "sleep_above_cap":
        assert retry.sleep > c.cap or retry.sleep not in reference.sleep_choices(before)


# ------------------------------------------------- the rules' formulas against the spec


@pytest.mark.parametrize(
    ("variant", "params"),
    [
        (None, {}),
        (None, {"jitter": "equal", "deadline": 10}),
        (None, {"jitter": "decorrelated", "base": 2, "cap": 5, "deadline": 10}),
        (None, {"idempotent": True, "idempotency_key": False, "deadline": 6}),
        (None, {"idempotency_key": False}),
        ("deadline_checked_before_sleep_only", {"deadline": 6}),
        ("unbounded_retries", {"deadline": 6}),
        ("retry_without_key", {"deadline": 6}),
        ("sleep_above_cap", {"deadline": 6}),
        ("sleep_above_cap", {"jitter": "decorrelated"}),
    ],
)
def test_the_rules_take_exactly_the_spec_steps_on_every_reachable_state(
    variant: str | None, params: dict[str, object]
) -> None:
    made = spec(variant, **params)
    checker = RuleChecker(made)
    steps = reachable_steps(made)
    assert len(steps) > 20
    for state, successors in steps.items():
        assert checker.mismatch(state, successors) is None, state


@pytest.mark.parametrize(
    "params",
    [
        {"base": 3, "cap": 16, "deadline": 30, "attempt_timeout": 3, "max_attempts": 8, "jitter": "full"},
        {"base": 5, "cap": 11, "deadline": 30, "attempt_timeout": 2, "max_attempts": 6, "jitter": "equal"},
        {"base": 2, "cap": 16, "deadline": 30, "attempt_timeout": 1, "max_attempts": 8, "jitter": "decorrelated"},
    ],
)
def test_the_rules_take_exactly_the_spec_steps_along_random_walks(params: dict[str, object]) -> None:
    made = spec(None, **params)
    checker = RuleChecker(made)
    rng = random.Random(11)
    retries = 0
    for _ in range(30):
        state = next(iter(made.init_states()))
        for _ in range(60):
            successors = bounded_successors(made, state)
            assert checker.mismatch(state, successors) is None, state
            if not successors:
                break
            action, state = rng.choice(successors)
            retries += isinstance(action, Retry)
    assert retries > 10


@pytest.mark.parametrize(
    ("steps_of", "judged_as", "deadline"),
    [
        (None, "deadline_checked_before_sleep_only", 6),
        ("deadline_checked_before_sleep_only", None, 6),
        ("unbounded_retries", None, 6),
        ("sleep_above_cap", None, 10),
    ],
)
def test_the_check_notices_rules_that_differ_from_the_spec(
    steps_of: str | None, judged_as: str | None, deadline: int
) -> None:
    """Steps of one spec judged by the formulas of another: some state differs, at a Retry."""
    stepping, judge = spec(steps_of, deadline=deadline), spec(judged_as, deadline=deadline)
    checker = RuleChecker(judge)
    found = [checker.mismatch(s, succ) for s, succ in reachable_steps(stepping).items()]
    assert any(m is not None and "Retry" in m for m in found)


# ----------------------------------------------------------------- the command line


def test_prove_retry_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "retry", "-p", "max_cap=1000000", "-p", "max_deadline=100000"]) == 0
    assert "10 of 10 obligations proved" in capsys.readouterr().out
    assert main(["prove", "retry", "--variant", "unbounded_retries"]) == 1
    out = capsys.readouterr().out
    assert "9 of 10 obligations proved" in out and "fails: BudgetKept" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "max_cap=0"], "parameter max_cap of retry must be between 1 and"),
        (["-p", "max_deadline=x"], "max_deadline"),
        (["-p", "base=3"], "unknown parameter 'base' for retry"),
        (["--invariant", "WithinDeadline"], "retry is a set of lemmas"),
        (["--variant", "nope"], "unknown variant 'nope' for retry; allowed: deadline_checked_before_sleep_only"),
        (["--variant", "sleep_above_cap", "-p", "max_deadline=5000"], "give -p max_deadline=1000 or less"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "retry", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
