"""Orchestrated sagas: a coordinator that runs a saga's steps in order at their
participants, and on a failure compensates the steps that may have run, in reverse
order; durable, so that a crash at any point resumes every unfinished saga.

Where it sits: on ``impl.runtime`` (an ``Actor``, so the same code runs under the
controlled scheduler and over TCP), with ``impl.saga.participant`` as the other side;
it mirrors the orchestrator of ``spec/saga.py``.  A saga is plain Python::

    trip = SagaDefinition("trip", (
        Step("reserve_flight", "flights", "cancel_flight"),
        Step("book_hotel", "hotels", "cancel_hotel"),
        Step("charge_card", "payments", "refund_card"),
    ))
    orchestrator = Orchestrator("orchestrator", {"trip": trip})
    # in a client node:
    outcome = run_saga(ctx, "orchestrator", "trip-1", "trip", {"traveller": "ada"})
    outcome.status        # "completed" or "compensated"

How it runs a saga, and what makes it survive:

- **The log first.**  Every decision is appended to the orchestrator's saga log and
  synced before anyone hears of it: the saga's start (its definition and data), each
  step's command before it is first sent, each step's result, the decision to
  compensate (with the step that failed, if one did), each compensation's
  completion, and the end.  Recovery reads the log and resumes every unfinished saga
  where it was: it sends again the command of the step in progress, or goes on
  compensating.  A participant answers a repeated command from its book, so sending
  again is always safe.
- **Retries with backoff.**  An unanswered command is sent again after
  ``retry_initial`` seconds, then twice as long each time up to ``retry_max``.  A
  compensation that fails transiently (``UndoFailed``) is retried the same way, for
  as long as it takes: a compensation must not give up, or the saga ends half undone.
- **Timeouts.**  A step not answered within ``step_timeout`` seconds is given up on:
  the saga compensates, that step included, since it may have run (its participant
  leaves a tombstone if the undo arrives first).  The clock is the node's (virtual
  under the controlled scheduler: a 30-day timeout takes no time in a test).
- **Reverse order.**  Compensation undoes the steps from the last one asked down to
  the first, one at a time, each only once the one after it is undone; a step that
  was refused is skipped (nothing to undo).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from distcheck.impl.resilience import UNBOUNDED, Retrying, backoff_range
from distcheck.impl.runtime import config
from distcheck.impl.runtime.actor import Actor, MessageError, Messages
from distcheck.impl.runtime.api import Context, Envelope, Storage
from distcheck.impl.saga.participant import (
    DoStep,
    Participant,
    StepDone,
    StepFailed,
    StepUndone,
    UndoFailed,
    UndoStep,
    step_name,
)

COMPLETED, COMPENSATED = "completed", "compensated"

VARIANTS = {
    "compensate_forward": "compensations run from the first step to the last",
    "forget_compensation": "a restarted orchestrator ends a saga it finds compensating, forgetting what is left",
    "give_up_compensation": "a compensation that fails transiently is given up, and the saga ends",
}


@attrs.frozen
class Timing(config.Timing):
    step_timeout: float = 30.0
    retry_initial: float = 1.0
    retry_max: float = 30.0
    client_retry: float = 5.0


# ------------------------------------------------------------------- definitions


@attrs.frozen
class Step:
    """One step: ``action`` run at ``participant``, undone by ``compensation``."""

    action: str
    participant: str
    compensation: str


@attrs.frozen
class SagaDefinition:
    name: str
    steps: tuple[Step, ...]

    def __attrs_post_init__(self) -> None:
        if not self.steps:
            raise ValueError(f"saga {self.name!r} has no steps")


# --------------------------------------------------------------------- messages


@attrs.frozen
class StartSaga:
    """client → orchestrator: run ``saga`` by ``definition`` with ``data`` (sent again
    until answered; a known saga is answered with its outcome once it has one)."""

    saga: str
    definition: str
    data: dict[str, Any]


@attrs.frozen
class SagaOutcome:
    """orchestrator → client."""

    saga: str
    status: str
    reason: str
    results: dict[str, Any]


ORCHESTRATOR_MESSAGES = Messages(StartSaga, StepDone, StepFailed, StepUndone, UndoFailed)
CLIENT_MESSAGES = Messages(SagaOutcome)


# ----------------------------------------------------------------------- timers


@attrs.frozen
class Resend:
    """Send the saga's outstanding command again."""

    saga: str


@attrs.frozen
class StepDeadline:
    """Step ``step`` of ``saga`` has had its ``step_timeout``."""

    saga: str
    step: int


# --------------------------------------------------------------- the orchestrator


@attrs.define
class SagaRun:
    """What the orchestrator knows of one saga (rebuilt from its log)."""

    definition: SagaDefinition
    data: dict[str, Any]
    client: str | None
    asked: int = -1  # the last step whose command was logged (and so may have run)
    results: dict[int, Any] = attrs.field(factory=dict)
    compensating: bool = False
    reason: str = ""
    refused: int | None = None  # the step that was refused, if one was
    undone: set[int] = attrs.field(factory=set)
    status: str | None = None
    attempts: int = 0  # sends of the outstanding command so far (not logged: sets the backoff)

    def next_step(self) -> int:
        return len(self.results)

    def to_undo(self, forward: bool = False) -> int | None:
        """The next step to compensate: the last one asked not yet undone (never the
        refused one); None when all are undone."""
        pending = [i for i in range(self.asked + 1) if i not in self.undone and i != self.refused]
        if not pending:
            return None
        return pending[0] if forward else pending[-1]


class Orchestrator(Actor):
    """Runs sagas by their definitions (see the module); ``runs`` is its memory."""

    LOG = "sagas"
    messages = ORCHESTRATOR_MESSAGES

    def __init__(
        self,
        name: str,
        definitions: Mapping[str, SagaDefinition],
        timing: Timing = Timing(),
        variant: str | None = None,
    ) -> None:
        config.check_variant(variant, VARIANTS)
        super().__init__(name)
        self.definitions = dict(definitions)
        self.timing = timing
        self.variant = variant
        self.runs: dict[str, SagaRun] = {}

    # ------------------------------------------------------------ recovery

    def recover(self, records: Iterable[Mapping[str, Any]]) -> dict[str, SagaRun]:
        """Each saga as its log records left it."""
        runs: dict[str, SagaRun] = {}
        for r in records:
            saga = str(r["saga"])
            if "start" in r:
                runs[saga] = SagaRun(self.definitions[str(r["start"])], dict(r["data"]), r.get("client"))
                continue
            run = runs[saga]
            if "ask" in r:
                run.asked = int(r["ask"])
            elif "done" in r:
                run.results[int(r["done"])] = r.get("result")
            elif "compensate" in r:
                run.compensating, run.reason, run.refused = True, str(r["compensate"]), r.get("refused")
            elif "undone" in r:
                run.undone.add(int(r["undone"]))
            elif "end" in r:
                run.status = str(r["end"])
        return runs

    def on_start(self) -> None:
        self.log: Storage = self.ctx.storage(self.LOG)
        self.runs = self.recover(self.log.records())
        for saga, run in sorted(self.runs.items()):
            if run.status is not None:
                continue
            self.ctx.record({"type": "Recover"}, saga=saga)
            if run.compensating and self.variant == "forget_compensation":
                # BROKEN: a saga found compensating is taken for rolled back; the
                # compensations still pending are forgotten.
                self._finish(saga, run, COMPENSATED)
                continue
            self._resume(saga, run)

    def _write(self, record: Mapping[str, Any]) -> None:
        self.log.append(record)
        self.log.sync()

    # ------------------------------------------------------------ messages

    def on_message(self, src: str, msg: Any) -> None:
        match msg:
            case StartSaga(saga, definition, data):
                self._start(src, saga, definition, data)
            case StepDone(saga, step, result):
                run = self._waiting_on(saga, step)
                if run is not None:
                    self._write({"saga": saga, "done": step, "result": result})
                    run.results[step] = result
                    self.cancel_timer(StepDeadline(saga, step))
                    self._advance(saga, run)
            case StepFailed(saga, step, reason):
                run = self._waiting_on(saga, step)
                if run is not None:
                    self.cancel_timer(StepDeadline(saga, step))
                    self._compensate(saga, run, step, f"step {step} refused: {reason}", refused=True)
            case StepUndone(saga, step):
                run = self.runs.get(saga)
                forward = self.variant == "compensate_forward"
                if run is not None and run.status is None and run.compensating and step == run.to_undo(forward):
                    self._write({"saga": saga, "undone": step})
                    run.undone.add(step)
                    self.ctx.record({"type": "Compensated", "p": step_name(step)}, saga=saga)
                    self._advance(saga, run)
            case UndoFailed(saga, step, reason):
                run = self.runs.get(saga)
                if run is None or run.status is not None or not run.compensating or step in run.undone:
                    return
                if self.variant == "give_up_compensation":
                    # BROKEN: one transient failure and the saga is declared over.
                    self._finish(saga, run, COMPENSATED)
                # Otherwise the resend timer asks again, with backoff.

    def _waiting_on(self, saga: str, step: int) -> SagaRun | None:
        """The saga, if it is waiting for this step's answer (else the answer is late
        or a duplicate, and changes nothing: a compensation in progress undoes every
        step that was asked)."""
        run = self.runs.get(saga)
        if run is None or run.status is not None or run.compensating or step != run.next_step() or step > run.asked:
            return None
        return run

    def on_timer(self, timer: Any) -> None:
        run = self.runs.get(timer.saga)
        if run is None or run.status is not None:
            return
        match timer:
            case Resend(saga):
                self._send_current(saga, run)
            case StepDeadline(saga, step) if not run.compensating and step == run.next_step():
                self._compensate(saga, run, step, f"step {step} timed out after {self.timing.step_timeout:g} s")

    # ------------------------------------------------------------ the flow

    def _start(self, client: str, saga: str, definition: str, data: dict[str, Any]) -> None:
        run = self.runs.get(saga)
        if run is not None:
            run.client = client
            if run.status is not None:
                self._tell_client(saga, run)
            return
        known = self.definitions.get(definition)
        if known is None:
            self.send(client, SagaOutcome(saga, COMPENSATED, f"no saga definition {definition!r}", {}))
            return
        self._write({"saga": saga, "start": definition, "data": data, "client": client})
        run = self.runs[saga] = SagaRun(known, dict(data), client)
        self.ctx.record({"type": "Start"}, saga=saga, steps=len(known.steps))
        self._advance(saga, run)

    def _advance(self, saga: str, run: SagaRun) -> None:
        """Take the saga's next step: ask the next participant, undo the next step, or end."""
        if run.compensating:
            if run.to_undo(self.variant == "compensate_forward") is None:
                self._finish(saga, run, COMPENSATED)
            else:
                self._send_current(saga, run, fresh=True)
            return
        step = run.next_step()
        if step == len(run.definition.steps):
            self._finish(saga, run, COMPLETED)
            return
        if run.asked < step:
            self._write({"saga": saga, "ask": step})
            run.asked = step
            self.ctx.record({"type": "Ask", "p": step_name(step)}, saga=saga)
        self.set_timer(StepDeadline(saga, step), self.timing.step_timeout)
        self._send_current(saga, run, fresh=True)

    def _resume(self, saga: str, run: SagaRun) -> None:
        if not run.compensating and run.asked >= run.next_step():
            self.set_timer(StepDeadline(saga, run.next_step()), self.timing.step_timeout)
            self._send_current(saga, run, fresh=True)
        else:
            self._advance(saga, run)

    def _send_current(self, saga: str, run: SagaRun, fresh: bool = False) -> None:
        """Send the saga's outstanding command, and come back after the backoff
        (``fresh``: a new command, whose backoff starts again)."""
        run.attempts = 0 if fresh else run.attempts + 1
        if run.compensating:
            step = run.to_undo(self.variant == "compensate_forward")
            if step is None:
                return
            spec = run.definition.steps[step]
            self.send(spec.participant, UndoStep(saga, step, spec.compensation))
        else:
            step = run.next_step()
            spec = run.definition.steps[step]
            self.send(spec.participant, DoStep(saga, step, spec.action, run.data))
        # The backoff of impl/resilience, as a timer: an actor never sleeps.
        delay = backoff_range("none", self.timing.retry_initial, self.timing.retry_max, run.attempts, 0.0)[0]
        self.set_timer(Resend(saga), delay)

    def _compensate(self, saga: str, run: SagaRun, step: int, reason: str, refused: bool = False) -> None:
        """Decide to compensate: ``step`` was refused (it is not undone) or timed out
        (it may have run: it is undone too)."""
        self._write({"saga": saga, "compensate": reason, "refused": step if refused else None})
        run.compensating, run.reason, run.refused = True, reason, step if refused else None
        cause = "refused" if refused else "timeout"
        self.ctx.record({"type": "Compensate", "p": step_name(step), "cause": cause}, saga=saga)
        self._advance(saga, run)

    def _finish(self, saga: str, run: SagaRun, status: str) -> None:
        self._write({"saga": saga, "end": status})
        run.status = status
        self.cancel_timer(Resend(saga))
        self.ctx.record({"type": "Finish", "outcome": status}, saga=saga)
        self._tell_client(saga, run)

    def _tell_client(self, saga: str, run: SagaRun) -> None:
        if run.client is None or run.status is None:
            return
        steps = run.definition.steps
        results = {steps[i].action: r for i, r in run.results.items()} if run.status == COMPLETED else {}
        self.send(run.client, SagaOutcome(saga, run.status, run.reason, results))

    def status(self, saga: str) -> str | None:
        run = self.runs.get(saga)
        return None if run is None else run.status


# ------------------------------------------------------------------- the client


def run_saga(
    ctx: Context,
    orchestrator: str,
    saga: str,
    definition: str,
    data: Mapping[str, Any],
    retry: float = Timing().client_retry,
) -> SagaOutcome:
    """Run ``saga`` and wait for its outcome, asking the orchestrator again every
    ``retry`` seconds until it answers (so a lost message or a crash of the
    orchestrator only delays it: a saga started once runs once)."""
    start = ORCHESTRATOR_MESSAGES.encode(StartSaga(saga, definition, dict(data)))
    # The saga's id is the idempotency key: the orchestrator starts a saga id once.
    resends = Retrying(
        backoff=False,
        max_attempts=UNBOUNDED,
        retry_on=TimeoutError,
        idempotency_key=saga,
        clock=ctx.now,
        sleep=ctx.sleep,
    )
    for attempt in resends:
        with attempt:
            ctx.send(orchestrator, start)
            outcome = _await_outcome(ctx, saga, ctx.now() + attempt.bounded(retry))
        if attempt.exception is None:
            return outcome
    raise AssertionError("unreachable: the attempts end in a return or a RetryError")  # pragma: no cover


def _await_outcome(ctx: Context, saga: str, until: float) -> SagaOutcome:
    """The outcome of ``saga`` if it comes by ``until``; TimeoutError otherwise."""
    while (left := until - ctx.now()) > 0:
        item = ctx.receive(timeout=left)
        if not isinstance(item, Envelope):
            continue
        try:
            answer = CLIENT_MESSAGES.decode(item.msg)
        except MessageError as exc:
            ctx.log(f"ignored a message from {item.src}: {exc}")
            continue
        if isinstance(answer, SagaOutcome) and answer.saga == saga:
            return answer
    raise TimeoutError(f"no outcome of saga {saga!r} yet")


class Client:
    """A node that runs the given sagas one after another; ``outcomes`` holds what it learned."""

    def __init__(
        self,
        name: str,
        orchestrator: str,
        sagas: Sequence[tuple[str, str, Mapping[str, Any]]],
        retry: float = Timing().client_retry,
    ) -> None:
        self.name = name
        self.orchestrator = orchestrator
        self.sagas = list(sagas)
        self.retry = retry
        self.outcomes: dict[str, SagaOutcome] = {}

    def main(self, ctx: Context) -> None:
        self.outcomes = {}
        for saga, definition, data in self.sagas:
            self.outcomes[saga] = run_saga(ctx, self.orchestrator, saga, definition, data, self.retry)


@attrs.define
class Cluster:
    """An orchestrator, its participants and a client: ``nodes()`` is what a runtime runs."""

    orchestrator: Orchestrator
    participants: list[Participant]
    client: Client

    def nodes(self) -> dict[str, Callable[[Context], None]]:
        out: dict[str, Callable[[Context], None]] = {self.orchestrator.name: self.orchestrator.main}
        for p in self.participants:
            out[p.name] = p.main
        out[self.client.name] = self.client.main
        return out
