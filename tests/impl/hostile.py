"""Hostile clients of a free-mode node, and the correct client that must still be
served after them: shared by the connection tests and the fuzzer.

``echo`` is a node that answers every ``ping`` from ``client`` with a ``pong``
carrying the same ``n``; ``Probe`` is that client, a raw TCP endpoint registered
with the runtime as the peer ``client``: ``probe.ping(address)`` sends one ping and
waits for its pong, which the node sends back over its own connection to the
probe, so a ping served is a full round trip through the runtime's transport.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from distcheck.impl.runtime import Context, Envelope, FreeRuntime
from distcheck.impl.runtime.tcp import ConnectionLimits, FrameReader, encode_frame
from tests.impl.waiting import WAIT

#: seconds: how soon a correct client must be served after a hostile one (the
#: issue's "within a second"; a round trip on loopback takes milliseconds)
SERVED_WITHIN = 1.0


def echo(ctx: Context) -> None:
    while True:
        item = ctx.receive()
        if isinstance(item, Envelope) and item.src == "client" and item.msg.get("type") == "ping":
            n = item.msg.get("n")
            if isinstance(n, int):
                ctx.send("client", {"type": "pong", "n": n})


class Probe:
    """The correct client: pings a node and waits for the pong."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.address: tuple[str, int] = self.listener.getsockname()[:2]
        self._replies: socket.socket | None = None
        self._numbers = itertools.count(1_000_000)
        self._lock = threading.Lock()

    def ping(self, address: tuple[str, int], within: float = SERVED_WITHIN) -> bool:
        """Whether one ping to ``address`` is answered within ``within`` seconds."""
        with self._lock:
            n = next(self._numbers)
            deadline = time.monotonic() + within
            try:
                with socket.create_connection(address, timeout=within) as conn:
                    conn.sendall(encode_frame("client", {"type": "ping", "n": n}))
                    return self._await_pong(n, deadline)
            except OSError:
                return False

    def _await_pong(self, n: int, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if self._replies is None:
                try:
                    self._replies, _ = self.listener.accept()
                except TimeoutError:
                    continue
            left = deadline - time.monotonic()
            limits = ConnectionLimits(idle_timeout=max(left, 0.001), frame_deadline=max(left, 0.001))
            try:
                frame = FrameReader(self._replies, limits).read()
            except Exception:  # idle until the deadline, or a broken connection
                frame = None
            if frame is None:
                # the node closed its connection to us (or nothing came): take the next one
                self._replies.close()
                self._replies = None
                continue
            if frame[1].get("n") == n:
                return True
        return False

    def close(self) -> None:
        if self._replies is not None:
            self._replies.close()
        self.listener.close()


@contextmanager
def echo_node(
    directory: Path, limits: ConnectionLimits | None = None, **runtime: Any
) -> Iterator[tuple[FreeRuntime, Probe]]:
    """A running runtime hosting ``echo``, and the probe it answers."""
    probe = Probe()
    rt = FreeRuntime({"echo": echo}, directory, peers={"client": probe.address}, limits=limits, **runtime)
    try:
        with rt:
            yield rt, probe
    finally:
        probe.close()


def attack(address: tuple[str, int], data: bytes) -> None:
    """Send ``data`` on a fresh connection and close it (the node must cope)."""
    with socket.create_connection(address, timeout=WAIT) as conn:
        try:
            conn.sendall(data)
        except OSError:
            pass  # the node may close it before reading everything: that is its right


def closed_by_node(conn: socket.socket, timeout: float = WAIT) -> bool:
    """Whether the node closes ``conn`` within ``timeout`` (anything it sends is skipped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            if conn.recv(1 << 16) == b"":
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False


__all__ = ["SERVED_WITHIN", "Probe", "attack", "closed_by_node", "echo", "echo_node"]
