"""A replicated key-value service on Raft, on the runtime.

Where it sits: ``node`` (the ``RaftNode`` actor: election, replication, commit,
ReadIndex, pre-vote, check-quorum, snapshots), ``log`` (its durable term, vote,
log and snapshot), ``kv`` (the state machine with client sessions), ``messages``
(every message and timer, declared once), ``client`` (``RaftClient`` over TCP,
``NodeClient`` inside a runtime), ``server`` (one node as a process:
``python -m distcheck.impl.raft.server``), ``cli`` (``python -m
distcheck.impl.raft.cli``), ``cluster`` (``LocalCluster``: a multi-process cluster
on this machine), ``simulation`` (a cluster with client nodes for the controlled
scheduler).  docs/raft-service.md describes it, and the trace it records.
"""

from distcheck.impl.raft.client import ClientTiming, NodeClient, RaftClient, RaftError, Unavailable, parse_cluster
from distcheck.impl.raft.kv import KeyValueStore
from distcheck.impl.raft.node import VARIANTS, RaftNode, RaftOptions, Timing

__all__ = [
    "VARIANTS",
    "ClientTiming",
    "KeyValueStore",
    "NodeClient",
    "RaftClient",
    "RaftError",
    "RaftNode",
    "RaftOptions",
    "Timing",
    "Unavailable",
    "parse_cluster",
]
