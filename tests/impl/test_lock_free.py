"""Free mode: the lock service on OS threads over TCP on loopback, used through the
client library as a user would (``with client.lock(...) as lease``), an acquire
timeout, fencing tokens in the storage service's real contents, and the recorded
trace validated against spec/lock."""

from __future__ import annotations

from pathlib import Path

from distcheck.checks.conformance.validate import validate_trace
from distcheck.checks.traces import trace as trace_file
from distcheck.impl.lock import ClientTiming, FencedStorage, FencedStore, LockClient, LockServer, LockTimeout
from distcheck.impl.lock import storage as lock_storage
from distcheck.impl.runtime import Context, FreeRuntime, TraceLog
from distcheck.impl.runtime.storage import read_log
from distcheck.spec.lock import Config, Lock
from tests.impl.waiting import WAIT, wait_for

TICK = 0.2  # the server's tick: a 0.6 s lease is 3 ticks, as in the spec's ttl=3


def test_two_clients_share_a_lock_over_tcp_with_fencing(tmp_path: Path) -> None:
    happened: list[str] = []
    tokens: dict[str, int] = {}
    timing = ClientTiming(retry=0.2, drift_bound=0.1)

    def first(ctx: Context) -> None:
        client = LockClient(ctx, "c1", timing=timing)
        storage = FencedStorage(client)
        with client.lock("L", ttl=0.6, timeout=WAIT) as lease:
            tokens["c1"] = lease.token
            happened.append("c1 holds")
            storage.write("k", "from c1", lease)
            while "c2 timed out" not in happened:  # hold the lock until c2 has given up once
                ctx.sleep(0.05)
            storage.write("k", "from c1 again", lease)
        happened.append("c1 released")

    def second(ctx: Context) -> None:
        client = LockClient(ctx, "c2", timing=timing)
        storage = FencedStorage(client)
        while "c1 holds" not in happened:
            ctx.sleep(0.02)
        try:
            with client.lock("L", ttl=0.6, timeout=0.1):
                happened.append("c2 got it while c1 held it")
        except LockTimeout:
            happened.append("c2 timed out")
        with client.lock("L", ttl=0.6, timeout=WAIT) as lease:  # its queued request is granted
            tokens["c2"] = lease.token
            storage.write("k", "from c2", lease)
        happened.append("c2 released")

    nodes = {"server": LockServer("server", TICK).main, "storage": FencedStore().main, "a": first, "b": second}
    trace = TraceLog("lock", {"clients": 2, "ttl": 3, "max_drift": 1, "max_time": 12, "max_requests": 2})
    with FreeRuntime(nodes, tmp_path, trace=trace) as runtime:
        wait_for(lambda: "c2 released" in happened, "both clients to hold and release the lock")
    assert runtime.errors == []
    assert runtime.alive() == []
    assert happened == ["c1 holds", "c2 timed out", "c1 released", "c2 released"]
    assert tokens["c1"] < tokens["c2"]  # fencing tokens increase with every grant
    # FencedWrites on the storage service's real, durable contents
    stored = lock_storage.recover(read_log(tmp_path / "storage" / "data.log"))
    assert [w["token"] for w in stored.writes] == [tokens["c1"], tokens["c1"], tokens["c2"]]
    assert stored.data == {"k": "from c2"}
    path = tmp_path / "trace.jsonl"
    trace.write(path)
    result = validate_trace(
        Lock(Config(clients=2, ttl=3, max_drift=1, max_time=12, max_requests=2)),
        trace_file.read(path),
        split_key="lock",
    )
    assert result.ok, result.message
