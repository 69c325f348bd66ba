"""Who said what: the keys of a PBFT cluster, replicas' signatures and clients' MACs.

Where it sits: under ``impl/pbft``'s replicas and client; it knows nothing of the
protocol's steps, only how a message is bound to its sender.

Two mechanisms, each where it fits (docs/pbft.md, "The implementation"):

- **Replicas sign** (Ed25519, the ``cryptography`` library).  A replica's view-change
  forwards other replicas' pre-prepares, prepares and checkpoints as evidence, and
  the new primary's new-view forwards view-changes: a third party must be able to
  check them, which a MAC shared by two nodes cannot give.
- **Clients use MACs** (HMAC-SHA256, the standard library), one key per
  client-replica pair.  A request carries an *authenticator*: one MAC per replica,
  each over the same bytes, so every replica checks its own entry, even in a request
  a (possibly Byzantine) primary forwarded inside a pre-prepare.  A reply carries one
  MAC, for its client.  A MAC costs about a microsecond, a signature check about
  85: clients are many and their messages small.

Every signed or MAC'd byte string starts with the cluster's name, so a message of
one cluster (or a test's) is worth nothing in another.  Keys are derived from one
cluster secret (``Keyring``) for tests and local clusters; ``NodeKeys`` is what one
node holds: its own private keys and the others' public ones.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def canonical(value: Any) -> bytes:
    """The one byte string a JSON value is signed as (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(value: Any) -> str:
    """A short name of a JSON value's content (the first 16 hex digits of its SHA-256)."""
    return hashlib.sha256(canonical(value)).hexdigest()[:16]


class NodeKeys:
    """One node's keys: its signing key (replicas), its MAC keys with the other side
    (client-replica pairs), and every replica's public key."""

    def __init__(
        self,
        cluster: str,
        name: str,
        signing: Ed25519PrivateKey | None,
        public: Mapping[str, Ed25519PublicKey],
        macs: Mapping[str, bytes],
    ) -> None:
        self.cluster = cluster.encode()
        self.name = name
        self._signing = signing
        self._public = dict(public)
        self._macs = dict(macs)

    # -------------------------------------------------------- replicas' signatures

    def sign(self, body: Mapping[str, Any]) -> str:
        if self._signing is None:
            raise ValueError(f"{self.name} holds no signing key")
        return self._signing.sign(self.cluster + b"|" + canonical(body)).hex()

    def verify(self, signer: str, body: Mapping[str, Any], signature: str) -> bool:
        """Did replica ``signer`` sign ``body`` in this cluster?"""
        key = self._public.get(signer)
        if key is None:
            return False
        try:
            key.verify(bytes.fromhex(signature), self.cluster + b"|" + canonical(body))
        except (InvalidSignature, ValueError):
            return False
        return True

    # --------------------------------------------------------------- clients' MACs

    def mac(self, peer: str, body: Mapping[str, Any]) -> str:
        key = self._macs.get(peer)
        if key is None:
            raise ValueError(f"{self.name} shares no key with {peer!r}")
        return hmac.new(key, self.cluster + b"|" + canonical(body), "sha256").hexdigest()

    def check_mac(self, peer: str, body: Mapping[str, Any], tag: str) -> bool:
        key = self._macs.get(peer)
        if key is None or not isinstance(tag, str):
            return False
        expected = hmac.new(key, self.cluster + b"|" + canonical(body), "sha256").hexdigest()
        return hmac.compare_digest(expected, tag)

    def authenticator(self, peers: Sequence[str], body: Mapping[str, Any]) -> dict[str, str]:
        """One MAC of ``body`` per peer: what a client's request carries."""
        return {peer: self.mac(peer, body) for peer in peers}


class Keyring:
    """Every key of one cluster, derived from its secret: a replica's signing key and
    each client-replica MAC key.  ``for_node`` hands a node only its own share."""

    def __init__(self, cluster: str, secret: bytes, replicas: Sequence[str]) -> None:
        self.cluster = cluster
        self.secret = secret
        self.replicas = tuple(replicas)
        self._signing = {r: self._signing_key(r) for r in self.replicas}
        self.public = {r: k.public_key() for r, k in self._signing.items()}

    def _signing_key(self, replica: str) -> Ed25519PrivateKey:
        seed = hashlib.sha256(self.secret + b"|sign|" + replica.encode()).digest()
        return Ed25519PrivateKey.from_private_bytes(seed)

    def _mac_key(self, client: str, replica: str) -> bytes:
        return hmac.new(self.secret, f"mac|{client}|{replica}".encode(), "sha256").digest()

    def for_replica(self, replica: str) -> NodeKeys:
        """A replica's keys: its signing key, the public keys, its clients' MAC keys."""
        if replica not in self._signing:
            raise ValueError(f"{replica!r} is not a replica of this cluster; replicas: {', '.join(self.replicas)}")
        return _ReplicaKeys(self, replica)

    def for_client(self, client: str) -> NodeKeys:
        if client in self._signing:
            raise ValueError(f"{client!r} is a replica's name; a client needs a name of its own")
        macs = {r: self._mac_key(client, r) for r in self.replicas}
        return NodeKeys(self.cluster, client, None, self.public, macs)

    def mac_key(self, client: str, replica: str) -> bytes:
        return self._mac_key(client, replica)


class _ReplicaKeys(NodeKeys):
    """A replica's keys, with the MAC key of any client derived on first use (a
    deployment would register clients; here the cluster secret stands for that)."""

    def __init__(self, ring: Keyring, replica: str) -> None:
        super().__init__(ring.cluster, replica, ring._signing[replica], ring.public, {})
        self._ring = ring

    def mac(self, peer: str, body: Mapping[str, Any]) -> str:
        self._learn(peer)
        return super().mac(peer, body)

    def check_mac(self, peer: str, body: Mapping[str, Any], tag: str) -> bool:
        if peer in self._ring.replicas or not isinstance(tag, str):
            return False  # replicas sign; a MAC "from" a replica is not a client's
        # A name is remembered only once a MAC under it checked: a flood of made-up
        # client names costs a hash each, not memory.
        known = peer in self._macs
        if not known:
            self._macs[peer] = self._ring.mac_key(peer, self.name)
        ok = super().check_mac(peer, body, tag)
        if not ok and not known:
            del self._macs[peer]
        return ok

    def _learn(self, client: str) -> None:
        if client not in self._macs:
            self._macs[client] = self._ring.mac_key(client, self.name)


def local_keyring(replicas: Sequence[str], cluster: str = "pbft-test") -> Keyring:
    """A keyring with a fixed secret, for simulations and local clusters."""
    return Keyring(cluster, hashlib.sha256(cluster.encode()).digest(), replicas)
