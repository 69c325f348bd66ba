"""The free runtime: OS threads, the monotonic clock, and TCP between nodes.

Where it sits: the production side of ``impl.runtime.api.Context``.  The same
protocol code that the controlled scheduler tests runs here unchanged: each node's
``main`` on its own thread, messages as length-prefixed JSON frames over TCP
(``impl.runtime.tcp``), timers and timeouts on ``time.monotonic``, durable storage
in ``impl.runtime.storage`` files (fsync on ``sync``).

Every node hosted by a ``FreeRuntime`` listens on its own TCP address (loopback
port 0 picks a free port); ``peers`` names the addresses of nodes hosted
elsewhere, so one protocol can span processes or machines.  Sends go over a cached
connection per destination; a send that fails drops the connection and the
message (the protocols retry, as they must for lost messages anyway).  A send to a
node hosted by the same runtime goes straight into its mailbox (the same frame,
encoded and decoded).

Receiving has no thread of its own: a node's thread that finds its mailbox empty
in ``receive`` waits in ``select`` on the node's sockets itself (its listeners,
its accepted connections, and a wake-up socket that other threads write to when
they put something in the mailbox or arm a timer), accepts, reads what arrived,
cuts it into frames and takes the first.  A message thus goes from the wire to
its handler with no hand-over between threads, which is what a message's latency
is made of on a busy machine.  While no thread of the node is receiving, its
connections are not read: what arrives waits in TCP's buffers and pushes back on
the senders, as a full mailbox does.  A malformed, truncated, oversized, too
deeply nested or late frame is logged in ``diagnostics`` and closes that
connection only.

A node may also listen on a **client port** (``client_ports``): connections there
come from clients that are not nodes of the cluster, and the node answers a client
over the connection its last frame came on (``send(client_id, ...)``), so a
server needs no gateway thread between its clients and its protocol.  A client
port has its own limits and may refuse frames (``ClientPort.admit``).

Connections are bounded (``ConnectionLimits``, ``impl.runtime.tcp``): a deadline per
frame, an idle timeout, a maximum frame size and nesting depth, a maximum number
of open connections per listener (the excess is accepted, closed and counted in
``connection_stats``).  A failing ``accept()`` (descriptors exhausted) is noted and
retried with backoff.  ``diagnostics`` is a ring (``impl.runtime.diagnostics``) and
a thread leaves the runtime's bookkeeping when it ends, so a node serving
connection after connection for days holds as much memory as one serving a few.

**Tracing** (``impl.telemetry``): a frame may carry the W3C trace context of the
work that sent it.  When a node's thread takes such a message from its mailbox, the
runtime starts a span for handling it (with the installed telemetry; without one,
the context just passes through) and makes it the thread's current context until
the thread's next ``receive``, so everything the handler sends carries it: one
client request is one trace across the nodes it reaches.  A timer armed while
handling a traced message carries that trace too (deferred work, such as a batch
flushed on a zero-delay timer, stays in the trace); a timer armed while handling a
timer carries none, so periodic work does not grow one endless trace.  A thread
``spawn``ed inside a trace starts in it.  Messages sent and received are counted
per node and type (``distcheck.messages.sent`` / ``.received``), and every
``record``ed step and runtime note goes to the telemetry's structured log.

``stop()`` ends every node: its threads get ``NodeCrashed`` at their next send,
wait, timer, spawn or opening of storage, exactly as in a crash, so there is one way
a node's code ends.  Writes to storage it already opened and ``record`` do not raise:
a process that crashes has written what it wrote (the operating system keeps it),
and a step made durable must be in the trace too, or the trace would not explain
the state the node restarts from.  So the crash lands between what a step writes
and what it sends, where a node's code expects it.  A node
whose own code fails calls ``ctx.crash(reason)`` (actors do, ``impl.runtime.actor``):
it stops the same way, its mailbox and timers are dropped, the crash is noted in
``diagnostics`` and ``crashes``, and the runtime restarts the node (``main`` again
from the top, over its logs) after ``restart_delay`` seconds, at most
``max_restarts`` times; after that the node stays down and ``errors`` says so.
"""

from __future__ import annotations

import contextvars
import functools
import select
import selectors
import socket
import struct
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import attrs

from distcheck.impl.runtime.api import (
    Context,
    Envelope,
    Lock,
    Message,
    NodeCrashed,
    NodeMain,
    Queue,
    Received,
    Storage,
    Timer,
)
from distcheck.impl.runtime.diagnostics import Diagnostics
from distcheck.impl.runtime.storage import DurableLog
from distcheck.impl.runtime.tcp import (
    ConnectionLimits,
    ConnectionStats,
    FrameError,
    decode_traced_frame,
    encode_frame,
)
from distcheck.impl.runtime.tracelog import TraceLog
from distcheck.impl.telemetry import Span, count, installed
from distcheck.impl.telemetry.context import TraceContext, current, set_current

Address = tuple[str, int]
_LENGTH = struct.Struct(">I")
#: bytes read from a connection at a time
_CHUNK = 1 << 16


@attrs.frozen
class ClientPort:
    """A second port a hosted node listens on, for its clients (module docstring).

    ``port``: 0 picks a free one (``FreeRuntime.client_addresses`` says which);
    ``limits``: what a client connection may send (None: the runtime's); ``admit``:
    whether a frame ``(src, msg)`` is one a client may send; a frame it refuses
    closes its connection, noted as a rejected frame."""

    port: int = 0
    limits: ConnectionLimits | None = None
    admit: Callable[[str, Mapping[str, Any]], bool] | None = None


class _Listener:
    def __init__(
        self,
        sock: socket.socket,
        limits: ConnectionLimits,
        *,
        clients: bool,
        admit: Callable[[str, Mapping[str, Any]], bool] | None = None,
    ) -> None:
        self.sock = sock
        self.limits = limits
        self.clients = clients  # a client port: answers go back on the connection
        self.admit = admit
        self.open = 0
        self.backoff = limits.accept_backoff
        self.paused_until: float | None = None  # after a failed accept(): not watched until then


class _Inbound:
    """One accepted connection, as its node's receiving thread reads it."""

    def __init__(self, conn: socket.socket, peer: Any, listener: _Listener, now: float) -> None:
        self.conn = conn
        self.peer = peer
        self.listener = listener
        self.limits = listener.limits
        self.buffer = bytearray()
        self.started: float | None = None  # when the first byte of the frame being read arrived
        self.last = now  # when the last frame ended (or the connection was accepted)
        self.watched = True  # registered with the selector (False: its frames wait for room)
        self.src: str | None = None  # on a client port: whom answers to go back to here
        self.send_lock = threading.Lock()  # held while an answer is sent on it
        self.closed = False


class _FreeNode:
    def __init__(self, runtime: FreeRuntime, name: str, main: NodeMain) -> None:
        self.runtime = runtime
        self.name = name
        self.main = main
        self.cond = threading.Condition()
        self.mailbox: deque[Received] = deque()
        self.timers: dict[str, float] = {}
        #: the trace each armed timer belongs to (module docstring, "Tracing")
        self.timer_traces: dict[str, TraceContext] = {}
        self.stopped = False
        self.threads: list[threading.Thread] = []
        self.logs: dict[str, _FreeStorage] = {}
        self.listener: socket.socket | None = None
        self.listeners: list[_Listener] = []
        self.restarts = 0
        # receiving (module docstring): one thread at a time selects
        self.selector = selectors.DefaultSelector()
        self.waker, self.wake_end = socket.socketpair()
        self.waker.setblocking(False)
        self.wake_end.setblocking(False)
        self.selector.register(self.wake_end, selectors.EVENT_READ, None)
        self.polling = False
        self.inbound: dict[socket.socket, _Inbound] = {}
        self.waiting: list[_Inbound] = []  # connections with frames read but no room in the mailbox
        self.routes: dict[str, _Inbound] = {}  # client -> the connection its last frame came on

    def wake(self) -> None:
        """Get the thread waiting in ``select`` out of it (call holding ``cond``)."""
        if self.polling:
            try:
                self.waker.send(b"\\0")
            except OSError:
                pass  # its buffer is full (it will wake anyway), or it is closed (stopped)

    def check(self) -> None:
        if self.stopped:
            raise NodeCrashed


def connect(runtimes: Iterable[FreeRuntime]) -> dict[str, Address]:
    """Open every runtime's listening sockets and tell each runtime where every node of
    the others listens: the runtimes of one system on this machine, each as if it ran
    in a process of its own (so that one can be stopped while the others go on).
    Every node's address, to restart one on its port."""
    runtimes = list(runtimes)
    addresses: dict[str, Address] = {}
    for rt in runtimes:
        addresses.update(rt.listen())
    for rt in runtimes:
        rt.add_peers(addresses)
    return addresses


class FreeRuntime:
    """Host some nodes on this machine; talk to each other and to ``peers`` over TCP."""

    def __init__(
        self,
        nodes: Mapping[str, NodeMain],
        directory: Path,
        *,
        peers: Mapping[str, Address] | None = None,
        host: str = "127.0.0.1",
        ports: Mapping[str, int] | None = None,
        client_ports: Mapping[str, ClientPort] | None = None,
        trace: TraceLog | None = None,
        limits: ConnectionLimits | None = None,
        max_frame: int | None = None,
        connect_timeout: float = 1.0,
        restart_delay: float = 0.1,
        max_restarts: int = 3,
        fsync: bool = True,
    ) -> None:
        unknown = sorted(set(client_ports or {}) - set(nodes))
        if unknown:
            raise ValueError(f"client ports for nodes not hosted here: {', '.join(unknown)}")
        self.nodes = {name: _FreeNode(self, name, main) for name, main in nodes.items()}
        self.directory = directory
        self.addresses: dict[str, Address] = dict(peers or {})
        #: where each hosted node with a client port listens for clients (after ``listen``)
        self.client_addresses: dict[str, Address] = {}
        self.host = host
        self.ports = dict(ports or {})
        self.client_ports = dict(client_ports or {})
        self.trace = trace if trace is not None else TraceLog("unknown")
        chosen = limits if limits is not None else ConnectionLimits()
        #: what each hosted node accepts from its connections (``max_frame=`` is short for
        #: ``limits=ConnectionLimits(max_frame=...)``)
        self.limits = chosen if max_frame is None else chosen.evolve(max_frame=max_frame)
        self.max_frame = self.limits.max_frame
        self.connect_timeout = connect_timeout
        self.restart_delay = restart_delay
        self.max_restarts = max_restarts
        #: False: storage ``sync`` does not fsync (unsafe on a power cut; for comparisons)
        self.fsync = fsync
        #: the newest ``limits.diagnostics_kept`` notes; ``diagnostics.dropped`` counts older ones
        self.diagnostics = Diagnostics(self.limits.diagnostics_kept)
        self.errors: list[str] = []
        #: crashes a node's own code caused (``Context.crash``): "node: reason", in order
        self.crashes: list[str] = []
        self._lock = threading.Lock()
        self._outgoing: dict[tuple[str, str], socket.socket] = {}
        #: per hosted node: connections accepted, refused, open, failed accepts...
        self.connection_stats = {name: ConnectionStats() for name in self.nodes}
        self._threads: set[threading.Thread] = set()
        self._stopping = False
        self._started = False
        self._stopped = threading.Event()

    # ----------------------------------------------------------- lifecycle

    def listen(self) -> dict[str, Address]:
        """Open every hosted node's listening sockets (``start`` does it if needed)
        and return their addresses, to hand to the runtimes hosting the peers."""
        for node in self.nodes.values():
            if node.listener is None:
                listener = socket.create_server((self.host, self.ports.get(node.name, 0)))
                node.listener = listener
                self.addresses[node.name] = listener.getsockname()[:2]
                self._watch(node, _Listener(listener, self.limits, clients=False))
                port = self.client_ports.get(node.name)
                if port is not None:
                    sock = socket.create_server((self.host, port.port))
                    self.client_addresses[node.name] = sock.getsockname()[:2]
                    limits = port.limits if port.limits is not None else self.limits
                    self._watch(node, _Listener(sock, limits, clients=True, admit=port.admit))
        return {name: self.addresses[name] for name in self.nodes}

    def _watch(self, node: _FreeNode, listener: _Listener) -> None:
        listener.sock.setblocking(False)
        node.listeners.append(listener)
        node.selector.register(listener.sock, selectors.EVENT_READ, listener)

    def add_peers(self, peers: Mapping[str, Address]) -> None:
        """Learn where nodes hosted elsewhere listen."""
        with self._lock:
            self.addresses.update({k: v for k, v in peers.items() if k not in self.nodes})

    def start(self) -> None:
        """Start every node's main thread (once: ``with FreeRuntime(...)`` already
        started them, and a second start would run each node twice)."""
        with self._lock:
            if self._started:
                return
            self._started = True
        self.listen()
        for node in self.nodes.values():
            ctx = _FreeContext(self, node)
            self._node_thread(node, "main", functools.partial(node.main, ctx))

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        self._stopped.set()
        for node in self.nodes.values():
            with node.cond:
                node.stopped = True
                node.cond.notify_all()
                node.wake()
        with self._lock:
            conns = list(self._outgoing.values())
            self._outgoing.clear()
        for conn in conns:
            _close(conn)
        deadline = time.monotonic() + timeout
        for t in self._all_threads():
            t.join(max(0.0, deadline - time.monotonic()))
        for node in self.nodes.values():
            # Its threads are gone (or stuck in its own code, never in a select): close
            # what they read.  Under ``cond``, which a thread that selects holds around it.
            with node.cond:
                for listener in node.listeners:
                    listener.sock.close()
                for inbound in list(node.inbound.values()):
                    _close(inbound.conn)
                node.inbound.clear()
                node.routes.clear()
                node.selector.close()
                node.waker.close()
                node.wake_end.close()
                self.connection_stats[node.name].open = 0
            for log in node.logs.values():
                log.close()

    def alive(self) -> list[str]:
        """Names of this runtime's threads still running (none, after ``stop``)."""
        return sorted(t.name for t in self._all_threads() if t.is_alive())

    def _all_threads(self) -> list[threading.Thread]:
        """The threads the runtime keeps track of: those not ended yet (and those
        that just ended, while they remove themselves)."""
        with self._lock:
            return [*self._threads, *(t for n in self.nodes.values() for t in n.threads)]

    def __enter__(self) -> FreeRuntime:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def note(self, text: str) -> None:
        with self._lock:
            self.diagnostics.append(text)
        installed().log_note(text)

    def _thread(self, name: str, fn: Callable[[], None]) -> threading.Thread:
        def body() -> None:
            try:
                fn()
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        t = threading.Thread(target=body, name=name, daemon=True)
        with self._lock:
            self._threads.add(t)
        try:
            t.start()
        except BaseException:
            with self._lock:
                self._threads.discard(t)
            raise
        return t

    def _node_thread(
        self, node: _FreeNode, name: str, fn: Callable[[], None], trace: TraceContext | None = None
    ) -> None:
        def body() -> None:
            set_current(trace)
            try:
                fn()
            except NodeCrashed:
                pass
            except BaseException as exc:
                with self._lock:
                    self.errors.append(f"{node.name}.{name} raised {exc!r}\\n{traceback.format_exc()}")
            finally:
                _finish_handling()
                with self._lock:
                    if threading.current_thread() in node.threads:
                        node.threads.remove(threading.current_thread())

        t = threading.Thread(target=body, name=f"{node.name}.{name}", daemon=True)
        node.threads.append(t)
        t.start()

    def crash(self, node: _FreeNode, reason: str) -> None:
        """Stop ``node`` because its code failed, and have it restarted (module docstring)."""
        with self._lock:
            self.crashes.append(f"{node.name}: {reason}")
        self.note(f"{node.name} crashed: {reason}")
        with node.cond:
            node.stopped = True
            node.cond.notify_all()
            node.wake()
        self._thread(f"{node.name}.restart", functools.partial(self._restart, node))

    def _restart(self, node: _FreeNode) -> None:
        deadline = time.monotonic() + 5.0
        for t in list(node.threads):
            t.join(max(0.0, deadline - time.monotonic()))
        still = [t.name for t in node.threads if t.is_alive()]
        if still:
            self.note(f"{node.name} not restarted: its threads {', '.join(still)} did not end")
            return
        time.sleep(self.restart_delay)
        with node.cond:
            if self._stopping:
                return
            if node.restarts >= self.max_restarts:
                with self._lock:
                    self.errors.append(f"{node.name} crashed {node.restarts + 1} times; it stays down")
                return
            node.restarts += 1
            for log in node.logs.values():
                log.close()
            node.logs.clear()
            # Its memory is gone, and so are the frames read for it and not taken (the
            # connections stay: their senders do not know of the crash).
            node.mailbox.clear()
            node.timers.clear()
            node.timer_traces.clear()
            for inbound in node.waiting:
                inbound.buffer.clear()
                inbound.started = None
                self._resume(node, inbound)
            node.waiting.clear()
            node.threads = []
            node.stopped = False
        self.note(f"{node.name} restarted")
        self._node_thread(node, "main", functools.partial(node.main, _FreeContext(self, node)))

    # ------------------------------------------------------------ receiving

    def poll(self, node: _FreeNode, wait: float | None) -> None:
        """Wait up to ``wait`` seconds (None: as long as it takes) for frames or
        connections, and take in what came: frames into the mailbox, connections
        accepted.  Called by one thread of ``node`` at a time, holding ``node.cond``
        (released while it waits in ``select``)."""
        if node.waiting:
            self._unblock(node)
            if node.mailbox:
                return
        now = time.monotonic()
        due = self._next_due(node, now)
        if due is not None:
            wait = max(0.0, due - now) if wait is None else max(0.0, min(wait, due - now))
        node.polling = True
        node.cond.release()
        try:
            events = node.selector.select(wait)
        except (OSError, ValueError):  # closed by stop()
            events = []
        finally:
            node.cond.acquire()
            node.polling = False
        node.check()
        for key, _ in events:
            what = key.data
            if what is None:
                _drain(node.wake_end)
            elif isinstance(what, _Listener):
                self._accept(node, what)
            elif what.conn in node.inbound:  # (not closed by an earlier event of this batch)
                self._read(node, what)
        self._expire(node, time.monotonic())

    def _next_due(self, node: _FreeNode, now: float) -> float | None:
        """The next moment a connection's deadline or a listener's pause ends."""
        due: float | None = None
        for inbound in node.inbound.values():
            if not inbound.watched:
                continue
            limits = inbound.limits
            at = (
                inbound.started + limits.frame_deadline
                if inbound.started is not None
                else inbound.last + limits.idle_timeout
            )
            due = at if due is None else min(due, at)
        for listener in node.listeners:
            if listener.paused_until is not None:
                due = listener.paused_until if due is None else min(due, listener.paused_until)
        return due

    def _accept(self, node: _FreeNode, listener: _Listener) -> None:
        """Accept what is waiting on ``listener``: up to its limit, the excess closed."""
        stats = self.connection_stats[node.name]
        for _ in range(64):  # then let the node take its messages; the rest waits
            try:
                conn, peer = listener.sock.accept()
            except BlockingIOError:
                listener.backoff = listener.limits.accept_backoff
                return
            except Exception as exc:  # EMFILE, ENFILE, ENOBUFS, ECONNABORTED...
                if self._stopping or listener.sock.fileno() == -1:
                    return
                with self._lock:
                    stats.accept_errors += 1
                self.note(f"{node.name}: accept failed: {exc}; retrying in {listener.backoff:g} s")
                # The listener stays readable: not watched until the backoff is over.
                node.selector.unregister(listener.sock)
                listener.paused_until = time.monotonic() + listener.backoff
                listener.backoff = min(listener.backoff * 2, listener.limits.accept_backoff_max)
                return
            listener.backoff = listener.limits.accept_backoff
            if listener.open >= listener.limits.max_connections:
                with self._lock:
                    stats.refused += 1
                self.note(
                    f"{node.name}: refused a connection from {_show(peer)}: "
                    f"{listener.limits.max_connections} connections are open"
                )
                _close(conn)
                continue
            try:
                conn.setblocking(False)
                inbound = _Inbound(conn, peer, listener, time.monotonic())
                node.selector.register(conn, selectors.EVENT_READ, inbound)
            except Exception as exc:  # out of memory or descriptors for the selector
                _close(conn)
                self.note(f"{node.name}: could not serve a connection from {_show(peer)}: {exc!r}")
                continue
            node.inbound[conn] = inbound
            listener.open += 1
            with self._lock:
                stats.accepted += 1
                stats.open = len(node.inbound)

    def _read(self, node: _FreeNode, inbound: _Inbound) -> None:
        try:
            data = inbound.conn.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""  # reset by the peer
        now = time.monotonic()
        if not data:
            if inbound.buffer:
                length = _LENGTH.unpack_from(inbound.buffer)[0] if len(inbound.buffer) >= 4 else 0
                got, n, what = _progress(inbound.buffer, length)
                self._reject(
                    node,
                    inbound,
                    f"truncated frame: the connection ended after {got} of {n} bytes of its {what}",
                )
            else:
                self._forget(node, inbound)
            return
        if not inbound.buffer:
            inbound.started = now
        inbound.buffer += data
        if not self._frames(node, inbound, now) and inbound.conn in node.inbound:
            # No room: stop reading this connection (TCP pushes back on its sender)
            # until the node has taken some of its messages.
            node.selector.unregister(inbound.conn)
            inbound.watched = False
            node.waiting.append(inbound)

    def _frames(self, node: _FreeNode, inbound: _Inbound, now: float) -> bool:
        """Cut ``inbound``'s buffer into frames and deliver them, while the mailbox has
        room; False when a whole frame is left for want of room."""
        buffer, limits = inbound.buffer, inbound.limits
        while len(buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer)
            if length > limits.max_frame:
                self._reject(node, inbound, f"oversized frame: {length} bytes, the limit is {limits.max_frame}")
                break
            if len(buffer) < _LENGTH.size + length:
                break
            if len(node.mailbox) >= limits.max_mailbox:
                node.cond.notify_all()
                return False
            payload = bytes(buffer[_LENGTH.size : _LENGTH.size + length])
            del buffer[: _LENGTH.size + length]
            inbound.last = now
            inbound.started = now if buffer else None
            try:
                src, msg, trace = decode_traced_frame(payload, limits.max_depth)
            except FrameError as exc:
                self._reject(node, inbound, str(exc))
                break
            listener = inbound.listener
            if listener.clients:
                if listener.admit is not None and not listener.admit(src, msg):
                    self._reject(node, inbound, f"refused frame: a client may not send {msg['type']!r} as {src!r}")
                    break
                self._route(node, src, inbound)
            node.mailbox.append(Envelope(src, msg, trace))
        node.cond.notify_all()
        return True

    def _route(self, node: _FreeNode, src: str, inbound: _Inbound) -> None:
        """Answers to client ``src`` go back on ``inbound``, the connection it last used."""
        if inbound.src != src:
            if inbound.src is not None and node.routes.get(inbound.src) is inbound:
                del node.routes[inbound.src]
            inbound.src = src
        node.routes[src] = inbound

    def _unblock(self, node: _FreeNode) -> None:
        """Deliver the frames that waited for room; watch their connections again once
        none is left whole."""
        now = time.monotonic()
        waiting, node.waiting = node.waiting, []
        for inbound in waiting:
            if inbound.conn not in node.inbound:
                continue  # closed meanwhile
            if self._frames(node, inbound, now):
                if inbound.conn in node.inbound:
                    self._resume(node, inbound)
            else:
                node.waiting.append(inbound)

    def _resume(self, node: _FreeNode, inbound: _Inbound) -> None:
        if inbound.conn in node.inbound and inbound.conn.fileno() != -1:
            try:
                node.selector.register(inbound.conn, selectors.EVENT_READ, inbound)
            except KeyError:
                pass  # registered already
            inbound.watched = True

    def _expire(self, node: _FreeNode, now: float) -> None:
        """Close connections past a frame deadline or the idle timeout; watch listeners
        whose pause after a failed accept() is over."""
        for inbound in list(node.inbound.values()):
            limits = inbound.limits
            if not inbound.watched:
                continue  # its frames wait for room in the mailbox: the wait is the node's, not the sender's
            if inbound.started is not None and now - inbound.started > limits.frame_deadline:
                length = _LENGTH.unpack_from(inbound.buffer)[0] if len(inbound.buffer) >= 4 else 0
                got, n, what = _progress(inbound.buffer, length)
                self._reject(
                    node,
                    inbound,
                    f"late frame: {got} of {n} bytes of its {what} arrived within the "
                    f"{limits.frame_deadline:g} s deadline",
                )
            elif inbound.started is None and now - inbound.last > limits.idle_timeout:
                with self._lock:
                    self.connection_stats[node.name].idle += 1
                self.note(
                    f"{node.name}: closed an idle connection from {_show(inbound.peer)}: "
                    f"no frame for {limits.idle_timeout:g} s"
                )
                self._forget(node, inbound)
        for listener in node.listeners:
            if listener.paused_until is not None and now >= listener.paused_until:
                listener.paused_until = None
                node.selector.register(listener.sock, selectors.EVENT_READ, listener)

    def _reject(self, node: _FreeNode, inbound: _Inbound, reason: str) -> None:
        with self._lock:
            self.connection_stats[node.name].rejected += 1
        self.note(f"{node.name}: rejected a frame from {_show(inbound.peer)}: {reason}; connection closed")
        self._forget(node, inbound)

    def _forget(self, node: _FreeNode, inbound: _Inbound) -> None:
        if node.inbound.pop(inbound.conn, None) is None:
            return
        if inbound.watched:
            try:
                node.selector.unregister(inbound.conn)
            except (KeyError, ValueError):
                pass
        if inbound.src is not None and node.routes.get(inbound.src) is inbound:
            del node.routes[inbound.src]
        inbound.listener.open -= 1
        inbound.closed = True
        if inbound.send_lock.acquire(blocking=False):
            try:
                _close(inbound.conn)
            finally:
                inbound.send_lock.release()
        else:
            # An answer is being sent on it: shut it down (the send fails at once); the
            # sender closes it (closing it here could hand its descriptor number to a
            # new socket under the sender's feet).
            try:
                inbound.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self._lock:
            self.connection_stats[node.name].open = len(node.inbound)

    # ------------------------------------------------------------ sending

    def knows(self, node: str, name: str) -> bool:
        """Whether hosted ``node`` can send to ``name``: a node, or a client of its."""
        with self._lock:
            if name in self.addresses:
                return True
        hosted = self.nodes.get(node)
        return hosted is not None and name in hosted.routes

    def send(self, src: str, dst: str, msg: Message) -> None:
        with self._lock:
            address = self.addresses.get(dst)
        trace = current()
        frame = encode_frame(src, dict(msg), trace)
        count("distcheck.messages.sent", node=src, type=str(msg.get("type")))
        local = self.nodes.get(dst)
        if local is not None:
            # A node hosted here gets the frame straight into its mailbox: the same
            # bytes, decoded as its connection would.
            _, copy, _ = decode_traced_frame(frame[4:], self.limits.max_depth)
            if not self._deliver(local, Envelope(src, copy, trace), within=self.connect_timeout):
                self.note(f"{src}: message to {dst} lost: its mailbox stayed full")
            return
        if address is None:
            sender = self.nodes.get(src)
            inbound = sender.routes.get(dst) if sender is not None else None
            if inbound is None:
                raise ValueError(f"{src} sends to unknown node {dst!r}; known: {', '.join(sorted(self.addresses))}")
            self._answer(src, dst, inbound, frame)
            return
        key = (src, dst)
        with self._lock:
            conn = self._outgoing.pop(key, None)
        if conn is not None and _closed_by_peer(conn):
            # the receiver closed it (idle timeout, restart): a send on it would be lost
            _close(conn)
            conn = None
        try:
            if conn is None:
                conn = socket.create_connection(address, timeout=self.connect_timeout)
                # Frames are small and each is one sendall: Nagle's algorithm would hold
                # one back until the previous one is acknowledged (delayed ACK: up to 40 ms).
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.sendall(frame)
        except OSError as exc:
            if conn is not None:
                _close(conn)
            self.note(f"{src}: message to {dst} lost: {exc}")
            return
        with self._lock:
            if self._stopping:
                _close(conn)
            else:
                self._outgoing[key] = conn

    def _answer(self, src: str, client: str, inbound: _Inbound, frame: bytes) -> None:
        """Send ``frame`` to a client over its connection (which the node reads: it is
        non-blocking, so a client that does not read gets ``frame_deadline`` to)."""
        deadline = time.monotonic() + inbound.limits.frame_deadline
        view = memoryview(frame)
        try:
            with inbound.send_lock:
                if inbound.closed:
                    raise ConnectionResetError("the connection is closed")
                while view:
                    try:
                        view = view[inbound.conn.send(view) :]
                    except BlockingIOError:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise TimeoutError("the client did not read its answers") from None
                        select.select([], [inbound.conn], [], left)
        except OSError as exc:
            self.note(f"{src}: answer to {client} lost: {exc}")
        finally:
            if inbound.closed:  # closed by the node meanwhile: the descriptor is ours to free
                with inbound.send_lock:
                    inbound.conn.close()

    def _deliver(self, node: _FreeNode, item: Received, within: float | None = None) -> bool:
        """Into the mailbox of a node hosted here, once it has room (a sender faster
        than the node waits, as TCP would make it); after ``within`` seconds, give up
        (a TCP send would time out).  Whether it went in."""
        deadline = None if within is None else time.monotonic() + within
        with node.cond:
            # the node's thread takes items without notifying: look again in slices
            while len(node.mailbox) >= self.limits.max_mailbox and not self._stopping:
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                node.cond.wait(0.05)
            node.mailbox.append(item)
            node.cond.notify_all()
            node.wake()
            return True


def _progress(buffer: bytearray, length: int) -> tuple[int, int, str]:
    """How far the frame in ``buffer`` got: (bytes, of how many, of which part)."""
    if len(buffer) < _LENGTH.size:
        return len(buffer), _LENGTH.size, "length"
    return len(buffer) - _LENGTH.size, length, "payload"


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass
    except OSError:
        pass  # nothing more (BlockingIOError), or closed


def _closed_by_peer(conn: socket.socket) -> bool:
    """Whether the peer ended ``conn`` (nothing is ever sent back on a sending connection)."""
    try:
        poller = select.poll()
        poller.register(conn, select.POLLIN)
        if not poller.poll(0):
            return False
        return conn.recv(1, socket.MSG_PEEK) == b""  # readable: the peer's FIN, or an error
    except OSError:
        return True


def _show(peer: Any) -> str:
    """A peer address for a diagnostic line."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return repr(peer)


def _close(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.close()


# ---------------------------------------------------------------- primitives


class _FreeLock(Lock):
    def __init__(self) -> None:
        self._lock = threading.Lock()

    def acquire(self) -> None:
        self._lock.acquire()

    def release(self) -> None:
        self._lock.release()


class _FreeQueue(Queue):
    def __init__(self, node: _FreeNode) -> None:
        self.node = node
        self.items: deque[Any] = deque()

    def put(self, item: Any) -> None:
        self.node.check()
        with self.node.cond:
            self.items.append(item)
            self.node.cond.notify_all()

    def get(self, timeout: float | None = None) -> Any | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.node.cond:
            while True:
                self.node.check()
                if self.items:
                    return self.items.popleft()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self.node.cond.wait(left)


class _FreeStorage(Storage):
    def __init__(self, node: _FreeNode, log: DurableLog) -> None:
        self.node = node
        self.log = log
        self._lock = threading.Lock()

    # No ``check``: a write after the node was stopped is one it made before it died
    # (module docstring).
    def append(self, record: Mapping[str, Any]) -> None:
        with self._lock:
            self.log.append(record)

    def sync(self) -> None:
        with self._lock:
            self.log.sync()

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return self.log.records()

    def close(self) -> None:
        with self._lock:
            self.log.close()


class _FreeContext(Context):
    def __init__(self, runtime: FreeRuntime, node: _FreeNode) -> None:
        self.runtime = runtime
        self.node = node
        self.name = node.name

    def knows(self, node: str) -> bool:
        return self.runtime.knows(self.name, node)

    def send(self, dst: str, msg: Message) -> None:
        self.node.check()
        self.runtime.send(self.name, dst, msg)

    def receive(self, timeout: float | None = None) -> Received | None:
        _finish_handling()
        item = self._take(timeout)
        if item is not None:
            _begin_handling(self.name, item)
        return item

    def receive_ready(self) -> Received | None:
        node = self.node
        with node.cond:
            if node.stopped:
                return None  # its next yield point raises NodeCrashed
            self._due_timers(time.monotonic())
            if not node.mailbox and not node.polling:
                # Frames that have arrived on its sockets are ready too (a batch then
                # gathers the requests of several connections): poll without waiting.
                try:
                    self.runtime.poll(node, 0.0)
                except NodeCrashed:
                    return None
                self._due_timers(time.monotonic())
            if not node.mailbox:
                return None
            item = node.mailbox.popleft()
        _finish_handling()
        _begin_handling(self.name, item)
        return item

    def _due_timers(self, now: float) -> float | None:
        """Move the timers due by ``now`` into the mailbox, oldest first; the next
        deadline of those left.  Called holding ``node.cond``."""
        node = self.node
        first = min(node.timers.values(), default=None)
        if first is not None and first <= now:
            for name, due in sorted(node.timers.items(), key=lambda kv: kv[1]):
                if due <= now:
                    del node.timers[name]
                    node.mailbox.append(Timer(name, node.timer_traces.pop(name, None)))
            first = min(node.timers.values(), default=None)
        return first

    def _take(self, timeout: float | None) -> Received | None:
        node = self.node
        deadline = None if timeout is None else time.monotonic() + timeout
        with node.cond:
            while True:
                node.check()
                now = time.monotonic()
                first = self._due_timers(now)
                if node.mailbox:
                    return node.mailbox.popleft()
                if deadline is not None and deadline <= now:
                    return None
                until = first if deadline is None else deadline if first is None else min(first, deadline)
                wait = None if until is None else until - now
                if node.polling:
                    node.cond.wait(wait)  # another thread of the node is reading its sockets
                else:
                    self.runtime.poll(node, wait)

    def set_timer(self, name: str, delay: float) -> None:
        with self.node.cond:
            self.node.check()
            self.node.timers[name] = time.monotonic() + max(delay, 0.0)
            handling = _HANDLING.get()
            if handling is not None and handling[1] and handling[0].context is not None:
                self.node.timer_traces[name] = handling[0].context
            else:
                self.node.timer_traces.pop(name, None)
            self.node.cond.notify_all()
            self.node.wake()

    def cancel_timer(self, name: str) -> None:
        with self.node.cond:
            self.node.check()
            self.node.timers.pop(name, None)
            self.node.timer_traces.pop(name, None)

    def now(self) -> float:
        self.node.check()
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        with self.node.cond:
            while True:
                self.node.check()
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.node.cond.wait(left)

    def yield_now(self) -> None:
        self.node.check()
        time.sleep(0)

    def lock(self) -> Lock:
        self.node.check()
        return _FreeLock()

    def queue(self) -> Queue:
        self.node.check()
        return _FreeQueue(self.node)

    def storage(self, name: str) -> Storage:
        self.node.check()
        with self.node.cond:
            log = self.node.logs.get(name)
            if log is None:
                log = _FreeStorage(
                    self.node, DurableLog(self.runtime.directory / self.name / f"{name}.log", fsync=self.runtime.fsync)
                )
                self.node.logs[name] = log
            return log

    def spawn(self, name: str, fn: Callable[[], None]) -> None:
        self.node.check()
        self.runtime._node_thread(self.node, name, fn, current())

    def record(self, action: Mapping[str, Any], **extra: Any) -> None:
        # No ``check``: the step recorded has happened, even if the node is stopped now.
        self.runtime.trace.record(self.name, action, **extra)
        installed().log_step(self.name, action, extra)

    def log(self, text: str) -> None:
        self.runtime.note(f"{self.name}: {text}")

    def crash(self, reason: str) -> NoReturn:
        self.node.check()
        self.runtime.crash(self.node, reason)
        raise NodeCrashed


#: the span of the message or timer the current thread is handling: (span, whether a
#: message, the context current before it), until the thread's next ``receive``
_HANDLING: contextvars.ContextVar[tuple[Span, bool, TraceContext | None] | None] = contextvars.ContextVar(
    "distcheck_handling", default=None
)


def _begin_handling(node: str, item: Received) -> None:
    """Count a message; start the span of a traced message or timer (module docstring)."""
    if isinstance(item, Envelope):
        kind = str(item.msg.get("type"))
        count("distcheck.messages.received", node=node, type=kind)
        if item.trace is None:
            return
        span = installed().start_span(
            kind, item.trace, kind="server", attributes={"distcheck.node": node, "distcheck.src": item.src}
        )
    else:
        if item.trace is None:
            return
        span = installed().start_span(f"timer {item.name}", item.trace, attributes={"distcheck.node": node})
    _HANDLING.set((span, isinstance(item, Envelope), current()))
    set_current(span.context)


def _finish_handling() -> None:
    handling = _HANDLING.get()
    if handling is not None:
        span, _, before = handling
        _HANDLING.set(None)
        span.end()
        set_current(before)
