"""Smoke test of ``benchmarks/pbft_kv.py``: its functions at a tiny size (half a second
of load per case), and ``examples/pbft.py``.

It checks that the benchmark still runs and that what it measures is sane (every
read returns what its client put last, operations complete, the counts the servers
report add up, the primary's kill ends with the survivors in a later view and the
clients served again), not how fast anything is.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from distcheck.impl.pbft import Tuning

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import pbft_kv  # a script folder, put on the path above

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("system", pbft_kv.SYSTEMS)
def test_each_system_serves_puts_and_reads_them_back(system: str) -> None:
    cell = pbft_kv.measure(system, 2, 0.5, Tuning())
    assert cell["errors"] == [], cell["errors"]
    assert cell["ops"] > 0 and cell["gets"] > 0, cell
    assert cell["inconsistent"] == 0, cell  # every get saw its client's last put, every put said "ok"
    assert cell["p50_ms"] is not None and cell["p50_ms"] <= cell["p99_ms"]
    batch = pbft_kv.per_batch(cell)
    assert batch["batches"] >= 1 and batch["per_server_per_batch"]["fsync"] >= 1, batch
    if system == "pbft":
        assert sorted(cell["servers"]) == list(pbft_kv.REPLICAS)
        assert all(server["view"] == 0 for server in cell["servers"].values())  # no view change without a fault
        assert batch["per_server_per_batch"]["ed25519 verify"] > 0
    else:
        assert batch["per_server_per_batch"]["fsync"] == pytest.approx(1.0)  # one fsync per batch, as documented


def test_killing_the_primary_ends_in_a_later_view_with_clients_served() -> None:
    result = pbft_kv.view_change(2, 0.5, Tuning())
    assert result["errors"] == [], result["errors"]
    assert result["ops_before_kill"] > 0, result
    assert result["recovery_s"] is not None, result
    assert result["ops_after_recovery"] > 0, result
    assert result["inconsistent"] == 0, result
    assert sorted(result["views"]) == ["r2", "r3", "r4"]  # r1 was killed
    assert all(view > 0 for view in result["views"].values()), result["views"]
    assert set(result["statuses"].values()) == {"normal"}, result["statuses"]


def test_the_explanation_is_built_from_the_cells() -> None:
    def cell(system: str, ops: int, fsyncs: int, batches: int) -> dict[str, object]:
        server = {"cpu": 0.5, "count": {"fsync": fsyncs, "send Reply": ops}, "seconds": {"fsync": 0.1}}
        server["executed" if system == "pbft" else "batches"] = batches
        return {"system": system, "clients": 16, "seconds": 1.0, "ops": ops, "ops_per_s": ops, "servers": {"x": server}}

    units = {"ed25519 verify": 85e-6, "hmac": 1.4e-6, "fsync": 1e-3}
    lines = pbft_kv.explain([cell("pbft", 100, 30, 10), cell("unreplicated", 400, 20, 20)], units)
    assert len(lines) == 3
    assert "pbft 10.0 requests" in lines[0] and "3.0 fsyncs" in lines[0]
    assert "fsync 10%" in lines[1]  # 0.1 s inside fsync in a 1 s cell
    assert "runs at 0.25 of the unreplicated store" in lines[2]
    # fsyncs per request: 3 per batch of 10, against 1 per batch of 20
    assert "0.30 fsyncs" in lines[2] and "the server's 0.05 (6.0x" in lines[2]
    assert "Largest measured term: fsync, 10%" in lines[2]


@pytest.mark.parametrize(
    "args", [["--seconds", "0"], ["--clients", "0"], ["--max-batch", "0"], ["--vc-warmup", "-1"], ["--bogus"]]
)
def test_bad_arguments_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        pbft_kv.main(args)
    assert exit.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err


def test_the_example_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "pbft.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "get('greeting') -> 'bonjour'" in done.stdout
    assert "cas('greeting', 'hello', 'hola') -> False" in done.stdout
    for replica in ("r2", "r3", "r4"):
        assert f"{replica}: view 1 (normal)" in done.stdout or f"{replica}: view 2 (normal)" in done.stdout
