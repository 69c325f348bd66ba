"""Retries with backoff (``spec/retry.py``), proved by z3 for every parameter in a range.

Where it sits: in ``checks/proofs``, registered as the provable target ``retry``
(``distcheck prove retry``).  Like ``clocks`` and ``abd``, a set of lemmas rather
than an induction over one bounded spec: exploring ``spec/retry.py`` covers one
Config at a time (base, cap, deadline, attempt timeout, budget, jitter), and these
lemmas cover all of them at once.  The parameters are z3 unknowns, each in a range
given by ``-p``: 1 ≤ base ≤ cap ≤ ``max_cap`` (base ≤ ``max_base``),
1 ≤ attempt_timeout ≤ deadline ≤ ``max_deadline`` (attempt_timeout ≤
``max_timeout``), 1 ≤ max_attempts ≤ ``max_attempts``; the jitter is any of
full, equal and decorrelated, and the call idempotent or not, keyed or not.  The
defaults are the spec's own largest parameters, so ``prove retry`` covers every
Config the spec accepts.

**The client as formulas.**  ``rules`` states each rule of the spec over a
symbolic ``Params`` and ``Client`` (the state, abstracted): the server's
unprocessed requests are counted (``older``, and whether the current attempt's
is one of them, ``current_unprocessed``: a request is answered to the client
only if it is the current attempt's), and the sleep history is kept as its
length (``retries``), its last sleep (``last``, base before the first: what the
next draw reads) and whether every sleep so far was in its jitter's range
(``sleeps_ok``: the SleepInRange invariant itself).  A Retry's sleep is one more
unknown, constrained to its jitter's range: the n-th draw lies in
[0, e], [e − ⌊e/2⌋, e] or [min(cap, base), min(cap, 3·previous)] with
e = min(cap, base·2^n), the exponential unrolled for n below the bit length of
``max_cap`` (past it, base·2^n ≥ cap, so e = cap: exact for every n).  GiveUp's
"no draw fits" is "the smallest draw does not fit", as fitting only gets harder
with a longer sleep.  ``RuleChecker`` evaluates these formulas with z3 on
concrete states: the tests check that they take exactly the spec's steps (every
draw of Retry included) on every reachable state of several Configs and along
random walks of larger ones, the variants included.

**The inductive invariant RetryInv** (``CONJUNCTS``):

- **Counters**: time, counts and the last sleep are not negative (the last is
  base before any sleep); an idle client is at its start; retries = attempts
  while sleeping, attempts − 1 after the first attempt otherwise;
  applied + unprocessed ≤ attempts (each attempt sends one request, applied at
  most once); a calling client's timer is at most attempt_timeout ahead.
- **DeadlineKept**: now ≤ deadline; a calling client's timer ≤ deadline; a
  sleeping one's timer + attempt_timeout ≤ deadline (the attempt after the
  sleep, timed out at the latest, ends by the deadline).
- **BudgetKept**: attempts ≤ max_attempts, and < max_attempts while sleeping.
- **AppliedOnce**: with a key, the call was applied once at most, and only
  once its key is recorded; without a key and not idempotent, the client never
  sleeps (it does not retry) and makes one attempt at most.
- **SleepsInRange**: every sleep so far was in its jitter's range (≤ cap).

The obligations: **Initiation** (the initial state satisfies RetryInv), one
**Step(C)** per conjunct C (RetryInv ∧ one step of any rule ⇒ C′, for every
parameter in range and every draw) and **Safety(P)** (RetryInv ⇒ P) for the
spec's four invariants WithinDeadline, WithinBudget, RetriesAreSafe and
SleepInRange.  ``broken`` names a variant of ``spec/retry.py`` whose rule then
replaces the reference one; each breaks the step of the conjunct it is about,
at Retry: ``deadline_checked_before_sleep_only`` DeadlineKept,
``unbounded_retries`` BudgetKept, ``retry_without_key`` AppliedOnce,
``sleep_above_cap`` SleepsInRange (its uncapped exponential base·2^min(n,
deadline) is unrolled up to min(``max_deadline``, ``max_attempts``), which
BudgetKept bounds it by; its decorrelated cap base·2^deadline up to
``max_deadline``, at most ``MAX_UNROLLED_DEADLINE``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import z3

from distcheck.checks.params import UsageError
from distcheck.checks.proofs.obligations import (
    DEFAULT_TIMEOUT_SECONDS,
    FAILED,
    PROVED,
    UNKNOWN,
    Counterexample,
    Obligation,
    Verdict,
    find_model,
)
from distcheck.checks.proofs.system import free_variables
from distcheck.spec.registry import ParamInfo
from distcheck.spec.retry import (
    BUDGET,
    CALLING,
    DEADLINE,
    DECORRELATED,
    EQUAL,
    ERROR,
    FULL,
    GAVE_UP,
    IDLE,
    JITTERS,
    NONE,
    OK,
    PHASES,
    REASONS,
    SLEEPING,
    SUCCEEDED,
    UNSAFE,
    GiveUp,
    Process,
    Reject,
    Retry,
    RetryAction,
    RetryBackoff,
    RetryState,
)
from distcheck.spec.retry import (
    FAILED as PHASE_FAILED,
)

MAX_CAP = 2**62
MAX_TIME = 10**9  # deadline, attempt timeout and budget
#: ``sleep_above_cap`` unrolls its uncapped exponential once per deadline, up to this one
MAX_UNROLLED_DEADLINE = 1000

PARAMS = (
    ParamInfo("max_base", 8, int, "base ranges over 1..max_base (and at most cap)", 1, MAX_CAP),
    ParamInfo("max_cap", 16, int, "cap ranges over base..max_cap", 1, MAX_CAP),
    ParamInfo("max_deadline", 30, int, "deadline ranges over 1..max_deadline", 1, MAX_TIME),
    ParamInfo("max_timeout", 8, int, "attempt_timeout ranges over 1..max_timeout (and at most deadline)", 1, MAX_TIME),
    ParamInfo("max_attempts", 8, int, "max_attempts (the budget) ranges over 1..max_attempts", 1, MAX_TIME),
)

#: the rules a test or ``--variant`` may swap in (``spec/retry.py``'s variants)
BROKEN = ("deadline_checked_before_sleep_only", "unbounded_retries", "retry_without_key", "sleep_above_cap")

REPLIES = (NONE, OK, ERROR)
GIVE_UP_REASONS = ("", *REASONS)  # "" until the client gives up


def check_params(values: Mapping[str, Any]) -> dict[str, int]:
    """The ranges with defaults filled in (each bound is checked against ``PARAMS`` before)."""
    return {p.name: int(values.get(p.name, p.default)) for p in PARAMS}


# --------------------------------------------------------------------- symbols


@attrs.frozen
class Params:
    """A Config as z3 terms: ``jitter`` indexes ``JITTERS``."""

    base: z3.ArithRef
    cap: z3.ArithRef
    deadline: z3.ArithRef
    timeout: z3.ArithRef
    max_attempts: z3.ArithRef
    jitter: z3.ArithRef
    idempotent: z3.BoolRef
    keyed: z3.BoolRef

    @staticmethod
    def fresh() -> Params:
        base, cap, deadline, timeout, max_attempts, jitter = (
            z3.Int(n) for n in ("base", "cap", "deadline", "attempt_timeout", "max_attempts", "jitter")
        )
        return Params(
            base, cap, deadline, timeout, max_attempts, jitter, z3.Bool("idempotent"), z3.Bool("idempotency_key")
        )

    @staticmethod
    def of(spec: RetryBackoff) -> Params:
        c = spec.config
        return Params(
            z3.IntVal(c.base),
            z3.IntVal(c.cap),
            z3.IntVal(c.deadline),
            z3.IntVal(c.attempt_timeout),
            z3.IntVal(c.max_attempts),
            z3.IntVal(JITTERS.index(c.jitter)),
            z3.BoolVal(c.idempotent),
            z3.BoolVal(c.idempotency_key),
        )

    def in_range(self, bounds: Mapping[str, int]) -> list[z3.BoolRef]:
        return [
            1 <= self.base,
            self.base <= bounds["max_base"],
            self.base <= self.cap,
            self.cap <= bounds["max_cap"],
            1 <= self.timeout,
            self.timeout <= bounds["max_timeout"],
            self.timeout <= self.deadline,
            self.deadline <= bounds["max_deadline"],
            1 <= self.max_attempts,
            self.max_attempts <= bounds["max_attempts"],
            0 <= self.jitter,
            self.jitter < len(JITTERS),
        ]


#: the fields of ``Client``, in order; the booleans are ``BOOLEAN_FIELDS``
CLIENT_FIELDS = (
    "now",
    "phase",
    "attempts",
    "timer",
    "reply",
    "reason",
    "older",
    "current_unprocessed",
    "applied",
    "key_recorded",
    "retries",
    "last",
    "sleeps_ok",
)
BOOLEAN_FIELDS = ("current_unprocessed", "key_recorded", "sleeps_ok")


@attrs.frozen
class Client:
    """A client state, abstracted, as z3 terms: ``phase``, ``reply`` and ``reason``
    index ``PHASES``, ``REPLIES`` and ``GIVE_UP_REASONS``; ``older`` counts the
    unprocessed requests of earlier attempts, ``current_unprocessed`` says whether
    the current attempt's is; ``retries``, ``last`` and ``sleeps_ok`` abstract the
    sleep history (see the module docstring)."""

    now: z3.ArithRef
    phase: z3.ArithRef
    attempts: z3.ArithRef
    timer: z3.ArithRef
    reply: z3.ArithRef
    reason: z3.ArithRef
    older: z3.ArithRef
    current_unprocessed: z3.BoolRef
    applied: z3.ArithRef
    key_recorded: z3.BoolRef
    retries: z3.ArithRef
    last: z3.ArithRef
    sleeps_ok: z3.BoolRef

    @staticmethod
    def fresh(tag: str = "") -> Client:
        return Client(**{n: (z3.Bool if n in BOOLEAN_FIELDS else z3.Int)(n + tag) for n in CLIENT_FIELDS})

    def is_(self, phase: str) -> z3.BoolRef:
        return self.phase == PHASES.index(phase)

    def terms(self) -> dict[str, z3.ExprRef]:
        return {n: getattr(self, n) for n in CLIENT_FIELDS}


def abstract(spec: RetryBackoff, state: RetryState) -> dict[str, int | bool]:
    """A spec state's ``Client`` values (``constant`` makes z3 constants of them)."""
    c = spec.config
    return {
        "now": state.now,
        "phase": PHASES.index(state.phase),
        "attempts": state.attempts,
        "timer": state.timer,
        "reply": REPLIES.index(state.reply),
        "reason": GIVE_UP_REASONS.index(state.reason),
        "older": len([a for a in state.unprocessed if a != state.attempts]),
        "current_unprocessed": state.attempts in state.unprocessed,
        "applied": state.applied,
        "key_recorded": state.key_recorded,
        "retries": len(state.sleeps),
        "last": state.sleeps[-1] if state.sleeps else c.base,
        "sleeps_ok": _sleeps_ok(spec, state),
    }


def _sleeps_ok(spec: RetryBackoff, state: RetryState) -> bool:
    return next(inv for inv in spec.invariants() if inv.name == "SleepInRange").holds(state)


def constant(values: Mapping[str, int | bool]) -> Client:
    return Client(
        **{n: z3.BoolVal(bool(values[n])) if n in BOOLEAN_FIELDS else z3.IntVal(int(values[n])) for n in CLIENT_FIELDS}
    )


# ----------------------------------------------------------------------- rules


def _min(a: z3.ArithRef, b: z3.ArithRef) -> z3.ArithRef:
    return z3.If(a <= b, a, b)


def _unrolled(n: z3.ArithRef, length: int, term: Callable[[int], z3.ArithRef], beyond: z3.ArithRef) -> z3.ArithRef:
    """term(n) for n in 0..length-1, ``beyond`` otherwise."""
    out = beyond
    for i in range(length - 1, -1, -1):
        out = z3.If(n == i, term(i), out)
    return out


@attrs.frozen
class Bounds:
    """How far the exponentials are unrolled: exact for the parameters in range."""

    cap_bits: int  # base·2^n ≥ cap for n ≥ cap_bits
    steps: int  # (sleep_above_cap) min(n, deadline) ≤ steps, under BudgetKept
    deadline: int  # (sleep_above_cap) deadline ≤ this

    @staticmethod
    def of(bounds: Mapping[str, int]) -> Bounds:
        return Bounds(
            bounds["max_cap"].bit_length(), min(bounds["max_deadline"], bounds["max_attempts"]), bounds["max_deadline"]
        )


def jitter_bounds(
    p: Params, retry: z3.ArithRef, previous: z3.ArithRef, bounds: Bounds, uncapped: bool = False
) -> tuple[z3.ArithRef, z3.ArithRef]:
    """The least and greatest sleep of the ``retry``-th retry: ``spec.retry.jitter_range``
    (with ``uncapped``: ``SleepAboveCap.sleep_choices``, whose cap is base·2^deadline)."""
    if uncapped:
        # min(base·2^deadline, base·2^n) = base·2^min(n, deadline)
        smaller = _min(retry, p.deadline)
        exponential = _unrolled(smaller, bounds.steps + 1, lambda i: p.base * 2**i, p.base * 2**bounds.steps)
        cap = _unrolled(p.deadline, bounds.deadline + 1, lambda i: p.base * 2**i, p.base * 2**bounds.deadline)
    else:
        exponential = _unrolled(retry, bounds.cap_bits, lambda i: _min(p.cap, p.base * 2**i), p.cap)
        cap = p.cap
    full = (z3.IntVal(0), exponential)
    equal = (exponential - exponential / 2, exponential)
    decorrelated = (_min(cap, p.base), _min(cap, 3 * previous))
    is_full, is_equal = p.jitter == JITTERS.index(FULL), p.jitter == JITTERS.index(EQUAL)
    assert JITTERS.index(DECORRELATED) == 2
    return (
        z3.If(is_full, full[0], z3.If(is_equal, equal[0], decorrelated[0])),
        z3.If(is_full, full[1], z3.If(is_equal, equal[1], decorrelated[1])),
    )


@attrs.frozen
class Step:
    """One rule's guard and the client after it."""

    guard: z3.BoolRef
    after: Client


def rules(p: Params, s: Client, sleep: z3.ArithRef, bounds: Bounds, broken: str | None = None) -> dict[str, Step]:
    """Each rule of ``RetryBackoff`` (or of the variant ``broken``) as a step of the
    abstracted client; Retry draws ``sleep``.  Keys: the rule's name, with the
    request's kind for Process and Reject and the reason for GiveUp."""

    def then(**changes: z3.ExprRef | int | bool) -> Client:
        def term(value: z3.ExprRef | int | bool) -> z3.ExprRef:
            if isinstance(value, bool):
                return z3.BoolVal(value)
            return z3.IntVal(value) if isinstance(value, int) else value

        return attrs.evolve(s, **{name: term(value) for name, value in changes.items()})

    phase = PHASES.index
    budget_left = z3.BoolVal(True) if broken == "unbounded_retries" else s.attempts < p.max_attempts
    safe = z3.BoolVal(True) if broken == "retry_without_key" else z3.Or(p.idempotent, p.keyed)

    def fits(sleep: z3.ArithRef) -> z3.BoolRef:
        if broken == "deadline_checked_before_sleep_only":
            return s.now + sleep <= p.deadline
        return s.now + sleep + p.timeout <= p.deadline

    least, most = jitter_bounds(p, s.retries, s.last, bounds, uncapped=broken == "sleep_above_cap")
    in_range = jitter_bounds(p, s.retries, s.last, bounds)
    some_draw_fits = z3.And(least <= most, fits(least))
    why_stop = z3.If(
        z3.Not(budget_left),
        GIVE_UP_REASONS.index(BUDGET),
        z3.If(z3.Not(safe), GIVE_UP_REASONS.index(UNSAFE), z3.If(some_draw_fits, -1, GIVE_UP_REASONS.index(DEADLINE))),
    )
    calling = s.is_(CALLING)
    answered_after = s.now > s.timer - p.timeout
    applies = z3.Not(z3.And(p.keyed, s.key_recorded))
    processed = {"key_recorded": z3.Or(s.key_recorded, p.keyed), "applied": z3.If(applies, s.applied + 1, s.applied)}
    out = {
        "Tick": Step(z3.And(z3.Or(calling, s.is_(SLEEPING)), s.now < s.timer), then(now=s.now + 1)),
        "Attempt": Step(
            z3.Or(s.is_(IDLE), z3.And(s.is_(SLEEPING), s.now == s.timer)),
            then(
                phase=phase(CALLING),
                attempts=s.attempts + 1,
                timer=s.now + p.timeout,
                reply=REPLIES.index(NONE),
                older=s.older + z3.If(s.current_unprocessed, 1, 0),
                current_unprocessed=True,
            ),
        ),
        "Process(current)": Step(
            s.current_unprocessed,
            then(current_unprocessed=False, reply=z3.If(calling, REPLIES.index(OK), s.reply), **processed),
        ),
        "Process(older)": Step(s.older > 0, then(older=s.older - 1, **processed)),
        "Reject(current)": Step(
            s.current_unprocessed,
            then(current_unprocessed=False, reply=z3.If(calling, REPLIES.index(ERROR), s.reply)),
        ),
        "Reject(older)": Step(s.older > 0, then(older=s.older - 1)),
        "Succeed": Step(z3.And(calling, s.reply == REPLIES.index(OK), answered_after), then(phase=phase(SUCCEEDED))),
        "Fail": Step(z3.And(calling, s.reply == REPLIES.index(ERROR), answered_after), then(phase=phase(PHASE_FAILED))),
        "TimeOut": Step(z3.And(calling, s.now == s.timer), then(phase=phase(PHASE_FAILED))),
        "Retry": Step(
            z3.And(s.is_(PHASE_FAILED), budget_left, safe, fits(sleep), least <= sleep, sleep <= most),
            then(
                phase=phase(SLEEPING),
                timer=s.now + sleep,
                retries=s.retries + 1,
                last=sleep,
                sleeps_ok=z3.And(s.sleeps_ok, sleep <= p.cap, in_range[0] <= sleep, sleep <= in_range[1]),
            ),
        ),
    }
    for reason in REASONS:
        code = GIVE_UP_REASONS.index(reason)
        out[f"GiveUp({reason})"] = Step(
            z3.And(s.is_(PHASE_FAILED), why_stop == code), then(phase=phase(GAVE_UP), reason=code)
        )
    return out


def rule_key(state: RetryState, action: RetryAction) -> str:
    """The key in ``rules`` of a spec action taken in ``state``."""
    match action:
        case Process(attempt) | Reject(attempt):
            kind = "current" if attempt == state.attempts else "older"
            return f"{type(action).__name__}({kind})"
        case GiveUp(reason):
            return f"GiveUp({reason})"
    return type(action).__name__


def init(p: Params, s: Client) -> z3.BoolRef:
    """``RetryBackoff.init_states``, abstracted."""
    return z3.And(
        s.now == 0,
        s.is_(IDLE),
        s.attempts == 0,
        s.timer == 0,
        s.reply == REPLIES.index(NONE),
        s.reason == 0,
        s.older == 0,
        z3.Not(s.current_unprocessed),
        s.applied == 0,
        z3.Not(s.key_recorded),
        s.retries == 0,
        s.last == p.base,
        s.sleeps_ok,
    )


# ------------------------------------------------------------------ invariant


@attrs.frozen
class Conjunct:
    name: str
    statement: str
    formula: Callable[[Params, Client], z3.BoolRef] = attrs.field(eq=False)


def _counters(p: Params, s: Client) -> z3.BoolRef:
    return z3.And(
        s.now >= 0,
        s.attempts >= 0,
        s.older >= 0,
        s.applied >= 0,
        s.retries >= 0,
        s.phase >= 0,
        s.phase < len(PHASES),
        z3.Implies(
            s.is_(IDLE),
            z3.And(
                s.now == 0,
                s.attempts == 0,
                s.older == 0,
                z3.Not(s.current_unprocessed),
                s.applied == 0,
                z3.Not(s.key_recorded),
                s.last == p.base,
            ),
        ),
        s.last >= 0,
        z3.Implies(s.retries == 0, s.last == p.base),
        s.retries == s.attempts - z3.If(z3.Or(s.is_(IDLE), s.is_(SLEEPING)), 0, 1),
        s.applied + s.older + z3.If(s.current_unprocessed, 1, 0) <= s.attempts,
        z3.Implies(s.is_(CALLING), z3.And(s.timer - p.timeout <= s.now, s.now <= s.timer)),
    )


CONJUNCTS = (
    Conjunct(
        "Counters",
        "idle at the start; retries = attempts (sleeping) or attempts − 1; applied + unprocessed ≤ attempts",
        _counters,
    ),
    Conjunct(
        "DeadlineKept",
        "now ≤ deadline; calling: timer ≤ deadline; sleeping: timer + attempt_timeout ≤ deadline",
        lambda p, s: z3.And(
            s.now <= p.deadline,
            z3.Implies(s.is_(CALLING), s.timer <= p.deadline),
            z3.Implies(s.is_(SLEEPING), s.timer + p.timeout <= p.deadline),
        ),
    ),
    Conjunct(
        "BudgetKept",
        "attempts ≤ max_attempts, and < max_attempts while sleeping",
        lambda p, s: z3.And(s.attempts <= p.max_attempts, z3.Implies(s.is_(SLEEPING), s.attempts < p.max_attempts)),
    ),
    Conjunct(
        "AppliedOnce",
        "keyed: applied ≤ 1, and 0 until the key is recorded; keyless and not idempotent: no sleep, one attempt",
        lambda p, s: z3.And(
            z3.Implies(p.keyed, s.applied <= z3.If(s.key_recorded, 1, 0)),
            z3.Implies(
                z3.And(z3.Not(p.keyed), z3.Not(p.idempotent)),
                z3.And(z3.Not(s.is_(SLEEPING)), s.attempts <= 1),
            ),
        ),
    ),
    Conjunct("SleepsInRange", "every sleep so far lies in its jitter's range", lambda p, s: s.sleeps_ok),
)

#: the spec's invariants, over the abstracted client
PROPERTIES = (
    Conjunct("WithinDeadline", "the elapsed time never exceeds the deadline", lambda p, s: s.now <= p.deadline),
    Conjunct(
        "WithinBudget", "the client makes at most max_attempts attempts", lambda p, s: s.attempts <= p.max_attempts
    ),
    Conjunct(
        "RetriesAreSafe",
        "a call that is not idempotent is applied at most once",
        lambda p, s: z3.Or(p.idempotent, s.applied <= 1),
    ),
    Conjunct("SleepInRange", "each sleep lies in its jitter's range, and so at most cap", lambda p, s: s.sleeps_ok),
)


def retry_inv(p: Params, s: Client) -> z3.BoolRef:
    return z3.And(*[c.formula(p, s) for c in CONJUNCTS])


# ------------------------------------------------------------------ obligations


def _value(model: z3.ModelRef, term: z3.ExprRef) -> int | bool:
    value = model.eval(term, model_completion=True)
    if z3.is_true(value) or z3.is_false(value):
        return bool(z3.is_true(value))
    assert isinstance(value, z3.IntNumRef)
    return int(value.as_long())


def _params_values(model: z3.ModelRef, p: Params) -> dict[str, Any]:
    values: dict[str, Any] = {
        name: _value(model, getattr(p, attr))
        for name, attr in (
            ("base", "base"),
            ("cap", "cap"),
            ("deadline", "deadline"),
            ("attempt_timeout", "timeout"),
            ("max_attempts", "max_attempts"),
            ("idempotent", "idempotent"),
            ("idempotency_key", "keyed"),
        )
    }
    values["jitter"] = JITTERS[int(_value(model, p.jitter))]
    return values


def _client_values(model: z3.ModelRef, s: Client) -> dict[str, Any]:
    values: dict[str, Any] = {n: _value(model, t) for n, t in s.terms().items()}
    values["phase"] = PHASES[int(values["phase"])] if 0 <= int(values["phase"]) < len(PHASES) else values["phase"]
    values["reply"] = REPLIES[int(values["reply"])] if 0 <= int(values["reply"]) < len(REPLIES) else values["reply"]
    values["reason"] = (
        GIVE_UP_REASONS[int(values["reason"])]
        if 0 <= int(values["reason"]) < len(GIVE_UP_REASONS)
        else values["reason"]
    )
    return values


def _line(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} = {'–' if v == '' else v}" for k, v in values.items())


def _small(p: Params, s: Client) -> list[z3.BoolRef]:
    """Soft constraints: small numbers and a client near its start keep a counterexample readable."""
    return [p.base == 1, p.cap <= 4, p.deadline <= 8, p.max_attempts <= 3, s.now <= 2, s.attempts <= 2]


def _domains(s: Client) -> list[z3.BoolRef]:
    """The enumerations hold one of their values."""
    return [
        s.phase >= 0,
        s.phase < len(PHASES),
        s.reply >= 0,
        s.reply < len(REPLIES),
        s.reason >= 0,
        s.reason < len(GIVE_UP_REASONS),
    ]


#: prints a model of a lemma's negation, and gives what to add to its data
Describe = Callable[[z3.ModelRef], tuple[str, dict[str, Any]]]


def _prove(
    bounds: Mapping[str, int],
    build: Callable[[Params, Client], tuple[list[z3.BoolRef], z3.BoolRef, Describe]],
    timeout: float,
    label: str,
) -> Verdict:
    """Ask z3 for parameters in range and a client where ``build``'s hypotheses hold
    and its claim does not; ``build`` also says how to print such a model, and
    ``label`` what the client is."""
    p, s = Params.fresh(), Client.fresh()
    hypotheses, claim, describe = build(p, s)
    constraints = [*p.in_range(bounds), *_domains(s), *hypotheses, z3.Not(claim)]
    status, model, reason = find_model(constraints, prefer=_small(p, s), timeout=timeout)
    if status == "unsat":
        return Verdict(PROVED)
    if model is None:
        return Verdict(UNKNOWN, detail=f"z3 gave up: {reason or 'unknown'}")
    params, client = _params_values(model, p), _client_values(model, s)
    described, extra = describe(model)
    text = f"parameters: {_line(params)}\n{label}: {_line(client)}\n{described}"
    data = {"params": params, "state": client, **extra}
    return Verdict(FAILED, Counterexample(text, data, dict(data)))


def obligations(
    params: Mapping[str, int], *, timeout: float = DEFAULT_TIMEOUT_SECONDS, broken: str | None = None
) -> list[Obligation]:
    if broken == "sleep_above_cap" and params["max_deadline"] > MAX_UNROLLED_DEADLINE:
        raise UsageError(
            f"retry: sleep_above_cap unrolls its uncapped exponential once per deadline; "
            f"give -p max_deadline={MAX_UNROLLED_DEADLINE} or less"
        )
    unrolled = Bounds.of(params)

    def initiation(p: Params, s: Client) -> tuple[list[z3.BoolRef], z3.BoolRef, Describe]:
        def describe(model: z3.ModelRef) -> tuple[str, dict[str, Any]]:
            failing = [c.name for c in CONJUNCTS if not z3.is_true(model.eval(c.formula(p, s), model_completion=True))]
            return f"the initial state breaks {', '.join(failing)}", {"failing": failing}

        return [init(p, s)], retry_inv(p, s), describe

    def step(conjunct: Conjunct) -> Callable[..., tuple[list[z3.BoolRef], z3.BoolRef, Describe]]:
        def build(p: Params, s: Client) -> tuple[list[z3.BoolRef], z3.BoolRef, Describe]:
            sleep = z3.Int("sleep")
            steps = rules(p, s, sleep, unrolled, broken)
            taken = {name: z3.Bool(f"takes {name}") for name in steps}
            hypotheses = [retry_inv(p, s), z3.Or(*taken.values())]
            hypotheses += [z3.Implies(taken[name], st.guard) for name, st in steps.items()]
            claim = z3.And(*[z3.Implies(taken[name], conjunct.formula(p, st.after)) for name, st in steps.items()])

            def describe(model: z3.ModelRef) -> tuple[str, dict[str, Any]]:
                name = next(
                    n
                    for n, st in steps.items()
                    if z3.is_true(model.eval(taken[n], model_completion=True))
                    and not z3.is_true(model.eval(conjunct.formula(p, st.after), model_completion=True))
                )
                drawn = _value(model, sleep) if name == "Retry" else None
                action = f"Retry(sleep={drawn})" if name == "Retry" else name
                after = _client_values(model, steps[name].after)
                text = f"step: {action}\nafter: {_line(after)}\nfails: {conjunct.name}: {conjunct.statement}"
                return text, {"step": name, "sleep": drawn, "after": after, "failing": [conjunct.name]}

            return hypotheses, claim, describe

        return build

    def safety(prop: Conjunct) -> Callable[..., tuple[list[z3.BoolRef], z3.BoolRef, Describe]]:
        def build(p: Params, s: Client) -> tuple[list[z3.BoolRef], z3.BoolRef, Describe]:
            return (
                [retry_inv(p, s)],
                prop.formula(p, s),
                lambda model: (f"fails: {prop.name}: {prop.statement}", {"failing": [prop.name]}),
            )

        return build

    def lemma(build: Any, label: str = "a state satisfying RetryInv") -> Callable[[], Verdict]:
        return functools.partial(_prove, params, build, timeout, label)

    ranges = (
        f"1 ≤ base ≤ {params['max_base']}, base ≤ cap ≤ {params['max_cap']}, "
        f"1 ≤ attempt_timeout ≤ {params['max_timeout']}, attempt_timeout ≤ deadline ≤ {params['max_deadline']}, "
        f"1 ≤ max_attempts ≤ {params['max_attempts']}, every jitter"
    )
    return [
        Obligation("Initiation", f"Init ⇒ RetryInv, for {ranges}", lemma(initiation, "the initial state")),
        *(
            Obligation(f"Step({c.name})", f"RetryInv ∧ any rule's step ⇒ {c.name}′: {c.statement}", lemma(step(c)))
            for c in CONJUNCTS
        ),
        *(Obligation(f"Safety({prop.name})", f"RetryInv ⇒ {prop.name}", lemma(safety(prop))) for prop in PROPERTIES),
    ]


# ------------------------------------------------------ the rules against the spec


class _Term:
    """A term over the client's fields (and the draw), evaluated by z3 on concrete
    values (substitute, then simplify), remembered by the values of the fields it
    reads: guards read a few fields, so most states hit the memo."""

    def __init__(self, term: z3.ExprRef, variables: Mapping[str, z3.ExprRef]) -> None:
        self.term = term
        names = {v.get_id(): n for n, v in variables.items()}
        self.inputs = [(names[v.get_id()], v) for v in free_variables(term)]
        self.memo: dict[tuple[int | bool, ...], int | bool] = {}

    def __call__(self, values: Mapping[str, int | bool]) -> int | bool:
        key = tuple(values[name] for name, _ in self.inputs)
        if key not in self.memo:
            pairs = [(v, z3.BoolVal(values[n]) if z3.is_bool(v) else z3.IntVal(values[n])) for n, v in self.inputs]
            value = z3.simplify(z3.substitute(self.term, *pairs) if pairs else self.term)
            if z3.is_true(value) or z3.is_false(value):
                self.memo[key] = bool(z3.is_true(value))
            else:
                assert isinstance(value, z3.IntNumRef), f"not a constant: {value}"
                self.memo[key] = int(value.as_long())
        return self.memo[key]


class RuleChecker:
    """The rules' formulas for one spec's parameters and variant, compiled once, to
    compare with the spec's steps (``mismatch``)."""

    def __init__(self, spec: RetryBackoff) -> None:
        self.spec = spec
        s, sleep = Client.fresh("·"), z3.Int("sleep·")
        variables = {**s.terms(), "sleep": sleep}
        steps = rules(Params.of(spec), s, sleep, _concrete_bounds(spec), spec.config.variant)
        self.steps = {
            name: (_Term(st.guard, variables), [_Term(term, variables) for term in st.after.terms().values()])
            for name, st in steps.items()
        }
        self.draws = range(0, spec.config.deadline + 2)  # a draw past the deadline never fits

    def mismatch(self, state: RetryState, successors: Sequence[tuple[RetryAction, RetryState]]) -> str | None:
        """Whether the rules' formulas, evaluated by z3 on ``state``'s abstraction,
        take exactly the spec's steps ``successors`` from ``state`` (None), or how
        they differ: every spec step is the step of its rule with its guard true and
        the same abstracted successor, and every rule (each draw, for Retry) whose
        guard is true is a spec step."""
        spec = self.spec
        spec_steps = {
            (rule_key(state, a), a.sleep if isinstance(a, Retry) else None, _key(spec, t)) for a, t in successors
        }
        values: dict[str, int | bool] = dict(abstract(spec, state))
        z3_steps = set()
        for name, (guard, after) in self.steps.items():
            for sleep in self.draws if name == "Retry" else (0,):
                values["sleep"] = sleep
                if guard(values):
                    z3_steps.add((name, sleep if name == "Retry" else None, tuple(term(values) for term in after)))
        if spec_steps != z3_steps:
            missing, extra = sorted(spec_steps - z3_steps, key=str), sorted(z3_steps - spec_steps, key=str)
            return f"spec steps the formulas do not take: {missing[:3]}; formula steps the spec does not: {extra[:3]}"
        return None


def _concrete_bounds(spec: RetryBackoff) -> Bounds:
    c = spec.config
    return Bounds.of(
        {
            "max_base": c.base,
            "max_cap": c.cap,
            "max_deadline": c.deadline,
            "max_timeout": c.attempt_timeout,
            "max_attempts": c.max_attempts,
        }
    )


def _key(spec: RetryBackoff, state: RetryState) -> tuple[int | bool, ...]:
    values = abstract(spec, state)
    return tuple(values[n] for n in CLIENT_FIELDS)
