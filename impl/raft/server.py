"""One Raft server as its own process: ``python -m distcheck.impl.raft.server``.

Where it sits: the host around a ``RaftNode`` (``impl.raft.node``).  The node runs
in a ``FreeRuntime`` (``impl.runtime.free``) and talks to the other servers over the
runtime's TCP, on the address the cluster list gives it.  Clients talk to a
separate **client port** (by default the peer port + 1000; ``--client-port``):
frames of the runtime's format (4-byte length, JSON ``{"src": client id, "msg":
{...}}``) carrying ``Command``, ``Query`` or ``Status`` (``impl.raft.messages``),
answered on the same connection with ``Reply`` or ``StatusReply``.  Inside the
process a gateway node (``<name>.clients``) passes requests to the Raft node and
its answers back to the connection they came from (the ``route`` field).

    python -m distcheck.impl.raft.server --name n1 \\
        --cluster n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003 --data /var/lib/raft/n1

Bad arguments: one line on stderr and exit status 2.  SIGTERM or SIGINT stops the
server (exit 0); what it acknowledged is on disk (``--data``), and starting it
again over the same directory recovers it.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import selectors
import signal
import socket
import struct
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from distcheck.impl.raft.client import Address, parse_cluster
from distcheck.impl.raft.messages import CLIENT_REQUESTS, Requests
from distcheck.impl.raft.node import RaftNode, RaftOptions, Timing
from distcheck.impl.runtime.actor import encode
from distcheck.impl.runtime.api import Context, Envelope
from distcheck.impl.runtime.free import FreeRuntime
from distcheck.impl.runtime.tcp import ConnectionLimits, FrameError, decode_frame, encode_frame
from distcheck.impl.runtime.tracelog import TraceLog

CLIENT_PORT_OFFSET = 1000
_LENGTH = struct.Struct(">I")
#: seconds a thread may hold the GIL while another waits for it (Python's default: 0.005)
SWITCH_INTERVAL = 0.0005
#: seconds between two moves of long-lived objects out of the garbage collector's generations
GC_PERIOD = 1.0
#: bytes: the largest message between servers (an AppendEntries batch, a snapshot)
MAX_FRAME = 256 << 20
#: requests forwarded to the node in one message, at most
FORWARD_BATCH = 256


class NoTrace(TraceLog):
    """A long-running server keeps no trace in memory unless asked to (``--trace``)."""

    def __init__(self) -> None:
        super().__init__("raft")

    def record(self, actor: str, action: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        return {}


class Gateway:
    """The client port: connections in, requests to the node, answers back.  Its
    ``main`` is a runtime node (``<name>.clients``): one thread of it serves every
    client connection with a selector and forwards what the connections sent since
    it last looked as one message (``Requests``); the main thread routes the node's
    answers to the connections they belong to (``route``)."""

    def __init__(self, node: str, host: str, port: int, limits: ConnectionLimits) -> None:
        self.node = node
        self.name = f"{node}.clients"
        self.limits = limits
        self.listener = socket.create_server((host, port))
        self.listener.setblocking(False)
        self.address: Address = self.listener.getsockname()[:2]
        self.conns: dict[str, socket.socket] = {}
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()
        self.listener.close()
        with self.lock:
            for conn in self.conns.values():
                conn.close()
            self.conns.clear()

    def main(self, ctx: Context) -> None:
        ctx.spawn("serve", lambda: self._serve(ctx))
        while True:
            item = ctx.receive()
            if not isinstance(item, Envelope):
                continue
            items = item.msg.get("items") if item.msg.get("type") == "Replies" else [item.msg]
            for answer in items if isinstance(items, list) else []:
                if isinstance(answer, dict):
                    self._answer(answer)

    def _answer(self, answer: dict[str, Any]) -> None:
        route = answer.get("route")
        with self.lock:
            conn = self.conns.get(route) if isinstance(route, str) else None
        if conn is None:
            return  # the client went away
        try:
            conn.sendall(encode_frame(self.node, answer))
        except OSError:
            self._drop(str(route), conn)

    def _serve(self, ctx: Context) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ, None)
        buffers: dict[str, bytearray] = {}
        try:
            while not self.stopping.is_set():
                ready = selector.select(timeout=0.2)
                if not ready:
                    ctx.yield_now()  # notices a stopped runtime (NodeCrashed)
                    continue
                batch: list[dict[str, Any]] = []
                for key, _ in ready:
                    if key.data is None:
                        self._accept(selector, buffers)
                    else:
                        self._read(selector, key.data, key.fileobj, buffers, batch)  # type: ignore[arg-type]
                for start in range(0, len(batch), FORWARD_BATCH):
                    part = batch[start : start + FORWARD_BATCH]
                    ctx.send(self.node, part[0] if len(part) == 1 else encode(Requests(tuple(part))))
        finally:
            selector.close()

    def _accept(self, selector: selectors.BaseSelector, buffers: dict[str, bytearray]) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return  # another accept took it
        except OSError:
            # Out of descriptors (or closed by stop): the listener stays readable, so
            # wait a little instead of spinning; the client tries again.
            self.stopping.wait(0.05)
            return
        with self.lock:
            if len(self.conns) >= self.limits.max_connections:
                conn.close()
                return
            route = f"c{next(self.ids)}"
            self.conns[route] = conn
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(self.limits.frame_deadline)  # answers: a client that does not read is dropped
        buffers[route] = bytearray()
        selector.register(conn, selectors.EVENT_READ, route)

    def _read(
        self,
        selector: selectors.BaseSelector,
        route: str,
        conn: socket.socket,
        buffers: dict[str, bytearray],
        batch: list[dict[str, Any]],
    ) -> None:
        buffer = buffers[route]
        try:
            data = conn.recv(1 << 16)
        except OSError:
            data = b""
        ok = bool(data)
        buffer += data
        while ok and len(buffer) >= 4:
            (length,) = _LENGTH.unpack_from(buffer)
            if length > self.limits.max_frame:
                ok = False
                break
            if len(buffer) < 4 + length:
                break
            payload = bytes(buffer[4 : 4 + length])
            del buffer[: 4 + length]
            try:
                msg = decode_frame(payload, self.limits.max_depth)[1]
            except FrameError:
                ok = False
                break
            if msg.get("type") not in CLIENT_REQUESTS.kinds:
                ok = False  # not a client of ours: hang up (the node checks the rest)
                break
            msg["route"] = route
            batch.append(msg)
        if not ok:
            selector.unregister(conn)
            del buffers[route]
            self._drop(route, conn)

    def _drop(self, route: str, conn: socket.socket) -> None:
        with self.lock:
            if self.conns.get(route) is conn:
                del self.conns[route]
        conn.close()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m distcheck.impl.raft.server", description="Run one server of a Raft KV cluster.")
    p.add_argument("--name", required=True, help="this server's name, as in --cluster")
    p.add_argument("--cluster", required=True, help="every server: n1=HOST:PORT,n2=HOST:PORT,... (peer ports)")
    p.add_argument(
        "--members",
        help="the servers of --cluster that vote at first, n1,n2,... (default: all; the others wait to be added)",
    )
    p.add_argument("--data", required=True, type=Path, help="directory for this server's durable state")
    p.add_argument("--client-port", type=int, help=f"port for clients (default: peer port + {CLIENT_PORT_OFFSET})")
    p.add_argument("--heartbeat", type=float, default=Timing().heartbeat, help="seconds between heartbeats")
    p.add_argument(
        "--election-timeout", type=float, default=Timing().election_timeout, help="seconds (randomized up to twice)"
    )
    p.add_argument("--max-batch", type=int, default=RaftOptions().max_batch, help="entries per write and request")
    p.add_argument("--no-pipeline", action="store_true", help="wait for each AppendEntries answer")
    p.add_argument("--no-pre-vote", action="store_true")
    p.add_argument("--no-check-quorum", action="store_true")
    p.add_argument("--snapshot-every", type=int, default=RaftOptions().snapshot_every, help="entries (0: never)")
    p.add_argument(
        "--trace", help="write this server's trace to this file (JSON Lines) when it stops; {name}: the server's name"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        cluster = parse_cluster(args.cluster)
        if args.name not in cluster:
            raise ValueError(f"--name {args.name!r} is not in --cluster (servers: {', '.join(cluster)})")
        members = list(cluster) if args.members is None else [m.strip() for m in args.members.split(",")]
        unknown = [m for m in members if m not in cluster]
        if unknown or not members or len(set(members)) != len(members):
            raise ValueError(f"--members must name servers of --cluster, each once; got {args.members!r}")
        timing = Timing(heartbeat=args.heartbeat, election_timeout=args.election_timeout)
        options = RaftOptions(
            max_batch=args.max_batch,
            pipeline=not args.no_pipeline,
            pre_vote=not args.no_pre_vote,
            check_quorum=not args.no_check_quorum,
            snapshot_every=args.snapshot_every,
        )
        if args.heartbeat <= 0 or args.election_timeout <= args.heartbeat:
            raise ValueError("--election-timeout must be longer than --heartbeat, and both positive")
        host, port = cluster[args.name]
        client_port = args.client_port if args.client_port is not None else port + CLIENT_PORT_OFFSET
        if not 0 <= client_port < 65536:
            raise ValueError(f"--client-port {client_port} is not a port")
    except ValueError as exc:
        p.error(str(exc))
    try:
        args.data.mkdir(parents=True, exist_ok=True)
        gateway = Gateway(args.name, host, client_port, ConnectionLimits(max_connections=4096))
    except OSError as exc:
        print(f"{p.prog}: cannot start: {exc}", file=sys.stderr)
        return 1
    # Every request crosses several threads of this process (connection reader,
    # forwarder, the node); each hand-over waits for the GIL, by default up to 5 ms.
    sys.setswitchinterval(SWITCH_INTERVAL)
    node = RaftNode(args.name, list(cluster), timing, options, members=members, trace=args.trace is not None)
    trace: TraceLog = TraceLog("raft") if args.trace else NoTrace()
    runtime = FreeRuntime(
        {args.name: node.main, gateway.name: gateway.main},
        args.data,
        peers={k: v for k, v in cluster.items() if k != args.name},
        host=host,
        ports={args.name: port},
        trace=trace,
        # batches of entries and snapshots travel in one frame each
        limits=ConnectionLimits(max_frame=MAX_FRAME),
        max_restarts=100,
    )
    try:
        runtime.listen()
    except OSError as exc:
        gateway.stop()
        print(f"{p.prog}: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    runtime.start()
    print(
        f"{args.name} serving peers on {host}:{port}, clients on {gateway.address[0]}:{gateway.address[1]}", flush=True
    )
    while not done.wait(GC_PERIOD):
        # The log and the store are long-lived objects by the million: a full garbage
        # collection that scans them all pauses every thread for 100 ms and more.
        # Move what survived the last period out of the collector's sight (reference
        # counting still frees it; only a cycle among these objects would stay).
        gc.collect(1)
        gc.freeze()
    gateway.stop()
    runtime.stop()
    if args.trace:
        trace.write(Path(args.trace.replace("{name}", args.name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
