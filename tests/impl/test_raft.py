"""The Raft KV service (impl/raft/) under the controlled scheduler: an election
happens; writes commit and apply identically on every replica, under crashes,
partitions, loss, duplication and reordering, with linearizable client results;
a restarted node recovers its term, vote and log from durable storage; a stale
AppendEntries that does not conflict truncates nothing (and a real conflict
does); the store applies a retried command once; the trace uses raft.tla's
vocabulary."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from distcheck.checks.histories.linearizability import Operation, check_history
from distcheck.impl.raft import simulation as sim
from distcheck.impl.raft.client import ClientTiming, NodeClient
from distcheck.impl.raft.kv import KeyValueStore
from distcheck.impl.raft.messages import AppendEntriesRequest, AppendEntriesResponse, Command, Reply
from distcheck.impl.raft.node import LEADER, RaftNode, RaftOptions, Timing
from distcheck.impl.runtime import (
    Choice,
    FaultPolicy,
    PCTChoices,
    RandomChoices,
    Simulation,
    TraceLog,
    encode,
    run_simulation,
)
from distcheck.impl.runtime.api import Context, Envelope
from distcheck.impl.runtime.history import History
from distcheck.impl.runtime.storage import read_log

ALL_FAULTS = FaultPolicy(crash=True, drop=True, duplicate=True, reorder=True, partition=True)
SERVERS = ("n1", "n2", "n3")
#: every fault, crashes of servers only, partitions among the servers (clients reach every server)
SERVER_FAULTS = attrs.evolve(ALL_FAULTS, crashable=SERVERS, partitioned=SERVERS)
SLOW = Timing(heartbeat=1.0, election_timeout=10.0)

ACTIONS = {
    "Timeout",
    "RequestVote",
    "BecomeLeader",
    "ClientRequest",
    "AdvanceCommitIndex",
    "AppendEntries",
    "Receive",
    "Restart",
    "StepDown",
    "PreVote",
    "InstallSnapshot",
}
MESSAGE_FIELDS = {
    "RequestVoteRequest": {"term", "last_log_term", "last_log_index"},
    "RequestVoteResponse": {"term", "vote_granted"},
    "AppendEntriesRequest": {"term", "prev_log_index", "prev_log_term", "entries", "commit_index"},
    "AppendEntriesResponse": {"term", "success", "match_index"},
}
STATE_KEYS = {"term", "role", "voted_for", "last_index", "commit_index"}


def agreement(cluster: sim.Cluster) -> str | None:
    """Every index applied by two replicas holds the same command (State Machine Safety)."""
    seen: dict[int, tuple[str, str]] = {}
    for server in cluster.servers:
        for index, cid in server.applied:
            first = seen.setdefault(index, (server.name, cid))
            if first[1] != cid:
                return f"{first[0]} applied {first[1]} at {index}, {server.name} applied {cid}"
    return None


def workloads(clients: int = 3, ops: int = 5) -> dict[str, list[dict[str, Any]]]:
    """Puts, gets and cas on a key shared by the clients and one of each client's own."""
    out = {}
    for c in range(1, clients + 1):
        mine: list[dict[str, Any]] = []
        for j in range(ops):
            key = "shared" if j % 2 else f"k{c}"
            mine.append([sim.put(key, f"c{c}.{j}"), sim.get(key), sim.cas(key, f"c{c}.{j - 2}", j)][j % 3])
        out[f"c{c}"] = mine
    return out


def run(
    seed: int,
    options: RaftOptions = RaftOptions(max_batch=3),
    faults: FaultPolicy = ALL_FAULTS,
    wl: dict[str, list[dict[str, Any]]] | None = None,
    trace: TraceLog | None = None,
    directory: Path | None = None,
    max_steps: int = 40_000,
) -> tuple[sim.Cluster, Simulation]:
    cluster = sim.cluster(3, wl if wl is not None else workloads(), options=options)
    s, result = run_simulation(
        cluster.nodes(),
        RandomChoices(seed, fault_rate=0.05),
        faults,
        max_steps=max_steps,
        fault_steps=600,
        trace=trace,
        directory=directory,
        check=lambda _: agreement(cluster),
        until=lambda _: cluster.done(),
    )
    assert result.status == "ok", f"seed {seed}: {result.message}"
    assert not s.failures, s.failures
    assert cluster.done(), f"seed {seed}: clients not done after {result.steps} steps"
    return cluster, s


def linearizable(history: History) -> None:
    ops = [
        Operation(e.client, e.call, e.ret, e.op, "ok" if e.op["op"] == "put" and e.ret is not None else e.result)
        for e in history.entries
        if e.op["op"] in ("put", "get", "cas")  # membership changes are not KV operations
    ]
    # a client that gave up on an operation goes on under a new name
    renamed: list[Operation] = []
    attempt: dict[str, int] = {}
    for op in sorted(ops, key=lambda o: o.call):
        name = f"{op.client}#{attempt.get(op.client, 0)}"
        if op.ret is None:
            attempt[op.client] = attempt.get(op.client, 0) + 1
        renamed.append(Operation(name, op.call, op.ret, op.op, op.result))
    verdict = check_history(renamed)
    assert verdict.ok, verdict.message


# ------------------------------------------------------------------ election and replication


def test_a_leader_is_elected_and_each_term_has_at_most_one() -> None:
    trace = TraceLog("raft")
    cluster, _ = run(1, faults=FaultPolicy(), wl={"c1": [sim.put("x", 1)]}, trace=trace)
    leaders: dict[int, set[str]] = {}
    for event in trace.events:
        if event["action"]["type"] == "BecomeLeader":
            leaders.setdefault(event["term"], set()).add(event["actor"])
    assert leaders, "no BecomeLeader recorded"
    assert all(len(names) == 1 for names in leaders.values()), leaders
    assert sum(s.role == LEADER for s in cluster.servers) == 1


@pytest.mark.parametrize("seed", range(6))
def test_writes_apply_identically_on_every_replica_under_faults(seed: int) -> None:
    cluster, _ = run(seed, faults=SERVER_FAULTS if seed % 2 else ALL_FAULTS)
    linearizable(cluster.history)
    # let the followers catch up, then every replica holds the same store
    stores = [
        srv.kv.data for srv in cluster.servers if srv.last_applied == max(x.last_applied for x in cluster.servers)
    ]
    assert stores and all(d == stores[0] for d in stores)


@pytest.mark.parametrize("seed", range(4))
def test_conformance_settings_are_safe_and_live_under_faults(seed: int) -> None:
    cluster, _ = run(100 + seed, options=RaftOptions.conformance(), faults=SERVER_FAULTS if seed % 2 else ALL_FAULTS)
    linearizable(cluster.history)


def test_all_replicas_converge_once_the_faults_end() -> None:
    cluster = sim.cluster(3, {"c1": [sim.put(f"k{i}", i) for i in range(8)]})
    done_at: list[int] = []

    def converged(s: Simulation) -> bool:
        if not cluster.done():
            return False
        if not done_at:
            done_at.append(len(s.schedule))
        applied = {srv.last_applied for srv in cluster.servers}
        return len(applied) == 1 and all(s.is_up(n.name) for n in cluster.servers)

    s, result = run_simulation(
        cluster.nodes(), RandomChoices(5, fault_rate=0.05), ALL_FAULTS, max_steps=40_000, until=converged
    )
    assert result.status == "ok" and converged(s), result.message
    datas = [srv.kv.data for srv in cluster.servers]
    assert datas[0] == {f"k{i}": i for i in range(8)} and all(d == datas[0] for d in datas)


# ------------------------------------------------------------------ durability


def test_a_restarted_node_recovers_term_vote_and_log_from_its_storage(tmp_path: Path) -> None:
    cluster, _ = run(3, faults=FaultPolicy(crash=True), directory=tmp_path)
    before = {srv.name: (srv.log.term, srv.log.voted_for, list(srv.log.entries)) for srv in cluster.servers}
    # The same servers again over the same directories: every one rebuilds its memory from disk.
    again = sim.cluster(3, {}, options=RaftOptions(max_batch=3))
    trace = TraceLog("raft")
    run_simulation(again.nodes(), RandomChoices(0), FaultPolicy(), max_steps=3, directory=tmp_path, trace=trace)
    for srv in again.servers:
        term, vote, entries = before[srv.name]
        assert (srv.log.term, srv.log.voted_for) == (term, vote)
        assert srv.log.entries == entries
    assert {e["actor"] for e in trace.events if e["action"]["type"] == "Restart"} == {"n1", "n2", "n3"}


def test_a_vote_is_durable_before_it_is_answered(tmp_path: Path) -> None:
    """At the moment a vote leaves, the voter's log on disk already holds it."""
    cluster = sim.cluster(3, {"c1": [sim.put("x", 1)]})
    sent_before_synced: list[str] = []

    def check(s: Simulation) -> str | None:
        for src, dst, msg in s.sent[len(seen) :]:
            seen.append(1)
            if msg.get("type") == "RequestVoteResponse" and msg["vote_granted"] and src != dst:
                hs = [r["hs"] for r in s.durable_records(src, RaftNode.LOG) if "hs" in r]
                if not hs or hs[-1] != [msg["term"], dst]:
                    sent_before_synced.append(f"{src} voted for {dst} in {msg['term']}")
        return None

    seen: list[int] = []
    run_simulation(
        cluster.nodes(),
        RandomChoices(2, fault_rate=0.05),
        ALL_FAULTS,
        max_steps=20_000,
        check=check,
        until=lambda _: cluster.done(),
    )
    assert seen and not sent_before_synced


# ------------------------------------------------------------------ the follower's log


def scripted_leader(
    script: list[AppendEntriesRequest], answers: list[AppendEntriesResponse]
) -> Callable[[Context], None]:
    """A node n2 that plays leader: sends each request to n1, one at a time, and keeps the answers."""

    def main(ctx: Context) -> None:
        for request in script:
            ctx.send("n1", encode(request))
            while True:
                item = ctx.receive()
                if isinstance(item, Envelope) and item.msg.get("type") == "AppendEntriesResponse":
                    answers.append(AppendEntriesResponse(**{k: v for k, v in item.msg.items() if k != "type"}))
                    break
        ctx.receive()  # stay

    return main


def silent(ctx: Context) -> None:
    while True:
        ctx.receive()


def cmd(client: str, seq: int, key: str = "x") -> dict[str, Any]:
    return {"id": f"{client}:{seq}", "client": client, "seq": seq, "op": {"op": "put", "key": key, "value": seq}}


def follow(
    script: list[AppendEntriesRequest], directory: Path | None = None
) -> tuple[RaftNode, list[AppendEntriesResponse]]:
    node = RaftNode("n1", ["n1", "n2", "n3"], Timing(heartbeat=1.0, election_timeout=1e6))
    answers: list[AppendEntriesResponse] = []
    run_simulation(
        {"n1": node.main, "n2": scripted_leader(script, answers), "n3": silent},
        RandomChoices(0),
        FaultPolicy(),
        max_steps=2000,
        directory=directory,
        until=lambda _: len(answers) == len(script),
    )
    assert len(answers) == len(script)
    return node, answers


def test_a_stale_append_entries_that_does_not_conflict_truncates_nothing() -> None:
    e1, e2, e3 = (2, cmd("c", 1)), (2, cmd("c", 2)), (2, cmd("c", 3))
    node, answers = follow(
        [
            AppendEntriesRequest(2, 0, 0, (e1, e2, e3), 0),
            AppendEntriesRequest(2, 0, 0, (e1,), 1),  # an old copy, arriving late
            AppendEntriesRequest(2, 1, 2, (e2,), 1),
        ]
    )
    assert [a.success for a in answers] == [True, True, True]
    assert [a.match_index for a in answers] == [3, 1, 2]  # what each request covers
    assert node.log.entries == [e1, e2, e3]  # nothing cut
    assert node.commit_index == 1


def test_a_real_conflict_truncates_from_the_conflicting_entry(tmp_path: Path) -> None:
    e1, e2, e3 = (2, cmd("c", 1)), (2, cmd("c", 2)), (2, cmd("c", 3))
    x = (3, cmd("d", 1))
    node, answers = follow(
        [
            AppendEntriesRequest(2, 0, 0, (e1, e2, e3), 0),
            AppendEntriesRequest(3, 1, 2, (x,), 2),  # a new leader of term 3 disagrees from index 2
        ],
        tmp_path,
    )
    assert [a.success for a in answers] == [True, True]
    assert node.log.entries == [e1, x]
    assert node.log.term == 3
    records = read_log(tmp_path / "n1" / f"{RaftNode.LOG}.log")
    assert {"at": 2, "e": [[3, x[1]]]} in records  # the cut and the append are one durable record


def test_a_request_that_does_not_match_the_log_is_refused_with_a_hint() -> None:
    e1 = (2, cmd("c", 1))
    node, answers = follow([AppendEntriesRequest(2, 0, 0, (e1,), 0), AppendEntriesRequest(2, 5, 2, (e1,), 0)])
    assert answers[1].success is False and answers[1].last_index == 1
    assert node.log.entries == [e1]


# ------------------------------------------------------------------ the state machine


def test_the_store_applies_a_retried_command_once() -> None:
    store = KeyValueStore()
    incr = {"id": "c1:1", "client": "c1", "seq": 1, "op": {"op": "cas", "key": "x", "expected": None, "value": 1}}
    assert store.apply(1, incr) is True
    assert store.apply(2, {"id": "noop"}) is None
    assert store.apply(3, incr) is True  # in the log again (re-sent to a new leader): the first result
    assert store.data == {"x": 1}
    store.apply(4, {"id": "c1:2", "client": "c1", "seq": 2, "op": {"op": "put", "key": "x", "value": 5}})
    assert store.apply(5, incr) is None and store.data == {"x": 5}  # older than the client's last: ignored
    assert store.apply(6, {"id": "c2:1", "client": "c2", "seq": 1, "op": {"op": "delete", "key": "x"}}) is True
    assert KeyValueStore.from_json(store.to_json()) == store


def test_a_command_sent_twice_to_the_leader_is_applied_once() -> None:
    """A client re-sends its command (answer lost); the leader appends it once and
    answers both copies with the one result."""
    cluster = sim.cluster(3, {})
    answers: list[Reply] = []

    def client(ctx: Context) -> None:
        ctx.sleep(60.0)  # an election has happened by then
        leader = next(srv.name for srv in cluster.servers if srv.role == LEADER)
        request = encode(Command("", "c9", 1, {"op": "cas", "key": "x", "expected": None, "value": 1}))
        ctx.send(leader, request)
        ctx.send(leader, request)
        while len(answers) < 2:
            item = ctx.receive()
            if isinstance(item, Envelope):  # both answers may come in one Replies
                for msg in item.msg["items"] if item.msg["type"] == "Replies" else [item.msg]:
                    answers.append(Reply(**{k: v for k, v in msg.items() if k != "type"}))
        ctx.receive()

    nodes = {**cluster.nodes(), "c9": client}
    run_simulation(nodes, RandomChoices(4), FaultPolicy(), max_steps=20_000, until=lambda _: len(answers) == 2)
    assert [(a.ok, a.result) for a in answers] == [(True, True), (True, True)]
    leader = next(srv for srv in cluster.servers if srv.role == LEADER)
    assert [cid for _, cid in leader.applied].count("c9:1") == 1


# ------------------------------------------------------------------ the trace


def test_the_trace_speaks_raft_tla_s_vocabulary_with_the_node_state() -> None:
    trace = TraceLog("raft")
    run(7, options=RaftOptions.conformance(), faults=SERVER_FAULTS, trace=trace)
    assert trace.events
    kinds = set()
    for event in trace.events:
        action = event["action"]
        kinds.add(action["type"])
        assert action["type"] in ACTIONS, action
        assert STATE_KEYS <= set(event), event
        if action["type"] == "Receive":
            msg = action["msg"]
            assert set(msg) == MESSAGE_FIELDS[msg["type"]] | {"type", "source", "dest"}, msg
            assert msg["dest"] == event["actor"]
            for entry in msg.get("entries", []):
                assert set(entry) == {"type", "term", "value"} and entry["type"] == "Entry"
            if msg["type"] == "AppendEntriesRequest":
                assert len(msg["entries"]) <= 1  # max_batch=1
        elif action["type"] in {"RequestVote", "AppendEntries"}:
            assert set(action) == {"type", "server", "peer"}
        elif action["type"] == "ClientRequest":
            assert set(action) == {"type", "server", "value"} and isinstance(action["value"], str)
        else:
            assert action.get("server") == event["actor"]
    assert {"Timeout", "RequestVote", "BecomeLeader", "ClientRequest", "AdvanceCommitIndex", "AppendEntries"} <= kinds
    assert {"Receive", "Restart"} <= kinds
    assert "PreVote" not in kinds  # not in the conformance settings


def test_terms_start_at_one_and_a_candidate_first_votes_for_itself() -> None:
    trace = TraceLog("raft")
    run(1, options=RaftOptions.conformance(), faults=FaultPolicy(), wl={"c1": [sim.put("x", 1)]}, trace=trace)
    first = trace.events[0]
    assert first["action"] == {"type": "Timeout", "server": first["actor"]} and first["term"] == 2
    s = first["actor"]
    assert first["voted_for"] is None
    assert [e["action"]["type"] for e in trace.events[1:4]] == ["RequestVote", "Receive", "Receive"]
    assert trace.events[1]["action"] == {"type": "RequestVote", "server": s, "peer": s}
    assert trace.events[2]["voted_for"] == s


def test_durable_log_records_are_plain_json(tmp_path: Path) -> None:
    run(2, faults=FaultPolicy(), directory=tmp_path, wl={"c1": [sim.put("x", 1)]})
    records = read_log(tmp_path / "n1" / f"{RaftNode.LOG}.log")
    assert records and all(set(r) in ({"hs"}, {"at", "e"}, {"snap"}) for r in records)


# ------------------------------------------------------------------ snapshots


SNAPSHOTS = RaftOptions(max_batch=2, snapshot_every=3)


@pytest.mark.parametrize("seed", range(3))
def test_snapshots_compact_the_log_under_faults(seed: int) -> None:
    cluster, _ = run(seed, options=SNAPSHOTS, wl=workloads(3, 8), faults=SERVER_FAULTS)
    linearizable(cluster.history)
    assert all(srv.log.base_index > 0 for srv in cluster.servers)


def test_a_follower_that_missed_compacted_entries_installs_the_snapshot() -> None:
    """n3 sleeps through the first writes (its mailbox fills with requests it will
    find stale); by the time it starts, the leader has compacted them away."""
    cluster = sim.cluster(3, {"c1": [sim.put(f"k{i}", i) for i in range(10)] + [sim.get("k9")]}, options=SNAPSHOTS)
    late = cluster.servers[2]

    def n3(ctx: Context) -> None:
        if late.starts == 0:
            ctx.sleep(400.0)
        late.main(ctx)

    trace = TraceLog("raft")
    nodes = {**cluster.nodes(), "n3": n3}
    done = lambda _: cluster.done() and getattr(late, "last_applied", 0) >= 10  # noqa: E731
    _, result = run_simulation(nodes, RandomChoices(1), FaultPolicy(), max_steps=40_000, trace=trace, until=done)
    assert result.status == "ok" and cluster.done(), result.message
    installed = [e for e in trace.events if e["action"]["type"] == "InstallSnapshot" and e["actor"] == "n3"]
    assert installed and installed[0]["action"]["index"] > 0
    assert late.kv.data == {f"k{i}": i for i in range(10)}
    assert cluster.clients[0].results[-1] == 9


def test_a_node_restarts_from_its_snapshot_and_the_log_after_it(tmp_path: Path) -> None:
    cluster, _ = run(20, options=SNAPSHOTS, faults=FaultPolicy(), wl=workloads(2, 8), directory=tmp_path)
    before = {srv.name: (srv.log.base_index, list(srv.log.entries), dict(srv.kv.data)) for srv in cluster.servers}
    again = sim.cluster(3, {}, options=SNAPSHOTS)
    run_simulation(again.nodes(), RandomChoices(0), FaultPolicy(), max_steps=3, directory=tmp_path)
    for srv in again.servers:
        base, entries, data = before[srv.name]
        assert base > 0 and (srv.log.base_index, srv.log.entries) == (base, entries)
        assert srv.last_applied == base  # the snapshot's state; the suffix is applied once committed again
        if srv.log.base_index == max(b for b, _, _ in before.values()) and not entries:
            assert srv.kv.data == data


# ------------------------------------------------------------------ check-quorum


class IsolateTheLeader(RandomChoices):
    """Random, except that once a leader is elected it is cut off from the others
    (and the partition is never healed while the test watches)."""

    def __init__(self, cluster: sim.Cluster, seed: int) -> None:
        super().__init__(seed, fault_rate=0.0)
        self.cluster = cluster
        self.isolated: str | None = None

    def choose(self, options: Sequence[Choice]) -> int:
        leaders = [srv.name for srv in self.cluster.servers if srv.role == LEADER]
        if self.isolated is None and leaders:
            for i, option in enumerate(options):
                if option.kind == "partition" and option.agent == leaders[0]:
                    self.isolated = leaders[0]
                    return i
        allowed = [i for i, o in enumerate(options) if not o.fault and o.kind != "heal"]
        if not allowed:  # the fault phase is over: the run heals
            return super().choose(options)
        return allowed[super().choose([options[i] for i in allowed])]


def test_a_leader_cut_off_from_the_majority_steps_down_and_the_others_elect_one() -> None:
    cluster = sim.cluster(3, {})
    choices = IsolateTheLeader(cluster, 3)
    trace = TraceLog("raft")

    def settled(s: Simulation) -> bool:
        old = choices.isolated
        return (
            old is not None
            and any(srv.role == LEADER and srv.name != old for srv in cluster.servers)
            and all(srv.role != LEADER for srv in cluster.servers if srv.name == old)
        )

    faults = FaultPolicy(partition=True, partitioned=("n1", "n2", "n3"))
    _, result = run_simulation(
        cluster.nodes(), choices, faults, max_steps=20_000, fault_steps=3000, trace=trace, until=settled
    )
    assert result.status == "ok" and choices.isolated is not None, result.message
    old = choices.isolated
    down = [e for e in trace.events if e["action"] == {"type": "StepDown", "server": old}]
    assert down and down[0]["role"] == "follower"
    became = [e["term"] for e in trace.events if e["action"] == {"type": "BecomeLeader", "server": old}]
    assert down[0]["term"] == became[-1]  # stepping down keeps the term


# ------------------------------------------------------------------ membership changes


@pytest.mark.parametrize("seed", [0, 7])
def test_single_server_membership_changes_under_faults(seed: int) -> None:
    """Add n4, remove n1, add n5, remove n2 (one at a time), while another client
    writes: every replica agrees, results are linearizable, and the servers end
    with the last configuration."""
    changes = [
        sim.add_server("n4"),
        sim.put("a", 1),
        sim.remove_server("n1"),
        sim.add_server("n5"),
        sim.remove_server("n2"),
        sim.add_server("n4"),  # already a member: nothing to do
        sim.get("a"),
    ]
    cluster = sim.cluster(3, {"c1": changes, "c2": [sim.put("b", i) for i in range(6)]}, spares=2)
    trace = TraceLog("raft")
    s, result = run_simulation(
        cluster.nodes(),
        RandomChoices(seed, fault_rate=0.05),
        ALL_FAULTS,
        max_steps=60_000,
        fault_steps=600,
        trace=trace,
        check=lambda _: agreement(cluster),
        until=lambda _: cluster.done(),
    )
    assert result.status == "ok" and cluster.done() and not s.failures, result.message
    assert cluster.clients[0].results == [True, None, True, True, True, False, 1]
    linearizable(cluster.history)
    leader = next(srv for srv in cluster.servers if srv.role == LEADER)
    assert leader.members == ("n3", "n4", "n5")
    # n4 caught up as a learner (it got entries) before its change went in the log
    add = next(c["id"] for _, c in leader.log.entries if c.get("op") == sim.add_server("n4"))
    first_add = next(i for i, e in enumerate(trace.events) if e["action"].get("value") == add)
    assert any(
        e["actor"] == "n4" and e["action"]["type"] == "Receive" and e["action"]["msg"].get("entries")
        for e in trace.events[:first_add]
    )


def test_a_membership_change_of_an_unknown_server_is_refused() -> None:
    cluster = sim.cluster(3, {})
    errors: list[str] = []

    def client(ctx: Context) -> None:
        kv = NodeClient(ctx, ["n1", "n2", "n3"], ClientTiming(attempt=20.0, backoff=1.0, max_backoff=10.0, timeout=1e9))
        try:
            kv.add_server("n9")
        except ValueError as exc:
            errors.append(str(exc))
        ctx.receive()

    run_simulation({**cluster.nodes(), "c1": client}, RandomChoices(1), FaultPolicy(), until=lambda _: bool(errors))
    assert errors == ["n9 is not one of the servers n1, n2, n3"]


# ------------------------------------------------------------------ other schedules


@pytest.mark.parametrize("seed", [7, 8])
def test_pct_schedules_finish_with_agreement(seed: int) -> None:
    """PCT (priority) schedules.  Seed 7 once found an election timer re-armed for a
    remaining time below the clock's resolution: it fired at once, forever, and
    virtual time stood still."""
    cluster = sim.cluster(3, workloads(3, 5), options=RaftOptions.conformance())
    s, result = run_simulation(
        cluster.nodes(),
        PCTChoices(seed, depth=3, expected_steps=3000),
        SERVER_FAULTS,
        max_steps=40_000,
        fault_steps=600,
        check=lambda _: agreement(cluster),
        until=lambda _: cluster.done(),
    )
    assert result.status == "ok" and cluster.done() and not s.failures, result.message
    linearizable(cluster.history)
