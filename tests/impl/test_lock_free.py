"""Free mode: the lock service on OS threads over TCP on loopback, used through the
client library as a user would (``with client.lock(...) as lease``), an acquire
timeout, fencing tokens in the storage service's real contents, and the recorded
trace validated against spec/lock.

Real threads on a real clock, on a machine that may be busy: every lease here lasts
seconds longer than anything the test waits for, so only a lost lock (the bug the
test looks for) can expire one, and every wait is for a condition, with a generous
deadline, never for an amount of time."""

from __future__ import annotations

from pathlib import Path

import attrs

from distcheck.checks.conformance.validate import validate_trace
from distcheck.checks.traces import trace as trace_file
from distcheck.impl.lock import ClientTiming, FencedStorage, FencedStore, LockClient, LockServer, LockTimeout
from distcheck.impl.lock import storage as lock_storage
from distcheck.impl.runtime import Context, FreeRuntime, TraceLog
from distcheck.impl.runtime.storage import read_log
from distcheck.spec.lock import Config, Lock
from tests.impl.waiting import WAIT, wait_for

# The server's tick, in seconds, and a lease of 5 ticks.  A client trusts its lease
# (ttl - 1) * tick * (1 - drift_bound) = 7.2 s from the request that obtained it and
# renews it every third of that, so a renewal would have to be nearly 5 s late for
# the client to distrust its lease, and later still for the server to expire it.
TICK = 2.0
TTL_TICKS = 5
TTL = TTL_TICKS * TICK
# The model the trace is validated against bounds the clock; the server stops its
# clock there (nothing expires after it, which is safe), so a slow run stays inside it.
MAX_TIME = 12
PROBE = 0.5  # c2's first acquire timeout: c1 holds the lock, so it must time out


def test_two_clients_share_a_lock_over_tcp_with_fencing(tmp_path: Path) -> None:
    # In the order the lock forces: each entry is causally after the one before it.
    happened: list[str] = []
    released: set[str] = set()
    tokens: dict[str, int] = {}
    timing = ClientTiming(retry=0.5, drift_bound=0.1)

    def first(ctx: Context) -> None:
        client = LockClient(ctx, "c1", timing=timing)
        storage = FencedStorage(client)
        with client.lock("L", ttl=TTL, timeout=WAIT) as lease:
            tokens["c1"] = lease.token
            happened.append("c1 holds")
            storage.write("k", "from c1", lease)
            while "c2 timed out" not in happened:  # hold the lock until c2 has given up once
                ctx.sleep(0.05)
            storage.write("k", "from c1 again", lease)
            happened.append("c1 done")
        released.add("c1")

    def second(ctx: Context) -> None:
        client = LockClient(ctx, "c2", timing=timing)
        storage = FencedStorage(client)
        while "c1 holds" not in happened:
            ctx.sleep(0.02)
        try:
            with client.lock("L", ttl=TTL, timeout=PROBE):
                happened.append("c2 got it while c1 held it")
        except LockTimeout:
            happened.append("c2 timed out")
        with client.lock("L", ttl=TTL, timeout=WAIT) as lease:  # its queued request is granted
            tokens["c2"] = lease.token
            happened.append("c2 holds")
            storage.write("k", "from c2", lease)
        released.add("c2")

    server = LockServer("server", TICK, horizon=MAX_TIME)
    nodes = {"server": server.main, "storage": FencedStore().main, "a": first, "b": second}
    model = Config(clients=2, ttl=TTL_TICKS, max_drift=1, max_time=MAX_TIME, max_requests=2)
    trace = TraceLog("lock", {k: v for k, v in attrs.asdict(model).items() if k != "variant"})
    with FreeRuntime(nodes, tmp_path, trace=trace) as runtime:
        wait_for(lambda: released == {"c1", "c2"}, "both clients to hold and release the lock")
    assert runtime.errors == []
    assert runtime.alive() == []
    # c2's first request timed out while c1 held the lock; it was granted once c1
    # released, not before (mutual exclusion), and never while c1 held it.
    assert happened == ["c1 holds", "c2 timed out", "c1 done", "c2 holds"]
    assert tokens["c1"] < tokens["c2"]  # fencing tokens increase with every grant
    # FencedWrites on the storage service's real, durable contents
    stored = lock_storage.recover(read_log(tmp_path / "storage" / "data.log"))
    assert [w["token"] for w in stored.writes] == [tokens["c1"], tokens["c1"], tokens["c2"]]
    assert stored.data == {"k": "from c2"}
    assert stored.rejected == {}
    # Nothing expired: the leases outlasted the run, as they were sized to.
    assert not [e for e in trace.events if e["action"]["type"] == "Expire"]
    path = tmp_path / "trace.jsonl"
    trace.write(path)
    result = validate_trace(Lock(model), trace_file.read(path), split_key="lock")
    assert result.ok, result.message
