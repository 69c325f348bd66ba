"""Lock service throughput and latency on loopback: distcheck's lock service and
a Redis server with redis-py's lock, side by side in one run.

    .venv/bin/python benchmarks/lock_throughput.py [--seconds 3] [--threads 1 8 32]

For each number of contending clients, every client repeatedly acquires one lock
and releases it, for ``--seconds``; the script prints operations (acquire +
release) per second and the p50 and p99 latency of one operation, for both
services, and the ratio distcheck/Redis of the throughputs.

distcheck: a ``LockServer`` (tick 0.1 s, its log fsynced once per batch of
requests, in /dev/shm when it exists, or in ``--dir``: a directory on a real disk
shows what the fsyncs cost) in a ``FreeRuntime``, one runtime node per client (each
with its own TCP endpoint and session), talking over TCP on 127.0.0.1.  A client
here is a node, not a thread, because a lock client owns its node's mailbox.

Redis: ``redis-server`` from Debian's packages, started by this script on a free
port on 127.0.0.1 (no persistence, as Redis locks are usually run), and one
``redis.lock.Lock`` per client thread with ``sleep=0.001`` (its default of 0.1 s
between tries would measure the sleep).  Where redis-server or the redis package is
missing the script says so and measures distcheck alone.  Benchmarks are not run
by CI.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from distcheck.impl.lock import ClientTiming, LockClient, LockServer
from distcheck.impl.runtime import Context, FreeRuntime


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def summary(latencies: list[float], seconds: float) -> tuple[float, float, float]:
    """(operations per second, p50 ms, p99 ms)."""
    if not latencies:
        return 0.0, float("nan"), float("nan")
    return len(latencies) / seconds, percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000


def bench_distcheck(clients: int, seconds: float, where: str | None = None) -> tuple[float, float, float]:
    base = where if where is not None else "/dev/shm" if Path("/dev/shm").is_dir() else None
    directory = Path(tempfile.mkdtemp(prefix="lock-bench-", dir=base))
    latencies: list[float] = []
    guard = threading.Lock()
    start = threading.Event()
    done = threading.Event()
    finished = threading.Semaphore(0)

    def node(index: int) -> Callable[[Context], None]:
        def main(ctx: Context) -> None:
            client = LockClient(ctx, f"bench{index}", timing=ClientTiming(retry=1.0))
            start.wait()
            mine: list[float] = []
            try:
                while not done.is_set():
                    began = time.perf_counter()
                    with client.lock("bench", ttl=5.0, timeout=60.0):
                        pass
                    mine.append(time.perf_counter() - began)
            finally:
                with guard:
                    latencies.extend(mine)
                finished.release()

        return main

    nodes: dict[str, Callable[[Context], None]] = {"server": LockServer("server", tick=0.1).main}
    nodes.update({f"client{i}": node(i) for i in range(clients)})
    try:
        with FreeRuntime(nodes, directory):
            time.sleep(0.2)  # let every node open its endpoint
            start.set()
            time.sleep(seconds)
            done.set()
            for _ in range(clients):
                finished.acquire(timeout=30)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return summary(latencies, seconds)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis() -> tuple[subprocess.Popen[bytes], int] | str:
    """A redis-server on 127.0.0.1, or why there is none."""
    server = shutil.which("redis-server")
    if server is None:
        return "redis-server is not installed (apt-get install redis-server)"
    try:
        import redis
    except ImportError:
        return "the redis package is not installed (pip install redis)"
    port = free_port()
    cmd = [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            redis.Redis(host="127.0.0.1", port=port).ping()
            return proc, port
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.terminate()
    return "redis-server did not answer within 10 s"


def bench_redis(port: int, clients: int, seconds: float) -> tuple[float, float, float]:
    import redis

    latencies: list[float] = []
    guard = threading.Lock()
    done = threading.Event()
    pool = redis.ConnectionPool(host="127.0.0.1", port=port, max_connections=clients + 4)

    def worker() -> None:
        conn = redis.Redis(connection_pool=pool)
        mine: list[float] = []
        while not done.is_set():
            began = time.perf_counter()
            lock = conn.lock("bench", timeout=5.0, sleep=0.001, blocking_timeout=60.0)
            if lock.acquire():
                lock.release()
                mine.append(time.perf_counter() - began)
        with guard:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    done.set()
    for t in threads:
        t.join()
    return summary(latencies, seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per configuration")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 8, 32], help="contending clients")
    parser.add_argument("--dir", help="where the server keeps its log (default: /dev/shm, where fsync is cheap)")
    args = parser.parse_args()
    if args.seconds <= 0 or any(n < 1 for n in args.threads):
        print("--seconds and --threads must be positive", file=sys.stderr)
        return 2
    if args.dir is not None and not Path(args.dir).is_dir():
        print(f"--dir {args.dir}: not a directory", file=sys.stderr)
        return 2
    redis_server = start_redis()
    if isinstance(redis_server, str):
        print(f"Redis peer skipped: {redis_server}")
    else:
        print(f"Redis peer: redis-server on 127.0.0.1:{redis_server[1]}, started by this script")
    print(f"{'clients':>7}  {'service':<10} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    try:
        for n in args.threads:
            ours = bench_distcheck(n, args.seconds, args.dir)
            print(f"{n:>7}  {'distcheck':<10} {ours[0]:>9.0f} {ours[1]:>8.2f} {ours[2]:>8.2f}")
            if not isinstance(redis_server, str):
                peer = bench_redis(redis_server[1], n, args.seconds)
                ratio = ours[0] / peer[0] if peer[0] else float("nan")
                print(f"{n:>7}  {'redis-py':<10} {peer[0]:>9.0f} {peer[1]:>8.2f} {peer[2]:>8.2f}")
                print(f"{'':>7}  throughput distcheck/redis = {ratio:.2f}")
    finally:
        if not isinstance(redis_server, str):
            redis_server[0].terminate()
            redis_server[0].wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
