"""Sagas: a long-running transaction as a sequence of local transactions, each at its
own participant and each with a compensation that semantically undoes it, run either
by an orchestrator (``style=orchestration``) or by the participants reacting to each
other's events (``style=choreography``).

A saga has N steps (``steps``): step i is a local transaction at participant ``pi``
(reserve a flight at p1, book a hotel at p2, charge a card at p3), and its
compensation undoes it (cancel the flight, ...).  Any step may fail: its participant
refuses it (a business failure), and nothing is committed.  The saga then
compensates the steps that committed, in reverse order, and ends *compensated*; if
every step commits it ends *completed*.  No step is ever left half done: that is
semantic atomicity, the saga's substitute for isolation and rollback.

Participants (both styles).  Each keeps a durable record per step (its *book*,
keyed by the saga and step: an idempotency key): idle, committed, refused,
compensated, or cancelled.  A step's command runs the local transaction once: it
commits or is refused, and the outcome and the answer to send are recorded in the
same local transaction (an outbox).  An undo compensates a committed step once; the
compensation may fail transiently (nothing changes, it is tried again later, for as
long as it takes).  An undo that arrives *before* its step's command (the step was
given up on and compensated without knowing whether it ran) finds nothing to undo:
the participant records a **tombstone** (cancelled) and answers "undone", and the
step's command, if it comes later, is refused.  A command the book already answers
(a copy, a retry, the late command of a cancelled step, an undo of a refused step)
is answered from the book again, and nothing takes effect.  Since a step, its record
and its answer are one local transaction, a participant that crashes loses nothing
but an answer not yet sent, which is the network losing it: a participant crash is
no step of its own.

Orchestration.  The orchestrator writes its durable saga log before each command
it sends: the saga's start, each step asked, the decision to compensate (and the
steps to undo, in order), each compensation done, and the end.  It asks the steps
in order, each once the one before has answered "done".  On a refusal it
compensates the steps before the refused one; it may also give up waiting on the
step in progress at any moment (a timeout) and compensate that step too, since it
may have run.  The network loses messages (at most ``losses``) and delivers any
message any number of times, in any order (a TLA+-style message set: every message
sent stays deliverable, so duplicates and redelivery are implicit); the orchestrator
sends the command in progress again at any moment (a retry on a timer).  It may
crash (at most ``crashes`` times): it forgets the saga it was driving (an answer
in flight to it that is lost with the crash is a loss of the network's); it restarts
from its log, resumes the unfinished saga and sends the command in progress again.

Choreography.  No orchestrator: the participants react to events on a durable bus
that delivers at least once, any event any number of times, in no promised order
(per subscriber, across senders).  The initiator's request (``Begin``) starts step
1; step i+1 starts on the event that step i committed (``Done(pi)``); the last
step's ``Done`` completes the saga.  A refusal publishes ``Failed(pi)``; a
committed participant compensates when the next step reports failed or undone, and
publishes ``Undone(pi)``, so the compensation runs back down the chain in reverse
order.  The initiator may cancel the saga at any moment before it has learned the
outcome (``Cancel``; even once the last step's ``Done`` is out, on its way to the
initiator): the last step's participant compensates, and a participant whose step
has not run records a tombstone and publishes ``Undone``, so the cancel can reach a
participant before the event that starts its step (a different sender's event).
Each event is published by the local transaction's outbox, so a participant crash
loses none.

Sources: H. Garcia-Molina and K. Salem, "Sagas" (SIGMOD 1987); G. Hohpe and B.
Woolf, *Enterprise Integration Patterns* (2003): the process manager, the idempotent
receiver, guaranteed delivery; C. Richardson, *Microservices Patterns* (2018), ch. 4:
orchestration and choreography, compensations, the transactional outbox, and
countermeasures for the lack of isolation.

State: ``status`` (each participant's record of its step, durable); the
orchestrator's durable ``log`` (``SagaLog``: the phase, the last step asked, the
steps still to undo) and volatile ``driving`` (it holds the saga in memory);
``msgs`` (the network's messages, or the bus's events); the fault budgets spent,
``lost`` and ``crashed``; and a history, ``history``: the participants' outcomes in
the order they happened (a step committed, compensated, or cancelled by a
tombstone), which the invariants read.

Actions (orchestration: the orchestrator's, then the participants', then the network's)
    Start                       The orchestrator logs the saga's start.
    Ask(p)                      It logs step p asked and sends p's command: the first step, or the next after "done".
    Compensate(p, cause)        It decides to compensate (p refused or timed out): logs the steps to undo, sends one.
    Compensated(p)              It receives "undone" from p, the compensation in progress; logs it, sends the next undo.
    Finish(outcome)             It logs the end: completed after the last "done", compensated with nothing left to undo.
    Resend(p)                   It sends the command in progress to p again (a retry on a timer; not logged).
    OrchestratorCrash           It crashes: it forgets the saga it drove; its log stays (not logged).
    Recover                     It restarts, reads its log, resumes the saga and sends the command in progress again.
    StepCommitted(p)            p runs its step: the local transaction commits; p answers "done".
    StepRefused(p)              p refuses its step (a business failure): nothing is committed; p answers "failed".
    StepCompensated(p)          p compensates its committed step; p answers "undone".
    UndoFailed(p)               p's compensation fails transiently: nothing changes; p answers "try again".
    StepCancelled(p)            An undo reaches p before its step ran: p records a tombstone and answers "undone".
    AnswerFromRecord(p, command) p answers a command its book answers already; nothing takes effect (not logged).
    Lose(msg)                   The network loses a message (not logged).
Actions (choreography: the same six of the participants, reacting to events, and)
    CancelSaga                  The initiator cancels the saga before it has learned the outcome.

Invariants
    TypeOK                              every variable holds a value of its type.
    SemanticAtomicity                   a finished saga has every step committed, or every committed step compensated.
    ReverseOrder                        a compensation takes effect only when no later step is in effect.
    NothingCompensatedThatDidNotCommit  a step is compensated only after it committed.
    AtMostOnce                          each step and each compensation takes effect at most once.
    NoStepAfterUndo                     no step takes effect after its participant answered its undo.

Reachable
    SagaCompleted                   the saga finished completed: every step committed.
    CompensatedAfterLastStepFailed  the last step was refused; the saga finished compensated, every other step undone.
    UndoOvertookStep                a participant holds a tombstone for a step whose command or start event was sent.
    CompensationRetried             (orchestration) a compensation failed transiently, and later took effect.
    FinishedAfterCrash              (orchestration) the orchestrator crashed, resumed, and the saga finished.
    FinishedAfterLoss               (orchestration) a message was lost, and the saga finished.
    CancelledAfterCommit            (choreography) cancelled after a step committed, the saga finished compensated.

Eventually
    SagaFinishes    every saga finishes, completed or compensated (under strong fairness of every step).

"The saga decided to compensate, so no step takes effect after" is not an invariant
of a correct saga: the step in doubt at a timeout, or a step whose start event
reached its participant before the cancel did, may commit after the decision, and is
then compensated.  What must never happen is ``NoStepAfterUndo``: a step committing
after its participant has answered its undo, when the saga has counted it undone.

Bounds: the budgets ``losses`` and ``crashes`` (orchestration only: the bus neither
loses nor crashes); transient compensation failures are unbounded, since they
change nothing but an answer (the graph stays finite).

FinishedAfterCrash and FinishedAfterLoss are stated where their budget is not 0.

Variants (orchestration unless ``params`` say otherwise), and what catches each
    compensate_forward_order      compensations run from the first step up           ReverseOrder
    forget_compensation_on_crash  a restarted orchestrator ends a compensating saga  SemanticAtomicity
    non_idempotent_participant    a participant runs a redelivered command again     AtMostOnce
    give_up_compensation          a transient compensation failure ends the saga     SemanticAtomicity
    no_compensation_retry         steps are retried, but each undo is sent once      SagaFinishes
    no_tombstone                  an early undo records nothing: late step commits   NoStepAfterUndo
    blind_compensation            a step never committed is compensated              NothingCompensatedThatDidNotCommit
    react_before_commit           (choreography) an early cancel is not recorded     SemanticAtomicity
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from distcheck.spec.codec import to_json
from distcheck.spec.contract import (
    Action,
    Eventually,
    Exists,
    Invariant,
    Next,
    Reachable,
    Spec,
    param,
    rule,
    variant,
)
from distcheck.spec.network import MessageSet
from distcheck.spec.values import FrozenMap

ORCHESTRATION, CHOREOGRAPHY = "orchestration", "choreography"
STYLES = (ORCHESTRATION, CHOREOGRAPHY)
ORCHESTRATOR, NETWORK, INITIATOR = "orchestrator", "network", "initiator"

# A participant's record of its step.
IDLE, COMMITTED, REFUSED, COMPENSATED, CANCELLED = "idle", "committed", "refused", "compensated", "cancelled"
RECORDS = (IDLE, COMMITTED, REFUSED, COMPENSATED, CANCELLED)

# The orchestrator's log: the saga's phase.
NEW, RUNNING, COMPENSATING = "new", "running", "compensating"
PHASES = (NEW, RUNNING, COMPENSATING, "completed", "compensated")
OUTCOMES = ("completed", "compensated")
CAUSES = ("refused", "timeout")  # why the orchestrator compensates
COMMANDS = ("do", "undo")

# The history: what happened at the participants.
COMMIT, COMPENSATE, CANCEL = "commit", "compensate", "cancel"


def participant_names(n: int) -> tuple[str, ...]:
    return tuple(f"p{i}" for i in range(1, n + 1))


# ------------------------------------------------------------------------ messages
# Orchestration: commands to a participant (Do, Undo) and its answers (Done, Failed,
# Undone, TryAgain).  Choreography: events on the bus (Begin, Cancel, and the same
# Done, Failed, Undone, published by the participant whose step it is).


@attrs.frozen
class Do:
    p: str

    def __str__(self) -> str:
        return f"Do({self.p})"


@attrs.frozen
class Undo:
    p: str

    def __str__(self) -> str:
        return f"Undo({self.p})"


@attrs.frozen
class Done:
    p: str

    def __str__(self) -> str:
        return f"Done({self.p})"


@attrs.frozen
class Failed:
    p: str

    def __str__(self) -> str:
        return f"Failed({self.p})"


@attrs.frozen
class Undone:
    p: str

    def __str__(self) -> str:
        return f"Undone({self.p})"


@attrs.frozen
class TryAgain:
    p: str

    def __str__(self) -> str:
        return f"TryAgain({self.p})"


@attrs.frozen
class Begin:
    def __str__(self) -> str:
        return "Begin"


@attrs.frozen
class Cancel:
    def __str__(self) -> str:
        return "Cancel"


Message = Do | Undo | Done | Failed | Undone | TryAgain | Begin | Cancel

# -------------------------------------------------------------------------- state


@attrs.frozen
class SagaLog:
    """The orchestrator's durable saga log, as recovery reads it."""

    phase: str  # NEW, RUNNING, COMPENSATING, or an outcome
    asked: int  # the last step asked (0: none)
    todo: tuple[int, ...]  # compensating: the steps still to undo, in order; the first is in progress

    def __str__(self) -> str:
        todo = f" todo={list(self.todo)}" if self.phase == COMPENSATING else ""
        return f"{self.phase} asked={self.asked}{todo}"


@attrs.frozen
class Effect:
    """One outcome at a participant, in the history: ``kind`` is COMMIT, COMPENSATE
    or CANCEL (an undo answered before the step ran)."""

    kind: str
    p: str

    def __str__(self) -> str:
        return f"{self.kind} {self.p}"


@attrs.frozen
class SagaState:
    status: FrozenMap[str, str]
    log: SagaLog
    driving: bool
    msgs: MessageSet[Message]
    lost: int
    crashed: int
    history: tuple[Effect, ...]


# ------------------------------------------------------------------------ actions


class OrchestratorAction(Action):
    __slots__ = ()
    ACTOR = ORCHESTRATOR


@attrs.frozen
class Start(OrchestratorAction):
    pass


@attrs.frozen
class Ask(OrchestratorAction):
    p: str


@attrs.frozen
class Compensate(OrchestratorAction):
    p: str
    cause: str


@attrs.frozen
class Compensated(OrchestratorAction):
    p: str


@attrs.frozen
class Finish(OrchestratorAction):
    outcome: str


@attrs.frozen
class Resend(OrchestratorAction):
    p: str


@attrs.frozen
class OrchestratorCrash(OrchestratorAction):
    pass


@attrs.frozen
class Recover(OrchestratorAction):
    pass


class ParticipantAction(Action):
    __slots__ = ()
    ACTOR = "p"


@attrs.frozen
class StepCommitted(ParticipantAction):
    p: str


@attrs.frozen
class StepRefused(ParticipantAction):
    p: str


@attrs.frozen
class StepCompensated(ParticipantAction):
    p: str


@attrs.frozen
class UndoFailed(ParticipantAction):
    p: str


@attrs.frozen
class StepCancelled(ParticipantAction):
    p: str


@attrs.frozen
class AnswerFromRecord(ParticipantAction):
    p: str
    command: str


@attrs.frozen
class Lose(Action):
    ACTOR = NETWORK
    msg: Message


@attrs.frozen
class CancelSaga(Action):
    ACTOR = INITIATOR


SagaAction = (
    Start
    | Ask
    | Compensate
    | Compensated
    | Finish
    | Resend
    | OrchestratorCrash
    | Recover
    | StepCommitted
    | StepRefused
    | StepCompensated
    | UndoFailed
    | StepCancelled
    | AnswerFromRecord
    | Lose
    | CancelSaga
)


@attrs.frozen
class Config:
    style: str = param(ORCHESTRATION, help="orchestration or choreography")
    steps: int = param(3, help="steps in the saga, each at its own participant p1, p2, ...", minimum=1, maximum=5)
    losses: int = param(1, help="messages the network may lose (orchestration)", minimum=0, maximum=3)
    crashes: int = param(1, help="crashes of the orchestrator (orchestration)", minimum=0, maximum=3)
    variant: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}, got {self.style!r}")
        for f in attrs.fields(Config):
            minimum, maximum = f.metadata.get("minimum"), f.metadata.get("maximum")
            value = getattr(self, f.name)
            if minimum is not None and not minimum <= value <= maximum:
                raise ValueError(f"{f.name} must be between {minimum} and {maximum}, got {value}")


# ------------------------------------------------------------------------ the spec


class Saga(Spec[SagaState, SagaAction]):
    """One saga, in the style its config names: the participants' rules are the same
    in both; what asks them (the orchestrator's commands, or the other participants'
    events) is ``asked_to_do`` and ``asked_to_undo``, and how they answer is
    ``answer``."""

    name = "saga"

    def __init__(self, config: Config = Config()) -> None:
        self.config = config
        self.orchestrated = config.style == ORCHESTRATION
        self.participants = participant_names(config.steps)
        self.index = {p: i for i, p in enumerate(self.participants, 1)}
        self.last = config.steps

    def init_states(self) -> Iterable[SagaState]:
        yield SagaState(
            status=FrozenMap({p: IDLE for p in self.participants}),
            log=SagaLog(NEW, 0, ()),
            driving=True,
            msgs=MessageSet() if self.orchestrated else MessageSet([Begin()]),
            lost=0,
            crashed=0,
            history=(),
        )

    def next(self) -> Next:
        participants = Exists(
            "p",
            self.participants,
            self.step_committed,
            self.step_refused,
            self.step_compensated,
            self.undo_failed,
            self.step_cancelled,
            Exists("command", COMMANDS, self.answer_from_record),
        )
        if not self.orchestrated:
            return (self.cancel_saga, participants)
        return (
            self.start,
            Exists("p", self.participants, self.ask, Exists("cause", CAUSES, self.compensate), self.compensated),
            Exists("outcome", OUTCOMES, self.finish),
            Exists("p", self.participants, self.resend),
            self.orchestrator_crash,
            self.recover,
            participants,
            Exists("msg", self.in_flight, self.lose),
        )

    def p(self, i: int) -> str:
        return self.participants[i - 1]

    # ============================================================ the orchestrator

    @rule(Start)
    def start(self, s: SagaState) -> SagaState | None:
        """The orchestrator logs the saga's start."""
        if s.log.phase != NEW:
            return None
        return attrs.evolve(s, log=SagaLog(RUNNING, 0, ()))

    @rule(Ask)
    def ask(self, s: SagaState, p: str) -> SagaState | None:
        """The orchestrator, driving a running saga, logs step p asked and sends p's
        command: the first step, or the next once the one before answered "done"."""
        i = self.index[p]
        if not s.driving or s.log.phase != RUNNING or s.log.asked != i - 1:
            return None
        if i > 1 and Done(self.p(i - 1)) not in s.msgs:
            return None
        return attrs.evolve(s, log=SagaLog(RUNNING, i, ()), msgs=s.msgs.send(Do(p)))

    @rule(Compensate)
    def compensate(self, s: SagaState, p: str, cause: str) -> SagaState | None:
        """The orchestrator decides to compensate: step p, in progress, was refused
        (its "failed" received: the steps before it are undone), or timed out (no
        answer yet: it may have run, so it is undone too).  It logs the steps to undo,
        in order, and sends the first undo."""
        i = self.index[p]
        if not s.driving or s.log.phase != RUNNING or s.log.asked != i:
            return None
        if cause == "refused" and Failed(p) not in s.msgs:
            return None
        todo = self.plan(i - 1 if cause == "refused" else i)
        return self.undoing(s, todo)

    def plan(self, last: int) -> tuple[int, ...]:
        """The steps to undo when steps 1..last may have committed: the last first."""
        return tuple(range(last, 0, -1))

    def undoing(self, s: SagaState, todo: tuple[int, ...]) -> SagaState:
        """The log says compensating with ``todo`` left; the first undo is sent."""
        msgs = s.msgs.send(Undo(self.p(todo[0]))) if todo else s.msgs
        return attrs.evolve(s, log=SagaLog(COMPENSATING, s.log.asked, todo), msgs=msgs)

    @rule(Compensated)
    def compensated(self, s: SagaState, p: str) -> SagaState | None:
        """The orchestrator receives "undone" from p, whose compensation is in
        progress: it logs it and sends the next undo."""
        if not s.driving or s.log.phase != COMPENSATING or s.log.todo[:1] != (self.index[p],):
            return None
        if Undone(p) not in s.msgs:
            return None
        return self.undoing(s, s.log.todo[1:])

    @rule(Finish)
    def finish(self, s: SagaState, outcome: str) -> SagaState | None:
        """The orchestrator logs the saga's end: completed once the last step answered
        "done", compensated once nothing is left to undo."""
        if not s.driving:
            return None
        if outcome == "completed":
            ok = s.log.phase == RUNNING and s.log.asked == self.last and Done(self.p(self.last)) in s.msgs
        else:
            ok = s.log.phase == COMPENSATING and self.nothing_left_to_undo(s)
        return attrs.evolve(s, log=SagaLog(outcome, s.log.asked, ())) if ok else None

    def nothing_left_to_undo(self, s: SagaState) -> bool:
        return s.log.todo == ()

    @rule(Resend)
    def resend(self, s: SagaState, p: str) -> SagaState | None:
        """The orchestrator sends the command in progress, to p, again: a retry on
        a timer, at any moment.  (While a copy is in flight a resend changes nothing
        the message set can show, so it is a step only once every copy is lost.)"""
        if not s.driving or self.in_progress(s) != p or self.command_in_progress(s) in s.msgs:
            return None
        return attrs.evolve(s, msgs=s.msgs.send(self.command_in_progress(s)))

    def in_progress(self, s: SagaState) -> str | None:
        """Whose answer the orchestrator waits for: the step asked, or the undo in progress."""
        if s.log.phase == RUNNING and s.log.asked:
            return self.p(s.log.asked)
        if s.log.phase == COMPENSATING and s.log.todo:
            return self.p(s.log.todo[0])
        return None

    def command_in_progress(self, s: SagaState) -> Message:
        p = self.in_progress(s)
        assert p is not None
        return Do(p) if s.log.phase == RUNNING else Undo(p)

    @rule(OrchestratorCrash)
    def orchestrator_crash(self, s: SagaState) -> SagaState | None:
        """The orchestrator crashes while driving an unfinished saga: it forgets the
        saga (its memory); its log stays.  (An answer lost with the crash is a loss
        of the network's, ``Lose``.)"""
        if not s.driving or s.log.phase not in (RUNNING, COMPENSATING) or s.crashed >= self.config.crashes:
            return None
        return attrs.evolve(s, driving=False, crashed=s.crashed + 1)

    @rule(Recover)
    def recover(self, s: SagaState) -> SagaState | None:
        """The orchestrator restarts, reads its log and resumes the unfinished saga
        where it was: it sends the command in progress again (or goes on to finish)."""
        if s.driving:
            return None
        resumed = attrs.evolve(s, driving=True)
        if self.in_progress(resumed) is None:
            return resumed
        return attrs.evolve(resumed, msgs=s.msgs.send(self.command_in_progress(resumed)))

    # ============================================================ the participants

    def asked_to_do(self, s: SagaState, p: str) -> bool:
        """What asks p to run its step: the orchestrator's command, or the event that
        the step before committed (the initiator's request for the first)."""
        if self.orchestrated:
            return Do(p) in s.msgs
        i = self.index[p]
        return (Begin() if i == 1 else Done(self.p(i - 1))) in s.msgs

    def asked_to_undo(self, s: SagaState, p: str) -> bool:
        """What asks p to undo its step: the orchestrator's undo; or, in choreography,
        the next step's "failed" or "undone", or a cancel (for a committed step, only
        at the last: the others wait for the step after them to be undone)."""
        if self.orchestrated:
            return Undo(p) in s.msgs
        i = self.index[p]
        if i < self.last and (Failed(self.p(i + 1)) in s.msgs or Undone(self.p(i + 1)) in s.msgs):
            return True
        return Cancel() in s.msgs and (i == self.last or s.status[p] != COMMITTED)

    def answer(self, s: SagaState, reply: Message | None) -> MessageSet[Message]:
        """p's answer, recorded with its outcome and sent (an event published) after:
        in choreography a "try again" is no event (the bus delivers the event again)."""
        if reply is None or (not self.orchestrated and isinstance(reply, TryAgain)):
            return s.msgs
        return s.msgs.send(reply)

    def record_outcome(self, s: SagaState, p: str, record: str, reply: Message | None, effect: str | None) -> SagaState:
        """p's new record, its answer, and what took effect, in one local transaction."""
        history = (*s.history, Effect(effect, p)) if effect else s.history
        return attrs.evolve(s, status=s.status.set(p, record), msgs=self.answer(s, reply), history=history)

    @rule(StepCommitted)
    def step_committed(self, s: SagaState, p: str) -> SagaState | None:
        """Asked to run its step, p, with no record of it, runs the local transaction,
        which commits; the record and the answer "done" are written with it."""
        if not self.asked_to_do(s, p) or not self.runs_step(s.status[p]):
            return None
        return self.record_outcome(s, p, COMMITTED, Done(p), COMMIT)

    def runs_step(self, record: str) -> bool:
        """Whether p runs its step's transaction: only with no record of the step."""
        return record == IDLE

    @rule(StepRefused)
    def step_refused(self, s: SagaState, p: str) -> SagaState | None:
        """Asked to run its step, p, with no record of it, refuses it (a business
        failure): nothing is committed; it records the refusal and answers "failed"."""
        if not self.asked_to_do(s, p) or s.status[p] != IDLE:
            return None
        return self.record_outcome(s, p, REFUSED, Failed(p), None)

    @rule(StepCompensated)
    def step_compensated(self, s: SagaState, p: str) -> SagaState | None:
        """Asked to undo its committed step, p runs the compensation, which commits;
        it records it and answers "undone"."""
        if not self.asked_to_undo(s, p) or not self.compensates(s.status[p]):
            return None
        return self.record_outcome(s, p, COMPENSATED, Undone(p), COMPENSATE)

    def compensates(self, record: str) -> bool:
        """Whether p runs its compensation: only for a step its record says committed."""
        return record == COMMITTED

    @rule(UndoFailed)
    def undo_failed(self, s: SagaState, p: str) -> SagaState | None:
        """Asked to undo its committed step, p's compensation fails transiently:
        nothing changes, and p answers "try again"."""
        if not self.asked_to_undo(s, p) or s.status[p] != COMMITTED:
            return None
        return self.record_outcome(s, p, COMMITTED, TryAgain(p), None)

    @rule(StepCancelled)
    def step_cancelled(self, s: SagaState, p: str) -> SagaState | None:
        """Asked to undo a step it has no record of (the undo overtook the step), p
        has nothing to undo: it records a tombstone, so that the step is refused if it
        comes later, and answers "undone"."""
        if not self.asked_to_undo(s, p) or s.status[p] != IDLE:
            return None
        return self.record_outcome(s, p, self.tombstone(), Undone(p), CANCEL)

    def tombstone(self) -> str:
        """The record an undo leaves for a step that has not run: cancelled."""
        return CANCELLED

    @rule(AnswerFromRecord)
    def answer_from_record(self, s: SagaState, p: str, command: str) -> SagaState | None:
        """Asked again to do or undo its step, p answers from its record and nothing
        takes effect: "done" for a step committed (or compensated since: the answer
        the orchestrator had), "failed" for one refused or cancelled by a tombstone,
        "undone" to an undo of a step refused, compensated or cancelled.  (In
        choreography the events are out already: there is nothing to publish again, so
        it is no step.)"""
        record = s.status[p]
        if command == "do":
            if not self.asked_to_do(s, p) or record == IDLE:
                return None
            reply: Message = Done(p) if record in (COMMITTED, COMPENSATED) else Failed(p)
        else:
            if not self.asked_to_undo(s, p) or record not in (REFUSED, COMPENSATED, CANCELLED):
                return None
            reply = Undone(p)
        if not self.orchestrated or reply in s.msgs:
            return None  # the answer is out already: answering again changes nothing
        return attrs.evolve(s, msgs=s.msgs.send(reply))

    # ============================================================ the environment

    def in_flight(self, s: SagaState) -> list[Message]:
        return s.msgs.deliverable()

    @rule(Lose)
    def lose(self, s: SagaState, msg: Message) -> SagaState | None:
        """The network loses a message (every copy of it), within its budget."""
        if s.lost >= self.config.losses or msg not in s.msgs:
            return None
        return attrs.evolve(s, msgs=s.msgs.without(msg), lost=s.lost + 1)

    @rule(CancelSaga)
    def cancel_saga(self, s: SagaState) -> SagaState | None:
        """The initiator cancels the saga before it has learned its outcome: it
        publishes Cancel, once.  The outcome may be out already, on its way to the
        initiator (the spec does not model what the initiator has heard): after the
        last step's "done" the last participant then compensates, and the saga ends
        compensated after all; after the first step's "failed" or "undone" the cancel
        finds nothing left to undo."""
        if Cancel() in s.msgs:
            return None
        return attrs.evolve(s, msgs=s.msgs.send(Cancel()))

    def observe(self, s: SagaState, a: SagaAction) -> Mapping[str, Any] | None:
        """What an implementation logs: every step by its action, except the
        network's losses (nobody sees them), the orchestrator's crash (the crashed
        process cannot log it; its Recover is logged), its resends and a participant's
        answers from its record (copies that change nothing a later step does not
        show: logging them is allowed by not expecting them).  The actor is not
        compared: each action names who takes it (a participant by its step, ``p``,
        whatever its service is called; the orchestrator and the initiator are one
        each), so a log may name its nodes as the deployment does."""
        if isinstance(a, (Lose, OrchestratorCrash, Resend, AnswerFromRecord)):
            return None
        return {"action": to_json(a)}

    # ============================================================ properties

    def completed(self, s: SagaState) -> bool:
        """The saga finished completed: the orchestrator logged it; in choreography,
        the last step's "done" is out and the saga was not cancelled."""
        if self.orchestrated:
            return s.log.phase == "completed"
        return Done(self.p(self.last)) in s.msgs and Cancel() not in s.msgs

    def compensated_end(self, s: SagaState) -> bool:
        """The saga finished compensated: the orchestrator logged it; in
        choreography, the first step reported failed or undone."""
        if self.orchestrated:
            return s.log.phase == "compensated"
        return Failed(self.p(1)) in s.msgs or Undone(self.p(1)) in s.msgs

    def finished(self, s: SagaState) -> bool:
        return self.completed(s) or self.compensated_end(s)

    def invariants(self) -> Sequence[Invariant[SagaState]]:
        return (
            Invariant("TypeOK", "every variable holds a value of its type", self.type_ok),
            Invariant(
                "SemanticAtomicity",
                "a finished saga has every step committed, or every committed step compensated",
                self.semantic_atomicity,
            ),
            Invariant(
                "ReverseOrder", "a compensation takes effect only when no later step is in effect", reverse_order
            ),
            Invariant(
                "NothingCompensatedThatDidNotCommit",
                "a step is compensated only after it committed",
                nothing_compensated_that_did_not_commit,
            ),
            Invariant("AtMostOnce", "each step and each compensation takes effect at most once", at_most_once),
            Invariant(
                "NoStepAfterUndo", "no step takes effect after its participant answered its undo", no_step_after_undo
            ),
        )

    def type_ok(self, s: SagaState) -> bool:
        known = set(self.participants)
        return (
            set(s.status) == known
            and all(r in RECORDS for r in s.status.values())
            and s.log.phase in PHASES
            and 0 <= s.log.asked <= self.last
            and all(1 <= i <= self.last for i in s.log.todo)
            and all(getattr(m, "p", self.p(1)) in known for m in s.msgs.sent)
            and 0 <= s.lost <= self.config.losses
            and 0 <= s.crashed <= self.config.crashes
            and all(e.kind in (COMMIT, COMPENSATE, CANCEL) and e.p in known for e in s.history)
        )

    def semantic_atomicity(self, s: SagaState) -> bool:
        in_effect = steps_in_effect(s.history)
        if self.completed(s):
            return in_effect == set(self.participants) and not any(e.kind == COMPENSATE for e in s.history)
        if self.compensated_end(s):
            return not in_effect
        return True

    def reachable(self) -> Sequence[Reachable[SagaState]]:
        common: tuple[Reachable[SagaState], ...] = (
            Reachable("SagaCompleted", "the saga finished completed: every step committed", self.completed),
            Reachable(
                "CompensatedAfterLastStepFailed",
                "the last step was refused and the saga finished compensated, every other step undone",
                lambda s: (
                    s.status[self.p(self.last)] == REFUSED
                    and self.compensated_end(s)
                    and all(s.status[p] == COMPENSATED for p in self.participants[:-1])
                ),
            ),
            Reachable(
                "UndoOvertookStep",
                "a participant holds a tombstone for a step whose command or start event was sent",
                lambda s: any(s.status[p] == CANCELLED and self.asked_to_do(s, p) for p in self.participants),
            ),
        )
        if not self.orchestrated:
            return (
                *common,
                Reachable(
                    "CancelledAfterCommit",
                    "the saga was cancelled after a step committed, and finished compensated",
                    lambda s: Cancel() in s.msgs and self.compensated_end(s) and COMPENSATED in s.status.values(),
                ),
            )
        faults: tuple[Reachable[SagaState], ...] = (
            Reachable(
                "FinishedAfterCrash",
                "the orchestrator crashed, resumed from its log, and the saga finished",
                lambda s: s.crashed > 0 and self.finished(s),
            ),
            Reachable(
                "FinishedAfterLoss",
                "a message was lost, and the saga finished",
                lambda s: s.lost > 0 and self.finished(s),
            ),
        )
        budgets = (self.config.crashes, self.config.losses)
        return (
            *common,
            Reachable(
                "CompensationRetried",
                "a compensation failed transiently, and later took effect",
                lambda s: any(s.status[p] == COMPENSATED and TryAgain(p) in s.msgs for p in self.participants),
            ),
            *(prop for prop, budget in zip(faults, budgets) if budget),
        )

    def eventually(self) -> Sequence[Eventually[SagaState]]:
        return (Eventually("SagaFinishes", "every saga finishes, completed or compensated", self.finished),)


def steps_in_effect(history: Iterable[Effect]) -> set[str]:
    """The steps committed and not compensated, after ``history``."""
    in_effect: set[str] = set()
    for e in history:
        if e.kind == COMMIT:
            in_effect.add(e.p)
        elif e.kind == COMPENSATE:
            in_effect.discard(e.p)
    return in_effect


def step_number(p: str) -> int:
    return int(p[1:])


def reverse_order(s: SagaState) -> bool:
    in_effect: set[str] = set()
    for e in s.history:
        if e.kind == COMMIT:
            in_effect.add(e.p)
        elif e.kind == COMPENSATE:
            if any(step_number(q) > step_number(e.p) for q in in_effect):
                return False
            in_effect.discard(e.p)
    return True


def nothing_compensated_that_did_not_commit(s: SagaState) -> bool:
    committed: set[str] = set()
    for e in s.history:
        if e.kind == COMMIT:
            committed.add(e.p)
        elif e.kind == COMPENSATE and e.p not in committed:
            return False
    return True


def at_most_once(s: SagaState) -> bool:
    effects = [e for e in s.history if e.kind in (COMMIT, COMPENSATE)]
    return len(set(effects)) == len(effects)


def no_step_after_undo(s: SagaState) -> bool:
    undone: set[str] = set()
    for e in s.history:
        if e.kind == COMMIT and e.p in undone:
            return False
        if e.kind in (COMPENSATE, CANCEL):
            undone.add(e.p)
    return True


# ------------------------------------------------------------------------ variants
# Each a real mistake, as a subclass that overrides the one rule or helper it breaks.


@variant("compensate_forward_order", "compensations run from the first step up, in the order the steps ran")
class CompensateForwardOrder(Saga):
    def plan(self, last: int) -> tuple[int, ...]:
        """The steps to undo, in the order they ran: step 1 is compensated while a
        later step, which may depend on it, is still in effect."""
        return tuple(range(1, last + 1))


@variant("forget_compensation_on_crash", "a restarted orchestrator ends a saga it finds compensating, as compensated")
class ForgetCompensationOnCrash(Saga):
    @rule(Recover)
    def recover(self, s: SagaState) -> SagaState | None:
        """Recovery resumes running sagas only: one whose log says compensating is
        taken for rolled back and logged compensated, its pending undos forgotten."""
        if not s.driving and s.log.phase == COMPENSATING:
            return attrs.evolve(s, driving=True, log=SagaLog("compensated", s.log.asked, ()))
        return super().recover(s)


@variant("non_idempotent_participant", "a participant runs a redelivered command again")
class NonIdempotentParticipant(Saga):
    def runs_step(self, record: str) -> bool:
        """No idempotency key: a copy of a command it committed (a retry, a duplicate)
        runs the transaction again."""
        return record in (IDLE, COMMITTED)


@variant("give_up_compensation", "a compensation that fails transiently is given up, and the saga ends")
class GiveUpCompensation(Saga):
    def nothing_left_to_undo(self, s: SagaState) -> bool:
        """A "try again" for the undo in progress ends the saga as compensated, with
        that step still in effect."""
        return s.log.todo == () or TryAgain(self.p(s.log.todo[0])) in s.msgs


@variant("no_compensation_retry", "the orchestrator retries a step's command, but sends each undo once")
class NoCompensationRetry(Saga):
    @rule(Resend)
    def resend(self, s: SagaState, p: str) -> SagaState | None:
        """Only a step's command is sent again: an undo, or its answer, lost in the
        network leaves the saga compensating for ever."""
        if s.log.phase != RUNNING:
            return None
        return super().resend(s, p)


@variant("no_tombstone", "an undo that arrives before its step records nothing, so the late step commits")
class NoTombstone(Saga):
    def tombstone(self) -> str:
        """Nothing to undo, nothing recorded: the step's command, arriving later, runs."""
        return IDLE


@variant("blind_compensation", "a participant runs its compensation for a step it never committed")
class BlindCompensation(Saga):
    def compensates(self, record: str) -> bool:
        """The compensation runs on every undo of a step not yet undone, without
        looking up whether the step ran: a refund of a charge never made."""
        return record in (IDLE, COMMITTED)


@variant(
    "react_before_commit",
    "a participant reacts to a cancel that arrives before its step by publishing undone, recording nothing",
    params={"style": CHOREOGRAPHY},
)
class ReactBeforeCommit(Saga):
    def tombstone(self) -> str:
        """The cancel is answered (undone is published) but not recorded: the start
        event, arriving later, commits the step after the saga was compensated."""
        return IDLE
