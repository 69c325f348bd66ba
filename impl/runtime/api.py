"""What protocol code sees of the runtime: the node context and its primitives.

Where it sits: every protocol module in ``impl/`` is written against the abstract
``Context`` below and never touches ``threading``, ``socket`` or ``time``.  Two
runtimes provide it: ``impl.runtime.controlled`` (a deterministic scheduler with
virtual time and injected faults, for testing) and ``impl.runtime.free`` (OS
threads, the monotonic clock, TCP).  The same protocol code runs in both.

A node is a function ``main(ctx)`` run on its own thread.  It talks to other nodes
with ``ctx.send`` / ``ctx.receive`` (messages are JSON objects, because that is what
crosses a real wire), arms named timers that arrive in its mailbox as ``Timer``
envelopes, keeps what must survive a crash in ``ctx.storage(name)`` (an append-only
log made durable by ``sync()``), and records what it does, in the spec's vocabulary,
with ``ctx.record``.  When the node crashes, every call into the context raises
``NodeCrashed`` (a ``BaseException``, so that protocol code's ``except Exception``
does not swallow it); a restarted node runs ``main`` again from the top and rebuilds
its memory from its storage.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import attrs

from distcheck.impl.telemetry.context import TraceContext

#: A message: a JSON object.  ``type`` names it; the rest are its fields.
Message = Mapping[str, Any]


class NodeCrashed(BaseException):
    """Raised inside a node's threads when the node has crashed: unwind and stop."""


@attrs.frozen
class Envelope:
    """A message as received: who sent it and what it says; ``trace``: the trace
    context it came with (``impl.telemetry``), not part of what it says."""

    src: str
    msg: Message
    trace: TraceContext | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class Timer:
    """A timer that fired: ``name`` is what the node called it when arming it;
    ``trace``: the trace of the message whose handling armed it (free mode)."""

    name: str
    trace: TraceContext | None = attrs.field(default=None, eq=False, repr=False)


Received = Envelope | Timer


class Lock(ABC):
    """A mutual-exclusion lock between the threads of one node."""

    @abstractmethod
    def acquire(self) -> None: ...

    @abstractmethod
    def release(self) -> None: ...

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Queue(ABC):
    """An unbounded FIFO queue between the threads of one node."""

    @abstractmethod
    def put(self, item: Any) -> None: ...

    @abstractmethod
    def get(self, timeout: float | None = None) -> Any | None:
        """The oldest item, or None when ``timeout`` (seconds) passes first."""


class Storage(ABC):
    """An append-only log of JSON records that survives crashes once synced.

    ``append`` writes a record; ``sync`` makes every record appended so far durable
    (fsync).  A crash keeps exactly the synced records: code that must not lose a
    record syncs before acting on it.
    """

    @abstractmethod
    def append(self, record: Mapping[str, Any]) -> None: ...

    @abstractmethod
    def sync(self) -> None: ...

    @abstractmethod
    def records(self) -> list[dict[str, Any]]:
        """Every record in the log, oldest first (what a recovering node reads)."""


class Context(ABC):
    """A node's handle on the runtime.  Every method that waits or has an effect
    other nodes could observe is a *yield point*: in controlled mode the scheduler
    decides, just before it, which thread runs next."""

    #: The node's name, as other nodes address it.
    name: str

    @abstractmethod
    def send(self, dst: str, msg: Message) -> None:
        """Send ``msg`` to node ``dst``.  Delivery is not guaranteed: messages may be
        lost, duplicated, reordered or delayed."""

    @abstractmethod
    def knows(self, node: str) -> bool:
        """Whether ``node`` is a node this one can address: a message from anyone else
        claims a sender nobody could answer, and is rejected, not served."""

    @abstractmethod
    def receive(self, timeout: float | None = None) -> Received | None:
        """The next message or fired timer; None when ``timeout`` seconds pass first.
        With no timeout, waits until something arrives."""

    def receive_ready(self) -> Received | None:
        """The next message or fired timer that is already here, or None: never waits.
        Not a yield point, and it does not notice a crash (a crashed node gets None;
        its next yield point raises ``NodeCrashed``), so a node can take what is
        waiting in the middle of its work without a fault landing there.  Actors use
        it to handle a batch of messages per turn (``impl.runtime.actor``).  This
        default says nothing is ready, which is always a correct answer: a context
        that wraps another and does not forward it serves batches of one."""
        return None

    @abstractmethod
    def set_timer(self, name: str, delay: float) -> None:
        """Arm timer ``name`` to arrive as ``Timer(name)`` after ``delay`` seconds;
        re-arming a timer of the same name replaces it."""

    @abstractmethod
    def cancel_timer(self, name: str) -> None: ...

    @abstractmethod
    def now(self) -> float:
        """Seconds on the node's clock (virtual in controlled mode, monotonic in free)."""

    @abstractmethod
    def sleep(self, seconds: float) -> None: ...

    @abstractmethod
    def yield_now(self) -> None:
        """An explicit yield point: let the scheduler run someone else here."""

    @abstractmethod
    def lock(self) -> Lock: ...

    @abstractmethod
    def queue(self) -> Queue: ...

    @abstractmethod
    def storage(self, name: str) -> Storage:
        """The node's durable log called ``name`` (the same log after a restart)."""

    @abstractmethod
    def spawn(self, name: str, fn: Callable[[], None]) -> None:
        """Run ``fn`` on another thread of this node; it dies with the node."""

    @abstractmethod
    def record(self, action: Mapping[str, Any], **extra: Any) -> None:
        """Log one trace step taken by this node, in the spec's vocabulary:
        ``action`` is e.g. ``{"type": "RMPrepare", "rm": "r1"}``.  Record a step when
        it takes effect and before its messages leave, so that the log's order is
        one the spec can explain."""

    @abstractmethod
    def log(self, text: str) -> None:
        """A diagnostic line (not part of the trace)."""

    @abstractmethod
    def crash(self, reason: str) -> NoReturn:
        """Crash this node on purpose, because its own code failed (``reason`` says
        how): the same crash a fault injects (threads unwind with ``NodeCrashed``,
        mailbox, timers and unsynced records lost), noted with the reason.  The
        controlled scheduler may then restart it like any crashed node; the free
        runtime restarts it itself.  Raises ``NodeCrashed`` in the calling thread."""


class ContextWrapper(Context):
    """A context that passes every call on to ``inner``: the base of the wrappers that
    change a few calls and leave the rest alone (a slow clock, a partition, a
    nemesis's faults), so that a call ``Context`` gains later reaches the node's real
    context through every wrapper instead of stopping at a default."""

    def __init__(self, inner: Context) -> None:
        self.inner = inner
        self.name = inner.name

    def send(self, dst: str, msg: Message) -> None:
        self.inner.send(dst, msg)

    def knows(self, node: str) -> bool:
        return self.inner.knows(node)

    def receive(self, timeout: float | None = None) -> Received | None:
        return self.inner.receive(timeout)

    def receive_ready(self) -> Received | None:
        return self.inner.receive_ready()

    def set_timer(self, name: str, delay: float) -> None:
        self.inner.set_timer(name, delay)

    def cancel_timer(self, name: str) -> None:
        self.inner.cancel_timer(name)

    def now(self) -> float:
        return self.inner.now()

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)

    def yield_now(self) -> None:
        self.inner.yield_now()

    def lock(self) -> Lock:
        return self.inner.lock()

    def queue(self) -> Queue:
        return self.inner.queue()

    def storage(self, name: str) -> Storage:
        return self.inner.storage(name)

    def spawn(self, name: str, fn: Callable[[], None]) -> None:
        self.inner.spawn(name, fn)

    def record(self, action: Mapping[str, Any], **extra: Any) -> None:
        self.inner.record(action, **extra)

    def log(self, text: str) -> None:
        self.inner.log(text)

    def crash(self, reason: str) -> NoReturn:
        self.inner.crash(reason)


#: A node's code: run on the node's main thread, again from the top after a restart.
NodeMain = Callable[[Context], None]
