"""A PBFT replica: the normal case, checkpoints, the view change and state transfer,
serving a replicated key-value store.

Where it sits: written on ``impl.runtime`` only (an ``Actor``), so the same code runs
under the controlled scheduler (``distcheck simulate pbft``) and over TCP.  It
mirrors ``spec/pbft.py`` without importing it: every step the spec names is logged
with ``ctx.record`` in the spec's vocabulary (``PrePrepare``, ``Prepare``,
``Commit``, ``Execute``, ``ViewChange``, ``NewView``), a batch standing for the
spec's request by its digest.  Checkpoints, garbage collection, state transfer and
retransmission are below the spec's level of detail (docs/pbft.md says how the
checker maps them).

The protocol, as Castro and Liskov's (OSDI 1999), with n = 3f + 1 replicas
``r1..rn``; the primary of view v is replica ``v mod n``; a quorum is 2f + 1.

- **Normal case.**  The primary batches clients' requests and assigns each batch
  the next number: a signed pre-prepare.  A backup accepts it if it is in that
  view, the number lies within its water marks, it accepted no other batch at that
  view and number, and every request carries a valid MAC for it; it sends a
  prepare.  With its pre-prepare and 2f matching prepares from backups a replica
  is *prepared*: it sends a commit.  With 2f + 1 matching commits it has
  *committed* the batch; it executes batches in number order and replies to each
  client.
- **Checkpoints.**  Every ``checkpoint_interval`` numbers a replica signs the digest
  of its state; 2f + 1 matching checkpoints make it *stable*: the messages at or
  below it are discarded, and the water marks move to it (a primary may run
  ``2 * checkpoint_interval`` numbers ahead).  A replica that lags behind a stable
  checkpoint fetches the state and checks it against the checkpoint's digest.
- **View change.**  A replica with a request it has not seen executed for
  ``view_change_ticks`` ticks of its clock (doubled after each view change that
  did not bring one; a quorum of view-changes for its view starts the count in a
  view change) moves to the next view: it sends a view-change with its stable
  checkpoint and its prepared certificates, each the signed pre-prepare and
  prepares themselves.  Seeing f + 1 view-changes for higher views, it joins the
  lowest.  The new primary, with 2f + 1 view-changes (its own among them), re-issues
  each number above the highest stable checkpoint up to the highest certified
  one: the highest-view certified batch, or a null batch.  Backups check the
  new-view against the view-changes it carries, by the same computation.
- **Durability.**  Before a replica sends anything a message of its says, the
  record is synced: the view it moved to, each pre-prepare it accepted, each
  certificate it is prepared with, each batch it committed, its stable
  checkpoint's state.  An honest replica that crashes and restarts is slow, not
  Byzantine: it never contradicts what it said.
- **Clients** sign nothing: they MAC (``impl.pbft.auth``).  A request is executed at
  most once (the session table keeps each client's last timestamp and result); an
  old or replayed request gets the last reply again or nothing.

Variants (deliberately broken, for the checks to catch)

====================  ===========================================================
``commit_quorum_2f``  A prepared replica commits a batch on 2f commits, not 2f + 1.
``skip_commit``       A replica executes a batch as soon as it is prepared, without
                      the commit phase.
====================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from distcheck.impl.paxos import apply_op
from distcheck.impl.pbft.auth import NodeKeys, digest
from distcheck.impl.pbft.messages import (
    BODIES,
    NULL,
    REPLICA_WIRE,
    Body,
    Checkpoint,
    Commit,
    FetchState,
    NewView,
    Prepare,
    PrePrepare,
    Reply,
    Request,
    Signed,
    State,
    ViewChange,
    batch_digest,
    open_signed,
    sign,
)
from distcheck.impl.runtime import config
from distcheck.impl.runtime.actor import Actor, MessageError, Rejected, encode
from distcheck.impl.runtime.api import Storage

VARIANTS = {
    "commit_quorum_2f": "a prepared replica commits a batch on 2f commits instead of 2f + 1",
    "skip_commit": "a replica executes a batch once it is prepared, skipping the commit phase",
}

NORMAL, CHANGING = "normal", "view-change"

#: views ahead of its own a replica keeps votes for (a replica a little behind
#: counts them once it gets there; farther ahead they are dropped, and re-sent)
VIEWS_AHEAD = 2

#: periods a view-change timer is extended because the view moved, though the
#: requests it watches did not execute
MAX_EXTENSIONS = 3


@attrs.frozen
class Timing(config.Timing):
    #: a replica's clock: it counts time in ticks of this many seconds
    tick: float = 1.0
    #: ticks without progress after which a replica watching a request that has not
    #: executed (or a view change that has not ended) moves to the next view; doubled
    #: after each view change that brought no progress
    view_change_ticks: int = 30
    #: ticks between re-sending what is not yet answered (lost messages)
    retry_ticks: int = 5
    #: how long a client waits for f + 1 matching replies before it asks every replica
    client_retry: float = 30.0


@attrs.frozen
class Tuning:
    """Sizes that trade throughput for latency and memory (not safety)."""

    #: requests per pre-prepare, at most
    max_batch: int = 64
    #: batches a primary has in flight (assigned, not yet executed), at most
    window: int = 2
    #: numbers between checkpoints; the water marks span twice this
    checkpoint_interval: int = 64


@attrs.frozen
class Tick:
    """A replica's clock (``Timing.tick``): re-sending and the view-change timeout
    count these.  Counting ticks handled, rather than reading the time, keeps a
    replica that was busy (or a scheduler that let time jump) from taking a slow
    view for a dead one: each tick is a moment the replica could have seen progress."""


def primary_of(view: int, replicas: Sequence[str]) -> str:
    return replicas[view % len(replicas)]


def certified_pre_prepare(keys: NodeKeys, replicas: Sequence[str], cert: Any, view: int, low: int) -> PrePrepare | None:
    """The pre-prepare a prepared certificate proves (a signed pre-prepare of its
    view's primary, of a view below ``view`` and a number above ``low``, and 2f
    matching signed prepares of other replicas), or None if it proves none."""
    if not isinstance(cert, Mapping) or set(cert) != {"pre_prepare", "prepares"}:
        return None
    try:
        pp = open_signed(keys, cert["pre_prepare"], PrePrepare)
        if not isinstance(cert["prepares"], list | tuple):
            return None
        prepares = [open_signed(keys, m, Prepare) for m in cert["prepares"]]
    except MessageError:
        return None
    if pp.view >= view or pp.seq <= low or pp.sender != primary_of(pp.view, replicas):
        return None
    backups = {
        p.sender
        for p in prepares
        if (p.view, p.seq, p.digest) == (pp.view, pp.seq, pp.digest) and p.sender != pp.sender and p.sender in replicas
    }
    quorum = 2 * ((len(replicas) - 1) // 3) + 1
    return pp if len(backups) >= quorum - 1 else None


class Replica(Actor):
    """One replica.  Its memory is rebuilt from its durable log at every start.
    ``executed`` (kept across restarts, for checkers) maps each number this replica
    executed to the batch digest it executed there."""

    LOG = "pbft"
    messages = REPLICA_WIRE

    def __init__(
        self,
        name: str,
        replicas: Sequence[str],
        keys: NodeKeys,
        timing: Timing = Timing(),
        tuning: Tuning = Tuning(),
        variant: str | None = None,
    ) -> None:
        config.check_variant(variant, VARIANTS)
        if name not in replicas:
            raise ValueError(f"replica {name!r} is not among the replicas {list(replicas)}")
        if len(replicas) < 4:
            raise ValueError(f"PBFT needs at least 4 replicas (3f + 1, f >= 1), got {len(replicas)}")
        super().__init__(name)
        self.replicas = tuple(replicas)
        self.f = (len(self.replicas) - 1) // 3
        self.quorum = 2 * self.f + 1
        self.commit_quorum = self.quorum - 1 if variant == "commit_quorum_2f" else self.quorum
        self.keys = keys
        self.timing = timing
        self.tuning = tuning
        self.variant = variant
        self.executed: dict[int, str] = {}
        self._reset()

    def _reset(self) -> None:
        self.view = 0
        self.status = NORMAL
        self.view_change_backoff = 1
        # Stable checkpoint: its number, the signed checkpoints proving it, its state.
        self.stable = 0
        self.stable_proof: tuple[dict[str, Any], ...] = ()
        self.stable_state = digest(self._snapshot({}, {}))
        self.stable_snapshot: dict[str, Any] = self._snapshot({}, {})
        # The state machine.
        self.data: dict[str, Any] = {}
        self.sessions: dict[str, tuple[int, Any]] = {}  # client → (last timestamp, result)
        self.last_executed = 0
        # The message log, by (view, seq) and digest.
        self.accepted: dict[tuple[int, int], tuple[dict[str, Any], PrePrepare]] = {}
        self.prepares: dict[tuple[int, int, str], dict[str, dict[str, Any]]] = {}
        self.commits: dict[tuple[int, int, str], set[str]] = {}
        self.my_messages: dict[tuple[int, int], list[dict[str, Any]]] = {}  # to re-send
        #: seq → (view, digest, certificate): the highest-view prepared certificate
        self.prepared: dict[int, tuple[int, str, dict[str, Any]]] = {}
        self.sent_commit: set[tuple[int, int]] = set()
        self.committed: dict[int, tuple[str, tuple[dict[str, Any], ...]]] = {}  # seq → (digest, batch)
        self.logged_execute: set[int] = set()
        self.checkpoints: dict[tuple[int, str], dict[str, dict[str, Any]]] = {}
        self.my_checkpoint: dict[str, Any] | None = None
        self.snapshots: dict[int, dict[str, Any]] = {}
        # View change.
        self.view_changes: dict[int, dict[str, tuple[dict[str, Any], ViewChange]]] = {}
        self.my_view_change: dict[str, Any] | None = None
        self.new_view_message: dict[str, Any] | None = None
        # Primary.
        self.next_seq = 0
        self.pending: dict[tuple[str, int], dict[str, Any]] = {}  # (client, timestamp) → request
        self.proposed: set[tuple[str, int]] = set()  # requests pre-prepared in this view
        # Requests seen and not yet executed (the view-change timer watches them).
        self.waiting: set[tuple[str, int]] = set()
        #: each client's latest request this replica received and has not executed,
        #: handed to the primary of a new view (so it need not wait for a retry)
        self.client_requests: dict[str, dict[str, Any]] = {}
        self.stalled = 0  # ticks since the watched requests last made progress
        self.ticks = 0
        #: something moved (a number prepared, committed or executed; a view-change
        #: or new-view for this view arrived) since the view-change timer was armed,
        #: and how many periods in a row the timer was extended for that alone
        self.progress = False
        self.extensions = 0

    # ------------------------------------------------------------------ start

    def on_start(self) -> None:
        self._reset()
        self.log_store: Storage = self.ctx.storage(self.LOG)
        new_view = 0
        for r in self.log_store.records():
            kind = r.get("kind")
            if kind == "view":
                self.view, self.status = int(r["view"]), CHANGING
                self.my_view_change = r["message"]
            elif kind == "new-view":
                new_view = int(r["view"])
                if new_view >= self.view:
                    self.view, self.status = new_view, NORMAL
                    self.new_view_message = r.get("message")
            elif kind == "accept":
                pp = BODIES.decode(r["message"]["body"])
                self.accepted[(pp.view, pp.seq)] = (r["message"], pp)
                self.next_seq = max(self.next_seq, pp.seq) if pp.view == self.view else self.next_seq
            elif kind == "prepared":
                seq, view = int(r["seq"]), int(r["view"])
                self.sent_commit.add((view, seq))
                if seq not in self.prepared or self.prepared[seq][0] < view:
                    self.prepared[seq] = (view, str(r["digest"]), r["certificate"])
            elif kind == "committed":
                seq = int(r["seq"])
                self.committed[seq] = (str(r["digest"]), tuple(r["batch"]))
                self.logged_execute.add(seq)
            elif kind in ("stable", "state"):
                self._install(int(r["seq"]), r["snapshot"])
                if kind == "stable":
                    self.stable, self.stable_proof = int(r["seq"]), tuple(r["proof"])
                    self.stable_state, self.stable_snapshot = str(r["state"]), r["snapshot"]
        if self.status == NORMAL and new_view < self.view:
            self.status = CHANGING
        if self.stable:
            self.snapshots[self.stable] = self.stable_snapshot
        self.next_seq = max(self.next_seq, self.last_executed)
        # What this view's pre-prepares hold is assigned already: a primary that
        # restarts must not assign a request again at another number.
        for (view, _), (_, pp) in self.accepted.items():
            if view == self.view:
                self.proposed.update((str(r["client"]), int(r["timestamp"])) for r in pp.batch)
        self._collect_garbage()
        self._execute_committed()
        self.set_timer(Tick(), self.timing.tick)

    # ---------------------------------------------------------------- helpers

    def primary(self, view: int | None = None) -> str:
        return primary_of(self.view if view is None else view, self.replicas)

    def _broadcast(self, signed: Mapping[str, Any]) -> None:
        wire = encode(Signed(dict(signed["body"]), str(signed["sig"])))
        for r in self.replicas:
            if r != self.name:
                self.ctx.send(r, wire)

    def _sign(self, body: Body) -> dict[str, Any]:
        return sign(self.keys, body)

    def _persist(self, *records: Mapping[str, Any]) -> None:
        for r in records:
            self.log_store.append(r)
        self.log_store.sync()

    def _record(self, action: str, low: int | None = None, **fields: Any) -> None:
        """Log a step in the spec's vocabulary (a new-view adds, beside the action,
        the stable checkpoint below the numbers it carries)."""
        extra = {} if low is None else {"low": low}
        self.ctx.record({"type": action, "replica": self.name, **fields}, **extra)

    def _in_window(self, seq: int) -> bool:
        return self.stable < seq <= self.stable + 2 * self.tuning.checkpoint_interval

    @staticmethod
    def _snapshot(data: Mapping[str, Any], sessions: Mapping[str, tuple[int, Any]]) -> dict[str, Any]:
        return {"data": dict(data), "sessions": {c: [t, r] for c, (t, r) in sorted(sessions.items())}}

    def _install(self, seq: int, snapshot: Mapping[str, Any]) -> None:
        self.data = dict(snapshot["data"])
        self.sessions = {str(c): (int(t), r) for c, (t, r) in snapshot["sessions"].items()}
        self.last_executed = seq

    # --------------------------------------------------------------- dispatch

    def on_timer(self, timer: Any) -> None:
        if isinstance(timer, Tick):
            self.set_timer(timer, self.timing.tick)
            self.ticks += 1
            if self.ticks % self.timing.retry_ticks == 0:
                self._retransmit()
            self._watch()

    def _watch(self) -> None:
        """The view-change timeout: a replica watching a request that has not
        executed (or a view change a quorum has joined, which has not ended) moves to
        the next view after ``view_change_ticks`` ticks (times the backoff) without
        progress.  Progress short of execution (a number prepared or committed, a
        view-change for this view) extends the period a few times only, so that a
        primary cannot keep one request out for ever by letting others through."""
        watching = (self.status == NORMAL and bool(self.waiting)) or (
            self.status == CHANGING and len(self.view_changes.get(self.view, {})) >= self.quorum
        )
        if not watching:
            # Nothing watched: what moved before the watch began says nothing of it.
            self.stalled, self.progress, self.extensions = 0, False, 0
            return
        self.stalled += 1
        if self.stalled < self.timing.view_change_ticks * self.view_change_backoff:
            return
        self.stalled = 0
        if self.progress and self.extensions < MAX_EXTENSIONS:
            self.extensions += 1
            self.progress = False
            return
        self.progress = False
        self.view_change_backoff = min(self.view_change_backoff * 2, 16)
        self._start_view_change(self.view + 1)

    def on_message(self, src: str, msg: Any) -> None:
        if isinstance(msg, Request):
            self._on_request(src, msg)
            return
        try:
            body = open_signed(self.keys, {"body": msg.body, "sig": msg.sig})
        except MessageError as exc:
            raise Rejected(str(exc)) from None
        if body.sender not in self.replicas or body.sender == self.name:
            raise Rejected(f"a {type(body).__name__} signed by {body.sender!r}, not by another replica")
        match body:
            case PrePrepare():
                self._on_pre_prepare({"body": msg.body, "sig": msg.sig}, body)
            case Prepare():
                self._on_prepare({"body": msg.body, "sig": msg.sig}, body)
            case Commit():
                self._on_commit(body)
            case Checkpoint():
                self._on_checkpoint({"body": msg.body, "sig": msg.sig}, body)
            case ViewChange():
                self._on_view_change({"body": msg.body, "sig": msg.sig}, body)
            case NewView():
                self._on_new_view(body)
            case FetchState(sender, seq):
                if seq in self.snapshots:
                    signed = self._sign(State(self.name, seq, self.snapshots[seq]))
                    self.ctx.send(sender, encode(Signed(signed["body"], signed["sig"])))
            case State(_, seq, snapshot):
                self._on_state(seq, snapshot)

    # ---------------------------------------------------------------- clients

    def _on_request(self, src: str, req: Request) -> None:
        if not self.keys.check_mac(req.client, req.body(), req.auth.get(self.name, "")):
            raise Rejected(f"a request of {req.client!r} whose MAC for {self.name} does not check")
        key = (req.client, req.timestamp)
        last = self.sessions.get(req.client)
        if last is not None and last[0] >= req.timestamp:
            if last[0] == req.timestamp:
                self._reply(req.client, req.timestamp, last[1])
            return  # an old request, or a replay: executed once, answered again
        held = self.client_requests.get(req.client)
        if held is None or int(held["timestamp"]) < req.timestamp:
            self.client_requests[req.client] = {k: v for k, v in encode(req).items() if k != "type"}
        if self.primary() == self.name and self.status == NORMAL:
            if key not in self.proposed:
                self.pending[key] = self.client_requests[req.client]
                self._issue()
        elif src == req.client and self.primary() != self.name and self.ctx.knows(self.primary()):
            self.ctx.send(self.primary(), encode(req))  # relay to the primary, and watch it
        if key not in self.proposed or self.primary() != self.name:
            self.waiting.add(key)

    def _reply(self, client: str, timestamp: int, result: Any) -> None:
        if not self.ctx.knows(client):
            return
        reply = Reply(self.name, self.view, client, timestamp, result, "")
        self.ctx.send(client, encode(attrs.evolve(reply, mac=self.keys.mac(client, reply.body()))))

    def _valid_request(self, r: Mapping[str, Any]) -> bool:
        body = {"client": r["client"], "timestamp": r["timestamp"], "op": r["op"]}
        return self.keys.check_mac(str(r["client"]), body, r["auth"].get(self.name, ""))

    # ----------------------------------------------------------------- normal case

    def _issue(self) -> None:
        """As primary: assign the pending requests numbers, a batch at a time."""
        while (
            self.pending
            and self.status == NORMAL
            and self._in_window(self.next_seq + 1)
            and self.next_seq - self.last_executed < self.tuning.window
        ):
            keys = list(self.pending)[: self.tuning.max_batch]
            batch = tuple(self.pending.pop(k) for k in keys)
            self.proposed.update(keys)
            self.next_seq += 1
            d = batch_digest(batch)
            signed = self._sign(PrePrepare(self.name, self.view, self.next_seq, d, batch))
            self._persist({"kind": "accept", "message": signed})
            self.accepted[(self.view, self.next_seq)] = (signed, BODIES.decode(signed["body"]))
            self._record("PrePrepare", view=self.view, seq=self.next_seq, request=d)
            self.my_messages[(self.view, self.next_seq)] = [signed]
            self._broadcast(signed)
            self._check_prepared(self.view, self.next_seq)

    def _on_pre_prepare(self, signed: dict[str, Any], pp: PrePrepare) -> None:
        if pp.view != self.view or self.status != NORMAL or pp.sender != self.primary(pp.view):
            return
        if not self._in_window(pp.seq) or pp.digest == NULL:
            return  # a null batch comes only with a new view
        if (pp.view, pp.seq) not in self.accepted and not all(self._valid_request(r) for r in pp.batch):
            raise Rejected(f"a pre-prepare at {pp.seq} holds a request whose MAC for {self.name} does not check")
        self._accept(signed, pp)

    def _accept(self, signed: dict[str, Any], pp: PrePrepare) -> None:
        """A backup takes a pre-prepare of its view's primary, or of a new-view (whose
        batches a quorum prepared: their requests' MACs were checked then)."""
        if (pp.view, pp.seq) in self.accepted or pp.seq <= self.stable:
            return
        self._persist({"kind": "accept", "message": signed})
        self.accepted[(pp.view, pp.seq)] = (signed, pp)
        for r in pp.batch:
            client, timestamp = str(r["client"]), int(r["timestamp"])
            if self.sessions.get(client, (0, None))[0] < timestamp:
                self.waiting.add((client, timestamp))
        self._record("Prepare", view=pp.view, seq=pp.seq, request=pp.digest)
        mine = self._sign(Prepare(self.name, pp.view, pp.seq, pp.digest))
        self.my_messages[(pp.view, pp.seq)] = [mine]
        self.prepares.setdefault((pp.view, pp.seq, pp.digest), {})[self.name] = mine
        self._broadcast(mine)
        self._check_prepared(pp.view, pp.seq)

    def _wanted(self, view: int, seq: int) -> bool:
        """A vote worth keeping: of this view or the next few, within the water marks
        (what a Byzantine replica sends beyond them would only fill memory)."""
        return self.view <= view <= self.view + VIEWS_AHEAD and self._in_window(seq)

    def _on_prepare(self, signed: dict[str, Any], p: Prepare) -> None:
        if p.sender == self.primary(p.view) or not self._wanted(p.view, p.seq):
            return
        self.prepares.setdefault((p.view, p.seq, p.digest), {})[p.sender] = signed
        self._check_prepared(p.view, p.seq)

    def _backup_prepares(self, view: int, seq: int, d: str) -> dict[str, dict[str, Any]]:
        votes = self.prepares.get((view, seq, d), {})
        return {r: m for r, m in votes.items() if r != self.primary(view)}

    def _check_prepared(self, view: int, seq: int) -> None:
        if view != self.view or self.status != NORMAL or (view, seq) in self.sent_commit:
            return
        entry = self.accepted.get((view, seq))
        if entry is None:
            return
        signed, pp = entry
        votes = self._backup_prepares(view, seq, pp.digest)
        if len(votes) < self.quorum - 1:
            return
        chosen = [votes[r] for r in sorted(votes)[: self.quorum - 1]]
        certificate = {"pre_prepare": signed, "prepares": chosen}
        self._persist({"kind": "prepared", "seq": seq, "view": view, "digest": pp.digest, "certificate": certificate})
        self.progress = True
        self.sent_commit.add((view, seq))
        self.prepared[seq] = (view, pp.digest, certificate)
        self._record("Commit", view=view, seq=seq, request=pp.digest)
        mine = self._sign(Commit(self.name, view, seq, pp.digest))
        self.my_messages.setdefault((view, seq), []).append(mine)
        self.commits.setdefault((view, seq, pp.digest), set()).add(self.name)
        self._broadcast(mine)
        self._check_committed(view, seq)

    def _on_commit(self, c: Commit) -> None:
        if not self._wanted(c.view, c.seq):
            return
        self.commits.setdefault((c.view, c.seq, c.digest), set()).add(c.sender)
        self._check_committed(c.view, c.seq)

    def _check_committed(self, view: int, seq: int) -> None:
        if view != self.view or self.status != NORMAL or (view, seq) not in self.sent_commit:
            return
        if seq in self.committed or seq <= self.last_executed:
            return
        _, pp = self.accepted[(view, seq)]
        needed = 0 if self.variant == "skip_commit" else self.commit_quorum  # BROKEN in the variants
        if len(self.commits.get((view, seq, pp.digest), ())) < needed:
            return
        self._persist({"kind": "committed", "seq": seq, "digest": pp.digest, "batch": list(pp.batch)})
        self.progress = True
        self.committed[seq] = (pp.digest, pp.batch)
        if seq not in self.logged_execute:
            self.logged_execute.add(seq)
            self._record("Execute", view=view, seq=seq, request=pp.digest)
        self._execute_committed()

    def _execute_committed(self) -> None:
        progress = self.last_executed + 1 in self.committed
        while self.last_executed + 1 in self.committed:
            seq = self.last_executed + 1
            d, batch = self.committed[seq]
            for r in batch:
                client, timestamp = str(r["client"]), int(r["timestamp"])
                self.waiting.discard((client, timestamp))
                held = self.client_requests.get(client)
                if held is not None and int(held["timestamp"]) <= timestamp:
                    del self.client_requests[client]
                last = self.sessions.get(client)
                if last is not None and last[0] >= timestamp:
                    continue  # executed already (the request was batched twice)
                self.data, result = apply_op(self.data, r["op"])
                self.sessions[client] = (timestamp, result)
                self._reply(client, timestamp, result)
            self.last_executed = seq
            self.executed[seq] = d
            if seq % self.tuning.checkpoint_interval == 0:
                self._take_checkpoint(seq)
        if progress:
            self.extensions = 0
            # A request executed: the primary works.  The timer starts afresh for
            # what is still waiting, and the next view change waits the base time.
            self.view_change_backoff = 1
            self.stalled = 0
        if self.primary() == self.name:
            self._issue()

    # -------------------------------------------------------------- checkpoints

    def _take_checkpoint(self, seq: int) -> None:
        snapshot = self._snapshot(self.data, self.sessions)
        self.snapshots[seq] = snapshot
        signed = self._sign(Checkpoint(self.name, seq, digest(snapshot)))
        self.my_checkpoint = signed
        self.checkpoints.setdefault((seq, digest(snapshot)), {})[self.name] = signed
        self._broadcast(signed)
        self._check_stable(seq, digest(snapshot))

    def _on_checkpoint(self, signed: dict[str, Any], c: Checkpoint) -> None:
        if c.seq <= self.stable or c.seq % self.tuning.checkpoint_interval:
            return
        # One checkpoint per sender is kept, its highest: memory stays bounded
        # whatever numbers a Byzantine replica claims.
        for key, votes in list(self.checkpoints.items()):
            if c.sender in votes and key != (c.seq, c.state):
                if key[0] >= c.seq:
                    return
                del votes[c.sender]
                if not votes:
                    del self.checkpoints[key]
        self.checkpoints.setdefault((c.seq, c.state), {})[c.sender] = signed
        self._check_stable(c.seq, c.state)

    def _check_stable(self, seq: int, state: str) -> None:
        votes = self.checkpoints.get((seq, state), {})
        if seq <= self.stable or len(votes) < self.quorum:
            return
        proof = tuple(votes[r] for r in sorted(votes)[: self.quorum])
        self._make_stable(seq, state, proof)

    def _make_stable(self, seq: int, state: str, proof: tuple[dict[str, Any], ...]) -> None:
        self.stable, self.stable_proof, self.stable_state = seq, proof, state
        if self.last_executed >= seq and seq in self.snapshots:
            self.stable_snapshot = self.snapshots[seq]
            self._persist(
                {"kind": "stable", "seq": seq, "proof": list(proof), "state": state, "snapshot": self.stable_snapshot}
            )
        elif self.last_executed < seq:
            self._fetch_state()
        self._collect_garbage()
        if self.primary() == self.name:
            self._issue()

    def _collect_garbage(self) -> None:
        """Forget the messages at or below the stable checkpoint."""
        h = self.stable
        self.accepted = {k: v for k, v in self.accepted.items() if k[1] > h}
        self.my_messages = {k: v for k, v in self.my_messages.items() if k[1] > h}
        self.prepares = {k: v for k, v in self.prepares.items() if k[1] > h}
        self.commits = {k: v for k, v in self.commits.items() if k[1] > h}
        self.prepared = {n: v for n, v in self.prepared.items() if n > h}
        self.committed = {n: v for n, v in self.committed.items() if n > h}
        self.snapshots = {n: v for n, v in self.snapshots.items() if n >= h}  # the stable one is served
        self.sent_commit = {k for k in self.sent_commit if k[1] > h}
        self.checkpoints = {k: v for k, v in self.checkpoints.items() if k[0] > h}

    def _fetch_state(self) -> None:
        if self.last_executed >= self.stable:
            return
        body = encode(Signed(**self._sign(FetchState(self.name, self.stable))))
        for signed in self.stable_proof:
            sender = str(signed["body"]["sender"])
            if sender != self.name:
                self.ctx.send(sender, body)

    def _on_state(self, seq: int, snapshot: dict[str, Any]) -> None:
        if seq != self.stable or self.last_executed >= seq or digest(snapshot) != self.stable_state:
            return
        self._persist(
            {
                "kind": "stable",
                "seq": seq,
                "proof": list(self.stable_proof),
                "state": self.stable_state,
                "snapshot": snapshot,
            }
        )
        self._install(seq, snapshot)
        self.stable_snapshot = snapshot
        self.snapshots[seq] = snapshot
        self.client_requests = {
            c: r for c, r in self.client_requests.items() if self.sessions.get(c, (0, None))[0] < int(r["timestamp"])
        }
        for client, (timestamp, _) in self.sessions.items():
            self.waiting = {w for w in self.waiting if not (w[0] == client and w[1] <= timestamp)}
        self._execute_committed()

    # -------------------------------------------------------------- view change

    def _start_view_change(self, view: int) -> None:
        """Move to ``view`` (through every view between: the spec moves one at a time)."""
        if view <= self.view:
            return
        self.stalled = 0
        certificates = tuple(self.prepared[n][2] for n in sorted(self.prepared) if n > self.stable)
        body = ViewChange(self.name, view, self.stable, self.stable_proof, certificates)
        signed = self._sign(body)
        self._persist({"kind": "view", "view": view, "message": signed})
        for v in range(self.view + 1, view + 1):
            self._record("ViewChange", view=v)
        self.view, self.status = view, CHANGING
        self.view_changes = {v: vcs for v, vcs in self.view_changes.items() if v >= view}
        self.my_view_change, self.new_view_message = signed, None
        self.pending, self.proposed = {}, set()
        self.view_changes.setdefault(view, {})[self.name] = (signed, body)
        self._broadcast(signed)
        self._try_new_view()

    def _valid_view_change(self, vc: ViewChange) -> bool:
        """The checkpoint proof holds (prepared certificates are checked one by one
        where they are used: a bad one is ignored, as the spec's new primary does)."""
        if vc.stable == 0:
            return not vc.proof
        if vc.stable % self.tuning.checkpoint_interval:
            return False
        signers, states = set(), set()
        for m in vc.proof:
            try:
                c = open_signed(self.keys, m, Checkpoint)
            except MessageError:
                return False
            if c.seq != vc.stable or c.sender not in self.replicas:
                return False
            signers.add(c.sender)
            states.add(c.state)
        return len(signers) >= self.quorum and len(states) == 1

    def _on_view_change(self, signed: dict[str, Any], vc: ViewChange) -> None:
        if vc.view <= self.view and not (vc.view == self.view and self.status == CHANGING):
            if vc.view == self.view and self.primary() == self.name and self.new_view_message is not None:
                self._send_new_view(vc.sender)  # it missed the new view
            return
        if not self._valid_view_change(vc):
            raise Rejected(f"a view-change of {vc.sender} whose checkpoint proof does not hold")
        # Above its own view a replica keeps each sender's highest view-change only
        # (the join rule needs no more), so memory stays bounded.
        for v in [v for v in self.view_changes if v > self.view and v != vc.view]:
            if vc.sender in self.view_changes[v]:
                if v > vc.view:
                    return
                del self.view_changes[v][vc.sender]
        self.view_changes.setdefault(vc.view, {})[vc.sender] = (signed, vc)
        if vc.view == self.view:
            self.progress = True
        higher = {s for v, vcs in self.view_changes.items() if v > self.view for s in vcs}
        if len(higher) >= self.f + 1:  # f + 1 replicas moved on: one is honest, join
            self._start_view_change(min(v for v, vcs in self.view_changes.items() if v > self.view and vcs))
        self._try_new_view()

    def _new_view_plan(
        self, view: int, vcs: Sequence[ViewChange]
    ) -> tuple[int, tuple[dict[str, Any], ...], list[tuple[int, str, tuple[dict[str, Any], ...]]]]:
        """From a quorum's view-changes: the highest stable checkpoint (its number and
        proof) and, above it up to the highest certified number, each number's batch."""
        top = max(vcs, key=lambda vc: vc.stable)
        low, proof = top.stable, top.proof
        best: dict[int, PrePrepare] = {}
        for vc in vcs:
            for cert in vc.prepared:
                pp = certified_pre_prepare(self.keys, self.replicas, cert, view, low)
                if pp is not None and (pp.seq not in best or best[pp.seq].view < pp.view):
                    best[pp.seq] = pp
        high = max(best, default=low)
        plan = []
        for n in range(low + 1, high + 1):
            pp = best.get(n)
            plan.append((n, NULL, ()) if pp is None else (n, pp.digest, pp.batch))
        return low, proof, plan

    def _try_new_view(self) -> None:
        view = self.view
        if self.status != CHANGING or self.primary() != self.name or self.new_view_message is not None:
            return
        vcs = self.view_changes.get(view, {})
        if self.name not in vcs or len(vcs) < self.quorum:
            return
        others = [s for s in vcs if s != self.name][: self.quorum - 1]
        chosen = [vcs[self.name], *(vcs[s] for s in others)]
        low, proof, plan = self._new_view_plan(view, [vc for _, vc in chosen])
        pre_prepares = tuple(self._sign(PrePrepare(self.name, view, n, d, batch)) for n, d, batch in plan)
        nv = self._sign(NewView(self.name, view, tuple(s for s, _ in chosen), pre_prepares))
        self._persist(
            {"kind": "new-view", "view": view, "message": nv}, *({"kind": "accept", "message": m} for m in pre_prepares)
        )
        self._record("NewView", low=low, view=view, carried=[[n, d] for n, d, _ in plan])
        self.status, self.new_view_message = NORMAL, nv
        self._enter_view(view, low, proof, pre_prepares, primary=True)
        self._send_new_view(None)

    def _send_new_view(self, to: str | None) -> None:
        assert self.new_view_message is not None
        if to is None:
            self._broadcast(self.new_view_message)
        else:
            self.ctx.send(to, encode(Signed(**self.new_view_message)))

    def _on_new_view(self, nv: NewView) -> None:
        if nv.view < self.view or (nv.view == self.view and self.status == NORMAL):
            return
        if nv.sender != self.primary(nv.view):
            raise Rejected(f"a new-view for view {nv.view} from {nv.sender}, not its primary")
        vcs: dict[str, ViewChange] = {}
        for m in nv.view_changes:
            try:
                vc = open_signed(self.keys, m, ViewChange)
            except MessageError as exc:
                raise Rejected(f"a new-view whose view-change does not check: {exc}") from None
            if vc.view != nv.view or not self._valid_view_change(vc):
                raise Rejected("a new-view holding a view-change for another view, or with a bad checkpoint proof")
            vcs[vc.sender] = vc
        if len(vcs) < self.quorum or nv.sender not in vcs:
            raise Rejected(f"a new-view for view {nv.view} without a quorum of view-changes, its primary's among them")
        order = [open_signed(self.keys, m, ViewChange) for m in nv.view_changes]
        low, proof, plan = self._new_view_plan(nv.view, order)
        pre_prepares = []
        for m, (n, d, batch) in zip(nv.pre_prepares, plan, strict=False):
            pp = open_signed(self.keys, m, PrePrepare)
            if (pp.sender, pp.view, pp.seq, pp.digest, pp.batch) != (nv.sender, nv.view, n, d, batch):
                raise Rejected(f"a new-view whose pre-prepare at {n} is not what its view-changes give")
            pre_prepares.append(m)
        if len(pre_prepares) != len(plan):
            raise Rejected("a new-view re-issuing more or fewer numbers than its view-changes give")
        self._start_view_change(nv.view)  # the spec's replica moves view by view, sending its view-change
        self._persist({"kind": "new-view", "view": nv.view})
        self.status = NORMAL
        self._enter_view(nv.view, low, proof, tuple(pre_prepares), primary=False)

    def _enter_view(
        self,
        view: int,
        low: int,
        proof: tuple[dict[str, Any], ...],
        pre_prepares: tuple[dict[str, Any], ...],
        primary: bool,
    ) -> None:
        self.stalled = 0
        if low > self.stable:
            states = {str(m["body"]["state"]) for m in proof}
            self._make_stable(low, states.pop(), proof)
        self.next_seq = max([self.last_executed, low, *(int(m["body"]["seq"]) for m in pre_prepares)])
        for m in pre_prepares:
            pp: PrePrepare = BODIES.decode(m["body"])
            for r in pp.batch:
                self.proposed.add((str(r["client"]), int(r["timestamp"])))
            if primary:
                self.accepted[(view, pp.seq)] = (m, pp)
                self.my_messages[(view, pp.seq)] = [m]
            elif pp.seq > self.stable:
                self._accept(m, pp)
        for vote in list(self.prepares):
            if vote[0] == view:
                self._check_prepared(view, vote[1])
        if primary:
            for seq in [n for v, n in self.accepted if v == view]:
                self._check_prepared(view, seq)
        # The requests still waiting go to the new primary now, not at the clients'
        # next retry.
        for client, request in list(self.client_requests.items()):
            waiting = (client, int(request["timestamp"]))
            if self.sessions.get(client, (0, None))[0] >= waiting[1] or waiting in self.proposed:
                continue
            if primary:
                self.pending[waiting] = request
            elif self.ctx.knows(self.primary()):
                self.ctx.send(self.primary(), encode(Request(**request)))
        if primary:
            self._issue()

    # ------------------------------------------------------------- retransmission

    def _retransmit(self) -> None:
        """Lost messages are re-sent: a number not yet committed here, a view change
        not yet answered, a checkpoint not yet stable."""
        if self.status == CHANGING and self.my_view_change is not None:
            self._broadcast(self.my_view_change)
            return
        behind = [
            k
            for k in self.my_messages
            if k[0] == self.view and k[1] not in self.committed and k[1] > self.last_executed
        ]
        if behind and self.view > 0 and self.primary() == self.name and self.new_view_message is not None:
            self._send_new_view(None)
        for key in behind:
            for m in self.my_messages[key]:
                self._broadcast(m)
        if self.my_checkpoint is not None and int(self.my_checkpoint["body"]["seq"]) > self.stable:
            self._broadcast(self.my_checkpoint)
