"""Two-phase commit as runtime nodes: a transaction coordinator, resource managers,
and the client call that runs a transaction.

Where it sits: written on ``impl.runtime`` only, so the same code runs under the
controlled scheduler (tests, ``distcheck simulate twophase``) and in free mode over
TCP.  It mirrors ``spec/twophase.py`` without importing it: every step that the spec
names is recorded with ``ctx.record`` in the spec's vocabulary (``TMRcvPrepared``,
``TMCommit``, ``TMAbort``, ``RMPrepare``, ``RMChooseToAbort``, ``RMRcvCommitMsg``,
``RMRcvAbortMsg``, each with a ``txn`` key), and ``distcheck validate twophase``
checks the log.

Using it::

    tm = Coordinator("tm")
    rms = [ResourceManager(f"r{i}", vote=lambda txn: True) for i in (1, 2, 3)]
    # run tm.main, rm.main for each RM, and in a client node:
    outcome = transact(ctx, "tm", "t1", ["r1", "r2", "r3"])   # "committed" | "aborted"

The protocol, with what makes it survive crashes:

- The client sends ``Begin`` to the coordinator and re-sends it until it hears the
  ``Outcome`` (a re-sent Begin for a decided transaction is answered again).
- The coordinator logs the transaction's participants (synced), then asks each RM
  with ``PrepareRequest``, re-asking those that have not voted every
  ``retry_interval`` seconds.
- An RM votes with its ``vote(txn)`` function.  Yes: it logs ``prepared`` (synced:
  the promise must survive a crash), records RMPrepare, sends ``Prepared``.  No: it
  logs ``aborted``, records RMChooseToAbort, sends ``VoteAbort``.
- With every vote yes the coordinator decides commit; on a no vote or after
  ``vote_timeout`` seconds without every vote it decides abort.  **The decision is
  logged and synced before anyone hears of it** (write-ahead), then recorded, then
  sent to every RM and the client, and re-sent every ``retry_interval`` to RMs that
  have not acknowledged it.
- An RM obeys ``Commit``/``Abort`` (logging the outcome before acknowledging).  A
  prepared RM never decides on its own: on a timer it re-sends ``Prepared``, which
  asks the coordinator for the outcome, until it learns it.
- Recovery.  A coordinator restarting re-sends every logged decision, and aborts
  every logged transaction without a decision (it lost the votes; no commit can
  have been sent, because commit is logged first).  A ``Prepared`` for a
  transaction it has no record of is answered with abort (presumed abort).  An RM
  restarting restores each transaction's last logged state; a prepared one asks
  for the outcome and stays prepared until it learns it.

Timeouts abort only where that is safe: the coordinator before it has decided;
never an RM that has prepared.

Variants (deliberately broken, for the checks to catch)

=====================  ==========================================================
``commit_before_log``  The coordinator sends Commit before logging its decision;
                       a crash in between makes it abort on restart.
``forgetful_rm``       An RM restarting ignores its ``prepared`` records and rolls
                       the transaction back, although the coordinator may commit.
=====================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from distcheck.impl.resilience import UNBOUNDED, Retrying
from distcheck.impl.runtime import config
from distcheck.impl.runtime.actor import Actor, MessageError, Messages
from distcheck.impl.runtime.api import Context, Envelope, Storage

WORKING, PREPARED, COMMITTED, ABORTED = "working", "prepared", "committed", "aborted"
COMMIT, ABORT = "commit", "abort"

VARIANTS = {
    "commit_before_log": "the coordinator sends Commit before its decision is logged",
    "forgetful_rm": "an RM forgets after a restart that it prepared and rolls back",
}


@attrs.frozen
class Timing(config.Timing):
    vote_timeout: float = 5.0
    retry_interval: float = 1.0
    client_retry: float = 3.0


# --------------------------------------------------------------------- messages


@attrs.frozen
class Begin:
    """client → coordinator: run ``txn`` across ``participants`` (re-sent until answered)."""

    txn: str
    participants: tuple[str, ...]


@attrs.frozen
class PrepareRequest:
    txn: str
    coordinator: str


@attrs.frozen
class Prepared:
    """RM → coordinator: a yes vote, and later a question: what was decided?"""

    txn: str
    rm: str


@attrs.frozen
class VoteAbort:
    txn: str
    rm: str


@attrs.frozen
class Ack:
    txn: str
    rm: str


@attrs.frozen
class Commit:
    txn: str


@attrs.frozen
class Abort:
    txn: str


@attrs.frozen
class Outcome:
    txn: str
    outcome: str

    def validate(self) -> None:
        if self.outcome not in (COMMITTED, ABORTED):
            raise MessageError(f"Outcome.outcome must be {COMMITTED!r} or {ABORTED!r}, got {self.outcome!r}")


COORDINATOR_MESSAGES = Messages(Begin, Prepared, VoteAbort, Ack)
RM_MESSAGES = Messages(PrepareRequest, Commit, Abort)
CLIENT_MESSAGES = Messages(Outcome)


# ----------------------------------------------------------------------- timers


@attrs.frozen
class VoteTimeout:
    """The coordinator gives up waiting for votes on ``txn`` and aborts it."""

    txn: str


@attrs.frozen
class Resend:
    """The coordinator re-sends what ``txn``'s RMs have not answered."""

    txn: str


@attrs.frozen
class AskOutcome:
    """A prepared RM asks again what was decided for ``txn``."""

    txn: str


# ------------------------------------------------------------------ coordinator


@attrs.define
class CoordinatedTxn:
    """What the coordinator knows of one transaction."""

    participants: tuple[str, ...]
    client: str | None
    prepared: set[str] = attrs.field(factory=set)
    decision: str | None = None
    acked: set[str] = attrs.field(factory=set)


class Coordinator(Actor):
    """The transaction manager.  ``txns`` is its memory (rebuilt from its log on
    every start); ``decisions`` reads what its log holds."""

    LOG = "decisions"
    messages = COORDINATOR_MESSAGES

    def __init__(self, name: str = "tm", timing: Timing = Timing(), variant: str | None = None) -> None:
        config.check_variant(variant, VARIANTS)
        super().__init__(name)
        self.timing = timing
        self.variant = variant
        self.txns: dict[str, CoordinatedTxn] = {}

    @staticmethod
    def recover(records: Iterable[dict[str, Any]]) -> dict[str, CoordinatedTxn]:
        """The coordinator's knowledge after a restart, from its log records."""
        txns: dict[str, CoordinatedTxn] = {}
        for r in records:
            txn = r["txn"]
            if "begin" in r:
                txns[txn] = CoordinatedTxn(tuple(r["participants"]), r.get("client"))
            elif "decision" in r:
                known = txns.get(txn) or CoordinatedTxn(tuple(r["participants"]), None)
                known.decision = r["decision"]
                txns[txn] = known
        return txns

    def on_start(self) -> None:
        self.log: Storage = self.ctx.storage(self.LOG)
        self.txns = self.recover(self.log.records())
        for txn, t in list(self.txns.items()):
            if t.decision is None:
                self._decide(txn, t, ABORT)  # lost the votes; nothing can have committed
            else:
                self._announce(txn, t)

    def on_message(self, src: str, msg: Any) -> None:
        match msg:
            case Begin(txn, participants):
                t = self.txns.get(txn)
                if t is None:
                    self._begin(txn, participants, src)
                else:
                    t.client = src
                    if t.decision is not None:
                        self._tell_client(txn, t)
            case Prepared(txn, rm):
                t = self.txns.get(txn)
                if t is None:
                    # No record: never began here, or began before a crash that lost
                    # it unsynced; either way no commit was ever decided.  Presumed abort.
                    t = self.txns[txn] = CoordinatedTxn((rm,), None)
                    self._decide(txn, t, ABORT)
                elif t.decision is not None:
                    self.send(rm, _decision_message(txn, t.decision))
                elif rm in t.participants:
                    t.prepared.add(rm)
                    self.ctx.record({"type": "TMRcvPrepared", "rm": rm}, txn=txn)
                    if t.prepared == set(t.participants):
                        self._decide(txn, t, COMMIT)
            case VoteAbort(txn):
                t = self.txns.get(txn)
                if t is not None and t.decision is None:
                    self._decide(txn, t, ABORT)
            case Ack(txn, rm):
                t = self.txns.get(txn)
                if t is not None and t.decision is not None:
                    t.acked.add(rm)
                    if t.acked >= set(t.participants):
                        self.cancel_timer(Resend(txn))

    def on_timer(self, timer: Any) -> None:
        t = self.txns.get(timer.txn)
        if t is None:
            return
        match timer:
            case VoteTimeout(txn) if t.decision is None:
                self._decide(txn, t, ABORT)
            case Resend(txn) if t.decision is None:
                for rm in t.participants:
                    if rm not in t.prepared:
                        self.send(rm, PrepareRequest(txn, self.name))
                self.set_timer(timer, self.timing.retry_interval)
            case Resend(txn):
                self._announce(txn, t)

    def _begin(self, txn: str, participants: tuple[str, ...], client: str) -> None:
        self.log.append({"txn": txn, "begin": True, "participants": list(participants), "client": client})
        self.log.sync()
        self.txns[txn] = CoordinatedTxn(participants, client)
        for rm in participants:
            self.send(rm, PrepareRequest(txn, self.name))
        self.set_timer(VoteTimeout(txn), self.timing.vote_timeout)
        self.set_timer(Resend(txn), self.timing.retry_interval)

    def _decide(self, txn: str, t: CoordinatedTxn, decision: str) -> None:
        record = {"txn": txn, "decision": decision, "participants": list(t.participants)}
        if self.variant == "commit_before_log" and decision == COMMIT:
            # BROKEN: the decision leaves before it is durable.
            t.decision = decision
            self.ctx.record({"type": "TMCommit"}, txn=txn)
            self._announce(txn, t)
            self.log.append(record)
            self.log.sync()
            return
        self.log.append(record)
        self.log.sync()
        t.decision = decision
        self.ctx.record({"type": "TMCommit" if decision == COMMIT else "TMAbort"}, txn=txn)
        self._announce(txn, t)

    def _announce(self, txn: str, t: CoordinatedTxn) -> None:
        """Send the decision to every RM that has not acknowledged it, and to the
        client; come back in ``retry_interval`` while any RM has not."""
        assert t.decision is not None
        self.cancel_timer(VoteTimeout(txn))
        for rm in t.participants:
            if rm not in t.acked:
                self.send(rm, _decision_message(txn, t.decision))
        self._tell_client(txn, t)
        if not t.acked >= set(t.participants):
            self.set_timer(Resend(txn), self.timing.retry_interval)

    def _tell_client(self, txn: str, t: CoordinatedTxn) -> None:
        if t.client is not None and t.decision is not None:
            self.send(t.client, Outcome(txn, COMMITTED if t.decision == COMMIT else ABORTED))

    def decision(self, txn: str) -> str | None:
        t = self.txns.get(txn)
        return None if t is None else t.decision


def _decision_message(txn: str, decision: str) -> Commit | Abort:
    return Commit(txn) if decision == COMMIT else Abort(txn)


# ------------------------------------------------------------- resource manager


class ResourceManager(Actor):
    """A participant.  ``vote(txn)`` says whether it can commit; ``on_outcome(txn,
    outcome)`` applies the outcome ("committed" or "aborted") and is called exactly
    once per transaction per run of ``main`` that learns it.  ``states`` is its
    memory; ``applied`` lists the outcomes it applied, in order."""

    LOG = "txns"
    messages = RM_MESSAGES

    def __init__(
        self,
        name: str,
        vote: Callable[[str], bool] = lambda txn: True,
        on_outcome: Callable[[str, str], None] | None = None,
        timing: Timing = Timing(),
        variant: str | None = None,
    ) -> None:
        config.check_variant(variant, VARIANTS)
        super().__init__(name)
        self.vote = vote
        self.on_outcome = on_outcome
        self.timing = timing
        self.variant = variant
        self.states: dict[str, str] = {}
        self.coordinators: dict[str, str] = {}
        self.applied: list[tuple[str, str]] = []

    @staticmethod
    def recover(records: Iterable[dict[str, Any]]) -> dict[str, str]:
        """Each transaction's last logged state."""
        return {str(r["txn"]): str(r["state"]) for r in records}

    def on_start(self) -> None:
        self.log: Storage = self.ctx.storage(self.LOG)
        records = self.log.records()
        self.states = self.recover(records)
        self.coordinators = {str(r["txn"]): str(r["coordinator"]) for r in records}
        for txn, state in sorted(self.states.items()):
            if state != PREPARED:
                continue
            if self.variant == "forgetful_rm":
                # BROKEN: in-doubt work is treated as unfinished and rolled back.
                self._persist(txn, ABORTED)
                self.ctx.record({"type": "RMChooseToAbort", "rm": self.name}, txn=txn)
                self._apply(txn, ABORTED)
                continue
            self._ask(txn)

    def on_timer(self, timer: Any) -> None:
        if isinstance(timer, AskOutcome) and self.states.get(timer.txn) == PREPARED:
            self._ask(timer.txn)

    def on_message(self, src: str, msg: Any) -> None:
        match msg:
            case PrepareRequest(txn, coordinator):
                self._on_prepare_request(txn, coordinator)
            case Commit(txn) | Abort(txn):
                self._on_outcome(src, txn, COMMITTED if isinstance(msg, Commit) else ABORTED)

    def _on_prepare_request(self, txn: str, coordinator: str) -> None:
        self.coordinators[txn] = coordinator
        state = self.states.get(txn, WORKING)
        if state == WORKING:
            if self.vote(txn):
                self._persist(txn, PREPARED)
                self.ctx.record({"type": "RMPrepare", "rm": self.name}, txn=txn)
                self._ask(txn)
            else:
                self._persist(txn, ABORTED)
                self.ctx.record({"type": "RMChooseToAbort", "rm": self.name}, txn=txn)
                self._apply(txn, ABORTED)
                self.send(coordinator, VoteAbort(txn, self.name))
        elif state == PREPARED:
            self._ask(txn)
        elif state == ABORTED:
            self.send(coordinator, VoteAbort(txn, self.name))

    def _on_outcome(self, coordinator: str, txn: str, outcome: str) -> None:
        state = self.states.get(txn, WORKING)
        if state == outcome:
            self.send(coordinator, Ack(txn, self.name))
        elif state == PREPARED or (state == WORKING and outcome == ABORTED):
            self._persist(txn, outcome)
            action = "RMRcvCommitMsg" if outcome == COMMITTED else "RMRcvAbortMsg"
            self.ctx.record({"type": action, "rm": self.name}, txn=txn)
            self.cancel_timer(AskOutcome(txn))
            self._apply(txn, outcome)
            self.send(coordinator, Ack(txn, self.name))
        else:
            # Commit without having prepared, or an outcome contradicting the one
            # already applied: a broken coordinator; refuse it.
            self.diagnose(f"refused {outcome} for {txn} from {coordinator}: already {state}")

    def _persist(self, txn: str, state: str) -> None:
        coordinator = self.coordinators.get(txn, "")
        self.log.append({"txn": txn, "state": state, "coordinator": coordinator})
        self.log.sync()
        self.states[txn] = state

    def _ask(self, txn: str) -> None:
        """Tell the coordinator we are prepared; it answers with the outcome once decided."""
        coordinator = self.coordinators.get(txn)
        if coordinator:
            self.send(coordinator, Prepared(txn, self.name))
        self.set_timer(AskOutcome(txn), self.timing.retry_interval)

    def _apply(self, txn: str, outcome: str) -> None:
        self.applied.append((txn, outcome))
        if self.on_outcome is not None:
            self.on_outcome(txn, outcome)

    def state(self, txn: str) -> str:
        return self.states.get(txn, WORKING)


# ----------------------------------------------------------------------- client


def transact(
    ctx: Context, coordinator: str, txn: str, participants: Sequence[str], retry: float = Timing().client_retry
) -> str:
    """Run transaction ``txn`` across ``participants`` and return its outcome,
    ``"committed"`` or ``"aborted"``.  Re-asks the coordinator every ``retry``
    seconds until it answers, so it survives lost messages and coordinator crashes."""
    begin = COORDINATOR_MESSAGES.encode(Begin(txn, tuple(participants)))
    # The transaction's id is the idempotency key: the coordinator begins an id once
    # and answers a repeat with its outcome.
    resends = Retrying(
        backoff=False,
        max_attempts=UNBOUNDED,
        retry_on=TimeoutError,
        idempotency_key=txn,
        clock=ctx.now,
        sleep=ctx.sleep,
    )
    for attempt in resends:
        with attempt:
            ctx.send(coordinator, begin)
            outcome = _await_outcome(ctx, txn, ctx.now() + attempt.bounded(retry))
        if attempt.exception is None:
            return outcome
    raise AssertionError("unreachable: the attempts end in a return or a RetryError")  # pragma: no cover


def _await_outcome(ctx: Context, txn: str, until: float) -> str:
    """The outcome of ``txn`` if it comes by ``until``; TimeoutError otherwise."""
    while (left := until - ctx.now()) > 0:
        item = ctx.receive(timeout=left)
        if not isinstance(item, Envelope):
            continue
        try:
            answer = CLIENT_MESSAGES.decode(item.msg)
        except MessageError as exc:
            ctx.log(f"ignored a message from {item.src}: {exc}")
            continue
        if answer.txn == txn:
            return str(answer.outcome)
    raise TimeoutError(f"no outcome of transaction {txn!r} yet")


class Client:
    """A node that runs the given transactions one after another and remembers what
    it learned (``outcomes``)."""

    def __init__(self, name: str, coordinator: str, transactions: Sequence[tuple[str, Sequence[str]]]) -> None:
        self.name = name
        self.coordinator = coordinator
        self.transactions = list(transactions)
        self.outcomes: dict[str, str] = {}

    def main(self, ctx: Context) -> None:
        self.outcomes = {}  # memory: after a restart it asks again
        for txn, participants in self.transactions:
            self.outcomes[txn] = transact(ctx, self.coordinator, txn, participants)


@attrs.define
class Cluster:
    """A coordinator, RMs and a client wired together: ``nodes()`` is what a runtime runs."""

    coordinator: Coordinator
    rms: list[ResourceManager]
    client: Client

    def nodes(self) -> dict[str, Callable[[Context], None]]:
        out: dict[str, Callable[[Context], None]] = {self.coordinator.name: self.coordinator.main}
        for rm in self.rms:
            out[rm.name] = rm.main
        out[self.client.name] = self.client.main
        return out


def cluster(
    rms: int = 3,
    transactions: Sequence[str] = ("t1",),
    no_votes: Iterable[tuple[str, str]] = (),
    variant: str | None = None,
    timing: Timing = Timing(),
) -> Cluster:
    """A coordinator ``tm``, RMs ``r1..rN`` and a client ``client`` that runs each of
    ``transactions`` across every RM; ``no_votes`` lists (rm, txn) pairs voted no."""
    config.check_variant(variant, VARIANTS)
    refuse = set(no_votes)
    names = [f"r{i}" for i in range(1, rms + 1)]
    coordinator = Coordinator("tm", timing, variant=variant if variant == "commit_before_log" else None)

    def voter(rm: str) -> Callable[[str], bool]:
        return lambda txn: (rm, txn) not in refuse

    managers = [
        ResourceManager(name, vote=voter(name), timing=timing, variant=variant if variant == "forgetful_rm" else None)
        for name in names
    ]
    client = Client("client", "tm", [(txn, names) for txn in transactions])
    return Cluster(coordinator, managers, client)
