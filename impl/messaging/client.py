"""The broker's client library: publish with confirms, consume with acknowledgements,
blocking or with callbacks, and an idempotent receiver.

Where it sits: talks to ``impl.messaging.server`` over TCP (runtime frames, the
messages of ``impl.messaging.messages``), from any process.

    client = BrokerClient("127.0.0.1:5680")
    client.publish("orders", {"id": 7})                  # returns once durable (confirmed)
    client.publish_async("orders", {"id": 8}, on_confirm=lambda mid: ...)
    for msg in client.consumer("orders", prefetch=10):   # blocking style
        handle(msg.body)
        msg.ack()
    client.consume("orders", lambda msg: (handle(msg.body), msg.ack()))   # callback style

Both styles share one connection, read by one thread of the client.  If the
connection drops, that thread connects again (with backoff), publishes again every
message not yet confirmed (under the same id, so the broker stores it once) and
subscribes again.  A consumer subscribes again every ``heartbeat`` seconds, which
tells the broker it is alive.  Delivery is at least once: a message whose
acknowledgement is lost, or not sent in time, is delivered again, marked
``redelivered``; ``IdempotentReceiver`` applies each message id's effect once.
"""

from __future__ import annotations

import itertools
import os
import queue as queues
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

from distcheck.impl.messaging.messages import (
    CLIENT_MESSAGES,
    Ack,
    Confirm,
    Deliver,
    Nack,
    Publish,
    Subscribe,
    Unsubscribe,
)
from distcheck.impl.resilience import UNBOUNDED, Retrying
from distcheck.impl.runtime.actor import MessageError, encode
from distcheck.impl.runtime.tcp import ConnectionLimits, FrameReader, IdleConnection, encode_frame
from distcheck.impl.telemetry import current

Address = tuple[str, int]
_ids = itertools.count(1)


class BrokerError(Exception):
    """The broker did not confirm a publish in time."""


def parse_address(text: str | Address) -> Address:
    if isinstance(text, tuple):
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"a broker address is HOST:PORT, got {text!r}")
    return host, int(port)


@attrs.define
class Message:
    """A delivery: apply it, then ``ack()`` (or ``nack()`` to give it back)."""

    id: str
    queue: str
    body: Any
    redelivered: bool
    deliveries: int
    _client: BrokerClient = attrs.field(repr=False)

    def ack(self) -> None:
        self._client._send(Ack(self.id))

    def nack(self, requeue: bool = True) -> None:
        self._client._send(Nack(self.id, requeue))


class Subscription:
    """Deliveries of one queue: iterate over it (blocking style), or let the client
    call a callback for each (``BrokerClient.consume``)."""

    def __init__(self, client: BrokerClient, queue: str, prefetch: int) -> None:
        self.client = client
        self.queue = queue
        self.prefetch = prefetch
        self.inbox: queues.Queue[Message | None] = queues.Queue()
        self.closed = False

    def get(self, timeout: float | None = None) -> Message | None:
        """The next delivery; None after ``timeout`` seconds, or once closed."""
        try:
            return self.inbox.get(timeout=timeout)
        except queues.Empty:
            return None

    def __iter__(self) -> Iterator[Message]:
        while not self.closed:
            msg = self.inbox.get()
            if msg is None:
                return
            yield msg

    def close(self) -> None:
        """Stop consuming: the broker takes back what was delivered and not acknowledged
        (after its visibility timeout)."""
        if not self.closed:
            self.closed = True
            self.client._unsubscribe(self)
            self.inbox.put(None)


@attrs.define
class _Pending:
    queue: str
    body: Any
    done: threading.Event = attrs.field(factory=threading.Event)
    on_confirm: Callable[[str], None] | None = None


class BrokerClient:
    """A connection to a broker; thread-safe.  ``heartbeat``: seconds between a
    consumer's subscriptions (below the broker's ``consumer_timeout``)."""

    def __init__(
        self,
        address: str | Address,
        *,
        client_id: str | None = None,
        timeout: float = 10.0,
        heartbeat: float = 1.0,
        backoff: float = 0.05,
        max_backoff: float = 1.0,
    ) -> None:
        self.address = parse_address(address)
        self.client_id = client_id or f"{socket.gethostname()}:{os.getpid()}:{next(_ids)}:{os.urandom(3).hex()}"
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.backoff, self.max_backoff = backoff, max_backoff
        self._seq = itertools.count(1)
        self._lock = threading.RLock()
        self._conn: socket.socket | None = None
        self._connected = threading.Condition(self._lock)
        self._pending: dict[str, _Pending] = {}
        self._subscriptions: dict[str, Subscription] = {}
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ publishing

    def publish(self, queue: str, body: Any, *, id: str | None = None, timeout: float | None = None) -> str:
        """Publish and wait until the broker has it on disk; its id.  BrokerError if
        it does not confirm within ``timeout`` (then it may still store
        it: publishing again with the same id stores it once)."""
        mid, pending = self._publish(queue, body, id, None)
        if not pending.done.wait(self.timeout if timeout is None else timeout):
            raise BrokerError(f"message {mid} not confirmed within {self.timeout if timeout is None else timeout} s")
        return mid

    def publish_async(
        self, queue: str, body: Any, *, id: str | None = None, on_confirm: Callable[[str], None] | None = None
    ) -> str:
        """Publish without waiting; ``on_confirm(id)`` is called (on the client's
        thread) once the broker has it on disk.  Its id."""
        return self._publish(queue, body, id, on_confirm)[0]

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every publish so far is confirmed; whether it was in time."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._lock:
            waiting = list(self._pending.values())
        return all(p.done.wait(max(0.0, deadline - time.monotonic())) for p in waiting)

    def _publish(
        self, queue: str, body: Any, id: str | None, on_confirm: Callable[[str], None] | None
    ) -> tuple[str, _Pending]:
        mid = id if id is not None else f"{self.client_id}:{next(self._seq)}"
        Publish(mid, queue, body).validate()  # bad names fail here, not at the broker
        pending = _Pending(queue, body, on_confirm=on_confirm)
        with self._lock:
            self._pending[mid] = pending
        self._start()
        self._send(Publish(mid, queue, body))
        return mid, pending

    # ------------------------------------------------------------ consuming

    def consumer(self, queue: str, *, prefetch: int = 10) -> Subscription:
        """Deliveries of ``queue``, to iterate over (blocking style)."""
        Subscribe(queue, prefetch).validate()
        sub = Subscription(self, queue, prefetch)
        with self._lock:
            if queue in self._subscriptions:
                raise ValueError(f"this client consumes {queue!r} already; use another client for a second consumer")
            self._subscriptions[queue] = sub
        self._start()
        self._send(Subscribe(queue, prefetch))
        return sub

    def consume(self, queue: str, callback: Callable[[Message], None], *, prefetch: int = 10) -> Subscription:
        """Call ``callback(msg)`` for each delivery of ``queue``, on a thread of its own;
        the callback acknowledges.  An exception in it gives the message back."""
        sub = self.consumer(queue, prefetch=prefetch)

        def run() -> None:
            for msg in sub:
                try:
                    callback(msg)
                except Exception:
                    msg.nack(requeue=True)

        threading.Thread(target=run, name=f"consume {queue}", daemon=True).start()
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if self._subscriptions.get(sub.queue) is sub:
                del self._subscriptions[sub.queue]
        self._send(Unsubscribe(sub.queue))

    # ------------------------------------------------------------ connection

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            subs = list(self._subscriptions.values())
            conn, self._conn = self._conn, None
        for sub in subs:
            sub.closed = True
            sub.inbox.put(None)
        if conn is not None:
            _shut(conn)
        if self._thread is not None:
            self._thread.join(5.0)

    def __enter__(self) -> BrokerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"broker client {self.client_id}", daemon=True)
                self._thread.start()

    def _send(self, msg: Any) -> None:
        """Send now if connected; otherwise what matters is sent on the next connection
        (pending publishes, subscriptions), and an acknowledgement is simply lost (the
        message comes back, marked redelivered)."""
        # A publish inside a traced call carries its trace to the broker (impl.telemetry).
        frame = encode_frame(self.client_id, encode(msg), current())
        with self._lock:
            conn = self._conn
            if conn is None:
                return
            try:
                conn.sendall(frame)
            except OSError:
                self._conn = None
                _shut(conn)

    def _run(self) -> None:
        """Connect, say again what the broker must know, read until the connection
        ends; again, until closed."""
        last_beat = 0.0
        while not self._closed.is_set():
            conn = self._connect()
            if conn is None:
                return
            with self._lock:
                if self._closed.is_set():
                    _shut(conn)
                    return
                self._conn = conn
                again: list[Publish | Subscribe] = [Publish(mid, p.queue, p.body) for mid, p in self._pending.items()]
                again += [Subscribe(s.queue, s.prefetch) for s in self._subscriptions.values()]
            for msg in again:
                self._send(msg)
            limits = ConnectionLimits(idle_timeout=self.heartbeat / 2, frame_deadline=self.timeout)
            reader = FrameReader(conn, limits)
            while not self._closed.is_set():
                now = time.monotonic()
                if now - last_beat >= self.heartbeat:
                    last_beat = now
                    with self._lock:
                        beats = [Subscribe(s.queue, s.prefetch) for s in self._subscriptions.values()]
                    for beat in beats:
                        self._send(beat)
                try:
                    frame = reader.read()
                except IdleConnection:
                    continue  # nothing for half a heartbeat: time to beat again, maybe
                except Exception:  # reset, garbled, closed by close(): connect again
                    frame = None
                if frame is None:
                    break
                self._handle(frame[1])
            with self._lock:
                if self._conn is conn:
                    self._conn = None
            _shut(conn)

    def _connect(self) -> socket.socket | None:
        """A new connection to the broker, tried again with a backoff doubling from
        ``backoff`` to ``max_backoff`` for as long as it takes; None once closed
        (the backoff's sleep is a wait on ``close``)."""
        pause = self.backoff > 0  # a backoff of 0: connect again at once, as it always did
        connecting = Retrying(
            base=self.backoff if pause else 1.0,
            cap=max(self.backoff, self.max_backoff) if pause else 1.0,
            backoff=pause,
            jitter="none",
            max_attempts=UNBOUNDED,
            retry_on=OSError,
            idempotent=True,  # opening a connection changes nothing at the broker
            sleep=self._closed.wait,
        )
        for attempt in connecting:
            with attempt:
                if self._closed.is_set():
                    return None
                conn = socket.create_connection(self.address, timeout=self.timeout)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if attempt.exception is None:
                return conn
        raise AssertionError("unreachable: the attempts end in a return or a RetryError")  # pragma: no cover

    def _handle(self, payload: dict[str, Any]) -> None:
        try:
            msg = CLIENT_MESSAGES.decode(payload)
        except MessageError:
            return  # not for us: ignored
        match msg:
            case Confirm(mid):
                with self._lock:
                    pending = self._pending.pop(mid, None)
                if pending is None:
                    return
                pending.done.set()
                if pending.on_confirm is not None:
                    pending.on_confirm(mid)
            case Deliver():
                with self._lock:
                    sub = self._subscriptions.get(msg.queue)
                if sub is not None:
                    sub.inbox.put(Message(msg.id, msg.queue, msg.body, msg.redelivered, msg.deliveries, self))


def _shut(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.close()


class IdempotentReceiver:
    """Applies each message id's effect once, in SQLite: the effect and the record of
    its id commit in one transaction, so a redelivery (or a crash between applying
    and acknowledging) changes nothing.

        receiver = IdempotentReceiver("effects.db")
        def effect(db): db.execute("UPDATE accounts SET balance = balance + ?", (msg.body,))
        receiver.apply(msg, effect)      # True the first time, False for a copy; acks either way
    """

    def __init__(self, path: str | Path) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS applied (id TEXT PRIMARY KEY)")
        self._lock = threading.Lock()

    def apply(self, msg: Message, effect: Callable[[sqlite3.Connection], object], *, ack: bool = True) -> bool:
        """Run ``effect`` with the id recorded, unless the id was applied already; then
        acknowledge.  Whether the effect ran."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                fresh = self.db.execute("INSERT OR IGNORE INTO applied (id) VALUES (?)", (msg.id,)).rowcount == 1
                if fresh:
                    effect(self.db)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        if ack:
            msg.ack()
        return fresh

    def seen(self, mid: str) -> bool:
        with self._lock:
            return self.db.execute("SELECT 1 FROM applied WHERE id = ?", (mid,)).fetchone() is not None

    def close(self) -> None:
        self.db.close()


__all__ = ["BrokerClient", "BrokerError", "IdempotentReceiver", "Message", "Subscription"]
