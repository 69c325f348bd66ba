"""Reliable in-order delivery over a channel that loses, duplicates and reorders: a
sliding-window protocol (Go-Back-N), with the alternating-bit protocol as its
window-1 case.

A sender hands ``messages`` messages, m0, m1, ..., to a receiver.  It may have up to
``window`` of them sent and not yet acknowledged; it sends each with a sequence
number and sends it again, as often as it likes (a retransmission timer, left
abstract: any moment is allowed), until it is acknowledged.  The receiver takes a
message only if it is the next one it expects, keeps it until it has delivered it
to its application (a durable hand-over), and then acknowledges cumulatively:
``Ack(k)`` says "I have delivered everything before m<k>".  Any other message (a
copy, an old retransmission, one ahead of a gap) is dropped and answered with the
current acknowledgement, so that a lost Ack is made good.  The receiver may crash:
it loses what it took and had not delivered, and keeps what it delivered.

Sequence numbers are ``index mod seq_space`` on the wire, or the index itself with
``seq_space=0``.  Over a channel that may reorder, no finite sequence space is
safe: a stale copy can arrive after its number has come round again (TCP bounds a
segment's lifetime instead), so ``reorder`` requires ``seq_space=0``.  Over a FIFO
channel that loses and duplicates, Go-Back-N needs more numbers than the window
(``seq_space > window``); ``window=1, seq_space=2, reorder=false`` is the
alternating-bit protocol.

Sources: K. Bartlett, R. Scantlebury, P. Wilkinson, "A note on reliable full-duplex
transmission over half-duplex links" (CACM 1969), the alternating-bit protocol;
A. Tanenbaum, *Computer Networks*, §3.4 (sliding windows, Go-Back-N and its
sequence-space bound); N. Lynch, *Distributed Algorithms*, ch. 22 (data links: the
receiver's output is a prefix of the sender's input).

State: the sender's ``base`` (oldest unacknowledged message) and ``next_new`` (next
message never sent); the receiver's ``delivered`` (durable: the messages its
application has, in order) and ``taken`` (volatile: messages accepted, not yet
delivered); two FIFO channels, ``data`` and ``acks``; ``crashes`` so far.

Actions
    Send(i)             The sender sends message i of its window (again, if it sent it before).
    RecvAck             The sender takes the acks channel's head; a newer cumulative ack moves its window.
    RecvData            The receiver takes the data channel's head: the next message is taken,
                        any other dropped and answered with the current Ack.
    Deliver             The receiver delivers the oldest message it took, then acknowledges it.
    ReceiverCrash       The receiver crashes and restarts, losing what it took and had not delivered.
    Lose(ch, i)         The channel ``ch`` (data or acks) loses its i-th message.
    Duplicate(ch, i)    The channel copies its i-th message in place.
    Reorder(ch, i)      The channel swaps its messages i and i+1 (only with ``reorder``).

Invariants
    TypeOK          every variable holds a value of its type.
    NoDuplication   no message is delivered twice.
    FifoOrder       the receiver has delivered the first messages sent, in the order sent
                    (its output is a prefix of the sender's input).
    NoLoss          every message the sender counts as acknowledged has been delivered or waits, taken, in the receiver.

Reachable
    AllDelivered                every message is delivered.
    AllDeliveredAfterACrash     every message is delivered, and the receiver crashed on the way.

Bounds (a state constraint, as TLC's CONSTRAINT): at most ``max_msgs`` messages in
each channel, at most ``max_crashes`` receiver crashes.

Variants
    no_duplicate_suppression    the receiver drops messages from ahead of a gap, but not copies of ones it had.
    deliver_out_of_order        the receiver takes any message of its window as it arrives, gaps or not.
    ack_before_deliver          the receiver acknowledges a message when it takes it, before delivering it.
    window_over_seq_space       the sender's window is the whole sequence space (Go-Back-N needs one number more).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from distcheck.spec.contract import Action, Exists, Invariant, Next, Reachable, Spec, param, rule, variant
from distcheck.spec.network import Channel

SENDER, RECEIVER = "sender", "receiver"
DATA, ACKS = "data", "acks"
CHANNELS = (DATA, ACKS)

# ------------------------------------------------------------------------ messages


@attrs.frozen
class Data:
    seq: int
    msg: int  # the message's index: the sender's application gave it m<msg>

    def __str__(self) -> str:
        return f"Data({self.seq}, m{self.msg})"


@attrs.frozen
class Ack:
    seq: int  # cumulative: every message before the one numbered ``seq`` is delivered

    def __str__(self) -> str:
        return f"Ack({self.seq})"


# -------------------------------------------------------------------------- state


@attrs.frozen
class LinkState:
    base: int
    next_new: int
    delivered: tuple[int, ...]
    taken: tuple[int, ...]
    data: Channel[Data]
    acks: Channel[Ack]
    crashes: int


# ------------------------------------------------------------------------ actions


@attrs.frozen
class Send(Action):
    ACTOR = SENDER
    i: int


@attrs.frozen
class RecvAck(Action):
    ACTOR = SENDER


@attrs.frozen
class RecvData(Action):
    ACTOR = RECEIVER


@attrs.frozen
class Deliver(Action):
    ACTOR = RECEIVER


@attrs.frozen
class ReceiverCrash(Action):
    ACTOR = RECEIVER


@attrs.frozen
class Lose(Action):
    ACTOR = "network"
    ch: str
    i: int


@attrs.frozen
class Duplicate(Action):
    ACTOR = "network"
    ch: str
    i: int


@attrs.frozen
class Reorder(Action):
    ACTOR = "network"
    ch: str
    i: int


LinkAction = Send | RecvAck | RecvData | Deliver | ReceiverCrash | Lose | Duplicate | Reorder


@attrs.frozen
class Config:
    messages: int = param(3, help="messages the sender's application hands over", minimum=1, maximum=8)
    window: int = param(2, help="messages sent and not yet acknowledged, at most", minimum=1, maximum=8)
    seq_space: int = param(0, help="sequence numbers are index mod this (0: the index itself)", minimum=0, maximum=16)
    reorder: bool = param(True, help="the channels may swap neighbouring messages")
    max_msgs: int = param(2, help="bound: messages in each channel", minimum=1, maximum=6)
    max_crashes: int = param(1, help="bound: receiver crashes", minimum=0, maximum=3)
    variant: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.seq_space and self.reorder:
            raise ValueError(
                f"seq_space={self.seq_space} with reorder: no finite sequence space is safe over a channel "
                "that reorders (a stale copy can arrive once its number has come round again); "
                "use seq_space=0 or reorder=false"
            )
        if self.seq_space and self.seq_space <= self.window:
            raise ValueError(
                f"seq_space={self.seq_space} must exceed window={self.window}: Go-Back-N needs one "
                "sequence number more than its window (variant window_over_seq_space shows why)"
            )


# --------------------------------------------------------------------- the protocol


class ReliableLink(Spec[LinkState, LinkAction]):
    name = "reliable_link"

    def __init__(self, config: Config = Config()) -> None:
        self.config = config
        self.indexes = tuple(range(config.messages))

    def init_states(self) -> Iterable[LinkState]:
        yield LinkState(0, 0, (), (), Channel(), Channel(), 0)

    def next(self) -> Next:
        return (
            Exists("i", self.indexes, self.send),
            self.recv_ack,
            self.recv_data,
            self.deliver,
            self.receiver_crash,
            Exists("ch", CHANNELS, Exists("i", self._positions, self.lose, self.duplicate, self.reorder_channel)),
        )

    # ------------------------------------------------------------ helpers

    def seq(self, index: int) -> int:
        """The sequence number message ``index`` travels under."""
        n = self.config.seq_space
        return index % n if n else index

    def window(self) -> int:
        """How many messages may be sent and not yet acknowledged."""
        return int(self.config.window)

    @staticmethod
    def expected(s: LinkState) -> int:
        """The index of the next message the receiver will take."""
        return len(s.delivered) + len(s.taken)

    def _positions(self, s: LinkState, ch: str) -> range:
        return self._channel(s, ch).positions()

    @staticmethod
    def _channel(s: LinkState, ch: str) -> Channel[Data] | Channel[Ack]:
        return s.data if ch == DATA else s.acks

    @staticmethod
    def _with_channel(s: LinkState, ch: str, channel: Channel[Data] | Channel[Ack]) -> LinkState:
        return attrs.evolve(s, data=channel) if ch == DATA else attrs.evolve(s, acks=channel)  # type: ignore[arg-type]

    def _ack(self, s: LinkState, upto: int) -> LinkState:
        """``s`` with the cumulative acknowledgement of every message before ``upto`` sent."""
        return attrs.evolve(s, acks=s.acks.send(Ack(self.seq(upto))))

    def takes(self, s: LinkState, m: Data) -> bool:
        """Whether the receiver takes ``m``: the next message it expects."""
        return m.seq == self.seq(self.expected(s))

    # ------------------------------------------------------------ the sender

    @rule(Send)
    def send(self, s: LinkState, i: int) -> LinkState | None:
        """The sender sends message i of its window: not yet acknowledged, within the
        window, and not past the first one it never sent."""
        if not (s.base <= i < s.base + self.window() and i <= s.next_new):
            return None
        return attrs.evolve(s, next_new=max(s.next_new, i + 1), data=s.data.send(Data(self.seq(i), i)))

    @rule(RecvAck)
    def recv_ack(self, s: LinkState) -> LinkState | None:
        """The sender takes the head of the acks channel.  The acknowledgement names the
        first message the receiver lacks; read as the nearest index at or after the
        window's base with that number, it moves the base if it is one the sender sent."""
        ack = s.acks.head
        if ack is None:
            return None
        n = self.config.seq_space
        upto = s.base + (ack.seq - s.base) % n if n else ack.seq
        rest = attrs.evolve(s, acks=s.acks.take())
        if s.base < upto <= s.next_new:
            return attrs.evolve(rest, base=upto)
        return rest

    # ------------------------------------------------------------ the receiver

    @rule(RecvData)
    def recv_data(self, s: LinkState) -> LinkState | None:
        """The receiver takes the head of the data channel: the message it expects is
        taken; any other is dropped and answered with the current acknowledgement."""
        m = s.data.head
        if m is None:
            return None
        rest = attrs.evolve(s, data=s.data.take())
        if self.takes(s, m):
            return attrs.evolve(rest, taken=(*s.taken, m.msg))
        return self._ack(rest, len(s.delivered))

    @rule(Deliver)
    def deliver(self, s: LinkState) -> LinkState | None:
        """The receiver delivers the oldest message it took to its application (durably),
        then acknowledges everything delivered."""
        if not s.taken:
            return None
        delivered = (*s.delivered, s.taken[0])
        return self._ack(attrs.evolve(s, delivered=delivered, taken=s.taken[1:]), len(delivered))

    @rule(ReceiverCrash)
    def receiver_crash(self, s: LinkState) -> LinkState | None:
        """The receiver crashes and restarts: what it took and had not delivered is lost."""
        if s.crashes >= self.config.max_crashes:
            return None
        return attrs.evolve(s, taken=(), crashes=s.crashes + 1)

    # ------------------------------------------------------------ the channels

    @rule(Lose)
    def lose(self, s: LinkState, ch: str, i: int) -> LinkState | None:
        """A channel loses its i-th message."""
        channel = self._channel(s, ch)
        if i not in channel.positions():
            return None
        return self._with_channel(s, ch, channel.lose(i))

    @rule(Duplicate)
    def duplicate(self, s: LinkState, ch: str, i: int) -> LinkState | None:
        """A channel copies its i-th message, the copy right behind it."""
        channel = self._channel(s, ch)
        if i not in channel.positions():
            return None
        return self._with_channel(s, ch, channel.duplicate(i))

    @rule(Reorder)
    def reorder_channel(self, s: LinkState, ch: str, i: int) -> LinkState | None:
        """A channel that may reorder swaps its messages i and i+1."""
        channel = self._channel(s, ch)
        if not self.config.reorder or i + 1 not in channel.positions():
            return None
        return self._with_channel(s, ch, channel.swap(i))

    # ------------------------------------------------------------ properties

    def within_bounds(self, s: LinkState) -> bool:
        bound = int(self.config.max_msgs)
        return len(s.data) <= bound and len(s.acks) <= bound

    def invariants(self) -> Sequence[Invariant[LinkState]]:
        return (
            Invariant("TypeOK", "every variable holds a value of its type", self.type_ok),
            Invariant("NoDuplication", "no message is delivered twice", no_duplication),
            Invariant(
                "FifoOrder",
                "the receiver has delivered the first messages sent, in order (a prefix of the sender's input)",
                fifo_order,
            ),
            Invariant(
                "NoLoss",
                "every message the sender counts as acknowledged has been delivered or waits, taken, in the receiver",
                no_loss,
            ),
        )

    def type_ok(self, s: LinkState) -> bool:
        m = self.config.messages
        seqs = range(self.config.seq_space) if self.config.seq_space else range(m + 1)
        return (
            0 <= s.base <= s.next_new <= m
            and all(0 <= i < m for i in (*s.delivered, *s.taken))
            and all(isinstance(d, Data) and d.seq in seqs and 0 <= d.msg < m for d in s.data.items)
            and all(isinstance(a, Ack) and a.seq in seqs for a in s.acks.items)
            and 0 <= s.crashes <= self.config.max_crashes
        )

    def reachable(self) -> Sequence[Reachable[LinkState]]:
        everything = self.indexes
        return (
            Reachable("AllDelivered", "every message is delivered", lambda s: s.delivered == everything),
            Reachable(
                "AllDeliveredAfterACrash",
                "every message is delivered, and the receiver crashed on the way",
                lambda s: s.delivered == everything and s.crashes > 0,
            ),
        )


def no_duplication(s: LinkState) -> bool:
    return len(set(s.delivered)) == len(s.delivered)


def fifo_order(s: LinkState) -> bool:
    return s.delivered == tuple(range(len(s.delivered)))


def no_loss(s: LinkState) -> bool:
    kept = set(s.delivered) | set(s.taken)
    return all(i in kept for i in range(s.base))


# ------------------------------------------------------------------------ variants
# Each a real mistake, as a subclass that overrides the one rule it breaks.


@variant("no_duplicate_suppression", "the receiver drops messages from ahead of a gap, but not copies of ones it had")
class NoDuplicateSuppression(ReliableLink):
    def takes(self, s: LinkState, m: Data) -> bool:
        """Only a message from beyond the next one expected is dropped: a copy, or a
        retransmission of one already delivered, is taken and delivered again."""
        return m.seq <= self.seq(self.expected(s))


@variant("deliver_out_of_order", "the receiver takes any message of its window as it arrives, gaps or not")
class DeliverOutOfOrder(ReliableLink):
    def takes(self, s: LinkState, m: Data) -> bool:
        """A message ahead of a gap is taken too (a selective-repeat receiver with no
        reordering buffer): it is delivered before the ones it skipped."""
        n = self.config.seq_space
        expected = self.seq(self.expected(s))
        ahead = (m.seq - expected) % n if n else m.seq - expected
        return 0 <= ahead < self.window() and m.seq not in {self.seq(i) for i in s.taken}


@variant("ack_before_deliver", "the receiver acknowledges a message when it takes it, before delivering it")
class AckBeforeDeliver(ReliableLink):
    @rule(RecvData)
    def recv_data(self, s: LinkState) -> LinkState | None:
        """The message is acknowledged as soon as it is taken: a crash before it is
        delivered loses it, and the sender, acknowledged, never sends it again."""
        m = s.data.head
        if m is None:
            return None
        rest = attrs.evolve(s, data=s.data.take())
        if self.takes(s, m):
            taken = attrs.evolve(rest, taken=(*s.taken, m.msg))
            return self._ack(taken, self.expected(taken))
        return self._ack(rest, self.expected(s))

    @rule(Deliver)
    def deliver(self, s: LinkState) -> LinkState | None:
        """Delivery acknowledges nothing more: it was acknowledged when taken."""
        if not s.taken:
            return None
        return attrs.evolve(s, delivered=(*s.delivered, s.taken[0]), taken=s.taken[1:])


@variant(
    "window_over_seq_space",
    "the sender's window is the whole sequence space (Go-Back-N needs one number more)",
    params={"seq_space": 3, "reorder": False},
)
class WindowOverSeqSpace(ReliableLink):
    def window(self) -> int:
        """As many messages outstanding as there are sequence numbers: once the receiver
        has taken all of them (its acknowledgements lost), a retransmission of the
        oldest carries the number the receiver now expects for a new one."""
        return int(self.config.seq_space)
