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
message (the protocols retry, as they must for lost messages anyway).  A malformed,
truncated, oversized, too deeply nested or late frame is logged in ``diagnostics``
and closes that connection only.

Connections are bounded (``ConnectionLimits``, ``impl.runtime.tcp``): a deadline per
frame, an idle timeout, a maximum frame size and nesting depth, a maximum number
of open connections per node (the excess is accepted, closed and counted in
``connection_stats``).  A failing ``accept()`` (descriptors exhausted) is noted and
retried with backoff; the accept loop ends only with ``stop()``.  ``diagnostics``
is a ring (``impl.runtime.diagnostics``) and a thread leaves the runtime's
bookkeeping when it ends, so a node serving connection after connection for days
holds as much memory as one serving a few.

``stop()`` ends every node: its threads get ``NodeCrashed`` at their next call into
the runtime, exactly as in a crash, so there is one way a node's code ends.  A node
whose own code fails calls ``ctx.crash(reason)`` (actors do, ``impl.runtime.actor``):
it stops the same way, its mailbox and timers are dropped, the crash is noted in
``diagnostics`` and ``crashes``, and the runtime restarts the node (``main`` again
from the top, over its logs) after ``restart_delay`` seconds, at most
``max_restarts`` times; after that the node stays down and ``errors`` says so.
"""

from __future__ import annotations

import functools
import select
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

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
    FrameReader,
    IdleConnection,
    encode_frame,
)
from distcheck.impl.runtime.tracelog import TraceLog

Address = tuple[str, int]


class _FreeNode:
    def __init__(self, runtime: FreeRuntime, name: str, main: NodeMain) -> None:
        self.runtime = runtime
        self.name = name
        self.main = main
        self.cond = threading.Condition()
        self.mailbox: deque[Received] = deque()
        self.timers: dict[str, float] = {}
        self.stopped = False
        self.threads: list[threading.Thread] = []
        self.logs: dict[str, _FreeStorage] = {}
        self.listener: socket.socket | None = None
        self.restarts = 0

    def deliver(self, item: Received) -> None:
        with self.cond:
            self.mailbox.append(item)
            self.cond.notify_all()

    def check(self) -> None:
        if self.stopped:
            raise NodeCrashed


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
        trace: TraceLog | None = None,
        limits: ConnectionLimits | None = None,
        max_frame: int | None = None,
        connect_timeout: float = 1.0,
        restart_delay: float = 0.1,
        max_restarts: int = 3,
    ) -> None:
        self.nodes = {name: _FreeNode(self, name, main) for name, main in nodes.items()}
        self.directory = directory
        self.addresses: dict[str, Address] = dict(peers or {})
        self.host = host
        self.ports = dict(ports or {})
        self.trace = trace if trace is not None else TraceLog("unknown")
        chosen = limits if limits is not None else ConnectionLimits()
        #: what each hosted node accepts from its connections (``max_frame=`` is short for
        #: ``limits=ConnectionLimits(max_frame=...)``)
        self.limits = chosen if max_frame is None else chosen.evolve(max_frame=max_frame)
        self.max_frame = self.limits.max_frame
        self.connect_timeout = connect_timeout
        self.restart_delay = restart_delay
        self.max_restarts = max_restarts
        #: the newest ``limits.diagnostics_kept`` notes; ``diagnostics.dropped`` counts older ones
        self.diagnostics = Diagnostics(self.limits.diagnostics_kept)
        self.errors: list[str] = []
        #: crashes a node's own code caused (``Context.crash``): "node: reason", in order
        self.crashes: list[str] = []
        self._lock = threading.Lock()
        self._outgoing: dict[tuple[str, str], socket.socket] = {}
        self._incoming: dict[str, set[socket.socket]] = {name: set() for name in self.nodes}
        #: per hosted node: connections accepted, refused, open, failed accepts...
        self.connection_stats = {name: ConnectionStats() for name in self.nodes}
        self._threads: set[threading.Thread] = set()
        self._stopping = False
        self._stopped = threading.Event()

    # ----------------------------------------------------------- lifecycle

    def listen(self) -> dict[str, Address]:
        """Open every hosted node's listening socket (``start`` does it if needed)
        and return their addresses, to hand to the runtimes hosting the peers."""
        for node in self.nodes.values():
            if node.listener is None:
                listener = socket.create_server((self.host, self.ports.get(node.name, 0)))
                node.listener = listener
                self.addresses[node.name] = listener.getsockname()[:2]
        return {name: self.addresses[name] for name in self.nodes}

    def add_peers(self, peers: Mapping[str, Address]) -> None:
        """Learn where nodes hosted elsewhere listen."""
        with self._lock:
            self.addresses.update({k: v for k, v in peers.items() if k not in self.nodes})

    def start(self) -> None:
        self.listen()
        for node in self.nodes.values():
            self._thread(f"{node.name}.accept", functools.partial(self._accept, node))
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
            if node.listener is not None:
                node.listener.close()
            for log in node.logs.values():
                log.close()
        with self._lock:
            conns = list(self._outgoing.values()) + [c for cs in self._incoming.values() for c in cs]
            self._outgoing.clear()
        for conn in conns:
            _close(conn)
        deadline = time.monotonic() + timeout
        for t in self._all_threads():
            t.join(max(0.0, deadline - time.monotonic()))

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

    def _node_thread(self, node: _FreeNode, name: str, fn: Callable[[], None]) -> None:
        def body() -> None:
            try:
                fn()
            except NodeCrashed:
                pass
            except BaseException as exc:
                with self._lock:
                    self.errors.append(f"{node.name}.{name} raised {exc!r}\n{traceback.format_exc()}")
            finally:
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
            node.mailbox.clear()
            node.timers.clear()
            node.threads = []
            node.stopped = False
        self.note(f"{node.name} restarted")
        self._node_thread(node, "main", functools.partial(node.main, _FreeContext(self, node)))

    # ------------------------------------------------------------ transport

    def _accept(self, node: _FreeNode) -> None:
        """Accept connections until ``stop()``: whatever accept() raises is retried."""
        listener = node.listener
        assert listener is not None
        stats = self.connection_stats[node.name]
        # A blocked accept() is not woken by closing its socket from another
        # thread, so wait in short slices and look at the stop flag between them.
        listener.settimeout(0.1)
        backoff = self.limits.accept_backoff
        while not self._stopping:
            try:
                conn, peer = listener.accept()
            except TimeoutError:
                continue
            except Exception as exc:  # EMFILE, ENFILE, ENOBUFS, ECONNABORTED...
                if self._stopping or listener.fileno() == -1:
                    return  # listener closed by stop()
                with self._lock:
                    stats.accept_errors += 1
                self.note(f"{node.name}: accept failed: {exc}; retrying in {backoff:g} s")
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, self.limits.accept_backoff_max)
                continue
            backoff = self.limits.accept_backoff
            try:
                self._serve(node, conn, peer)
            except Exception as exc:  # e.g. no thread can be started: the connection goes
                _close(conn)
                self._forget(node, conn)
                self.note(f"{node.name}: could not serve a connection from {_show(peer)}: {exc!r}")
                self._stopped.wait(backoff)  # out of threads or memory: let it pass

    def _serve(self, node: _FreeNode, conn: socket.socket, peer: Any) -> None:
        stats = self.connection_stats[node.name]
        with self._lock:
            # stop() sets _stopping, then closes what is in _incoming under this lock:
            # a connection accepted meanwhile is closed here, or by stop()
            if self._stopping:
                _close(conn)
                return
            full = len(self._incoming[node.name]) >= self.limits.max_connections
            if full:
                stats.refused += 1
            else:
                stats.accepted += 1
                self._incoming[node.name].add(conn)
                stats.open = len(self._incoming[node.name])
        if full:
            self.note(
                f"{node.name}: refused a connection from {_show(peer)}: "
                f"{self.limits.max_connections} connections are open"
            )
            _close(conn)
            return
        self._thread(f"{node.name}.read", functools.partial(self._read, node, conn, peer))

    def _deliver(self, node: _FreeNode, item: Received) -> None:
        """Into the mailbox, once it has room: a sender faster than the node waits
        (its frames wait in TCP's buffers, then its sends time out) instead of
        growing the mailbox without bound."""
        with node.cond:
            # the node's thread takes items without notifying: look again in slices
            while len(node.mailbox) >= self.limits.max_mailbox and not self._stopping:
                node.cond.wait(0.05)
            node.mailbox.append(item)
            node.cond.notify_all()

    def _forget(self, node: _FreeNode, conn: socket.socket) -> None:
        with self._lock:
            self._incoming[node.name].discard(conn)
            self.connection_stats[node.name].open = len(self._incoming[node.name])

    def _read(self, node: _FreeNode, conn: socket.socket, peer: Any) -> None:
        stats = self.connection_stats[node.name]
        reader = FrameReader(conn, self.limits)
        try:
            while not self._stopping:
                frame = reader.read()
                if frame is None:
                    return
                src, msg = frame
                self._deliver(node, Envelope(src, msg))
        except FrameError as exc:
            with self._lock:
                stats.rejected += 1
            self.note(f"{node.name}: rejected a frame from {_show(peer)}: {exc}; connection closed")
        except IdleConnection as exc:
            with self._lock:
                stats.idle += 1
            self.note(f"{node.name}: closed an idle connection from {_show(peer)}: {exc}")
        except OSError:
            pass  # reset by the peer, or closed by stop()
        except Exception as exc:  # a bug here must not print a traceback or leak the connection
            self.note(f"{node.name}: reading from {_show(peer)} failed: {exc!r}; connection closed")
        finally:
            _close(conn)
            self._forget(node, conn)

    def send(self, src: str, dst: str, msg: Message) -> None:
        with self._lock:
            address = self.addresses.get(dst)
        if address is None:
            raise ValueError(f"{src} sends to unknown node {dst!r}; known: {', '.join(sorted(self.addresses))}")
        frame = encode_frame(src, dict(msg))
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

    def append(self, record: Mapping[str, Any]) -> None:
        self.node.check()
        with self._lock:
            self.log.append(record)

    def sync(self) -> None:
        self.node.check()
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
        with self.runtime._lock:
            return node in self.runtime.addresses

    def send(self, dst: str, msg: Message) -> None:
        self.node.check()
        self.runtime.send(self.name, dst, msg)

    def receive(self, timeout: float | None = None) -> Received | None:
        node = self.node
        deadline = None if timeout is None else time.monotonic() + timeout
        with node.cond:
            while True:
                node.check()
                now = time.monotonic()
                for name, due in sorted(node.timers.items(), key=lambda kv: kv[1]):
                    if due <= now:
                        del node.timers[name]
                        node.mailbox.append(Timer(name))
                if node.mailbox:
                    return node.mailbox.popleft()
                if deadline is not None and deadline <= now:
                    return None
                waits = [d - now for d in [*node.timers.values(), deadline] if d is not None]
                node.cond.wait(min(waits) if waits else None)

    def set_timer(self, name: str, delay: float) -> None:
        with self.node.cond:
            self.node.check()
            self.node.timers[name] = time.monotonic() + max(delay, 0.0)
            self.node.cond.notify_all()

    def cancel_timer(self, name: str) -> None:
        with self.node.cond:
            self.node.check()
            self.node.timers.pop(name, None)

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
                log = _FreeStorage(self.node, DurableLog(self.runtime.directory / self.name / f"{name}.log"))
                self.node.logs[name] = log
            return log

    def spawn(self, name: str, fn: Callable[[], None]) -> None:
        self.node.check()
        self.runtime._node_thread(self.node, name, fn)

    def record(self, action: Mapping[str, Any], **extra: Any) -> None:
        self.node.check()
        self.runtime.trace.record(self.name, action, **extra)

    def log(self, text: str) -> None:
        self.runtime.note(f"{self.name}: {text}")

    def crash(self, reason: str) -> NoReturn:
        self.node.check()
        self.runtime.crash(self.node, reason)
        raise NodeCrashed
