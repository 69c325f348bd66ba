"""The 2PC coordinator's rarer paths, each driven on purpose with stand-in RMs (plain
nodes that send what a test needs and note what they receive): a transaction it
has no record of (presumed abort), recovery from a logged decision without a begin
record, and stopping its re-sends once every RM has acknowledged."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from distcheck.checks.conformance.validate import validate_events
from distcheck.impl import twophase
from distcheck.impl.runtime import Choice, ChoiceSource, Context, Envelope, FaultPolicy, RandomChoices, Simulation
from distcheck.spec.twophase import Config, TwoPhase

TIMING = twophase.Timing(vote_timeout=5.0, retry_interval=1.0)


def stand_in_rm(
    name: str, opening: Sequence[dict[str, Any]], received: list[dict[str, Any]], *, ack: bool = True
) -> Callable[[Context], None]:
    """An RM that sends ``opening`` to the coordinator, then notes every message it
    receives and (if ``ack``) acknowledges every decision."""

    def main(ctx: Context) -> None:
        for msg in opening:
            ctx.send("tm", msg)
        while True:
            item = ctx.receive()
            if isinstance(item, Envelope):
                received.append(dict(item.msg))
                if ack and item.msg["type"] in ("Commit", "Abort"):
                    ctx.send("tm", {"type": "Ack", "txn": item.msg["txn"], "rm": name})

    return main


def decisions_sent(sim: Simulation, rm: str) -> list[str]:
    return [
        msg["type"] for src, dst, msg in sim.sent if src == "tm" and dst == rm and msg["type"] in ("Commit", "Abort")
    ]


def test_a_prepared_for_an_unknown_transaction_is_answered_with_a_logged_abort() -> None:
    tm = twophase.Coordinator("tm", TIMING)
    received: list[dict[str, Any]] = []
    opening = [
        # Ack and VoteAbort for a transaction never begun change nothing.
        {"type": "Ack", "txn": "ghost", "rm": "r1"},
        {"type": "VoteAbort", "txn": "ghost", "rm": "r1"},
        {"type": "Prepared", "txn": "ghost", "rm": "r1"},
    ]
    # Without faults each channel keeps its order: the Prepared comes last.
    sim = Simulation({"tm": tm.main, "r1": stand_in_rm("r1", opening, received)}, Ordinary())
    result = sim.run()
    assert result.status == "ok", result.message
    assert received == [{"type": "Abort", "txn": "ghost"}]
    assert tm.decision("ghost") == twophase.ABORT
    assert tm.txns["ghost"].participants == ("r1",) and tm.txns["ghost"].client is None
    # The presumed abort is durable, and the trace says so in the spec's terms.
    assert sim.durable_records("tm", tm.LOG) == [{"txn": "ghost", "decision": "abort", "participants": ["r1"]}]
    assert [(e["action"], e["txn"]) for e in sim.trace.events] == [({"type": "TMAbort"}, "ghost")]
    assert validate_events(TwoPhase(Config(rms=1)), sim.trace.events, split_key="txn").ok


class Ordinary(ChoiceSource):
    """Ordinary steps, first option first (so time passes only when nothing else
    can happen); crashes ``tm`` once, as soon as ``crash_when()`` holds."""

    def __init__(self, crash_when: Callable[[], bool] = lambda: False) -> None:
        self.crash_when = crash_when
        self.crashed = False

    def choose(self, options: Sequence[Choice]) -> int:
        texts = [o.text for o in options]
        if not self.crashed and self.crash_when() and "crash tm" in texts:
            self.crashed = True
            return texts.index("crash tm")
        return next(i for i, o in enumerate(options) if not o.fault)


def test_recovery_from_a_decision_without_a_begin_record_announces_it_again() -> None:
    """A presumed abort is logged without a begin record (there was none); a
    coordinator restarting from that log must still know the transaction, its one
    participant and its decision, and tell the RM again (nothing acknowledged it)."""
    assert twophase.Coordinator.recover([{"txn": "t9", "decision": "commit", "participants": ["r1", "r2"]}]) == {
        "t9": twophase.CoordinatedTxn(("r1", "r2"), None, decision=twophase.COMMIT)
    }
    tm = twophase.Coordinator("tm", TIMING)
    received: list[dict[str, Any]] = []
    opening = [{"type": "Prepared", "txn": "ghost", "rm": "r1"}]
    sent_at_crash: list[int] = []

    def crash_when() -> bool:
        sent_at_crash[:] = [len(decisions_sent(sim, "r1"))]  # the last call is the one that crashed it
        return bool(received)

    choices = Ordinary(crash_when)
    sim = Simulation(
        {"tm": tm.main, "r1": stand_in_rm("r1", opening, received, ack=False)},
        choices,
        FaultPolicy(crash=True, crashable=("tm",), max_crashes=1),
        fault_steps=1000,
        max_steps=60,
    )
    sim.run()
    assert choices.crashed and sent_at_crash == [1]
    # The restarted coordinator, rebuilt from the decision record alone, announces
    # it again (and keeps re-sending, since this RM never acknowledges).
    assert (
        len(decisions_sent(sim, "r1")) >= 2
        and len(received) >= 2
        and all(m == {"type": "Abort", "txn": "ghost"} for m in received)
    )
    assert "restart tm" in [s.choice.text for s in sim.schedule]
    assert tm.txns == {"ghost": twophase.CoordinatedTxn(("r1",), None, decision=twophase.ABORT)}
    # No second TMAbort: the decision was recovered, not made again.
    assert [e["action"]["type"] for e in sim.trace.events] == ["TMAbort"]


def run_commit(ack: bool) -> tuple[Simulation, twophase.Coordinator]:
    """The coordinator commits t1 across two stand-in RMs that vote yes at once,
    as soon as it asks; ``ack``: whether they acknowledge the decision."""
    tm = twophase.Coordinator("tm", TIMING)
    nodes: dict[str, Callable[[Context], None]] = {"tm": tm.main}
    for rm in ("r1", "r2"):
        nodes[rm] = voting_rm(rm, ack)

    def client(ctx: Context) -> None:
        twophase.transact(ctx, "tm", "t1", ["r1", "r2"])

    nodes["client"] = client

    def resend_outlives_the_acks(sim: Simulation) -> str | None:
        # After every step: once both RMs acknowledged, no timer of the coordinator's
        # may be left (its vote timeout went with the decision, its re-send with the acks).
        t = tm.txns.get("t1")
        armed = sim.nodes["tm"].timers
        if t is not None and t.acked == {"r1", "r2"} and armed:
            return f"timers still armed after every RM acknowledged: {sorted(armed)}"
        return None

    sim = Simulation(nodes, RandomChoices(1, clock_weight=0.05), max_steps=400, check=resend_outlives_the_acks)
    sim.run()
    return sim, tm


def voting_rm(name: str, ack: bool) -> Callable[[Context], None]:
    def main(ctx: Context) -> None:
        while True:
            item = ctx.receive()
            if not isinstance(item, Envelope):
                continue
            kind, txn = item.msg["type"], item.msg["txn"]
            if kind == "PrepareRequest":
                ctx.send("tm", {"type": "Prepared", "txn": txn, "rm": name})
            elif kind in ("Commit", "Abort") and ack:
                ctx.send("tm", {"type": "Ack", "txn": txn, "rm": name})

    return main


def test_the_coordinator_stops_resending_once_every_rm_acknowledged() -> None:
    sim, tm = run_commit(ack=True)
    assert sim.result is not None and sim.result.status == "ok", sim.result and sim.result.message
    assert tm.decision("t1") == twophase.COMMIT and tm.txns["t1"].acked == {"r1", "r2"}
    # Quiescent means no timer is left: the Resend timer was cancelled.
    assert "quiescent" in sim.result.message
    last_ack = max(i for i, (src, dst, msg) in enumerate(sim.sent) if msg["type"] == "Ack")
    assert [m for s, d, m in sim.sent[last_ack + 1 :] if s == "tm" and m["type"] in ("Commit", "Abort")] == []


def test_without_acknowledgements_the_coordinator_keeps_resending() -> None:
    """The contrast that shows the test above could fail: RMs that never acknowledge
    keep the coordinator re-sending its decision, and the run never goes quiet."""
    sim, tm = run_commit(ack=False)
    assert sim.result is not None and sim.result.status == "step_limit"
    assert tm.decision("t1") == twophase.COMMIT
    assert len(decisions_sent(sim, "r1")) > 3
