"""A Raft cluster of server processes on this machine, for tests, benchmarks and
trying the service out.

Where it sits: starts ``python -m distcheck.impl.raft.server`` once per server
(``impl.raft.server``) and hands out ``RaftClient``s (``impl.raft.client``)::

    with LocalCluster(3, data_dir) as c:
        cl = c.client()
        cl.put("k", "v"); cl.get("k")
        c.kill(c.leader())          # SIGKILL: the process dies, its synced state stays
        c.restart(name)             # the same server again, over the same directory

Servers are ``n1..nN``; ``spares=k`` adds ``n(N+1)..`` to every server's cluster
list, not started and not members until ``add_server``.  Ports: ``base_port`` given, server *i* listens for peers on
``base_port + i - 1`` and for clients on that + 1000; otherwise free ports are
picked.  Each server's output goes to ``<data_dir>/<name>.out``.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from distcheck.impl.raft.client import Address, ClientTiming, RaftClient
from distcheck.impl.raft.server import CLIENT_PORT_OFFSET
from distcheck.impl.resilience import UNBOUNDED, RetryError, Retrying


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class _NotYet(Exception):
    """A poll found the cluster not ready yet."""


def _polls(timeout: float) -> Retrying:
    """Look again every 50 ms, for ``timeout`` seconds of the real clock."""
    return Retrying(
        base=0.05, cap=0.05, jitter="none", max_attempts=UNBOUNDED, deadline=timeout, retry_on=_NotYet, idempotent=True
    )


class LocalCluster:
    """``n`` server processes over ``data_dir`` (a context manager: ``start`` on enter,
    ``stop`` on exit).  ``server_args`` are added to every server's command line
    (``["--max-batch", "1"]``...)."""

    def __init__(
        self,
        n: int = 3,
        data_dir: str | os.PathLike[str] = ".",
        base_port: int | None = None,
        *,
        host: str = "127.0.0.1",
        server_args: Sequence[str] = (),
        election_timeout: float = 0.3,
        heartbeat: float = 0.05,
        start_timeout: float = 20.0,
        spares: int = 0,
        module: str = "distcheck.impl.raft.server",
    ) -> None:
        if n < 1 or spares < 0:
            raise ValueError(f"a cluster needs at least 1 server and no negative spares, got {n}, {spares}")
        #: every server: the ``n`` members, then the spares (not started until ``add_server``)
        self.names = [f"n{i}" for i in range(1, n + spares + 1)]
        self.members = self.names[:n]
        n = len(self.names)
        self.data_dir = Path(data_dir)
        if base_port is None:
            ports = _free_ports(2 * n)
            peer_ports, client_ports = ports[:n], ports[n:]
        else:
            peer_ports = [base_port + i for i in range(n)]
            client_ports = [p + CLIENT_PORT_OFFSET for p in peer_ports]
        #: where each server listens for its peers
        self.peer_addresses: dict[str, Address] = {s: (host, p) for s, p in zip(self.names, peer_ports)}
        #: where each server listens for clients (what ``RaftClient`` takes)
        self.addresses: dict[str, Address] = {s: (host, p) for s, p in zip(self.names, client_ports)}
        self.server_args = [
            "--election-timeout",
            str(election_timeout),
            "--heartbeat",
            str(heartbeat),
            "--members",
            ",".join(self.members),
            *server_args,
        ]
        self.start_timeout = start_timeout
        #: the module each server process runs (``python -m``): another service on Raft names its own
        self.module = module
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._owner = os.getpid()

    @property
    def cluster(self) -> str:
        """The ``--cluster`` argument every server gets."""
        return ",".join(f"{s}={h}:{p}" for s, (h, p) in self.peer_addresses.items())

    @property
    def client_cluster(self) -> str:
        """The servers' client addresses, as ``RaftClient`` and the CLI's ``--clients`` take them."""
        return ",".join(f"{s}={h}:{p}" for s, (h, p) in self.addresses.items())

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._owner = os.getpid()
        atexit.register(self._stop_at_exit)  # no server outlives this process
        for name in self.members:
            self._spawn(name)
        for name in self.members:
            self._wait_ready(name)

    def _stop_at_exit(self) -> None:
        if os.getpid() == self._owner:  # not in a forked child (a benchmark's client processes)
            self.stop()

    def stop(self) -> None:
        atexit.unregister(self._stop_at_exit)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kill(self, name: str) -> None:
        """SIGKILL server ``name`` (no clean-up: only what it synced survives)."""
        proc = self.procs[name]
        proc.kill()
        proc.wait()

    def restart(self, name: str) -> None:
        """Start server ``name`` again (killing it first if it runs), over its directory."""
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            self.kill(name)
        self._spawn(name)
        self._wait_ready(name)

    def add_server(self, name: str) -> bool:
        """Start spare ``name`` (if it does not run) and make it a voting member."""
        if self.procs.get(name) is None or self.procs[name].poll() is not None:
            self._spawn(name)
            self._wait_ready(name)
        with self.client() as client:
            return client.add_server(name)

    def remove_server(self, name: str) -> bool:
        """Take ``name`` out of the voting members (its process keeps running: ``kill`` it)."""
        with self.client() as client:
            return client.remove_server(name)

    def alive(self) -> list[str]:
        return [s for s, p in self.procs.items() if p.poll() is None]

    # ------------------------------------------------------------ clients

    def client(self, timing: ClientTiming = ClientTiming()) -> RaftClient:
        """A new client (one per thread for parallel calls)."""
        return RaftClient(self.addresses, timing)

    def leader(self, timeout: float = 20.0) -> str:
        """The leader of the highest term the live servers report (waits for one)."""
        polls = _polls(timeout)
        with RaftClient(self.addresses) as probe:
            try:
                for attempt in polls:
                    with attempt:
                        best: tuple[int, str] | None = None
                        for name in self.alive():
                            status = probe.status(name, timeout=0.5)
                            if (
                                status is not None
                                and status.role == "leader"
                                and (best is None or status.term > best[0])
                            ):
                                best = (status.term, name)
                        if best is None:
                            raise _NotYet
                    if attempt.exception is None:
                        assert best is not None
                        return best[1]
            except RetryError:
                pass
        raise TimeoutError(f"no leader among {', '.join(self.alive())} within {timeout:g} s")

    # ------------------------------------------------------------ helpers

    def _spawn(self, name: str) -> None:
        directory = self.data_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        out = open(self.data_dir / f"{name}.out", "ab")
        try:
            self.procs[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    self.module,
                    "--name",
                    name,
                    "--cluster",
                    self.cluster,
                    "--data",
                    str(directory),
                    "--client-port",
                    str(self.addresses[name][1]),
                    *self.server_args,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        finally:
            out.close()

    def _wait_ready(self, name: str) -> None:
        proc = self.procs[name]
        try:
            for attempt in _polls(self.start_timeout):
                with attempt:
                    if proc.poll() is not None:
                        log = (self.data_dir / f"{name}.out").read_text(errors="replace")[-2000:]
                        raise RuntimeError(f"server {name} exited with status {proc.returncode}:\n{log}")
                    try:
                        socket.create_connection(self.addresses[name], timeout=0.5).close()
                    except OSError:
                        raise _NotYet from None
                if attempt.exception is None:
                    return
        except RetryError as error:
            if isinstance(error.last_exception, RuntimeError):
                raise error.last_exception from None
        raise TimeoutError(f"server {name} did not start within {self.start_timeout:g} s")
