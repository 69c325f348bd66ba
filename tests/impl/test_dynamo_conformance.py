"""checks/conformance/wiring/dynamo: the Dynamo store (impl/registers/dynamo.py) run
under the controlled scheduler with every fault, its real state checked after every
step, and its trace validated key by key against spec/dynamo.py.

What the tests show (docs/dynamo-store.md, "Checking the store against the spec"):

- runs under crashes, drops, duplicates, reordering and partitions pass, and their
  traces are explained step by step (puts, stores, answers, reads, repairs);
- the broken variant ``unsynced_writes`` is caught at once by the state check, and
  by the trace validation alone within a few seeds of crashes;
- validation rejects a doctored trace: a replica claiming versions it cannot hold, a
  put acknowledged without its stores, a context that covers what it did not;
- the projection maps a put's context to the puts it covers, as the spec's vector.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from distcheck.checks.cli import main
from distcheck.checks.conformance.simulate import SimOptions, simulate
from distcheck.checks.conformance.wiring.dynamo import DynamoSystem, DynamoWiring, lost_put, project, validate_run
from distcheck.impl.registers import dynamo
from distcheck.impl.runtime import FaultPolicy
from distcheck.spec.dynamo import Config, Dynamo

ALL_FAULTS = FaultPolicy(crash=True, drop=True, duplicate=True, reorder=True, partition=True)
SPEC = Dynamo(Config(servers=3))


class Capture(DynamoWiring):
    """The wiring, keeping the system it built so a test can look at it after the run."""

    system: DynamoSystem

    def build(self, params: Mapping[str, Any], variant: str | None, rng: Any) -> Any:
        self.system = super().build(params, variant, rng)
        return self.system


def run(seed: int, variant: str | None = None, **options: Any) -> tuple[Any, DynamoSystem]:
    wiring = Capture()
    steps = options.pop("steps", wiring.default_steps)
    faults = options.pop("faults", ALL_FAULTS)
    outcome = simulate(
        SPEC, wiring, {"servers": 3}, SimOptions(seed, faults=faults, steps=steps, variant=variant, **options)
    )
    return outcome, wiring.system


# ------------------------------------------------------------------- controlled


def test_runs_under_every_fault_converge_and_validate_key_by_key() -> None:
    stepped: set[str] = set()
    crashes = completed = 0
    for seed in range(12):
        outcome, system = run(seed)
        assert outcome.ok, f"seed {seed}: {outcome.message}"
        assert outcome.validation.ok and outcome.validation.events > 0
        assert system.cluster.converged()
        crashes += sum(1 for s in outcome.run.schedule if s.choice.kind == "crash")
        completed += sum(len(c.results) for c in system.cluster.clients)
        for key_run in project(outcome.run.trace.events):
            stepped |= {s.event["action"]["type"] for s in key_run.steps if s.event is not None}
    assert crashes > 0 and completed > 0  # the faults were there, and operations got through
    assert {"Put", "Store", "PutDone", "Get", "Answer", "GetDone"} <= stepped


def test_unsynced_writes_breaks_stored_kept_at_once() -> None:
    outcome, _ = run(0, "unsynced_writes", faults=FaultPolicy(crash=True))
    assert outcome.kind == "invariant"
    assert "StoredKept violated" in outcome.message and "after a crash" in outcome.message


def test_unsynced_writes_is_caught_by_the_trace_alone() -> None:
    """With the state checks off, a crash that loses an acknowledged version shows in
    the trace: the server's next step logs a replica no behaviour of the spec has."""
    for seed in range(20):
        outcome, _ = run(seed, "unsynced_writes", faults=FaultPolicy(crash=True), check_invariants=False)
        if not outcome.ok:
            assert outcome.kind == "invalid_trace", outcome.message
            assert "no behaviour of dynamo explains" in outcome.message
            return
    pytest.fail("unsynced_writes passed 20 runs with the trace checked alone")


def test_the_variant_is_caught_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["simulate", "dynamo", "--variant", "unsynced_writes", "--faults", "crash", "--trace-out", "/dev/null"])
        == 1
    )
    assert "violated" in capsys.readouterr().out
    assert main(["simulate", "dynamo", "--variant", "nope"]) == 2


# ---------------------------------------------------------- trace validation


def passing_trace(tmp_path: Path) -> Path:
    out = tmp_path / "run.jsonl"
    assert main(["simulate", "dynamo", "--faults", "drop,duplicate", "--trace-out", str(out)]) == 0
    return out


def test_a_runs_trace_validates_key_by_key_and_doctored_ones_do_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = passing_trace(tmp_path)
    capsys.readouterr()
    assert main(["validate", "dynamo", str(path), "--split", "key"]) == 0
    assert "explained" in capsys.readouterr().out
    assert main(["validate", "dynamo", str(path)]) == 2  # a store's trace is only a behaviour key by key
    assert "--split key" in capsys.readouterr().err
    lines = path.read_text().splitlines()
    events = [json.loads(line) for line in lines[2:]]
    assert validate_run(SPEC, events).ok

    # A replica answers a read with a version no put made.
    answer = next(i for i, e in enumerate(events) if e["action"]["type"] == "ReadReplica")
    doctored = copy.deepcopy(events)
    doctored[answer]["action"]["siblings"].append({"value": 99, "dot": ["s3", 42], "context": {}, "vv": {"s3": 42}})
    result = validate_run(SPEC, doctored)
    assert not result.ok and "a version no put made" in result.message
    doctored_path = tmp_path / "doctored.jsonl"
    doctored_path.write_text("\n".join(lines[:2] + [json.dumps(e) for e in doctored]) + "\n")
    capsys.readouterr()
    assert main(["validate", "dynamo", str(doctored_path), "--split", "key"]) == 1
    assert "a version no put made" in capsys.readouterr().out

    # A put returns before W replicas stored it: its stores removed.
    done = next(e for e in events if e["action"]["type"] == "AckPut")
    put = next(e for e in events if e["action"]["type"] == "Put" and e["op"] == done["op"])
    dot = put["action"]["dot"]
    doctored = [
        e
        for e in events
        if not (e["action"]["type"] == "Merge" and any(v["dot"] == dot for v in e["action"]["received"]))
    ]
    result = validate_run(SPEC, doctored)
    assert not result.ok and "PutDone" in result.message


def test_a_damaged_store_trace_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = passing_trace(tmp_path)
    lines = path.read_text().splitlines()
    events = [json.loads(line) for line in lines[2:]]
    index = next(i for i, e in enumerate(events) if e["action"]["type"] == "Put")
    del events[index]["action"]["key"]
    path.write_text("\n".join([*lines[:2], *(json.dumps(e) for e in events)]) + "\n")
    capsys.readouterr()
    assert main(["validate", "dynamo", str(path), "--split", "key"]) == 2
    err = capsys.readouterr().err
    assert "action.key must be a str" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------- the projection


def version(value: int, dot: tuple[str, int], context: Mapping[str, int]) -> dict[str, Any]:
    vector = dict(context)
    vector[dot[0]] = max(vector.get(dot[0], 0), dot[1])
    return {"value": value, "dot": list(dot), "context": dict(context), "vv": vector}


def event(step: int, action: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"step": step, "actor": action.get("server"), "action": action, **extra}


def two_puts(second_keeps_first: bool) -> list[dict[str, Any]]:
    """c1 puts 1 through s1 (W = 2: s2 stores it); c2 reads it through s2 and puts 2
    there in that context, which supersedes 1 — unless the log says otherwise."""
    v1 = version(1, ("s1", 1), {})
    v2 = version(2, ("s2", 1), {"s1": 1})
    first = dict(server="s1", key="x", value=1, dot=["s1", 1], context={}, vv={"s1": 1}, siblings=[v1])
    merged = dict(server="s2", key="x", source="s1", cause="replicate", received=[v1], siblings=[v1])
    ack = dict(server="s1", key="x", dot=["s1", 1], vv={"s1": 1}, acks=["s1", "s2"])
    start = dict(server="s2", key="x", siblings=[v1])
    answer = dict(server="s3", key="x", siblings=[])
    ret = dict(
        server="s2",
        key="x",
        siblings=[v1],
        values=[1],
        context={"s1": 1},
        answered=["s2", "s3"],
        answers={"s2": [["s1", 1]], "s3": []},
        repair=["s3"],
    )
    second = dict(
        server="s2",
        key="x",
        value=2,
        dot=["s2", 1],
        context={"s1": 1},
        vv=v2["vv"],
        siblings=[v1, v2] if second_keeps_first else [v2],
    )
    return [
        event(1, {"type": "Put", **first}, client="c1", op="s1.1.1"),
        event(2, {"type": "Merge", **merged}),
        event(3, {"type": "AckPut", **ack}, client="c1", op="s1.1.1"),
        event(4, {"type": "StartGet", **start}, client="c2", op="s2.1.1"),
        event(5, {"type": "ReadReplica", **answer}, op="s2.1.1"),
        event(6, {"type": "ReturnGet", **ret}, client="c2", op="s2.1.1"),
        event(7, {"type": "Put", **second}, client="c2", op="s2.1.2"),
    ]


def test_a_context_maps_to_the_puts_it_covers() -> None:
    events = two_puts(second_keeps_first=False)
    (key_run,) = project(events)
    assert key_run.writes == {"s1.1.1": 1, "s2.1.2": 2}
    assert key_run.covers == {"s1.1.1": (), "s2.1.2": ("s1.1.1",)}
    put = key_run.steps[-1].event
    assert put is not None and put["action"] == {
        "type": "Put",
        "client": "s2.1.2",
        "coordinator": "s2",
        "context": "s1.1.1",
    }
    assert validate_run(SPEC, events).ok


def test_a_put_that_keeps_what_its_context_covers_is_not_explained() -> None:
    result = validate_run(SPEC, two_puts(second_keeps_first=True))
    assert not result.ok
    assert "step 7" in result.message and "s2 holds {s1.1.1=1, s2.1.2=2}" in result.message


def test_a_repeated_dot_is_not_explained() -> None:
    events = two_puts(second_keeps_first=False)
    events[-1]["action"]["dot"] = ["s1", 1]  # the dot of the first put, made again
    result = validate_run(SPEC, events)
    assert not result.ok and "a second time" in result.message


def test_store_versions_round_trip_through_the_projection() -> None:
    """The projection reads versions as the store records them (``record_form``)."""
    from distcheck.impl.clocks import Vector

    recorded = dynamo.Version(1, ("s1", 1), Vector()).record_form()
    assert recorded == version(1, ("s1", 1), {})


# ---------------------------------------------------------- the end-of-run check


def lost_update(c2_read_first: bool) -> str | None:
    """c1 puts 1 and c2 puts 2 blind through s1 (dots s1:1, s1:2); c2 then puts 3 in
    the context its own put returned, {s1: 2}, which covers s1:1 as well.  Every
    replica ends holding only 3."""
    v1, v2 = version(1, ("s1", 1), {}), version(2, ("s1", 2), {})
    v3 = version(3, ("s1", 3), {"s1": 2})
    events: list[dict[str, Any]] = []

    def put(client: str, req: int, made: dict[str, Any]) -> None:
        fields = {k: made[k] for k in ("value", "dot", "context", "vv")}
        events.append(
            event(len(events) + 1, {"type": "Put", "server": "s1", "key": "x", **fields}, client=client, req=req)
        )
        ack = {"type": "AckPut", "server": "s1", "key": "x", "dot": made["dot"], "vv": made["vv"]}
        events.append(event(len(events) + 1, ack, client=client))

    put("c1", 1, v1)
    put("c2", 1, v2)
    if c2_read_first:
        read = {"type": "ReturnGet", "server": "s1", "key": "x", "siblings": [v1, v2]}
        events.append(event(len(events) + 1, read, client="c2"))
    put("c2", 3, v3)
    cluster = dynamo.cluster(3, {"c1": []})
    for server in cluster.servers:
        server.store = {"x": (dynamo.Version.from_json({k: v3[k] for k in ("value", "dot", "context")}, server.known),)}
    return lost_put(events, cluster)


def test_an_acknowledged_put_superseded_by_a_writer_that_never_saw_it_is_lost() -> None:
    """The store's own vectors say 3 covers 1; the trace says c2 never saw 1."""
    message = lost_update(c2_read_first=False)
    assert message is not None and "NoLostWrite violated" in message
    assert "put of 1" in message and "whose writer never saw it" in message
    assert lost_update(c2_read_first=True) is None  # a read-modify-write supersedes what it read


def test_a_context_covering_a_put_its_client_never_saw_is_not_explained() -> None:
    """c1 puts 1 and c2 puts 2 blind through s1 (dots s1:1, s1:2); c2's put returns
    the vector {s1: 2}, and its next put, in that context, covers s1:1, which c2
    never saw: the store would supersede c1's acknowledged put unseen."""
    v1, v2 = version(1, ("s1", 1), {}), version(2, ("s1", 2), {})
    v3 = version(3, ("s1", 3), {"s1": 2})
    events: list[dict[str, Any]] = []
    for client, made, kept in (("c1", v1, [v1]), ("c2", v2, [v1, v2]), ("c2", v3, [v3])):
        fields = {k: made[k] for k in ("value", "dot", "context", "vv")}
        put = {"type": "Put", "server": "s1", "key": "x", **fields, "siblings": kept}
        op = f"s1.1.{made['value']}"
        events.append(event(len(events) + 1, put, client=client, op=op))
        stored = {"type": "Merge", "server": "s2", "key": "x", "source": "s1", "cause": "replicate"}
        events.append(event(len(events) + 1, {**stored, "received": [made], "siblings": kept}))
        ack = {"type": "AckPut", "server": "s1", "key": "x", "dot": made["dot"], "vv": made["vv"]}
        events.append(event(len(events) + 1, ack, client=client, op=op))
    result = validate_run(SPEC, events[:6])
    assert result.ok, result.message  # two blind puts: siblings, as the spec has them
    result = validate_run(SPEC, events)
    assert not result.ok
    assert "step 7" in result.message and "covers s1.1.1=1 (dot s1:1)" in result.message
    assert "never read nor wrote" in result.message
