"""Smoke test of ``benchmarks/tracing_overhead.py`` at a tiny size: one round of each
cluster mode (a fraction of a second of puts by one client on a fresh 3-server Raft
cluster), the message path's ping-pong in every mode, and the command line.

It checks that the benchmark still runs and reports what it claims (a row and a
ratio for every mode, spans written in the rounds that trace and none in the others,
one span per message handled on the message path), not how fast anything is.
Skipped where OpenTelemetry (the ``telemetry`` extra) is missing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import tracing_overhead  # a script folder, put on the path above

pytestmark = pytest.mark.skipif(
    tracing_overhead.otel_missing() is not None, reason=str(tracing_overhead.otel_missing())
)


def test_each_cluster_mode_is_measured_and_only_the_traced_round_writes_spans() -> None:
    cells: list[dict[str, Any]] = []
    rounds: list[dict[str, Any]] = []
    result = tracing_overhead.run_cluster(
        list(tracing_overhead.MODES), 1, ["put"], [1], 0.3, cells.append, rounds.append
    )
    assert [r["mode"] for r in result["rounds"]] == ["off", "pass", "on", "sampled"]
    assert rounds == result["rounds"]
    for cell in cells:
        assert cell["ops"] > 0 and cell["errors"] == 0, cell
        assert cell["p50_ms"] is not None and cell["p99_ms"] is not None
        assert cell["p50_ms"] <= cell["p99_ms"]
    off, passing, on, sampled = result["rounds"]
    assert off["stray_spans"] == 0 and passing["stray_spans"] == 0
    # every call a client made is a span (the untimed first put too), and the servers added theirs
    measured = on["cells"][0]["ops"]
    assert on["client_call_spans"] >= measured + 1, on
    assert on["server_spans"] >= on["client_call_spans"], on
    assert on["log_lines"] > 0
    # one call in a hundred recorded: far fewer client calls than made (the servers'
    # spans follow the client's choice)
    made = sampled["cells"][0]["ops"] + 1
    assert sampled["client_call_spans"] < made / 10 + 5, sampled
    assert sampled["log_lines"] > 0
    summary = {row["mode"]: row for row in result["summary"]}
    assert set(summary) == {"off", "pass", "on", "sampled"}
    for mode, row in summary.items():
        assert row["ops"] == sum(c["ops"] for c in cells if c["mode"] == mode)
        assert row["ops_per_s_vs_off"] == pytest.approx(row["ops_per_s"] / summary["off"]["ops_per_s"])
        assert row["p50_ms_vs_off"] == pytest.approx(row["p50_ms"] / summary["off"]["p50_ms"])
    assert summary["off"]["ops_per_s_vs_off"] == pytest.approx(1.0)
    for row in result["summary"]:  # the printed row: its mode and its ratios, each in its column
        fields = tracing_overhead.summary_row(row).split()
        assert len(fields) == 11 and fields[2] == row["mode"], fields
        assert fields[7:9] == [f"{row['ops_per_s_vs_off']:.2f}", f"{row['p50_ms_vs_off']:.2f}"], fields


def test_the_message_path_makes_one_span_per_message_handled_when_traced() -> None:
    rows = tracing_overhead.run_micro(list(tracing_overhead.PING_MODES), 40, 2, lambda row: None)
    by_mode = {row["mode"]: row for row in rows}
    assert list(by_mode) == list(tracing_overhead.PING_MODES)
    for row in rows:
        assert row["runs"] == 2 and len(row["each_us"]) == 2
        assert row["us_per_round_trip"] == pytest.approx(min(row["each_us"]))
        assert row["vs_off"] == pytest.approx(row["us_per_round_trip"] / by_mode["off"]["us_per_round_trip"])
        assert min(row["each_us"]) <= row["median_us_per_round_trip"] <= max(row["each_us"])
        assert row["median_vs_off"] == pytest.approx(
            row["median_us_per_round_trip"] / by_mode["off"]["median_us_per_round_trip"]
        )
    # the root, the first message's span, then a span for each Ping and each Pong
    assert by_mode["on"]["spans"] == by_mode["on"]["spans_expected"] == 2 * 40 + 2
    assert all(by_mode[mode]["spans"] is None for mode in ("off", "metrics", "pass"))


def test_the_command_line_prints_json_and_refuses_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    code = tracing_overhead.main(["--parts", "micro", "--pings", "10", "--ping-repeat", "1", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert [row["mode"] for row in out["micro"]] == list(tracing_overhead.PING_MODES)
    assert "cluster" not in out and "load_average_start" in out and "load_average_end" in out
    for bad in (["--modes", "off,loud"], ["--seconds", "0"], ["--parts", ""], ["--pings", "0"], ["--clients", "x"]):
        assert exit_status(bad) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("tracing_overhead.py: "), (bad, err)


def exit_status(argv: list[str]) -> object:
    """What ``main`` returns, or the status it exits with (argparse's own checks exit)."""
    try:
        return tracing_overhead.main(argv)
    except SystemExit as stopped:
        return stopped.code
