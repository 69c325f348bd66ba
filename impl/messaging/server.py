"""The broker as its own process: ``python -m distcheck.impl.messaging.server``.

Where it sits: the host around a ``BrokerNode`` (``impl.messaging.broker``), in a
``FreeRuntime`` whose client port takes the broker's requests (``Publish``,
``Subscribe``, ``Unsubscribe``, ``Ack``, ``Nack``, ``impl.messaging.messages``) as
runtime frames and answers each client on its connection.  Clients use
``impl.messaging.client``.

    python -m distcheck.impl.messaging.server --port 5680 --data /var/lib/broker

Bad arguments: one line on stderr and exit status 2.  SIGTERM or SIGINT stops it
(exit 0); every confirmed message is on disk (``--data``), and starting it again
over the same directory recovers them, marked redelivered.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from distcheck.impl.messaging.broker import VARIANTS, BrokerNode, BrokerTiming
from distcheck.impl.messaging.messages import CLIENT_REQUESTS, MAX_BODY
from distcheck.impl.runtime.free import ClientPort, FreeRuntime
from distcheck.impl.runtime.tcp import ConnectionLimits

NAME = "broker"
#: client connections open at once, at most
MAX_CLIENTS = 4096


def client_port(port: int) -> ClientPort:
    """Broker requests only, from a sender not named like the broker."""

    def admit(src: str, msg: Mapping[str, Any]) -> bool:
        return msg.get("type") in CLIENT_REQUESTS and src != NAME

    limits = ConnectionLimits(max_connections=MAX_CLIENTS, max_frame=MAX_BODY + (64 << 10))
    return ClientPort(port, limits, admit)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m distcheck.impl.messaging.server", description="Run a durable message broker.")
    p.add_argument("--port", type=int, required=True, help="the port clients connect to (0: any free one)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--data", type=Path, required=True, help="directory for the broker's durable log")
    p.add_argument("--visibility", type=float, default=BrokerTiming().visibility, help="seconds (visibility timeout)")
    p.add_argument("--consumer-timeout", type=float, default=BrokerTiming().consumer_timeout, help="seconds")
    p.add_argument("--max-deliveries", type=int, default=5, help="deliveries before a message is dead-lettered")
    p.add_argument("--variant", choices=sorted(VARIANTS), help="a deliberately broken broker (for the checks)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not 0 <= args.port < 65536:
        p.error(f"--port {args.port} is not a port")
    try:
        timing = BrokerTiming(visibility=args.visibility, consumer_timeout=args.consumer_timeout)
        if args.visibility <= 0 or args.consumer_timeout <= 0:
            raise ValueError("--visibility and --consumer-timeout must be positive")
        broker = BrokerNode(NAME, timing, max_deliveries=args.max_deliveries, variant=args.variant)
    except ValueError as exc:
        p.error(str(exc))
    try:
        args.data.mkdir(parents=True, exist_ok=True)
        runtime = FreeRuntime(
            {NAME: broker.main},
            args.data,
            host=args.host,
            client_ports={NAME: client_port(args.port)},
            max_restarts=100,
        )
        runtime.listen()
    except OSError as exc:
        print(f"{p.prog}: cannot start: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    runtime.start()
    host, port = runtime.client_addresses[NAME]
    print(f"broker serving clients on {host}:{port}", flush=True)
    done.wait()
    runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
