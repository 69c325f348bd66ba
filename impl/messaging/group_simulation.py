"""Small groups of nodes that exercise the reliable links and causal broadcast, for
the controlled scheduler.

Where it sits: what ``checks/conformance/wiring/reliable_link.py`` and
``wiring/causal_broadcast.py`` run under ``impl.runtime.Simulation`` (and what
tests build).  Each node is an actor with an application that is as simple as it
can be while still making the protocol work: a ``LinkPeer`` sends ``messages``
numbered messages to every other node; a ``BroadcastPeer`` broadcasts ``messages``
messages, each in answer to a message of another member it delivered (the first
member starts) or, failing that, when its timer fires: so that most messages
depend on others, and causal order has something to keep.  What the checks read is the nodes'
durable logs, through the names here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import attrs

from distcheck.impl.messaging.broadcast import CausalBroadcast
from distcheck.impl.messaging.link import LINK_MESSAGES, ReliableLinks
from distcheck.impl.runtime.actor import Actor, Messages
from distcheck.impl.runtime.api import Context


def names(n: int) -> tuple[str, ...]:
    return tuple(f"p{i}" for i in range(1, n + 1))


class LinkPeer(Actor):
    """Sends ``messages`` messages ({"n": 0}, {"n": 1}, ...) to every other node over
    reliable links, and takes what they send."""

    messages: ClassVar[Messages] = Messages(*LINK_MESSAGES)
    LOG = "links"

    def __init__(
        self, name: str, group: tuple[str, ...], count: int, window: int, retransmit: float, variant: str | None
    ) -> None:
        super().__init__(name, group)
        self.count = count
        self.links = ReliableLinks(
            self, group, self.on_link_message, window=window, retransmit=retransmit, storage=self.LOG, variant=variant
        )

    def on_start(self) -> None:
        self.links.start()
        for peer in self.links.peers:
            for n in range(self.links.accepted(peer), self.count):
                self.links.send(peer, {"n": n})

    def on_link_message(self, src: str, body: Any) -> None:
        pass  # what was delivered is in the log, where the checks read it

    def on_message(self, src: str, msg: Any) -> None:
        self.links.handle(src, msg)

    def on_timer(self, timer: Any) -> None:
        self.links.on_timer(timer)


@attrs.frozen
class BroadcastTimer:
    """Broadcast the next message even if no one has answered the last."""


class BroadcastPeer(Actor):
    messages: ClassVar[Messages] = Messages(*LINK_MESSAGES)
    LOG = "broadcast"

    def __init__(
        self,
        name: str,
        group: tuple[str, ...],
        count: int,
        interval: float,
        retransmit: float,
        variant: str | None,
        answer: bool = True,
    ) -> None:
        super().__init__(name, group)
        self.count = count
        self.interval = interval
        self.answer = answer
        self.member = CausalBroadcast(self, group, self.on_deliver, retransmit=retransmit, variant=variant)
        self.own = 0

    def on_start(self) -> None:
        self.member.start()
        self.own = sum(1 for sender, _ in self.member.delivered() if sender == self.name)
        self.set_timer(BroadcastTimer(), self.interval)
        if self.own == 0 and self.name == self.member.group[0]:
            self._broadcast()

    def _broadcast(self) -> None:
        if self.own < self.count:
            self.own += 1  # counted first: the broadcast delivers it here at once
            self.member.broadcast({"from": self.name, "n": self.own})
            self.set_timer(BroadcastTimer(), self.interval)

    def on_deliver(self, sender: str, body: Any) -> None:
        if sender != self.name and self.answer:
            self._broadcast()

    def on_message(self, src: str, msg: Any) -> None:
        self.member.handle(src, msg)

    def on_timer(self, timer: Any) -> None:
        if isinstance(timer, BroadcastTimer):
            self._broadcast()
        else:
            self.member.on_timer(timer)


@attrs.define
class Group:
    peers: list[Actor]
    count: int

    def nodes(self) -> dict[str, Callable[[Context], None]]:
        return {p.name: p.main for p in self.peers}


def link_group(
    nodes: int = 2, messages: int = 4, *, window: int = 2, retransmit: float = 5.0, variant: str | None = None
) -> Group:
    group = names(nodes)
    return Group([LinkPeer(p, group, messages, window, retransmit, variant) for p in group], messages)


def broadcast_group(
    nodes: int = 3,
    messages: int = 2,
    *,
    interval: float = 8.0,
    retransmit: float = 5.0,
    variant: str | None = None,
    answer: bool = True,
) -> Group:
    """``answer=False``: members broadcast only when their timers fire (a workload
    that lasts ``messages * interval`` seconds)."""
    group = names(nodes)
    return Group([BroadcastPeer(p, group, messages, interval, retransmit, variant, answer) for p in group], messages)
