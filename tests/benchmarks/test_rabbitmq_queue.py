"""The total-queue check on a broker we did not write: RabbitMQ (Debian's
``rabbitmq-server``, a private node started here; ``pika`` as the client), with
the workload of ``tests/impl/test_messaging.py``'s kill test: three producers
publishing persistent messages to a durable queue with publisher confirms, one
consumer acknowledging, the node killed with SIGKILL mid-workload and started again
on its data.  The check must find every confirmed message delivered and
acknowledged, nothing invented, and every repeated delivery marked redelivered.
Skipped, with the reason, where RabbitMQ or pika is missing (CI installs both).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from rabbitmq import RabbitNode, connect, missing, produce  # a script folder, on the path above

from distcheck.checks.histories.queue import Delivery, check_total_queue
from tests.impl.waiting import wait_for

WHY_NOT = missing()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=str(WHY_NOT))

QUEUE = "work"


def test_rabbitmq_killed_mid_workload_loses_no_confirmed_message(tmp_path: Path) -> None:

    node = RabbitNode(tmp_path)
    node.start()
    published: set[str] = set()
    confirmed: set[str] = set()
    deliveries: list[Delivery] = []
    acked: set[str] = set()
    lock = threading.Lock()
    stop, stop_consumer = threading.Event(), threading.Event()

    def producer(p: int) -> None:
        def note(into: set[str]) -> Callable[[str], None]:
            def add(mid: str) -> None:
                with lock:
                    into.add(mid)

            return add

        produce(node, QUEUE, f"p{p}", stop, note(published), note(confirmed))

    def consumer() -> None:
        connection: Any = None
        channel: Any = None
        while not stop_consumer.is_set():
            if channel is None or connection.is_closed:
                connection, channel = connect(node, QUEUE, stop_consumer)
                if channel is None:
                    return
                channel.basic_qos(prefetch_count=20)
            try:
                for method, properties, _ in channel.consume(QUEUE, inactivity_timeout=0.2):
                    if stop_consumer.is_set():
                        break
                    if method is None:
                        continue
                    with lock:
                        deliveries.append(Delivery(properties.message_id, method.redelivered))
                        acked.add(properties.message_id)
                    channel.basic_ack(method.delivery_tag)
            except Exception:
                channel = None
        if connection is not None and connection.is_open:
            connection.close()

    threads = [threading.Thread(target=producer, args=(p,)) for p in range(3)]
    threads.append(threading.Thread(target=consumer))
    try:
        # producers first: the queue must exist, and producers confirm-select on connect
        for t in threads:
            t.start()
        wait_for(lambda: len(confirmed) >= 300 and len(acked) >= 100, "300 confirmed, 100 consumed", timeout=60)
        node.kill()
        before = len(confirmed)
        node.start()
        wait_for(lambda: len(confirmed) >= before + 300, "300 more after the restart", timeout=60)
        stop.set()
        for t in threads[:-1]:
            t.join(30)
        final = set(confirmed)
        wait_for(lambda: final <= acked, "every confirmed message consumed", timeout=60)
    finally:
        stop.set()
        stop_consumer.set()
        threads[-1].join(30)
        node.stop()
    with lock:
        verdict = check_total_queue(published, confirmed, list(deliveries), acked)
    assert verdict.ok, verdict.message
