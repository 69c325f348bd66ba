"""The broker and its client library over TCP: confirms, ordered delivery,
acknowledgements, duplicates stored once, redelivery marked after the visibility
timeout, dead letters, both consuming styles, the idempotent receiver, recovery
from the log, and a broker process killed with SIGKILL mid-workload that loses no
confirmed message (the total-queue check)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from distcheck.checks.histories.queue import Delivery, check_total_queue
from distcheck.impl.messaging.broker import BrokerNode, BrokerTiming
from distcheck.impl.messaging.client import BrokerClient, BrokerError, IdempotentReceiver, Message
from distcheck.impl.messaging.server import NAME, client_port
from distcheck.impl.runtime.free import FreeRuntime
from tests.impl.waiting import wait_for

FAST = BrokerTiming(visibility=0.3, consumer_timeout=2.0, tick=0.02)


@contextmanager
def broker(directory: Path, timing: BrokerTiming = FAST, **options: Any) -> Iterator[tuple[BrokerNode, BrokerClient]]:
    node = BrokerNode(NAME, timing, **options)
    runtime = FreeRuntime({NAME: node.main}, directory, client_ports={NAME: client_port(0)})
    with runtime:
        client = BrokerClient(runtime.client_addresses[NAME], timeout=5.0, heartbeat=0.2)
        try:
            yield node, client
        finally:
            client.close()
    assert runtime.errors == [] and runtime.crashes == []


def take(sub: Any, n: int, within: float = 5.0) -> list[Message]:
    out: list[Message] = []
    deadline = time.monotonic() + within
    while len(out) < n:
        msg = sub.get(max(0.01, deadline - time.monotonic()))
        assert msg is not None, f"only {len(out)} of {n} deliveries within {within} s"
        out.append(msg)
    return out


def test_published_messages_are_delivered_in_order_and_removed_once_acknowledged(tmp_path: Path) -> None:
    with broker(tmp_path) as (node, client):
        ids = [client.publish("orders", {"n": i}) for i in range(50)]
        sub = client.consumer("orders", prefetch=8)
        got = []
        for _ in range(50):
            got += take(sub, 1)
            got[-1].ack()
        assert [m.id for m in got] == ids and [m.body["n"] for m in got] == list(range(50))
        assert not any(m.redelivered for m in got)
        wait_for(lambda: node.stored == {}, "every acknowledged message to be removed")


def test_prefetch_bounds_what_a_consumer_holds_and_consumers_share_a_queue(tmp_path: Path) -> None:
    with broker(tmp_path) as (_, client):
        for i in range(10):
            client.publish("jobs", i)
        other = BrokerClient(client.address, heartbeat=0.2)
        try:
            first, second = client.consumer("jobs", prefetch=2), other.consumer("jobs", prefetch=3)
            a, b = take(first, 2), take(second, 3)
            time.sleep(0.1)
            assert first.get(0.05) is None and second.get(0.05) is None  # full: nothing more until an ack
            assert sorted(m.body for m in a + b) == [0, 1, 2, 3, 4]
            a[0].ack()
            assert take(first, 1)[0].body == 5
        finally:
            other.close()


def test_a_message_published_twice_is_stored_once_and_confirmed_twice(tmp_path: Path) -> None:
    with broker(tmp_path) as (node, client):
        assert client.publish("q", "x", id="order-7") == "order-7"
        assert client.publish("q", "x", id="order-7") == "order-7"
        assert list(node.stored) == ["order-7"]
        sub = client.consumer("q")
        take(sub, 1)[0].ack()
        wait_for(lambda: node.stored == {}, "removal")
        client.publish("q", "x", id="order-7")  # removed, and remembered: not stored again
        assert sub.get(0.3) is None


def test_an_unacknowledged_message_comes_back_marked_after_the_visibility_timeout(tmp_path: Path) -> None:
    with broker(tmp_path) as (_, client):
        client.publish("q", "x")
        sub = client.consumer("q")
        first = take(sub, 1)[0]
        again = take(sub, 1, within=3.0)[0]  # not acknowledged within 0.3 s
        assert (first.redelivered, first.deliveries) == (False, 1)
        assert (again.id, again.redelivered, again.deliveries) == (first.id, True, 2)
        again.ack()


def test_a_message_is_dead_lettered_after_its_deliveries_and_by_a_nack(tmp_path: Path) -> None:
    with broker(tmp_path, max_deliveries=2) as (_, client):
        client.publish("q", "poison")
        client.publish("q", "refused")
        sub = client.consumer("q")
        for m in take(sub, 2):
            if m.body == "refused":
                m.nack(requeue=False)
        take(sub, 1, within=3.0)  # the poison's second delivery, not acknowledged either
        dead = client.consumer("q.dead")
        assert sorted(m.body for m in take(dead, 2, within=3.0)) == ["poison", "refused"]


def test_callbacks_and_async_publishes(tmp_path: Path) -> None:
    with broker(tmp_path) as (_, client):
        confirmed: list[str] = []
        ids = [client.publish_async("events", i, on_confirm=confirmed.append) for i in range(20)]
        assert client.flush(5.0)
        assert sorted(confirmed) == sorted(ids)
        seen: list[int] = []

        def handle(msg: Message) -> None:
            seen.append(msg.body)
            msg.ack()

        client.consume("events", handle, prefetch=5)
        wait_for(lambda: len(seen) == 20, "every event handled")
        assert seen == list(range(20))


def test_bad_names_fail_in_the_client_with_the_reason(tmp_path: Path) -> None:
    with broker(tmp_path) as (_, client):
        with pytest.raises(ValueError, match=r"Publish\.queue must be 1 to 200 characters"):
            client.publish("has space", 1)
        with pytest.raises(ValueError, match="prefetch must be between 1 and 10000"):
            client.consumer("q", prefetch=0)


def test_the_idempotent_receiver_applies_each_message_once(tmp_path: Path) -> None:
    with broker(tmp_path) as (_, client):
        receiver = IdempotentReceiver(tmp_path / "effects.db")
        receiver.db.execute("CREATE TABLE total (n INTEGER)")
        receiver.db.execute("INSERT INTO total VALUES (0)")
        client.publish("q", 5)
        sub = client.consumer("q")
        first = take(sub, 1)[0]
        # applied, but the acknowledgement "lost": the broker delivers it again
        assert receiver.apply(first, lambda db: db.execute("UPDATE total SET n = n + ?", (first.body,)), ack=False)
        again = take(sub, 1, within=3.0)[0]
        assert again.redelivered
        assert not receiver.apply(again, lambda db: db.execute("UPDATE total SET n = n + ?", (again.body,)))
        assert receiver.db.execute("SELECT n FROM total").fetchone() == (5,)
        receiver.close()


def test_a_restarted_broker_recovers_what_it_confirmed_marked_redelivered(tmp_path: Path) -> None:
    with broker(tmp_path) as (node, client):
        kept = [client.publish("q", i) for i in range(5)]
        sub = client.consumer("q")
        for m in take(sub, 2):
            m.ack()
        wait_for(lambda: len(node.stored) == 3, "two removals")
    with broker(tmp_path) as (node, client):
        again = take(client.consumer("q"), 3)
        assert [m.id for m in again] == kept[2:] and all(m.redelivered for m in again)


def test_publishing_to_a_broker_that_is_down_times_out_with_the_reason() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = BrokerClient(("127.0.0.1", port), timeout=0.3)
    with pytest.raises(BrokerError, match=r"not confirmed within 0\.3 s"):
        client.publish("q", 1)
    client.close()


# ------------------------------------------------------------------ kill -9


def start_server(port: int, data: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "distcheck.impl.messaging.server", "--port", str(port), "--data", str(data)),
            *("--visibility", "1.0", "--consumer-timeout", "3.0"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "the broker did not start"
            time.sleep(0.05)


def test_a_broker_killed_mid_workload_loses_no_confirmed_message(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = start_server(port, tmp_path)
    published: set[str] = set()
    confirmed: set[str] = set()
    deliveries: list[Delivery] = []
    acked: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def producer(p: int) -> None:
        client = BrokerClient(("127.0.0.1", port), timeout=10.0)
        i = 0
        while not stop.is_set():
            mid = f"p{p}-{i}"
            with lock:
                published.add(mid)
            try:
                client.publish("work", {"p": p, "i": i}, id=mid)
            except BrokerError:
                continue  # not confirmed in time: publish the next (this one may be stored)
            with lock:
                confirmed.add(mid)
            i += 1
        client.close()

    consumer_client = BrokerClient(("127.0.0.1", port), timeout=10.0, heartbeat=0.3)

    hold = threading.Event()  # while set, the consumer takes deliveries and acknowledges none
    held: list[str] = []

    def consumer() -> None:
        for msg in consumer_client.consumer("work", prefetch=20):
            with lock:
                deliveries.append(Delivery(msg.id, msg.redelivered))
                if hold.is_set():
                    held.append(msg.id)
                    continue
                acked.add(msg.id)
            msg.ack()

    threads = [threading.Thread(target=producer, args=(p,)) for p in range(3)]
    threads.append(threading.Thread(target=consumer))
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(confirmed) >= 400 and len(acked) >= 100, "400 confirmed, 100 consumed", timeout=30)
        hold.set()  # the kill must find deliveries not acknowledged: they come back, marked
        wait_for(lambda: len(held) >= 1, "a delivery held unacknowledged", timeout=30)
        proc.kill()  # SIGKILL: no clean-up, what was not fsynced is gone
        proc.wait()
        before = len(confirmed)
        proc = start_server(port, tmp_path)
        hold.clear()
        wait_for(lambda: len(confirmed) >= before + 400, "400 more after the restart", timeout=30)
        stop.set()
        for t in threads[:-1]:
            t.join(20)
        final = set(confirmed)
        wait_for(lambda: final <= acked, "every confirmed message consumed", timeout=30)
    finally:
        stop.set()
        consumer_client.close()
        proc.terminate()
        proc.wait(10)
    with lock:
        verdict = check_total_queue(published, confirmed, list(deliveries), acked)
        redelivered = sum(d.redelivered for d in deliveries)
    assert verdict.ok, verdict.message
    assert redelivered >= 1  # what was held came back marked redelivered


# ------------------------------------------------------------------ the checker itself


def test_the_total_queue_check_catches_loss_invention_and_unmarked_repeats() -> None:
    ok = check_total_queue({"a", "b"}, {"a"}, [Delivery("a", False), Delivery("a", True)], {"a"})
    assert ok.ok and "1 repeated delivery" in ok.message
    lost = check_total_queue({"a", "b"}, {"a", "b"}, [Delivery("a", False)], {"a"})
    assert not lost.ok and lost.lost == ("b",)
    invented = check_total_queue({"a"}, {"a"}, [Delivery("a", False), Delivery("z", False)], {"a", "z"})
    assert not invented.ok and invented.invented == ("z",)
    unmarked = check_total_queue({"a"}, {"a"}, [Delivery("a", False), Delivery("a", False)], {"a"})
    assert not unmarked.ok and unmarked.unmarked == ("a",)
