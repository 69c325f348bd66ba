"""One Raft server as its own process: ``python -m distcheck.impl.raft.server``.

Where it sits: the host around a ``RaftNode`` (``impl.raft.node``).  The node runs
in a ``FreeRuntime`` (``impl.runtime.free``) and talks to the other servers over the
runtime's TCP, on the address the cluster list gives it.  Clients talk to a
separate **client port** (by default the peer port + 1000; ``--client-port``), the
runtime's ``ClientPort`` for this node: frames of the runtime's format (4-byte
length, JSON ``{"src": client id, "msg": {...}}``) carrying ``Command``, ``Query``
or ``Status`` (``impl.raft.messages``), answered on the same connection with
``Reply`` or ``StatusReply``.  The node's own thread reads the client connections
and answers on them, as it does for its peers: no thread stands between a client
and the protocol.

    python -m distcheck.impl.raft.server --name n1 \\
        --cluster n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003 --data /var/lib/raft/n1

Observability (``impl.telemetry``, with the ``telemetry`` extra installed):
``--spans FILE`` writes the spans of the traced requests this server handles as JSON
lines (``distcheck show FILE`` draws them), ``--metrics-port PORT`` serves its
metrics in Prometheus's format at ``http://HOST:PORT/metrics`` (0: a free port; the
address is printed), ``--log-json FILE`` logs its steps with term and trace id.

Bad arguments: one line on stderr and exit status 2.  SIGTERM or SIGINT stops the
server (exit 0); what it acknowledged is on disk (``--data``), and starting it
again over the same directory recovers it.
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from distcheck.impl.raft.client import parse_cluster
from distcheck.impl.raft.messages import CLIENT_REQUESTS
from distcheck.impl.raft.node import RaftNode, RaftOptions, Timing
from distcheck.impl.runtime.free import ClientPort, FreeRuntime
from distcheck.impl.runtime.tcp import ConnectionLimits
from distcheck.impl.runtime.tracelog import TraceLog
from distcheck.impl.telemetry import Telemetry, install

CLIENT_PORT_OFFSET = 1000
#: client connections open at once, at most
MAX_CLIENTS = 4096
#: seconds between two moves of long-lived objects out of the garbage collector's generations
GC_PERIOD = 1.0
#: bytes: the largest message between servers (an AppendEntries batch, a snapshot)
MAX_FRAME = 256 << 20


class NoTrace(TraceLog):
    """A long-running server keeps no trace in memory unless asked to (``--trace``)."""

    def __init__(self) -> None:
        super().__init__("raft")

    def record(self, actor: str, action: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        return {}


def client_port(servers: Sequence[str], port: int) -> ClientPort:
    """The client port's rules: client requests only (``Command``, ``Query``,
    ``Status``), from a sender that is not one of the servers (a client that names
    itself after a server could get that server's answers); anything else closes
    the connection."""
    names = frozenset(servers)

    def admit(src: str, msg: Mapping[str, Any]) -> bool:
        return msg.get("type") in CLIENT_REQUESTS.kinds and src not in names

    return ClientPort(port, ConnectionLimits(max_connections=MAX_CLIENTS), admit)


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
        "--unsafe-no-fsync",
        action="store_true",
        help="never fsync: a power cut may lose acknowledged writes (a killed process does not); for comparisons only",
    )
    p.add_argument(
        "--trace", help="write this server's trace to this file (JSON Lines) when it stops; {name}: the server's name"
    )
    p.add_argument("--spans", help="write the spans of traced requests to this file (JSON Lines); {name}: as above")
    p.add_argument(
        "--metrics-port", type=int, help="serve metrics in Prometheus's format on this port (0: a free one; printed)"
    )
    p.add_argument("--log-json", help="log every step as a JSON line (node, term, trace id) to this file; {name}")
    return p


def telemetry_from(args: argparse.Namespace, p: argparse.ArgumentParser) -> Telemetry | None:
    """The telemetry the observability flags ask for (None: none asked), or exit 2
    when they need OpenTelemetry and it is not installed."""
    if args.spans is None and args.metrics_port is None and args.log_json is None:
        return None
    if args.metrics_port is not None and not 0 <= args.metrics_port < 65536:
        p.error(f"--metrics-port {args.metrics_port} is not a port")
    try:
        from distcheck.impl.telemetry.otel import OpenTelemetry
    except ImportError as exc:
        p.error(str(exc))

    def path(template: str | None) -> Path | None:
        return None if template is None else Path(template.replace("{name}", args.name))

    host = parse_cluster(args.cluster)[args.name][0]
    try:
        return OpenTelemetry(
            f"raft-{args.name}",
            spans=path(args.spans),
            metrics_port=args.metrics_port,
            metrics_host=host,
            logs=path(args.log_json),
        )
    except OSError as exc:
        print(f"{p.prog}: cannot start telemetry: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


#: builds the server's node: ``(name, servers, timing, options, members=..., trace=...)``
NodeFactory = Callable[..., RaftNode]


def main(argv: Sequence[str] | None = None, *, make_node: NodeFactory = RaftNode, prog: str | None = None) -> int:
    """Run one server until SIGTERM or SIGINT.  ``make_node`` builds its node: a
    service that replicates another state machine on Raft (``impl.lock.replicated``)
    runs its servers through this same host."""
    p = parser()
    if prog is not None:
        p.prog = prog
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
        client_port_number = args.client_port if args.client_port is not None else port + CLIENT_PORT_OFFSET
        if not 0 <= client_port_number < 65536:
            raise ValueError(f"--client-port {client_port_number} is not a port")
    except ValueError as exc:
        p.error(str(exc))
    try:
        args.data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"{p.prog}: cannot start: {exc}", file=sys.stderr)
        return 1
    telemetry = telemetry_from(args, p)
    if telemetry is not None:
        install(telemetry)
        url = getattr(telemetry, "metrics_url", None)
        if url is not None:
            print(f"{args.name} metrics on {url}", flush=True)
    # steps are recorded for a trace file, or for the JSON log
    steps = args.trace is not None or args.log_json is not None
    node = make_node(args.name, list(cluster), timing, options, members=members, trace=steps)
    trace: TraceLog = TraceLog("raft") if args.trace else NoTrace()
    runtime = FreeRuntime(
        {args.name: node.main},
        args.data,
        peers={k: v for k, v in cluster.items() if k != args.name},
        host=host,
        ports={args.name: port},
        client_ports={args.name: client_port(list(cluster), client_port_number)},
        trace=trace,
        # batches of entries and snapshots travel in one frame each
        limits=ConnectionLimits(max_frame=MAX_FRAME),
        max_restarts=100,
        fsync=not args.unsafe_no_fsync,
    )
    try:
        runtime.listen()
    except OSError as exc:
        runtime.stop()
        print(f"{p.prog}: cannot listen on {host}:{port} and {client_port_number}: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    runtime.start()
    clients = runtime.client_addresses[args.name]
    print(f"{args.name} serving peers on {host}:{port}, clients on {clients[0]}:{clients[1]}", flush=True)
    while not done.wait(GC_PERIOD):
        # The log and the store are long-lived objects by the million: a full garbage
        # collection that scans them all pauses every thread for 100 ms and more.
        # Move what survived the last period out of the collector's sight (reference
        # counting still frees it; only a cycle among these objects would stay).
        gc.collect(1)
        gc.freeze()
    runtime.stop()
    if telemetry is not None:
        telemetry.close()
    if args.trace:
        trace.write(Path(args.trace.replace("{name}", args.name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
