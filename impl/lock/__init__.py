"""A distributed lock service with leases and fencing tokens, on the runtime.

Where it sits: the implementation of ``spec/lock.py`` (which it does not import):
``server`` (the lock server and its durable lease table), ``client`` (the library
a user calls: ``with client.lock("name", ttl=5.0) as lease``), ``storage`` (a
key-value service that enforces fencing tokens), ``workers`` (ready-made nodes and
a whole service, for simulation and examples), ``messages`` (every message the
service speaks, declared once).  docs/lock-service.md describes it.
"""

from distcheck.impl.lock.client import ClientTiming, FencedStorage, Lease, LockClient, LockLost, LockTimeout, StaleToken
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
    "LockServer",
    "LockTimeout",
    "Service",
    "StaleToken",
    "Worker",
    "service",
]
