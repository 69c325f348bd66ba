"""The lock server over TCP against hostile messages (issue #13, items 3 and 6):
each well-framed but bad message — a field missing or of the wrong type, a ttl
that is not a finite number, a valid request from a node nobody knows — sent to a
live server, and then a lock acquired and released with the client library
within a second.

Rejecting such messages is the typed message layer's work
(``impl/runtime/actor.py``, ``impl/lock/messages.py``): each is rejected and
recorded in diagnostics, and the server neither dies nor restarts.
"""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from distcheck.impl.lock import ClientTiming, LockClient, LockServer, LockTimeout
from distcheck.impl.runtime import Context, FreeRuntime
from tests.impl.hostile import SERVED_WITHIN
from tests.impl.waiting import WAIT, wait_for

TICK = 0.1


def acquire(**fields: Any) -> dict[str, Any]:
    return {"type": "Acquire", "lock": "L", "session": "evil", "req": "evil/1", "attempt": 1, "ttl": 0.2, **fields}


def without(msg: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in msg.items() if k != field}


BAD = [
    pytest.param("worker", without(acquire(), "req"), id="acquire-without-req"),
    pytest.param(
        "worker",
        {"type": "Renew", "lock": "L", "session": "evil", "token": "abc", "attempt": 1},
        id="renew-token-abc",
    ),
    pytest.param(
        "worker",
        {"type": "Release", "lock": "L", "session": "evil", "token": None},
        id="release-token-null",
    ),
    pytest.param("worker", acquire(ttl=float("nan")), id="ttl-nan"),
    pytest.param("worker", acquire(ttl=float("inf")), id="ttl-infinity"),
    pytest.param("worker", acquire(ttl="abc"), id="ttl-string"),
    pytest.param("mallory", acquire(), id="acquire-from-unknown-src"),
]


def hostile_frame(src: str, msg: dict[str, Any]) -> bytes:
    # allow_nan: the attacker writes what Python's json writes by default
    payload = json.dumps({"src": src, "msg": msg}).encode()
    return struct.pack(">I", len(payload)) + payload


@pytest.mark.parametrize("src,msg", BAD)
def test_a_bad_message_does_not_stop_the_lock_server(tmp_path: Path, src: str, msg: dict[str, Any]) -> None:
    go: list[bool] = []
    outcome: dict[str, Any] = {}

    def worker(ctx: Context) -> None:
        client = LockClient(ctx, "good", timing=ClientTiming(retry=0.2, drift_bound=0.1))
        while not go:
            ctx.sleep(0.01)
        started = ctx.now()
        try:
            with client.lock("L", ttl=1.0, timeout=SERVED_WITHIN) as lease:
                outcome["token"] = lease.token
            outcome["elapsed"] = ctx.now() - started
        except LockTimeout as exc:
            outcome["timeout"] = str(exc)

    nodes = {"server": LockServer("server", TICK).main, "worker": worker}
    with FreeRuntime(nodes, tmp_path) as runtime:
        stats = runtime.connection_stats["server"]
        with socket.create_connection(runtime.addresses["server"], timeout=WAIT) as conn:
            conn.sendall(hostile_frame(src, msg))
        # the frame is in the server's mailbox once its connection has been read to the
        # end, so the worker's request, sent after that, is handled after it
        wait_for(lambda: stats.accepted >= 1 and stats.open == 0, "the hostile connection to be read")
        go.append(True)
        wait_for(lambda: "elapsed" in outcome or "timeout" in outcome, "the worker to acquire and release, or give up")
    assert "timeout" not in outcome, f"{outcome['timeout']}; diagnostics: {list(runtime.diagnostics)}"
    assert outcome["elapsed"] <= SERVED_WITHIN, outcome
    assert runtime.errors == [], runtime.errors
    # Rejected and recorded, not a crash and a restart.
    assert runtime.crashes == [], runtime.crashes
    assert any("rejected" in line and src in line for line in runtime.diagnostics), list(runtime.diagnostics)
