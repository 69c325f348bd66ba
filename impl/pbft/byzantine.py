"""Byzantine nemeses: replicas that lie, for the tests and ``distcheck simulate pbft``.

Where it sits: beside ``impl.pbft.replica``; ``impl.pbft.client.cluster`` runs one of
these in place of a replica (``byzantine={"r1": NEMESES["twins"]}``).  Each holds
the keys of the replica it replaces, as a compromised replica would, and nothing
more: it cannot sign for another replica or MAC for a client.  None logs a trace
step (a faulty replica's messages are the spec's Byzantine vocabulary, not its
steps).  Each is honest code with one deliberate lie, so that it takes part in the
protocol closely enough for its lie to matter:

=====================  ==========================================================
``equivocate``         As primary it pre-prepares two different batches at one
                       number, each to half of the backups, and votes for both.
``conflicting_votes``  Every prepare and commit it sends goes to half the replicas;
                       the others get one for a different batch at that number.
``forge``              It sends, beside its honest messages: a prepare under
                       another replica's name (its own signature), a pre-prepare
                       holding a request whose MAC it made up, a view-change
                       whose certificates it made up, a new-view for a view it
                       is not primary of, a checkpoint of a state it never had,
                       and a wrong reply to every client.
``replay``             It keeps every signed message it receives and re-sends old
                       ones (and clients' old requests) to random replicas.
``silent``             It receives everything and sends nothing (a primary that
                       has stopped: the others must change view).
``twins``              Two copies of the replica, each running the honest code
                       with the same keys and their own storage, each receiving a
                       random share of the messages (the Twins approach): honest
                       parts that together equivocate.
=====================  ==========================================================
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from distcheck.impl.pbft.auth import NodeKeys
from distcheck.impl.pbft.messages import (
    Checkpoint,
    Commit,
    NewView,
    Prepare,
    PrePrepare,
    Reply,
    Signed,
    ViewChange,
    batch_digest,
)
from distcheck.impl.pbft.replica import NORMAL, Replica, Timing, Tuning
from distcheck.impl.runtime.actor import encode
from distcheck.impl.runtime.api import Context, ContextWrapper, Envelope, NodeMain, Received, Storage, Timer

#: a Byzantine node's maker: (its name, the replicas, its keys) → the node
Nemesis = Callable[[str, Sequence[str], NodeKeys], NodeMain]


class Byzantine(Replica):
    """The honest replica's code, logging nothing; subclasses add their lie."""

    def __init__(self, name: str, replicas: Sequence[str], keys: NodeKeys, timing: Timing, tuning: Tuning) -> None:
        super().__init__(name, replicas, keys, timing, tuning)
        self.rng = random.Random(f"byzantine {name}")

    def _record(self, action: str, low: int | None = None, **fields: Any) -> None:
        """A faulty replica's steps are not the spec's: nothing is logged."""

    def _halves(self) -> tuple[list[str], list[str]]:
        others = [r for r in self.replicas if r != self.name]
        self.rng.shuffle(others)
        cut = len(others) // 2 or 1
        return others[:cut], others[cut:]

    def _send_signed(self, to: Sequence[str], signed: Mapping[str, Any]) -> None:
        wire = encode(Signed(dict(signed["body"]), str(signed["sig"])))
        for r in to:
            self.ctx.send(r, wire)


class Equivocate(Byzantine):
    def _issue(self) -> None:
        while self.pending and self.status == NORMAL and self._in_window(self.next_seq + 1):
            batch = tuple(self.pending.pop(k) for k in list(self.pending)[: self.tuning.max_batch])
            other = batch[::-1] if len(batch) > 1 else batch + batch
            self.next_seq += 1
            left, right = self._halves()
            for to, chosen in ((left, batch), (right, other)):
                d = batch_digest(chosen)
                self._send_signed(to, self._sign(PrePrepare(self.name, self.view, self.next_seq, d, chosen)))
                for vote in (Prepare, Commit):
                    self._send_signed(self.replicas, self._sign(vote(self.name, self.view, self.next_seq, d)))


class ConflictingVotes(Byzantine):
    def _broadcast(self, signed: Mapping[str, Any]) -> None:
        body = signed["body"]
        if body.get("type") not in ("Prepare", "Commit"):
            super()._broadcast(signed)
            return
        left, right = self._halves()
        self._send_signed(left, signed)
        vote = Prepare if body["type"] == "Prepare" else Commit
        fake = self._sign(vote(self.name, int(body["view"]), int(body["seq"]), f"{self.rng.getrandbits(64):016x}"))
        self._send_signed(right, fake)


class Forge(Byzantine):
    def _retransmit(self) -> None:
        super()._retransmit()
        victim = self.rng.choice([r for r in self.replicas if r != self.name])
        view, seq = self.view, self.last_executed + 1
        # A prepare under another replica's name, signed with this one's key.
        body = encode(Prepare(victim, view, seq, "f" * 16))
        forged_prepare = {"body": body, "sig": self.keys.sign(body)}
        # A request whose MAC this replica made up (it holds no client's key).
        request = {"client": "c1", "timestamp": 10**15, "op": {"op": "put", "key": "x", "value": "forged"}}
        fake = {**request, "auth": {r: "00" * 32 for r in self.replicas}}
        pp = self._sign(PrePrepare(self.name, view, seq, batch_digest((fake,)), (fake,)))
        # Certificates made of made-up evidence, a new-view it may not send, a
        # checkpoint of a state it never had.
        cert = {"pre_prepare": pp, "prepares": [forged_prepare, forged_prepare]}
        vc = self._sign(ViewChange(self.name, view + 1, 0, (), (cert,)))
        nv = self._sign(NewView(self.name, view + 1, (vc,), ()))
        checkpoint = self._sign(Checkpoint(self.name, self.tuning.checkpoint_interval, "0" * 16))
        for signed in (forged_prepare, pp, vc, nv, checkpoint):
            self._send_signed([r for r in self.replicas if r != self.name], signed)

    def _reply(self, client: str, timestamp: int, result: Any) -> None:
        if self.ctx.knows(client):
            lie = Reply(self.name, self.view, client, timestamp, "lie", "")
            self.ctx.send(client, encode(attrs.evolve(lie, mac=self.keys.mac(client, lie.body()))))


class Replay(Byzantine):
    def __init__(self, name: str, replicas: Sequence[str], keys: NodeKeys, timing: Timing, tuning: Tuning) -> None:
        super().__init__(name, replicas, keys, timing, tuning)
        self.heard: list[tuple[str, dict[str, Any]]] = []

    def _receive(self, envelope: Envelope) -> None:
        if isinstance(envelope.msg, dict) and len(self.heard) < 500:
            self.heard.append((envelope.src, envelope.msg))
        super()._receive(envelope)

    def _retransmit(self) -> None:
        super()._retransmit()
        for _ in range(min(3, len(self.heard))):
            _, msg = self.rng.choice(self.heard)
            self.ctx.send(self.rng.choice([r for r in self.replicas if r != self.name]), msg)


class Silent(Byzantine):
    def main(self, ctx: Context) -> None:
        while True:
            ctx.receive()


class _TwinContext(ContextWrapper):
    """One twin's view of the node's context: its own timers and storage (by a
    prefix), the node's network, no trace."""

    def __init__(self, ctx: Context, prefix: str) -> None:
        super().__init__(ctx)
        self.prefix = prefix

    def receive(self, timeout: float | None = None) -> Received | None:
        raise RuntimeError("a twin receives through its pair")

    def receive_ready(self) -> Received | None:
        return None  # its pair hands it each item: nothing is waiting for it here

    def set_timer(self, name: str, delay: float) -> None:
        self.inner.set_timer(self.prefix + name, delay)

    def cancel_timer(self, name: str) -> None:
        self.inner.cancel_timer(self.prefix + name)

    def storage(self, name: str) -> Storage:
        return self.inner.storage(self.prefix + name)

    def spawn(self, name: str, fn: Callable[[], None]) -> None:
        self.inner.spawn(self.prefix + name, fn)

    def record(self, action: Mapping[str, Any], **extra: Any) -> None:
        """A faulty replica's steps are not the spec's: nothing is logged."""

    def log(self, text: str) -> None:
        self.inner.log(f"{self.prefix} {text}")


class Twins:
    """Two honest replicas with one identity (keys, name), each with its own
    memory and storage; every message reaches one of them or both, at random."""

    def __init__(self, name: str, replicas: Sequence[str], keys: NodeKeys, timing: Timing, tuning: Tuning) -> None:
        self.name = name
        self.twins = [Byzantine(name, replicas, keys, timing, tuning) for _ in range(2)]
        self.rng = random.Random(f"twins {name}")

    def main(self, ctx: Context) -> None:
        prefixes = ("twin-a/", "twin-b/")
        for twin, prefix in zip(self.twins, prefixes, strict=True):
            twin.ctx = _TwinContext(ctx, prefix)
            twin._timers = {}
            twin._guard("on_start", twin.on_start)
        while True:
            item = ctx.receive()
            if isinstance(item, Timer):
                for twin, prefix in zip(self.twins, prefixes, strict=True):
                    if item.name.startswith(prefix):
                        timer = twin._timers.get(item.name[len(prefix) :])
                        if timer is not None:
                            twin._guard("on_timer", functools.partial(twin.on_timer, timer))
            elif isinstance(item, Envelope):
                pick = self.rng.random()
                for i, twin in enumerate(self.twins):
                    if pick < 1 / 3 or (i == 0) == (pick < 2 / 3):
                        twin._receive(item)


def _maker(kind: type[Byzantine] | type[Twins]) -> Callable[..., Nemesis]:
    def nemesis(timing: Timing = Timing(), tuning: Tuning = Tuning()) -> Nemesis:
        def make(name: str, replicas: Sequence[str], keys: NodeKeys) -> NodeMain:
            return kind(name, replicas, keys, timing, tuning).main

        return make

    return nemesis


#: name → maker of the nemesis (given the cluster's timing and tuning)
NEMESES: dict[str, Callable[..., Nemesis]] = {
    "equivocate": _maker(Equivocate),
    "conflicting_votes": _maker(ConflictingVotes),
    "forge": _maker(Forge),
    "replay": _maker(Replay),
    "silent": _maker(Silent),
    "twins": _maker(Twins),
}
