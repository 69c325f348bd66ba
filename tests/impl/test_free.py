"""Free mode: the same two-phase commit code on OS threads over TCP on loopback,
its trace validated against the spec; malformed, truncated and oversized frames are
rejected and logged, the connection closed, and the node keeps serving."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from distcheck.checks.conformance.validate import validate_events, validate_trace
from distcheck.checks.traces import trace as trace_file
from distcheck.impl import twophase
from distcheck.impl.runtime import Context, FreeRuntime, NodeCrashed, RandomChoices, TraceLog, run_simulation
from distcheck.impl.runtime.storage import read_log
from distcheck.impl.runtime.tcp import encode_frame
from distcheck.spec.twophase import Config, TwoPhase
from tests.impl.waiting import WAIT, wait_for

# A vote timeout far above what loopback needs, so a loaded machine cannot turn
# the expected commit into a timeout abort.
FAST = twophase.Timing(vote_timeout=15.0, retry_interval=0.2, client_retry=1.0)


def build(tmp_path: Path, transactions: tuple[str, ...], no_votes: list[tuple[str, str]]) -> twophase.Cluster:
    return twophase.cluster(3, transactions, no_votes, timing=FAST)


def test_two_phase_commit_over_tcp_on_loopback(tmp_path: Path) -> None:
    cluster = build(tmp_path, ("t1", "t2"), [("r2", "t2")])
    trace = TraceLog("twophase", {"rms": 3}, source="impl")
    with FreeRuntime(cluster.nodes(), tmp_path, trace=trace) as runtime:
        wait_for(lambda: len(cluster.client.outcomes) == 2, "the client to learn both outcomes")
        wait_for(
            lambda: all(rm.state(t) in ("committed", "aborted") for rm in cluster.rms for t in ("t1", "t2")),
            "every RM to learn both outcomes",
        )
        ports = {runtime.addresses[name][1] for name in cluster.nodes()}
    assert runtime.errors == []
    assert runtime.alive() == []  # every thread stopped with the runtime
    assert len(ports) == len(cluster.nodes())  # every node had its own TCP endpoint
    assert cluster.client.outcomes == {"t1": "committed", "t2": "aborted"}
    assert {rm.state("t1") for rm in cluster.rms} == {"committed"}
    assert {rm.state("t2") for rm in cluster.rms} == {"aborted"}
    # what the nodes logged durably is what they hold in memory
    for rm in cluster.rms:
        assert twophase.ResourceManager.recover(read_log(tmp_path / rm.name / "txns.log")) == rm.states
    # the recorded trace, written to a file, is a behaviour of the spec, per transaction
    path = tmp_path / "trace.jsonl"
    trace.write(path)
    result = validate_trace(TwoPhase(Config(rms=3)), trace_file.read(path), split_key="txn")
    assert result.ok, result.message
    assert validate_events(TwoPhase(Config(rms=3)), trace.events).verdict == "violated"  # two txns are not one


def raw_connection(address: tuple[str, int]) -> socket.socket:
    conn = socket.create_connection(address, timeout=WAIT)
    return conn


def closed_by_peer(conn: socket.socket) -> bool:
    try:
        return conn.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize(
    "garbage,reason",
    [
        (struct.pack(">I", 9) + b"{not json", "malformed frame: not UTF-8 JSON"),
        (struct.pack(">I", 2) + b"[]", 'malformed frame: expected an object with a string "src"'),
        (encode_frame("x", {"no": "type"}), 'malformed frame: "msg" must be an object'),
        (struct.pack(">I", 10_000_000), "oversized frame: 10000000 bytes, the limit is 65536"),
        (struct.pack(">I", 50) + b'{"src": "x"', "truncated frame: the connection ended after 11 of 50 bytes"),
    ],
    ids=["not-json", "not-object", "no-type", "oversized", "truncated"],
)
def test_bad_frames_are_rejected_logged_and_the_node_keeps_serving(tmp_path: Path, garbage: bytes, reason: str) -> None:
    cluster = build(tmp_path, ("t1",), [])
    client_main = cluster.client.main
    started: list[bool] = []

    def held_client(ctx: Context) -> None:
        # the client starts its transaction only once the bad frame has been sent
        while not started:
            ctx.sleep(0.02)
        client_main(ctx)

    nodes = cluster.nodes()
    nodes["client"] = held_client
    with FreeRuntime(nodes, tmp_path, max_frame=65536) as runtime:
        conn = raw_connection(runtime.addresses["r1"])
        conn.sendall(garbage)
        if reason.startswith("truncated"):
            conn.shutdown(socket.SHUT_WR)
        assert closed_by_peer(conn)
        conn.close()
        wait_for(lambda: any(reason in d for d in runtime.diagnostics), "the rejection to be logged")
        started.append(True)
        wait_for(lambda: cluster.client.outcomes.get("t1") == "committed", "a transaction after the bad frame")
    assert runtime.errors == [] and runtime.alive() == []
    assert [d for d in runtime.diagnostics if "rejected a frame" in d] == [
        d for d in runtime.diagnostics if reason in d
    ]
    assert all("r1: rejected a frame" in d for d in runtime.diagnostics if reason in d)


def test_a_restarted_coordinator_answers_from_its_log_across_runtimes(tmp_path: Path) -> None:
    """The coordinator in its own runtime (its own process, in production), stopped
    after a commit and started again on the same port over the same directory: it
    rebuilds its memory from the log and answers a new client with the outcome."""
    cluster = build(tmp_path, ("t1",), [])
    participants = cluster.nodes()
    del participants["tm"]
    asked: dict[str, str] = {}

    def late_client(ctx: Context) -> None:
        asked["t1"] = twophase.transact(ctx, "tm", "t1", ["r1", "r2", "r3"], retry=FAST.client_retry)

    rest = FreeRuntime(participants, tmp_path / "rest")
    first_tm = FreeRuntime({"tm": cluster.coordinator.main}, tmp_path / "tm")
    rest.add_peers(first_tm.listen())
    first_tm.add_peers(rest.listen())
    with rest:
        with first_tm:
            wait_for(lambda: cluster.client.outcomes.get("t1") == "committed", "the first commit")
        assert first_tm.alive() == []
        port = first_tm.addresses["tm"][1]
        restarted = twophase.Coordinator("tm", FAST)
        second_tm = FreeRuntime({"tm": restarted.main}, tmp_path / "tm", ports={"tm": port})
        asker = FreeRuntime({"asker": late_client}, tmp_path / "asker")
        second_tm.add_peers(rest.listen())
        second_tm.add_peers(asker.listen())
        asker.add_peers(second_tm.listen())
        with second_tm, asker:
            wait_for(lambda: asked.get("t1") == "committed", "the restarted coordinator's answer")
            assert restarted.decision("t1") == "commit"  # recovered from its log, not decided again
    assert rest.errors == second_tm.errors == asker.errors == []


def pipeline(results: list[int]) -> Callable[[Context], None]:
    """One node: a producer thread hands numbers through a queue to the main thread,
    which adds them under a lock, sleeping a little between items."""

    def node(ctx: Context) -> None:
        q = ctx.queue()
        total = ctx.lock()

        def producer() -> None:
            for i in range(1, 6):
                q.put(i)

        ctx.spawn("producer", producer)
        while len(results) < 5:
            item = q.get(timeout=WAIT)
            if item is None:
                continue
            with total:
                results.append(item)
            ctx.sleep(0.01)

    return node


def test_the_same_node_code_runs_in_both_modes(tmp_path: Path) -> None:
    controlled: list[int] = []
    _, result = run_simulation({"n": pipeline(controlled)}, RandomChoices(5))
    assert result.ok, result.render()
    free: list[int] = []
    with FreeRuntime({"n": pipeline(free)}, tmp_path):
        wait_for(lambda: len(free) == 5, "the pipeline in free mode")
    assert controlled == free == [1, 2, 3, 4, 5]


def test_a_stopped_node_keeps_what_its_step_wrote_and_recorded_and_dies_at_its_next_send(tmp_path: Path) -> None:
    """A crash between a step's durable write and its record would leave a log the
    trace cannot explain (the restarted node starts from a state no recorded step
    reached); so a stop lands at the node's next send or wait, after both."""
    outcome: list[str] = []

    def node(ctx: Context) -> None:
        log = ctx.storage("state")
        while not runtime.nodes["n"].stopped:  # the step runs on while stop() begins
            time.sleep(0.01)
        log.append({"delivered": 1})
        log.sync()
        ctx.record({"type": "Deliver", "n": 1})
        try:
            ctx.send("n", {"type": "Ack"})
        except NodeCrashed:
            outcome.append("crashed at the send")
            raise

    trace = TraceLog("example", {})
    runtime = FreeRuntime({"n": node}, tmp_path, trace=trace)
    runtime.start()
    runtime.stop()
    assert outcome == ["crashed at the send"]
    assert read_log(tmp_path / "n" / "state.log") == [{"delivered": 1}]
    assert [e["action"] for e in trace.events] == [{"type": "Deliver", "n": 1}]
    assert runtime.errors == []
