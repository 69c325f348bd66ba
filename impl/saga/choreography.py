"""Choreographed sagas: no coordinator; each participant reacts to the events of the
one before it on the broker, runs its local transaction, and publishes what happened
for the next; a failure travels back down the chain, each participant compensating
its own step and passing the word on.

Where it sits: on ``impl.runtime`` (actors) and ``impl.messaging``'s broker (a node
of the same system: its ``Publish``/``Confirm``, ``Subscribe``/``Deliver``/``Ack``);
it shares the durable step book of ``impl.saga.participant`` with the orchestrated
participants, and mirrors the choreography of ``spec/saga.py``.  The saga is the same
plain-Python ``SagaDefinition``; ``chain(definition)`` says who reacts to what:

=====================  ============================  ===============================
participant of step i  on                            publishes, to
=====================  ============================  ===============================
runs its step          ``StepDone(i-1)`` (i=0:       ``StepDone(i)`` to step i+1 (the
                       ``SagaStarted``)              initiator after the last), or
                                                     ``StepFailed(i)`` to step i-1
compensates its step   ``StepFailed(i+1)`` or        ``Compensated(i)`` to step i-1
(a tombstone if it     ``Compensated(i+1)``; the     (the initiator after the first)
has not run)           initiator's ``SagaCancelled``
                       (only the last step, or a
                       step not committed)
=====================  ============================  ===============================

The initiator publishes ``SagaStarted`` and, if a saga has no outcome after
``saga_timeout`` seconds, ``SagaCancelled`` to every participant.  A cancel can
reach a participant before the event that starts its step (the bus keeps no order
between different senders); the tombstone it leaves refuses the step when it comes.
A committed participant other than the last does not compensate on the cancel: the
step after it may still commit, and its compensation must come first.

What makes it safe:

- **Transactional outbox.**  The event a step publishes is written to the
  participant's log in the same durable write as the step itself, and published
  (again, until the broker confirms it) from there: a crash between the two loses
  neither, and the event's id (saga, kind, step) lets the broker drop the copies.
- **Idempotent, with tombstones.**  A step or compensation runs once per saga
  (``participant.StepBook``); an event delivered again is answered from the book,
  and the event it caused is published again.  A compensation that arrives before
  its step (the bus gives no order between different senders) leaves a tombstone:
  the step, arriving later, is refused.
- **Acknowledged after.**  A delivery is acknowledged only once its effect and its
  outbox are durable: a crash before that has the broker deliver it again.
- **Compensations are retried, not given up**: one that fails transiently is kept in
  the log as pending and tried again with backoff (also after a restart).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from distcheck.impl.messaging.messages import CLIENT_MESSAGES, Ack, Confirm, Deliver, Nack, Publish, Subscribe
from distcheck.impl.resilience import backoff_range
from distcheck.impl.runtime import config
from distcheck.impl.runtime.actor import Actor
from distcheck.impl.runtime.api import Context, Storage
from distcheck.impl.saga.orchestrator import COMPENSATED, COMPLETED, SagaDefinition
from distcheck.impl.saga.participant import CANCELLED, DONE, UNDONE, Entry, StepBook, TryAgain, step_name

STARTED, STEP_DONE, STEP_FAILED, COMPENSATED_EVENT = "SagaStarted", "StepDone", "StepFailed", "Compensated"
CANCELLED_EVENT = "SagaCancelled"

VARIANTS = {
    "non_idempotent": "a participant runs its step again when the event is delivered again",
    "no_tombstone": "a compensation that arrives before its step records nothing, so the late step commits",
}


@attrs.frozen
class Timing(config.Timing):
    heartbeat: float = 1.0  # re-subscribe this often (the broker drops a silent consumer)
    republish: float = 1.0  # publish again what the broker has not confirmed
    retry_initial: float = 0.5  # a failed compensation, tried again after this, doubling...
    retry_max: float = 8.0  # ...up to this
    saga_timeout: float = 60.0  # the initiator cancels a saga with no outcome after this


@attrs.frozen
class Route:
    """Who hears from step ``step``'s participant: ``forward`` (the next step's queue,
    or the initiator's) and ``back`` (the previous step's, or the initiator's);
    ``last``: it is the saga's last step."""

    step: int
    forward: str
    back: str
    last: bool


def chain(definition: SagaDefinition, initiator: str) -> dict[str, Route]:
    """Each participant's place in the chain, by participant name."""
    steps = definition.steps
    names = [s.participant for s in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"a choreographed saga has one step per participant; {definition.name} repeats one")
    last = len(steps) - 1
    return {
        s.participant: Route(i, names[i + 1] if i < last else initiator, names[i - 1] if i else initiator, i == last)
        for i, s in enumerate(steps)
    }


def event(saga: str, kind: str, step: int, data: Mapping[str, Any]) -> dict[str, Any]:
    return {"saga": saga, "event": kind, "step": step, "data": dict(data)}


def parse_event(body: Any) -> tuple[str, str, int, dict[str, Any]] | None:
    """A delivery's event as (saga, kind, step, data); None if the body is not one."""
    if not isinstance(body, dict):
        return None
    saga, kind, step, data = body.get("saga"), body.get("event"), body.get("step"), body.get("data", {})
    if not (isinstance(saga, str) and isinstance(kind, str) and type(step) is int and isinstance(data, dict)):
        return None
    return saga, kind, step, data


def event_id(body: Mapping[str, Any]) -> str:
    """One id per (saga, kind, step): every copy of an event has the same one."""
    return f"{body['saga']}.{body['event']}.{body['step']}"


# ----------------------------------------------------------------- timers


@attrs.frozen
class Heartbeat:
    pass


@attrs.frozen
class Republish:
    pass


@attrs.frozen
class RetryUndo:
    saga: str


@attrs.frozen
class SagaTimeout:
    saga: str


class _BusNode(Actor):
    """What the participants and the initiator share: a subscription to their own
    queue on the broker, and a durable outbox published until confirmed."""

    messages = CLIENT_MESSAGES

    def __init__(self, name: str, broker: str, timing: Timing) -> None:
        super().__init__(name, peers=(broker,))
        self.broker = broker
        self.timing = timing

    def start_bus(self, log: Storage) -> None:
        self.log = log
        self.outbox: dict[str, tuple[str, dict[str, Any]]] = {}
        for r in log.records():
            if "outbox" in r:
                self.outbox[str(r["outbox"])] = (str(r["queue"]), dict(r["body"]))
            elif "confirmed" in r:
                self.outbox.pop(str(r["confirmed"]), None)
        self.send(self.broker, Subscribe(self.name, 1))
        self.set_timer(Heartbeat(), self.timing.heartbeat)
        self.publish_outbox()

    @staticmethod
    def outbox_record(queue: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"outbox": event_id(body), "queue": queue, "body": body}

    def enqueue(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Outbox records just made durable: publish them."""
        for r in records:
            self.outbox[str(r["outbox"])] = (str(r["queue"]), dict(r["body"]))
        self.publish_outbox()

    def publish_outbox(self) -> None:
        for mid, (queue, body) in self.outbox.items():
            self.send(self.broker, Publish(mid, queue, body))
        if self.outbox:
            self.set_timer(Republish(), self.timing.republish)

    def on_bus_message(self, msg: Any) -> tuple[Deliver, tuple[str, str, int, dict[str, Any]]] | None:
        """Confirms handled here; a delivery of an event returned for the node to react
        to (and acknowledge).  A delivery that is no event goes to the dead letters."""
        if isinstance(msg, Confirm):
            if self.outbox.pop(msg.id, None) is not None:
                self.log.append({"confirmed": msg.id})  # no sync: a lost one is published again
            return None
        if not isinstance(msg, Deliver):
            return None
        parsed = parse_event(msg.body)
        if parsed is None:
            self.diagnose(f"dead-lettered {msg.id}: not a saga event")
            self.send(self.broker, Nack(msg.id, requeue=False))
            return None
        return msg, parsed

    def on_bus_timer(self, timer: Any) -> bool:
        if isinstance(timer, Heartbeat):
            self.send(self.broker, Subscribe(self.name, 1))
            self.set_timer(Heartbeat(), self.timing.heartbeat)
            return True
        if isinstance(timer, Republish):
            self.publish_outbox()
            return True
        return False


class ChoreographedParticipant(_BusNode):
    """The participant of one step (see the module): ``handlers`` maps the step's
    action and its compensation, by name, to ``do(saga, data) -> result`` and
    ``undo(saga, result)`` as for an orchestrated ``Participant``."""

    LOG = "saga-steps"

    def __init__(
        self,
        name: str,
        definition: SagaDefinition,
        handlers: Mapping[str, Callable[..., Any]],
        initiator: str,
        broker: str = "broker",
        timing: Timing = Timing(),
        variant: str | None = None,
    ) -> None:
        config.check_variant(variant, VARIANTS)
        super().__init__(name, broker, timing)
        self.route = chain(definition, initiator)[name]
        self.step = definition.steps[self.route.step]
        self.handlers = dict(handlers)
        self.variant = variant
        self.book: StepBook | None = None

    def on_start(self) -> None:
        log = self.ctx.storage(self.LOG)
        self.book = StepBook(log, self.variant)
        self.pending: dict[str, int] = {}  # saga -> attempts of its compensation, failed so far
        for r in log.records():
            if "pending_undo" in r:
                self.pending[str(r["pending_undo"])] = 0
        for saga in list(self.pending):
            entry = self.book.entries.get((saga, self.route.step))
            if entry is not None and entry.state in (UNDONE, CANCELLED):
                del self.pending[saga]
        self.start_bus(log)
        for saga in self.pending:
            self.set_timer(RetryUndo(saga), self.timing.retry_initial)

    def on_message(self, src: str, msg: Any) -> None:
        received = self.on_bus_message(msg)
        if received is None:
            return
        delivery, (saga, kind, step, data) = received
        self.react(saga, kind, step, data)
        self.send(self.broker, Ack(delivery.id))

    def react(self, saga: str, kind: str, step: int, data: dict[str, Any]) -> None:
        i = self.route.step
        if (kind == STARTED and i == 0) or (kind == STEP_DONE and step == i - 1):
            self.run_step(saga, data)
        elif kind in (STEP_FAILED, COMPENSATED_EVENT) and step == i + 1:
            self.compensate(saga, data)
        elif kind == CANCELLED_EVENT:
            assert self.book is not None
            entry = self.book.entries.get((saga, i))
            if self.route.last or entry is None or entry.state != DONE:
                self.compensate(saga, data)

    def run_step(self, saga: str, data: dict[str, Any]) -> None:
        assert self.book is not None
        handler = self.handlers[self.step.action]
        route = self.route

        def outbox(entry: Entry) -> list[dict[str, Any]]:
            if entry.state == DONE:
                return [self.outbox_record(route.forward, event(saga, STEP_DONE, route.step, data))]
            return [self.outbox_record(route.back, event(saga, STEP_FAILED, route.step, data))]

        outcome = self.book.do(saga, route.step, lambda: handler(saga, data), outbox)
        if outcome.fresh:
            kind = "StepCommitted" if outcome.state == DONE else "StepRefused"
            self.ctx.record({"type": kind, "p": step_name(route.step)}, saga=saga)
            self.enqueue(outbox(Entry(outcome.state)))
        elif outcome.state == DONE:
            self.enqueue(outbox(Entry(DONE)))  # delivered again: its event again (the broker drops a copy)

    def compensate(self, saga: str, data: dict[str, Any]) -> None:
        assert self.book is not None
        undo = self.handlers[self.step.compensation]
        route = self.route

        def outbox(entry: Entry) -> list[dict[str, Any]]:
            return [self.outbox_record(route.back, event(saga, COMPENSATED_EVENT, route.step, data))]

        try:
            outcome = self.book.undo(saga, route.step, lambda result: undo(saga, result), outbox)
        except TryAgain:
            self.ctx.record({"type": "UndoFailed", "p": step_name(route.step)}, saga=saga)
            if saga not in self.pending:
                self.log.append({"pending_undo": saga, "data": data})
                self.log.sync()
                self.pending[saga] = 0
            self.pending[saga] += 1
            # The backoff of impl/resilience, as a timer: an actor never sleeps.
            delay = backoff_range("none", self.timing.retry_initial, self.timing.retry_max, self.pending[saga], 0.0)[0]
            self.set_timer(RetryUndo(saga), delay)
            return
        self.pending.pop(saga, None)
        if outcome.fresh:
            kind = "StepCompensated" if outcome.state == UNDONE else "StepCancelled"
            self.ctx.record({"type": kind, "p": step_name(route.step)}, saga=saga)
            self.enqueue(outbox(Entry(outcome.state)))
        elif outcome.state in (UNDONE, CANCELLED):
            self.enqueue(outbox(Entry(outcome.state)))  # asked again: its event again (a refused step has none)

    def on_timer(self, timer: Any) -> None:
        if self.on_bus_timer(timer):
            return
        if isinstance(timer, RetryUndo) and timer.saga in self.pending:
            data = next(
                (dict(r.get("data", {})) for r in self.log.records() if r.get("pending_undo") == timer.saga), {}
            )
            self.compensate(timer.saga, data)

    def effects(self) -> dict[tuple[str, int], Any]:
        return {} if self.book is None else self.book.effects()


class Initiator(_BusNode):
    """Starts sagas (publishes ``SagaStarted`` to the first step), cancels one that has
    no outcome after ``saga_timeout`` (publishes ``SagaCancelled`` to every
    participant), and learns how each ended from the events that come back:
    ``outcomes`` maps a saga to "completed" or "compensated".  A saga it cancelled is
    compensated, even if the last step's "done" was on its way: the cancel makes the
    last step compensate first."""

    LOG = "initiator"

    def __init__(
        self,
        name: str,
        definition: SagaDefinition,
        sagas: Sequence[tuple[str, Mapping[str, Any]]],
        broker: str = "broker",
        timing: Timing = Timing(),
    ) -> None:
        super().__init__(name, broker, timing)
        self.definition = definition
        self.participants = [s.participant for s in definition.steps]
        self.last = len(definition.steps) - 1
        self.sagas = list(sagas)
        self.outcomes: dict[str, str] = {}
        self.cancelled: set[str] = set()

    def on_start(self) -> None:
        log = self.ctx.storage(self.LOG)
        records = log.records()
        self.outcomes = {str(r["saga"]): str(r["outcome"]) for r in records if "outcome" in r}
        sent = [r["body"] for r in records if "outbox" in r]
        started = {str(b["saga"]) for b in sent if b["event"] == STARTED}
        self.cancelled = {str(b["saga"]) for b in sent if b["event"] == CANCELLED_EVENT}
        self.start_bus(log)
        fresh = [
            self.outbox_record(self.participants[0], event(saga, STARTED, -1, data))
            for saga, data in self.sagas
            if saga not in started
        ]
        for r in fresh:
            log.append(r)
        log.sync()
        self.enqueue(fresh)
        for saga, _ in self.sagas:
            if saga not in self.outcomes and saga not in self.cancelled:
                self.set_timer(SagaTimeout(saga), self.timing.saga_timeout)

    def on_message(self, src: str, msg: Any) -> None:
        received = self.on_bus_message(msg)
        if received is None:
            return
        delivery, (saga, kind, step, _) = received
        ended = {
            (STEP_DONE, self.last): COMPLETED,
            (STEP_FAILED, 0): COMPENSATED,
            (COMPENSATED_EVENT, 0): COMPENSATED,
        }.get((kind, step))
        if ended == COMPLETED and saga in self.cancelled:
            ended = None  # cancelled on the way: the compensation will come back
        if ended is not None and saga not in self.outcomes:
            self.log.append({"saga": saga, "outcome": ended})
            self.log.sync()
            self.outcomes[saga] = ended
            self.cancel_timer(SagaTimeout(saga))
        self.send(self.broker, Ack(delivery.id))

    def on_timer(self, timer: Any) -> None:
        if self.on_bus_timer(timer):
            return
        if isinstance(timer, SagaTimeout):
            self.cancel(timer.saga)

    def cancel(self, saga: str) -> None:
        """Cancel ``saga`` unless its outcome is known (or it is cancelled already)."""
        if saga in self.outcomes or saga in self.cancelled:
            return
        records = [self.outbox_record(p, event(saga, CANCELLED_EVENT, -1, {})) for p in self.participants]
        for r in records:
            r["outbox"] = f"{r['outbox']}.{r['queue']}"  # one message per participant
            self.log.append(r)
        self.log.sync()
        self.cancelled.add(saga)
        self.ctx.record({"type": "CancelSaga"}, saga=saga)
        self.enqueue(records)


@attrs.define
class Choreography:
    """A broker, the participants and an initiator: ``nodes()`` is what a runtime runs."""

    broker: Actor
    participants: list[ChoreographedParticipant]
    initiator: Initiator

    def nodes(self) -> dict[str, Callable[[Context], None]]:
        out: dict[str, Callable[[Context], None]] = {self.broker.name: self.broker.main}
        out.update({p.name: p.main for p in self.participants})
        out[self.initiator.name] = self.initiator.main
        return out
