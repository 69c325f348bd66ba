"""Models of the environment that specs share: the TLA+-style message set, and the
``Network`` protocol that lets traces draw any network model's messages.

Where it sits: ``spec/``, beside the contract; a spec takes what it needs from here.
``Channel`` is a FIFO channel whose faults (loss, a copy in place, two neighbours
swapped) are steps of the spec that owns it (``spec/reliable_link.py``).  A bag of
messages is ``spec.values.Bag``.  A fault step is an action record of the spec that takes it
(the lock's ``ClientCrash``, Paxos's ``AcceptorRestart``), so that Next binds it
with the node's other steps.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import attrs

from distcheck.spec.codec import to_json
from distcheck.spec.values import _MASK, _SET_SEED, _mix, _set_sum, canonical_text, sorted_values

M = TypeVar("M", bound=Hashable)


@runtime_checkable
class Network(Protocol):
    """What traces need of any network model, to draw a step's messages: its members,
    the network without one message, and what a step added to it."""

    def deliverable(self) -> list[Any]: ...

    def without(self, msg: Any) -> Any: ...

    def added_since(self, old: Any) -> list[Any]: ...


class MessageSet(Generic[M]):
    """TLA+-style network: a message is sent once and stays; receivers may read it
    any number of times.  Loss and duplication are implicit (a message can be
    ignored or read twice), so there are no fault actions.

    Sending keeps the set's fingerprint up to date in O(1) (specs such as Paxos
    Commit carry dozens of messages in every state)."""

    __slots__ = ("_sum", "sent")

    def __init__(self, sent: Iterable[M] = frozenset()) -> None:
        self.sent: frozenset[M] = frozenset(sent)
        self._sum: int | None = None

    def send(self, *msgs: M) -> MessageSet[M]:
        new_msgs = [m for m in msgs if m not in self.sent]
        if not new_msgs:
            return self
        new = MessageSet(self.sent.union(new_msgs))
        if self._sum is not None:
            new._sum = self._sum + _set_sum(set(new_msgs)) & _MASK
        return new

    def __contains__(self, msg: object) -> bool:
        return msg in self.sent

    def __len__(self) -> int:
        return len(self.sent)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MessageSet) and self.sent == other.sent

    def __hash__(self) -> int:
        return hash(self.sent)

    def _fingerprint(self) -> int:
        if self._sum is None:
            self._sum = _set_sum(self.sent)
        return _mix(_SET_SEED + self._sum & _MASK)

    def _canonical_text(self) -> str:
        return "MessageSet" + canonical_text(self.sent)

    def deliverable(self) -> list[M]:
        return sorted_values(self.sent)

    def without(self, msg: M) -> MessageSet[M]:
        """The set as if ``msg`` had never been sent."""
        return MessageSet(self.sent - {msg})

    def added_since(self, old: MessageSet[M]) -> list[M]:
        """The messages sent since ``old``."""
        return [m for m in self.deliverable() if m not in old]

    def __repr__(self) -> str:
        return f"MessageSet({set(self.sent)!r})"

    def __str__(self) -> str:
        return "{" + ", ".join(str(m) for m in self.deliverable()) + "}"

    def to_json(self) -> object:
        return [to_json(m) for m in self.deliverable()]


@attrs.frozen
class Channel(Generic[M]):
    """A FIFO channel: messages arrive in the order sent, unless a fault step of the
    spec that owns it loses one (``lose``), copies one in place (``duplicate``) or
    swaps two neighbours (``swap``, for a channel that may reorder).  Receivers take
    the ``head``.  Its length bounds a spec's state space (``within_bounds``)."""

    items: tuple[M, ...] = ()

    def send(self, msg: M) -> Channel[M]:
        return Channel((*self.items, msg))

    @property
    def head(self) -> M | None:
        return self.items[0] if self.items else None

    def take(self) -> Channel[M]:
        """The channel without its head (which must be there)."""
        return Channel(self.items[1:])

    def lose(self, i: int) -> Channel[M]:
        return Channel(self.items[:i] + self.items[i + 1 :])

    def duplicate(self, i: int) -> Channel[M]:
        """A second copy of message ``i`` right behind it (the order stays FIFO)."""
        return Channel(self.items[: i + 1] + self.items[i:])

    def swap(self, i: int) -> Channel[M]:
        """Messages ``i`` and ``i + 1`` change places (a reordering)."""
        return Channel((*self.items[:i], self.items[i + 1], self.items[i], *self.items[i + 2 :]))

    def positions(self) -> range:
        return range(len(self.items))

    def __len__(self) -> int:
        return len(self.items)

    def __str__(self) -> str:
        return "⟨" + ", ".join(str(m) for m in self.items) + "⟩"

    # Network (traces draw a step's messages from it)
    def deliverable(self) -> list[M]:
        return list(self.items)

    def without(self, msg: M) -> Channel[M]:
        if msg not in self.items:
            return self
        i = self.items.index(msg)
        return self.lose(i)

    def added_since(self, old: Channel[M]) -> list[M]:
        """What was sent since ``old``: the tail beyond the longest suffix of ``old``
        that is a prefix of this channel (FIFO: new messages join at the end)."""
        for start in range(len(old.items) + 1):
            rest = old.items[start:]
            if self.items[: len(rest)] == rest:
                return list(self.items[len(rest) :])
        return list(self.items)
