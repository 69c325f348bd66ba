"""A saga's participant: the service that runs one step's local transaction and its
compensation, exactly once per saga however often it is asked.

Where it sits: on ``impl.runtime`` (an ``Actor``), asked by ``impl.saga.orchestrator``;
the same durable step book (``StepBook``) serves the choreographed participants.  It
mirrors the participants of ``spec/saga.py``.

A service is plain Python: for each action a function ``do(saga, data) -> result``
that decides and returns what it did (a booking reference, say), raising
``StepRefused`` to refuse (a business failure: nothing happens), and for each
compensation a function ``undo(saga, result)`` that may raise ``TryAgain`` when it
cannot undo now (a transient failure: the orchestrator asks again later)::

    flights = Participant("flights", {
        "reserve_flight": lambda saga, data: f"seat for {data['traveller']}",
        "cancel_flight": lambda saga, seat: None,
    })

What makes it safe, per saga and step (the step's *key*):

- **Idempotent.**  The outcome of a step (done with its result, or refused) is
  written to the node's storage and synced before the answer leaves; a command that
  comes again (a retry, a duplicate, a resend after the orchestrator's restart) is
  answered from the book and runs nothing.  The same for a compensation.
- **An undo that overtakes its step leaves a tombstone.**  An orchestrator that gave
  up waiting on a step compensates it without knowing whether it ran; when that undo
  arrives first, the book records the step as cancelled, and the step's command, if
  it arrives later, is refused.  Without the tombstone the late step would commit
  after its saga was compensated, and nobody would undo it.
- **A crash loses nothing answered**: what was answered was synced first; what was
  not may run again, and the service's functions see it once in the book.

The book is the participant's state: ``effects()`` is what is in force (done, not
undone), ``history`` the effects in the order they took place in this incarnation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from distcheck.impl.runtime import config
from distcheck.impl.runtime.actor import Actor, Messages
from distcheck.impl.runtime.api import Storage

DONE, REFUSED, UNDONE, CANCELLED = "done", "refused", "undone", "cancelled"

VARIANTS = {
    "non_idempotent": "a participant runs a command again when it is delivered again",
    "no_tombstone": "an undo that arrives before its step records nothing, so the late step commits",
}


def step_name(step: int) -> str:
    """The spec's name for the participant of step ``step`` (0-based): p1, p2, ...
    (spec/saga.py names participants by their step; the trace says which step is
    whose, whatever the service is called)."""
    return f"p{step + 1}"


class StepRefused(Exception):
    """Raised by an action to refuse the step (a business failure): nothing is done."""


class TryAgain(Exception):
    """Raised by a compensation that cannot undo now (a transient failure)."""


# --------------------------------------------------------------------- messages


@attrs.frozen
class DoStep:
    """orchestrator → participant: run step ``step`` of ``saga`` (``action`` names it)."""

    saga: str
    step: int
    action: str
    data: dict[str, Any]


@attrs.frozen
class UndoStep:
    """orchestrator → participant: compensate step ``step`` of ``saga``."""

    saga: str
    step: int
    action: str


@attrs.frozen
class StepDone:
    saga: str
    step: int
    result: Any


@attrs.frozen
class StepFailed:
    saga: str
    step: int
    reason: str


@attrs.frozen
class StepUndone:
    saga: str
    step: int


@attrs.frozen
class UndoFailed:
    """The compensation failed transiently: ask again later."""

    saga: str
    step: int
    reason: str


PARTICIPANT_MESSAGES = Messages(DoStep, UndoStep)


# ------------------------------------------------------------------- the book


@attrs.define
class Entry:
    """What the book says of one step of one saga."""

    state: str  # DONE, REFUSED, UNDONE or CANCELLED
    result: Any = None
    reason: str = ""


@attrs.frozen
class Outcome:
    """What a command to the book came to: ``state`` after it, and whether this
    call is the one that took effect (``fresh``: False for an answer from the book)."""

    state: str
    result: Any = None
    reason: str = ""
    fresh: bool = False


#: records to write durably with a step's own (given its new entry)
WithIt = Callable[["Entry"], list[dict[str, Any]]]


class StepBook:
    """A participant's durable record of the steps and compensations it ran, keyed by
    saga and step.  Every change is appended and synced before it is answered."""

    def __init__(self, storage: Storage, variant: str | None = None) -> None:
        config.check_variant(variant, VARIANTS)
        self.storage = storage
        self.variant = variant
        self.entries: dict[tuple[str, int], Entry] = {}
        for r in storage.records():
            if "state" not in r:
                continue  # not the book's (the outbox's, sharing the log)
            key = (str(r["saga"]), int(r["step"]))
            self.entries[key] = Entry(str(r["state"]), r.get("result"), r.get("reason", ""))
        self.history: list[tuple[str, str, int]] = []  # ("do" | "undo", saga, step), this incarnation

    def _write(self, saga: str, step: int, entry: Entry, with_it: WithIt | None) -> None:
        record: dict[str, Any] = {"saga": saga, "step": step, "state": entry.state}
        if entry.result is not None:
            record["result"] = entry.result
        if entry.reason:
            record["reason"] = entry.reason
        self.storage.append(record)
        # What must be durable with the step (the event a choreographed participant
        # publishes: its outbox), in the same write: one sync covers both.
        for extra in with_it(entry) if with_it is not None else ():
            self.storage.append(extra)
        self.storage.sync()
        self.entries[(saga, step)] = entry

    def do(self, saga: str, step: int, run: Callable[[], Any], with_it: WithIt | None = None) -> Outcome:
        """Run the step once: ``run()`` returns its result or raises ``StepRefused``.
        ``with_it(entry)`` gives records to write with the step's, durable together."""
        known = self.entries.get((saga, step))
        if known is not None and self.variant != "non_idempotent":
            if known.state in (UNDONE, CANCELLED):
                return Outcome(REFUSED, reason=f"step {step} of {saga} was compensated already")
            return Outcome(known.state, known.result, known.reason)
        try:
            result = run()
        except StepRefused as refused:
            self._write(saga, step, Entry(REFUSED, reason=str(refused) or "refused"), with_it)
            return Outcome(REFUSED, reason=str(refused) or "refused", fresh=True)
        self._write(saga, step, Entry(DONE, result), with_it)
        self.history.append(("do", saga, step))
        return Outcome(DONE, result, fresh=True)

    def undo(self, saga: str, step: int, run: Callable[[Any], None], with_it: WithIt | None = None) -> Outcome:
        """Compensate the step once: ``run(result)`` may raise ``TryAgain`` (nothing
        changes; the caller is told to come back).  A step never done leaves a
        tombstone, so that its command, arriving late, is refused."""
        known = self.entries.get((saga, step))
        if known is None:
            if self.variant == "no_tombstone":
                return Outcome(CANCELLED)  # BROKEN: nothing stops the late step
            self._write(saga, step, Entry(CANCELLED), with_it)
            return Outcome(CANCELLED, fresh=True)
        if known.state != DONE:
            return Outcome(known.state, known.result, known.reason)  # refused, undone or cancelled: nothing to undo
        run(known.result)  # TryAgain propagates: nothing written
        self._write(saga, step, Entry(UNDONE, known.result), with_it)
        self.history.append(("undo", saga, step))
        return Outcome(UNDONE, known.result, fresh=True)

    def effects(self) -> dict[tuple[str, int], Any]:
        """What is in force: each step done and not undone, with its result."""
        return {key: e.result for key, e in self.entries.items() if e.state == DONE}


# ------------------------------------------------------------- the participant


class Participant(Actor):
    """A service taking part in orchestrated sagas (see the module).  ``handlers``
    maps each action name to its function: steps ``do(saga, data) -> result``,
    compensations ``undo(saga, result)``."""

    LOG = "saga-steps"
    messages = PARTICIPANT_MESSAGES

    def __init__(
        self,
        name: str,
        handlers: Mapping[str, Callable[..., Any]],
        variant: str | None = None,
    ) -> None:
        config.check_variant(variant, VARIANTS)
        super().__init__(name)
        self.handlers = dict(handlers)
        self.variant = variant
        self.book: StepBook | None = None

    def on_start(self) -> None:
        self.book = StepBook(self.ctx.storage(self.LOG), self.variant)

    def on_message(self, src: str, msg: Any) -> None:
        book = self.book
        assert book is not None
        match msg:
            case DoStep(saga, step, action, data):
                handler = self._handler(action)
                if handler is None:
                    self.send(src, StepFailed(saga, step, f"{self.name} has no action {action!r}"))
                    return
                outcome = book.do(saga, step, lambda: handler(saga, data))
                if outcome.fresh:
                    kind = "StepCommitted" if outcome.state == DONE else "StepRefused"
                    self.ctx.record({"type": kind, "p": step_name(step)}, saga=saga)
                if outcome.state == DONE:
                    self.send(src, StepDone(saga, step, outcome.result))
                else:
                    self.send(src, StepFailed(saga, step, outcome.reason or outcome.state))
            case UndoStep(saga, step, action):
                undo = self._handler(action)
                if undo is None:
                    self.send(src, UndoFailed(saga, step, f"{self.name} has no compensation {action!r}"))
                    return
                try:
                    outcome = book.undo(saga, step, lambda result: undo(saga, result))
                except TryAgain as again:
                    self.ctx.record({"type": "UndoFailed", "p": step_name(step)}, saga=saga)
                    self.send(src, UndoFailed(saga, step, str(again) or "try again"))
                    return
                if outcome.fresh:
                    kind = "StepCompensated" if outcome.state == UNDONE else "StepCancelled"
                    self.ctx.record({"type": kind, "p": step_name(step)}, saga=saga)
                self.send(src, StepUndone(saga, step))

    def _handler(self, action: str) -> Callable[..., Any] | None:
        return self.handlers.get(action)

    def effects(self) -> dict[tuple[str, int], Any]:
        return {} if self.book is None else self.book.effects()
