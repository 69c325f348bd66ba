"""A key-value store on PBFT, with a lying primary: 4 replicas over TCP, r1 Byzantine.

    .venv/bin/python examples/pbft.py [DIRECTORY]

Four replicas r1..r4 (f = 1), each in a runtime of its own so that they talk over
TCP on this machine, and a client c1 in another.  r1, the primary of view 0, is
Byzantine: it *equivocates*, pre-preparing two different batches at the same number,
each to half of the backups (``impl.pbft.NEMESES["equivocate"]``).  No batch gathers
a quorum of prepares, so nothing executes in view 0; the client, without f + 1
matching replies after a second, sends its request to every replica, the backups
watching it move to view 1, and r2, an honest primary, orders it.

The client runs put, cas (which succeeds), cas (which fails: the value moved on) and
get; each call returns once f + 1 = 2 replicas sent the same MAC'd result.  It
prints each result, the view each honest replica reached, and how many batches each
executed.  The replicas' logs are in DIRECTORY (a fresh temporary directory unless
given).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from distcheck.impl.pbft import NEMESES, Timing, Tuning, cas, cluster, get, put
from distcheck.impl.runtime.free import FreeRuntime, connect

#: a replica's clock ticks every 50 ms; a request waits 20 ticks (1 s) before a view change
TIMING = Timing(tick=0.05, view_change_ticks=20, retry_ticks=10, client_retry=1.0)
TUNING = Tuning()
OPS = [put("greeting", "hello"), cas("greeting", "hello", "bonjour"), cas("greeting", "hello", "hola"), get("greeting")]
EXPECTED = ["ok", True, False, "bonjour"]


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print("usage: examples/pbft.py [DIRECTORY]", file=sys.stderr)
        return 2
    directory = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="pbft-"))
    directory.mkdir(parents=True, exist_ok=True)
    system = cluster(
        replicas=4,
        workloads={"c1": OPS},
        timing=TIMING,
        tuning=TUNING,
        byzantine={"r1": NEMESES["equivocate"](TIMING, TUNING)},
    )
    client = system.clients[0]
    # One runtime per node: every message between them crosses TCP.
    runtimes = [FreeRuntime({name: node}, directory / name) for name, node in system.nodes().items()]
    connect(runtimes)
    print("r1 (primary of view 0) equivocates; r2, r3, r4 are honest; c1 runs:")
    began = time.monotonic()
    for runtime in runtimes:
        runtime.start()
    try:
        deadline = time.monotonic() + 60.0
        while len(client.results) < len(OPS) and time.monotonic() < deadline:
            time.sleep(0.02)
        took = time.monotonic() - began
    finally:
        for runtime in runtimes:
            runtime.stop()
    for op, result in zip(OPS, client.results, strict=False):
        args = ", ".join(repr(op[field]) for field in ("key", "expected", "value") if field in op)
        print(f"  {op['op']}({args}) -> {result!r}")
    print(f"  ({len(client.results)} of {len(OPS)} operations in {took:.1f} s)")
    print("honest replicas:")
    for replica in system.replicas:
        print(f"  {replica.name}: view {replica.view} ({replica.status}), executed {replica.last_executed} batches")
    errors = [error for runtime in runtimes for error in runtime.errors]
    for error in errors:
        print(f"error: {error.splitlines()[0]}", file=sys.stderr)
    print(f"\n(the replicas' logs are in {directory})")
    moved = all(replica.view > 0 for replica in system.replicas)
    return 0 if client.results == EXPECTED and moved and not errors else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
