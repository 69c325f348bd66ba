"""Reliable links: in-order, exactly-once delivery from one node to another over a
network that loses, duplicates and reorders messages, as a component any actor can
embed.  The protocol is ``spec/reliable_link.py``'s sliding window (Go-Back-N) with
unbounded sequence numbers (the network may reorder, so no finite space is safe).

Where it sits: on ``impl.runtime.actor``; causal broadcast
(``impl.messaging.broadcast``) runs on it, and ``impl.messaging.link_simulation``
runs it alone for ``distcheck simulate reliable_link``.  An actor embeds it so::

    class Node(Actor):
        messages = Messages(*LINK_MESSAGES, ...its own messages...)

        def __init__(self, name, peers):
            super().__init__(name)
            self.links = ReliableLinks(self, peers, on_deliver=self.on_link_message)

        def on_start(self):
            self.links.start()            # rebuilds the links from storage, resends
            for src, body in self.links.inbox():
                ...                       # the node's state is rebuilt from what it was given

        def on_message(self, src, msg):
            if not self.links.handle(src, msg):
                ...                       # a message of its own

        def on_timer(self, timer):
            if not self.links.on_timer(timer):
                ...

        def on_link_message(self, src, body):   # once per message, in the order sent
            ...

    self.links.send("p2", {"any": "JSON"})      # durable when it returns

What each link (one ordered pair of nodes) guarantees: every message ``send`` accepted
is handed to ``on_deliver`` at the destination once, in the order sent, however
either node crashes, as long as both come back and the network eventually lets
some messages through.

- **The sender** writes each message to its outbox (``{"out": dst, "seq": i,
  "body": ...}``) and syncs before ``send`` returns, so a message accepted survives a
  crash.  It keeps up to ``window`` messages sent and unacknowledged, sends the
  window again from its base whenever the retransmission timer fires, and moves the
  base on a cumulative acknowledgement once the move is durable (``{"acked": dst,
  "upto": k}``): after a restart it goes on from there, never sending again what was
  acknowledged.
- **The receiver** takes only the next message it expects, writes it to its inbox
  (``{"in": src, "seq": i, "body": ...}``), syncs, hands it over and then
  acknowledges it; anything else (a copy, an old retransmission, a message ahead of
  a gap) is dropped and answered with the current acknowledgement, which makes good
  a lost one.  The inbox is the application's durable input: a message handed over
  and then lost by a crash of the application is in ``inbox()`` after the restart.

All three kinds of record go to one log (``storage``, by default ``links``), which
the embedding code may write its own records to (``log``) so that they are made
durable by the same sync: ``stage`` then ``flush`` sends several messages, and
anything appended to ``log`` in between, atomically (what causal broadcast needs
to deliver its own message and send it with one fsync).

Every step is recorded in the spec's vocabulary (``Send``, ``RecvAck``,
``RecvData``, ``Deliver``, ``ReceiverCrash`` at a restart), with the link
(``"link": "p1>p2"``) and the message (``"data": {"seq": i}`` or ``"ack": k``) the
step took, so that a trace can be validated link by link; ``trace=False`` turns
this off for a layer above that records its own vocabulary.

What it does not do (yet): compact the log (it grows with every message), bound
the outbox (``send`` never blocks; a peer that never comes back leaves messages
waiting), or piggyback acknowledgements on traffic the other way.

Variants (``VARIANTS``): deliberately broken links the checks must catch.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import attrs

from distcheck.impl.runtime.actor import Actor
from distcheck.impl.runtime.api import Storage

VARIANTS = {
    "no_duplicate_suppression": "the receiver takes a copy of a message it delivered already",
    "deliver_out_of_order": "the receiver takes any message of its window as it arrives, gaps or not",
    "ack_before_deliver": "the receiver acknowledges a message before its delivery is durable",
}


@attrs.frozen
class LinkData:
    """Message number ``seq`` (from 0) on the link from its sender to its receiver."""

    seq: int
    body: Any


@attrs.frozen
class LinkAck:
    """Cumulative: the receiver has every message before number ``upto``."""

    upto: int


LINK_MESSAGES = (LinkData, LinkAck)


@attrs.frozen
class RetransmitTimer:
    """Send the window to ``dst`` again from its base."""

    dst: str


@attrs.define
class _Outgoing:
    base: int = 0  # the oldest message not acknowledged
    sent: int = 0  # messages numbered below this were sent in this incarnation
    bodies: dict[int, Any] = attrs.field(factory=dict)  # seq → body, from base on
    next_seq: int = 0  # the number the next message accepted gets
    durable: int = 0  # messages numbered below this are synced (and may be sent)


class ReliableLinks:
    """The reliable links from and to one node (see the module's docstring)."""

    def __init__(
        self,
        actor: Actor,
        peers: Collection[str],
        on_deliver: Callable[[str, Any], None],
        *,
        window: int = 8,
        retransmit: float = 1.0,
        storage: str = "links",
        trace: bool = True,
        variant: str | None = None,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        if variant is not None and variant not in VARIANTS:
            raise ValueError(f"unknown link variant {variant!r}; known: {', '.join(VARIANTS)}")
        self.actor = actor
        self.peers = tuple(p for p in peers if p != actor.name)
        self.on_deliver = on_deliver
        self.window = window
        self.retransmit = retransmit
        self.storage_name = storage
        self.trace = trace
        self.variant = variant
        self._out: dict[str, _Outgoing] = {}
        self._expected: dict[str, int] = {}
        self._staged: list[str] = []

    # ------------------------------------------------------------ start

    def start(self) -> None:
        """Rebuild every link from the log and send each window again; call from
        ``on_start``.  A restart is recorded as the spec's ``ReceiverCrash`` on each
        incoming link (what the receiver had taken and not delivered is gone)."""
        self.log: Storage = self.actor.ctx.storage(self.storage_name)
        self._out = {p: _Outgoing() for p in self.peers}
        self._expected = {p: 0 for p in self.peers}
        self._staged = []
        self._inbox: list[tuple[str, Any]] = []
        self._others: list[dict[str, Any]] = []
        starts = 0
        for record in self.log.records():
            if "out" in record and record["out"] in self._out:
                out = self._out[record["out"]]
                out.bodies[int(record["seq"])] = record["body"]
                out.next_seq = out.durable = int(record["seq"]) + 1
            elif "acked" in record and record["acked"] in self._out:
                out = self._out[record["acked"]]
                for seq in range(out.base, int(record["upto"])):
                    out.bodies.pop(seq, None)
                out.base = max(out.base, int(record["upto"]))
            elif "in" in record and record["in"] in self._expected:
                self._expected[record["in"]] = int(record["seq"]) + 1
                self._inbox.append((str(record["in"]), record["body"]))
            elif "start" in record:
                starts += 1
            elif not record.keys() & {"out", "acked", "in"}:
                self._others.append(record)
        # Durably counted, so that a crash before anything else reached the log is
        # still known to be a restart.
        self.log.append({"start": starts + 1})
        self.log.sync()
        if starts and self.trace:
            for src in self.peers:
                self._record({"type": "ReceiverCrash"}, src, self.actor.name)
        for dst, out in self._out.items():
            out.sent = out.base
            self._fill_window(dst)

    def records(self) -> list[dict[str, Any]]:
        """The records others appended to ``log`` (as of the last ``start``)."""
        return list(self._others)

    def accepted(self, dst: str) -> int:
        """How many messages to ``dst`` ``send`` has accepted, ever."""
        return self._out[dst].next_seq

    def inbox(self) -> list[tuple[str, Any]]:
        """Every message delivered to this node, as (sender, body), in the order
        delivered (as of the last ``start``; later ones went to ``on_deliver``)."""
        return list(self._inbox)

    # ------------------------------------------------------------ sending

    def send(self, dst: str, body: Any) -> None:
        """Send ``body`` (JSON) to ``dst``, reliably; durable when this returns."""
        self.stage(dst, body)
        self.flush()

    def stage(self, dst: str, body: Any) -> None:
        """Write ``body`` to the outbox for ``dst`` without syncing; ``flush`` makes
        everything staged (and whatever else was appended to ``log``) durable at once,
        and only then sends it."""
        if dst not in self._out:
            raise ValueError(f"no link to {dst!r}; peers: {', '.join(self.peers)}")
        out = self._out[dst]
        seq = out.next_seq
        self.log.append({"out": dst, "seq": seq, "body": body})
        out.bodies[seq] = body
        out.next_seq = seq + 1
        self._staged.append(dst)

    def flush(self, *, synced: bool = False) -> None:
        """Sync the log (unless the caller just did: ``synced``) and send what was staged."""
        if not synced:
            self.log.sync()
        staged, self._staged = self._staged, []
        for dst in dict.fromkeys(staged):
            out = self._out[dst]
            out.durable = out.next_seq
            self._fill_window(dst)

    def unacknowledged(self, dst: str) -> int:
        """Messages to ``dst`` not acknowledged yet."""
        out = self._out[dst]
        return out.next_seq - out.base

    def _fill_window(self, dst: str) -> None:
        """Send the messages that now fit in the window, and keep the timer armed while
        any message is unacknowledged."""
        out = self._out[dst]
        while out.sent < min(out.durable, out.base + self.window):
            self._transmit(dst, out.sent)
            out.sent += 1
        if out.base < out.next_seq:
            self.actor.set_timer(RetransmitTimer(dst), self.retransmit)
        else:
            self.actor.cancel_timer(RetransmitTimer(dst))

    def _transmit(self, dst: str, seq: int) -> None:
        self._record({"type": "Send", "i": seq}, self.actor.name, dst)
        self.actor.send(dst, LinkData(seq, self._out[dst].bodies[seq]))

    # ------------------------------------------------------------ receiving

    def handle(self, src: str, msg: Any) -> bool:
        """Take ``msg`` if it is link traffic (True), else leave it to the caller."""
        if isinstance(msg, LinkData):
            if src in self._expected:
                self._on_data(src, msg)
            return True
        if isinstance(msg, LinkAck):
            if src in self._out:
                self._on_ack(src, msg.upto)
            return True
        return False

    def on_timer(self, timer: Any) -> bool:
        """Retransmit on a ``RetransmitTimer`` (True), else leave it to the caller."""
        if not isinstance(timer, RetransmitTimer):
            return False
        out = self._out.get(timer.dst)
        if out is not None and out.base < out.next_seq:
            # Go back N: everything in the window from the oldest unacknowledged on.
            for seq in range(out.base, min(out.sent, out.base + self.window)):
                self._transmit(timer.dst, seq)
            self.actor.set_timer(timer, self.retransmit)
        return True

    def _on_ack(self, src: str, upto: int) -> None:
        out = self._out[src]
        if out.base < upto <= out.next_seq:
            # Durable before the window moves: after a restart the sender must not go
            # back to messages the receiver has (it would send what it counts as done).
            self.log.append({"acked": src, "upto": upto})
            self.log.sync()
            self._record({"type": "RecvAck"}, self.actor.name, src, ack=upto)
            for seq in range(out.base, upto):
                out.bodies.pop(seq, None)
            out.base = upto
            out.sent = max(out.sent, upto)
            self._fill_window(src)
        else:
            self._record({"type": "RecvAck"}, self.actor.name, src, ack=upto)

    def _takes(self, src: str, seq: int) -> bool:
        expected = self._expected[src]
        if self.variant == "no_duplicate_suppression":
            return seq <= expected
        if self.variant == "deliver_out_of_order":
            return expected <= seq < expected + self.window
        return seq == expected

    def _on_data(self, src: str, msg: LinkData) -> None:
        me = self.actor.name
        self._record({"type": "RecvData"}, src, me, data={"seq": msg.seq})
        if not self._takes(src, msg.seq):
            self.actor.send(src, LinkAck(self._expected[src]))
            return
        if self.variant == "ack_before_deliver":
            self.actor.send(src, LinkAck(msg.seq + 1))
        self.log.append({"in": src, "seq": msg.seq, "body": msg.body})
        self.log.sync()  # the hand-over is durable before it is acknowledged
        self._record({"type": "Deliver"}, src, me)
        self._expected[src] = max(self._expected[src], msg.seq + 1)
        self.on_deliver(src, msg.body)
        if self.variant != "ack_before_deliver":
            self.actor.send(src, LinkAck(self._expected[src]))

    # ------------------------------------------------------------ trace

    def _record(self, action: dict[str, Any], sender: str, receiver: str, **extra: Any) -> None:
        """Record a step of the link from ``sender`` to ``receiver`` (this node is one of them)."""
        if self.trace:
            self.actor.ctx.record(action, link=f"{sender}>{receiver}", **extra)
