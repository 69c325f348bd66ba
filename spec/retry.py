"""Retries with exponential backoff and jitter, under a deadline and a retry budget.

A client makes one call to a server and retries it when an attempt fails.  Each
attempt waits at most ``attempt_timeout`` ticks for its answer (an answer takes 1 ..
``attempt_timeout`` ticks, or never comes); after a failed attempt the client either
gives up or sleeps and tries again.  The n-th sleep (n = 0, 1, ...) is drawn from its
jitter's range, where e = min(cap, base · 2^n) is the capped exponential:

- **full** jitter: [0, e];
- **equal** jitter: [e - e // 2, e] (half of e, plus a draw from the other half);
- **decorrelated** jitter: [min(cap, base), min(cap, 3 · previous sleep)], the
  previous sleep being ``base`` before the first.

The draw is a parameter of the step, so the checker covers every random draw.  The
client gives up at its **deadline**: it retries only if the next attempt, after the
sleep, can end by the deadline (whatever the draw, the elapsed time never passes the
deadline); and at its **budget**: at most ``max_attempts`` attempts.  A server may
apply an attempt that the client gave up on (the request arrived, the answer was
lost or late), so a retry of a call that is not idempotent may apply it twice: the
client retries such a call only with an idempotency key, under which the server
applies the call at most once and answers a repeat with the recorded result.

Sources: M. Brooker, "Exponential Backoff And Jitter" (AWS Architecture Blog, 2015)
for the three jitter formulas; "Timeouts, retries, and backoff with jitter" (Amazon
Builders' Library); the IETF draft "The Idempotency-Key HTTP Header Field"; gRPC's
retry design (A6), whose attempts share the call's deadline.

Abstractions.  Time is an integer ``now`` (ticks, from 0); the client's own steps
take no time, and time passes only while it waits for an answer or sleeps (a step
due at a tick is taken at that tick).  A request reaches the server or not; the
server processes each request it receives once, at any moment, even after the
client gave up on it, applying the call or failing it without effect (a transient
error, such as a 503).  An answer may be lost: the attempt then times out.

State: ``now``; the client's ``phase`` (idle, calling, failed, sleeping, succeeded,
gave_up), its ``attempts`` so far, its ``timer`` (calling: when the attempt times
out; sleeping: when the sleep ends), the ``reply`` it has to the current attempt
(none, ok, error) and, once it gives up, the ``reason``; the server's
``unprocessed`` requests (attempt numbers), how many times it ``applied`` the call,
and whether it has recorded the call's key (``key_recorded``); and ``sleeps``, the
client's sleeps in order (a history variable, for SleepInRange).

Actions
    Tick                The clock advances one tick, while the client waits for an answer or sleeps.
    Attempt             The client sends its next attempt: the first at once, each later one when its sleep ends.
    Process(attempt)    The server processes a request: it applies the call (unless its key is recorded) and answers ok.
    Reject(attempt)     The server fails a request without applying it, and answers with an error.
    Succeed             The client takes an ok answer to its attempt, at least one tick after sending it.
    Fail                The client takes an error answer to its attempt, at least one tick after sending it.
    TimeOut             The attempt's time is up without an answer the client took: it failed.
    Retry(sleep)        After a failure, with budget left, time to finish another attempt and a call that
                        is safe to retry, the client sleeps ``sleep`` ticks, drawn from its jitter's range.
    GiveUp(reason)      After a failure, with no retry allowed, the client gives up: ``budget``, ``deadline``,
                        or ``unsafe`` (a call that is not idempotent, without a key).

Invariants
    WithinDeadline  the elapsed time never exceeds the deadline.
    WithinBudget    the client makes at most ``max_attempts`` attempts.
    RetriesAreSafe  a call that is not idempotent is applied at most once, however many attempts reach the server.
    SleepInRange    each sleep lies in its jitter's range, and so at most ``cap``.

Reachable
    SucceededAfterRetries   the call succeeded on a later attempt than the first.
    GaveUpAtDeadline        the client gave up because no retry could end by the deadline.
    GaveUpAtBudget          the client gave up with its attempts spent.

Variants, each caught
    deadline_checked_before_sleep_only  a retry only has to wake by the deadline      WithinDeadline
    unbounded_retries                   no retry budget                               WithinBudget
    retry_without_key                   a keyless, non-idempotent call is retried     RetriesAreSafe
    sleep_above_cap                     the exponential is never capped               SleepInRange
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from distcheck.spec.contract import Action, Exists, Invariant, Next, Reachable, Spec, param, rule, variant

IDLE, CALLING, FAILED, SLEEPING, SUCCEEDED, GAVE_UP = "idle", "calling", "failed", "sleeping", "succeeded", "gave_up"
PHASES = (IDLE, CALLING, FAILED, SLEEPING, SUCCEEDED, GAVE_UP)
NONE, OK, ERROR = "none", "ok", "error"
BUDGET, DEADLINE, UNSAFE = "budget", "deadline", "unsafe"
REASONS = (BUDGET, DEADLINE, UNSAFE)
FULL, EQUAL, DECORRELATED = "full", "equal", "decorrelated"
JITTERS = (FULL, EQUAL, DECORRELATED)


def jitter_range(jitter: str, base: int, cap: int, retry: int, previous: int) -> range:
    """The sleeps the ``retry``-th retry (0, 1, ...) may draw, in whole ticks;
    ``previous``: the sleep before it (``base`` before the first), which only
    decorrelated jitter reads."""
    exponential = min(cap, base * 2**retry)
    if jitter == FULL:
        return range(0, exponential + 1)
    if jitter == EQUAL:
        return range(exponential - exponential // 2, exponential + 1)
    return range(min(cap, base), min(cap, 3 * previous) + 1)


# ------------------------------------------------------------------------ state


@attrs.frozen
class RetryState:
    now: int
    phase: str
    attempts: int
    timer: int  # calling: when the attempt times out; sleeping: when the sleep ends
    reply: str  # the answer the client has to its current attempt
    reason: str  # why the client gave up; "" until it does
    unprocessed: frozenset[int]  # attempts the server has not processed
    applied: int  # times the server applied the call
    key_recorded: bool
    sleeps: tuple[int, ...]  # every sleep, in order (a history variable)


# ---------------------------------------------------------------------- actions


class ClientAction(Action):
    __slots__ = ()
    ACTOR = "client"


class ServerAction(Action):
    __slots__ = ()
    ACTOR = "server"


@attrs.frozen
class Tick(Action):
    ACTOR = "clock"


@attrs.frozen
class Attempt(ClientAction):
    pass


@attrs.frozen
class Process(ServerAction):
    attempt: int


@attrs.frozen
class Reject(ServerAction):
    attempt: int


@attrs.frozen
class Succeed(ClientAction):
    pass


@attrs.frozen
class Fail(ClientAction):
    pass


@attrs.frozen
class TimeOut(ClientAction):
    pass


@attrs.frozen
class Retry(ClientAction):
    sleep: int


@attrs.frozen
class GiveUp(ClientAction):
    reason: str


RetryAction = Tick | Attempt | Process | Reject | Succeed | Fail | TimeOut | Retry | GiveUp


@attrs.frozen
class Config:
    base: int = param(1, help="the first retry's backoff, in ticks", minimum=1, maximum=8)
    cap: int = param(2, help="the largest backoff, in ticks", minimum=1, maximum=16)
    deadline: int = param(8, help="the call's deadline: ticks from its start", minimum=1, maximum=30)
    attempt_timeout: int = param(
        2, help="an attempt's answer takes 1..attempt_timeout ticks, or it times out then", minimum=1, maximum=8
    )
    max_attempts: int = param(4, help="the retry budget: attempts in all, the first included", minimum=1, maximum=8)
    jitter: str = param(FULL, help="full, equal or decorrelated")
    idempotent: bool = param(False, help="the call may be applied more than once")
    idempotency_key: bool = param(True, help="the client sends an idempotency key with the call")
    variant: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.jitter not in JITTERS:
            raise ValueError(f"jitter must be one of {', '.join(JITTERS)}, got {self.jitter!r}")
        for f in attrs.fields(Config):
            minimum, maximum = f.metadata.get("minimum"), f.metadata.get("maximum")
            value = getattr(self, f.name)
            if minimum is not None and not minimum <= value <= maximum:
                raise ValueError(f"{f.name} must be between {minimum} and {maximum}, got {value}")
        if self.base > self.cap:
            raise ValueError(f"base ({self.base}) must be at most cap ({self.cap})")
        if self.attempt_timeout > self.deadline:
            raise ValueError(f"attempt_timeout ({self.attempt_timeout}) must be at most deadline ({self.deadline})")


# ------------------------------------------------------------------------- spec


class RetryBackoff(Spec[RetryState, RetryAction]):
    name = "retry"
    config: Config

    def __init__(self, config: Config = Config()) -> None:
        self.config = config

    def init_states(self) -> Iterable[RetryState]:
        yield RetryState(
            now=0,
            phase=IDLE,
            attempts=0,
            timer=0,
            reply=NONE,
            reason="",
            unprocessed=frozenset(),
            applied=0,
            key_recorded=False,
            sleeps=(),
        )

    def next(self) -> Next:
        return (
            self.tick,
            self.attempt,
            Exists("attempt", self.requests, self.process, self.reject),
            self.succeed,
            self.fail,
            self.time_out,
            Exists("sleep", self.sleep_choices, self.retry),
            Exists("reason", REASONS, self.give_up),
        )

    # ------------------------------------------------------------ helpers

    def requests(self, s: RetryState) -> list[int]:
        """The requests the server has received and not processed, by attempt number."""
        return sorted(s.unprocessed)

    def sleep_choices(self, s: RetryState) -> range:
        """The sleeps the next retry may draw: its jitter's range."""
        c = self.config
        return jitter_range(c.jitter, c.base, c.cap, len(s.sleeps), s.sleeps[-1] if s.sleeps else c.base)

    def fits(self, s: RetryState, sleep: int) -> bool:
        """A retry after ``sleep`` can end by the deadline: its attempt, timed out at
        the latest, ends ``sleep + attempt_timeout`` ticks from now."""
        return s.now + sleep + self.config.attempt_timeout <= self.config.deadline

    def budget_left(self, s: RetryState) -> bool:
        return s.attempts < self.config.max_attempts

    def safe_to_retry(self) -> bool:
        """A retry cannot apply the call twice: it is idempotent, or it carries a key."""
        return self.config.idempotent or self.config.idempotency_key

    def why_stop(self, s: RetryState) -> str | None:
        """Why the client may not retry now, or None when it may."""
        if not self.budget_left(s):
            return BUDGET
        if not self.safe_to_retry():
            return UNSAFE
        if not any(self.fits(s, sleep) for sleep in self.sleep_choices(s)):
            return DEADLINE
        return None

    def answered(self, s: RetryState, attempt: int, reply: str) -> str:
        """The reply the client has once the server answered ``attempt``: only an
        answer to the attempt it waits for counts."""
        return reply if s.phase == CALLING and attempt == s.attempts else s.reply

    def started(self, s: RetryState) -> int:
        return s.timer - self.config.attempt_timeout

    # -------------------------------------------------------------- rules

    @rule(Tick)
    def tick(self, s: RetryState) -> RetryState | None:
        """The clock advances one tick while the client waits for an answer or sleeps,
        up to its timer (what is due at a tick is done at that tick)."""
        if s.phase not in (CALLING, SLEEPING) or s.now >= s.timer:
            return None
        return attrs.evolve(s, now=s.now + 1)

    @rule(Attempt)
    def attempt(self, s: RetryState) -> RetryState | None:
        """The client sends its next attempt: the first at once, a later one when its sleep ends."""
        if not (s.phase == IDLE or (s.phase == SLEEPING and s.now == s.timer)):
            return None
        number = s.attempts + 1
        return attrs.evolve(
            s,
            phase=CALLING,
            attempts=number,
            timer=s.now + self.config.attempt_timeout,
            reply=NONE,
            unprocessed=s.unprocessed | {number},
        )

    @rule(Process)
    def process(self, s: RetryState, attempt: int) -> RetryState | None:
        """The server processes a request it received: it applies the call, unless the
        request's key is recorded already, and answers ok."""
        if attempt not in s.unprocessed:
            return None
        keyed = self.config.idempotency_key
        repeat = keyed and s.key_recorded
        return attrs.evolve(
            s,
            unprocessed=s.unprocessed - {attempt},
            applied=s.applied if repeat else s.applied + 1,
            key_recorded=s.key_recorded or keyed,
            reply=self.answered(s, attempt, OK),
        )

    @rule(Reject)
    def reject(self, s: RetryState, attempt: int) -> RetryState | None:
        """The server fails a request it received without applying it (a transient error) and says so."""
        if attempt not in s.unprocessed:
            return None
        return attrs.evolve(s, unprocessed=s.unprocessed - {attempt}, reply=self.answered(s, attempt, ERROR))

    @rule(Succeed)
    def succeed(self, s: RetryState) -> RetryState | None:
        """The client takes an ok answer to its attempt, at least one tick after sending it: the call succeeded."""
        if s.phase != CALLING or s.reply != OK or s.now <= self.started(s):
            return None
        return attrs.evolve(s, phase=SUCCEEDED)

    @rule(Fail)
    def fail(self, s: RetryState) -> RetryState | None:
        """The client takes an error answer to its attempt, at least one tick after sending it: the attempt failed."""
        if s.phase != CALLING or s.reply != ERROR or s.now <= self.started(s):
            return None
        return attrs.evolve(s, phase=FAILED)

    @rule(TimeOut)
    def time_out(self, s: RetryState) -> RetryState | None:
        """The attempt's time is up without an answer the client took (none came, or it
        was lost or late): the attempt failed, and the server may have applied it."""
        if s.phase != CALLING or s.now != s.timer:
            return None
        return attrs.evolve(s, phase=FAILED)

    @rule(Retry)
    def retry(self, s: RetryState, sleep: int) -> RetryState | None:
        """After a failed attempt, with budget left and a call safe to retry, the client
        sleeps a draw from its jitter's range after which another attempt can end by the deadline."""
        if s.phase != FAILED or not self.budget_left(s) or not self.safe_to_retry() or not self.fits(s, sleep):
            return None
        return attrs.evolve(s, phase=SLEEPING, timer=s.now + sleep, sleeps=(*s.sleeps, sleep))

    @rule(GiveUp)
    def give_up(self, s: RetryState, reason: str) -> RetryState | None:
        """After a failed attempt that may not be retried, the client gives up, saying why:
        its budget is spent, no draw lets another attempt end by the deadline, or the
        call is not idempotent and carries no key."""
        if s.phase != FAILED or self.why_stop(s) != reason:
            return None
        return attrs.evolve(s, phase=GAVE_UP, reason=reason)

    # ========================================================== properties

    def invariants(self) -> Sequence[Invariant[RetryState]]:
        c = self.config
        return (
            Invariant(
                "WithinDeadline",
                "the elapsed time never exceeds the deadline: no attempt is started that could end after it",
                lambda s: s.now <= c.deadline,
            ),
            Invariant(
                "WithinBudget",
                "the client makes at most max_attempts attempts",
                lambda s: s.attempts <= c.max_attempts,
            ),
            Invariant(
                "RetriesAreSafe",
                "a call that is not idempotent is applied at most once, however many of its attempts reach the server",
                lambda s: c.idempotent or s.applied <= 1,
            ),
            Invariant(
                "SleepInRange",
                "each sleep lies in its jitter's range, and so is at most cap",
                self._sleeps_in_range,
            ),
        )

    def _sleeps_in_range(self, s: RetryState) -> bool:
        c = self.config
        previous = c.base
        for retry, sleep in enumerate(s.sleeps):
            if sleep > c.cap or sleep not in jitter_range(c.jitter, c.base, c.cap, retry, previous):
                return False
            previous = sleep
        return True

    def reachable(self) -> Sequence[Reachable[RetryState]]:
        return (
            Reachable(
                "SucceededAfterRetries",
                "the call succeeded on a later attempt than the first",
                lambda s: s.phase == SUCCEEDED and s.attempts > 1,
            ),
            Reachable(
                "GaveUpAtDeadline",
                "the client gave up because no retry could end by the deadline",
                lambda s: s.phase == GAVE_UP and s.reason == DEADLINE,
            ),
            Reachable(
                "GaveUpAtBudget",
                "the client gave up with its attempts spent",
                lambda s: s.phase == GAVE_UP and s.reason == BUDGET,
            ),
        )


# ------------------------------------------------------------------------ variants


@variant(
    "deadline_checked_before_sleep_only",
    "the client retries if it wakes by the deadline, and the attempt after the sleep runs past it",
)
class DeadlineCheckedBeforeSleepOnly(RetryBackoff):
    def fits(self, s: RetryState, sleep: int) -> bool:
        """Elapsed time plus the sleep is compared with the deadline, as popular retry
        libraries do before sleeping; the attempt that follows is not counted."""
        return s.now + sleep <= self.config.deadline


@variant("unbounded_retries", "the client retries until the deadline, however many attempts that takes")
class UnboundedRetries(RetryBackoff):
    def budget_left(self, s: RetryState) -> bool:
        """The budget is never consulted."""
        return True


@variant(
    "retry_without_key",
    "the client retries a call that is not idempotent though it sends no idempotency key",
    params={"idempotency_key": False},
)
class RetryWithoutKey(RetryBackoff):
    def safe_to_retry(self) -> bool:
        """Every failure is taken as "not applied", as if a timeout meant the server never saw the request."""
        return True


@variant(
    "sleep_above_cap",
    "the exponential is never capped: the n-th sleep is drawn up to base · 2^n",
)
class SleepAboveCap(RetryBackoff):
    def sleep_choices(self, s: RetryState) -> range:
        """The jitter's range, computed without the cap."""
        c = self.config
        previous = s.sleeps[-1] if s.sleeps else c.base
        return jitter_range(c.jitter, c.base, c.base * 2**c.deadline, len(s.sleeps), previous)
