"""Multi-Paxos: a replicated log with a stable leader, serving a key-value store.

Where it sits: written on ``impl.runtime`` only, so the same code runs under the
controlled scheduler (tests, ``distcheck simulate paxos``) and in free mode over
TCP.  It mirrors ``spec/paxos.py`` without importing it: the log is a sequence of
slots, each decided by one instance of single-decree Paxos, and every Paxos step
is recorded with ``ctx.record`` in the spec's vocabulary (``Phase1a``, ``Phase1b``,
``Phase2a``, ``Phase2b``), so that ``distcheck validate`` can check each slot
against the spec (docs/paxos.md, "The replicated log", says how).

Using it::

    system = cluster(replicas=3, workloads={"c1": [put("x", 1), get("x")]})
    # run system.nodes() in a runtime; or, inside any client node:
    kv = KVClient(ctx, ["r1", "r2", "r3"])
    kv.put("x", 1); kv.cas("x", 1, 2); kv.get("x")      # → "ok", True, 2

Every replica ``r1..rN`` is an acceptor, a learner and a would-be leader, and
applies the chosen log to its own copy of the key-value store.

- **Ballots** are integers partitioned among replicas (ballot mod N is the
  replica's index), so no two replicas share one.  A replica logs and syncs a
  ballot before using it, and never reuses one after a restart: reusing a ballot
  could put two different values in one ballot of one slot.
- **Phase 1, once for all slots.**  A replica that has not heard from a leader
  for its election timeout becomes a candidate: it sends ``Prepare(ballot, from)``
  for every slot from its first unchosen one on.  An acceptor that has promised
  no higher ballot promises this one (synced) and answers ``Promise`` with its
  last vote in each of those slots; otherwise ``Nack`` with its promise.
- **Phase 2, per slot.**  With a quorum of promises the candidate leads: in each
  slot some promise reported a vote for, it proposes the value of the
  highest-ballot vote reported; in a gap below the highest such slot it proposes
  a no-op; every slot above is free for new commands.  Client commands take the
  next free slot.  An acceptor votes (``Accept`` → ``Accepted``) for a ballot not
  below its promise, syncing the vote first.  With a quorum of votes for one
  ballot the value is chosen: the leader announces ``Chosen`` and applies it.
- **Stable leader.**  The leader sends ``Heartbeat`` with its first unchosen slot;
  a follower that hears one resets its election timer, and one that lags asks
  for the missing entries (``CatchUp`` → ``Entries``).  A leader steps down when
  it hears of a higher ballot.
- **Commands and clients.**  A command carries its client and a sequence number;
  the store applies each one at most once (a session table remembers the last
  result per client), because a command can be chosen in two slots when a client
  re-sends it to a new leader.  Reads go through the log too, so every result is
  consistent with the log's one sequential order.
- **Durability.**  An acceptor's promises and votes are synced before it answers
  (the only state whose loss breaks safety); a proposer's ballots likewise.
  Chosen entries are appended without a sync: a lost one is learned again from
  the leader or, after a new election, from the acceptors' votes.

Variants (deliberately broken, for the checks to catch)

=========================  =======================================================
``forgotten_vote``         An acceptor syncs its promises but keeps its votes in
                           memory: after a crash it reports "no vote", and a new
                           leader may choose another value in that slot.
``ignore_reported_value``  A new leader does not re-propose the values reported in
                           phase 1 and fills those slots with no-ops, overwriting
                           values that may already be chosen.
``local_reads``            The leader answers a read from its own store, without
                           putting it in the log.  A leader that has been replaced
                           but has not heard of it yet returns a stale value: every
                           slot still agrees and every trace is valid, but the
                           clients' results are not linearizable.
=========================  =======================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from distcheck.impl.resilience import UNBOUNDED, Retrying
from distcheck.impl.runtime import config
from distcheck.impl.runtime.actor import Actor, MessageError, Messages, encode, wire
from distcheck.impl.runtime.api import Context, Envelope, Storage
from distcheck.impl.runtime.history import History
from distcheck.impl.telemetry import count

VARIANTS = {
    "forgotten_vote": "an acceptor keeps its votes in memory only, so a crash forgets them",
    "ignore_reported_value": "a new leader fills the slots reported in phase 1 with no-ops",
    "local_reads": "the leader answers reads from its own store instead of through the log",
}

NOOP: dict[str, Any] = {"id": "noop"}
FOLLOWER, CANDIDATE, LEADER = "follower", "candidate", "leader"


@attrs.frozen
class Timing(config.Timing):
    heartbeat: float = 1.0
    #: a replica stands for election when it has heard from no leader or candidate
    #: for ``election_timeout + index * election_stagger`` seconds (staggered, so that
    #: replicas do not all stand at once), doubled after each candidacy that failed
    election_timeout: float = 60.0
    election_stagger: float = 30.0
    #: how often a candidate or leader re-sends what has not been answered
    retry: float = 1.0
    client_retry: float = 10.0


def command_id(cmd: Mapping[str, Any]) -> str:
    """The value a slot decides, as the trace names it: ``c1:3`` or ``noop``."""
    return str(cmd["id"])


# ------------------------------------------------------------------ state machine


def apply_op(store: Mapping[str, Any], op: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    """The key-value store's sequential semantics: the new store and the result."""
    key = str(op["key"])
    kind = op["op"]
    if kind == "get":
        return dict(store), store.get(key)
    if kind == "put":
        return {**store, key: op["value"]}, "ok"
    if kind == "cas":
        if store.get(key) == op["expected"]:
            return {**store, key: op["value"]}, True
        return dict(store), False
    raise ValueError(f"unknown operation {kind!r}; allowed: get, put, cas")


def put(key: str, value: Any) -> dict[str, Any]:
    return {"op": "put", "key": key, "value": value}


def get(key: str) -> dict[str, Any]:
    return {"op": "get", "key": key}


def cas(key: str, expected: Any, value: Any) -> dict[str, Any]:
    return {"op": "cas", "key": key, "expected": expected, "value": value}


@attrs.define
class KeyValueStore:
    """The replicated state machine: the store and, per client, the last command
    applied and its result (so a command chosen twice is applied once)."""

    data: dict[str, Any] = attrs.field(factory=dict)
    sessions: dict[str, tuple[int, Any]] = attrs.field(factory=dict)

    def apply(self, cmd: Mapping[str, Any]) -> None:
        if command_id(cmd) == NOOP["id"]:
            return
        client, seq = str(cmd["client"]), int(cmd["seq"])
        last = self.sessions.get(client)
        if last is not None and last[0] >= seq:
            return  # already applied (chosen again in a later slot)
        self.data, result = apply_op(self.data, cmd["op"])
        self.sessions[client] = (seq, result)

    def result(self, client: str, seq: int) -> tuple[bool, Any]:
        """(applied?, result) of a client's command, if it is the last one applied."""
        last = self.sessions.get(client)
        if last is not None and last[0] == seq:
            return True, last[1]
        return False, None


# ----------------------------------------------------------------------- messages


def check_command(cmd: Mapping[str, Any], where: str = "cmd") -> None:
    """MessageError unless ``cmd`` is a command: the no-op, or a client's numbered
    operation (what ``KVClient.execute`` builds)."""
    if not isinstance(cmd.get("id"), str):
        raise MessageError(f"{where}.id must be a string")
    if cmd["id"] == NOOP["id"]:
        return
    seq = cmd.get("seq")
    if not isinstance(cmd.get("client"), str) or isinstance(seq, bool) or not isinstance(seq, int):
        raise MessageError(f"{where} must name its client (a string) and seq (an integer)")
    op = cmd.get("op")
    kind = op.get("op") if isinstance(op, Mapping) else None
    fields = {"get": {"op", "key"}, "put": {"op", "key", "value"}, "cas": {"op", "key", "expected", "value"}}
    if not isinstance(op, Mapping) or not isinstance(kind, str) or set(op) != fields.get(kind):
        raise MessageError(f"{where}.op must be a get, put or cas with its fields, got {op!r}")
    if not isinstance(op["key"], str):
        raise MessageError(f"{where}.op.key must be a string, got {op['key']!r}")


@attrs.frozen
class Prepare:
    bal: int
    from_slot: int = attrs.field(metadata=wire("from"))


@attrs.frozen
class Promise:
    bal: int
    from_slot: int = attrs.field(metadata=wire("from"))
    acc: str
    votes: tuple[tuple[int, int, dict[str, Any]], ...]  # (slot, ballot, command)

    def validate(self) -> None:
        for slot, _, cmd in self.votes:
            check_command(cmd, f"Promise.votes[slot {slot}]")


@attrs.frozen
class Nack:
    bal: int
    promised: int


@attrs.frozen
class Accept:
    bal: int
    slot: int
    cmd: dict[str, Any]

    def validate(self) -> None:
        check_command(self.cmd, "Accept.cmd")


@attrs.frozen
class Accepted:
    bal: int
    slot: int
    acc: str
    val: str


@attrs.frozen
class Chosen:
    slot: int
    cmd: dict[str, Any]

    def validate(self) -> None:
        check_command(self.cmd, "Chosen.cmd")


@attrs.frozen
class Heartbeat:
    bal: int
    leader: str
    commit: int  # the leader's first slot not yet chosen


@attrs.frozen
class CatchUp:
    from_slot: int = attrs.field(metadata=wire("from"))
    upto: int


@attrs.frozen
class Entries:
    entries: tuple[tuple[int, dict[str, Any]], ...]  # (slot, command)

    def validate(self) -> None:
        for slot, cmd in self.entries:
            check_command(cmd, f"Entries.entries[slot {slot}]")


@attrs.frozen
class Request:
    """client → replica: run this command."""

    cmd: dict[str, Any]

    def validate(self) -> None:
        check_command(self.cmd, "Request.cmd")
        if self.cmd["id"] == NOOP["id"]:
            raise MessageError("a client cannot request the no-op")


@attrs.frozen
class Reply:
    seq: int
    result: Any


@attrs.frozen
class Redirect:
    seq: int
    leader: str | None


REPLICA_MESSAGES = Messages(Prepare, Promise, Nack, Accept, Accepted, Chosen, Heartbeat, CatchUp, Entries, Request)
CLIENT_MESSAGES = Messages(Reply, Redirect)


@attrs.frozen
class ElectionTimer:
    """The end of a failure detector's period (``Replica._arm_election``)."""


@attrs.frozen
class HeartbeatTimer:
    pass


@attrs.frozen
class RetryTimer:
    """A candidate or leader re-sends what has not been answered."""


# ------------------------------------------------------------------------ replica


class Replica(Actor):
    """One replica.  Its memory is rebuilt from its logs at every start of ``main``.
    ``learned`` (kept across restarts, for checkers) lists every (slot, command id)
    this replica ever learned was chosen.  Only its peers may send it Paxos messages;
    anyone may send a ``Request``."""

    ACCEPTOR_LOG = "acceptor"
    CHOSEN_LOG = "chosen"
    messages = REPLICA_MESSAGES

    def __init__(self, name: str, peers: Sequence[str], timing: Timing = Timing(), variant: str | None = None) -> None:
        config.check_variant(variant, VARIANTS)
        if name not in peers:
            raise ValueError(f"replica {name!r} is not among its peers {list(peers)}")
        super().__init__(name, peers)
        self.replicas = tuple(peers)
        self.index = self.replicas.index(name)
        self.quorum = len(self.replicas) // 2 + 1
        self.timing = timing
        self.variant = variant
        self.learned: list[tuple[int, str]] = []
        self._reset()

    def _reset(self) -> None:
        # acceptor
        self.promised = -1
        self.votes: dict[int, tuple[int, dict[str, Any]]] = {}
        # learner and state machine
        self.chosen: dict[int, dict[str, Any]] = {}
        self.applied = 0  # slots below this are chosen and applied
        self.store = KeyValueStore()
        # proposer
        self.role = FOLLOWER
        self.ballot = -1  # the ballot this replica leads or stands in
        self.highest_seen = -1
        self.leader: str | None = None
        self.failed_candidacies = 0
        self.heard = False  # from a leader or candidate, in this failure-detector period
        self.from_slot = 0
        self.promises: dict[str, dict[int, tuple[int, dict[str, Any]]]] = {}
        self.proposals: dict[int, dict[str, Any]] = {}
        self.accepts: dict[int, set[str]] = {}
        self.next_slot = 0
        self.waiting: dict[str, tuple[str, dict[str, Any]]] = {}  # command id → (client, command)

    # ----------------------------------------------------------------- start

    def on_start(self) -> None:
        self._reset()
        self.acceptor_log: Storage = self.ctx.storage(self.ACCEPTOR_LOG)
        self.chosen_log: Storage = self.ctx.storage(self.CHOSEN_LOG)
        for r in self.acceptor_log.records():
            if "promise" in r:
                self.promised = max(self.promised, int(r["promise"]))
            elif "ballot" in r:
                self.highest_seen = max(self.highest_seen, int(r["ballot"]))
            elif "vote" in r:
                self.votes[int(r["vote"])] = (int(r["bal"]), dict(r["cmd"]))
                self.promised = max(self.promised, int(r["bal"]))
        self.highest_seen = max(self.highest_seen, self.promised)
        for r in self.chosen_log.records():
            self.chosen.setdefault(int(r["slot"]), dict(r["cmd"]))
        self._apply_chosen()
        self._arm_election()

    def accepts_sender(self, src: str, msg: Any) -> bool:
        return isinstance(msg, Request) or src in self.replicas

    def _arm_election(self) -> None:
        """The failure detector's period.  At its end a replica stands unless it has
        heard from a leader or candidate during the period (``heard``).  Counting
        silent periods rather than measuring time since the last message keeps a
        busy leader, whose heartbeat timer fires late, from being taken for dead."""
        t = self.timing
        backoff = 2 ** min(self.failed_candidacies, 4)
        self.set_timer(ElectionTimer(), (t.election_timeout + self.index * t.election_stagger) * backoff)

    def _heard(self, src: str) -> None:
        if src != self.name:
            self.heard = True

    def _broadcast(self, msg: Any) -> None:
        wire_form = encode(msg)  # encoded once for every peer
        for peer in self.replicas:
            self.ctx.send(peer, wire_form)

    # -------------------------------------------------------------- dispatch

    def on_timer(self, timer: Any) -> None:
        if isinstance(timer, ElectionTimer):
            if self.role == CANDIDATE:
                self.failed_candidacies += 1
            if self.role != LEADER and not self.heard:
                self._stand()
            self.heard = False
            self._arm_election()
        elif isinstance(timer, HeartbeatTimer) and self.role == LEADER:
            # Timers are armed before the sends: time may pass while a node is busy.
            self.set_timer(timer, self.timing.heartbeat)
            self._broadcast(Heartbeat(self.ballot, self.name, self.applied))
        elif isinstance(timer, RetryTimer):
            self._retry()

    def on_message(self, src: str, msg: Any) -> None:
        bal: int = getattr(msg, "bal", -1)
        if bal > self.highest_seen:
            self.highest_seen = bal
        match msg:
            case Prepare(bal, from_slot):
                self._on_prepare(src, bal, from_slot)
            case Promise():
                self._on_promise(msg)
            case Nack(bal, promised):
                self.highest_seen = max(self.highest_seen, promised)
                if self.role != FOLLOWER and promised > self.ballot:
                    self._step_down(None)
            case Accept(bal, slot, cmd):
                self._on_accept(src, bal, slot, cmd)
            case Accepted(bal, slot, acc):
                self._on_accepted(acc, bal, slot)
            case Chosen(slot, cmd):
                self._heard(src)
                self._learn(slot, cmd)
            case Heartbeat(bal, _, commit):
                self._on_heartbeat(src, bal, commit)
            case CatchUp(from_slot, upto):
                entries = tuple((s, self.chosen[s]) for s in range(from_slot, upto) if s in self.chosen)
                if entries:
                    self.send(src, Entries(entries))
            case Entries(entries):
                for slot, cmd in entries:
                    self._learn(slot, cmd)
            case Request(cmd):
                self._on_request(src, cmd)

    # -------------------------------------------------------------- acceptor

    def _on_prepare(self, src: str, bal: int, from_slot: int) -> None:
        if bal < self.promised:
            self.send(src, Nack(bal, self.promised))
            return
        if bal > self.promised:
            self.acceptor_log.append({"promise": bal})
            self.acceptor_log.sync()
            self.promised = bal
            self.ctx.record({"type": "Phase1b", "acceptor": self.name, "bal": bal}, from_slot=from_slot)
            if self.role != FOLLOWER and bal > self.ballot:
                self._step_down(None)
            self._heard(src)  # a candidate is at work: give it time
        # bal == promised: a repeated Prepare; the promise stands, answer again.
        votes = tuple((slot, vb, cmd) for slot, (vb, cmd) in sorted(self.votes.items()) if slot >= from_slot)
        self.send(src, Promise(bal, from_slot, self.name, votes))

    def _on_accept(self, src: str, bal: int, slot: int, cmd: dict[str, Any]) -> None:
        if bal < self.promised:
            self.send(src, Nack(bal, self.promised))
            return
        if self.votes.get(slot) != (bal, cmd):
            if self.variant != "forgotten_vote":  # BROKEN in that variant: the vote is not durable
                self.acceptor_log.append({"vote": slot, "bal": bal, "cmd": cmd})
                self.acceptor_log.sync()
            self.promised = bal
            self.votes[slot] = (bal, cmd)
            self.ctx.record({"type": "Phase2b", "acceptor": self.name, "bal": bal, "val": command_id(cmd)}, slot=slot)
        if self.role != FOLLOWER and bal > self.ballot:
            self._step_down(src)
        if src != self.name:
            self.leader = src
            self._heard(src)
        self.send(src, Accepted(bal, slot, self.name, command_id(cmd)))

    # -------------------------------------------------------------- proposer

    def _stand(self) -> None:
        """Become a candidate with a fresh ballot, durable before it is used."""
        round_ = max(self.highest_seen, self.ballot) // len(self.replicas) + 1
        ballot = round_ * len(self.replicas) + self.index
        self.acceptor_log.append({"ballot": ballot})
        self.acceptor_log.sync()
        self.role, self.ballot, self.highest_seen, self.leader = CANDIDATE, ballot, ballot, None
        self.from_slot = self.applied
        self.promises = {}
        self.proposals, self.accepts = {}, {}
        self.ctx.record({"type": "Phase1a", "bal": ballot}, from_slot=self.from_slot)
        count("distcheck.elections", node=self.name)
        self.set_timer(RetryTimer(), self.timing.retry)
        self._broadcast(Prepare(ballot, self.from_slot))

    def _on_promise(self, msg: Promise) -> None:
        if self.role != CANDIDATE or msg.bal != self.ballot or msg.from_slot != self.from_slot:
            return
        self.promises[msg.acc] = {s: (vb, cmd) for s, vb, cmd in msg.votes}
        if len(self.promises) >= self.quorum:
            self._lead()

    def _lead(self) -> None:
        """Phase 1 is done: re-propose what the promises reported, fill the gaps."""
        self.role, self.leader = LEADER, self.name
        count("distcheck.leader.changes", node=self.name)
        self.failed_candidacies = 0
        self.set_timer(HeartbeatTimer(), 0.0)
        reported: dict[int, tuple[int, dict[str, Any]]] = {}
        for votes in self.promises.values():
            for slot, (vb, cmd) in votes.items():
                if slot not in reported or vb > reported[slot][0]:
                    reported[slot] = (vb, cmd)
        top = max([*reported, *self.chosen, self.from_slot - 1])
        self.next_slot = top + 1
        for slot in range(self.from_slot, top + 1):
            if slot in self.chosen:
                continue
            if slot in reported and self.variant != "ignore_reported_value":
                self._propose(slot, reported[slot][1])
            else:
                self._propose(slot, NOOP)  # BROKEN in ignore_reported_value for reported slots
        for key, (client, cmd) in list(self.waiting.items()):
            done, result = self.store.result(str(cmd["client"]), int(cmd["seq"]))
            if done:
                del self.waiting[key]
                self.send(client, Reply(cmd["seq"], result))
            else:
                self._submit(client, cmd)

    def _propose(self, slot: int, cmd: dict[str, Any]) -> None:
        self.proposals[slot] = cmd
        self.accepts[slot] = set()
        self.ctx.record({"type": "Phase2a", "bal": self.ballot, "val": command_id(cmd)}, slot=slot)
        self._broadcast(Accept(self.ballot, slot, cmd))

    def _on_accepted(self, acc: str, bal: int, slot: int) -> None:
        if self.role != LEADER or bal != self.ballot or slot not in self.proposals:
            return
        self.accepts[slot].add(acc)
        if len(self.accepts[slot]) >= self.quorum and slot not in self.chosen:
            cmd = self.proposals[slot]
            self._learn(slot, cmd)
            self._broadcast(Chosen(slot, cmd))

    def _retry(self) -> None:
        if self.role == FOLLOWER:
            return
        self.set_timer(RetryTimer(), self.timing.retry)
        if self.role == CANDIDATE:
            for peer in self.replicas:
                if peer not in self.promises:
                    self.send(peer, Prepare(self.ballot, self.from_slot))
        elif self.role == LEADER:
            for slot, cmd in sorted(self.proposals.items()):
                if slot in self.chosen:
                    continue
                for peer in self.replicas:
                    if peer not in self.accepts[slot]:
                        self.send(peer, Accept(self.ballot, slot, cmd))

    def _step_down(self, leader: str | None) -> None:
        self.role, self.leader = FOLLOWER, leader
        self.proposals, self.accepts, self.promises = {}, {}, {}
        self.cancel_timer(HeartbeatTimer())
        self.cancel_timer(RetryTimer())

    def _on_heartbeat(self, src: str, bal: int, commit: int) -> None:
        if bal < self.promised or (self.role != FOLLOWER and bal <= self.ballot):
            return
        if self.role != FOLLOWER:
            self._step_down(src)
        self.leader = src
        self.failed_candidacies = 0
        self._heard(src)
        if self.applied < commit:
            self.send(src, CatchUp(self.applied, commit))

    # --------------------------------------------------------------- clients

    def _on_request(self, client: str, cmd: dict[str, Any]) -> None:
        done, result = self.store.result(str(cmd["client"]), int(cmd["seq"]))
        if done:
            self.send(client, Reply(cmd["seq"], result))
        elif self.variant == "local_reads" and self.role == LEADER and cmd["op"]["op"] == "get":
            # BROKEN: a leader that has been replaced without knowing it yet answers
            # from a store that may miss writes the new leader has committed.
            _, value = apply_op(self.store.data, cmd["op"])
            self.send(client, Reply(cmd["seq"], value))
        elif self.role == LEADER:
            self.waiting[command_id(cmd)] = (client, cmd)
            self._submit(client, cmd)
        elif self.role == CANDIDATE:
            self.waiting[command_id(cmd)] = (client, cmd)  # proposed once elected
        else:
            self.send(client, Redirect(cmd["seq"], self.leader))

    def _submit(self, client: str, cmd: dict[str, Any]) -> None:
        if any(command_id(c) == command_id(cmd) for s, c in self.proposals.items() if s not in self.chosen):
            return  # already in flight in this ballot
        slot = self.next_slot
        self.next_slot += 1
        self._propose(slot, cmd)

    # --------------------------------------------------------------- learner

    def _learn(self, slot: int, cmd: dict[str, Any]) -> None:
        if slot in self.chosen:
            return
        self.chosen[slot] = cmd
        self.learned.append((slot, command_id(cmd)))
        # No sync: a chosen entry lost in a crash is learned again (module docstring).
        self.chosen_log.append({"slot": slot, "cmd": cmd})
        self._apply_chosen()

    def _apply_chosen(self) -> None:
        while self.applied in self.chosen:
            cmd = self.chosen[self.applied]
            self.store.apply(cmd)
            self.applied += 1
            waiting = self.waiting.pop(command_id(cmd), None)
            if waiting is not None:
                client, _ = waiting
                _, result = self.store.result(str(cmd["client"]), int(cmd["seq"]))
                self.send(client, Reply(cmd["seq"], result))


# ------------------------------------------------------------------------- client


class KeyValueCalls:
    """``put``, ``get`` and ``cas`` as operations handed to ``execute``: what a
    key-value client of a replicated log adds to its own ``execute`` (``KVClient``
    here, ``impl.pbft.PbftClient``)."""

    def execute(self, op: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def put(self, key: str, value: Any) -> Any:
        return self.execute(put(key, value))

    def get(self, key: str) -> Any:
        return self.execute(get(key))

    def cas(self, key: str, expected: Any, value: Any) -> Any:
        return self.execute(cas(key, expected, value))


class KVClient(KeyValueCalls):
    """The client API.  Each call blocks until the operation is applied and returns
    its result, re-sending to the leader (or, without a hint, the next replica)
    every ``retry`` seconds; a re-sent command is applied once."""

    def __init__(
        self,
        ctx: Context,
        replicas: Sequence[str],
        history: History | None = None,
        retry: float = Timing().client_retry,
    ) -> None:
        self.ctx = ctx
        self.name = ctx.name
        self.replicas = tuple(replicas)
        self.history = history
        self.retry = retry
        self.seq = 0
        self.target = 0

    def execute(self, op: Mapping[str, Any]) -> Any:
        apply_op({}, op)  # refuses an unknown operation here, not in every replica
        self.seq += 1
        cmd_id = f"{self.name}:{self.seq}"
        cmd = {"id": cmd_id, "client": self.name, "seq": self.seq, "op": dict(op)}
        request = encode(Request(cmd))
        entry = self.history.call(self.name, op) if self.history is not None else None
        # Re-sent every ``retry`` seconds until answered, under the command's id as the
        # idempotency key (the replicas apply an id once); an enclosing
        # ``resilience.deadline`` scope bounds it, as RetryError(reason="deadline").
        resends = Retrying(
            backoff=False,
            max_attempts=UNBOUNDED,
            retry_on=TimeoutError,
            idempotency_key=cmd_id,
            clock=self.ctx.now,
            sleep=self.ctx.sleep,
        )
        for attempt in resends:
            with attempt:
                result = self._attempt(request, attempt.bounded(self.retry))
            if attempt.exception is None:
                if entry is not None and self.history is not None:
                    self.history.ret(entry, result)
                return result
        raise AssertionError("unreachable: the attempts end in a return or a RetryError")  # pragma: no cover

    def _attempt(self, request: dict[str, Any], period: float) -> Any:
        """Send the command, wait ``period`` seconds for its result (following
        redirects), and raise TimeoutError if none came."""
        self.ctx.send(self.replicas[self.target], request)
        deadline = self.ctx.now() + period
        followed = False
        while (left := deadline - self.ctx.now()) > 0:
            answer = self._answer(left)
            if answer is None or answer.seq != self.seq:
                continue
            if isinstance(answer, Reply):
                return answer.result
            hint = answer.leader
            known = hint is not None and hint in self.replicas and hint != self.replicas[self.target]
            self.target = self.replicas.index(hint) if known and hint else (self.target + 1) % len(self.replicas)
            if known and not followed:
                # Follow a hint at once, but only one per period: two replicas
                # naming each other, or none knowing a leader, must not make
                # the client spin without time passing.
                followed = True
                self.ctx.send(self.replicas[self.target], request)
        if not followed:
            self.target = (self.target + 1) % len(self.replicas)
        raise TimeoutError(f"no answer to command {self.seq} within {period} s")

    def _answer(self, timeout: float) -> Reply | Redirect | None:
        """The next well-formed answer within ``timeout`` seconds (None: none came)."""
        item = self.ctx.receive(timeout=timeout)
        if not isinstance(item, Envelope):
            return None
        try:
            answer: Reply | Redirect = CLIENT_MESSAGES.decode(item.msg)
        except MessageError as exc:
            self.ctx.log(f"ignored a message from {item.src}: {exc}")
            return None
        return answer


class Workload:
    """A client node that runs ``ops`` one after another and keeps the results."""

    def __init__(
        self,
        name: str,
        replicas: Sequence[str],
        ops: Sequence[Mapping[str, Any]],
        history: History,
        retry: float = Timing().client_retry,
    ) -> None:
        self.name = name
        self.retry = retry
        self.replicas = tuple(replicas)
        self.ops = [dict(op) for op in ops]
        self.history = history
        self.results: list[Any] = []

    def main(self, ctx: Context) -> None:
        client = KVClient(ctx, self.replicas, self.history, self.retry)
        self.results = []
        for op in self.ops:
            self.results.append(client.execute(op))


@attrs.define
class Cluster:
    """Replicas and client workloads wired together: ``nodes()`` is what a runtime runs."""

    replicas: list[Replica]
    clients: list[Workload]
    history: History

    def nodes(self) -> dict[str, Callable[[Context], None]]:
        out: dict[str, Callable[[Context], None]] = {r.name: r.main for r in self.replicas}
        out.update({c.name: c.main for c in self.clients})
        return out


def cluster(
    replicas: int = 3,
    workloads: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
    variant: str | None = None,
    timing: Timing = Timing(),
) -> Cluster:
    """Replicas ``r1..rN`` and one client node per workload (name → operations)."""
    config.check_variant(variant, VARIANTS)
    if replicas < 1:
        raise ValueError(f"a cluster needs at least 1 replica, got {replicas}")
    names = [f"r{i}" for i in range(1, replicas + 1)]
    history = History()
    workloads = workloads if workloads is not None else {"c1": [put("x", 1), get("x")]}
    clients = [Workload(name, names, list(ops), history, timing.client_retry) for name, ops in workloads.items()]
    return Cluster([Replica(n, names, timing, variant) for n in names], clients, history)
