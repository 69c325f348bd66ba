"""A private PostgreSQL server for the tests and benchmarks that need a shared store.

Where it sits: a helper of ``tests/impl/test_eventstore_backends.py`` (which puts
this folder on its path, as the RabbitMQ test does for ``rabbitmq.py``) and of any
benchmark that runs ``impl/eventstore/postgres.py``.  It runs Debian's PostgreSQL
(``/usr/lib/postgresql/<version>/bin``, the newest installed; 15 on this machine)
as a cluster of its own: data, log and unix socket in one fresh directory under
the system's temporary folder, a free TCP port on 127.0.0.1, trust authentication
for the superuser ``postgres``.  It neither needs nor touches a system PostgreSQL.

PostgreSQL refuses to run as root.  Where we are root (this machine, CI
containers) ``initdb`` and ``postgres`` run as the ``postgres`` user, with the
directory handed to it; the directory is made directly under the temporary folder
(not under pytest's ``tmp_path``, whose parents only root may enter) so that the
server can reach it.  The server is our own child process, started without
``pg_ctl``, so that ``kill()`` can SIGKILL the postmaster, reap it and start again
on the same data (crash recovery), with no daemon left to a parent that might not
reap it.

``missing()`` says why a server cannot run here (no binaries, no ``postgres``
user while we are root, no psycopg), for a caller to skip with the reason.

    with PostgresServer() as server:
        dsn = server.create_database("bank")
"""

from __future__ import annotations

import importlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

POSTGRESQL = Path("/usr/lib/postgresql")
SUPERUSER = "postgres"
#: the OS account that owns the cluster where we run as root
OS_USER = "postgres"


def binaries() -> Path | None:
    """The ``bin`` folder of the newest PostgreSQL installed here, or None."""
    found = [p / "bin" for p in POSTGRESQL.glob("*") if (p / "bin" / "postgres").exists()]
    if not found:
        return None
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def missing() -> str | None:
    """Why a private PostgreSQL server cannot run here, or None."""
    if binaries() is None:
        return f"PostgreSQL is not installed (no {POSTGRESQL}/<version>/bin/postgres; apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            return f"running as root and there is no {OS_USER!r} user to run PostgreSQL as"
    try:
        importlib.import_module("psycopg")
    except ImportError:
        return "the psycopg package is not installed (pip install -e '.[dev]')"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (read from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


class PostgresServer:
    """One PostgreSQL cluster in a fresh directory, served on ``port`` (127.0.0.1
    and a unix socket in that directory) until ``close()``."""

    def __init__(
        self, port: int | None = None, start_timeout: float = 60.0, settings: dict[str, str] | None = None
    ) -> None:
        bin_dir = binaries()
        if bin_dir is None:
            raise RuntimeError(str(missing()))
        self.bin = bin_dir
        self.port = port if port is not None else free_port()
        self.start_timeout = start_timeout
        #: extra server settings (``-c name=value``), on top of the defaults below
        self.settings = dict(settings or {})
        self.directory = Path(tempfile.mkdtemp(prefix="distcheck-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._as_user: dict[str, Any] = {}
        try:
            if os.geteuid() == 0:
                account = pwd.getpwnam(OS_USER)
                os.chown(self.directory, account.pw_uid, account.pw_gid)
                self._as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
            self._initdb()
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    def _run(self, *argv: str) -> None:
        result = subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]],
            cwd=self.directory,  # the postgres user may not enter ours
            capture_output=True,
            text=True,
            env={**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
            **self._as_user,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{argv[0]} failed ({result.returncode}): {result.stdout[-1500:]}{result.stderr[-1500:]}"
            )

    def _initdb(self) -> None:
        # --no-sync: a fresh test cluster need not survive a power cut of its creation;
        # the server itself runs with fsync and synchronous_commit on.
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"
        )

    def server_settings(self) -> dict[str, str]:
        return {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.directory),
            "fsync": "on",
            "synchronous_commit": "on",
            "max_connections": "200",
            "shared_buffers": "32MB",
            "logging_collector": "off",
            # after a kill, sync the data directory with one syncfs instead of an fsync
            # per file: seconds less per restart, the same guarantee
            "recovery_init_sync_method": "syncfs",
            **self.settings,
        }

    def start(self) -> None:
        """Start the server (again, on its data, after a kill: crash recovery runs)."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("the server is already running")
        argv = [str(self.bin / "postgres"), "-D", str(self.data)]
        for name, value in self.server_settings().items():
            argv += ["-c", f"{name}={value}"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                argv, cwd=self.directory, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **self._as_user
            )
        self.wait_ready()

    def wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + self.start_timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with status {self.proc.returncode}:\n{self.log_tail()}")
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"PostgreSQL did not accept connections within {self.start_timeout:g} s:\n{self.log_tail()}"
                    ) from None
                time.sleep(0.05)

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def dsn(self, database: str = "postgres") -> str:
        """A libpq connection string for ``database``, over the unix socket."""
        return f"host={self.directory} port={self.port} user={SUPERUSER} dbname={database}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its connection string."""
        import psycopg

        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"a database name here is lower-case letters, digits and _, got {name!r}")
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends at once: no clean shutdown, as if
        the machine's database had crashed.  The postmaster is stopped first so that
        it neither forks nor starts its own crash handling while its children die."""
        if self.proc is None or self.proc.poll() is not None:
            return
        postmaster = self.proc.pid
        os.kill(postmaster, signal.SIGSTOP)
        children = _children(postmaster)
        os.kill(postmaster, signal.SIGKILL)
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        # A backend that outlived the postmaster would keep the old shared memory
        # attached, and the next start would refuse to run beside it.
        deadline = time.monotonic() + 10
        while any(_alive(child) for child in children) and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        """A fast clean shutdown (SIGINT: abort sessions, checkpoint, exit)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
