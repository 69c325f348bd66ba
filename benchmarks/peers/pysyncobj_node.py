"""One PySyncObj node with a replicated dict and a tiny TCP front end, the PySyncObj
peer of ``benchmarks/raft_kv.py`` (which starts three of these on loopback).

    .venv/bin/python benchmarks/peers/pysyncobj_node.py --raft 127.0.0.1:7001 \\
        --partners 127.0.0.1:7002 127.0.0.1:7003 --front 8001 --journal /tmp/x/node1.journal

The node runs a ``SyncObj`` (its own auto-tick thread, the library's default timings)
holding one ``KVDict``: PySyncObj's ``ReplDict`` plus one replicated method,
``linearizable_get``, a read that goes through the Raft log like a write, so that its
answer is the value at a point between the request and the reply.  ``ReplDict.get``
alone reads the local copy, which a follower (or a deposed leader) may serve stale.

Durability: the log is a ``FileJournal`` (``journalFile=``): each entry is copied into
an mmap of the file and the library never calls fsync or msync per entry (msync only
when the journal is closed); term and vote go to a ``.meta`` file written with
``flush()`` and a rename, no fsync.  An acknowledged write survives the kill of a
process (the page cache keeps it) but not a power loss or an OS crash.

The front end serves one JSON object per line on 127.0.0.1:``--front``, one thread per
connection, and answers one JSON line:

- ``{"op": "put", "key": k, "value": v}``: ``ReplDict.set(k, v, sync=True)``;
- ``{"op": "get", "key": k}``: ``linearizable_get(k, sync=True)``;
- ``{"op": "status"}``: this node's and its known leader's Raft addresses.

Any node accepts puts and gets: PySyncObj forwards a command from a follower to the
leader itself, and a node that knows no leader holds the command until it does
(``commandsWaitLeader``).  The benchmark sends to the leader (from ``status``).
Answers are ``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``.
"""

from __future__ import annotations

import argparse
import json
import socket
import socketserver
import sys
from typing import Any

from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.batteries import ReplDict

# A command that has not committed after this long is answered as an error, so that
# a client never waits forever on a command lost with a killed leader.
COMMAND_TIMEOUT = 10.0


class KVDict(ReplDict):  # type: ignore[misc]  # pysyncobj has no type hints
    """``ReplDict`` with a read through the log."""

    @replicated  # type: ignore[untyped-decorator]
    def linearizable_get(self, key: str) -> Any:
        return self.get(key)


def serve(raft: str, partners: list[str], front: int, journal: str | None, batch: bool) -> None:
    kv = KVDict()
    conf = SyncObjConf(journalFile=journal, appendEntriesUseBatch=batch)
    node = SyncObj(raft, partners, conf=conf, consumers=[kv])

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "put":
            kv.set(str(request["key"]), str(request["value"]), sync=True, timeout=COMMAND_TIMEOUT)
            return {"ok": True}
        if op == "get":
            return {"ok": True, "value": kv.linearizable_get(str(request["key"]), sync=True, timeout=COMMAND_TIMEOUT)}
        if op == "status":
            leader = node._getLeader()
            return {"ok": True, "self": raft, "leader": None if leader is None else leader.address}
        return {"ok": False, "error": f"unknown op {op!r}"}

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for line in self.rfile:
                try:
                    reply = answer(json.loads(line))
                except Exception as error:  # the client gets every failure as an answer
                    reply = {"ok": False, "error": f"{type(error).__name__}: {error}"}
                self.wfile.write(json.dumps(reply).encode() + b"\n")

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    with Server(("127.0.0.1", front), Handler) as server:
        print(f"pysyncobj node {raft} serving on 127.0.0.1:{front}", flush=True)
        server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raft", required=True, help="this node's Raft address, host:port")
    parser.add_argument("--partners", nargs="+", required=True, help="the other nodes' Raft addresses")
    parser.add_argument("--front", type=int, required=True, help="the front end's port on 127.0.0.1")
    parser.add_argument("--journal", help="the journal file (default: PySyncObj's in-memory journal)")
    parser.add_argument(
        "--no-batch",
        action="store_true",
        help="appendEntriesUseBatch=False: send each command at once instead of every appendEntriesPeriod (0.1 s)",
    )
    args = parser.parse_args()
    serve(args.raft, args.partners, args.front, args.journal, not args.no_batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
