"""PBFT beside the same key-value store unreplicated: 4 local replicas over TCP with
HMAC'd client requests and batching, against one server doing the same operations.

    .venv/bin/python benchmarks/pbft_kv.py [--clients 1 16] [--seconds 5]
        [--vc-clients 4] [--vc-warmup 1] [--no-view-change] [--max-batch 64] [--window 2]
        [--no-fsync] [--profile]

Issue #18, item 5.  Two systems, each on 127.0.0.1 with its data in a new temporary
directory (a real file system, for the fsyncs to mean something), removed at the end:

- pbft: ``distcheck.impl.pbft.Replica`` r1..r4, each in a process of its own (its
  own ``FreeRuntime``), talking over TCP; replicas sign with Ed25519, clients MAC
  with HMAC-SHA256 (``impl.pbft.auth``); ``Tuning(max_batch=64, window=2,
  checkpoint_interval=64)``; a replica fsyncs every record it persists before it
  sends (per batch: the pre-prepare it accepted, its prepared certificate, the
  committed batch).  The client is ``PbftClient``: it waits for f + 1 = 2 matching
  MAC'd replies.
- unreplicated: one server node (``UnreplicatedServer`` below) in a process of its
  own, on the same runtime over TCP: it takes every request waiting in its mailbox
  (up to ``--max-batch``, as the PBFT primary batches what is pending), checks each
  request's MAC, appends the batch to its log and fsyncs once, applies each
  operation with ``impl.paxos.apply_op`` (the function the replicas execute) and
  answers each client with an HMAC'd ``Reply``.  Durability is thus one fsync per
  batch, where each PBFT replica does three per batch; the messages, MACs, JSON and
  runtime are the same, so the ratio isolates the replication protocol.

Load: clients are nodes of one more ``FreeRuntime`` in this process (one thread
each), each in a closed loop for ``--seconds``: three puts, then a get of the key it
put last, on its own 16 keys with 16-byte values; a get that does not return the
value the client put last counts as inconsistent.  Every client first does one put
untimed.  For each system and number of clients (a fresh cluster each time) the
table gives ops/s, the p50 and p99 latency of one operation, pbft/unrep (the ratio
of the throughputs), the inconsistent reads, the CPU the servers' processes used
per second (in cores) and the CPU of the load generator's process.

Where the time goes: each server process counts and times, in itself, every
Ed25519 signature made and checked, every HMAC made and checked and every fsync
(wall time inside the call, measured with ``perf_counter``), and the messages it
sends; the "per batch", "share" and "why" lines give these per batch of requests,
per request and as shares of each server's time, at the largest number of clients.
The "unit costs" line times the primitives alone on this machine.  ``--profile``
also runs r2 and the unreplicated server under cProfile and prints their top
functions (it slows them: the table is then not comparable).  ``--no-fsync`` makes
both systems write their logs without fsync (unsafe; it shows what is left of the
gap without the disk).

View change: a fresh PBFT cluster with ``--vc-clients`` clients in the same loop;
after ``--vc-warmup`` seconds r1 (the primary of view 0) is SIGKILLed; the time is
from the kill until the first operation *started after the kill* completes (clients
first send to the primary they know, wait ``client_retry`` = 1 s, then send to every
replica; a backup watching a request moves to the next view after
``view_change_ticks`` = 20 ticks of 50 ms).  The views the surviving replicas end in,
when each moved to the new view and entered it (``time.monotonic()``, one clock for
every process on Linux), and the operations completed in the second after recovery
are printed.

The figures are a comparison in one run on this machine (both systems share its
cores with their clients), not capacity.  Benchmarks are not run by CI.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import hmac
import multiprocessing
import multiprocessing.connection
import os
import pstats
import resource
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from distcheck.impl.paxos import apply_op, get, put  # noqa: E402
from distcheck.impl.pbft import NodeKeys, PbftClient, Replica, Timing, Tuning, local_keyring  # noqa: E402
from distcheck.impl.pbft.messages import CLIENT_WIRE, REQUESTS, Reply, Request  # noqa: E402
from distcheck.impl.runtime.actor import MessageError, encode  # noqa: E402
from distcheck.impl.runtime.api import Context, Envelope  # noqa: E402
from distcheck.impl.runtime.free import FreeRuntime  # noqa: E402
from distcheck.impl.runtime.storage import DurableLog  # noqa: E402
from distcheck.impl.runtime.tracelog import TraceLog  # noqa: E402

SYSTEMS = ("pbft", "unreplicated")
REPLICAS = ("r1", "r2", "r3", "r4")
SERVER = "s1"
KEYS_PER_CLIENT = 16
VALUE_BYTES = 16
GET_EVERY = 4  # every 4th operation of a client is a get of the key it put last
START_TIMEOUT = 30.0  # seconds for a server process to listen, or a client's first put
RECOVERY_LIMIT = 60.0  # seconds after the kill before the view change is declared failed
AFTER_RECOVERY = 1.0  # seconds of load counted after the recovery
TIMING = Timing(tick=0.05, view_change_ticks=20, retry_ticks=10, client_retry=1.0)
SPAWN = multiprocessing.get_context("spawn")


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class NoTrace(TraceLog):
    """A benchmark keeps no trace: the replicas' steps would pile up in memory."""

    def __init__(self) -> None:
        super().__init__("pbft")

    def record(self, actor: str, action: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        return {}


# --- measuring inside a server process ---------------------------------------------


class Meter:
    """Counts and seconds (wall time inside the call) per kind of work, and messages sent."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count: dict[str, int] = {}
        self.seconds: dict[str, float] = {}

    def add(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.count[kind] = self.count.get(kind, 0) + 1
            self.seconds[kind] = self.seconds.get(kind, 0.0) + seconds

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"count": dict(self.count), "seconds": dict(self.seconds)}


def instrument(meter: Meter) -> None:
    """Count and time signatures, MACs, fsyncs and sends: in a server process only,
    which hosts one node (the patches are that process's alone)."""

    def timed(owner: Any, attr: str, kind: str) -> None:
        original = getattr(owner, attr)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                meter.add(kind, time.perf_counter() - began)

        setattr(owner, attr, wrapper)

    # The base class's methods: a replica's keys override mac and check_mac and call these.
    timed(NodeKeys, "sign", "ed25519 sign")
    timed(NodeKeys, "verify", "ed25519 verify")
    timed(NodeKeys, "mac", "hmac make")
    timed(NodeKeys, "check_mac", "hmac check")
    timed(DurableLog, "sync", "fsync")
    send = FreeRuntime.send

    def counted_send(self: FreeRuntime, src: str, dst: str, msg: Mapping[str, Any]) -> None:
        kind = str(msg.get("type"))
        if kind == "Signed" and isinstance(msg.get("body"), Mapping):
            kind = str(msg["body"].get("type"))
        began = time.perf_counter()
        try:
            send(self, src, dst, msg)
        finally:
            meter.add("send " + kind, time.perf_counter() - began)

    FreeRuntime.send = counted_send  # type: ignore[method-assign]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the unreplicated server and its client ------------------------------------------


class UnreplicatedServer:
    """The key-value store on one node: per batch of requests taken from the mailbox,
    one append and one fsync, then ``apply_op`` and an HMAC'd reply each (module docstring)."""

    def __init__(self, name: str, keys: NodeKeys, max_batch: int) -> None:
        self.name = name
        self.keys = keys
        self.max_batch = max_batch
        self.data: dict[str, Any] = {}
        self.sessions: dict[str, tuple[int, Any]] = {}
        self.batches = 0
        self.requests = 0

    def main(self, ctx: Context) -> None:
        log = ctx.storage("kv")
        while True:
            items = [ctx.receive()]
            while len(items) < self.max_batch:
                more = ctx.receive(timeout=0)  # what is in the mailbox already: no waiting
                if more is None:
                    break
                items.append(more)
            batch = [r for r in (self._request(ctx, item) for item in items) if r is not None]
            if not batch:
                continue
            log.append({"kind": "batch", "requests": [encode(r) for r in batch]})
            log.sync()
            self.batches += 1
            self.requests += len(batch)
            for req in batch:
                last = self.sessions.get(req.client)
                if last is not None and last[0] >= req.timestamp:
                    if last[0] > req.timestamp:
                        continue  # an old request: executed once
                    result = last[1]
                else:
                    self.data, result = apply_op(self.data, req.op)
                    self.sessions[req.client] = (req.timestamp, result)
                reply = Reply(self.name, 0, req.client, req.timestamp, result, "")
                ctx.send(req.client, encode(attrs.evolve(reply, mac=self.keys.mac(req.client, reply.body()))))

    def _request(self, ctx: Context, item: Any) -> Request | None:
        if not isinstance(item, Envelope):
            return None
        try:
            req: Request = REQUESTS.decode(item.msg)
        except MessageError as exc:
            ctx.log(f"ignored a message from {item.src}: {exc}")
            return None
        if not self.keys.check_mac(req.client, req.body(), req.auth.get(self.name, "")):
            ctx.log(f"ignored a request of {req.client!r} whose MAC does not check")
            return None
        return req


class UnreplicatedClient:
    """Blocking calls on the unreplicated server, with PbftClient's messages and MACs."""

    def __init__(self, ctx: Context, server: str, keys: NodeKeys, retry: float) -> None:
        self.ctx = ctx
        self.server = server
        self.keys = keys
        self.retry = retry
        self.timestamp = 0

    def execute(self, op: Mapping[str, Any]) -> Any:
        self.timestamp = max(self.timestamp + 1, int(self.ctx.now() * 1_000_000))
        body: dict[str, Any] = {"client": self.ctx.name, "timestamp": self.timestamp, "op": dict(op)}
        request = encode(Request(self.ctx.name, self.timestamp, dict(op), self.keys.authenticator([self.server], body)))
        while True:
            self.ctx.send(self.server, request)
            deadline = self.ctx.now() + self.retry
            while (left := deadline - self.ctx.now()) > 0:
                item = self.ctx.receive(timeout=left)
                if not isinstance(item, Envelope):
                    continue
                try:
                    reply: Reply = CLIENT_WIRE.decode(item.msg)
                except MessageError:
                    continue
                if reply.timestamp != self.timestamp or reply.replica != self.server:
                    continue
                if self.keys.check_mac(self.server, reply.body(), reply.mac):
                    return reply.result


# --- a server process ------------------------------------------------------------------


def serve(
    system: str,
    name: str,
    ports: dict[str, int],
    directory: str,
    tuning: Tuning,
    conn: multiprocessing.connection.Connection,
    profile: bool = False,
    fsync: bool = True,
) -> None:
    """One server process: replica ``name`` (pbft) or the server (unreplicated), until
    told to stop.  Answers "report" with what it measured; "stop" with the same, last.
    ``profile``: run the node's thread under cProfile; reports then hold its top functions."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C goes to the parent, which stops us
    meter = Meter()
    instrument(meter)
    replica: Replica | None = None
    server: UnreplicatedServer | None = None
    marks: dict[str, float] = {}  # the first moment a replica moved to a new view, and entered one
    if system == "pbft":
        replica = Replica(name, REPLICAS, local_keyring(REPLICAS).for_replica(name), TIMING, tuning)
        main = replica.main
        mark(replica, "_start_view_change", "view_change_at", marks)
        mark(replica, "_enter_view", "new_view_at", marks)
    else:
        server = UnreplicatedServer(
            name, local_keyring([name], cluster="unreplicated").for_replica(name), tuning.max_batch
        )
        main = server.main
    profiler = cProfile.Profile() if profile else None
    node = main if profiler is None else profiled(main, profiler)
    runtime = FreeRuntime(
        {name: node},
        Path(directory),
        peers={n: ("127.0.0.1", p) for n, p in ports.items() if n != name},
        ports={name: ports[name]},
        trace=NoTrace(),
        max_restarts=0,
        fsync=fsync,
    )
    runtime.start()
    conn.send("ready")
    began = time.monotonic()

    def report() -> dict[str, Any]:
        out: dict[str, Any] = {"name": name, "cpu": cpu_seconds(), "wall": time.monotonic() - began}
        out.update(meter.snapshot())
        out["errors"] = list(runtime.errors) + list(runtime.crashes)
        if replica is not None:
            out.update(view=replica.view, status=replica.status, executed=replica.last_executed, **marks)
        if server is not None:
            out.update(batches=server.batches, requests=server.requests)
        if profiler is not None:
            out["profile"] = top_functions(profiler)
        return out

    while True:
        try:
            command = conn.recv()
        except EOFError:
            break
        conn.send(report())
        if command == "stop":
            break
    runtime.stop()


def mark(replica: Replica, method: str, label: str, marks: dict[str, float]) -> None:
    """Note in ``marks[label]`` the ``time.monotonic()`` (one clock for every process
    on Linux) of the first call of the replica's ``method``."""
    original = getattr(replica, method)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        marks.setdefault(label, time.monotonic())
        return original(*args, **kwargs)

    setattr(replica, method, wrapper)


def profiled(main: Callable[[Context], None], profiler: cProfile.Profile) -> Callable[[Context], None]:
    def run(ctx: Context) -> None:
        profiler.enable()  # on the node's thread: what cProfile sees is that thread
        try:
            main(ctx)
        finally:
            profiler.disable()

    return run


def top_functions(profiler: cProfile.Profile, n: int = 12) -> list[tuple[str, float, int]]:
    """The ``n`` functions with the most time in themselves: (name, seconds, calls)."""
    stats = pstats.Stats(profiler)
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = [
        (f"{Path(file).name}:{line}({function})" if line else function, tottime, calls)
        for (file, line, function), (_, calls, tottime, _, _) in table.items()
    ]
    rows.sort(key=lambda r: -r[1])
    return [(str(name), float(t), int(c)) for name, t, c in rows[:n]]


class Cluster:
    """Server processes of one system, and the client names they know (with ports)."""

    def __init__(
        self, system: str, clients: Sequence[str], tuning: Tuning, profile: Sequence[str] = (), fsync: bool = True
    ) -> None:
        self.profile = set(profile)
        self.fsync = fsync
        self.system = system
        self.servers = list(REPLICAS) if system == "pbft" else [SERVER]
        names = [*self.servers, *clients]
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.tuning = tuning
        self.directory = Path(tempfile.mkdtemp(prefix=f"pbft-kv-{system}-"))
        self.processes: dict[str, multiprocessing.process.BaseProcess] = {}
        self.conns: dict[str, multiprocessing.connection.Connection] = {}
        self.killed: set[str] = set()

    def start(self) -> None:
        for name in self.servers:
            mine, theirs = SPAWN.Pipe()
            directory = str(self.directory / name)
            args = (self.system, name, self.ports, directory, self.tuning, theirs, name in self.profile, self.fsync)
            process = SPAWN.Process(target=serve, args=args, daemon=True, name=f"{self.system}-{name}")
            process.start()
            self.processes[name], self.conns[name] = process, mine
        for name, conn in self.conns.items():
            if not conn.poll(START_TIMEOUT) or conn.recv() != "ready":
                raise RuntimeError(f"server {name} did not start within {START_TIMEOUT:.0f} s")

    def addresses(self) -> dict[str, tuple[str, int]]:
        return {n: ("127.0.0.1", self.ports[n]) for n in self.servers}

    def report(self, command: str = "report") -> dict[str, dict[str, Any]]:
        """What each live server measured so far (``stop``: and stop it)."""
        out: dict[str, dict[str, Any]] = {}
        for name, conn in self.conns.items():
            if name in self.killed:
                continue
            with contextlib.suppress(OSError, EOFError):
                conn.send(command)
                if conn.poll(10.0):
                    out[name] = conn.recv()
        return out

    def kill(self, name: str) -> float:
        """SIGKILL server ``name``; the ``time.monotonic()`` just before."""
        pid = self.processes[name].pid
        assert pid is not None
        self.killed.add(name)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        return killed_at

    def stop(self) -> dict[str, dict[str, Any]]:
        final = self.report("stop")
        for process in self.processes.values():
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
        shutil.rmtree(self.directory, ignore_errors=True)
        return final


# --- the load generator ----------------------------------------------------------------


def key(client: int, n: int) -> str:
    return f"key-{client}-{n % KEYS_PER_CLIENT}"


def value(client: int, n: int) -> str:
    return f"{client}-{n}".ljust(VALUE_BYTES, "x")[:VALUE_BYTES]


@attrs.define
class Op:
    client: str
    kind: str
    began: float
    finished: float
    consistent: bool


class Load:
    """Closed-loop clients: each its own node; they start together and go on until
    ``halt`` is set or ``deadline`` passes; every operation is kept in ``ops``."""

    def __init__(self, system: str, names: Sequence[str], ports: Mapping[str, int]) -> None:
        self.system = system
        self.names = list(names)
        self.ports = {n: ports[n] for n in names}
        self.ring = local_keyring(REPLICAS) if system == "pbft" else local_keyring([SERVER], cluster="unreplicated")
        self.ops: list[Op] = []
        self.guard = threading.Lock()
        self.connected = threading.Barrier(len(self.names) + 1)
        self.go = threading.Event()
        self.halt = threading.Event()
        self.deadline = float("inf")
        self.failures: list[str] = []
        self.runtime: FreeRuntime | None = None
        self.directory = Path(tempfile.mkdtemp(prefix="pbft-kv-clients-"))

    def call(self, ctx: Context, name: str) -> Callable[[Mapping[str, Any]], Any]:
        keys = self.ring.for_client(name)
        if self.system == "pbft":
            return PbftClient(ctx, REPLICAS, keys, None, TIMING.client_retry).execute
        return UnreplicatedClient(ctx, SERVER, keys, TIMING.client_retry).execute

    def client(self, index: int, name: str) -> Callable[[Context], None]:
        def main(ctx: Context) -> None:
            call = self.call(ctx, name)
            try:
                call(put(key(index, 0), value(index, 0)))  # untimed: connections, the first batch
            finally:
                self.connected.wait(START_TIMEOUT)
            self.go.wait()
            last = value(index, 0)
            n = 1
            while not self.halt.is_set() and time.monotonic() < self.deadline:
                began = time.monotonic()
                if n % GET_EVERY == 0:
                    result = call(get(key(index, n - 1)))
                    op = Op(name, "get", began, time.monotonic(), result == last)
                else:
                    last = value(index, n)
                    result = call(put(key(index, n), last))
                    op = Op(name, "put", began, time.monotonic(), result == "ok")
                with self.guard:
                    self.ops.append(op)
                n += 1

        return main

    def start(self, servers: Mapping[str, tuple[str, int]]) -> None:
        nodes = {name: self.client(i, name) for i, name in enumerate(self.names)}
        self.runtime = FreeRuntime(nodes, self.directory, peers=servers, ports=self.ports, trace=NoTrace())
        self.runtime.start()
        try:
            self.connected.wait(START_TIMEOUT)
        except threading.BrokenBarrierError:
            raise RuntimeError(f"the clients' first puts did not complete within {START_TIMEOUT:.0f} s") from None

    def run(self, seconds: float | None) -> float:
        """Let the clients go (for ``seconds``, or until ``halt``); the start time."""
        now = time.monotonic()
        if seconds is not None:
            self.deadline = now + seconds
        self.go.set()
        return now

    def stop(self) -> list[Op]:
        self.halt.set()
        self.go.set()
        if self.runtime is not None:
            # A client blocked on an operation after the deadline is ended by the stop.
            time.sleep(0.05)
            self.runtime.stop(timeout=5.0)
            self.failures = list(self.runtime.errors)
        shutil.rmtree(self.directory, ignore_errors=True)
        with self.guard:
            return list(self.ops)

    def ops_now(self) -> list[Op]:
        with self.guard:
            return list(self.ops)


def client_names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(1, n + 1)]


def difference(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """What a server did between two reports."""
    out: dict[str, Any] = {"cpu": after["cpu"] - before["cpu"], "count": {}, "seconds": {}}
    for what in ("count", "seconds"):
        for kind, total in after[what].items():
            out[what][kind] = total - before[what].get(kind, 0)
    for field in ("executed", "batches", "requests", "view", "status"):
        if field in after:
            out[field] = after[field] - before[field] if field in ("executed", "batches", "requests") else after[field]
    return out


def measure(
    system: str, clients: int, seconds: float, tuning: Tuning, profile: bool = False, fsync: bool = True
) -> dict[str, Any]:
    """One cell: a fresh cluster of ``system``, ``clients`` closed-loop clients for
    ``seconds`` (``profile``: r2, or the unreplicated server, under cProfile;
    ``fsync=False``: the servers' logs are written, never fsynced)."""
    names = client_names("c", clients)
    cluster = Cluster(system, names, tuning, profile=["r2", SERVER] if profile else [], fsync=fsync)
    load = Load(system, names, cluster.ports)
    ops: list[Op] = []
    servers: dict[str, dict[str, Any]] = {}
    try:
        cluster.start()
        load.start(cluster.addresses())
        before = cluster.report()
        cpu_before = cpu_seconds()
        started = load.run(seconds)
        time.sleep(seconds)
        after = cluster.report()
        load_cpu = cpu_seconds() - cpu_before
        servers = {name: difference(before[name], after[name]) for name in after if name in before}
    finally:
        ops = load.stop()
        final = cluster.stop()
    done = [op for op in ops if started <= op.began and op.finished <= started + seconds]
    latencies = [op.finished - op.began for op in done]
    errors = [e for report in final.values() for e in report["errors"]] + load.failures
    return {
        "system": system,
        "clients": clients,
        "seconds": seconds,
        "ops": len(done),
        "ops_per_s": len(done) / seconds,
        "p50_ms": percentile(latencies, 50) * 1000 if latencies else None,
        "p99_ms": percentile(latencies, 99) * 1000 if latencies else None,
        "gets": sum(op.kind == "get" for op in done),
        "inconsistent": sum(not op.consistent for op in ops),
        "server_cpu": sum(s["cpu"] for s in servers.values()) / seconds,
        "load_cpu": load_cpu / seconds,
        "servers": servers,
        "views": {name: report["view"] for name, report in sorted(final.items()) if "view" in report},
        "profile": {name: report["profile"] for name, report in sorted(final.items()) if "profile" in report},
        "errors": errors,
    }


def view_change(clients: int, warmup: float, tuning: Tuning) -> dict[str, Any]:
    """Kill the primary r1 under load: seconds until an operation started after the
    kill completes, the survivors' views, the operations completed after it."""
    names = client_names("v", clients)
    cluster = Cluster("pbft", names, tuning)
    load = Load("pbft", names, cluster.ports)
    recovered: float | None = None
    killed_at = 0.0
    try:
        cluster.start()
        load.start(cluster.addresses())
        load.run(None)
        time.sleep(warmup)
        killed_at = cluster.kill("r1")
        while time.monotonic() - killed_at < RECOVERY_LIMIT:
            after = [op.finished for op in load.ops_now() if op.began >= killed_at]
            if after:
                recovered = min(after)
                break
            time.sleep(0.01)
        if recovered is not None:
            time.sleep(AFTER_RECOVERY)
    finally:
        ops = load.stop()
        final = cluster.stop()
    return {
        "clients": clients,
        "warmup_s": warmup,
        "ops_before_kill": sum(op.finished < killed_at for op in ops),
        "recovery_s": None if recovered is None else recovered - killed_at,
        "ops_after_recovery": 0 if recovered is None else sum(op.finished >= recovered for op in ops),
        "inconsistent": sum(not op.consistent for op in ops),
        "views": {name: report["view"] for name, report in sorted(final.items())},
        "statuses": {name: report["status"] for name, report in sorted(final.items())},
        # seconds after the kill each survivor first moved to a new view, and entered one
        "view_change_s": {
            n: r["view_change_at"] - killed_at for n, r in sorted(final.items()) if "view_change_at" in r
        },
        "new_view_s": {n: r["new_view_at"] - killed_at for n, r in sorted(final.items()) if "new_view_at" in r},
        "errors": [e for report in final.values() for e in report["errors"]] + load.failures,
    }


# --- unit costs and the explanation ------------------------------------------------------


def unit_costs(directory: Path, rounds: int = 300) -> dict[str, float]:
    """Seconds per Ed25519 sign and verify, per HMAC-SHA256, per append+fsync, of a
    message of about a prepare's size, on this machine."""
    message = b"pbft|" + b'{"digest":"0123456789abcdef","sender":"r2","seq":17,"type":"Prepare","view":0}'
    private = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"unit").digest())
    public = private.public_key()
    signature = private.sign(message)
    costs: dict[str, float] = {}
    began = time.perf_counter()
    for _ in range(rounds):
        private.sign(message)
    costs["ed25519 sign"] = (time.perf_counter() - began) / rounds
    began = time.perf_counter()
    for _ in range(rounds):
        public.verify(signature, message)
    costs["ed25519 verify"] = (time.perf_counter() - began) / rounds
    began = time.perf_counter()
    for _ in range(rounds):
        hmac.new(b"k" * 32, message, "sha256").hexdigest()
    costs["hmac"] = (time.perf_counter() - began) / rounds
    log = DurableLog(directory / "unit.log")
    try:
        began = time.perf_counter()
        for i in range(rounds // 10):
            log.append({"kind": "unit", "i": i, "payload": "x" * 200})
            log.sync()
        costs["fsync"] = (time.perf_counter() - began) / (rounds // 10)
    finally:
        log.close()
    return costs


def per_batch(cell: Mapping[str, Any]) -> dict[str, Any]:
    """The servers' counts and seconds per batch (pbft: per replica, averaged) and per operation."""
    servers = list(cell["servers"].values())
    if cell["system"] == "pbft":
        batches = max((s.get("executed", 0) for s in servers), default=0)
    else:
        batches = sum(s.get("batches", 0) for s in servers)
    ops = max(cell["ops"], 1)
    batches = max(batches, 1)
    kinds = sorted({k for s in servers for k in s["count"]})
    count = {k: sum(s["count"].get(k, 0) for s in servers) for k in kinds}
    seconds = {k: sum(s["seconds"].get(k, 0.0) for s in servers) for k in kinds}
    sends = sum(v for k, v in count.items() if k.startswith("send "))
    return {
        "batches": batches,
        "requests_per_batch": ops / batches,
        "per_server_per_batch": {k: count[k] / batches / len(servers) for k in kinds if not k.startswith("send ")},
        "messages_per_batch": sends / batches,
        "cpu_ms_per_op": sum(s["cpu"] for s in servers) / ops * 1000,
        "ms_each": {k: seconds[k] / count[k] * 1000 for k in kinds if count[k] and not k.startswith("send ")},
    }


def explain(cells: Sequence[Mapping[str, Any]], units: Mapping[str, float]) -> list[str]:
    """Lines saying where the gap comes from, from what was measured (at the largest
    number of clients): work per batch and per request, and the share of each
    server's time spent inside fsync, signatures and sends."""
    top = max(c["clients"] for c in cells)
    pb = next((c for c in cells if c["system"] == "pbft" and c["clients"] == top), None)
    un = next((c for c in cells if c["system"] == "unreplicated" and c["clients"] == top), None)
    if pb is None or un is None or not pb["ops"] or not un["ops"]:
        return []
    p, u = per_batch(pb), per_batch(un)
    each, alone = p["per_server_per_batch"], u["per_server_per_batch"]
    p_fsyncs = each.get("fsync", 0.0) / p["requests_per_batch"]  # per request, at each replica
    u_fsyncs = alone.get("fsync", 0.0) / u["requests_per_batch"]
    p_share, u_share = busy(pb), busy(un)
    p_signed = (each.get("ed25519 sign", 0.0) + each.get("ed25519 verify", 0.0)) / p["requests_per_batch"]
    kind, share = next(iter(p_share.items()), ("nothing", 0.0))
    largest = f"{kind}, {share:.0%} of a replica's time (the server: {u_share.get(kind, 0.0):.0%})"
    ratio = pb["ops_per_s"] / un["ops_per_s"]
    return [
        f"per batch at {top} clients: pbft {p['requests_per_batch']:.1f} requests; each replica"
        f" {each.get('ed25519 verify', 0):.1f} Ed25519 checks, {each.get('ed25519 sign', 0):.1f} signatures,"
        f" {each.get('hmac check', 0):.1f} HMAC checks, {each.get('fsync', 0):.1f} fsyncs;"
        f" {p['messages_per_batch']:.0f} messages sent by the replicas | unreplicated"
        f" {u['requests_per_batch']:.1f} requests, {alone.get('fsync', 0):.1f} fsync,"
        f" {u['messages_per_batch']:.0f} messages sent",
        "share of each server's time inside: pbft (mean of the replicas) "
        + ", ".join(f"{k} {v:.0%}" for k, v in p_share.items())
        + " | unreplicated "
        + ", ".join(f"{k} {v:.0%}" for k, v in u_share.items())
        + f" | CPU per operation: pbft {p['cpu_ms_per_op']:.2f} ms (4 replicas), unreplicated"
        f" {u['cpu_ms_per_op']:.2f} ms",
        f"why: at {top} clients pbft runs at {ratio:.2f} of the unreplicated store (Castro and Liskov: BFS within a"
        f" few percent of BFS without replication). Largest measured term: {largest}. Per request each"
        f" replica did {p_fsyncs:.2f} fsyncs (3 records per batch; 4 fsyncs one after another on a batch's path)"
        f" against the server's {u_fsyncs:.2f} ({p_fsyncs / max(u_fsyncs, 1e-9):.1f}x; an fsync took"
        f" {p['ms_each'].get('fsync', 0):.2f} ms in a replica, {units['fsync'] * 1e3:.2f} ms alone),"
        f" {p_signed:.1f} Ed25519 signs and checks (the server none; {units['ed25519 verify'] * 1e6:.0f} us a"
        f" check against {units['hmac'] * 1e6:.1f} us an HMAC: BFS used MACs outside view changes) and"
        f" {p['messages_per_batch'] / p['requests_per_batch']:.1f} messages sent by the replicas against"
        f" {u['messages_per_batch'] / u['requests_per_batch']:.1f}; the 4 replicas used"
        f" {p['cpu_ms_per_op'] / max(u['cpu_ms_per_op'], 1e-9):.1f}x the server's CPU per operation, on 2 cores"
        " shared with the clients.",
    ]


def busy(cell: Mapping[str, Any]) -> dict[str, float]:
    """The share of the cell's wall time a server spent inside each kind of call
    (pbft: the replicas' mean), largest first; sends of every type as one."""
    servers = list(cell["servers"].values())
    totals: dict[str, float] = {}
    for server in servers:
        for kind, seconds in server["seconds"].items():
            name = "sends" if kind.startswith("send ") else kind
            totals[name] = totals.get(name, 0.0) + seconds
    shares = {k: v / cell["seconds"] / max(len(servers), 1) for k, v in totals.items()}
    return dict(sorted(shares.items(), key=lambda kv: -kv[1]))


# --- the run ------------------------------------------------------------------------------


def text(number: float | None, digits: int) -> str:
    return "-" if number is None else f"{number:.{digits}f}"


HEADER = (
    f"{'system':<13} {'clients':>7} {'ops/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'pbft/unrep':>10}"
    f" {'inconsistent':>12} {'server CPU':>10} {'load CPU':>8}"
)


def row(cell: Mapping[str, Any], ratio: float | None) -> str:
    return (
        f"{cell['system']:<13} {cell['clients']:>7} {cell['ops_per_s']:>8.0f} {text(cell['p50_ms'], 2):>8}"
        f" {text(cell['p99_ms'], 2):>8} {text(ratio, 2):>10} {cell['inconsistent']:>12}"
        f" {cell['server_cpu']:>10.2f} {cell['load_cpu']:>8.2f}"
    )


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="benchmarks/pbft_kv.py", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16], help="concurrent clients per cell")
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per cell")
    parser.add_argument("--vc-clients", type=int, default=4, help="clients running while the primary is killed")
    parser.add_argument("--vc-warmup", type=float, default=1.0, help="seconds of load before the primary's kill")
    parser.add_argument("--no-view-change", action="store_true", help="skip the primary's kill")
    parser.add_argument("--max-batch", type=int, default=Tuning().max_batch, help="requests per batch, at most")
    parser.add_argument("--window", type=int, default=Tuning().window, help="PBFT batches in flight, at most")
    parser.add_argument(
        "--no-fsync",
        action="store_true",
        help="both systems write their logs and never fsync (unsafe; shows what is left without the disk)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run r2 and the unreplicated server under cProfile and print their top functions (slows them)",
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.vc_warmup <= 0:
        parser.error("--seconds and --vc-warmup must be positive")
    if any(n < 1 for n in args.clients) or args.vc_clients < 1:
        parser.error("--clients and --vc-clients must be at least 1")
    if args.max_batch < 1 or args.window < 1:
        parser.error("--max-batch and --window must be at least 1")
    tuning = Tuning(max_batch=args.max_batch, window=args.window)
    print(
        f"pbft: 4 replicas (f = 1), one process each, TCP on 127.0.0.1; Ed25519 between replicas, HMAC clients;"
        f" max_batch {tuning.max_batch}, window {tuning.window}, checkpoint every {tuning.checkpoint_interval};"
        f" {'no fsync (--no-fsync)' if args.no_fsync else '3 fsyncs per batch per replica'}",
        flush=True,
    )
    print(
        "unreplicated: 1 server process on the same runtime over TCP; HMAC requests and replies;"
        f" {'no' if args.no_fsync else '1'} fsync per batch taken from its mailbox (at most {tuning.max_batch})",
        flush=True,
    )
    print(
        f"load: closed loop, 3 puts then a get, {args.seconds:g} s per cell, clients on threads of this process;"
        f" {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start",
        flush=True,
    )
    scratch = Path(tempfile.mkdtemp(prefix="pbft-kv-unit-"))
    try:
        units = unit_costs(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        "unit costs: " + ", ".join(f"{k} {v * 1e6:.1f} us" for k, v in units.items()) + " (each alone, this machine)",
        flush=True,
    )
    print(HEADER, flush=True)
    cells: list[dict[str, Any]] = []
    for n in args.clients:
        pair = [measure(system, n, args.seconds, tuning, args.profile, not args.no_fsync) for system in SYSTEMS]
        cells += pair
        ratio = pair[0]["ops_per_s"] / pair[1]["ops_per_s"] if pair[1]["ops_per_s"] else None
        print(row(pair[0], ratio), flush=True)
        print(row(pair[1], None), flush=True)
        moved = {name: view for name, view in pair[0]["views"].items() if view}
        if moved:
            print(f"pbft: replicas changed view during the cell: {moved}", flush=True)
        for cell in pair:
            if cell["errors"]:
                print(f"{cell['system']}: {len(cell['errors'])} errors; the first: {cell['errors'][0]}", flush=True)
    for line in explain(cells, units):
        print(line, flush=True)
    print(f"load average at the end of the cells: {os.getloadavg()[0]:.2f}", flush=True)
    if args.profile:
        top = max(args.clients)
        for cell in cells:
            for name, functions in cell["profile"].items() if cell["clients"] == top else ():
                busy = cell["servers"][name]["cpu"] if name in cell["servers"] else 0.0
                print(f"profile of {name} ({cell['system']}, {top} clients; its process used {busy:.2f} s CPU):")
                for function, seconds, calls in functions:
                    print(f"  {seconds:8.3f} s {calls:>9} calls  {function}")
    if not args.no_view_change:
        vc = view_change(args.vc_clients, args.vc_warmup, tuning)
        views = ", ".join(f"{n} {v} ({vc['statuses'][n]})" for n, v in vc["views"].items())
        if vc["recovery_s"] is None:
            print(f"view change: no operation completed within {RECOVERY_LIMIT:.0f} s of r1's kill; views: {views}")
        else:
            print(
                f"view change: r1 (primary) SIGKILLed after {vc['warmup_s']:g} s under {vc['clients']} clients"
                f" ({vc['ops_before_kill']} ops); first operation started after the kill completed"
                f" {vc['recovery_s'] * 1000:.0f} ms after it; views: {views};"
                f" {vc['ops_after_recovery']} ops in the {AFTER_RECOVERY:g} s after; inconsistent reads"
                f" {vc['inconsistent']}",
                flush=True,
            )
        started = ", ".join(f"{n} {s * 1000:.0f} ms" for n, s in vc["view_change_s"].items())
        entered = ", ".join(f"{n} {s * 1000:.0f} ms" for n, s in vc["new_view_s"].items())
        print(f"view change: after the kill, replicas moved to a new view at: {started}; entered it at: {entered}")
        if vc["errors"]:
            print(f"view change: {len(vc['errors'])} errors; the first: {vc['errors'][0]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
