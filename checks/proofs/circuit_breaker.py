"""The circuit breaker (``spec/circuit_breaker.py``) in z3: the inductive invariant
that bounds the half-open probes (ProbesBounded) and keeps calls out while the
breaker is open (NoCallWhileOpen, RestartKeepsOpen).

Where it sits: the one module in ``checks/`` that knows the circuit breaker's
state; it subclasses ``checks.proofs.system.Encoding`` and is registered in
``checks.proofs.registry``, so ``distcheck prove circuit_breaker`` cross-checks it
against the executable spec and then discharges the obligations.

**An abstraction that forgets generation numbers.**  The spec counts the
breaker's changes of mode (``generation``) and a call in flight remembers the
generation that admitted it, but nothing reads a generation except to compare a
call's with the current one.  So each caller's call is one of ``idle``,
``call``, ``probe`` (admitted in the current generation) or ``stale call``,
``stale probe`` (admitted before the last change of mode); a change of mode turns
every call in flight stale.  Every other variable is kept as it is: the clock
``now``, ``mode``, the closed ``window``, ``opened_at``, ``cause``, the durable
record (``stored_mode``, ``stored_opened_at``) and ``restarts``.  The abstract
steps are the spec's own actions (Tick, Call, Reject, Report, Restart), each the
spec's rule on the abstraction, so the cross-check checks both directions: each
spec step is the z3 step of the same action, and each action z3 enables is one
the spec takes, to the same abstract successor.  The abstract instance has no
generation bound, so the proof covers every generation the spec reaches.

**The inductive invariant BreakerInv**:

- **ProbesBounded** (the spec's invariant): at most ``probes`` calls are
  probes of the current generation.  Half-open admits a probe only while fewer
  are in flight; the call that turns an open breaker half-open changes the
  generation, so every older probe is stale and it is the only current one.
- **WaitedSinceOpened**: a breaker that is not open has waited out its timeout
  since it last opened (``opened_at < 0`` or ``now ≥ opened_at + open_timeout``).
  It leaves open only by a call after the timeout, and reopening sets
  ``opened_at`` to now; time only grows.
- **OpenedInPast**: opened_at ≤ now, and a breaker that is not closed has opened.
- **CallsMatchMode**: the current generation's calls in flight are calls when
  closed, probes when half-open, none when open (each change of mode turns
  them stale).
- **RecordIsCurrent**: the durable record holds the breaker's mode and opening
  time: every change of mode writes it, and a restart reloads it.
- **CauseMatchesMode** and **WindowWhenClosed**: the cause of the mode is one
  that leads to it, at a time it can (a reopening after a timeout has passed),
  and only a closed breaker has outcomes in its window.  The argument does not
  need these two (the tests drop each conjunct in turn); they keep z3's
  counterexamples to induction reachable, so that a variant's failure is shown
  from a state the spec reaches.

``ProbesBounded`` is a state invariant (``Safety``); NoCallWhileOpen and
RestartKeepsOpen are properties of every step, proved by the step obligations
``Step(P)``: BreakerInv ∧ Next ⇒ P(s, s′).  A call admitted from a closed
or half-open breaker is after the timeout by WaitedSinceOpened, from an open one
by its guard; a restart reloads the record, which is the mode by
RecordIsCurrent.  With ``unbounded_probes`` Consecution fails at a half-open
Call (ProbesBounded); with ``racing_reset`` a stale success report closes a
breaker that has just opened (WaitedSinceOpened), and a call then breaks
NoCallWhileOpen; with ``restart_closes`` a restart forgets the record
(WaitedSinceOpened, RecordIsCurrent) and breaks RestartKeepsOpen.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import attrs
import z3

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
from distcheck.checks.proofs.system import (
    Candidate,
    Encoding,
    Field,
    Predicate,
    SymState,
    Transition,
    bool_value,
)
from distcheck.checks.traces.render import changes, show, state_table
from distcheck.spec.circuit_breaker import (
    CALL,
    CAUSES,
    CLOSED,
    FAILURE,
    HALF_OPEN,
    MODES,
    OPEN,
    OUTCOMES,
    PROBE,
    RESTART,
    START,
    SUCCESS,
    TIMEOUT,
    WINDOW,
    BreakerAction,
    BreakerState,
    Call,
    CircuitBreaker,
    InFlight,
    Record,
    Reject,
    Report,
    Restart,
    Tick,
)
from distcheck.spec.codec import to_json
from distcheck.spec.values import FrozenMap

IDLE, STALE_CALL, STALE_PROBE = "idle", "stale call", "stale probe"
#: what a caller's call in flight is, in the abstraction
CALL_STATES = (IDLE, CALL, PROBE, STALE_CALL, STALE_PROBE)
STALE = {CALL: STALE_CALL, PROBE: STALE_PROBE}


#: the causes that can put the breaker in each mode
CAUSES_OF = {
    CLOSED: (START, SUCCESS, RESTART),
    OPEN: (WINDOW, FAILURE, RESTART),
    HALF_OPEN: (TIMEOUT, RESTART),
}


def call_field(caller: str) -> str:
    return f"call[{caller}]"


class BreakerEncoding(Encoding[BreakerState, BreakerAction]):
    abstraction = True

    def __init__(self, spec: CircuitBreaker) -> None:
        super().__init__(spec)
        self.breaker = spec
        self.config = spec.config
        self.variant = spec.config.variant
        self.callers = spec.callers
        w = self.config.window
        self.windows: tuple[tuple[str, ...], ...] = tuple(
            window for size in range(w + 1) for window in itertools.product(OUTCOMES, repeat=size)
        )

    # ------------------------------------------------------------------ state

    def state_fields(self) -> Sequence[Field]:
        c = self.config
        times = tuple(range(c.max_time + 1))
        return [
            Field("now", times),
            Field("mode", MODES),
            Field("window", self.windows),
            Field("opened_at", (-1, *times)),
            Field("cause", CAUSES),
            *(Field(call_field(caller), CALL_STATES) for caller in self.callers),
            Field("stored_mode", MODES),
            Field("stored_opened_at", (-1, *times)),
            Field("restarts", tuple(range(c.restarts + 1))),
        ]

    def values(self, state: BreakerState) -> Mapping[str, Hashable]:
        def abstract(flight: InFlight | None) -> str:
            if flight is None:
                return IDLE
            return flight.kind if flight.generation == state.generation else STALE[flight.kind]

        return {
            "now": state.now,
            "mode": state.mode,
            "window": state.window,
            "opened_at": state.opened_at,
            "cause": state.cause,
            **{call_field(c): abstract(state.calls[c]) for c in self.callers},
            "stored_mode": state.stored.mode,
            "stored_opened_at": state.stored.opened_at,
            "restarts": state.restarts,
        }

    def state(self, values: Mapping[str, Hashable]) -> BreakerState:
        """A spec state with the abstraction ``values``: generation 1, current calls
        of generation 1 and stale ones of generation 0."""

        def flight(value: Hashable) -> InFlight | None:
            if value == IDLE:
                return None
            if value in (CALL, PROBE):
                return InFlight(str(value), 1)
            return InFlight(CALL if value == STALE_CALL else PROBE, 0)

        def number(name: str) -> int:
            value = values[name]
            assert isinstance(value, int)
            return value

        window = values["window"]
        assert isinstance(window, tuple)
        return BreakerState(
            now=number("now"),
            mode=str(values["mode"]),
            window=window,
            opened_at=number("opened_at"),
            generation=1,
            cause=str(values["cause"]),
            calls=FrozenMap({c: flight(values[call_field(c)]) for c in self.callers}),
            stored=Record(str(values["stored_mode"]), number("stored_opened_at")),
            restarts=number("restarts"),
        )

    def init(self, s: SymState) -> z3.BoolRef:
        return s.equals(self.values(next(iter(self.breaker.init_states()))))

    # ---------------------------------------------------------------- actions

    def actions(self) -> Sequence[BreakerAction]:
        out: list[BreakerAction] = [Tick()]
        for caller in self.callers:
            out += [Call(caller), Reject(caller)]
            out += [Report(caller, outcome) for outcome in OUTCOMES]
        out.append(Restart())
        return out

    def probes_in_flight(self, s: SymState) -> z3.ArithRef:
        return z3.Sum(*[z3.If(s.is_(call_field(c), PROBE), 1, 0) for c in self.callers])

    def admits(self, s: SymState) -> z3.BoolRef:
        """``CircuitBreaker.admits``, with the variant's ``may_probe``."""
        may_probe = (
            z3.BoolVal(True) if self.variant == "unbounded_probes" else self.probes_in_flight(s) < self.config.probes
        )
        return z3.Or(
            s.is_("mode", CLOSED),
            z3.And(s.is_("mode", OPEN), self.timed_out(s)),
            z3.And(s.is_("mode", HALF_OPEN), may_probe),
        )

    def timed_out(self, s: SymState) -> z3.BoolRef:
        return self.number(s, "now") >= self.number(s, "opened_at") + self.config.open_timeout

    def number(self, s: SymState, name: str) -> z3.ArithRef:
        """The value of an integer field: its domain is a run of consecutive
        integers, so the value is its index plus the first."""
        return s[name] + self.first(s, name)

    def index_of(self, s: SymState, name: str, value: z3.ArithRef) -> z3.ArithRef:
        """The index that stands for the integer term ``value`` in field ``name``
        (past the domain's ends it leaves the domain, which Consecution reports)."""
        return value - self.first(s, name)

    @staticmethod
    def first(s: SymState, name: str) -> int:
        first = s.fields[name].domain[0]
        assert isinstance(first, int)
        return first

    def change(
        self, s: SymState, mode: str, cause: str, *, opened_at: z3.ArithRef | None = None
    ) -> dict[str, Hashable | z3.ExprRef]:
        """``CircuitBreaker.change``: a new generation (every call in flight stale),
        an empty window, and the durable record written."""
        opened = s["opened_at"] if opened_at is None else self.index_of(s, "opened_at", opened_at)
        updates: dict[str, Hashable | z3.ExprRef] = {
            "mode": mode,
            "window": (),
            "cause": cause,
            "stored_mode": mode,
            "stored_opened_at": opened,
        }
        if opened_at is not None:
            updates["opened_at"] = opened
        for c in self.callers:
            name = call_field(c)
            updates[name] = _select_value(
                s,
                name,
                [(CALL, STALE_CALL), (PROBE, STALE_PROBE)],
            )
        return updates

    def transition(self, action: BreakerAction, s: SymState) -> Transition:
        match action:
            case Tick():
                return Transition(
                    self.number(s, "now") < self.config.max_time,
                    {"now": self.index_of(s, "now", self.number(s, "now") + 1)},
                )
            case Call(caller):
                idle = s.is_(call_field(caller), IDLE)
                from_open = self.change(s, HALF_OPEN, TIMEOUT)
                from_open[call_field(caller)] = PROBE
                kind = z3.If(s.is_("mode", CLOSED), s.term(call_field(caller), CALL), s.term(call_field(caller), PROBE))
                return Transition(
                    z3.And(idle, self.admits(s)),
                    _merge(s, s.is_("mode", OPEN), from_open, {call_field(caller): kind}),
                )
            case Reject(caller):
                return Transition(z3.And(s.is_(call_field(caller), IDLE), z3.Not(self.admits(s))))
            case Report(caller, outcome):
                return Transition(z3.Not(s.is_(call_field(caller), IDLE)), self.on_report(s, caller, outcome))
            case Restart():
                updates: dict[str, Hashable | z3.ExprRef] = {
                    **{call_field(c): IDLE for c in self.callers},
                    "window": (),
                    "cause": RESTART,
                    "restarts": s["restarts"] + 1,
                }
                if self.variant == "restart_closes":
                    updates["mode"] = CLOSED
                else:
                    updates["mode"] = s["stored_mode"]
                    updates["opened_at"] = s["stored_opened_at"]
                return Transition(self.number(s, "restarts") < self.config.restarts, updates)
        raise ValueError(f"not a circuit breaker action: {action!r}")

    def on_report(self, s: SymState, caller: str, outcome: str) -> dict[str, Hashable | z3.ExprRef]:
        """The report's effect: ``CircuitBreaker.on_report`` (or the variant's) after
        the caller's call has ended."""
        name = call_field(caller)
        ended: dict[str, Hashable | z3.ExprRef] = {name: IDLE}
        current = s.is_in(name, (CALL, PROBE))
        now = self.number(s, "now")

        def changed(mode: str, cause: str, opened_at: z3.ArithRef | None = None) -> dict[str, Hashable | z3.ExprRef]:
            updates = self.change(s, mode, cause, opened_at=opened_at)
            updates[name] = IDLE
            return updates

        if outcome == SUCCESS:
            half_open = changed(CLOSED, SUCCESS)
        else:
            half_open = changed(OPEN, FAILURE, now)
        # closed (or open): the window takes the outcome, and opens at the threshold
        appended = {w: (*w, outcome)[-self.config.window :] for w in self.windows}
        opens = [w for w, a in appended.items() if a.count(FAILURE) >= self.config.threshold]
        window_term = _select_value(s, "window", list(appended.items()))
        windowed = {name: IDLE, "window": window_term}
        counted = _merge(s, s.is_in("window", opens), changed(OPEN, WINDOW, now), windowed)
        reference = _merge(s, z3.Not(current), ended, _merge(s, s.is_("mode", HALF_OPEN), half_open, counted))
        if self.variant == "racing_reset" and outcome == SUCCESS:
            return _merge(s, z3.Not(s.is_("mode", CLOSED)), changed(CLOSED, SUCCESS), reference)
        return reference

    def simulate(self, state: BreakerState, action: Any, after: BreakerState) -> Sequence[BreakerAction]:
        return [action]

    # ------------------------------------------------------------- invariants

    def properties(self) -> Sequence[Predicate]:
        return (
            Predicate(
                "ProbesBounded",
                "in half-open, at most `probes` probes are in flight",
                lambda s: self.probes_in_flight(s) <= self.config.probes,
            ),
        )

    def waited(self, s: SymState) -> z3.BoolRef:
        opened = self.number(s, "opened_at")
        return z3.Or(opened < 0, self.number(s, "now") >= opened + self.config.open_timeout)

    def candidates(self) -> Sequence[Candidate]:
        conjuncts = (
            *self.properties(),
            Predicate(
                "WaitedSinceOpened",
                "a breaker that is not open has waited open_timeout ticks since it last opened",
                lambda s: z3.Implies(z3.Not(s.is_("mode", OPEN)), self.waited(s)),
            ),
            Predicate(
                "OpenedInPast",
                "the breaker last opened at or before now, and one that is not closed has opened",
                lambda s: z3.And(
                    self.number(s, "opened_at") <= self.number(s, "now"),
                    z3.Implies(z3.Not(s.is_("mode", CLOSED)), self.number(s, "opened_at") >= 0),
                ),
            ),
            Predicate(
                "CallsMatchMode",
                "the current generation's calls in flight are calls when closed, probes when half-open, none when open",
                lambda s: z3.And(
                    *[
                        z3.And(
                            z3.Implies(s.is_(call_field(c), CALL), s.is_("mode", CLOSED)),
                            z3.Implies(s.is_(call_field(c), PROBE), s.is_("mode", HALF_OPEN)),
                        )
                        for c in self.callers
                    ]
                ),
            ),
            Predicate(
                "CauseMatchesMode",
                "the cause of the mode is one that leads to it, at a time it can: a reopening after a timeout, ...",
                lambda s: z3.And(
                    *[z3.Implies(s.is_("mode", mode), s.is_in("cause", causes)) for mode, causes in CAUSES_OF.items()],
                    z3.Implies(s.is_("cause", START), self.number(s, "opened_at") < 0),
                    z3.Implies(s.is_("cause", RESTART), self.number(s, "restarts") > 0),
                    z3.Implies(s.is_in("cause", (TIMEOUT, SUCCESS)), self.number(s, "opened_at") >= 0),
                    z3.Implies(s.is_("cause", FAILURE), self.number(s, "opened_at") >= self.config.open_timeout),
                ),
            ),
            Predicate(
                "WindowWhenClosed",
                "only a closed breaker has outcomes in its window",
                lambda s: z3.Implies(z3.Not(s.is_("mode", CLOSED)), s.is_("window", ())),
            ),
            Predicate(
                "RecordIsCurrent",
                "the durable record holds the breaker's mode and opening time",
                lambda s: z3.And(s["stored_mode"] == s["mode"], s["stored_opened_at"] == s["opened_at"]),
            ),
        )
        return (
            Candidate(
                "BreakerInv", "the breaker's inductive invariant (see checks/proofs/circuit_breaker.py)", conjuncts
            ),
            Candidate("ProbesBounded", "ProbesBounded alone", tuple(self.properties())),
        )

    # ---------------------------------------------------------- step properties

    def step_properties(self) -> Sequence[StepFormula]:
        """The spec's step properties as formulas over a step s → t."""

        def no_call_while_open(s: SymState, t: SymState) -> z3.BoolRef:
            admitted = z3.Or(
                *[z3.And(s.is_(call_field(c), IDLE), z3.Not(t.is_(call_field(c), IDLE))) for c in self.callers]
            )
            opened = self.number(s, "opened_at")
            return z3.Or(z3.Not(admitted), opened < 0, self.number(t, "now") >= opened + self.config.open_timeout)

        def restart_keeps_open(s: SymState, t: SymState) -> z3.BoolRef:
            return z3.Or(
                t["restarts"] == s["restarts"],
                z3.Not(s.is_("mode", OPEN)),
                z3.And(t.is_("mode", OPEN), t["opened_at"] == s["opened_at"]),
            )

        return (
            StepFormula(
                "NoCallWhileOpen",
                "no call is admitted before open_timeout ticks have passed since the breaker last opened",
                no_call_while_open,
            ),
            StepFormula(
                "RestartKeepsOpen",
                "a restart leaves an open breaker open, with the same opening time",
                restart_keeps_open,
            ),
        )


@attrs.frozen
class StepFormula:
    """A step property in z3: a formula over the state before and after a step."""

    name: str
    statement: str
    formula: Callable[[SymState, SymState], z3.BoolRef] = attrs.field(eq=False)


def _select_value(s: SymState, name: str, mapping: Sequence[tuple[Hashable, Hashable]]) -> z3.ExprRef:
    """Field ``name`` mapped through ``mapping`` (value → new value), other values kept."""
    out: z3.ExprRef = s[name]
    for before, after in mapping:
        out = z3.If(s.is_(name, before), s.term(name, after), out)
    return out


def _merge(
    s: SymState,
    condition: z3.BoolRef,
    then: Mapping[str, Hashable | z3.ExprRef],
    otherwise: Mapping[str, Hashable | z3.ExprRef],
) -> dict[str, Hashable | z3.ExprRef]:
    """The updates ``then`` where ``condition`` holds, else ``otherwise`` (a field
    only one of them updates keeps its value on the other side)."""

    def term(updates: Mapping[str, Hashable | z3.ExprRef], name: str) -> z3.ExprRef:
        value = updates.get(name, s[name])
        return value if isinstance(value, z3.ExprRef) else s.term(name, value)

    return {
        name: z3.If(condition, term(then, name), term(otherwise, name)) for name in dict.fromkeys([*then, *otherwise])
    }


# ---------------------------------------------------------------- step safety


def step_obligations(spec: CircuitBreaker, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> list[Obligation]:
    """BreakerInv ∧ Next ⇒ P(s, s′) for each step property P of the spec (the
    induction that follows proves BreakerInv holds in every reachable state)."""
    encoding = BreakerEncoding(spec)
    candidate = encoding.candidates()[0]
    return [
        Obligation(
            f"Step({prop.name})",
            f"{candidate.name} ∧ Next ⇒ {prop.name}(s, s′)",
            lambda prop=prop: step_safety(encoding, candidate, prop, timeout),  # type: ignore[misc]
        )
        for prop in encoding.step_properties()
    ]


def step_safety(encoding: BreakerEncoding, candidate: Candidate, prop: StepFormula, timeout: float) -> Verdict:
    """``candidate`` ∧ Next ⇒ ``prop``(s, s′): proved, or the step nearest the
    initial state that breaks it, from a state satisfying ``candidate``."""
    s, t = encoding.symbolic(), encoding.symbolic("′")
    constraints = [s.typed(), candidate.formula(s), encoding.next_relation(s, t), z3.Not(prop.formula(s, t))]
    first = encoding.values(next(iter(encoding.spec.init_states())))
    prefer = [s.is_(name, value) for name, value in first.items()]
    status, model, reason = find_model(constraints, prefer=prefer, timeout=timeout)
    if status == "unsat":
        return Verdict(PROVED)
    if model is None:
        return Verdict(UNKNOWN, detail=f"z3 gave up: {reason or 'unknown'}")
    action = next(
        a for a in encoding.actions() if bool_value(model.eval(encoding.relation(a, s, t), model_completion=True))
    )
    before, after = encoding.state(s.read(model)), encoding.state(t.read(model))
    lines = [
        f"a step from a state satisfying {candidate.name} that breaks {prop.name}:",
        "",
        "state before the step:",
        *("  " + line for line in state_table(before).splitlines()),
        f"step: {action.actor}  {show(action)}",
        *("  " + line for line in (changes(before, after) or ["(no change)"])),
        f"fails: {prop.name}: {prop.statement}",
    ]
    data = {"state": to_json(before), "action": to_json(action), "next_state": to_json(after), "failing": [prop.name]}
    return Verdict(
        FAILED, Counterexample("\n".join(lines), data, {"state": before, "action": action, "next_state": after})
    )
