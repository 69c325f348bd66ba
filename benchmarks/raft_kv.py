"""Replicated key-value stores on Raft, 3 nodes on loopback: distcheck's Raft KV,
PySyncObj and etcd side by side in one run.

    .venv/bin/python benchmarks/raft_kv.py [--clients 1 8 32] [--seconds 3]
        [--systems ours,ours-nofsync,pysyncobj,etcd] [--failovers 3] [--pysyncobj-batch] [--json]

For each system the script starts a 3-node cluster on 127.0.0.1, its data in a new
temporary directory (under ``$TMPDIR`` or /tmp: a real file system, for the fsyncs to
mean something), removed at the end.  For each number of clients it measures, for
``--seconds`` each, puts and then linearizable gets: throughput (operations per
second) and the p50 and p99 latency of one operation.  Then it SIGKILLs the leader
and measures the failover time: from the kill until a put started after the kill is
acknowledged; ``--failovers N`` takes N such samples (the first on the loaded
cluster, each other one on a fresh cluster) and prints their median and each sample.

The table has one row per system, operation and number of clients: ops/s, p50 ms,
p99 ms, ``ours/this`` (the ratio of the throughputs; below 1: ours is slower;
"-" when ours did not run), the operations that failed (each failure is retried
after 10 ms and is not counted as an operation; the first one is printed), and
"load CPU": the CPU time the load generator's processes used per second of the cell,
in cores (setup included), to show how much of the machine the clients took.  The
failover line gives ours/this of the median times (below 1: ours recovers faster).
``--json`` prints the same as one JSON document instead.

Load: the same generator for every system.  Clients are threads spread over up to
four worker processes, forked once the cluster is up (so that 32 clients are not 32
threads fighting for one GIL); each client makes its own connection (its own
``client()``) and does one operation at a time (closed loop), on its own 16 keys,
with 16-byte values.  Every client first does one put untimed (connecting, finding
the leader); an operation counts when it completes within the window.  The machine
the figures come from has 2 cores shared by the 3 nodes, the load generator and other
work, so the figures are a comparison made in one run, not capacity.

Failover: from the kill, a put attempt starts every 50 ms, each on a fresh
connection (a fresh ``client()`` for ours) to the next surviving node in turn, each
with a 5 s timeout, so that a put stuck on the dead leader does not hide a recovery;
a sample has about 50 ms of resolution.  The samples vary with the randomized
election timeouts.

The systems, as this script runs them:

- ours: ``distcheck.impl.raft.cluster.LocalCluster(3, data_dir)`` (three processes),
  one ``cluster.client()`` per client thread; put and get are blocking, get is
  linearizable; the log is fsynced on every append; ``cluster.kill(cluster.leader())``
  for the failover.  The load generator calls ``cluster.client()`` in its forked
  worker processes, so a client must be made of its own connections, not of the
  parent's threads.  Skipped, with the reason, while
  ``distcheck.impl.raft.cluster`` does not exist.
- ours-nofsync: the same, with ``--unsafe-no-fsync`` (the log written, never
  fsynced): PySyncObj's durability.  A reference row, to show how much of a
  difference to PySyncObj is the disk; ``ours/this`` there is the cost of fsync.
- pysyncobj: three ``benchmarks/peers/pysyncobj_node.py`` processes (PySyncObj's
  ``SyncObj`` with a ``ReplDict``, the library's default timings) behind a JSON-lines
  TCP front end, with ``appendEntriesUseBatch=False``: the default (True) sends the
  log to followers only every ``appendEntriesPeriod`` (0.1 s), so that every put
  takes about 100 ms and 32 clients make under 300 puts/s on this machine, where
  False is faster at 1, 8 and 32 clients alike (``--pysyncobj-batch`` measures the
  default); put is ``ReplDict.set(sync=True)``; the linearizable get is
  a ``@replicated`` method returning the value, called with ``sync=True``, so it goes
  through the log like a write (``ReplDict.get`` reads the local copy).  Clients send
  to the leader (asked with ``_getLeader()`` through the front end).  Its journal is a
  file, never fsynced (see the node's docstring).  Skipped when the ``pysyncobj``
  package is missing (``pip install -e '.[bench]'``).
- etcd: three ``etcd`` members (Debian's ``etcd-server``) on their default timings,
  started with ``--initial-cluster``; the WAL is fsynced on every commit, as by default
  (``--unsafe-no-fsync`` is not used).  Requests go to the leader (from
  ``/v3/maintenance/status``) through etcd's JSON gateway (``/v3/kv/put``,
  ``/v3/kv/range``, linearizable by default) with ``http.client`` and keep-alive.
  Skipped when the ``etcd`` binary is missing (``apt-get install etcd-server``).

Benchmarks are not run by CI.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import importlib
import importlib.metadata
import json
import multiprocessing
import multiprocessing.synchronize
import os
import resource
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
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SYSTEMS = ("ours", "ours-nofsync", "pysyncobj", "etcd")
OPS = ("put", "get")
KEYS_PER_CLIENT = 16
VALUE_BYTES = 16
OP_TIMEOUT = 10.0  # seconds before a client gives up on one operation
MAX_WORKERS = 4  # worker processes of the load generator
START_TIMEOUT = 60.0  # seconds for a cluster to elect a leader and accept a write
PROBE_INTERVAL = 0.05  # seconds between two put attempts after the leader's kill
PROBE_TIMEOUT = 5.0  # seconds one of those attempts may take
FAILOVER_LIMIT = 60.0  # seconds after which the cluster is declared not to recover


class KVClient(Protocol):
    """What the load generator needs of a system's client: blocking calls, one at a time."""

    def put(self, key: str, value: str) -> None: ...

    def get(self, key: str) -> str | None: ...

    def close(self) -> None: ...


class System(ABC):
    """A 3-node cluster the script starts, loads, kills the leader of and stops."""

    name: str
    durability: str
    reads: str
    settings: str

    @abstractmethod
    def start(self, directory: Path) -> None:
        """Start the cluster with its data in ``directory`` and return once it accepts writes."""

    @abstractmethod
    def client(self) -> KVClient:
        """A client for the load generator (called in a forked worker process)."""

    @abstractmethod
    def failover_client(self, attempt: int) -> KVClient:
        """A client for the ``attempt``-th put after the leader's kill."""

    @abstractmethod
    def kill_leader(self) -> float:
        """SIGKILL the leader; the ``time.monotonic()`` just before the kill."""

    @abstractmethod
    def stop(self) -> None:
        """Stop every node still running."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except (OSError, RuntimeError, ValueError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} within {timeout:.0f} s")


def accepts_write(system: System) -> bool:
    client = system.client()
    try:
        client.put("warmup", "warmup")
    finally:
        client.close()
    return True


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- ours -------------------------------------------------------------------------


def ours_missing() -> str | None:
    try:
        importlib.import_module("distcheck.impl.raft.cluster")
    except Exception as error:  # any failure to import is a reason to skip
        return f"distcheck.impl.raft.cluster is not importable ({type(error).__name__}: {error})"
    return None


class OursClient:
    def __init__(self, client: Any) -> None:
        self._client = client

    def put(self, key: str, value: str) -> None:
        self._client.put(key, value)

    def get(self, key: str) -> str | None:
        value = self._client.get(key)
        return None if value is None else str(value)

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()


class Ours(System):
    name = "ours"
    durability = "Raft log fsynced on every append"
    settings = "LocalCluster's defaults; each client thread has its own cluster.client()"
    reads = "get is linearizable (LocalCluster's client)"

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._cluster: Any = None

    server_args: tuple[str, ...] = ()

    def start(self, directory: Path) -> None:
        local_cluster = importlib.import_module("distcheck.impl.raft.cluster").LocalCluster
        self._cluster = self._stack.enter_context(local_cluster(3, directory, server_args=self.server_args))
        wait_until(lambda: accepts_write(self), START_TIMEOUT, "no write accepted")

    def client(self) -> KVClient:
        return OursClient(self._cluster.client())

    def failover_client(self, attempt: int) -> KVClient:
        return self.client()

    def kill_leader(self) -> float:
        leader = self._cluster.leader()
        killed_at = time.monotonic()
        self._cluster.kill(leader)
        return killed_at

    def stop(self) -> None:
        self._stack.close()


class OursNoFsync(Ours):
    """Ours at PySyncObj's durability: the same servers, never fsyncing.  A reference
    row, not a configuration to run: it shows how much of the difference to PySyncObj
    is the disk."""

    name = "ours-nofsync"
    durability = "none: --unsafe-no-fsync (the log is written, never fsynced), as PySyncObj"
    server_args = ("--unsafe-no-fsync",)


# --- PySyncObj ----------------------------------------------------------------------


def pysyncobj_missing() -> str | None:
    try:
        importlib.import_module("pysyncobj")
    except ImportError:
        return "the pysyncobj package is not installed (pip install -e '.[bench]')"
    return None


class LineClient:
    """A client of ``benchmarks/peers/pysyncobj_node.py``'s front end."""

    def __init__(self, port: int, timeout: float = OP_TIMEOUT) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._file = self._sock.makefile("rwb")

    def call(self, request: dict[str, str]) -> dict[str, Any]:
        self._file.write(json.dumps(request).encode() + b"\n")
        self._file.flush()
        line = self._file.readline()
        if not line:
            raise ConnectionError("the node closed the connection")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(str(reply.get("error")))
        return reply

    def put(self, key: str, value: str) -> None:
        self.call({"op": "put", "key": key, "value": value})

    def get(self, key: str) -> str | None:
        value = self.call({"op": "get", "key": key}).get("value")
        return None if value is None else str(value)

    def close(self) -> None:
        self._file.close()
        self._sock.close()


class PySyncObjCluster(System):
    name = "pysyncobj"
    reads = "get is a @replicated method returning the value, called with sync=True: it goes through the Raft log"
    durability = (
        "journal in a file (journalFile), written through mmap, never fsynced or msynced per entry: "
        "survives a process kill, not a power loss"
    )

    def __init__(self, batch: bool = False) -> None:
        self._batch = batch
        self.settings = (
            f"appendEntriesUseBatch={batch}, default timings (election timeout 0.4-1.4 s); requests to the leader"
        )
        self._raft: list[str] = []
        self._front: list[int] = []
        self._processes: list[subprocess.Popen[bytes]] = []
        self._killed: set[int] = set()

    def start(self, directory: Path) -> None:
        self._raft = [f"127.0.0.1:{free_port()}" for _ in range(3)]
        self._front = [free_port() for _ in range(3)]
        node = HERE / "peers" / "pysyncobj_node.py"
        for i, raft in enumerate(self._raft):
            partners = [other for other in self._raft if other != raft]
            cmd = [sys.executable, str(node), "--raft", raft, "--partners", *partners]
            cmd += ["--front", str(self._front[i]), "--journal", str(directory / f"node{i}.journal")]
            if not self._batch:
                cmd.append("--no-batch")
            with open(directory / f"node{i}.log", "wb") as log:
                self._processes.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
        wait_until(self._agreed_leader, START_TIMEOUT, "PySyncObj elected no leader")
        wait_until(lambda: accepts_write(self), START_TIMEOUT, "no write accepted")

    def _leader(self, node: int) -> int | None:
        """The node that ``node`` takes for the leader."""
        client = LineClient(self._front[node], timeout=2.0)
        try:
            leader = client.call({"op": "status"})["leader"]
        finally:
            client.close()
        return self._raft.index(leader) if leader in self._raft else None

    def _agreed_leader(self) -> bool:
        leaders = {self._leader(i) for i in range(3)}
        return len(leaders) == 1 and None not in leaders

    def client(self) -> KVClient:
        for node in range(3):
            if node in self._killed:
                continue
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                leader = self._leader(node)
                if leader is not None and leader not in self._killed:
                    return LineClient(self._front[leader])
        raise RuntimeError("no node knows a live leader")

    def failover_client(self, attempt: int) -> KVClient:
        live = [i for i in range(3) if i not in self._killed]
        return LineClient(self._front[live[attempt % len(live)]], timeout=PROBE_TIMEOUT)

    def kill_leader(self) -> float:
        leader = self._leader(0 if 0 not in self._killed else 1)
        if leader is None:
            raise RuntimeError("no leader to kill")
        self._killed.add(leader)
        killed_at = time.monotonic()
        self._processes[leader].send_signal(signal.SIGKILL)
        return killed_at

    def stop(self) -> None:
        stop_processes(self._processes)


# --- etcd ---------------------------------------------------------------------------


def etcd_missing() -> str | None:
    if shutil.which("etcd") is None:
        return "the etcd binary is not installed (apt-get install etcd-server)"
    return None


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class EtcdClient:
    """etcd's v3 API through its JSON gateway, on one keep-alive connection."""

    def __init__(self, port: int, timeout: float = OP_TIMEOUT) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def call(self, path: str, body: dict[str, str]) -> dict[str, Any]:
        try:
            self._conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            response = self._conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self._conn.close()  # the next request opens a new connection
            raise
        if response.status != 200:
            raise RuntimeError(f"etcd answered {response.status}: {data[:200]!r}")
        reply: dict[str, Any] = json.loads(data)
        return reply

    def put(self, key: str, value: str) -> None:
        self.call("/v3/kv/put", {"key": b64(key), "value": b64(value)})

    def get(self, key: str) -> str | None:
        kvs = self.call("/v3/kv/range", {"key": b64(key)}).get("kvs")
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None

    def close(self) -> None:
        self._conn.close()


class EtcdCluster(System):
    name = "etcd"
    reads = "range is linearizable by default (a ReadIndex round through the leader)"
    durability = "WAL fsynced on every commit (etcd's default; --unsafe-no-fsync is not used)"
    settings = "default timings (heartbeat 100 ms, election timeout 1 s); requests to the leader"

    def __init__(self) -> None:
        self._client_ports: list[int] = []
        self._processes: list[subprocess.Popen[bytes]] = []
        self._killed: set[int] = set()

    def start(self, directory: Path) -> None:
        self._client_ports = [free_port() for _ in range(3)]
        peer_ports = [free_port() for _ in range(3)]
        initial = ",".join(f"m{i}=http://127.0.0.1:{port}" for i, port in enumerate(peer_ports))
        for i in range(3):
            client_url, peer_url = f"http://127.0.0.1:{self._client_ports[i]}", f"http://127.0.0.1:{peer_ports[i]}"
            cmd = ["etcd", "--name", f"m{i}", "--data-dir", str(directory / f"m{i}")]
            cmd += ["--listen-client-urls", client_url, "--advertise-client-urls", client_url]
            cmd += ["--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url]
            cmd += ["--initial-cluster", initial, "--initial-cluster-state", "new"]
            cmd += ["--initial-cluster-token", f"raft-kv-bench-{os.getpid()}"]
            with open(directory / f"m{i}.log", "wb") as log:
                self._processes.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
        wait_until(lambda: self._leader() is not None, START_TIMEOUT, "etcd elected no leader")
        wait_until(lambda: accepts_write(self), START_TIMEOUT, "no write accepted")

    def _leader(self) -> int | None:
        """The member that the live members take for the leader."""
        members: dict[str, int] = {}
        leaders: set[str] = set()
        for i, port in enumerate(self._client_ports):
            if i in self._killed:
                continue
            client = EtcdClient(port, timeout=2.0)
            try:
                status = client.call("/v3/maintenance/status", {})
            except (OSError, RuntimeError, ValueError, http.client.HTTPException):
                continue
            finally:
                client.close()
            members[str(status["header"]["member_id"])] = i
            leaders.add(str(status.get("leader", "")))
        if len(leaders) != 1:
            return None
        return members.get(leaders.pop())

    def client(self) -> KVClient:
        leader = self._leader()
        if leader is None:
            raise RuntimeError("etcd has no leader the live members agree on")
        return EtcdClient(self._client_ports[leader])

    def failover_client(self, attempt: int) -> KVClient:
        live = [i for i in range(3) if i not in self._killed]
        return EtcdClient(self._client_ports[live[attempt % len(live)]], timeout=PROBE_TIMEOUT)

    def kill_leader(self) -> float:
        leader = self._leader()
        if leader is None:
            raise RuntimeError("no leader to kill")
        self._killed.add(leader)
        killed_at = time.monotonic()
        self._processes[leader].send_signal(signal.SIGKILL)
        return killed_at

    def stop(self) -> None:
        stop_processes(self._processes)


# --- the load generator --------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def key(client: int, n: int) -> str:
    return f"key-{client}-{n % KEYS_PER_CLIENT}"


def value(client: int, n: int) -> str:
    return f"{client}-{n}".ljust(VALUE_BYTES, "x")[:VALUE_BYTES]


def worker(
    system: System,
    op: str,
    first: int,
    threads: int,
    seconds: float,
    barrier: multiprocessing.synchronize.Barrier,
    results: multiprocessing.Queue[tuple[list[float], int, str]],
) -> None:
    """One worker process: ``threads`` clients numbered from ``first``, each in a closed
    loop of ``op`` from the moment every worker is ready, for ``seconds``."""
    latencies: list[float] = []
    errors = [0]
    first_error: list[str] = []
    guard = threading.Lock()
    connected = threading.Barrier(threads + 1)
    go = threading.Event()
    deadline = [0.0]

    def failed(error: Exception) -> None:
        with guard:
            errors[0] += 1
            if not first_error:
                first_error.append(f"{type(error).__name__}: {error}")

    def run(index: int) -> None:
        client: KVClient | None = None
        try:
            client = system.client()
            client.put(key(index, 0), value(index, 0))  # untimed: connects, finds the leader
        except Exception as error:
            failed(error)
        connected.wait()
        go.wait()
        mine: list[float] = []
        n = 0
        while client is not None:
            began = time.monotonic()
            if began >= deadline[0]:
                break
            try:
                if op == "put":
                    client.put(key(index, n), value(index, n))
                else:
                    client.get(key(index, n))
            except Exception as error:
                failed(error)
                time.sleep(0.01)  # a failing node must not turn a client into a busy loop
                continue
            finished = time.monotonic()
            if finished <= deadline[0]:
                mine.append(finished - began)
            n += 1
        with guard:
            latencies.extend(mine)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    pool = [threading.Thread(target=run, args=(first + i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    try:
        connected.wait(timeout=START_TIMEOUT)
        barrier.wait(timeout=START_TIMEOUT)
        deadline[0] = time.monotonic() + seconds
        go.set()
        for thread in pool:
            thread.join(timeout=seconds + OP_TIMEOUT + 5)
    finally:
        go.set()
        with guard:
            results.put((list(latencies), errors[0], first_error[0] if first_error else ""))


def measure(system: System, op: str, clients: int, seconds: float) -> dict[str, Any]:
    """One cell of the table: ``clients`` closed-loop clients doing ``op`` for ``seconds``."""
    context = multiprocessing.get_context("fork")
    workers = min(clients, MAX_WORKERS)
    shares = [clients // workers + (1 if i < clients % workers else 0) for i in range(workers)]
    barrier = context.Barrier(workers + 1)
    results: multiprocessing.Queue[tuple[list[float], int, str]] = context.Queue()
    processes = []
    first = 0
    for share in shares:
        processes.append(
            context.Process(target=worker, args=(system, op, first, share, seconds, barrier, results), daemon=True)
        )
        first += share
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for process in processes:
        process.start()
    latencies: list[float] = []
    errors = 0
    first_error = ""
    try:
        barrier.wait(timeout=START_TIMEOUT)
        for _ in processes:
            mine, failures, error = results.get(timeout=seconds + START_TIMEOUT + OP_TIMEOUT)
            latencies += mine
            errors += failures
            first_error = first_error or error
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    return {
        "system": system.name,
        "op": op,
        "clients": clients,
        "ops": len(latencies),
        "ops_per_s": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 50) * 1000 if latencies else None,
        "p99_ms": percentile(latencies, 99) * 1000 if latencies else None,
        "errors": errors,
        "first_error": first_error or None,
        "generator_cpu": cpu / seconds,
    }


def failover(system: System) -> float:
    """Seconds from the SIGKILL of the leader until a put started after it is acknowledged."""
    done = threading.Event()
    acknowledged: list[float] = []
    guard = threading.Lock()

    def attempt(n: int) -> None:
        try:
            client = system.failover_client(n)
            try:
                client.put("failover", str(n))
            finally:
                client.close()
        except Exception:
            return
        with guard:
            acknowledged.append(time.monotonic())
        done.set()

    killed_at = system.kill_leader()
    n = 0
    while not done.is_set():
        if time.monotonic() - killed_at > FAILOVER_LIMIT:
            raise RuntimeError(f"no write accepted within {FAILOVER_LIMIT:.0f} s of the leader's kill")
        threading.Thread(target=attempt, args=(n,), daemon=True).start()
        n += 1
        done.wait(PROBE_INTERVAL)
    with guard:
        return min(acknowledged) - killed_at


# --- the run -------------------------------------------------------------------------


def peer_version(name: str) -> str:
    if name == "pysyncobj":
        return f"PySyncObj {importlib.metadata.version('pysyncobj')}"
    if name == "etcd":
        out = subprocess.run(["etcd", "--version"], capture_output=True, text=True, check=False).stdout
        return out.splitlines()[0] if out else "etcd"
    return "distcheck " + importlib.metadata.version("distcheck")  # ours, with or without fsync


def build(name: str, pysyncobj_batch: bool) -> Callable[[], System] | str:
    """How to make the system's clusters, or why it is skipped."""
    if name == "ours":
        return ours_missing() or Ours
    if name == "ours-nofsync":
        return ours_missing() or OursNoFsync
    if name == "pysyncobj":
        return pysyncobj_missing() or (lambda: PySyncObjCluster(batch=pysyncobj_batch))
    return etcd_missing() or EtcdCluster


def ratio(ours: float | None, this: float | None) -> float | None:
    return ours / this if ours and this else None


def text(number: float | None, digits: int) -> str:
    return "-" if number is None else f"{number:.{digits}f}"


HEADER = (
    f"{'system':<12} {'op':<4} {'clients':>7} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'ours/this':>9}"
    f" {'errors':>6} {'load CPU':>8}"
)


def row(cell: dict[str, Any]) -> str:
    return (
        f"{cell['system']:<12} {cell['op']:<4} {cell['clients']:>7} {cell['ops_per_s']:>9.0f}"
        f" {text(cell['p50_ms'], 2):>8} {text(cell['p99_ms'], 2):>8}"
        f" {text(cell['ours_over_this'], 2):>9} {cell['errors']:>6} {cell['generator_cpu']:>8.2f}"
    )


def on_fresh_cluster(make: Callable[[], System], use: Callable[[System], None]) -> None:
    """Start a new cluster of ``make()`` in a new temporary directory, ``use`` it, stop it."""
    system = make()
    directory = Path(tempfile.mkdtemp(prefix=f"raft-kv-{system.name}-"))
    try:
        system.start(directory)
        use(system)
    finally:
        system.stop()
        shutil.rmtree(directory, ignore_errors=True)


def run_system(
    make: Callable[[], System],
    clients: list[int],
    seconds: float,
    failovers: int,
    on_cell: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Every cell on one cluster, then its leader's kill; each further failover sample on a fresh cluster."""
    samples: list[float] = []
    report: dict[str, Any] = {"cells": [], "failover_s": None, "failover_samples_s": samples}

    def load(system: System) -> None:
        for op in OPS:
            for n in clients:
                cell = measure(system, op, n, seconds)
                report["cells"].append(cell)
                on_cell(cell)
        if failovers:
            samples.append(failover(system))

    try:
        on_fresh_cluster(make, load)
        for _ in range(failovers - 1):
            on_fresh_cluster(make, lambda system: samples.append(failover(system)))
    except Exception as error:  # a cluster that fails is reported, and the next system still runs
        report["error"] = f"{type(error).__name__}: {error}"
    if samples:
        report["failover_s"] = statistics.median(samples)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32], help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per cell")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated, among " + ", ".join(SYSTEMS))
    parser.add_argument(
        "--pysyncobj-batch",
        action="store_true",
        help="run PySyncObj with its default appendEntriesUseBatch=True (commits every 0.1 s: ~100 ms a put)",
    )
    parser.add_argument(
        "--failovers", type=int, default=3, help="leader kills per system, the first after the load (0: none)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    args = parser.parse_args()
    names = [name.strip() for name in args.systems.split(",") if name.strip()]
    unknown = [name for name in names if name not in SYSTEMS]
    if unknown or not names:
        given = ", ".join(unknown) or "(none given)"
        print(f"--systems: unknown {given}; choose among {', '.join(SYSTEMS)}", file=sys.stderr)
        return 2
    if args.seconds <= 0 or any(n < 1 for n in args.clients) or args.failovers < 0:
        print("--seconds and --clients must be positive, --failovers at least 0", file=sys.stderr)
        return 2
    say: Callable[[str], None] = (lambda line: None) if args.json else (lambda line: print(line, flush=True))
    results: dict[str, Any] = {}
    ours_ops: dict[tuple[str, int], float] = {}
    ours_failover: float | None = None

    def on_cell(cell: dict[str, Any]) -> None:
        if cell["system"] == "ours":
            ours_ops[cell["op"], cell["clients"]] = cell["ops_per_s"]
        cell["ours_over_this"] = ratio(ours_ops.get((cell["op"], cell["clients"])), cell["ops_per_s"])
        say(row(cell))
        if cell["first_error"]:
            say(f"{'':<12} first error: {cell['first_error']}")

    for name in sorted(names, key=SYSTEMS.index):  # ours first, so that the ratios are known
        make = build(name, args.pysyncobj_batch)
        if isinstance(make, str):
            results[name] = {"skipped": make}
            say(f"{name}: skipped: {make}")
            continue
        described = make()
        about = {"version": peer_version(name)}
        about.update(durability=described.durability, reads=described.reads, settings=described.settings)
        say(f"{name}: {about.pop('version')}")
        for what, line in about.items():
            say(f"  {what}: {line}")
        say(HEADER)
        report = run_system(make, args.clients, args.seconds, args.failovers, on_cell)
        report.update(version=peer_version(name), **about)
        results[name] = report
        if report["failover_s"] is not None:
            if name == "ours":
                ours_failover = report["failover_s"]
            report["failover_ours_over_this"] = ratio(ours_failover, report["failover_s"])
            each = ", ".join(f"{sample * 1000:.0f}" for sample in report["failover_samples_s"])
            say(
                f"{name:<12} failover after SIGKILL of the leader: median {report['failover_s'] * 1000:.0f} ms"
                f" of {len(report['failover_samples_s'])} ({each} ms);"
                f" ours/this {text(report['failover_ours_over_this'], 2)}"
            )
        if "error" in report:
            say(f"{name}: stopped early: {report['error']}")
        say("")
    if args.json:
        print(json.dumps({"seconds": args.seconds, "clients": args.clients, "systems": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
