"""``distcheck linearizable`` (issue #21): the three file formats, the models, a
model of the user's own, and bad input as one line with its line number.

Porcupine's key-value histories (tests/data/porcupine-kv/) are classified as
Porcupine classifies them; every other history here is written by hand, small
enough that its verdict can be checked by reading it.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distcheck.checks.cli import main
from distcheck.checks.histories import parts
from distcheck.checks.histories.linearizability import Operation
from distcheck.checks.histories.models import MODELS

ROOT = Path(__file__).resolve().parents[2]
#: Porcupine's key-value histories (MIT; tests/data/porcupine-kv/README.md says where from)
PORCUPINE_KV = ROOT / "tests" / "data" / "porcupine-kv"


def run(*argv: str) -> tuple[int, str, str]:
    """The command in this process: its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def run_json(*argv: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run(*argv, "--json")
    assert err == "", err
    report: dict[str, Any] = json.loads(out)
    return code, report


def one_line_error(code: int, out: str, err: str) -> str:
    assert code == 2 and out == "", (code, out, err)
    assert err.count("\n") == 1 and err.startswith("distcheck: error: ") and "Traceback" not in err, err
    return err


def jsonl(path: Path, *events: Mapping[str, Any]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


def call(client: str, op: str, **args: Any) -> dict[str, Any]:
    return {"client": client, "type": "invoke", "op": {"op": op, **args}}


def ok(client: str, result: Any) -> dict[str, Any]:
    return {"client": client, "type": "ok", "result": result}


def done(client: str, op: str, result: Any, **args: Any) -> list[dict[str, Any]]:
    """One client's operation that completes before the next event."""
    return [call(client, op, **args), ok(client, result)]


# --------------------------------------------------------- Porcupine's histories

PORCUPINE_FILES = ["c01-ok", "c01-bad", "c10-ok", "c10-bad", "c50-ok", "c50-bad"]


@pytest.mark.parametrize("name", PORCUPINE_FILES)
def test_porcupine_kv_histories_are_classified_as_porcupine_does(name: str) -> None:
    path = PORCUPINE_KV / f"{name}.txt"
    code, report = run_json("linearizable", str(path), "--model", "kv", "--initial", '""')
    linearizable = name.endswith("-ok")
    assert (code, report["verdict"]) == ((0, "ok") if linearizable else (1, "violated")), report["message"]
    assert report["format"] == "edn" and report["positions"] == "lines"
    assert report["clients"] == int(name[1:3])
    lines = path.read_text(encoding="utf-8").splitlines()
    if linearizable:
        # The witness holds every operation once, and each is the one its lines say.
        assert len(report["order"]) == report["operations"] == len(lines) // 2
        for operation in report["order"][:50]:
            assert f":type :invoke, :f :{operation['op']['op']}" in lines[operation["call"] - 1]
            assert f":process {operation['client'][1:]}," in lines[operation["ret"] - 1]
        return
    # The operations no order explains are named by their lines in the file.
    assert report["offending"], report["message"]
    for operation in report["offending"]:
        invocation, completion = lines[operation["call"] - 1], lines[operation["ret"] - 1]
        assert ":type :invoke" in invocation and f':key "{operation["op"]["key"]}"' in invocation
        assert ":type :ok" in completion and json.dumps(operation["result"]) in completion


def test_without_the_empty_initial_value_porcupines_reads_of_missing_keys_are_not_explained() -> None:
    # Porcupine's model reads a missing key as ""; ours reads it as null unless told.
    path = PORCUPINE_KV / "c01-ok.txt"
    code, report = run_json("linearizable", str(path), "--model", "kv")
    assert code == 1 and report["verdict"] == "violated"
    assert all(o["op"]["op"] == "get" and o["result"] == "" for o in report["offending"])


def test_a_violation_prints_the_operations_no_order_explains(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "h.jsonl", *done("a", "write", "ok", value=1), *done("b", "read", 2))
    code, out, err = run("linearizable", str(path), "--model", "register")
    assert code == 1 and err == ""
    assert out.splitlines()[0] == f"{path}: violated"
    assert "operations that no order can place next:\n  b read() → 2 [call 3, ret 4]\n" in out
    assert "(call and ret are line numbers in the file)" in out


# ------------------------------------------------------------------- the models

# For each model: a history some order explains, and one that no order explains.
# Each event list is in real-time order; overlapping operations are interleaved.
MODEL_HISTORIES: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
    "register": (
        [call("a", "write", value=1), call("b", "read"), ok("b", 1), ok("a", "ok"), *done("b", "read", 1)],
        [*done("a", "write", "ok", value=1), *done("a", "write", "ok", value=2), *done("b", "read", 1)],
    ),
    "cas-register": (
        [*done("a", "write", "ok", value=1), *done("b", "cas", True, expected=1, value=2), *done("a", "read", 2)],
        [*done("a", "write", "ok", value=1), *done("b", "cas", True, expected=3, value=2)],
    ),
    "kv": (
        [
            *done("a", "put", "ok", key="x", value="p"),
            call("a", "append", key="x", value="q"),
            call("b", "get", key="x"),
            ok("b", "pq"),
            ok("a", "ok"),
            *done("b", "cas", True, key="x", expected="pq", value="r"),
            *done("a", "delete", "ok", key="x"),
            *done("a", "get", None, key="x"),
            *done("b", "get", None, key="y"),
        ],
        [
            *done("a", "put", "ok", key="x", value="p"),
            *done("a", "append", "ok", key="x", value="q"),
            *done("b", "get", "qp", key="x"),
        ],
    ),
    "queue": (
        [*done("a", "enqueue", "ok", value=1), *done("a", "enqueue", "ok", value=2), *done("b", "dequeue", 1)],
        [*done("a", "enqueue", "ok", value=1), *done("a", "enqueue", "ok", value=2), *done("b", "dequeue", 2)],
    ),
    "set": (
        [*done("a", "add", "ok", value=2), *done("a", "add", "ok", value=1), *done("b", "read", [1, 2])],
        [*done("a", "add", "ok", value=1), *done("a", "remove", "ok", value=1), *done("b", "contains", True, value=1)],
    ),
    "counter": (
        [call("a", "add", value=2), call("b", "add", value=3), *done("c", "read", 3), ok("a", "ok"), ok("b", "ok")],
        [*done("a", "add", "ok", value=2), *done("b", "add", "ok", value=3), *done("c", "read", 3)],
    ),
    "lock": (
        [*done("a", "acquire", "ok"), call("b", "acquire"), *done("a", "release", "ok"), ok("b", "ok")],
        [*done("a", "acquire", "ok"), *done("b", "acquire", "ok")],
    ),
}


def test_every_model_has_a_history_of_each_kind() -> None:
    assert set(MODEL_HISTORIES) == set(MODELS)


@pytest.mark.parametrize("model", sorted(MODEL_HISTORIES))
def test_each_model_tells_a_linearizable_history_from_one_that_is_not(model: str, tmp_path: Path) -> None:
    good, bad = MODEL_HISTORIES[model]
    code, report = run_json("linearizable", str(jsonl(tmp_path / "good.jsonl", *good)), "--model", model)
    assert (code, report["verdict"]) == (0, "ok"), report["message"]
    code, report = run_json("linearizable", str(jsonl(tmp_path / "bad.jsonl", *bad)), "--model", model)
    assert (code, report["verdict"]) == (1, "violated"), report["message"]
    assert report["offending"]


def test_kv_keys_are_independent_sub_histories(tmp_path: Path) -> None:
    good, _ = MODEL_HISTORIES["kv"]
    code, report = run_json("linearizable", str(jsonl(tmp_path / "h.jsonl", *good)), "--model", "kv")
    assert code == 0 and report["sub_histories"] == 2


def test_an_operation_that_gave_up_may_or_may_not_have_taken_effect(tmp_path: Path) -> None:
    # a's write of 2 never answered (info): a read of 1 and then of 2 are both explained,
    # and a goes on under a new name.
    events = [
        *done("a", "write", "ok", value=1),
        call("a", "write", value=2),
        {"client": "a", "type": "info"},
        *done("b", "read", 1),
        *done("b", "read", 2),
        *done("a", "read", 2),
    ]
    code, report = run_json("linearizable", str(jsonl(tmp_path / "h.jsonl", *events)), "--model", "register")
    assert (code, report["pending"]) == (0, 1)
    assert [o["client"] for o in report["order"]] == ["a", "b", "a", "b", "a#2"]
    # Once read as 2, the value cannot go back to 1.
    events += done("b", "read", 1)
    code, report = run_json("linearizable", str(jsonl(tmp_path / "h.jsonl", *events)), "--model", "register")
    assert code == 1


def test_a_failed_operation_did_not_take_effect(tmp_path: Path) -> None:
    events = [call("a", "write", value=2), {"client": "a", "type": "fail"}, *done("b", "read", None)]
    code, report = run_json("linearizable", str(jsonl(tmp_path / "h.jsonl", *events)), "--model", "register")
    assert (code, report["failed"], report["operations"]) == (0, 1, 1)


def test_initial_sets_the_value_before_any_write(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "h.jsonl", *done("a", "read", 7))
    assert run_json("linearizable", str(path), "--model", "register")[0] == 1
    assert run_json("linearizable", str(path), "--model", "register", "--initial", "7")[0] == 0
    err = one_line_error(*run("linearizable", str(path), "--model", "queue", "--initial", "[]"))
    assert "takes no initial value" in err
    one_line_error(*run("linearizable", str(path), "--model", "register", "--initial", "{nope"))


# ------------------------------------------------------------ EDN and etcd logs

JEPSEN_EDN = """\
; a Jepsen register history, written as one vector, with what Jepsen adds
[{:index 0, :time 10, :process 0, :type :invoke, :f :write, :value 3}
 {:index 1, :time 12, :process 1, :type :invoke, :f :read, :value nil}
 {:index 2, :time 15, :process 0, :type :ok, :f :write, :value 3}
 {:index 3, :time 18, :process 1, :type :ok, :f :read, :value 3}
 {:process :nemesis, :type :info, :f :start, :value #{"n1" "n2"}}
 {:process 2, :type :invoke, :f :cas, :value [3 4]}
 {:process 2, :type :info, :f :cas, :value [3 4], :error #jepsen/error {:type :timeout}}
 #_{:process 9, :type :invoke, :f :write, :value 9}
 {:process 2, :type :invoke, :f :read, :value nil}
 {:process 2, :type :ok, :f :read, :value 4}
 {:process 1, :type :invoke, :f :cas, :value [3 5]}
 {:process 1, :type :fail, :f :cas, :value [3 5]}]
"""


def test_jepsen_edn_is_read_with_its_info_fail_and_nemesis(tmp_path: Path) -> None:
    path = tmp_path / "history.edn"
    path.write_text(JEPSEN_EDN, encoding="utf-8")
    code, report = run_json("linearizable", str(path), "--model", "cas-register")
    assert (code, report["format"], report["positions"]) == (0, "edn", "lines"), report["message"]
    # The cas that gave up took effect (a later read saw 4); the failed cas answered false.
    order = [(o["client"], o["op"]["op"], o["result"]) for o in report["order"]]
    assert order == [
        ("p0", "write", "ok"),
        ("p1", "read", 3),
        ("p2", "cas", None),
        ("p2#2", "read", 4),
        ("p1", "cas", False),
    ]
    path.write_text(JEPSEN_EDN.replace(":value 4}", ":value 5}"), encoding="utf-8")
    assert run_json("linearizable", str(path), "--model", "cas-register")[0] == 1


def test_several_edn_events_on_one_line_are_numbered_as_events(tmp_path: Path) -> None:
    path = tmp_path / "h.edn"
    path.write_text(
        "[{:process 0 :type :invoke :f :write :value 1} {:process 0 :type :ok :f :write :value 1}\n"
        " {:process 1 :type :invoke :f :read :value nil} {:process 1 :type :ok :f :read :value 2}]\n",
        encoding="utf-8",
    )
    code, out, _ = run("linearizable", str(path), "--model", "register")
    assert code == 1 and "[call 3, ret 4]" in out and "event numbers" in out


ETCD_LOG = """\
INFO  jepsen.core - Running test jepsen.etcd-test/register-test
INFO  jepsen.util - 0	:invoke	:write	3
INFO  jepsen.util - 1	:invoke	:read	nil
INFO  jepsen.util - 0	:ok	:write	3
INFO  jepsen.util - :nemesis	:info	:start	nil
INFO  jepsen.util - 1	:ok	:read	3
INFO  jepsen.util - 2	:invoke	:cas	[3 4]
INFO  jepsen.util - 2	:ok	:cas	[3 4]
INFO  jepsen.util - 3	:invoke	:read	nil
INFO  jepsen.util - 3	:fail	:read	:timed-out
INFO  jepsen.util - 0	:invoke	:cas	[3 1]
INFO  jepsen.util - 0	:fail	:cas	[3 1]
INFO  jepsen.util - 4	:invoke	:write	1
INFO  jepsen.util - 4	:info	:write	:timed-out
INFO  jepsen.util - 1	:invoke	:read	nil
INFO  jepsen.util - 1	:ok	:read	READ
"""


def test_porcupines_etcd_logs_are_read(tmp_path: Path) -> None:
    path = tmp_path / "etcd.log"
    path.write_text(ETCD_LOG.replace("READ", "1"), encoding="utf-8")
    code, report = run_json("linearizable", str(path), "--model", "cas-register")
    assert (code, report["format"]) == (0, "etcd"), report["message"]
    assert (report["operations"], report["pending"], report["failed"], report["clients"]) == (6, 1, 1, 4)
    path.write_text(ETCD_LOG.replace("READ", "nil"), encoding="utf-8")
    code, report = run_json("linearizable", str(path), "--model", "cas-register")
    assert code == 1
    assert [(o["client"], o["call"]) for o in report["offending"]] == [("p1", 15)]


# --------------------------------------------------------- a model of one's own


class Toggle:
    """A user's model: a switch that ``flip`` turns and ``look`` reads; no SequentialModel."""

    def init(self) -> bool:
        return False

    def step(self, state: bool, op: Mapping[str, Any]) -> tuple[bool, Any]:
        return (not state, "ok") if op["op"] == "flip" else (state, state)

    def partition(self, ops: Sequence[Operation]) -> list[list[Operation]]:
        for operation in ops:
            if operation.op.get("op") not in ("flip", "look"):
                raise ValueError(f"Toggle knows flip and look, not {operation.op.get('op')!r}")
        return [list(ops)]


def test_a_model_of_ones_own_is_named_package_module_class(tmp_path: Path) -> None:
    name = f"{__name__}:Toggle"
    good = jsonl(tmp_path / "good.jsonl", *done("a", "flip", "ok"), *done("b", "look", True))
    bad = jsonl(tmp_path / "bad.jsonl", *done("a", "flip", "ok"), *done("b", "look", False))
    assert run_json("linearizable", str(good), "--model", name)[0] == 0
    assert run_json("linearizable", str(bad), "--model", name)[0] == 1
    # Read from EDN, a model without from_jepsen takes :f as the operation and the
    # completion's :value as its result.
    edn = tmp_path / "h.edn"
    edn.write_text(
        '{:process 0, :type :invoke, :f :flip}\n{:process 0, :type :ok, :f :flip, :value "ok"}\n'
        "{:process 1, :type :invoke, :f :look}\n{:process 1, :type :ok, :f :look, :value true}\n",
        encoding="utf-8",
    )
    assert run_json("linearizable", str(edn), "--model", name)[0] == 0
    err = one_line_error(
        *run("linearizable", str(jsonl(tmp_path / "x.jsonl", *done("a", "push", "ok"))), "--model", name)
    )
    assert "Toggle knows flip and look" in err


def test_a_model_module_in_the_current_folder_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_models_for_distcheck.py").write_text(
        "from distcheck.checks.histories.models import Signature, SequentialModel\n"
        "class Gauge(SequentialModel):\n"
        "    NAME = 'gauge'\n"
        "    SIGNATURES = {'set': Signature(('value',), 'ok', 'sets'), 'get': Signature((), 'value', 'reads')}\n"
        "    def op_set(self, state, value):\n        return value, 'ok'\n"
        "    def op_get(self, state):\n        return state, state\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    path = jsonl(tmp_path / "h.jsonl", *done("a", "set", "ok", value=4), *done("b", "get", 4))
    assert run_json("linearizable", str(path), "--model", "my_models_for_distcheck:Gauge")[0] == 0
    err = one_line_error(*run("linearizable", str(path), "--model", "my_models_for_distcheck:Nope"))
    assert "has no class 'Nope'" in err
    sys.modules.pop("my_models_for_distcheck", None)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("registr", "unknown model 'registr'"),
        ("no_such_module_here:Model", "cannot import 'no_such_module_here'"),
        ("json:JSONDecodeError", "is not a model: it lacks init, step, partition"),
        (":X", "package.module:Class"),
    ],
)
def test_a_model_that_cannot_be_had_is_a_usage_error(model: str, expected: str, tmp_path: Path) -> None:
    path = jsonl(tmp_path / "h.jsonl", *done("a", "read", None))
    assert expected in one_line_error(*run("linearizable", str(path), "--model", model))


# ------------------------------------------------------- step budget, timeout


def hard_history(path: Path, clients: int) -> Path:
    """Many concurrent appends, then a read no order gives: the search must try
    every order of the appends before it can say so."""
    events = [call(f"c{i}", "append", key="k", value=f"<{i}>") for i in range(clients)]
    events += [ok(f"c{i}", "ok") for i in range(clients)]
    events += done("r", "get", "nothing like it", key="k")
    return jsonl(path, *events)


def test_a_search_cut_short_says_unknown(tmp_path: Path) -> None:
    path = hard_history(tmp_path / "h.jsonl", 14)
    code, report = run_json("linearizable", str(path), "--model", "kv", "--max-steps", "500")
    assert (code, report["verdict"]) == (1, "unknown") and "--max-steps 500" in report["message"]
    code, report = run_json("linearizable", str(path), "--model", "kv", "--timeout", "0.2")
    assert (code, report["verdict"]) == (1, "unknown") and "--timeout 0.2" in report["message"]
    assert run_json("linearizable", str(hard_history(tmp_path / "small.jsonl", 3)), "--model", "kv")[0] == 1


def test_a_search_cut_short_on_several_processes_says_unknown_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two hard keys, and the pool used however small the history: the budget and the
    # deadline are each worker's to watch.
    monkeypatch.setattr(parts, "PARALLEL_MIN_OPERATIONS", 0)
    events = [call(f"c{i}-{k}", "append", key=k, value=f"<{i}>") for k in "ab" for i in range(14)]
    events += [ok(f"c{i}-{k}", "ok") for k in "ab" for i in range(14)]
    events += done("r", "get", "nothing like it", key="a") + done("s", "get", "nor this", key="b")
    path = jsonl(tmp_path / "h.jsonl", *events)
    code, report = run_json("linearizable", str(path), "--model", "kv", "--max-steps", "500", "--workers", "2")
    assert (code, report["verdict"], report["workers"]) == (1, "unknown", 2)
    assert "--max-steps 500 on 2 sub-history(ies)" in report["message"]
    code, report = run_json("linearizable", str(path), "--model", "kv", "--timeout", "0.2", "--workers", "2")
    assert (code, report["verdict"], report["workers"]) == (1, "unknown", 2) and "--timeout 0.2" in report["message"]


# ------------------------------------------------------- steps, several processes


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in ("seconds", "workers")}


@pytest.mark.parametrize("name", ["c10-ok", "c10-bad"])
def test_several_processes_give_the_same_verdict_report_and_steps_as_one(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(PORCUPINE_KV / f"{name}.txt")
    code, alone = run_json("linearizable", path, "--model", "kv", "--initial", '""', "--workers", "1")
    assert alone["workers"] == 1 and alone["steps"] > alone["sub_histories"]
    monkeypatch.setattr(parts, "PARALLEL_MIN_OPERATIONS", 0)  # a pool even for 300 operations
    code2, shared = run_json("linearizable", path, "--model", "kv", "--initial", '""', "--workers", "2")
    assert shared["workers"] == 2
    assert (code2, comparable(shared)) == (code, comparable(alone))


def test_the_largest_porcupine_history_fails_on_the_same_key_on_two_processes() -> None:
    # Above the threshold: the pool is used without being asked, and the failing key
    # is the one a single process reports.
    path = str(PORCUPINE_KV / "c50-bad.txt")
    _, alone = run_json("linearizable", path, "--model", "kv", "--initial", '""', "--workers", "1")
    _, shared = run_json("linearizable", path, "--model", "kv", "--initial", '""', "--workers", "2")
    assert shared["workers"] == 2 and "on key 3 " in shared["message"]
    assert comparable(shared) == comparable(alone)


def test_a_small_history_is_checked_in_this_process_whatever_the_workers(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "h.jsonl", *done("a", "put", "ok", key="x", value=1), *done("b", "get", 1, key="y"))
    code, report = run_json("linearizable", str(path), "--model", "kv", "--workers", "4")
    assert (code, report["workers"], report["sub_histories"]) == (1, 1, 2)


def test_the_steps_are_printed_and_are_the_checkers_count(tmp_path: Path) -> None:
    events = [*done("a", "put", "ok", key="x", value=1), *done("b", "get", 1, key="x")]
    path = jsonl(tmp_path / "h.jsonl", *events)
    code, out, _ = run("linearizable", str(path), "--model", "kv")
    # The start, then the put, then the get: three (placed operations, state) pairs.
    assert code == 0 and "; 3 search steps; " in out.splitlines()[-1]
    assert run_json("linearizable", str(path), "--model", "kv")[1]["steps"] == 3


def test_bad_workers_is_one_line() -> None:
    path = str(PORCUPINE_KV / "c01-ok.txt")
    err = one_line_error(*run("linearizable", path, "--model", "kv", "--workers", "0"))
    assert "--workers: must be a positive integer, got 0" in err


def test_linearizable_does_not_import_the_spec_registry() -> None:
    # The command's start-up: the registry, the explorers and the conformance wiring
    # take most of a second to import and play no part in it.
    script = (
        "import sys\n"
        "from distcheck.checks.cli import main\n"
        f"code = main(['linearizable', {str(PORCUPINE_KV / 'c01-ok.txt')!r}, '--model', 'kv', '--initial', '\"\"'])\n"
        "heavy = [m for m in ('distcheck.spec.registry', 'distcheck.checks.params', "
        "'distcheck.checks.conformance.wiring', 'distcheck.impl.runtime', 'distcheck.checks.search.explore') "
        "if m in sys.modules]\n"
        "print(code, heavy)\n"
    )
    done_ = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done_.stdout.splitlines()[-1] == "0 []", done_.stdout + done_.stderr


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "a.jsonl",
            '{"client": "a", "type": "invoke", "op": {"op": "read"}}\n{"type": "ok"}\n',
            ":2: an ok event needs client",
        ),
        (
            "b.jsonl",
            '{"client": "a", "type": "ok", "result": 1}\n',
            ":1: a completion (ok) for client a, which has no open",
        ),
        (
            "c.jsonl",
            '{"client": "a", "type": "invoke", "op": {"op": "read"}}\n' * 2,
            ":2: client a invokes an operation while its invocation at line 1",
        ),
        (
            "d.jsonl",
            '{"client": "a", "type": "invoke", "op": {"op": "read"}, "colour": 1}\n',
            ":1: an invoke event has colour",
        ),
        ("e.jsonl", '{"client": "a", "type": "invoke", "op": {"op": "read"\n', ":1: not valid JSON"),
        ("f.jsonl", '{"client": "a", "type": "begin"}\n', ':1: "type" is \'begin\'; expected "invoke"'),
        (
            "g.jsonl",
            '{"client": "a", "type": "invoke", "op": {"op": "reed"}}\n',
            "unknown operation 'reed'; the register model knows read(), write(value)",
        ),
        (
            "h.edn",
            "{:process 0, :type :invoke, :f :read, :value nil}\n{:process 0 :type :ok :f :read :value [1 2}\n",
            ":2: '}' closes the '[' of line 2; expected ']'",
        ),
        ("i.edn", "{:process 0, :type :invoke, :f :read, :value nil\n", ":1: the '{' opened on line 1 is never closed"),
        (
            "j.edn",
            "{:process 0, :type :invoke, :f :read, :value nil}\n[:not :a :map]\n",
            ":2: expected a map such as {:process 0",
        ),
        (
            "k.edn",
            "{:process 0, :type :invoke, :f :read, :value nil}\n{:process 0, :type :ok, :f :write, :value 1}\n",
            ":2: completes :read of line 1 with :write",
        ),
        (
            "l.edn",
            "{:process 0, :type :invoke, :f :cas, :value 3}\n",
            ":1: :cas takes its expected, value as a vector of 2",
        ),
        ("m.edn", "{:process 0, :type :invoke, :value 3}\n", ":1: a map without :f"),
        (
            "n.edn",
            "{:process 0, :type :invoke, :f :write, :value 123456789012345678901234567890}\n",
            ":1: an integer of 30 digits",
        ),
        (
            "o.log",
            "INFO  jepsen.util - 0\t:invoke\t:write\t3\nINFO  jepsen.util - 0\t:ok\n",
            ":2: expected a client operation such as",
        ),
        (
            "p.log",
            "INFO  jepsen.util - 0\t:invoke\t:write\t[3\n",
            ":1: the value: the '[' opened on line 1 is never closed",
        ),
        ("q.txt", "hello\n", ":1: not a history: expected a JSON object per line"),
        ("r.txt", "", ": no events: the file holds nothing but blank lines"),
        ("s.edn", ";only a comment\n", ": no events"),
        ("t.edn", "{:process :nemesis, :type :info, :f :start}\n", ": no operations in the file (read as edn)"),
    ],
)
def test_malformed_input_is_one_line_naming_the_line_and_what_was_expected(
    name: str, text: str, expected: str, tmp_path: Path
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    err = one_line_error(*run("linearizable", str(path), "--model", "cas-register" if "cas" in text else "register"))
    assert f"{path}{expected}" in err or expected in err, err
    if expected.startswith(":"):
        assert f"{path}{expected}" in err, err


def test_a_missing_file_and_a_non_utf8_file_are_usage_errors(tmp_path: Path) -> None:
    assert "no such file" in one_line_error(*run("linearizable", str(tmp_path / "none"), "--model", "register"))
    path = tmp_path / "latin1.edn"
    path.write_bytes(b'{:process 0, :type :invoke, :f :write, :value "caf\xe9"}\n')
    assert ":1: not UTF-8" in one_line_error(*run("linearizable", str(path), "--model", "register"))


# Fragments that make near-miss histories, so the fuzz reaches past the first line.
FRAGMENTS = [
    '{"client": "a", "type": "invoke", "op": {"op": "write", "value": 1}}',
    '{"client": "a", "type": "ok", "result": "ok"}',
    '{"client": "b", "type": "invoke", "op": {"op": "read"}}',
    '{"client": "b", "type": "ok", "result": 1}',
    '{"client": "b", "type": "info"}',
    '{"client": 1, "type": "fail", "error": [1, {"x": null}]}',
    "{:process 0, :type :invoke, :f :write, :value 1}",
    "{:process 0, :type :ok, :f :write, :value 1}",
    "{:process 1, :type :invoke, :f :cas, :value [1 2]}",
    "{:process 1, :type :fail, :f :cas, :value [1 2]}",
    '{:process 2, :type :invoke, :f :read :key "k", :value nil}',
    "{:process 2, :type :ok, :f :read, :value #{1 2}}",
    "[{:process 0 :type :info :f :write :value 1}",
    '#_ #inst "2020" \\a \\u0041 1.5M 7N :a/b sym ;c',
    "INFO  jepsen.util - 0\t:invoke\t:read\tnil",
    "INFO  jepsen.util - 0\t:ok\t:read\t1",
    "INFO  jepsen.util - 1\t:invoke\t:cas\t[1 2]",
    "INFO  jepsen.util - 1\t:fail\t:cas\t[1 2]\t:timed-out",
    "]",
    "}",
    "",
]


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=40)), max_size=12),
    raw=st.binary(max_size=40),
    model=st.sampled_from(sorted(MODELS)),
    fmt=st.sampled_from(["auto", "jsonl", "edn", "etcd"]),
)
def test_arbitrary_input_is_answered_never_a_traceback(lines: list[str], raw: bytes, model: str, fmt: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "h"
        path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + raw)
        code, out, err = run("linearizable", str(path), "--model", model, "--format", fmt, "--max-steps", "5000")
    assert code in (0, 1, 2), err
    assert "Traceback" not in err and "internal error" not in err
    if code == 2:
        one_line_error(code, out, err)
    else:
        assert re.match(r".*: (ok|violated|unknown)\n", out), out


# ------------------------------------------------------------------- the docs

DOCS = ROOT / "docs" / "histories.md"


def docs_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)


def test_every_history_line_here_and_in_the_docs_fits_the_schema(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "docs" / "history.schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    lines = [json.loads(line) for line in docs_blocks("jsonl")[0].splitlines()]
    for good, bad in MODEL_HISTORIES.values():
        lines += good + bad
    for line in lines:
        validator.validate(line)
    for wrong in (
        {"client": "a", "type": "ok"},
        {"client": "a", "type": "invoke", "op": {}},
        {"client": True, "type": "info"},
    ):
        assert not validator.is_valid(wrong)
        path = jsonl(tmp_path / "wrong.jsonl", wrong)
        one_line_error(*run("linearizable", str(path), "--model", "register"))


def test_the_docs_example_prints_what_the_docs_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bank.jsonl").write_text(docs_blocks("jsonl")[0], encoding="utf-8")
    shown = next(b for b in docs_blocks("text") if b.startswith("$ distcheck linearizable bank.jsonl --model kv\n"))
    code, out, _ = run("linearizable", "bank.jsonl", "--model", "kv")
    assert code == 1
    assert re.sub(r"\d+\.\d\d s$", "S s", out, flags=re.M) == re.sub(
        r"\d+\.\d\d s$", "S s", shown.split("\n", 1)[1], flags=re.M
    )


def test_the_docs_model_of_ones_own_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = next(b for b in docs_blocks("python") if b.startswith("# my_models.py"))
    (tmp_path / "my_models.py").write_text(source, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    pushes = [*done("a", "push", "ok", value=1), *done("a", "push", "ok", value=2)]
    good = jsonl(tmp_path / "good.jsonl", *pushes, *done("b", "pop", 2), *done("b", "pop", 1), *done("b", "pop", None))
    bad = jsonl(tmp_path / "bad.jsonl", *pushes, *done("b", "pop", 1))
    assert run_json("linearizable", str(good), "--model", "my_models:Stack")[0] == 0
    assert run_json("linearizable", str(bad), "--model", "my_models:Stack")[0] == 1
    sys.modules.pop("my_models", None)
