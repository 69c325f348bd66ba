"""Models of the environment that specs share: the TLA+-style message set, and the
``Network`` protocol that lets traces draw any network model's messages.

Where it sits: ``spec/``, beside the contract; a spec takes what it needs from here.
More models (a bag of messages that may be lost or duplicated, FIFO channels, crash
and restart of a node's volatile state) come with the first spec that uses them,
and are tested there.  A fault step is an action record of the spec that takes it
(the lock's ``ClientCrash``, Paxos's ``AcceptorRestart``), so that Next binds it
with the node's other steps.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

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
