"""Free mode: causal broadcast on reliable links for real, three members each in its
own ``FreeRuntime`` (as if in its own process) over TCP on loopback, with fsync'd
storage.  One member is stopped in the middle of the workload (a crash: its
threads end, its memory is gone) and restarted on its port and storage; at the end
every member has delivered every message once, in causal order, and the trace is a
behaviour of spec/broadcast's causal_broadcast.  And a member survives what a
hostile peer sends it over a link.

Real threads on a real clock: every wait is for a condition, with a generous
deadline (``tests.impl.waiting``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distcheck.checks.conformance.wiring.causal_broadcast import causal_violation, validate_broadcast
from distcheck.impl.messaging import group_simulation as group_sim
from distcheck.impl.messaging.link import LinkAck, LinkData
from distcheck.impl.runtime import FreeRuntime, TraceLog, encode
from distcheck.impl.runtime.free import connect
from distcheck.impl.runtime.storage import read_log
from tests.impl.waiting import wait_for

MEMBERS = group_sim.names(3)
MESSAGES = 4


def delivered(directory: Path) -> dict[str, list[tuple[str, tuple[int, ...]]]]:
    out: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    for name in MEMBERS:
        records = read_log(directory / name / f"{group_sim.BroadcastPeer.LOG}.log")
        out[name] = [(str(r["delivered"]), tuple(r["clock"])) for r in records if "delivered" in r]
    return out


def everyone_has_everything(directory: Path) -> bool:
    return all(len(ms) == len(MEMBERS) * MESSAGES for ms in delivered(directory).values())


def test_a_member_stopped_and_restarted_mid_workload_loses_nothing_and_keeps_causal_order(tmp_path: Path) -> None:
    # Broadcasts on timers only, so that the workload lasts seconds, not milliseconds.
    group = group_sim.broadcast_group(3, MESSAGES, interval=0.5, retransmit=0.2, answer=False)
    trace = TraceLog("causal_broadcast", {"processes": 3, "messages": MESSAGES})
    runtimes = {p.name: FreeRuntime({p.name: p.main}, tmp_path, trace=trace) for p in group.peers}
    addresses = connect(runtimes.values())
    stopped: list[FreeRuntime] = []
    try:
        for rt in runtimes.values():
            rt.start()
        # p3 stops once it has delivered a few messages and broadcast at least one.
        wait_for(lambda: len(delivered(tmp_path)["p3"]) >= 3, "p3 to deliver three messages")
        runtimes["p3"].stop()
        stopped.append(runtimes["p3"])
        at_stop = len(delivered(tmp_path)["p3"])
        assert at_stop < len(MEMBERS) * MESSAGES, "p3 stopped only after the workload was over"
        wait_for(lambda: all(len(delivered(tmp_path)[p]) >= 5 for p in ("p1", "p2")), "p1 and p2 to go on without p3")
        p3 = next(p for p in group.peers if p.name == "p3")
        runtimes["p3"] = FreeRuntime(
            {"p3": p3.main}, tmp_path, trace=trace, peers=addresses, ports={"p3": addresses["p3"][1]}
        )
        runtimes["p3"].start()
        wait_for(lambda: everyone_has_everything(tmp_path), "every member to deliver every message")
    finally:
        for rt in runtimes.values():
            rt.stop()
    for rt in [*runtimes.values(), *stopped]:
        assert rt.errors == []
    final = delivered(tmp_path)
    assert causal_violation(final) is None, causal_violation(final)
    assert all(len(set(ms)) == len(MEMBERS) * MESSAGES for ms in final.values())
    verdict = validate_broadcast(trace.events)
    assert verdict.ok, verdict.message


def test_a_member_survives_what_a_hostile_peer_sends_over_a_link(tmp_path: Path) -> None:
    """p2 is a hand-written peer: it sends p1 garbage, link messages with wrong
    shapes, numbers and bodies, then a well-formed broadcast.  p1 must deliver the
    good one and nothing else, and must not crash."""
    group = group_sim.broadcast_group(2, 1, interval=60.0, retransmit=0.2)
    p1 = group.peers[0]
    got: list[Any] = []

    def hostile(ctx: Any) -> None:
        junk: list[dict[str, Any]] = [
            {"type": "LinkData"},
            {"type": "LinkData", "seq": "0", "body": {}},
            {"type": "LinkData", "seq": -5, "body": {}},
            {"type": "LinkData", "seq": 10**30, "body": {}},
            {"type": "LinkAck", "upto": 10**9},
            {"type": "LinkAck", "upto": -1},
            {"type": "Nonsense", "x": 1},
            encode(LinkData(0, "not an object")),  # taken by the link, refused by broadcast
            encode(LinkData(1, {"sender": "p1", "clock": [1, 0], "body": "forged sender"})),
            encode(LinkData(2, {"sender": "p2", "clock": [0], "body": "wrong clock size"})),
            encode(LinkData(3, {"sender": "p2", "clock": [0, 1], "body": "good"})),
            encode(LinkAck(1)),
        ]
        for msg in junk:
            ctx.send("p1", msg)
        while True:
            item = ctx.receive(timeout=0.5)
            if item is not None and getattr(item, "msg", {}).get("type") == "LinkData":
                got.append(item.msg)  # p1's own broadcast, sent to p2

    with FreeRuntime({"p1": p1.main, "p2": hostile}, tmp_path) as runtime:
        wait_for(
            lambda: any(r.get("body") == "good" for r in read_log(tmp_path / "p1" / "broadcast.log")),
            "p1 to deliver the one good broadcast",
        )
        wait_for(lambda: bool(got), "p1's own broadcast to reach p2")
    assert runtime.errors == []
    bodies = [r["body"] for r in read_log(tmp_path / "p1" / "broadcast.log") if "delivered" in r]
    assert bodies == [{"from": "p1", "n": 1}, "good"]
    assert any("not a broadcast of its own" in d for d in p1.diagnostics)
