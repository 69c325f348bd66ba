"""RabbitMQ killed while a consumer holds deliveries: does every confirmed message
come back?  A reproduction, round after round, with the total-queue check.

    .venv/bin/python benchmarks/rabbitmq_held_kill.py [--rounds 10] [--prefetch 20] [--json]

Each round starts a fresh private RabbitMQ node (``benchmarks/rabbitmq.py``: Debian's
``rabbitmq-server``, its own data directory), declares a durable classic queue, and
runs three producers publishing persistent messages (``delivery_mode=2``) with
publisher confirms (a message counts as confirmed once pika's ``basic_publish``
returned) and one consumer with a prefetch of ``--prefetch`` that acknowledges what
it gets.  Once 300 messages are confirmed and 100 consumed, the consumer stops
acknowledging: it takes ``--prefetch`` deliveries and holds them.  Then the node is
killed with SIGKILL (the whole process group: no clean shutdown, but whatever the
node had written is in the kernel's page cache and survives) and started again on
its data; the producers and the consumer reconnect, 300 more messages are confirmed,
and the consumer acknowledges everything it gets from then on.  At the end
``checks.histories.queue.check_total_queue`` says whether every confirmed message
was delivered and acknowledged.  For each message lost, the round reports when it was
confirmed relative to the kill and whether it was among the held deliveries.

Our broker's kill test (``tests/impl/test_messaging.py``) runs the same shape of
workload against ours, its consumer holding deliveries across the kill.  Not run by
CI (each round takes 20-40 s).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rabbitmq import RabbitNode, connect, missing, produce  # this folder, on the path above

from distcheck.checks.histories.queue import Delivery, check_total_queue

QUEUE = "work"
WAIT = 60.0


def wait_for(condition: Any, what: str, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def one_round(prefetch: int) -> dict[str, Any]:

    node = RabbitNode(Path(tempfile.mkdtemp(prefix="distcheck-rabbit-held-")))
    node.start()
    lock = threading.Lock()
    published: set[str] = set()
    confirmed: dict[str, float] = {}
    deliveries: list[Delivery] = []
    delivered_before_kill: set[str] = set()
    acked: set[str] = set()
    held: list[str] = []
    stop, stop_consumer, holding, killed = (threading.Event() for _ in range(4))
    kill_time = [0.0]

    def producer(p: int) -> None:
        def sent(mid: str) -> None:
            with lock:
                published.add(mid)

        def confirm(mid: str) -> None:
            with lock:
                confirmed[mid] = time.monotonic()

        produce(node, QUEUE, f"p{p}", stop, sent, confirm)

    def consumer() -> None:
        connection: Any = None
        channel: Any = None
        while not stop_consumer.is_set():
            if channel is None or connection.is_closed:
                connection, channel = connect(node, QUEUE, stop_consumer)
                if channel is None:
                    return
                channel.basic_qos(prefetch_count=prefetch)
            try:
                for method, properties, _ in channel.consume(QUEUE, inactivity_timeout=0.2):
                    if stop_consumer.is_set():
                        break
                    if method is None:
                        continue
                    mid = properties.message_id
                    with lock:
                        deliveries.append(Delivery(mid, method.redelivered))
                        if not killed.is_set():
                            delivered_before_kill.add(mid)
                        if holding.is_set() and not killed.is_set():
                            held.append(mid)  # taken and kept, never acknowledged
                            continue
                    channel.basic_ack(method.delivery_tag)
                    with lock:
                        acked.add(mid)
            except Exception:
                channel = None
        if connection is not None and connection.is_open:
            connection.close()

    threads = [threading.Thread(target=producer, args=(p,), daemon=True) for p in range(3)]
    threads.append(threading.Thread(target=consumer, daemon=True))
    try:
        for t in threads:
            t.start()
        if not wait_for(lambda: len(confirmed) >= 300 and len(acked) >= 100, "warm-up"):
            raise RuntimeError("the workload did not start (300 confirmed, 100 consumed)")
        holding.set()
        if not wait_for(lambda: len(held) >= prefetch, "held deliveries"):
            raise RuntimeError(f"the consumer did not get {prefetch} deliveries to hold")
        with lock:
            kill_time[0] = time.monotonic()
            killed.set()
        node.kill()
        before = len(confirmed)
        node.start()
        if not wait_for(lambda: len(confirmed) >= before + 300, "300 more after the restart"):
            raise RuntimeError("the producers did not go on after the restart")
        stop.set()
        for t in threads[:-1]:
            t.join(30)
        final = set(confirmed)
        wait_for(lambda: final <= acked, "every confirmed message consumed", timeout=30)
    finally:
        stop.set()
        stop_consumer.set()
        threads[-1].join(30)
        node.stop()
    with lock:
        verdict = check_total_queue(published, set(confirmed), list(deliveries), acked)
        lost = sorted(set(confirmed) - acked, key=lambda m: confirmed[m])
        return {
            "confirmed": len(confirmed),
            "held": len(held),
            "ok": verdict.ok,
            "verdict": verdict.message,
            "lost": len(lost),
            "lost_held": sum(1 for m in lost if m in held),
            "lost_delivered_before_kill": sum(1 for m in lost if m in delivered_before_kill),
            # seconds before the kill that the lost messages were confirmed (oldest, newest)
            "lost_confirmed_before_kill_s": (
                [round(kill_time[0] - confirmed[lost[0]], 4), round(kill_time[0] - confirmed[lost[-1]], 4)]
                if lost
                else None
            ),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--prefetch", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.rounds < 1 or not 1 <= args.prefetch <= 1000:
        print("--rounds must be at least 1 and --prefetch between 1 and 1000", file=sys.stderr)
        return 2
    why = missing()
    if why is not None:
        print(f"skipped: {why}", file=sys.stderr)
        return 0
    rounds = []
    for n in range(1, args.rounds + 1):
        row = one_round(args.prefetch)
        rounds.append(row)
        if not args.json:
            lost = "" if row["ok"] else f"; {row['verdict']}"
            window = row["lost_confirmed_before_kill_s"]
            when = (
                ""
                if window is None
                else f", confirmed {window[0] * 1000:.0f} to {window[1] * 1000:.0f} ms before the kill"
            )
            print(
                f"round {n}: {row['confirmed']} confirmed, {row['held']} held at the kill, "
                f"{row['lost']} lost ({row['lost_held']} of them held){when}{lost}"
            )
    failed = sum(1 for r in rounds if not r["ok"])
    if args.json:
        print(json.dumps({"rounds": rounds, "rounds_losing_confirmed": failed}, indent=2))
    else:
        print(f"{failed} of {len(rounds)} round(s) lost confirmed messages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
