"""A circuit breaker: closed, open and half-open, shared by callers that call at once.

Callers ``c1..cN`` (threads) call a service through one breaker.  Each call is
admitted or rejected by the breaker, then is in flight, then its caller reports
success or failure to the breaker.

- **Closed**: every call is admitted; the breaker keeps the outcomes of the last
  ``window`` calls, and opens when ``threshold`` of them are failures.
- **Open**: every call is rejected, until ``open_timeout`` ticks have passed since
  it opened; then the next call moves it to half-open and is its first probe.
- **Half-open**: at most ``probes`` calls (probes) are in flight at once, the rest
  are rejected; a probe's success closes the breaker, a probe's failure opens it
  again (the timeout starts over).

Reports race: a call admitted while the breaker was closed may report after it
opened.  The breaker counts each change of mode (its ``generation``) and a call
remembers the generation that admitted it, so a stale report (from an earlier
generation) changes nothing.  The breaker keeps its mode and when it opened
durably, written at every change of mode; a restart of the process ends the calls
in flight and reloads the breaker from that record, so an open breaker stays open
for the rest of its timeout.

Sources: M. Nygard, "Release It!" (2007; the pattern); M. Fowler, "CircuitBreaker"
(2014); the behaviour of resilience4j's CircuitBreaker (count-based sliding window,
failure threshold, wait duration in open state, permitted calls in half-open) and
of Polly's.

Abstractions.  Time is an integer ``now`` (0..``max_time``) with a Tick step; a
call takes any time.  The window counts failures, a rate with a fixed number of
calls.  The breaker moves from open to half-open lazily, at the first call after
the timeout, as most libraries do.  A rejection changes nothing but is a step, so
that a trace shows it.  Restarts are bounded (``restarts``).

State: ``now``; the breaker's ``mode``, ``window`` (closed: the last outcomes,
oldest first), ``opened_at`` (when it last opened; -1: never), ``generation`` and
``cause`` (what put it in its mode: start, window (its failures), timeout,
success, failure (a report), restart); each caller's call in flight (``calls``: its kind, call or probe, and the
generation that admitted it), ``stored``, the durable record (mode and opening
time), and ``restarts`` so far.

Actions
    Tick                    The clock advances one tick (up to ``max_time``).
    Call(caller)            The breaker admits an idle caller's call: closed, as a call; open after its
                            timeout, as the first probe (it turns half-open); half-open, as a probe if fewer
                            than ``probes`` are in flight.
    Reject(caller)          The breaker rejects an idle caller's call: open before its timeout, or half-open
                            with ``probes`` probes in flight.
    Report(caller, outcome) A call in flight ends and its caller reports ``success`` or ``failure``; a report
                            from an earlier generation changes nothing.
    Restart                 The process restarts: calls in flight end, the breaker reloads its durable record.

Invariants
    TypeOK          every variable holds a value of its type.
    ProbesBounded   in half-open, at most ``probes`` probes are in flight.

Step properties (of every step)
    NoCallWhileOpen     no call is admitted before ``open_timeout`` ticks have passed since the breaker last opened.
    RestartKeepsOpen    a restart leaves an open breaker open, with the same opening time.

Reachable
    Opened              the breaker opened.
    ProbeClosed         a half-open probe succeeded and the breaker closed.
    ProbeReopened       a half-open probe failed and the breaker opened again.

Variants, each caught
    unbounded_probes    half-open admits every call as a probe                      ProbesBounded
    racing_reset        a success report closes the breaker, however stale           NoCallWhileOpen
    restart_closes      the breaker is kept only in memory: a restart closes it      RestartKeepsOpen
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from distcheck.spec.contract import Action, Exists, Invariant, Next, Reachable, Spec, StepProperty, param, rule, variant
from distcheck.spec.values import FrozenMap

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
MODES = (CLOSED, OPEN, HALF_OPEN)
SUCCESS, FAILURE = "success", "failure"
OUTCOMES = (SUCCESS, FAILURE)
CALL, PROBE = "call", "probe"
# What put the breaker in its mode: a success or failure report, the window's failures, ...
START, WINDOW, TIMEOUT, RESTART = "start", "window", "timeout", "restart"
CAUSES = (START, WINDOW, TIMEOUT, SUCCESS, FAILURE, RESTART)

# ----------------------------------------------------------------------- values


@attrs.frozen
class InFlight:
    """A call in flight: admitted as a call (closed) or a probe (half-open), by the
    breaker's ``generation`` then."""

    kind: str
    generation: int

    def __str__(self) -> str:
        return f"{self.kind}@{self.generation}"


@attrs.frozen
class Record:
    """What the breaker keeps durably: its mode and when it last opened."""

    mode: str
    opened_at: int

    def __str__(self) -> str:
        return f"{self.mode}@{self.opened_at}"


@attrs.frozen
class BreakerState:
    now: int
    mode: str
    window: tuple[str, ...]  # closed: the last outcomes, oldest first
    opened_at: int  # when the breaker last opened; -1: never
    generation: int  # changes of mode so far
    cause: str  # what put the breaker in its mode
    calls: FrozenMap[str, InFlight | None]  # each caller's call in flight, or None
    stored: Record  # the durable record
    restarts: int


# ---------------------------------------------------------------------- actions


class CallerAction(Action):
    __slots__ = ()
    ACTOR = "caller"


@attrs.frozen
class Tick(Action):
    ACTOR = "clock"


@attrs.frozen
class Call(CallerAction):
    caller: str


@attrs.frozen
class Reject(CallerAction):
    caller: str


@attrs.frozen
class Report(CallerAction):
    caller: str
    outcome: str


@attrs.frozen
class Restart(Action):
    ACTOR = "breaker"


BreakerAction = Tick | Call | Reject | Report | Restart


@attrs.frozen
class Config:
    callers: int = param(3, help="callers c1, c2, ... calling at once", minimum=1, maximum=4)
    window: int = param(2, help="closed: the outcomes of the last `window` calls are kept", minimum=1, maximum=5)
    threshold: int = param(2, help="closed: this many failures in the window open the breaker", minimum=1, maximum=5)
    open_timeout: int = param(
        2, help="ticks the breaker stays open before it lets a probe through", minimum=1, maximum=5
    )
    probes: int = param(1, help="half-open: probes in flight at most", minimum=1, maximum=4)
    max_time: int = param(4, help="bound: time runs 0..max_time", minimum=1, maximum=10)
    restarts: int = param(1, help="bound: restarts of the process", minimum=0, maximum=3)
    variant: str | None = None

    def __attrs_post_init__(self) -> None:
        for f in attrs.fields(Config):
            minimum, maximum = f.metadata.get("minimum"), f.metadata.get("maximum")
            value = getattr(self, f.name)
            if minimum is not None and not minimum <= value <= maximum:
                raise ValueError(f"{f.name} must be between {minimum} and {maximum}, got {value}")
        if self.threshold > self.window:
            raise ValueError(f"threshold ({self.threshold}) must be at most window ({self.window})")


# ------------------------------------------------------------------------- spec


class CircuitBreaker(Spec[BreakerState, BreakerAction]):
    name = "circuit_breaker"
    config: Config

    def __init__(self, config: Config = Config()) -> None:
        self.config = config
        self.callers = tuple(f"c{i}" for i in range(1, config.callers + 1))

    def init_states(self) -> Iterable[BreakerState]:
        yield BreakerState(
            now=0,
            mode=CLOSED,
            window=(),
            opened_at=-1,
            generation=0,
            cause=START,
            calls=FrozenMap({c: None for c in self.callers}),
            stored=Record(CLOSED, -1),
            restarts=0,
        )

    def next(self) -> Next:
        return (
            self.tick,
            Exists(
                "caller",
                self.callers,
                self.call,
                self.reject,
                Exists("outcome", OUTCOMES, self.report),
            ),
            self.restart,
        )

    # ------------------------------------------------------------ helpers

    def probes_in_flight(self, s: BreakerState) -> int:
        """Probes admitted in the breaker's current half-open period, still in flight."""
        return sum(1 for f in s.calls.values() if f is not None and f.kind == PROBE and f.generation == s.generation)

    def may_probe(self, s: BreakerState) -> bool:
        """Half-open lets another probe through while fewer than ``probes`` are in flight."""
        return self.probes_in_flight(s) < self.config.probes

    def timed_out(self, s: BreakerState) -> bool:
        return s.now >= s.opened_at + self.config.open_timeout

    def admits(self, s: BreakerState) -> bool:
        """The breaker lets a call through now."""
        if s.mode == CLOSED:
            return True
        if s.mode == OPEN:
            return self.timed_out(s)
        return self.may_probe(s)

    def change(self, s: BreakerState, mode: str, cause: str, *, opened_at: int | None = None) -> BreakerState:
        """A change of mode: a new generation, an empty window, and the durable record written."""
        opened = s.opened_at if opened_at is None else opened_at
        return attrs.evolve(
            s,
            mode=mode,
            window=(),
            opened_at=opened,
            generation=s.generation + 1,
            cause=cause,
            stored=Record(mode, opened),
        )

    def on_report(self, s: BreakerState, flight: InFlight, outcome: str) -> BreakerState:
        """What the breaker does with a report: it counts only a call of its current
        generation (a stale report changes nothing)."""
        if flight.generation != s.generation:
            return s
        if s.mode == HALF_OPEN:
            if outcome == SUCCESS:
                return self.change(s, CLOSED, SUCCESS)
            return self.change(s, OPEN, FAILURE, opened_at=s.now)
        window = (*s.window, outcome)[-self.config.window :]
        if window.count(FAILURE) >= self.config.threshold:
            return self.change(s, OPEN, WINDOW, opened_at=s.now)
        return attrs.evolve(s, window=window)

    def reload(self, s: BreakerState) -> BreakerState:
        """The breaker after a restart: its durable record's mode and opening time."""
        return attrs.evolve(s, mode=s.stored.mode, opened_at=s.stored.opened_at)

    # -------------------------------------------------------------- rules

    @rule(Tick)
    def tick(self, s: BreakerState) -> BreakerState | None:
        """The clock advances one tick."""
        if s.now >= self.config.max_time:
            return None
        return attrs.evolve(s, now=s.now + 1)

    @rule(Call)
    def call(self, s: BreakerState, caller: str) -> BreakerState | None:
        """The breaker admits an idle caller's call: closed, as a call; open after its
        timeout, as the first probe of a half-open period; half-open, as a probe while
        fewer than ``probes`` are in flight."""
        if s.calls[caller] is not None or not self.admits(s):
            return None
        if s.mode == OPEN:
            s = self.change(s, HALF_OPEN, TIMEOUT)
        kind = CALL if s.mode == CLOSED else PROBE
        return attrs.evolve(s, calls=s.calls.set(caller, InFlight(kind, s.generation)))

    @rule(Reject)
    def reject(self, s: BreakerState, caller: str) -> BreakerState | None:
        """The breaker rejects an idle caller's call: it is open and its timeout has not
        passed, or it is half-open with ``probes`` probes in flight.  Nothing changes."""
        if s.calls[caller] is not None or self.admits(s):
            return None
        return s

    @rule(Report)
    def report(self, s: BreakerState, caller: str, outcome: str) -> BreakerState | None:
        """A caller's call in flight ends and the caller reports its outcome to the breaker."""
        flight = s.calls[caller]
        if flight is None:
            return None
        return self.on_report(attrs.evolve(s, calls=s.calls.set(caller, None)), flight, outcome)

    @rule(Restart)
    def restart(self, s: BreakerState) -> BreakerState | None:
        """The process restarts: its calls in flight end unreported, and the breaker
        reloads its durable record (a closed breaker starts with an empty window)."""
        if s.restarts >= self.config.restarts:
            return None
        ended = attrs.evolve(
            s,
            calls=FrozenMap({c: None for c in self.callers}),
            window=(),
            cause=RESTART,
            restarts=s.restarts + 1,
        )
        return self.reload(ended)

    # ========================================================== properties

    def invariants(self) -> Sequence[Invariant[BreakerState]]:
        return (
            Invariant("TypeOK", "every variable holds a value of its type", self._type_ok),
            Invariant(
                "ProbesBounded",
                "in half-open, at most `probes` probes are in flight",
                lambda s: self.probes_in_flight(s) <= self.config.probes,
            ),
        )

    def _type_ok(self, s: BreakerState) -> bool:
        c = self.config
        return (
            0 <= s.now <= c.max_time
            and s.mode in MODES
            and len(s.window) <= c.window
            and all(o in OUTCOMES for o in s.window)
            and -1 <= s.opened_at <= s.now
            and s.cause in CAUSES
            and set(s.calls) == set(self.callers)
            and all(
                f is None or (f.kind in (CALL, PROBE) and 0 <= f.generation <= s.generation) for f in s.calls.values()
            )
            and s.stored.mode in MODES
            and 0 <= s.restarts <= c.restarts
        )

    def step_properties(self) -> Sequence[StepProperty[BreakerState]]:
        return (
            StepProperty(
                "NoCallWhileOpen",
                "no call is admitted before open_timeout ticks have passed since the breaker last opened",
                self._no_call_while_open,
            ),
            StepProperty(
                "RestartKeepsOpen",
                "a restart leaves an open breaker open, with the same opening time",
                lambda s, t: (
                    t.restarts == s.restarts or s.mode != OPEN or (t.mode == OPEN and t.opened_at == s.opened_at)
                ),
            ),
        )

    def _no_call_while_open(self, s: BreakerState, t: BreakerState) -> bool:
        admitted = any(s.calls[c] is None and t.calls[c] is not None for c in self.callers)
        return not admitted or s.opened_at < 0 or t.now >= s.opened_at + self.config.open_timeout

    def reachable(self) -> Sequence[Reachable[BreakerState]]:
        return (
            Reachable("Opened", "the breaker opened", lambda s: s.mode == OPEN),
            Reachable(
                "ProbeClosed",
                "a half-open probe succeeded and the breaker closed",
                lambda s: s.mode == CLOSED and s.cause == SUCCESS,
            ),
            Reachable(
                "ProbeReopened",
                "a half-open probe failed and the breaker opened again",
                lambda s: s.mode == OPEN and s.cause == FAILURE,
            ),
        )


# ------------------------------------------------------------------------ variants


@variant("unbounded_probes", "half-open lets every call through as a probe, however many are in flight")
class UnboundedProbes(CircuitBreaker):
    def may_probe(self, s: BreakerState) -> bool:
        """The half-open limit is not enforced."""
        return True


@variant(
    "racing_reset",
    "a success report closes the breaker whatever admitted the call: a stale success from before it opened closes it",
)
class RacingReset(CircuitBreaker):
    def on_report(self, s: BreakerState, flight: InFlight, outcome: str) -> BreakerState:
        """ "On success, reset": the report is not matched with the generation that admitted the call."""
        if outcome == SUCCESS and s.mode != CLOSED:
            return self.change(s, CLOSED, SUCCESS)
        return super().on_report(s, flight, outcome)


@variant("restart_closes", "the breaker is kept only in memory: a restart starts it closed, forgetting it was open")
class RestartCloses(CircuitBreaker):
    def reload(self, s: BreakerState) -> BreakerState:
        """Nothing is reloaded: a new breaker starts closed."""
        return attrs.evolve(s, mode=CLOSED)
