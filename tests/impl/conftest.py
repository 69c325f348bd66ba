"""Fixtures the implementation tests share: a private PostgreSQL server for the
event store's PostgreSQL backend (``benchmarks/postgres.py``), one per test worker,
and a fresh database on it per test.  Tests that ask for them skip, with the
reason, where PostgreSQL or psycopg is missing (CI installs both)."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from postgres import PostgresServer, missing  # a script folder, on the path above

WHY_NOT_POSTGRES = missing()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    if WHY_NOT_POSTGRES is not None:
        pytest.skip(WHY_NOT_POSTGRES)
    # no autovacuum: a background transaction holding an xid would hold read_all back
    # for a moment (late, never wrong), and the gap tests assert what it returns at once
    server = PostgresServer(settings={"autovacuum": "off"})
    try:
        server.start()
        yield server
    finally:
        server.close()


_databases = itertools.count(1)


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the shared server."""
    return new_database(postgres_server)


def new_database(server: PostgresServer) -> str:
    return server.create_database(f"events_{next(_databases)}")
