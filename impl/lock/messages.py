"""The lock service's messages, declared once: what clients send the lock server
and the fencing storage, and what those answer.

Where it sits: ``impl.lock.server`` and ``impl.lock.storage`` are actors
(``impl.runtime.actor``) that accept ``SERVER_MESSAGES`` and ``STORAGE_MESSAGES``;
``impl.lock.client`` sends those and decodes the answers with
``CLIENT_MESSAGES``.  The wire form is ``{"type": <class name>, <field>: ...}``.

``attempt`` numbers a client's timing messages: an answer carries the attempt it
answers, so the client can time a lease from when it sent that attempt.
"""

from __future__ import annotations

from typing import Any

import attrs

from distcheck.impl.runtime.actor import Messages

# ----------------------------------------------------------- client → server


@attrs.frozen
class Acquire:
    lock: str
    session: str
    req: str  # the request's id: a re-sent copy keeps it, so it queues once
    attempt: int | None = None
    ttl: float | None = None  # seconds; None: two ticks


@attrs.frozen
class Renew:
    lock: str
    session: str
    token: int
    attempt: int | None = None


@attrs.frozen
class Release:
    lock: str
    session: str
    token: int


# ----------------------------------------------------------- server → client


@attrs.frozen
class Granted:
    lock: str
    req: str
    token: int
    ttl_ticks: int
    tick: float
    attempt: int | None


@attrs.frozen
class Busy:
    """The session already holds or waits for the lock under another request."""

    lock: str
    req: str
    token: int


@attrs.frozen
class Renewed:
    lock: str
    token: int
    attempt: int | None
    ttl_ticks: int


@attrs.frozen
class Refused:
    lock: str
    token: int
    attempt: int | None


@attrs.frozen
class Released:
    lock: str
    token: int


# ---------------------------------------------------------- client ↔ storage


@attrs.frozen
class Write:
    wid: str  # the write's id: a re-sent copy keeps it, so it is decided once
    lock: str
    token: int
    session: str
    key: str
    value: Any


@attrs.frozen
class Read:
    key: str


@attrs.frozen
class Value:
    key: str
    value: Any


@attrs.frozen
class WriteResult:
    wid: str
    accepted: bool
    token: int


SERVER_MESSAGES = Messages(Acquire, Renew, Release)
STORAGE_MESSAGES = Messages(Write, Read)
CLIENT_MESSAGES = Messages(Granted, Busy, Renewed, Refused, Released, WriteResult)
