"""One server of the replicated lock service as its own process:
``python -m distcheck.impl.lock.replicated_server``, with the flags of
``python -m distcheck.impl.raft.server`` (``--name``, ``--cluster``, ``--data``...).

Where it sits: the Raft server's host (``impl.raft.server``) around a ``LockNode``
(``impl.lock.replicated``) instead of a key-value ``RaftNode``; clients use
``impl.lock.replicated_client`` on the client ports.  ``LocalCluster(n, dir,
module="distcheck.impl.lock.replicated_server")`` starts n of them on this machine.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from distcheck.impl.lock.replicated import LockNode
from distcheck.impl.raft import server as raft_server


def main(argv: Sequence[str] | None = None) -> int:
    return raft_server.main(argv, make_node=LockNode, prog="python -m distcheck.impl.lock.replicated_server")


if __name__ == "__main__":
    sys.exit(main())
