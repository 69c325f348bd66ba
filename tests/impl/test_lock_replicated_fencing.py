"""Kleppmann's paused lock holder across a leader change of the replicated lock
service (``impl.lock.replicated``), played out by the controlled scheduler on a
schedule the test writes itself, so it happens every time with no search.

Session c1 takes the lock, checks its lease and records its first write; then its
process pauses before the write leaves.  While it is paused the Raft leader, which
granted c1's lease, crashes with c2 waiting in the queue.  A new leader is elected;
it inherits c1's lease without knowing when c1 last renewed it, so it waits the
lease out (``ttl * (1 + max_drift)`` of its clock) before it grants the lock to c2
with a higher fencing token.  c2 writes; then c1 wakes, and its write, carrying the
old token, reaches storage, which rejects it.

The same schedule with the ``no_lease_wait`` server (the new leader takes the
lease it inherited as over) grants c2 while c1 still trusts its lease: the
assertions on the waiting rule can fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs

from distcheck.impl.lock.replicated import LockNode
from distcheck.impl.lock.replicated_client import ReplicatedTiming
from distcheck.impl.lock.workers import ReplicatedService, replicated_service
from distcheck.impl.raft import RaftOptions, Timing
from distcheck.impl.raft.client import ClientTiming
from distcheck.impl.raft.node import LEADER
from distcheck.impl.runtime import Choice, ChoiceSource, Context, FaultPolicy, RunResult, TraceLog, run_simulation

TTL = 30.0
MAX_DRIFT = 0.1


class PausedHolderLeaderCrash(ChoiceSource):
    """A fixed schedule: threads run as soon as they can, then messages are
    delivered, and time advances only when nothing else can happen; except that
    once w1 (session c1) has recorded a write, none of its threads runs until
    storage has accepted a write from c2; and once c1 is paused with c2 queued, the
    leader crashes (once; it restarts once c2 wrote)."""

    def __init__(self, trace: TraceLog, servers: Sequence[LockNode]) -> None:
        self.trace = trace
        self.servers = list(servers)
        self.crashed: str | None = None
        self.crashed_at = 0.0
        self.paused_steps = 0

    def paused(self) -> bool:
        events = self.trace.events
        wrote = any(e["actor"] == "w1" and e["action"]["type"] == "Write" for e in events)
        overtaken = any(e["action"] == {"type": "AcceptWrite", "client": "c2"} for e in events)
        return wrote and not overtaken

    def choose(self, options: Sequence[Choice]) -> int:
        paused = self.paused()
        texts = [o.text for o in options]
        if paused and self.crashed is None:
            for server in self.servers:
                table = server.lock_machine.locks.get("L") if hasattr(server, "log") else None
                if server.role == LEADER and table is not None and table.queue and f"crash {server.name}" in texts:
                    self.crashed = server.name
                    return texts.index(f"crash {server.name}")
        if not paused and self.crashed is not None and f"restart {self.crashed}" in texts:
            return texts.index(f"restart {self.crashed}")
        allowed = [i for i, o in enumerate(options) if not (paused and o.kind == "run" and o.agent.startswith("w1."))]
        self.paused_steps += paused
        for kind in ("run", "deliver", "advance"):
            for i in allowed:
                if options[i].kind == kind:
                    return i
        raise AssertionError(f"nothing but faults and the paused holder can move: {texts}")


@attrs.define
class Outcome:
    result: RunResult
    service: ReplicatedService
    crashed: str | None
    paused_steps: int

    def time_of(self, actor: str, kind: str) -> float:
        return next(
            s.time for s in self.result.schedule for e in s.events if (e["actor"], e["action"]["type"]) == (actor, kind)
        )

    def event(self, actor: str, kind: str) -> dict[str, object]:
        return next(
            e for s in self.result.schedule for e in s.events if (e["actor"], e["action"]["type"]) == (actor, kind)
        )


def play(tmp_path: Path, variant: str | None = None) -> Outcome:
    service = replicated_service(
        3,
        2,
        1,
        ttl=TTL,
        hold=1.0,
        max_drift=MAX_DRIFT,
        timing=Timing(heartbeat=1.0, election_timeout=5.0),
        options=RaftOptions.conformance(),
        client_timing=ReplicatedTiming(
            poll=1.0, drift_bound=MAX_DRIFT, raft=ClientTiming(attempt=3.0, backoff=1.0, max_backoff=4.0, timeout=1e9)
        ),
        variant=variant,
    )
    w1, w2 = service.workers
    nodes = service.nodes()

    def second(ctx: Context) -> None:  # c2 asks only once c1 holds the lock
        while not w1.leases:
            ctx.sleep(0.5)
        w2.main(ctx)

    nodes["w2"] = second
    trace = TraceLog("lock", {})
    choices = PausedHolderLeaderCrash(trace, service.servers)
    _, result = run_simulation(
        nodes,
        choices,
        FaultPolicy(crash=True, max_crashes=1),
        trace=trace,
        directory=tmp_path / "nodes",
        max_steps=20_000,
        fault_steps=5_000,
        until=lambda sim: all(w.current in w.outcomes for w in service.workers),
    )
    return Outcome(result, service, choices.crashed, choices.paused_steps)


def test_a_paused_holders_write_is_fenced_after_the_new_leader_waited_out_its_lease(tmp_path: Path) -> None:
    outcome = play(tmp_path)
    assert outcome.result.ok, outcome.result.render(compact=True)
    assert outcome.crashed is not None and outcome.paused_steps > 0
    w1, w2 = outcome.service.workers
    c1, c2 = w1.leases["c1"], w2.leases["c2"]
    assert c1.token < c2.token
    # the leader that granted c1 crashed; c2's lock came from the next one, and not
    # before c1's lease was over by c1's own clock (the new leader waited it out)
    crash = next(s.time for s in outcome.result.schedule if s.choice.text == f"crash {outcome.crashed}")
    granted_c2 = outcome.time_of("w2", "Hold")
    assert crash < granted_c2
    # (c1 was paused: it never renewed after it recorded its write)
    assert granted_c2 >= c1.trust_until
    assert granted_c2 - crash >= TTL * (1 - MAX_DRIFT)
    # c1 woke with its stale token: storage rejected it, c2's writes stand
    assert w1.outcomes == {"c1": "stale"} and w2.outcomes == {"c2": "done"}
    store = outcome.service.store.state
    assert [(w["session"], w["token"]) for w in store.writes] == [("c2", c2.token), ("c2", c2.token)]
    assert store.rejected == {"L": 1}
    # the schedule is fixed: the same run, step for step, every time
    assert play(tmp_path / "again").result.indices == outcome.result.indices


def test_the_same_schedule_without_the_waiting_rule_grants_while_the_holder_still_trusts(tmp_path: Path) -> None:
    outcome = play(tmp_path, variant="no_lease_wait")
    assert outcome.result.ok, outcome.result.render(compact=True)
    w1, w2 = outcome.service.workers
    granted_c2 = outcome.time_of("w2", "Hold")
    # two clients trust a lease on the same lock at once: fencing alone is left
    assert granted_c2 < w1.leases["c1"].trust_until
    assert w2.leases["c2"].token > w1.leases["c1"].token
    assert outcome.service.store.state.rejected == {"L": 1}  # and storage fenced c1's write off
