"""``distcheck simulate SPEC --history-out FILE`` (issue #21, "use it everywhere"): every
key-value implementation writes its clients' history in our JSON Lines format, which
``distcheck linearizable`` then judges as the simulation did: a passing run's history
is linearizable, the stale-read Raft's failing run's is not.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import pytest

from distcheck.checks.cli import main
from distcheck.checks.histories.export import history_lines
from distcheck.checks.histories.linearizability import Operation

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "history.schema.json").read_text())


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("spec", ["raft", "paxos", "abd", "pbft"])
def test_a_passing_runs_history_is_written_valid_and_linearizable(spec: str, tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    code, out, _ = run("simulate", spec, "--seed", "3", "--faults", "crash,drop", "--history-out", str(path))
    assert code == 0, out
    assert f"written to {path}" in out
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines and {line["type"] for line in lines} >= {"invoke", "ok"}
    for line in lines:
        jsonschema.validate(line, SCHEMA)
    code, out, _ = run("linearizable", str(path), "--model", "kv")
    assert code == 0 and out.startswith(f"{path}: ok"), out


def test_a_failing_runs_history_is_the_one_written_and_is_not_linearizable(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    code, out, _ = run(
        "simulate", "raft", "--variant", "stale_read", "--runs", "20", "--faults", "crash,drop,partition",
        "--history-out", str(path), "--trace-out", str(tmp_path / "trace.jsonl"),
    )  # fmt: skip
    assert code == 1 and "client history of the failing run" in out, out
    code, out, _ = run("linearizable", str(path), "--model", "kv")
    assert code == 1 and "not linearizable" in out, out


def test_a_protocol_without_clients_histories_is_told_so(tmp_path: Path) -> None:
    code, _, err = run("simulate", "twophase", "--history-out", str(tmp_path / "h.jsonl"))
    assert code == 2
    assert err.count("\n") == 1 and "keeps no client history" in err and "raft" in err


def test_an_operation_given_up_is_info_before_the_clients_next_one() -> None:
    ops = [
        Operation("c1", 1, None, {"op": "put", "key": "x", "value": 1}, None),
        Operation("c2", 2, 3, {"op": "get", "key": "x"}, None),
        Operation("c1", 4, 5, {"op": "get", "key": "x"}, 1),
        Operation("c2", 6, None, {"op": "put", "key": "x", "value": 2}, None),
    ]
    events = [json.loads(line) for line in history_lines(ops)]
    assert [(e["client"], e["type"]) for e in events] == [
        ("c1", "invoke"),
        ("c2", "invoke"),
        ("c2", "ok"),
        ("c1", "info"),  # given up: it may have taken effect; the client goes on
        ("c1", "invoke"),
        ("c1", "ok"),
        ("c2", "invoke"),  # left open to the end of the file
    ]
