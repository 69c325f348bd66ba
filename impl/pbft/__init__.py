"""PBFT: a Byzantine-fault-tolerant replicated key-value store (Castro and Liskov).

Where it sits: in ``impl/``, on ``impl.runtime``; mirrors ``spec/pbft.py`` without
importing it (docs/pbft.md, "The implementation").

- ``replica``: the replica (normal case, checkpoints, view change, state transfer).
- ``client``: ``PbftClient`` (blocking ``put``/``get``/``cas``), ``cluster()``.
- ``auth``: the keys; replicas sign (Ed25519), clients MAC (HMAC-SHA256).
- ``messages``: the wire format.
- ``byzantine``: nemeses that lie, for the checks.
"""

from distcheck.impl.pbft.auth import Keyring, NodeKeys, local_keyring
from distcheck.impl.pbft.byzantine import NEMESES
from distcheck.impl.pbft.client import Cluster, PbftClient, Workload, cas, cluster, get, put
from distcheck.impl.pbft.replica import VARIANTS, Replica, Timing, Tuning

__all__ = [
    "NEMESES",
    "VARIANTS",
    "Cluster",
    "Keyring",
    "NodeKeys",
    "PbftClient",
    "Replica",
    "Timing",
    "Tuning",
    "Workload",
    "cas",
    "cluster",
    "get",
    "local_keyring",
    "put",
]
