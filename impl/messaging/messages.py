"""The broker's messages: what clients send it and what it answers.

Where it sits: ``impl.messaging.broker`` (the ``BrokerNode`` actor) accepts
``BROKER_MESSAGES``; the client library (``impl.messaging.client``) decodes the
answers with ``CLIENT_MESSAGES``.  The wire form is the runtime's: ``{"type": <class
name>, <field>: ...}`` in a frame ``{"src": <client id>, "msg": ...}``.

A message's ``id`` is chosen by its producer (``producer:seq`` by default) and
names it everywhere: a publish sent again with the same id is stored once and
confirmed again, a delivery carries it, an acknowledgement names it, and an
idempotent consumer keys its effects by it.
"""

from __future__ import annotations

from typing import Any

import attrs

from distcheck.impl.runtime.actor import MessageError, Messages

#: bytes, at most, of a message's body once encoded as JSON
MAX_BODY = 1 << 20


def _check_name(value: str, what: str) -> None:
    if not value or len(value) > 200 or any(c.isspace() for c in value):
        raise MessageError(f"{what} must be 1 to 200 characters, no spaces, got {value!r}")


# ------------------------------------------------------------------ client → broker


@attrs.frozen
class Publish:
    """Store ``body`` in ``queue`` under ``id``; answered with ``Confirm`` once durable."""

    id: str
    queue: str
    body: Any

    def validate(self) -> None:
        _check_name(self.id, "Publish.id")
        _check_name(self.queue, "Publish.queue")


@attrs.frozen
class Subscribe:
    """Make the sender a consumer of ``queue``, with at most ``prefetch`` messages
    delivered and not yet acknowledged; sent again, it says the consumer is alive
    (a consumer not heard from for the broker's ``consumer_timeout`` is dropped)."""

    queue: str
    prefetch: int

    def validate(self) -> None:
        _check_name(self.queue, "Subscribe.queue")
        if not 1 <= self.prefetch <= 10_000:
            raise MessageError(f"Subscribe.prefetch must be between 1 and 10000, got {self.prefetch}")


@attrs.frozen
class Unsubscribe:
    queue: str


@attrs.frozen
class Ack:
    """The consumer applied message ``id``: the broker removes it."""

    id: str


@attrs.frozen
class Nack:
    """The consumer gives message ``id`` back: ready again (``requeue``) or dead-lettered."""

    id: str
    requeue: bool = True


# ------------------------------------------------------------------ broker → client


@attrs.frozen
class Confirm:
    """Message ``id`` is durable (or was already)."""

    id: str


@attrs.frozen
class Deliver:
    """Message ``id`` of ``queue``, for the consumer to apply and acknowledge.
    ``redelivered``: it may have been delivered before (to anyone);
    ``deliveries``: how many times it was delivered since the broker last started."""

    id: str
    queue: str
    body: Any
    redelivered: bool
    deliveries: int


BROKER_MESSAGES = Messages(Publish, Subscribe, Unsubscribe, Ack, Nack)
CLIENT_MESSAGES = Messages(Confirm, Deliver)
CLIENT_REQUESTS = frozenset(BROKER_MESSAGES.kinds)


# ------------------------------------------------------------------ timers


@attrs.frozen
class SyncTimer:
    """Group commit: one fsync for what was written since the last, then the confirms."""


@attrs.frozen
class TickTimer:
    """Visibility timeouts and silent consumers are looked at on every tick."""
