"""The ABD store (``impl/registers/abd.py``): free mode over TCP with a server killed
and restarted mid-workload, controlled runs under every fault checked against
spec/abd key by key, each broken variant caught, the consistent side of CAP under a
minority partition, hostile messages, and trace validation that rejects what the
spec cannot explain."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import pytest

from distcheck.checks.cli import main
from distcheck.checks.conformance.simulate import SimOptions, simulate
from distcheck.checks.conformance.wiring.abd import AbdSystem, AbdWiring, validate_run
from distcheck.checks.histories.linearizability import Operation, check_history
from distcheck.impl.registers import abd
from distcheck.impl.runtime import (
    Context,
    ContextWrapper,
    FaultPolicy,
    FreeRuntime,
    Message,
    NodeMain,
    RandomChoices,
    Simulation,
    TraceLog,
)
from distcheck.impl.runtime.free import connect
from distcheck.spec.abd import Abd
from tests.impl.waiting import wait_for

SERVERS = ["s1", "s2", "s3"]
ALL_FAULTS = FaultPolicy(crash=True, drop=True, duplicate=True, reorder=True, partition=True)


class Capture(AbdWiring):
    """The wiring, keeping the system it built so a test can look at it after the run."""

    system: AbdSystem

    def build(self, params: Mapping[str, Any], variant: str | None, rng: Any) -> Any:
        self.system = super().build(params, variant, rng)
        return self.system


def run(seed: int, variant: str | None = None, **options: Any) -> tuple[Any, AbdSystem]:
    wiring = Capture()
    steps = options.pop("steps", wiring.default_steps)
    faults = options.pop("faults", ALL_FAULTS)
    outcome = simulate(
        Abd(), wiring, {"servers": 3}, SimOptions(seed, faults=faults, steps=steps, variant=variant, **options)
    )
    return outcome, wiring.system


# ------------------------------------------------------------------- controlled


def test_controlled_runs_under_every_fault_are_linearizable_and_valid_key_by_key() -> None:
    crashes = completed = 0
    for seed in range(8):
        outcome, system = run(seed)
        assert outcome.ok, f"seed {seed}: {outcome.message}"
        assert outcome.validation.ok and outcome.validation.events > 0
        crashes += sum(1 for s in outcome.run.schedule if s.choice.kind == "crash")
        completed += sum(len(c.results) for c in system.cluster.clients)
    assert crashes > 0  # the faults were there: servers crashed and came back
    assert completed > 0


@pytest.mark.parametrize("variant", sorted(abd.VARIANTS))
def test_each_broken_variant_is_caught_by_the_trace_or_the_history(variant: str) -> None:
    """With the state checks off, the trace validation or the linearizability check
    still catches every variant within a few seeds."""
    caught = []
    for seed in range(20):
        outcome, _ = run(seed, variant, check_invariants=False)
        if not outcome.ok:
            caught.append((seed, outcome.kind, outcome.message))
            break
    assert caught, f"{variant} passed 20 runs"
    _, kind, message = caught[0]
    assert kind in ("invalid_trace", "invariant"), message
    assert "not a behaviour" in message or "no behaviour" in message or "not linearizable" in message, message


def test_small_quorums_is_caught_by_the_history_alone() -> None:
    outcome, _ = run(40, "small_quorums", check_invariants=False, check_trace=False)
    assert outcome.kind == "invariant"
    assert "not linearizable" in outcome.message


def test_a_server_that_does_not_sync_breaks_tags_grow_at_once() -> None:
    outcome, _ = run(0, "skips_sync", faults=FaultPolicy())
    assert outcome.kind == "invariant"
    assert "TagsGrow violated" in outcome.message and "after a crash" in outcome.message


def test_every_variant_is_caught_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    for variant in abd.VARIANTS:
        assert main(["simulate", "abd", "--variant", variant, "--trace-out", "/dev/null"]) == 1
        assert "violated" in capsys.readouterr().out
    assert main(["simulate", "abd", "--variant", "nope"]) == 2
    assert "unknown implementation variant 'nope'" in capsys.readouterr().err


# ------------------------------------------------------------ CAP: the C side


class CutOff(ContextWrapper):
    """A node's context whose messages to ``unreachable`` are lost: one side of a
    partition that the controlled scheduler (one isolated node at a time) cannot
    make, two nodes against three."""

    def __init__(self, inner: Context, unreachable: Collection[str]) -> None:
        super().__init__(inner)
        self.unreachable = frozenset(unreachable)

    def send(self, dst: str, msg: Message) -> None:
        if dst in self.unreachable:
            self.inner.yield_now()  # still a step, so schedules keep their shape
            return
        self.inner.send(dst, msg)


def partitioned(nodes: Mapping[str, NodeMain], sides: list[set[str]]) -> dict[str, NodeMain]:
    def on_side(name: str, main: NodeMain) -> NodeMain:
        others = set().union(*(side for side in sides if name not in side))
        return lambda ctx: main(CutOff(ctx, others))

    return {name: on_side(name, main) for name, main in nodes.items()}


def test_a_minority_partition_makes_its_client_unavailable_while_the_majority_completes() -> None:
    timing = abd.Timing(resend=1.0, request_timeout=10.0)
    system = abd.cluster(
        3, {"c1": [abd.put("x", 1), abd.get("x")], "c2": [abd.put("x", 2), abd.get("x")]}, timing=timing
    )
    nodes = partitioned(system.nodes(), [{"c1", "s1", "s2"}, {"c2", "s3"}])
    sim = Simulation(nodes, RandomChoices(0), max_steps=5000)
    result = sim.run()
    assert result.status == "ok", result.message
    c1, c2 = system.clients
    assert c1.results == ["ok", 1]  # the majority side: every operation, and c2's write never took effect
    assert c2.results == [] and c2.unavailable == [abd.put("x", 2), abd.get("x")]
    assert system.unavailable() == {"c1": 0, "c2": 2}
    assert [e.ret is None for e in system.history.entries if e.client.startswith("c2")] == [True, True]
    history = [Operation(e.client, e.call, e.ret, e.op, e.result) for e in system.history.entries]
    assert check_history(history).ok
    assert validate_run(Abd(), result.trace.events).ok


def test_unavailable_says_what_it_heard() -> None:
    system = abd.cluster(3, {"c1": [abd.get("x")]}, timing=abd.Timing(resend=1.0, request_timeout=3.0))
    nodes = partitioned(system.nodes(), [{"c1", "s1"}, {"s2", "s3"}])
    sim = Simulation(nodes, RandomChoices(1), max_steps=2000)
    result = sim.run()
    messages = [n for s in result.schedule for n in s.notes if "answered" in n]
    assert result.status == "ok", result.message
    assert messages and "c1: query 'x': 1 of 3 servers answered (s1), 2 needed, within 3 s" in messages[0]


def test_the_client_refuses_cas_and_malformed_operations() -> None:
    refused: list[str] = []

    def client(ctx: Context) -> None:
        kv = abd.AbdClient(ctx, SERVERS)
        calls: list[Callable[[], Any]] = [
            lambda: kv.cas("x", 1, 2),
            lambda: kv.execute({"op": "put", "key": 1, "value": 2}),
        ]
        for call in calls:
            try:
                call()
            except ValueError as exc:
                refused.append(str(exc))

    result = Simulation({"c1": client}, RandomChoices(0)).run()
    assert result.status == "ok", result.message
    assert len(refused) == 2
    assert "cas is not supported" in refused[0] and "get(key) or put(key, value)" in refused[1]
    assert result.trace.events == []  # nothing was invoked
    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        abd.cluster(3, variant="nope")
    with pytest.raises(ValueError, match="taken by servers"):
        abd.cluster(3, {"s1": []})


# ---------------------------------------------------------------------- hostile


HOSTILE: list[Any] = [
    "not an object",
    {"type": "Nope"},
    {"type": "Query"},
    {"type": "Query", "key": "x"},
    {"type": "Query", "key": "", "op": "m.1"},
    {"type": "Query", "key": "x" * 10_000, "op": "m.1"},
    {"type": "Query", "key": "x", "op": "m.1", "extra": 1},
    {"type": "Update", "key": "x", "op": "m.1", "number": -1, "writer": "m.1", "value": 9},
    {"type": "Update", "key": "x", "op": "m.1", "number": True, "writer": "m.1", "value": 9},
    {"type": "Update", "key": "x", "op": "m.1", "number": 0, "writer": "evil", "value": 9},
    {"type": "Update", "key": "x", "op": "m.1", "number": 5, "writer": "", "value": 9},
    {"type": "Update", "key": ["x"], "op": "m.1", "number": 5, "writer": "m.1", "value": 9},
    {"type": "QueryReply", "key": "x", "op": "m.1", "number": 1, "writer": "m.1", "value": 9},
    {"type": "UpdateAck", "key": "x", "op": "c1.2", "number": 1, "writer": "c1.1"},
]


def test_hostile_messages_do_not_crash_a_server_or_fool_a_client() -> None:
    system = abd.cluster(3, {"c1": [abd.put("x", 1), abd.get("x")]})

    def mallory(ctx: Context) -> None:
        for msg in HOSTILE:
            for node in [*SERVERS, "c1"]:
                ctx.send(node, msg if isinstance(msg, dict) else {"type": msg})

    sim = Simulation({**system.nodes(), "mallory": mallory}, RandomChoices(3), max_steps=5000)
    result = sim.run()
    assert result.status == "ok", result.message
    assert not sim.failures  # every malformed message rejected, never a crash of a server's code
    assert system.clients[0].results == ["ok", 1]
    rejected = [d for s in system.servers for d in s.diagnostics if "rejected" in d]
    assert len(rejected) >= len(SERVERS) * (len(HOSTILE) - 1)
    assert all(s.copy("x").value in (None, 1) for s in system.servers)  # no malformed update taken


# ---------------------------------------------------------- trace validation


def passing_trace(tmp_path: Path) -> Path:
    out = tmp_path / "run.jsonl"
    assert main(["simulate", "abd", "--faults", "drop,duplicate", "--trace-out", str(out)]) == 0
    return out


def test_a_runs_trace_validates_key_by_key_and_a_doctored_one_does_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = passing_trace(tmp_path)
    capsys.readouterr()
    assert main(["validate", "abd", str(path), "--split", "key"]) == 0
    assert "explained" in capsys.readouterr().out
    assert main(["validate", "abd", str(path)]) == 2  # a store's trace is only a behaviour key by key
    assert "--split key" in capsys.readouterr().err
    lines = path.read_text().splitlines()
    events = [json.loads(line) for line in lines[2:]]
    assert validate_run(Abd(), events).ok

    # A server says it answered with a copy it never held.
    answer = next(i for i, e in enumerate(events) if e["action"]["type"] == "ReplyQuery")
    doctored = copy.deepcopy(events)
    doctored[answer]["tag"] = [7, "c9.9"]
    result = validate_run(Abd(), doctored)
    assert not result.ok and "answers 7.c9.9" in result.message
    doctored_path = tmp_path / "doctored.jsonl"
    doctored_path.write_text("\n".join(lines[:2] + [json.dumps(e) for e in doctored]) + "\n")
    capsys.readouterr()
    assert main(["validate", "abd", str(doctored_path), "--split", "key"]) == 1
    assert "answers 7.c9.9" in capsys.readouterr().out

    # A client ends its query on a copy no quorum's answers can give.
    end = next(i for i, e in enumerate(events) if e["action"]["type"] == "EndQuery")
    doctored = copy.deepcopy(events)
    doctored[end]["action"]["highest"]["tag"]["number"] = 5
    assert not validate_run(Abd(), doctored).ok

    # A client returns before a quorum acknowledged: its acknowledgements removed.
    done = next(e for e in events if e["action"]["type"] == "EndUpdate")
    doctored = [e for e in events if not (e["action"]["type"] == "ReplyUpdate" and e["op"] == done["op"])]
    assert not validate_run(Abd(), doctored).ok


def test_a_damaged_store_trace_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = passing_trace(tmp_path)
    lines = path.read_text().splitlines()
    event = json.loads(lines[2])
    del event["key"]
    path.write_text("\n".join([*lines[:2], json.dumps(event), *lines[3:]]) + "\n")
    capsys.readouterr()
    assert main(["validate", "abd", str(path), "--split", "key"]) == 2
    err = capsys.readouterr().err
    assert "'key' must be a str" in err and len(err.strip().splitlines()) == 1


# -------------------------------------------------------------------- free mode

# Short timings: an operation re-sends after 0.2 s and gives up only after 10 s, so
# a busy machine delays it but does not make it unavailable.
FREE_TIMING = abd.Timing(resend=0.2, request_timeout=10.0)


def test_a_server_killed_and_restarted_mid_workload_loses_no_acknowledged_write(tmp_path: Path) -> None:
    """Each server is its own ``FreeRuntime`` (as if its own process) over TCP.  s1 is
    stopped while both clients write, the clients go on with s2 and s3, s1 comes back
    on its port and storage; then s2 is stopped, so every read must go through s1's
    rebuilt copies: it returns the last acknowledged write of each key."""
    system = abd.cluster(3, {}, timing=FREE_TIMING)
    servers = {s.name: s for s in system.servers}
    trace = TraceLog("abd", {"servers": 3})
    crashed, restarted = threading.Event(), threading.Event()
    acknowledged: dict[str, list[Any]] = {"x": [], "y": []}
    reads: dict[str, Any] = {}
    done = {"c1": threading.Event(), "c2": threading.Event()}

    def writer(key: str, first: int, reader: bool) -> NodeMain:
        def main(ctx: Context) -> None:
            kv = abd.AbdClient(ctx, SERVERS, system.history, FREE_TIMING)
            for value in range(first, first + 3):
                assert kv.put(key, value) == "ok"
                acknowledged[key].append(value)
            while not crashed.is_set():
                ctx.sleep(0.02)
            for value in range(first + 3, first + 6):
                assert kv.put(key, value) == "ok"
                acknowledged[key].append(value)
            if reader:
                while not restarted.is_set():
                    ctx.sleep(0.02)
                reads["x"], reads["y"] = kv.get("x"), kv.get("y")
            done[ctx.name].set()

        return main

    runtimes = {name: FreeRuntime({name: s.main}, tmp_path, trace=trace) for name, s in servers.items()}
    runtimes["clients"] = FreeRuntime(
        {"c1": writer("x", 1, reader=True), "c2": writer("y", 100, reader=False)}, tmp_path, trace=trace
    )
    addresses = connect(runtimes.values())
    stopped: list[FreeRuntime] = []
    try:
        for rt in runtimes.values():
            rt.start()
        wait_for(lambda: len(acknowledged["x"]) >= 2 and len(acknowledged["y"]) >= 2, "a few writes")
        wait_for(
            lambda: any(e["actor"] == "s1" and e["action"]["type"] == "ReplyUpdate" for e in list(trace.events)),
            "s1 to acknowledge an update",
        )
        runtimes["s1"].stop()  # a crash: its threads end at their next call into the runtime
        stopped.append(runtimes["s1"])
        acked_by_s1 = [
            (e["key"], (e["tag"][0], e["tag"][1]))
            for e in list(trace.events)
            if e["actor"] == "s1" and e["action"]["type"] == "ReplyUpdate"
        ]
        crashed.set()
        wait_for(lambda: done["c2"].is_set() and len(acknowledged["x"]) == 6, "the writes after the crash")
        # A new process: nothing of the old one's memory, only its storage directory.
        reborn = abd.Server("s1")
        runtimes["s1"] = FreeRuntime(
            {"s1": reborn.main}, tmp_path, trace=trace, peers=addresses, ports={"s1": addresses["s1"][1]}
        )
        runtimes["s1"].start()
        wait_for(lambda: all(reborn.copy(k).tag >= t for k, t in acked_by_s1), "s1 to rebuild its copies")
        runtimes["s2"].stop()
        stopped.append(runtimes["s2"])
        restarted.set()
        wait_for(lambda: done["c1"].is_set(), "the reads through s1 and s3")
    finally:
        for rt in runtimes.values():
            rt.stop()
    for rt in [*runtimes.values(), *stopped]:
        assert rt.errors == []
    assert acked_by_s1  # s1 had acknowledged something before it was killed
    assert reads == {"x": acknowledged["x"][-1], "y": acknowledged["y"][-1]} == {"x": 6, "y": 105}
    history = [Operation(e.client, e.call, e.ret, e.op, e.result) for e in system.history.entries]
    assert all(e.ret is not None for e in history)
    verdict = check_history(history)
    assert verdict.ok, verdict.message
    validation = validate_run(Abd(), trace.events)
    assert validation.ok, validation.message
