"""The replicated lock service (``impl.lock.replicated``): its state machine on its
own (deterministic, so tested command by command), and the service as it is run,
three server processes on loopback whose leader is killed under load."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from distcheck.impl.lock import FencedStore, LockLost
from distcheck.impl.lock import storage as lock_storage
from distcheck.impl.lock.messages import Write
from distcheck.impl.lock.replicated import LockMachine, parse_key, read_key, wait_key
from distcheck.impl.lock.replicated_client import ReplicatedLease, ReplicatedLockClient, ReplicatedTiming
from distcheck.impl.raft.client import ClientTiming
from distcheck.impl.raft.cluster import LocalCluster
from distcheck.impl.runtime import Context, FreeRuntime
from distcheck.impl.runtime.actor import MessageError, encode
from distcheck.impl.runtime.api import Envelope
from distcheck.impl.runtime.storage import read_log
from tests.impl.waiting import WAIT, wait_for


class Log:
    """Feeds a machine commands as a Raft log would: one index each."""

    def __init__(self) -> None:
        self.machine = LockMachine()
        self.index = 0
        self.seqs: dict[str, int] = {}

    def run(self, client: str, op: dict[str, Any]) -> Any:
        self.index += 1
        seq = self.seqs[client] = self.seqs.get(client, 0) + 1
        return self.machine.apply(self.index, {"id": f"{client}:{seq}", "client": client, "seq": seq, "op": op})


def acquire(session: str, req: str = "r1", lock: str = "a") -> dict[str, Any]:
    return {"op": "acquire", "lock": lock, "session": session, "req": req, "ttl": 2.0}


def release(session: str, token: int, lock: str = "a") -> dict[str, Any]:
    return {"op": "release", "lock": lock, "session": session, "token": token}


def test_tokens_come_from_applied_commands_and_a_freed_lock_goes_to_the_oldest_waiter() -> None:
    log = Log()
    assert log.run("c1", acquire("s1")) == {"token": 1, "req": "r1", "granted": True, "ttl": 2.0, "new": True}
    assert log.run("c2", acquire("s2"))["granted"] is False
    assert log.run("c3", acquire("s3"))["granted"] is False
    # a retry of s2's request (same req) is its place in the queue, not a new token
    assert log.run("c2", acquire("s2")) == {"token": 2, "req": "r1", "granted": False, "ttl": 2.0}
    assert log.run("c2", acquire("s2", req="other")) == {"busy": 2}
    # the release hands the lock to the oldest waiter in the same entry
    assert log.run("c1", release("s1", 1)) is True
    assert log.machine.table("a").holder == 2 and log.machine.table("a").queue == [3]
    assert log.machine.read(read_key("a", "s2"))["granted"] is True
    # and so does an expiry
    log.run("@n1/2", {"op": "expire", "lock": "a", "token": 2, "renewals": 0})
    assert log.machine.table("a").holder == 3
    assert log.run("c4", acquire("s4"))["token"] == 4  # tokens only go up


def test_a_query_key_is_a_lock_a_session_and_how_long_the_leader_may_hold_it() -> None:
    assert parse_key(read_key("a", "s1")) == ("a", "s1", 0.0)
    assert parse_key(wait_key("a", "s1", 0.25)) == ("a", "s1", 0.25)
    for bad in ("", "[", "{}", '["a"]', '["a", 1]', '["a", "s", "x"]', '["a", "s", NaN]', '["a", "s", 1, 2]'):
        assert parse_key(bad) is None, bad
        assert LockMachine().read(bad) is None


def test_an_expiry_loses_to_a_renewal_applied_after_the_leader_decided_it() -> None:
    log = Log()
    log.run("c1", acquire("s1"))
    renew = {"op": "renew", "lock": "a", "session": "s1", "token": 1}
    assert log.run("c1", renew) == {"renewed": True, "ttl": 2.0}
    log.run("@n1/2", {"op": "expire", "lock": "a", "token": 1, "renewals": 0})  # decided before the renewal
    assert log.machine.table("a").holder == 1
    log.run("@n1/2", {"op": "expire", "lock": "a", "token": 1, "renewals": 1})
    assert log.machine.table("a").holder is None and log.machine.read(read_key("a", "s1")) is None
    assert log.run("c1", renew) == {"renewed": False}  # lost for good
    assert log.run("c1", release("s1", 1)) is False


def test_a_waiter_may_give_up_its_place() -> None:
    log = Log()
    log.run("c1", acquire("s1"))
    log.run("c2", acquire("s2"))
    log.run("c3", acquire("s3"))
    assert log.run("c2", release("s2", 2)) is True
    assert log.machine.table("a").queue == [3]


def test_a_snapshot_restores_the_same_machine() -> None:
    log = Log()
    log.run("c1", acquire("s1"))
    log.run("c2", acquire("s2"))
    log.run("c1", {"op": "renew", "lock": "a", "session": "s1", "token": 1})
    copy = LockMachine()
    copy.restore(log.machine.snapshot())
    assert copy == log.machine


@pytest.mark.parametrize(
    "op",
    [
        {"op": "expire", "lock": "a", "token": 1, "renewals": 0},  # the leader's alone
        {"op": "acquire", "lock": "a", "session": "s", "req": "r", "ttl": 0},
        {"op": "acquire", "lock": "a", "session": "s", "req": "r", "ttl": float("inf")},
        {"op": "acquire", "lock": "a", "session": "s", "req": "r", "ttl": 1.0, "grant": True},  # no such field
        {"op": "renew", "lock": "a", "session": "s", "token": True},
        {"op": "put", "key": "k", "value": 1},
    ],
)
def test_a_client_command_the_machine_does_not_take_is_refused(op: dict[str, Any]) -> None:
    with pytest.raises(MessageError):
        LockMachine().check(op)


# ------------------------------------------------------------------ the service, run


TTL = 2.0  # seconds; a client trusts 1.8 of them, and a new leader waits out an inherited lease for 2.2
WORKERS = 4


def test_no_two_clients_hold_the_lock_at_once_when_the_leader_is_killed(tmp_path: Path) -> None:
    """Three lock servers (processes); four clients, each in a node of a runtime that
    also hosts the fencing storage, take turns on one lock and write twice under
    each lease.  The leader is killed (SIGKILL) while a client holds the lock, and
    that client goes on holding it, checking its lease, through the election and
    for a while under the new leader; then the clients go on taking turns.

    From the storage's durable log: no token was used by two sessions, no write was
    rejected, and each lease's writes are together, in token order (two leases held
    at once would interleave them).  From the clients' own checks of their leases
    (the same clock, one process): no two leases were trusted at overlapping times,
    which is what fails if a new leader hands the lock on while the old leader's
    lease is still trusted."""
    with LocalCluster(3, tmp_path / "servers", module="distcheck.impl.lock.replicated_server") as cluster:
        stop = threading.Event()
        finished: set[str] = set()
        holding: set[str] = set()  # clients told to keep the lock, holding it
        hold_until = [0.0]
        #: token, session, and the first and last time its holder found its lease valid
        windows: list[tuple[int, str, float, float]] = []
        lost: list[str] = []
        # Renewals late in the lease (after 1.08 s of 1.8): a holder then trusts its
        # lease for a while after the kill before it next speaks to a server, and a
        # new leader that handed the lock on at once would be seen doing it.
        timing = ReplicatedTiming(poll=0.15, renew_every=0.6, raft=ClientTiming(attempt=0.3, timeout=10.0))
        leases: dict[str, ReplicatedLease] = {}

        def worker(session: str) -> Callable[[Context], None]:
            def main(ctx: Context) -> None:
                client = ReplicatedLockClient(cluster.addresses, session=session, timing=timing)
                writes = 0

                def checked(lease: ReplicatedLease, checks: list[float]) -> None:
                    now = time.monotonic()
                    lease.check()
                    checks.append(now)

                try:
                    while not stop.is_set():
                        checks: list[float] = []
                        try:
                            with client.lock("res", ttl=TTL, timeout=WAIT) as lease:
                                try:
                                    for phase in ("begin", "end"):
                                        checked(lease, checks)
                                        writes += 1
                                        value = {"session": session, "token": lease.token, "phase": phase}
                                        write(
                                            ctx, Write(f"{session}:{writes}", "res", lease.token, session, "res", value)
                                        )
                                        while phase == "begin" and time.monotonic() < hold_until[0]:
                                            leases[session] = lease
                                            holding.add(session)
                                            now = time.monotonic()
                                            if lease.valid():  # (a lapse is no loss: a renewal may follow)
                                                checks.append(now)
                                            ctx.sleep(0.01)
                                        holding.discard(session)
                                finally:
                                    if checks:
                                        windows.append((lease.token, session, checks[0], checks[-1]))
                        except LockLost as exc:
                            holding.discard(session)
                            lost.append(str(exc))
                finally:
                    client.close()
                    finished.add(session)

            return main

        nodes = {"storage": FencedStore().main} | {f"w{i}": worker(f"w{i}") for i in range(WORKERS)}
        with FreeRuntime(nodes, tmp_path / "runtime") as runtime:
            wait_for(lambda: len(windows) >= 10, "ten leases before the kill")
            hold_until[0] = time.monotonic() + WAIT
            wait_for(lambda: bool(holding), "a client holding the lock")
            holder = leases[next(iter(holding))]
            renewed = holder.trust_until
            wait_for(lambda: holder.trust_until > renewed, "the holder's next renewal")
            time.sleep(0.2)  # every server has applied that renewal: the new leader knows the lease
            killed = cluster.leader()
            cluster.kill(killed)
            assert cluster.leader() != killed
            time.sleep(1.5)  # the holder keeps the lock under the new leader for a while
            hold_until[0] = 0.0
            before = len(windows)
            wait_for(lambda: len(windows) >= before + 10, "ten leases after the kill", timeout=60.0)
            stop.set()
            wait_for(lambda: len(finished) == WORKERS, "the clients to finish")
        assert runtime.errors == []

    stored = lock_storage.recover(read_log(tmp_path / "runtime" / "storage" / "data.log"))
    assert stored.rejected == {}, "a write of an older lease reached storage after a newer lease's"
    sessions: dict[int, set[str]] = {}
    for record in stored.writes:
        sessions.setdefault(record["token"], set()).add(record["session"])
    assert all(len(s) == 1 for s in sessions.values()), f"a token was used by two sessions: {sessions}"
    tokens = [record["token"] for record in stored.writes]
    runs = [t for k, t in enumerate(tokens) if k == 0 or tokens[k - 1] != t]
    assert runs == sorted(set(runs)), f"leases' writes interleaved or a token came back: {runs}"
    windows.sort(key=lambda w: w[2])
    for (t1, s1, _, end1), (t2, s2, start2, _) in itertools.pairwise(windows):
        assert end1 < start2 and t1 < t2, f"{s1} (token {t1}) and {s2} (token {t2}) held the lock at once"
    assert len(windows) >= 20
    # the holder kept its lease across the leader change (its renewals failed over)
    assert lost == [], lost


def write(ctx: Context, msg: Write) -> None:
    """Send a write to storage until it answers (it decides a write id once)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        ctx.send("storage", encode(msg))
        item = ctx.receive(timeout=0.5)
        if isinstance(item, Envelope) and item.msg.get("type") == "WriteResult" and item.msg.get("wid") == msg.wid:
            return
    raise AssertionError(f"storage did not answer {msg.wid}")
