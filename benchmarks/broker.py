"""Durable message brokers side by side in one run: distcheck's broker and RabbitMQ.

    .venv/bin/python benchmarks/broker.py [--producers 1 8 32] [--seconds 3] [--systems ours,rabbitmq] [--json]

For each system and number of producers, a fresh broker (data in a new temporary
directory, removed at the end) and a fresh queue: the producers publish 100-byte
persistent messages, each waiting for its publisher confirm before the next (so a
producer's rate is one over the confirm latency), for ``--seconds``; one consumer
takes them with a prefetch of 100 and acknowledges each.  Printed per cell: confirmed
publishes per second, the p50 and p99 of the publish-to-consume latency (from the
moment a producer sends a message to the moment the consumer has it; one clock,
one machine), and ``ours/this`` (the ratio of the publish rates; below 1: ours is
slower).  Producers are threads spread over up to four worker processes, the
consumer a process of its own, so that the load generator does not fight one GIL.
The machine has 2 cores shared by everything: compare within one run.

The systems:

- ours: ``python -m distcheck.impl.messaging.server`` (one process), the client
  library's ``BrokerClient.publish`` (blocking until confirmed) and ``consumer``;
  every publish is fsynced before it is confirmed (group commit).
- rabbitmq: Debian's ``rabbitmq-server`` as a private node (``benchmarks/rabbitmq.py``),
  a durable queue, ``delivery_mode=2`` messages, ``confirm_delivery`` (pika's
  ``BlockingConnection``: ``basic_publish`` returns once confirmed) and
  ``basic_consume`` with ``basic_qos(prefetch_count=100)``.  RabbitMQ confirms a
  persistent message once it is written to disk.  Skipped, with the reason, where
  rabbitmq-server or pika is missing.

Benchmarks are not run by CI.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from rabbitmq import RabbitNode, free_port  # noqa: E402  (this folder, put on the path above)
from rabbitmq import missing as rabbitmq_missing  # noqa: E402

SYSTEMS = ("ours", "rabbitmq")
QUEUE = "bench"
BODY_BYTES = 100
MAX_WORKERS = 4
PREFETCH = 100


def body(sent_at: float) -> bytes:
    stamp = f"{sent_at:.9f}".encode()
    return stamp + b" " * (BODY_BYTES - len(stamp))


# --------------------------------------------------------------------- the systems


class Ours:
    name = "ours"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "distcheck.impl.messaging.server"),
                *("--port", str(self.port), "--data", str(self.directory)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("our broker did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def producer(self) -> Callable[[bytes], None]:
        from distcheck.impl.messaging.client import BrokerClient

        client = BrokerClient(("127.0.0.1", self.port), timeout=30.0)

        def publish(payload: bytes) -> None:
            client.publish(QUEUE, payload.decode())

        return publish

    def consume(self, on_message: Callable[[bytes], None], stop: threading.Event) -> None:
        from distcheck.impl.messaging.client import BrokerClient

        client = BrokerClient(("127.0.0.1", self.port), timeout=30.0)
        sub = client.consumer(QUEUE, prefetch=PREFETCH)
        while not stop.is_set():
            msg = sub.get(0.2)
            if msg is not None:
                on_message(str(msg.body).encode())
                msg.ack()
        client.close()


class Rabbit:
    name = "rabbitmq"

    def __init__(self, directory: Path) -> None:
        self.node = RabbitNode(directory)

    def start(self) -> None:
        self.node.start()
        import pika

        connection = pika.BlockingConnection(self.node.parameters())
        connection.channel().queue_declare(QUEUE, durable=True)
        connection.close()

    def stop(self) -> None:
        self.node.stop()

    def producer(self) -> Callable[[bytes], None]:
        import pika

        channel = pika.BlockingConnection(self.node.parameters(timeout=30.0)).channel()
        channel.confirm_delivery()
        properties = pika.BasicProperties(delivery_mode=2)
        return lambda payload: channel.basic_publish("", QUEUE, payload, properties, mandatory=True)

    def consume(self, on_message: Callable[[bytes], None], stop: threading.Event) -> None:
        import pika

        connection = pika.BlockingConnection(self.node.parameters(timeout=30.0))
        channel = connection.channel()
        channel.basic_qos(prefetch_count=PREFETCH)
        for method, _, payload in channel.consume(QUEUE, inactivity_timeout=0.2):
            if stop.is_set():
                break
            if method is not None:
                on_message(payload)
                channel.basic_ack(method.delivery_tag)
        connection.close()


SYSTEM_TYPES: dict[str, type[Ours] | type[Rabbit]] = {"ours": Ours, "rabbitmq": Rabbit}


# --------------------------------------------------------------------- the load


def _producers(system: Any, threads: int, until: float, counts: Any) -> None:
    """One worker process: ``threads`` producers publishing until ``until`` (time.time())."""
    done = [0] * threads

    def run(t: int) -> None:
        publish = system.producer()
        while time.time() < until:
            publish(body(time.time()))
            done[t] += 1

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    counts.put(sum(done))


def _consumer(system: Any, until: float, results: Any) -> None:
    latencies: list[float] = []
    stop = threading.Event()
    threading.Timer(max(0.0, until - time.time()) + 2.0, stop.set).start()

    def on_message(payload: bytes) -> None:
        sent = float(payload.split(b" ", 1)[0])
        if sent < until:
            latencies.append(time.time() - sent)

    system.consume(on_message, stop)
    results.put(latencies)


def cell(system: Any, producers: int, seconds: float) -> dict[str, Any]:
    ctx = multiprocessing.get_context("fork")
    counts, results = ctx.Queue(), ctx.Queue()
    start = time.time() + 1.0
    until = start + seconds
    consumer = ctx.Process(target=_consumer, args=(system, until, results))
    consumer.start()
    workers = min(MAX_WORKERS, producers)
    shares = [producers // workers + (1 if w < producers % workers else 0) for w in range(workers)]
    time.sleep(max(0.0, start - time.time()))
    procs = [ctx.Process(target=_producers, args=(system, n, until, counts)) for n in shares]
    for p in procs:
        p.start()
    total = sum(counts.get(timeout=seconds + 120) for _ in procs)
    for p in procs:
        p.join()
    latencies = sorted(results.get(timeout=seconds + 120))
    consumer.join()

    def pct(q: float) -> float | None:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else None

    return {
        "producers": producers,
        "publishes_per_s": total / seconds,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "consumed": len(latencies),
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else None,
    }


def text(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--producers", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.systems.split(",") if n.strip()]
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown or args.seconds <= 0 or any(p < 1 for p in args.producers):
        print(
            f"--systems among {', '.join(SYSTEMS)}; --seconds and --producers positive (got {unknown or args})",
            file=sys.stderr,
        )
        return 2
    say: Callable[[str], None] = (lambda line: None) if args.json else print
    results: dict[str, Any] = {}
    ours: dict[int, float] = {}
    say(f"{'system':<9} {'producers':>9} {'publish/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'ours/this':>9}")
    for name in sorted(names, key=SYSTEMS.index):
        why = rabbitmq_missing() if name == "rabbitmq" else None
        if why is not None:
            results[name] = {"skipped": why}
            say(f"{name}: skipped: {why}")
            continue
        rows = []
        for n in args.producers:
            with tempfile.TemporaryDirectory() as directory:
                system = SYSTEM_TYPES[name](Path(directory))
                system.start()
                try:
                    row = cell(system, n, args.seconds)
                finally:
                    system.stop()
            if name == "ours":
                ours[n] = row["publishes_per_s"]
            row["ours_over_this"] = ours[n] / row["publishes_per_s"] if n in ours and row["publishes_per_s"] else None
            rows.append(row)
            say(
                f"{name:<9} {n:>9} {row['publishes_per_s']:>10.0f} {text(row['p50_ms'], 2):>8}"
                f" {text(row['p99_ms'], 2):>8} {text(row['ours_over_this'], 2):>9}"
            )
        results[name] = {"cells": rows}
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
