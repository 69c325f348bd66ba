"""Smoke test of ``benchmarks/raft_kv.py`` on its PySyncObj peer: three nodes of
``benchmarks/peers/pysyncobj_node.py`` on loopback, the benchmark's load generator for
a fraction of a second with one client, and a put read back through every node.

It checks that the benchmark still runs (the peer's front end, finding the leader,
the forked load generator), not how fast anything is.  Skipped where the pysyncobj
package is missing (it is in the ``dev`` and ``bench`` extras).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import raft_kv  # a script folder, put on the path above

pytestmark = pytest.mark.skipif(raft_kv.pysyncobj_missing() is not None, reason=str(raft_kv.pysyncobj_missing()))


def test_pysyncobj_peer_serves_puts_and_reads_them_back_through_every_node(tmp_path: Path) -> None:
    cluster = raft_kv.PySyncObjCluster()
    cluster.start(tmp_path)
    try:
        cell = raft_kv.measure(cluster, "put", 1, 0.3)
        assert cell["ops"] > 0, cell
        assert cell["errors"] == 0, cell
        writer = cluster.client()
        try:
            writer.put("smoke", "read back")
        finally:
            writer.close()
        for node in range(3):
            reader = cluster.failover_client(node)  # the node-th node, leader or not
            try:
                assert reader.get("smoke") == "read back"
            finally:
                reader.close()
    finally:
        cluster.stop()
