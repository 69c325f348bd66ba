"""Swarm search: randomized searches on local cores and on a Dask cluster."""

from __future__ import annotations

from typing import Any

import pytest

from distcheck.checks.cli import main
from distcheck.checks.search.explore import explore
from distcheck.checks.search.swarm import shorten, swarm, violates
from distcheck.spec.registry import REGISTRY

VARIANTS = [(name, v) for name in ("twophase", "paxoscommit") for v in REGISTRY[name].variants]


def assert_real_counterexample(name: str, variant: str, result: Any) -> None:
    v = result.violation
    assert result.verdict == "violated" and v is not None and not result.complete
    spec = REGISTRY[name].make(variant=variant)
    actions = [step.action for step in v.trace[1:]]
    assert violates(spec, v.name, actions)  # replays on the spec and ends in the violation


@pytest.mark.parametrize("name,variant", VARIANTS)
def test_local_swarm_finds_every_variant(name: str, variant: str) -> None:
    result = swarm(name, REGISTRY[name].defaults(variant), variant, runs=2, walks=100, workers=2)
    assert_real_counterexample(name, variant, result)


def test_swarm_on_a_local_dask_cluster_finds_the_variants() -> None:
    distributed = pytest.importorskip("distributed")
    # Port 0 for the dashboard as for the scheduler: parallel test workers, or anyone's
    # cluster on this machine, may hold the default 8787.
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        for name, variant in VARIANTS:
            result = swarm(
                name, REGISTRY[name].defaults(variant), variant, runs=4, walks=100, scheduler=cluster.scheduler_address
            )
            assert_real_counterexample(name, variant, result)


def test_swarm_of_a_correct_spec_samples_only_reachable_states() -> None:
    result = swarm("twophase", {"rms": 3}, None, runs=2, walks=50, workers=1)
    assert result.verdict == "bounded" and not result.complete
    assert 0 < result.stats.distinct_states <= explore(REGISTRY["twophase"].make()).stats.distinct_states


def test_shorten_cuts_loops_and_needless_steps() -> None:
    from distcheck.spec.twophase import RMChooseToAbort, RMPrepare, RMRcvCommitMsg, TMCommit, TMRcvPrepared

    spec = REGISTRY["twophase"].make(variant="commit_early")
    detour = [RMPrepare("r3"), TMRcvPrepared("r3"), TMRcvPrepared("r3")]  # a stutter loop and a needless step
    actions = [*detour, TMCommit(), RMChooseToAbort("r1"), RMRcvCommitMsg("r2")]
    assert violates(spec, "TCConsistent", actions)
    short = shorten(spec, "TCConsistent", actions)
    assert short == [TMCommit(), RMChooseToAbort("r1"), RMRcvCommitMsg("r2")]


def test_cli_swarm_and_its_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "twophase", "--variant", "commit_early", "--swarm", "2", "--walks", "50"])
    out = capsys.readouterr().out
    assert code == 1 and "TCConsistent violated" in out
    assert main(["check", "twophase", "--scheduler", "tcp://127.0.0.1:9", "--workers", "2"]) == 2
    assert "drop --workers" in capsys.readouterr().err
    assert main(["check", "twophase", "--swarm", "2", "--symmetry"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "drop --symmetry" in err
