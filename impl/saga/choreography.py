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
                       ``Compensated(i+1)``          (the initiator after the first)
=====================  ============================  ===============================

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

from distcheck.impl.messaging.messages import CLIENT_MESSAGES, Ack, Confirm, Deliver, Publish, Subscribe
from distcheck.impl.runtime import config
from distcheck.impl.runtime.actor import Actor
from distcheck.impl.runtime.api import Context, Storage
from distcheck.impl.saga.orchestrator import COMPENSATED, COMPLETED, SagaDefinition
from distcheck.impl.saga.participant import CANCELLED, DONE, UNDONE, Entry, StepBook, TryAgain

STARTED, STEP_DONE, STEP_FAILED, COMPENSATED_EVENT = "SagaStarted", "StepDone", "StepFailed", "Compensated"

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


@attrs.frozen
class Route:
    """Who hears from step ``step``'s participant: ``forward`` (the next step's queue,
    or the initiator's) and ``back`` (the previous step's, or the initiator's)."""

    step: int
    forward: str
    back: str


def chain(definition: SagaDefinition, initiator: str) -> dict[str, Route]:
    """Each participant's place in the chain, by participant name."""
    steps = definition.steps
    names = [s.participant for s in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"a choreographed saga has one step per participant; {definition.name} repeats one")
    return {
        s.participant: Route(i, names[i + 1] if i + 1 < len(steps) else initiator, names[i - 1] if i else initiator)
        for i, s in enumerate(steps)
    }


def event(saga: str, kind: str, step: int, data: Mapping[str, Any]) -> dict[str, Any]:
    return {"saga": saga, "event": kind, "step": step, "data": dict(data)}


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

    def on_bus_message(self, msg: Any) -> Deliver | None:
        """Confirms handled here; a delivery returned for the node to react to."""
        if isinstance(msg, Confirm):
            if self.outbox.pop(msg.id, None) is not None:
                self.log.append({"confirmed": msg.id})  # no sync: a lost one is published again
            return None
        return msg if isinstance(msg, Deliver) else None

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
        delivery = self.on_bus_message(msg)
        if delivery is None:
            return
        body = delivery.body
        if isinstance(body, dict) and {"saga", "event", "step", "data"} <= set(body):
            self.react(str(body["saga"]), str(body["event"]), int(body["step"]), dict(body["data"]))
        self.send(self.broker, Ack(delivery.id))

    def react(self, saga: str, kind: str, step: int, data: dict[str, Any]) -> None:
        i = self.route.step
        if (kind == STARTED and i == 0) or (kind == STEP_DONE and step == i - 1):
            self.run_step(saga, data)
        elif kind in (STEP_FAILED, COMPENSATED_EVENT) and step == i + 1:
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
            self.ctx.record({"type": kind, "p": self.name, "step": route.step}, saga=saga)
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
            self.ctx.record({"type": "UndoFailed", "p": self.name, "step": route.step}, saga=saga)
            if saga not in self.pending:
                self.log.append({"pending_undo": saga, "data": data})
                self.log.sync()
                self.pending[saga] = 0
            self.pending[saga] += 1
            delay = min(self.timing.retry_max, self.timing.retry_initial * 2 ** min(self.pending[saga], 30))
            self.set_timer(RetryUndo(saga), delay)
            return
        self.pending.pop(saga, None)
        if outcome.fresh:
            kind = "StepCompensated" if outcome.state == UNDONE else "StepCancelled"
            self.ctx.record({"type": kind, "p": self.name, "step": route.step}, saga=saga)
        self.enqueue(outbox(Entry(outcome.state)))

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
    """Starts sagas (publishes ``SagaStarted`` to the first step) and learns how each
    ended from the events that come back: ``outcomes`` maps a saga to "completed" or
    "compensated"."""

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
        self.first = definition.steps[0].participant
        self.last = len(definition.steps) - 1
        self.sagas = list(sagas)
        self.outcomes: dict[str, str] = {}

    def on_start(self) -> None:
        log = self.ctx.storage(self.LOG)
        self.outcomes = {str(r["saga"]): str(r["outcome"]) for r in log.records() if "outcome" in r}
        started = {str(r["outbox"]).split(".")[0] for r in log.records() if "outbox" in r}
        self.start_bus(log)
        records = [
            self.outbox_record(self.first, event(saga, STARTED, -1, data))
            for saga, data in self.sagas
            if saga not in started
        ]
        for r in records:
            log.append(r)
        log.sync()
        for saga, _ in self.sagas:
            if saga not in started:
                self.ctx.record({"type": "Start"}, saga=saga)
        self.enqueue(records)

    def on_message(self, src: str, msg: Any) -> None:
        delivery = self.on_bus_message(msg)
        if delivery is None:
            return
        body = delivery.body
        if isinstance(body, dict) and {"saga", "event", "step"} <= set(body):
            saga, kind, step = str(body["saga"]), str(body["event"]), int(body["step"])
            ended = {
                (STEP_DONE, self.last): COMPLETED,
                (STEP_FAILED, 0): COMPENSATED,
                (COMPENSATED_EVENT, 0): COMPENSATED,
            }.get((kind, step))
            if ended is not None and saga not in self.outcomes:
                self.log.append({"saga": saga, "outcome": ended})
                self.log.sync()
                self.outcomes[saga] = ended
                self.ctx.record({"type": "Finish", "status": ended}, saga=saga)
        self.send(self.broker, Ack(delivery.id))

    def on_timer(self, timer: Any) -> None:
        self.on_bus_timer(timer)


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
