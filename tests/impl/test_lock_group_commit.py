"""The lock server's fsyncs: at most one per acquire and one per release for a lone
client, and fewer than operations when several clients' requests share a sync
(group commit, docs/lock-service.md "Durability and restarts").

The fsyncs are counted where they happen: ``os.fsync`` is wrapped, and each call is
attributed to the file its descriptor names, so only the server's lease log counts
(the clients' session logs and the runtime's other files do not).  Before group
commit the server made three per acquire and release (the request, the grant, the
release, each synced on its own), so these counts would fail."""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from distcheck.impl.lock import ClientTiming, LockClient, LockServer
from distcheck.impl.runtime import Context, FreeRuntime
from distcheck.impl.runtime.controlled import run_simulation
from distcheck.impl.runtime.strategies import RandomChoices
from tests.impl.waiting import WAIT, wait_for

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name a descriptor's file")

#: the server's lease log, as the runtimes name it: <directory>/server/leases.log
SERVER_LOG = os.path.join("server", f"{LockServer.LOG}.log")


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """fsyncs so far, by the path of the file synced (every thread's)."""
    counts: Counter[str] = Counter()
    guard = threading.Lock()
    real = os.fsync

    def counting(fd: int) -> None:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = "?"
        with guard:
            counts[path] += 1
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    yield counts


def server_fsyncs(counts: Counter[str]) -> int:
    return sum(n for path, n in counts.items() if path.endswith(SERVER_LOG))


def cycling_client(
    index: int, cycles: int, ops: list[str], lock: str = "L", timeout: float = WAIT
) -> Callable[[Context], None]:
    """A node that takes and releases ``lock`` ``cycles`` times, noting each acquire
    and each release in ``ops`` once it returned."""

    def main(ctx: Context) -> None:
        client = LockClient(ctx, f"s{index}", timing=ClientTiming(retry=5.0))
        for _ in range(cycles):
            # A long lease: no renewal and no expiry within the test (nothing but the
            # acquires and releases themselves may sync).
            with client.lock(lock, ttl=60.0, timeout=timeout):
                ops.append("acquire")
            ops.append("release")

    return main


def test_a_lone_client_costs_one_fsync_per_acquire_and_per_release(tmp_path: Path, fsyncs: Counter[str]) -> None:
    ops: list[str] = []
    nodes = {"server": LockServer("server", tick=1.0).main, "c": cycling_client(0, 20, ops)}
    with FreeRuntime(nodes, tmp_path):
        wait_for(lambda: len(ops) == 40, "20 acquires and releases")
    assert ops == ["acquire", "release"] * 20
    synced = server_fsyncs(fsyncs)
    assert 0 < synced <= len(ops), f"{synced} fsyncs of the server's log for {len(ops)} operations"


# Each client on a lock of its own: with one lock they would take turns, and a
# waiter granted the lock when it comes free renews it before trusting it (it has no
# request to time that grant from), so the handover is a chain of round trips that
# no batching can merge.  Clients on different locks are what group commit serves.


def test_concurrent_clients_share_fsyncs(tmp_path: Path, fsyncs: Counter[str]) -> None:
    ops: list[str] = []
    nodes: dict[str, Callable[[Context], None]] = {"server": LockServer("server", tick=1.0).main}
    nodes.update({f"c{i}": cycling_client(i, 10, ops, lock=f"L{i}") for i in range(6)})
    with FreeRuntime(nodes, tmp_path):
        wait_for(lambda: len(ops) == 120, "6 clients' 10 acquires and releases each")
    synced = server_fsyncs(fsyncs)
    assert 0 < synced < len(ops), f"{synced} fsyncs of the server's log for {len(ops)} operations"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_controlled_schedules_batch_several_clients_into_one_fsync(seed: int, fsyncs: Counter[str]) -> None:
    # The scheduler often delivers several requests before it runs the server: they
    # are then one batch, and one sync.  Seeded, so the same counts every time.
    ops: list[str] = []
    nodes: dict[str, Callable[[Context], None]] = {"server": LockServer("server", tick=1.0).main}
    nodes.update({f"c{i}": cycling_client(i, 3, ops, lock=f"L{i}", timeout=1e6) for i in range(4)})
    _, result = run_simulation(nodes, RandomChoices(seed, fault_rate=0.0), max_steps=20_000)
    assert result.ok, result.message
    assert len(ops) == 24
    synced = server_fsyncs(fsyncs)
    assert 0 < synced < len(ops), f"{synced} fsyncs of the server's log for {len(ops)} operations"
