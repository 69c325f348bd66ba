"""Causal broadcast among a fixed group of nodes, with vector clocks, on reliable
links: ``spec/broadcast.py``'s ``causal_broadcast``, as a component any actor can
embed.

Where it sits: on ``impl.messaging.link`` (which gives it, between each pair of
members, every message once and in the order sent, across crashes);
``impl.messaging.group_simulation`` runs it for ``distcheck simulate
causal_broadcast``.  An actor embeds it as it would the links::

    class Member(Actor):
        messages = Messages(*LINK_MESSAGES)

        def __init__(self, name, group):
            super().__init__(name)
            self.group = CausalBroadcast(self, group, on_deliver=self.on_broadcast)

        def on_start(self):
            self.group.start()
            for sender, body in self.group.delivered():
                ...                       # rebuild the node's state from what it delivered

        def on_message(self, src, msg):
            self.group.handle(src, msg)

        def on_timer(self, timer):
            self.group.on_timer(timer)

    self.group.broadcast({"any": "JSON"})   # delivered here at once, everywhere in causal order

What it guarantees: every member delivers every message broadcast by a member that
stays up, once, and never before a message that happened before it (one its sender
had delivered, or broadcast, before broadcasting it): so each sender's messages
in the order sent, and a reply after what it answers.

How.  Each member keeps a vector clock, entry p counting the messages of p it has
delivered.  ``broadcast`` counts its own entry up, stamps the message with the
clock, delivers it at once and sends it to every other member; the delivery and
the sends are made durable by one sync (one log, shared with the links), so a
crash never leaves a message delivered here and sent nowhere.  A message received
waits (the hold-back queue) until it is its sender's next (``V[p] = VC[p] + 1``)
and everything its sender had delivered is delivered here (``V[k] <= VC[k]``,
every other k); then it is delivered, durably, and the clock's entry for its
sender set.  The hold-back queue is memory only: after a restart it is rebuilt from
the links' inbox (every message received, durably) less what was delivered.

Records (in the log, beside the links'): ``{"delivered": sender, "clock": [...],
"body": ...}`` for each delivery, own messages included, in order.

Every step is recorded in the spec's vocabulary (``Broadcast``, ``Deliver``); the
links under it record nothing (their steps are ``reliable_link``'s business).

Variants (``VARIANTS``): deliberately broken members the checks must catch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from distcheck.impl.messaging.link import ReliableLinks
from distcheck.impl.runtime.actor import Actor

VARIANTS = {
    "deliver_on_receipt": "a message is delivered as soon as the link hands it over, with no hold-back",
    "merge_on_receipt": "the clock takes in a message's entries when it arrives, not when it is delivered",
    "volatile_holdback": "after a restart the hold-back queue starts empty (the links had acknowledged its messages)",
}

Clock = tuple[int, ...]


class CausalBroadcast:
    """One member's side of causal broadcast (see the module's docstring)."""

    def __init__(
        self,
        actor: Actor,
        group: Sequence[str],
        on_deliver: Callable[[str, Any], None],
        *,
        window: int = 8,
        retransmit: float = 1.0,
        storage: str = "broadcast",
        variant: str | None = None,
    ) -> None:
        if actor.name not in group:
            raise ValueError(f"{actor.name!r} is not a member of the group {', '.join(group)}")
        if len(set(group)) != len(group):
            raise ValueError(f"a group names each member once, got {', '.join(group)}")
        if variant is not None and variant not in VARIANTS:
            raise ValueError(f"unknown broadcast variant {variant!r}; known: {', '.join(VARIANTS)}")
        self.actor = actor
        self.group = tuple(group)
        self.index = {p: i for i, p in enumerate(self.group)}
        self.me = self.index[actor.name]
        self.on_deliver = on_deliver
        self.variant = variant
        self.links = ReliableLinks(
            actor, group, self._received, window=window, retransmit=retransmit, storage=storage, trace=False
        )
        self.clock: Clock = tuple(0 for _ in group)
        self._delivered: list[tuple[str, Any]] = []
        self._holdback: list[tuple[str, Clock, Any]] = []

    # ------------------------------------------------------------ start

    def start(self) -> None:
        """Rebuild the clock, the deliveries and the hold-back queue from the log; call
        from ``on_start``."""
        self.links.start()
        clock = [0] * len(self.group)
        self._delivered = []
        done: set[tuple[str, int]] = set()
        for record in self.links.records():
            if "delivered" in record:
                sender, stamp = str(record["delivered"]), tuple(int(c) for c in record["clock"])
                p = self.index[sender]
                clock[p] = max(clock[p], stamp[p])
                done.add((sender, stamp[p]))
                self._delivered.append((sender, record["body"]))
        self.clock = tuple(clock)
        self._holdback = []
        if self.variant != "volatile_holdback":
            for src, body in self.links.inbox():
                msg = self._decode(src, body)
                if msg is not None and (msg[0], msg[1][self.index[msg[0]]]) not in done:
                    self._holdback.append(msg)
        self._deliver_ready()

    def delivered(self) -> list[tuple[str, Any]]:
        """Every message delivered here, as (sender, body), in the order delivered (as
        of the last ``start``; later ones went to ``on_deliver``)."""
        return list(self._delivered)

    @property
    def held_back(self) -> int:
        """Messages received and waiting for the ones they depend on."""
        return len(self._holdback)

    def handle(self, src: str, msg: Any) -> bool:
        """Take ``msg`` if it is the group's traffic (True)."""
        return self.links.handle(src, msg)

    def on_timer(self, timer: Any) -> bool:
        return self.links.on_timer(timer)

    # ------------------------------------------------------------ broadcasting

    def broadcast(self, body: Any) -> None:
        """Deliver ``body`` here and send it to every other member; durable when this returns."""
        me = self.actor.name
        clock = tuple(c + 1 if k == self.me else c for k, c in enumerate(self.clock))
        for member in self.group:
            if member != me:
                self.links.stage(member, {"sender": me, "clock": list(clock), "body": body})
        self.links.log.append({"delivered": me, "clock": list(clock), "body": body})
        self.links.log.sync()  # the delivery here and the sends, at once
        self.clock = clock
        self.actor.ctx.record({"type": "Broadcast", "p": me})
        self._delivered.append((me, body))
        self.on_deliver(me, body)
        self.links.flush(synced=True)

    # ------------------------------------------------------------ delivering

    def _decode(self, src: str, body: Any) -> tuple[str, Clock, Any] | None:
        """A broadcast message as the link handed it over, or None (noted) if it is not one."""
        clock = body.get("clock") if isinstance(body, dict) else None
        if (
            not isinstance(body, dict)
            or body.get("sender") != src
            or not isinstance(clock, list)
            or len(clock) != len(self.group)
            or not all(type(c) is int and c >= 0 for c in clock)
            or "body" not in body
        ):
            self.actor.diagnose(f"dropped a message from {src} that is not a broadcast of its own: {body!r:.200}")
            return None
        return src, tuple(clock), body["body"]

    def _received(self, src: str, body: Any) -> None:
        msg = self._decode(src, body)
        if msg is None:
            return
        if self.variant == "merge_on_receipt":
            p = self.index[src]
            self.clock = tuple(max(c, msg[1][k]) if k != p else c for k, c in enumerate(self.clock))
        self._holdback.append(msg)
        self._deliver_ready()

    def deliverable(self, clock: Clock, sender: str, stamp: Clock) -> bool:
        """Its sender's next message, and everything its sender had delivered is delivered here."""
        p = self.index[sender]
        if self.variant == "deliver_on_receipt":
            return stamp[p] > clock[p]
        return stamp[p] == clock[p] + 1 and all(stamp[k] <= clock[k] for k in range(len(clock)) if k != p)

    def _deliver_ready(self) -> None:
        """Deliver every held-back message the rule allows, in turn (one delivery can
        allow another): durably, with one sync, then each recorded and handed over."""
        clock = self.clock
        ready: list[tuple[str, Clock, Any]] = []
        progress = True
        while progress:
            progress = False
            for msg in list(self._holdback):
                sender, stamp, _ = msg
                if self.deliverable(clock, sender, stamp):
                    p = self.index[sender]
                    clock = tuple(stamp[p] if k == p else c for k, c in enumerate(clock))
                    self._holdback.remove(msg)
                    ready.append(msg)
                    progress = True
        if not ready:
            return
        for sender, stamp, body in ready:
            self.links.log.append({"delivered": sender, "clock": list(stamp), "body": body})
        self.links.log.sync()
        me = self.actor.name
        # Every delivery made durable is recorded before the application hears of any:
        # what it does in ``on_deliver`` (a broadcast, whose stamp then counts the whole
        # batch) may meet a crash, and the trace must still hold what the log holds.
        for sender, stamp, body in ready:
            p = self.index[sender]
            self.clock = tuple(stamp[p] if k == p else c for k, c in enumerate(self.clock))
            m = {"type": "Msg", "sender": sender, "clock": list(stamp)}
            self.actor.ctx.record({"type": "Deliver", "q": me, "m": m})
            self._delivered.append((sender, body))
        for sender, _, body in ready:
            self.on_deliver(sender, body)
