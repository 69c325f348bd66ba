"""PBFT's messages on the wire: what replicas sign, what clients send and receive.

Where it sits: under ``impl/pbft``'s replicas, client and Byzantine nemeses.

Replicas exchange ``Signed`` envelopes: a body (one of ``BODIES``, naming its
``sender``) and the sender's signature over it (``impl.pbft.auth``).  A body is
trusted for its signature, not for the connection it came on: a view-change
forwards pre-prepares and prepares, a new-view forwards view-changes, each still
signed by the replica that made it.  Clients send ``Request`` (with one MAC per
replica) and receive ``Reply`` (with one MAC, for them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from distcheck.impl.paxos import check_command
from distcheck.impl.pbft.auth import NodeKeys, digest
from distcheck.impl.runtime.actor import MessageError, Messages, encode

#: the digest of the null request a new view puts where no certificate was found
NULL = "null"


def check_op(op: Mapping[str, Any]) -> None:
    """MessageError unless ``op`` is a get, put or cas with its fields."""
    check_command({"id": "x", "client": "x", "seq": 0, "op": op}, "op")


# ------------------------------------------------------------------- clients


@attrs.frozen
class Request:
    """client → replicas: run ``op``; ``timestamp`` grows with each of the client's
    requests (a replica runs each at most once), ``auth`` holds one MAC per replica."""

    client: str
    timestamp: int
    op: dict[str, Any]
    auth: dict[str, str]

    def validate(self) -> None:
        check_op(self.op)

    def body(self) -> dict[str, Any]:
        """What the MACs and the digest cover."""
        return {"client": self.client, "timestamp": self.timestamp, "op": self.op}

    def digest(self) -> str:
        return digest(self.body())


@attrs.frozen
class Reply:
    """replica → client: the result of the client's request ``timestamp``."""

    replica: str
    view: int
    client: str
    timestamp: int
    result: Any
    mac: str

    def body(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "view": self.view,
            "client": self.client,
            "timestamp": self.timestamp,
            "result": self.result,
        }


def batch_digest(batch: tuple[Mapping[str, Any], ...]) -> str:
    """A batch's name: the digest of its requests' digests (NULL for no request)."""
    if not batch:
        return NULL
    return digest([digest({"client": r["client"], "timestamp": r["timestamp"], "op": r["op"]}) for r in batch])


# --------------------------------------------------------------- replicas' bodies


@attrs.frozen
class PrePrepare:
    """The primary of ``view`` assigns the batch ``digest`` the number ``seq``."""

    sender: str
    view: int
    seq: int
    digest: str
    batch: tuple[dict[str, Any], ...]

    def validate(self) -> None:
        for r in self.batch:
            if "type" in r:
                raise MessageError("PrePrepare: a batched request has no type field")
            REQUESTS.decode({"type": "Request", **r})
        if batch_digest(self.batch) != self.digest:
            raise MessageError("PrePrepare: the digest is not the batch's")


@attrs.frozen
class Prepare:
    sender: str
    view: int
    seq: int
    digest: str


@attrs.frozen
class Commit:
    sender: str
    view: int
    seq: int
    digest: str


@attrs.frozen
class Checkpoint:
    """``sender`` executed every batch up to ``seq``, reaching the state ``state``."""

    sender: str
    seq: int
    state: str


@attrs.frozen
class ViewChange:
    """``sender`` moves to ``view``: its stable checkpoint (``stable``, with the
    signed checkpoints proving it) and, above it, a prepared certificate per number
    (a signed pre-prepare and 2f signed prepares), each of the highest view it has."""

    sender: str
    view: int
    stable: int
    proof: tuple[dict[str, Any], ...]
    prepared: tuple[dict[str, Any], ...]


@attrs.frozen
class NewView:
    """The primary of ``view`` starts it: the view-changes it is computed from and
    the pre-prepares it re-issues (a null batch where no certificate was found)."""

    sender: str
    view: int
    view_changes: tuple[dict[str, Any], ...]
    pre_prepares: tuple[dict[str, Any], ...]


@attrs.frozen
class FetchState:
    """``sender`` lags behind a stable checkpoint at ``seq``: send the state."""

    sender: str
    seq: int


@attrs.frozen
class State:
    """The state (key-value data and client sessions) after executing up to ``seq``."""

    sender: str
    seq: int
    snapshot: dict[str, Any]


@attrs.frozen
class Signed:
    """A replica's body and its signature over it."""

    body: dict[str, Any]
    sig: str


BODIES = Messages(PrePrepare, Prepare, Commit, Checkpoint, ViewChange, NewView, FetchState, State)
REQUESTS = Messages(Request)
REPLICA_WIRE = Messages(Signed, Request)
CLIENT_WIRE = Messages(Reply)

Body = PrePrepare | Prepare | Commit | Checkpoint | ViewChange | NewView | FetchState | State


def sign(keys: NodeKeys, body: Body) -> dict[str, Any]:
    """The signed wire form of ``body`` (the sender's own keys)."""
    wire = encode(body)
    return {"body": wire, "sig": keys.sign(wire)}


def open_signed(keys: NodeKeys, signed: Any, kind: type | None = None) -> Any:
    """The body of a signed message, decoded and checked against its sender's key;
    MessageError if it is malformed, not of ``kind`` or not signed by its sender."""
    if not isinstance(signed, Mapping) or set(signed) != {"body", "sig"}:
        raise MessageError("a signed message must be an object with body and sig")
    body, sig = signed["body"], signed["sig"]
    decoded = BODIES.decode(body)
    if kind is not None and not isinstance(decoded, kind):
        raise MessageError(f"expected a signed {kind.__name__}, got {type(decoded).__name__}")
    if not isinstance(sig, str) or not keys.verify(decoded.sender, body, sig):
        raise MessageError(f"{type(decoded).__name__} is not signed by {decoded.sender!r}")
    return decoded
