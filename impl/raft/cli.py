"""The service from a shell: ``python -m distcheck.impl.raft.cli --cluster ... put k v``.

Where it sits: a thin layer over ``RaftClient`` (``impl.raft.client``).
``--cluster`` is the servers' list as the servers get it (peer ports; each
server's client port is its peer port + 1000); ``--clients`` names the client
addresses directly instead (for servers started with ``--client-port``).

    python -m distcheck.impl.raft.cli --cluster n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003 put k v
    ... get k            # prints the value as JSON (null: no value)
    ... cas k old new    # prints true or false
    ... delete k         # prints true or false (whether it was there)
    ... status           # each server's role, term, indexes and members
    ... add-server n4    # make n4 (in the servers' --cluster list) a voting member
    ... remove-server n1

Values are taken as JSON when they parse as JSON (``42``, ``"s"``, ``[1]``), as
strings otherwise.  Exit status: 0 done, 1 the cluster did not answer in time,
2 bad usage (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from distcheck.impl.raft.client import ClientTiming, RaftClient, Unavailable, parse_cluster
from distcheck.impl.raft.server import CLIENT_PORT_OFFSET


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m distcheck.impl.raft.cli", description="Talk to a Raft KV cluster.")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--cluster", help="the servers' peer addresses: n1=HOST:PORT,... (client port = port + 1000)")
    where.add_argument("--clients", help="the servers' client addresses: n1=HOST:PORT,...")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds before giving up (exit 1)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("put", help="set a key").add_argument("key")
    sub.choices["put"].add_argument("value")
    sub.add_parser("get", help="read a key (linearizable)").add_argument("key")
    cas = sub.add_parser("cas", help="compare and set: set KEY to NEW if it is OLD")
    cas.add_argument("key")
    cas.add_argument("old")
    cas.add_argument("new")
    sub.add_parser("delete", help="remove a key").add_argument("key")
    sub.add_parser("status", help="each server's role, term and indexes")
    sub.add_parser("add-server", help="make a server of the cluster list a voting member").add_argument("name")
    sub.add_parser("remove-server", help="take a server out of the voting members").add_argument("name")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        if args.clients is not None:
            addresses = parse_cluster(args.clients)
        else:
            addresses = {s: (h, port + CLIENT_PORT_OFFSET) for s, (h, port) in parse_cluster(args.cluster).items()}
        if not args.timeout > 0:
            raise ValueError(f"--timeout must be positive, got {args.timeout}")
    except ValueError as exc:
        p.error(str(exc))
    timing = ClientTiming(timeout=args.timeout)
    with RaftClient(addresses, timing) as client:
        try:
            if args.command == "put":
                client.put(args.key, _value(args.value))
                print("ok")
            elif args.command == "get":
                print(json.dumps(client.get(args.key)))
            elif args.command == "cas":
                print(json.dumps(client.cas(args.key, _value(args.old), _value(args.new))))
            elif args.command == "delete":
                print(json.dumps(client.delete(args.key)))
            elif args.command == "add-server":
                print(json.dumps(client.add_server(args.name)))
            elif args.command == "remove-server":
                print(json.dumps(client.remove_server(args.name)))
            else:
                for name in addresses:
                    status = client.status(name)
                    if status is None:
                        print(f"{name}: no answer")
                    else:
                        print(
                            f"{name}: {status.role} term {status.term} leader {status.leader} "
                            f"last {status.last_index} commit {status.commit_index} applied {status.last_applied} "
                            f"members {','.join(status.members)}"
                        )
        except Unavailable as exc:
            print(f"{p.prog}: {exc}", file=sys.stderr)
            return 1
        except ValueError as exc:  # a membership change the cluster refused
            print(f"{p.prog}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
