"""A distributed lock service with leases and fencing tokens, on the runtime.

Where it sits: the implementation of ``spec/lock.py`` (which it does not import):
``server`` (the lock server and its durable lease table), ``client`` (the library
a user calls: ``with client.lock("name", ttl=5.0) as lease``), ``storage`` (a
key-value service that enforces fencing tokens), ``workers`` (ready-made nodes and
a whole service, for simulation and examples), ``messages`` (every message the
service speaks, declared once); and the replicated service on Raft: ``replicated``
(the lease table as a Raft state machine, ``LockNode``, the server process) and
``replicated_client`` (``ReplicatedLockClient``, the same ``lock`` API over TCP,
with leader discovery and failover).  docs/lock-service.md describes them.
"""

from distcheck.impl.lock.client import ClientTiming, FencedStorage, Lease, LockClient, LockLost, LockTimeout, StaleToken
from distcheck.impl.lock.replicated import LockMachine, LockNode
from distcheck.impl.lock.replicated_client import ReplicatedLease, ReplicatedLockClient, ReplicatedTiming
from distcheck.impl.lock.server import LockServer
from distcheck.impl.lock.storage import FencedStore
from distcheck.impl.lock.workers import VARIANTS, Service, Worker, service

__all__ = [
    "VARIANTS",
    "ClientTiming",
    "FencedStorage",
    "FencedStore",
    "Lease",
    "LockClient",
    "LockLost",
    "LockMachine",
    "LockNode",
    "LockServer",
    "LockTimeout",
    "ReplicatedLease",
    "ReplicatedLockClient",
    "ReplicatedTiming",
    "Service",
    "StaleToken",
    "Worker",
    "service",
]
