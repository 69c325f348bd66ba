"""Free mode: the Multi-Paxos replicated log for real, on OS threads over TCP on
loopback, with the monotonic clock.  Three replicas and two concurrent clients doing
put/get/cas on shared keys; at the end every operation has returned, every replica
has applied the same log to the same store, every slot's chosen command agrees
across replicas, the clients' results are linearizable, and the recorded trace is a
behaviour of spec/paxos slot by slot.  The second test crashes the leader in the
middle of the workload (each replica is hosted by its own ``FreeRuntime``, as if in
its own process, and the leader's runtime is stopped), restarts it on the same
port and storage directory, and checks the same properties plus that another
replica took over with a higher ballot.

Real threads on a real clock, on a machine that may be busy: every wait is for a
condition, with a generous deadline, never for an amount of time or a state seen at
one instant, and the timings leave seconds of room, so a slow run elects a leader
later (or once more than needed) but passes or fails on what the protocol did."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from distcheck.checks.conformance.wiring.paxos_log import validate_log
from distcheck.checks.histories.linearizability import Operation, check_history
from distcheck.impl import paxos
from distcheck.impl.runtime import Context, FreeRuntime, TraceLog
from distcheck.impl.runtime.free import connect
from tests.impl.waiting import wait_for

REPLICAS = ["r1", "r2", "r3"]
# Short timings, so that an election takes a second or two rather than a minute,
# yet a follower stands only after a whole second without hearing from the leader
# (ten heartbeats missed): a busy machine rarely deposes a live leader, and when it
# does, the tests below still hold, since they check what happened, not when.
TIMING = paxos.Timing(heartbeat=0.1, retry=0.2, election_timeout=1.0, election_stagger=0.5, client_retry=1.0)


Step = Callable[[paxos.KVClient], Any]


def client_node(
    system: paxos.Cluster, steps: Sequence[Step], results: list[Any], done: threading.Event
) -> Callable[[Context], None]:
    """A client node running ``steps`` in order.  ``KVClient``'s default retry is
    ``Timing().client_retry`` (10 s, not the cluster's timing), so it is passed here:
    a request sent before any leader exists would otherwise wait 10 s to be re-sent."""

    def main(ctx: Context) -> None:
        kv = paxos.KVClient(ctx, REPLICAS, system.history, retry=TIMING.client_retry)
        for step in steps:
            results.append(step(kv))
        done.set()

    return main


def converged(system: paxos.Cluster) -> bool:
    """Every replica has applied every slot any replica knows to be chosen."""
    known = max((max(list(r.chosen), default=-1) + 1 for r in system.replicas), default=0)
    return known > 0 and all(r.applied == known for r in system.replicas)


def check_outcome(system: paxos.Cluster, events: Sequence[Mapping[str, Any]], operations: int) -> None:
    """The properties both tests check, once every node has stopped."""
    entries = system.history.entries
    assert len(entries) == operations
    assert all(e.ret is not None for e in entries), [e for e in entries if e.ret is None]
    logs = {r.name: [paxos.command_id(r.chosen[s]) for s in range(r.applied)] for r in system.replicas}
    assert len({tuple(log) for log in logs.values()}) == 1, logs
    per_client = {c: sum(1 for e in entries if e.client == c) for c in ("c1", "c2")}
    every_command = {f"{c}:{n}" for c, count in per_client.items() for n in range(1, count + 1)}
    assert every_command <= set(logs["r1"]), (every_command, logs["r1"])
    stores = {r.name: r.store.data for r in system.replicas}
    assert all(data == stores["r1"] for data in stores.values()), stores
    learned: dict[int, set[str]] = {}
    for r in system.replicas:
        for slot, val in r.learned:
            learned.setdefault(slot, set()).add(val)
    assert all(len(vals) == 1 for vals in learned.values()), learned
    verdict = check_history([Operation(e.client, e.call, e.ret, e.op, e.result) for e in entries])
    assert verdict.ok, verdict.message
    validation = validate_log(events, REPLICAS)
    assert validation.ok, validation.message


C1_STEPS: list[Step] = [
    lambda kv: kv.put("x", 1),
    lambda kv: kv.cas("x", 1, 2),
    lambda kv: kv.get("x"),
    lambda kv: kv.put("y", "a"),
    lambda kv: kv.cas("y", "a", "b"),
    lambda kv: kv.get("y"),
]
C2_STEPS: list[Step] = [
    lambda kv: kv.put("x", 10),
    lambda kv: kv.get("x"),
    lambda kv: kv.cas("x", 10, 11),
    lambda kv: kv.put("y", "z"),
    lambda kv: kv.get("y"),
    lambda kv: kv.cas("x", 2, 3),
]


def test_three_replicas_serve_two_concurrent_clients_over_tcp(tmp_path: Path) -> None:
    system = paxos.cluster(3, workloads={}, timing=TIMING)
    results: dict[str, list[Any]] = {"c1": [], "c2": []}
    done = {"c1": threading.Event(), "c2": threading.Event()}
    nodes = system.nodes()
    nodes["c1"] = client_node(system, C1_STEPS, results["c1"], done["c1"])
    nodes["c2"] = client_node(system, C2_STEPS, results["c2"], done["c2"])
    trace = TraceLog("paxos", {"acceptors": 3})
    with FreeRuntime(nodes, tmp_path, trace=trace) as runtime:
        wait_for(lambda: all(d.is_set() for d in done.values()), "both clients to finish their operations")
        wait_for(lambda: converged(system), "every replica to apply the whole log")
    assert runtime.errors == []
    assert runtime.alive() == []
    assert [len(results["c1"]), len(results["c2"])] == [len(C1_STEPS), len(C2_STEPS)]
    check_outcome(system, trace.events, len(C1_STEPS) + len(C2_STEPS))
    assert {e["action"]["type"] for e in trace.events} >= {"Phase1a", "Phase1b", "Phase2a", "Phase2b"}


def test_the_leader_crashes_mid_workload_and_another_replica_takes_over(tmp_path: Path) -> None:
    system = paxos.cluster(3, workloads={}, timing=TIMING)
    replicas = {r.name: r for r in system.replicas}
    trace = TraceLog("paxos", {"acceptors": 3})
    crashed = threading.Event()
    results: dict[str, list[Any]] = {"c1": [], "c2": []}
    done = {"c1": threading.Event(), "c2": threading.Event()}

    def wait_for_crash(kv: paxos.KVClient) -> None:
        while not crashed.is_set():
            kv.ctx.sleep(0.02)

    def pause(kv: paxos.KVClient) -> None:
        kv.ctx.sleep(0.1)

    # c1 does half its operations, waits for the crash, then does the rest; c2 goes
    # on at its own pace, so some of its operations are likely in flight at the crash.
    c1_steps = [*C1_STEPS[:3], wait_for_crash, *C1_STEPS[3:]]
    c2_steps = [s for step in C2_STEPS for s in (step, pause)]
    clients = {
        "c1": client_node(system, c1_steps, results["c1"], done["c1"]),
        "c2": client_node(system, c2_steps, results["c2"], done["c2"]),
    }
    # One runtime per replica, as if each ran in its own process, so that one can be
    # stopped (a crash: its threads end at their next call into the runtime) while
    # the others go on; the clients share one more.
    runtimes = {name: FreeRuntime({name: r.main}, tmp_path, trace=trace) for name, r in replicas.items()}
    runtimes["clients"] = FreeRuntime(clients, tmp_path, trace=trace)
    addresses = connect(runtimes.values())
    stopped: list[FreeRuntime] = []
    try:
        for rt in runtimes.values():
            rt.start()
        wait_for(lambda: len(results["c1"]) >= 3, "c1's first three operations")
        # A leader exists while operations complete, though a busy machine may have
        # one standing for election at this moment: wait for one, however long
        # (the leaders are taken in the same look that finds one).
        leaders: list[paxos.Replica] = []

        def some_leader() -> bool:
            leaders[:] = [r for r in system.replicas if r.role == paxos.LEADER]
            return bool(leaders)

        wait_for(some_leader, "a replica to lead")
        leader = max(leaders, key=lambda r: r.ballot)  # a deposed one may not know it yet
        old_ballot = leader.ballot
        crash_step = len(trace.events)
        runtimes[leader.name].stop()
        stopped.append(runtimes[leader.name])
        crashed.set()
        wait_for(lambda: all(d.is_set() for d in done.values()), "both clients to finish after the crash")
        # Restart the crashed replica on its old port and storage: it rebuilds its
        # memory from its logs and catches up from the new leader.
        restarted = FreeRuntime(
            {leader.name: leader.main},
            tmp_path,
            trace=trace,
            peers=addresses,
            ports={leader.name: addresses[leader.name][1]},
        )
        runtimes[leader.name] = restarted
        restarted.start()
        wait_for(lambda: converged(system), "every replica, the restarted one too, to apply the whole log")
    finally:
        for rt in runtimes.values():
            rt.stop()
    for rt in [*runtimes.values(), *stopped]:
        assert rt.errors == []
        assert rt.alive() == []
    assert [len(results["c1"]), len(results["c2"])] == [len(c1_steps), len(c2_steps)]
    check_outcome(system, trace.events, len(C1_STEPS) + len(C2_STEPS))
    # Another replica led with a higher ballot after the crash.  Its candidacy may
    # have begun just before the crash (a busy machine can make a follower stand at
    # any moment), so its Phase1a is looked for in the whole trace; what it proposed
    # as leader, after the crash.
    candidacies = {
        (e["actor"], e["action"]["bal"])
        for e in trace.events
        if e["action"]["type"] == "Phase1a" and e["action"]["bal"] > old_ballot and e["actor"] != leader.name
    }
    assert candidacies, f"no other replica stood with a ballot above {old_ballot} once {leader.name} crashed"
    led = {(e["actor"], e["action"]["bal"]) for e in trace.events[crash_step:] if e["action"]["type"] == "Phase2a"}
    assert candidacies & led, f"no replica that stood after {leader.name} proposed anything: {sorted(candidacies)}"
