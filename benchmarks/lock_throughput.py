"""Lock services' throughput, latency and failover on loopback: distcheck's lock
server, its replicated lock service on Raft, Redis (two persistence settings) and
etcd's lock, side by side in one run.

    .venv/bin/python benchmarks/lock_throughput.py [--seconds 3] [--threads 1 8 32]
        [--dir DIR] [--no-failover] [--failover-rounds 3]
        [--peers single raft3 redis-always redis-default etcd] [--profile DIR]

Throughput.  For each service and each number of contending clients (``--threads``),
every client repeatedly acquires one shared lock and releases it (one operation),
for ``--seconds``; an operation counts when it completes within that window (each
client first connects, untimed).  The table gives operations per second, the p50 and
p99 latency of one operation, and the CPU used per second of the window, in cores:
by this process (the clients; for the single server, the server too) and by the
service's processes (all of them, and the busiest one).  A second table gives the
throughput ratio ours/peer, for the single server and for the replicated service,
against every peer measured; then the issue's targets (#23) are checked: at 1
client ours >= 0.5x Redis with ``appendfsync always``, at 32 clients ours ahead of
every peer, and failover under lease ttl + one election timeout.  Clients are
threads of this process (one connection each), the same for every service; the
machine these figures come from has 2 cores shared by the servers and the clients,
so the figures are a comparison made in one run, not capacity.

The services, as this script runs them (each one alone, started before its cells
and stopped after them; every lease asks for a 5 s ttl):

- ours single (``single``): a ``LockServer`` (tick 0.1 s, its log fsynced once per
  batch of requests) in a ``FreeRuntime`` in this process, one runtime node per
  client (each with its own TCP endpoint and session; a lock client owns its
  node's mailbox), over TCP on 127.0.0.1.
- ours 3-node replicated (``raft3``): three ``python -m
  distcheck.impl.lock.replicated_server`` processes (``LocalCluster``), with
  impl/raft's default timing (``Timing()``: heartbeat 0.05 s, election timeout
  0.4 s, randomized up to twice that), the Raft log fsynced before it is
  acknowledged; one ``ReplicatedLockClient`` per client thread, with its default
  timing (a waiter's look at its queued request is held by the leader up to 0.25 s
  and answered as soon as the lock is handed over), sending to the leader.
- Redis ``appendfsync always`` (``redis-always``): Debian's ``redis-server``,
  started with ``--appendonly yes --appendfsync always`` (every write is in the AOF,
  fsynced, before Redis answers; the RDB save points stay the default).
- Redis default (``redis-default``): the same server with no persistence flag:
  Debian's default persistence, RDB snapshots (``save 3600 1 300 100 60 10000``,
  as /etc/redis/redis.conf leaves them) and no AOF: an acknowledged lock can be
  lost with the process.  For both Redis peers, one ``redis.lock.Lock`` per
  operation (``SET NX PX``, then a Lua release), one connection per client thread,
  ``sleep=0.001`` between tries (its default 0.1 s would measure the sleep).
- etcd (``etcd``): Debian's ``etcd-server`` (3.4), three members on 127.0.0.1
  started by this script (``--initial-cluster``, free ports, temporary data dirs,
  ``--heartbeat-interval 50 --election-timeout 400``, the same as ours; the WAL
  fsynced on every commit, as by default), through its v3 JSON gateway over HTTP
  with ``http.client``, one keep-alive connection per client thread, to the leader
  (from ``/v3/maintenance/status``; Go's clientv3 would spread clients over the
  members, adding a follower's hop).  As Go's ``concurrency.Session`` does, each
  client holds one lease (``/v3/lease/grant``, kept alive with
  ``/v3/lease/keepalive`` every third of its ttl on a thread and connection of
  its own); an operation is ``/v3/lock/lock`` (the lock's name and the lease, in
  base64 as the gateway takes keys) and ``/v3/lock/unlock`` with the key it got.
  The key is ``name/<lease in hex>``; the fencing token is the lease with that key's
  create revision (which orders the holders; storage compares it in a transaction).
  The script does not read the revision: that would be a third request.
  A failed request (a killed member, no leader) is sent again to the next member
  after 25 ms; a lock asked again with the same lease is the same key, so retrying
  is safe.

Everything the services write (our logs, Redis's AOF and RDB, etcd's data dirs) and
their output go to one temporary directory under ``--dir`` (default /dev/shm when
it exists, where fsync is cheap; a directory on a real disk shows what the fsyncs
cost), named at the start with its file system, and removed at the end.

Failover (``--failover``, the default; ``--no-failover`` skips it), for ours 3-node
and etcd 3-member: a fresh cluster per round, 4 clients contending on one lock
with a lease ttl of 2 s, and once 20 locks were granted the leader is SIGKILLed
(ours: ``LocalCluster.leader()``, from the servers' status; etcd: the member every
live member names as leader in ``/v3/maintenance/status``).  Two times from the
kill, each round: to the first grant a client saw, and to the first hand-over (the
first grant seen after a release that completed after the kill).  The first may be
a grant the old leader made before it died, seen late; the
second is the lock going from one client to another under the new leader, and is
the one compared with the bound.  Answers seen within 50 ms of the process's death
are taken for the old leader's and not counted.  Each of ``--failover-rounds``
rounds is printed, and the medians, beside the bound: the lease ttl + one election
timeout (ours 0.4 s, from impl/raft's ``Timing()``; etcd 0.4 s, its
``--election-timeout`` set above; both randomized in [t, 2t)).  By design, ours'
hand-over cannot beat that bound: a new leader grants nothing until ttl x (1 +
max_drift) = 2.2 s after it took over (impl/lock/replicated.py, its waiting rule),
and it takes over an election timeout or more after the last heartbeat.  etcd
keeps leases across a leader change (the new leader extends them), so its clients
go on once a leader is elected.  During failover rounds an etcd request is given
up after 0.5 s and sent to the next member, as ours' client does (its
``ReplicatedTiming`` waits 0.5 s for one server): a request a follower forwarded to
the dead leader would otherwise wait for etcd's own request timeout (5 s + 2
election timeouts), as a clientv3 call without a deadline does.

``--profile DIR`` samples the replicated service's leader with py-spy (when
``py-spy`` is on PATH) during each of its throughput cells, writes the samples to
DIR (py-spy's raw, collapsed-stack format) and prints the functions most often on
top of the stack, and the Raft, lock and log functions most often in it.

A missing component (redis-server, the redis package, etcd) is said in one line and
the rest is measured.  Bad arguments: one line and exit status 2.  Every process
started here is stopped, and the temporary directory removed, on exit, on an
error and on Ctrl-C or SIGTERM.  Benchmarks are not run by CI.
"""

from __future__ import annotations

import argparse
import base64
import collections
import functools
import http.client
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NamedTuple, NoReturn, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from distcheck.impl.lock import ClientTiming, LockClient, LockServer, ReplicatedLockClient, ReplicatedTiming
from distcheck.impl.lock.replicated import read_key
from distcheck.impl.raft.cluster import LocalCluster
from distcheck.impl.raft.node import Timing as RaftTiming
from distcheck.impl.runtime import Context, FreeRuntime

PEERS = ("single", "raft3", "redis-always", "redis-default", "etcd")
LABELS = {
    "single": "ours single",
    "raft3": "ours raft x3",
    "redis-always": "redis always",
    "redis-default": "redis default",
    "etcd": "etcd x3",
}
OURS = ("single", "raft3")
TTL = 5.0  # seconds: the lease every throughput operation asks for
LOCK_TIMEOUT = 60.0  # seconds a client waits for one lock before giving up
START_TIMEOUT = 30.0  # seconds for a service to start and its clients to connect
RAFT = RaftTiming()  # ours: heartbeat and election timeout (impl/raft's defaults)
FAILOVER_CLIENTS = 4
FAILOVER_TTL = 2.0  # seconds: the leases during a failover round
FAILOVER_WARMUP = 20  # locks granted before the kill
FAILOVER_LIMIT = 60.0  # seconds after the kill without a grant: the round failed
STALE_GRACE = 0.05  # seconds after the leader's death in which a grant is the old leader's reply
ETCD_RETRY = 0.025  # seconds before a failed etcd request is sent again (clientv3's backoff)
#: seconds an etcd request may take in a failover round before it is sent to the next
#: member: as long as ours' client waits for one server (ReplicatedTiming's raft attempt)
ETCD_FAILOVER_ATTEMPT = ReplicatedTiming().raft.attempt
Address = tuple[str, int]


class Stats(NamedTuple):
    ops: float  # per second
    p50: float  # ms
    p99: float  # ms
    errors: int
    first_error: str
    client_cpu: float  # cores
    server_cpu: float | None  # cores, all the service's processes
    busiest_cpu: float | None  # cores, its busiest process


class Contender(Protocol):
    """One client of a lock service, used by one thread."""

    def lock_once(self) -> float:
        """Acquire the lock and release it; when it was granted (``time.monotonic()``)."""
        ...

    def close(self) -> None: ...


# --- measuring ------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def this_process_cpu() -> float:
    times = os.times()
    return times.user + times.system


class Window:
    """One measuring window shared by a cell's clients: each client's thread runs
    ``client``; the main thread runs ``measure``."""

    def __init__(self, clients: int, seconds: float) -> None:
        self.clients = clients
        self.seconds = seconds
        self.ready = threading.Semaphore(0)
        self.go = threading.Event()
        self.done = threading.Event()
        self.finished = threading.Semaphore(0)
        self.end = math.inf
        self.guard = threading.Lock()
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def _error(self, exc: BaseException) -> None:
        with self.guard:
            self.errors.append(f"{type(exc).__name__}: {exc}".splitlines()[0][:160])

    def client(self, setup: Callable[[], Contender]) -> None:
        contender: Contender | None = None
        mine: list[float] = []
        try:
            try:
                contender = setup()
            except Exception as exc:
                self._error(exc)
                return
            finally:
                self.ready.release()
            self.go.wait()
            while not self.done.is_set():
                began = time.perf_counter()
                try:
                    contender.lock_once()
                except Exception as exc:
                    self._error(exc)
                    time.sleep(0.01)
                    continue
                ended = time.perf_counter()
                if ended > self.end:
                    break
                mine.append(ended - began)
        finally:
            with self.guard:
                self.latencies.extend(mine)
            if contender is not None:
                try:
                    contender.close()
                except Exception:
                    pass
            self.finished.release()

    def measure(self, pids: Sequence[int] = (), on_start: Callable[[], None] | None = None) -> Stats:
        for _ in range(self.clients):
            if not self.ready.acquire(timeout=START_TIMEOUT):
                raise RuntimeError(f"the clients did not connect within {START_TIMEOUT:g} s")
        mine, theirs = this_process_cpu(), {pid: cpu_seconds(pid) for pid in pids}
        if on_start is not None:
            on_start()
        began = time.perf_counter()
        self.end = began + self.seconds
        self.go.set()
        time.sleep(self.seconds)
        elapsed = time.perf_counter() - began
        mine = (this_process_cpu() - mine) / elapsed
        used = [(cpu_seconds(pid) - before) / elapsed for pid, before in theirs.items()]
        self.done.set()
        for _ in range(self.clients):
            if not self.finished.acquire(timeout=LOCK_TIMEOUT + 10):
                break  # a client stuck in a call: its thread is a daemon
        with self.guard:
            latencies, errors = list(self.latencies), list(self.errors)
        return Stats(
            len(latencies) / self.seconds,
            percentile(latencies, 50) * 1000 if latencies else math.nan,
            percentile(latencies, 99) * 1000 if latencies else math.nan,
            len(errors),
            errors[0] if errors else "",
            mine,
            sum(used) if pids else None,
            max(used) if pids else None,
        )


def run_clients(window: Window, connect: Callable[[int], Contender]) -> None:
    """Start the window's client threads (daemons: one stuck in a call never holds up the exit)."""
    for i in range(window.clients):
        threading.Thread(target=window.client, args=(lambda i=i: connect(i),), daemon=True).start()


# --- the services ---------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


#: what a look at a service that is not ready yet may raise
NOT_READY: tuple[type[Exception], ...] = (OSError, RuntimeError, ValueError, http.client.HTTPException)


def wait_until(
    ready: Callable[[], bool], timeout: float, what: str, not_ready: tuple[type[Exception], ...] = NOT_READY
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except not_ready:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} within {timeout:g} s")


def stop_processes(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Service(ABC):
    """A lock service this script starts (a context manager) and sends clients to."""

    key: str
    description: str = ""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    def connect(self, index: int, lock: str, ttl: float) -> Contender:
        """A connected client of lock ``lock`` (called in the client's thread)."""

    def pids(self) -> list[int]:
        return []

    def __enter__(self) -> Service:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class Replicated(Service):
    """A 3-member service whose leader can be found and killed."""

    @abstractmethod
    def leader(self) -> str:
        """The current leader's name (waits for one)."""

    @abstractmethod
    def kill(self, member: str) -> None:
        """SIGKILL ``member`` and wait for it to be gone."""

    @abstractmethod
    def pid(self, member: str) -> int: ...


# ours, single server


class SingleContender:
    def __init__(self, ctx: Context, index: int, lock: str, ttl: float) -> None:
        self.client = LockClient(ctx, f"bench{index}", timing=ClientTiming(retry=1.0))
        self.lock, self.ttl = lock, ttl

    def lock_once(self) -> float:
        with self.client.lock(self.lock, ttl=self.ttl, timeout=LOCK_TIMEOUT):
            return time.monotonic()

    def close(self) -> None:
        pass


def bench_single(clients: int, seconds: float, directory: Path) -> Stats:
    window = Window(clients, seconds)
    lock = f"bench-{clients}"

    def node(index: int) -> Callable[[Context], None]:
        return lambda ctx: window.client(lambda: SingleContender(ctx, index, lock, TTL))

    nodes: dict[str, Callable[[Context], None]] = {"server": LockServer("server", tick=0.1).main}
    nodes.update({f"client{i}": node(i) for i in range(clients)})
    try:
        with FreeRuntime(nodes, directory):
            time.sleep(0.2)  # let every node open its endpoint
            return window.measure()
    finally:
        window.done.set()
        window.go.set()
        shutil.rmtree(directory, ignore_errors=True)


# ours, replicated


class ReplicatedContender:
    def __init__(self, servers: dict[str, Address], lock: str, ttl: float) -> None:
        self.client = ReplicatedLockClient(servers)
        self.lock, self.ttl = lock, ttl
        self.client.raft.read(read_key(lock, self.client.session))  # connects, finds the leader

    def lock_once(self) -> float:
        with self.client.lock(self.lock, ttl=self.ttl, timeout=LOCK_TIMEOUT):
            return time.monotonic()

    def close(self) -> None:
        self.client.close()


class OursReplicated(Replicated):
    key = "raft3"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cluster = LocalCluster(
            3,
            directory,
            module="distcheck.impl.lock.replicated_server",
            election_timeout=RAFT.election_timeout,
            heartbeat=RAFT.heartbeat,
        )
        self.description = (
            f"3 x python -m distcheck.impl.lock.replicated_server (LocalCluster), heartbeat {RAFT.heartbeat:g} s,"
            f" election timeout {RAFT.election_timeout:g} s; ReplicatedLockClient per client, to the leader"
        )

    def start(self) -> None:
        self.cluster.start()
        self.cluster.leader(timeout=START_TIMEOUT)

    def stop(self) -> None:
        self.cluster.stop()

    def connect(self, index: int, lock: str, ttl: float) -> Contender:
        return ReplicatedContender(dict(self.cluster.addresses), lock, ttl)

    def pids(self) -> list[int]:
        return [p.pid for p in self.cluster.procs.values() if p.poll() is None]

    def leader(self) -> str:
        return self.cluster.leader(timeout=START_TIMEOUT)

    def kill(self, member: str) -> None:
        self.cluster.kill(member)

    def pid(self, member: str) -> int:
        return self.cluster.procs[member].pid


# Redis


def redis_missing() -> str | None:
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the redis package is not installed (pip install -e '.[bench]')"
    return None


class RedisContender:
    def __init__(self, port: int, lock: str, ttl: float) -> None:
        import redis

        self.conn: Any = redis.Redis(host="127.0.0.1", port=port)  # its own connection
        self.conn.ping()
        self.lock, self.ttl = lock, ttl

    def lock_once(self) -> float:
        lock = self.conn.lock(self.lock, timeout=self.ttl, sleep=0.001, blocking_timeout=LOCK_TIMEOUT)
        if not lock.acquire():
            raise TimeoutError(f"lock {self.lock!r} not granted within {LOCK_TIMEOUT:g} s")
        granted = time.monotonic()
        lock.release()
        return granted

    def close(self) -> None:
        self.conn.close()


class RedisServer(Service):
    def __init__(self, key: str, directory: Path, persistence: list[str]) -> None:
        self.key = key
        self.directory = directory
        self.persistence = persistence
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        self.directory.mkdir(parents=True)
        self.port = free_ports(1)[0]
        cmd = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.directory)]
        cmd += ["--logfile", str(self.directory / "redis.log"), *self.persistence]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        conn: Any = redis.Redis(host="127.0.0.1", port=self.port)
        try:
            proc = self.proc

            def answers() -> bool:
                if proc.poll() is not None:
                    log = (self.directory / "redis.log").read_text(errors="replace").strip().splitlines()
                    raise RuntimeError(f"redis-server exited: {log[-1] if log else proc.returncode}")
                return bool(conn.ping())

            wait_until(answers, START_TIMEOUT, "redis-server did not answer", (OSError, redis.ConnectionError))
            version = conn.info("server")["redis_version"]
            config = conn.config_get("*")
        except redis.RedisError as exc:
            raise RuntimeError(f"redis-server: {exc}") from None
        finally:
            conn.close()
        flags = " ".join(self.persistence) or "(no persistence flag)"
        self.description = (
            f"redis-server {version} {flags}: appendonly {config['appendonly']}, appendfsync"
            f" {config['appendfsync']}, save {config['save'] or 'off'}; redis-py {redis.__version__} Lock"
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop_processes([self.proc])

    def connect(self, index: int, lock: str, ttl: float) -> Contender:
        return RedisContender(self.port, lock, ttl)

    def pids(self) -> list[int]:
        return [] if self.proc is None or self.proc.poll() is not None else [self.proc.pid]


# etcd


def etcd_missing() -> str | None:
    if shutil.which("etcd") is None:
        return "the etcd binary is not installed (apt-get install etcd-server etcd-client)"
    return None


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class EtcdError(Exception):
    """etcd's gateway answered with an error status."""


class Gateway:
    """One keep-alive HTTP connection to etcd's JSON gateway.  A request that fails
    (connection lost, an error status of 500 or more: no leader, leader changed...)
    goes again to the next member after ``ETCD_RETRY``, until ``deadline`` seconds
    have passed; one attempt is given up after ``attempt`` seconds."""

    def __init__(
        self, endpoints: Sequence[Address], attempt: float = LOCK_TIMEOUT, deadline: float = LOCK_TIMEOUT
    ) -> None:
        self.endpoints = list(endpoints)
        self.attempt = attempt
        self.deadline = deadline
        self.at = 0
        self.conn = self._connect()
        self.closed = False

    def _connect(self) -> http.client.HTTPConnection:
        host, port = self.endpoints[self.at]
        return http.client.HTTPConnection(host, port, timeout=self.attempt)

    def once(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            self.conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            raise
        if response.status >= 500:
            raise EtcdError(f"{path}: {response.status} {data[:200]!r}")
        if response.status != 200:
            raise ValueError(f"etcd refused {path} {body}: {response.status} {data[:200]!r}")
        # a streaming call (keepalive) answers one JSON object per line
        reply: dict[str, Any] = json.loads(data.split(b"\n", 1)[0])
        return reply

    def call(self, path: str, body: dict[str, Any], deadline: float | None = None) -> dict[str, Any]:
        until = time.monotonic() + (self.deadline if deadline is None else deadline)
        while True:
            try:
                return self.once(path, body)
            except (OSError, http.client.HTTPException, EtcdError):
                if self.closed or time.monotonic() >= until:
                    raise
                self.conn.close()
                self.at = (self.at + 1) % len(self.endpoints)
                self.conn = self._connect()
                time.sleep(ETCD_RETRY)

    def close(self) -> None:
        self.closed = True
        self.conn.close()


class EtcdContender:
    """A client holding one lease, kept alive on its own thread (as concurrency.Session)."""

    def __init__(self, endpoints: Sequence[Address], lock: str, ttl: float, attempt: float) -> None:
        self.gateway = Gateway(endpoints, attempt)
        self.name = b64(lock)
        self.ttl = max(1, round(ttl))
        self.lease = str(self.gateway.call("/v3/lease/grant", {"TTL": self.ttl})["ID"])
        self.lost = False
        self.stopped = threading.Event()
        self.keeper = Gateway(endpoints, min(attempt, self.ttl), deadline=self.ttl)
        threading.Thread(target=self._keep_alive, daemon=True).start()

    def _keep_alive(self) -> None:
        try:
            while not self.stopped.wait(self.ttl / 3):
                try:
                    answer = self.keeper.call("/v3/lease/keepalive", {"ID": self.lease})
                except (OSError, http.client.HTTPException, EtcdError, ValueError):
                    continue  # no member answered within the ttl: the next lock call says so
                if int(answer.get("result", {}).get("TTL", 0)) <= 0:
                    self.lost = True
                    return
        finally:
            self.keeper.close()

    def lock_once(self) -> float:
        if self.lost:
            raise RuntimeError(f"etcd lease {self.lease} expired")
        key = self.gateway.call("/v3/lock/lock", {"name": self.name, "lease": self.lease})["key"]
        granted = time.monotonic()
        self.gateway.call("/v3/lock/unlock", {"key": key})
        return granted

    def close(self) -> None:
        self.stopped.set()
        try:
            self.gateway.call("/v3/lease/revoke", {"ID": self.lease}, deadline=1.0)
        except (OSError, http.client.HTTPException, EtcdError, ValueError):
            pass
        self.gateway.close()


class EtcdCluster(Replicated):
    key = "etcd"
    heartbeat_ms = round(RAFT.heartbeat * 1000)
    election_ms = round(RAFT.election_timeout * 1000)

    def __init__(self, directory: Path, attempt: float = LOCK_TIMEOUT) -> None:
        self.directory = directory
        self.attempt = attempt
        self.names = ["m1", "m2", "m3"]
        ports = free_ports(6)
        self.clients: dict[str, Address] = {n: ("127.0.0.1", p) for n, p in zip(self.names, ports[:3])}
        self.peers: dict[str, Address] = {n: ("127.0.0.1", p) for n, p in zip(self.names, ports[3:])}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        version = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout.split()
        self.description = (
            f"etcd {version[2] if len(version) > 2 else '?'}, 3 members, --heartbeat-interval {self.heartbeat_ms}"
            f" --election-timeout {self.election_ms}; v3 JSON gateway, one lease per client, to the leader"
        )

    def start(self) -> None:
        initial = ",".join(f"{n}=http://{h}:{p}" for n, (h, p) in self.peers.items())
        self.directory.mkdir(parents=True)
        for name in self.names:
            client_url = "http://{}:{}".format(*self.clients[name])
            peer_url = "http://{}:{}".format(*self.peers[name])
            cmd = ["etcd", "--name", name, "--data-dir", str(self.directory / name)]
            cmd += ["--listen-client-urls", client_url, "--advertise-client-urls", client_url]
            cmd += ["--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url]
            cmd += ["--initial-cluster", initial, "--initial-cluster-state", "new"]
            cmd += ["--initial-cluster-token", f"lock-bench-{os.getpid()}-{id(self)}"]
            cmd += ["--heartbeat-interval", str(self.heartbeat_ms), "--election-timeout", str(self.election_ms)]
            cmd += ["--logger", "zap", "--log-outputs", "stderr"]
            with open(self.directory / f"{name}.log", "wb") as log:
                self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: self._leader() is not None, START_TIMEOUT, "etcd elected no leader")

    def stop(self) -> None:
        stop_processes(list(self.procs.values()))

    def alive(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is None]

    def _leader(self) -> str | None:
        """The member every live member takes for the leader, if they agree."""
        ids: dict[str, str] = {}
        leaders: set[str] = set()
        for name in self.alive():
            gateway = Gateway([self.clients[name]], attempt=1.0)
            try:
                status = gateway.once("/v3/maintenance/status", {})
            except (OSError, http.client.HTTPException, EtcdError, ValueError):
                return None
            finally:
                gateway.close()
            ids[str(status["header"]["member_id"])] = name
            leaders.add(str(status.get("leader", "0")))
        return ids.get(leaders.pop()) if len(leaders) == 1 else None

    def leader(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while (found := self._leader()) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd: the live members agreed on no leader within {START_TIMEOUT:g} s")
            time.sleep(0.05)
        return found

    def connect(self, index: int, lock: str, ttl: float) -> Contender:
        leader = self.leader()
        order = [leader] + [n for n in self.alive() if n != leader]
        return EtcdContender([self.clients[n] for n in order], lock, ttl, self.attempt)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values() if p.poll() is None]

    def kill(self, member: str) -> None:
        self.procs[member].kill()
        self.procs[member].wait()

    def pid(self, member: str) -> int:
        return self.procs[member].pid


#: the election timeout each replicated service is started with (seconds; randomized in [t, 2t))
ELECTION = {"raft3": RAFT.election_timeout, "etcd": EtcdCluster.election_ms / 1000}
ELECTION_SOURCE = {
    "raft3": f"{RAFT.election_timeout:g} s (impl/raft Timing())",
    "etcd": f"{EtcdCluster.election_ms / 1000:g} s (--election-timeout {EtcdCluster.election_ms})",
}


# --- profiling ------------------------------------------------------------------------


class Profile:
    """py-spy sampling one process for one window, in its raw (collapsed stacks) format."""

    RATE = 100  # samples per second
    #: where the service's own code is (its functions are shown in the stack)
    OWN = ("distcheck/impl/raft/", "distcheck/impl/lock/", "distcheck/impl/runtime/storage.py")

    def __init__(self, out: Path, pid: int, seconds: float) -> None:
        self.out = out
        self.pid = pid
        self.seconds = seconds
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = ["py-spy", "record", "--pid", str(self.pid), "--duration", str(max(1, round(self.seconds)))]
        cmd += ["--rate", str(self.RATE), "--format", "raw", "--output", str(self.out), "--nonblocking"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def summary(self, top: int = 6) -> list[str]:
        if self.proc is None:
            return []
        try:
            self.proc.wait(timeout=self.seconds + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if not self.out.exists():
            return [f"py-spy wrote nothing (exit status {self.proc.returncode})"]
        leaves: collections.Counter[str] = collections.Counter()
        within: collections.Counter[str] = collections.Counter()
        total = 0
        for line in self.out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            frames = [frame.partition(" (") for frame in stack.split(";")]
            leaves[frames[-1][0]] += int(count)
            within.update(dict.fromkeys((f for f, _, where in frames if where.startswith(self.OWN)), int(count)))
            total += int(count)
        if not total:
            return ["py-spy saw no busy thread"]
        busy = total / (self.RATE * max(1, round(self.seconds)))

        def shares(counter: collections.Counter[str]) -> str:
            common = [(f, n) for f, n in counter.most_common() if n < 0.9 * total][:top]
            return ", ".join(f"{f} {100 * n / total:.0f}%" for f, n in common)

        return [
            f"{total} samples, {busy:.2f} threads busy on average",
            f"on top of the stack: {shares(leaves)}",
            f"in the stack, Raft, lock and log code (under 90%): {shares(within)}",
        ]


# --- the run --------------------------------------------------------------------------


def file_system(path: Path) -> str:
    best, kind = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 2 and str(path).startswith(fields[1]) and len(fields[1]) > len(best):
                best, kind = fields[1], fields[2]
    except OSError:
        pass
    return kind


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.{digits}f}"


class Failover(NamedTuple):
    """One round: seconds from the kill to the first grant a client saw, and to the
    first grant after a release that completed after the kill (the first hand-over
    of the lock by the new leader)."""

    seen: float | None
    handover: float | None


def failover_round(service: Replicated) -> Failover:
    """Kill the leader of ``service`` while clients contend on one lock."""
    ops: list[tuple[float, float]] = []  # (granted, released), as the clients saw them
    stop = threading.Event()

    def client(index: int) -> None:
        contender: Contender | None = None
        try:
            contender = service.connect(index, "failover", FAILOVER_TTL)
            while not stop.is_set():
                try:
                    granted = contender.lock_once()
                    ops.append((granted, time.monotonic()))
                except Exception:
                    time.sleep(0.01)  # a lost lease, no leader...: ask again
        except Exception:
            return
        finally:
            if contender is not None:
                try:
                    contender.close()
                except Exception:
                    pass

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(FAILOVER_CLIENTS)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(ops) >= FAILOVER_WARMUP, START_TIMEOUT, f"{FAILOVER_WARMUP} locks not granted")
        leader = service.leader()
        killed_at = time.monotonic()
        service.kill(leader)
        after = time.monotonic() + STALE_GRACE  # earlier answers may be the old leader's
        seen = handover = None
        while time.monotonic() < killed_at + FAILOVER_LIMIT and handover is None:
            time.sleep(0.005)
            done = list(ops)
            grants = [g for g, _ in done if g > after]
            seen = min(grants) - killed_at if grants else None
            releases = [r for _, r in done if r > after]
            handovers = [g for g, _ in done if releases and g > min(releases)]
            handover = min(handovers) - killed_at if handovers else None
        return Failover(seen, handover)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=2 * FAILOVER_TTL)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    assert __doc__ is not None
    parser = _Parser(prog="lock_throughput.py", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per cell")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 8, 32], help="contending clients")
    parser.add_argument(
        "--dir", type=Path, help="where every service keeps its data and logs (default: /dev/shm if it exists)"
    )
    parser.add_argument("--failover", action=argparse.BooleanOptionalAction, default=True, help="measure failover")
    parser.add_argument("--failover-rounds", type=int, default=3, help="leader kills per replicated service")
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS), help="services to measure")
    parser.add_argument("--profile", type=Path, help="sample ours raft x3's leader with py-spy, into this directory")
    args = parser.parse_args(argv)
    if not (args.seconds > 0 and math.isfinite(args.seconds)):
        parser.error(f"--seconds must be a positive number, got {args.seconds}")
    if any(n < 1 for n in args.threads):
        parser.error(f"--threads must be positive, got {' '.join(map(str, args.threads))}")
    if args.failover_rounds < 1:
        parser.error(f"--failover-rounds must be positive, got {args.failover_rounds}")
    if args.dir is not None and not args.dir.is_dir():
        parser.error(f"--dir {args.dir}: not a directory")
    if args.profile is not None and not args.profile.is_dir():
        parser.error(f"--profile {args.profile}: not a directory")
    args.threads = list(dict.fromkeys(args.threads))
    args.peers = [p for p in PEERS if p in args.peers]
    return args


def make_service(key: str, root: Path, failover: bool = False) -> Service:
    if key == "raft3":
        return OursReplicated(root / "raft3")
    if key == "redis-always":
        return RedisServer(key, root / key, ["--appendonly", "yes", "--appendfsync", "always"])
    if key == "redis-default":
        return RedisServer(key, root / key, [])
    if key == "etcd":
        return EtcdCluster(root / "etcd", ETCD_FAILOVER_ATTEMPT if failover else LOCK_TIMEOUT)
    raise ValueError(key)


def missing(key: str) -> str | None:
    if key.startswith("redis"):
        return redis_missing()
    if key == "etcd":
        return etcd_missing()
    return None


def print_ratios(results: dict[tuple[str, int], Stats], threads: list[int], peers: list[str]) -> None:
    others = [p for p in peers if p not in OURS and any((p, n) in results for n in threads)]
    ours = [p for p in OURS if p in peers]
    if not others or not ours:
        return
    print("\nthroughput ratio ours/peer (above 1: ours is faster)")
    print(f"{'clients':>7}  {'ours':<13}" + "".join(f" {LABELS[p]:>13}" for p in others))
    for n in threads:
        for mine in ours:
            if (mine, n) not in results:
                continue
            cells = []
            for peer in others:
                theirs = results.get((peer, n))
                cells.append(fmt(results[(mine, n)].ops / theirs.ops if theirs and theirs.ops else None))
            print(f"{n:>7}  {LABELS[mine]:<13}" + "".join(f" {c:>13}" for c in cells))


def print_targets(results: dict[tuple[str, int], Stats], failovers: dict[str, list[Failover]]) -> None:
    lines = []
    always = results.get(("redis-always", 1))
    for mine in OURS:
        if always and always.ops and (mine, 1) in results:
            ratio = results[(mine, 1)].ops / always.ops
            verdict = "met" if ratio >= 0.5 else "NOT met"
            lines.append(f"1 client, {LABELS[mine]} >= 0.5x redis always: {ratio:.2f}x, {verdict}")
    for mine in OURS:
        peers = {p: s for (p, n), s in results.items() if n == 32 and p not in OURS}
        if peers and (mine, 32) in results:
            worst = min(peers, key=lambda p: results[(mine, 32)].ops / peers[p].ops if peers[p].ops else math.inf)
            ratio = results[(mine, 32)].ops / peers[worst].ops if peers[worst].ops else math.inf
            verdict = "met" if ratio > 1 else "NOT met"
            lines.append(
                f"32 clients, {LABELS[mine]} ahead of every peer: lowest ratio {ratio:.2f}x"
                f" ({LABELS[worst]}), {verdict}"
            )
    for key, samples in failovers.items():
        times = [f.handover for f in samples]
        done = [t for t in times if t is not None]
        bound = FAILOVER_TTL + ELECTION[key]
        if done:
            median = statistics.median(done)
            verdict = "met" if median < bound and len(done) == len(times) else "NOT met"
            lines.append(f"failover (first hand-over), {LABELS[key]} < {bound:.1f} s: median {median:.2f} s, {verdict}")
    if lines:
        print("\ntargets (issue #23)")
        for line in lines:
            print(f"  {line}")


def measure_failovers(keys: list[str], root: Path, rounds: int) -> dict[str, list[Failover]]:
    failovers: dict[str, list[Failover]] = {}
    if keys:
        print(
            f"\nfailover: {FAILOVER_CLIENTS} clients on one lock, lease ttl {FAILOVER_TTL:g} s, the leader SIGKILLed;"
            " seconds from the kill to the first grant a client saw / to the first hand-over (a grant after"
            " a release completed after the kill)"
        )
    for key in keys:
        samples: list[Failover] = []
        for r in range(rounds):
            try:
                with make_service(key, root / f"failover-{key}-{r}", failover=True) as service:
                    assert isinstance(service, Replicated)
                    samples.append(failover_round(service))
            except (OSError, RuntimeError, TimeoutError) as exc:
                print(f"  {LABELS[key]} round {r + 1}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                samples.append(Failover(None, None))
        failovers[key] = samples
        shown = " ".join(f"{fmt(f.seen)}/{fmt(f.handover)}" for f in samples)
        medians = [statistics.median(d) if (d := [x for x in xs if x is not None]) else None for xs in zip(*samples)]
        print(
            f"  {LABELS[key]:<13} {shown}   median {fmt(medians[0])}/{fmt(medians[1])} s;"
            f" bound: ttl {FAILOVER_TTL:g} s + election timeout {ELECTION_SOURCE[key]}"
            f" = {FAILOVER_TTL + ELECTION[key]:g} s"
        )
    return failovers


def measure_service(key: str, args: argparse.Namespace, root: Path, profile: Path | None) -> dict[int, Stats]:
    """Start service ``key``, measure it at every number of clients, stop it."""
    results: dict[int, Stats] = {}
    if key == "single":
        print(f"{LABELS[key]:<13}  LockServer (tick 0.1 s) in a FreeRuntime in this process, a node per client")
        for n in args.threads:
            results[n] = bench_single(n, args.seconds, root / f"single-{n}")
        return results
    with make_service(key, root) as service:
        print(f"{LABELS[key]:<13}  {service.description}", flush=True)
        for n in args.threads:
            window = Window(n, args.seconds)
            run_clients(window, functools.partial(service.connect, lock=f"bench-{n}", ttl=TTL))
            sampler = None
            if profile is not None and isinstance(service, OursReplicated):
                sampler = Profile(profile / f"raft3-leader-{n}clients.txt", service.pid(service.leader()), args.seconds)
            try:
                results[n] = window.measure(service.pids(), sampler.start if sampler is not None else None)
            finally:
                window.done.set()
                window.go.set()
            if sampler is not None:
                print(f"  py-spy, ours raft x3's leader at {n} clients ({sampler.out}):")
                for line in sampler.summary():
                    print(f"    {line}")
    return results


def print_table(results: dict[tuple[str, int], Stats], threads: list[int], keys: list[str]) -> None:
    print(
        f"\n{'clients':>7}  {'service':<13} {'ops/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'cpu here':>8} {'cpu srv':>8} {'busiest':>8}"
    )
    for n in threads:
        for key in keys:
            s = results.get((key, n))
            if s is None:
                continue
            row = f"{n:>7}  {LABELS[key]:<13} {s.ops:>8.0f} {fmt(s.p50):>8} {fmt(s.p99):>8}"
            row += f" {fmt(s.client_cpu):>8} {fmt(s.server_cpu):>8} {fmt(s.busiest_cpu):>8}"
            if s.errors:
                row += f"  {s.errors} errors, first: {s.first_error}"
            print(row)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    base = args.dir if args.dir is not None else Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    root = Path(tempfile.mkdtemp(prefix="lock-bench-", dir=base))
    results: dict[tuple[str, int], Stats] = {}
    failovers: dict[str, list[Failover]] = {}
    try:
        print(
            f"lock_throughput: {args.seconds:g} s per cell, clients {' '.join(map(str, args.threads))}; data and logs"
            f" of every service in {root} ({file_system(root)}); load average {load_average()}"
        )
        profile: Path | None = args.profile if "raft3" in args.peers else None
        if profile is not None and shutil.which("py-spy") is None:
            print("profile skipped: py-spy is not on PATH (pip install py-spy)")
            profile = None
        available = []
        for key in args.peers:
            why = missing(key)
            if why is not None:
                print(f"{LABELS[key]} skipped: {why}")
                continue
            available.append(key)
            try:
                for n, stats in measure_service(key, args, root, profile).items():
                    results[(key, n)] = stats
            except (OSError, RuntimeError, TimeoutError) as exc:
                print(f"{LABELS[key]} stopped: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        print_table(results, args.threads, available)
        print_ratios(results, args.threads, available)
        if args.failover:
            failovers = measure_failovers([k for k in available if k in ELECTION], root, args.failover_rounds)
        print_targets(results, failovers)
        print(f"\nload average at the end {load_average()}")
    except KeyboardInterrupt:
        print("interrupted: the services are stopped and their data removed", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
