"""A private RabbitMQ node for the benchmarks and the tests that run our checks on it.

Where it sits: a helper of ``benchmarks/broker.py`` and
``tests/benchmarks/test_rabbitmq_queue.py`` (which put this folder on their path).
It starts Debian's ``rabbitmq-server`` as a node of its own (its own name, ports,
data directory and Erlang cookie under one directory), so it neither needs nor
touches a system RabbitMQ, and it can be killed with SIGKILL and started again on
its data.  ``missing()`` says why it cannot run (no ``rabbitmq-server``, no
``pika``), for a caller to skip with the reason.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def missing() -> str | None:
    """Why a RabbitMQ node cannot run here, or None."""
    if not Path(SERVER).exists() and shutil.which("rabbitmq-server") is None:
        return "rabbitmq-server is not installed (apt-get install rabbitmq-server)"
    try:
        importlib.import_module("pika")
    except ImportError:
        return "the pika package is not installed (pip install -e '.[dev]')"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RabbitNode:
    """One RabbitMQ node on 127.0.0.1:``port``, its state under ``directory``."""

    def __init__(self, directory: Path, port: int | None = None, start_timeout: float = 90.0) -> None:
        self.directory = Path(directory)
        self.port = port if port is not None else free_port()
        self.dist_port = free_port()
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.name = f"distcheck{self.port}@localhost"

    def env(self) -> dict[str, str]:
        base = self.directory
        (base / "log").mkdir(parents=True, exist_ok=True)
        plugins = base / "enabled_plugins"
        if not plugins.exists():
            plugins.write_text("[].\n")
        return {
            **os.environ,
            "HOME": str(base),  # the Erlang cookie is made and read here
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),  # none: the defaults
        }

    def start(self) -> None:
        """Start the node (again, on its data, after a kill); a port the killed node's
        sockets still hold for a moment is tried again for a few seconds."""
        server = SERVER if Path(SERVER).exists() else str(shutil.which("rabbitmq-server"))
        for attempt in range(20):
            out = open(self.directory / "server.out", "ab")
            try:
                self.proc = subprocess.Popen(
                    [server], env=self.env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            finally:
                out.close()
            try:
                self.wait_ready()
                return
            except RuntimeError as exc:
                if "eaddrinuse" not in str(exc) or attempt == 19:
                    raise
                time.sleep(0.5)

    def wait_ready(self) -> None:
        import pika

        deadline = time.monotonic() + self.start_timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                tail = (self.directory / "server.out").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"rabbitmq-server exited with status {self.proc.returncode}:\n{tail}")
            try:
                connection = pika.BlockingConnection(self.parameters(timeout=1.0))
                connection.close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"RabbitMQ did not accept connections within {self.start_timeout:g} s") from None
                time.sleep(0.2)

    def parameters(self, timeout: float = 5.0) -> object:
        import pika

        return pika.ConnectionParameters(
            host="127.0.0.1", port=self.port, socket_timeout=timeout, blocked_connection_timeout=timeout
        )

    def kill(self) -> None:
        """SIGKILL to the node's whole process group: no clean shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> RabbitNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------ a workload's clients


def connect(node: RabbitNode, queue: str, stop: threading.Event) -> tuple[Any, Any]:
    """A connection and channel with ``queue`` declared durable, retried while the node
    is down (until ``stop``: then (None, None))."""
    import pika

    while not stop.is_set():
        connection = None
        try:
            connection = pika.BlockingConnection(node.parameters(timeout=2.0))
            channel = connection.channel()
            channel.queue_declare(queue, durable=True)
            return connection, channel
        except Exception:
            if connection is not None and connection.is_open:
                connection.close()
            time.sleep(0.1)
    return None, None


def produce(
    node: RabbitNode,
    queue: str,
    name: str,
    stop: threading.Event,
    published: Callable[[str], None],
    confirmed: Callable[[str], None],
) -> None:
    """Publish persistent messages ``<name>-0``, ``<name>-1``, ... to ``queue`` with
    publisher confirms until ``stop``, reconnecting while the node is down; each id goes
    to ``published`` before it is sent and to ``confirmed`` once RabbitMQ confirmed it.
    A publish that fails is not sent again: a new one is (RabbitMQ would store a copy)."""
    import pika

    i = 0
    connection: Any = None
    channel: Any = None
    while not stop.is_set():
        if channel is None or connection.is_closed:
            connection, channel = connect(node, queue, stop)
            if channel is None:
                return
            channel.confirm_delivery()  # basic_publish now returns once RabbitMQ confirmed
        mid = f"{name}-{i}"
        i += 1
        published(mid)
        try:
            channel.basic_publish(
                "", queue, mid.encode(), pika.BasicProperties(delivery_mode=2, message_id=mid), mandatory=True
            )
        except Exception:
            channel = None
            continue
        confirmed(mid)
    if connection is not None and connection.is_open:
        connection.close()
