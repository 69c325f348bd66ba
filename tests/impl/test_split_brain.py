"""Split brain after a network partition, on the lock service's implementation:
fencing tokens keep a deposed leader's write out of the shared storage; without
them the write corrupts it.

Two replicas, n1 and n2 (lock sessions c1 and c2), elect a leader with the lock
service: whoever holds lock ``leader`` leads and writes to the shared storage with
its fencing token.  n1 leads and has written once.  It checks its lease and records
a second write; before the write leaves, the runtime's partition fault isolates
n1.  That write, its re-sends and n1's renewals are all lost at the cut, and n1
does not notice: it is blocked re-sending a write it made while its lease was good.
The server expires n1's lease and grants ``leader`` to n2 with a higher token; n2
writes twice.  The partition heals and n1's next re-send reaches storage with the
old token: storage rejects it, n1 gets ``StaleToken`` and steps down, the data is
n2's, and the trace validates against spec/lock.py.  The same schedule against
storage that ignores tokens (``unfenced_storage``) lets the old leader's write
land after the new leader's: storage ends with n1's value, validation rejects that
``AcceptWrite``, and the spec's own ``unfenced_storage`` variant explains the trace
only with FencedWrites broken.

Why the cut includes storage.  Were storage reachable from n1 throughout, n1's
write would arrive at once, within its lease, and its next lease check (which
leaves a margin for the server's expiry and for clock drift) would stop it before
n2 could be granted the lock; nothing stale would reach storage unless the network
held a message for seconds of its own accord.  The partition is that delay: the
client library re-sends a write, with the same id and token, until storage
answers, so the copy that crosses after the heal carries the token of a leadership
that ended during the partition.  After the heal storage is reachable from both
sides, as a shared resource is.

The test writes the schedule itself, as tests/impl/test_lock_fencing.py does for
the paused client, so the run is the same every time: about 220 steps, no search.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from distcheck.checks.conformance.validate import Validation, Validator, trace_events, validate_trace
from distcheck.checks.traces import trace as trace_file
from distcheck.impl.lock import (
    ClientTiming,
    FencedStorage,
    FencedStore,
    LockClient,
    LockLost,
    LockServer,
    LockTimeout,
    StaleToken,
)
from distcheck.impl.runtime import Choice, ChoiceSource, Context, FaultPolicy, RunResult, TraceLog, run_simulation
from distcheck.spec.lock import Config, Lock, LockState

TICK = 1.0  # virtual seconds
TTL_TICKS = 3
MAX_TIME = 8  # the server's horizon and the model's max_time
MODEL = Config(clients=2, ttl=TTL_TICKS, max_drift=1, max_time=MAX_TIME, max_requests=2)
PARAMS = {k: v for k, v in attrs.asdict(MODEL).items() if k != "variant"}
LOCK = "leader"
WRITES = 2  # each leader writes this many times
OLD, NEW = "n1", "n2"  # replica nodes; their lock sessions are the spec's clients c1 and c2
SESSION = {OLD: "c1", NEW: "c2"}
# Everything is reachable from everything but the isolated node, storage included.
PARTITION = FaultPolicy(partition=True, max_partitions=1)
MAX_STEPS = 3000


def value(node: str, n: int) -> str:
    return f"{node} write {n}"


class PartitionSchedule(ChoiceSource):
    """A fixed schedule: every thread runs as soon as it can, then every message is
    delivered, and time advances only when nothing else can happen; except that the
    network isolates n1 as soon as it has recorded its last write (its lease
    check passed, the write not yet sent), and heals once storage has accepted all
    of n2's writes."""

    def __init__(self, trace: TraceLog) -> None:
        self.trace = trace

    def recorded(self, actor: str, action: dict[str, Any]) -> int:
        return sum(1 for e in self.trace.events if e["actor"] == actor and e["action"] == action)

    def choose(self, options: Sequence[Choice]) -> int:
        def pick(kind: str, agent: str | None = None) -> int | None:
            return next(
                (i for i, o in enumerate(options) if o.kind == kind and (agent is None or o.agent == agent)), None
            )

        old_sent_last_write = self.recorded(OLD, {"type": "Write", "client": SESSION[OLD]}) == WRITES
        new_writes_accepted = self.recorded("storage", {"type": "AcceptWrite", "client": SESSION[NEW]}) == WRITES
        partition = pick("partition", OLD)
        if old_sent_last_write and partition is not None:
            return partition
        heal = pick("heal")
        if heal is not None and new_writes_accepted:
            return heal
        for kind in ("run", "deliver", "advance"):
            index = pick(kind)
            if index is not None:
                return index
        raise AssertionError(f"the schedule has nothing ordinary to take: {[o.text for o in options]}")


@attrs.define
class Outcome:
    result: RunResult
    store: FencedStore
    partitions: int
    tokens: dict[str, int]  # session -> its fencing token as leader
    ended: dict[str, str]  # session -> how its leadership ended
    trace: Path


def play(tmp_path: Path, storage_variant: str | None = None) -> Outcome:
    tokens: dict[str, int] = {}
    ended: dict[str, str] = {}
    timing = ClientTiming(retry=0.5, drift_bound=0.1)

    def replica(node: str, wait_for_leader: bool) -> Callable[[Context], None]:
        session = SESSION[node]

        def main(ctx: Context) -> None:
            if wait_for_leader:  # n2 stands only once n1 leads, so n1 is leader first
                while SESSION[OLD] not in tokens:
                    ctx.sleep(0.1)
            lock_client = LockClient(ctx, session, timing=timing)
            storage = FencedStorage(lock_client)
            try:
                with lock_client.lock(LOCK, ttl=TTL_TICKS * TICK, timeout=30.0) as lease:
                    tokens[session] = lease.token
                    for n in range(1, WRITES + 1):
                        storage.write("k", value(node, n), lease)
                        ctx.sleep(0.5)
                ended[session] = "released"
            except StaleToken:
                ended[session] = "stepped down: stale token"
            except (LockLost, LockTimeout) as exc:
                ended[session] = type(exc).__name__

        return main

    trace = TraceLog("lock", PARAMS)
    store = FencedStore(variant=storage_variant)
    nodes = {
        "server": LockServer("server", TICK, horizon=MAX_TIME).main,
        "storage": store.main,
        OLD: replica(OLD, wait_for_leader=False),
        NEW: replica(NEW, wait_for_leader=True),
    }
    sim, result = run_simulation(
        nodes,
        PartitionSchedule(trace),
        PARTITION,
        trace=trace,
        directory=tmp_path / "nodes",
        fault_steps=MAX_STEPS,  # the test heals the partition itself
        max_steps=MAX_STEPS,
    )
    path = tmp_path / "trace.jsonl"
    trace.write(path)
    return Outcome(result, store, sim.partitions, tokens, ended, path)


def validate(outcome: Outcome, variant: str | None = None) -> Validation:
    return validate_trace(Lock(attrs.evolve(MODEL, variant=variant)), trace_file.read(outcome.trace), split_key="lock")


def spec_states_after(outcome: Outcome, variant: str | None) -> list[LockState]:
    """Every state the spec (or its ``variant``) can be in once the whole trace has
    happened; fails if some event of the trace is not a behaviour of it."""
    validator = Validator(Lock(attrs.evolve(MODEL, variant=variant)), split_key="lock")
    for event in trace_events(trace_file.read(outcome.trace)):
        mismatch = validator.feed(event)
        assert mismatch is None, mismatch.reason
    return list(validator.groups[LOCK].values())


def fenced_writes(states: list[LockState]) -> list[bool]:
    [invariant] = [i for i in Lock(MODEL).invariants() if i.name == "FencedWrites"]
    return [invariant.holds(s) for s in states]


def timeline(result: RunResult) -> list[str]:
    """The run's milestones in order: the network's faults, and the protocol steps
    each scheduler step recorded, as "actor:Action(client)"."""
    out = []
    for step in result.schedule:
        if step.choice.kind in ("partition", "heal"):
            out.append(step.choice.text)
        for e in step.events:
            who = e["action"].get("client", e["action"].get("token", ""))
            out.append(f"{e['actor']}:{e['action']['type']}({who})")
    return out


def position(steps: list[str], milestone: str, after: int = -1) -> int:
    """Where ``milestone`` first happens in ``steps`` after position ``after``."""
    later = [i for i, s in enumerate(steps) if s == milestone and i > after]
    assert later, f"{milestone} never happened" + (f" after {steps[after]}" if after >= 0 else "") + f": {steps}"
    return later[0]


def test_after_the_partition_heals_fenced_storage_rejects_the_old_leaders_write(tmp_path: Path) -> None:
    outcome = play(tmp_path)
    assert outcome.result.ok, outcome.result.render(compact=True)
    steps = timeline(outcome.result)
    isolate, heal = position(steps, f"isolate {OLD}"), position(steps, "heal the partition")
    old_writes = [i for i, s in enumerate(steps) if s == f"{OLD}:Write(c1)"]
    # n1 passed its lease check and recorded its last write; then the network cut
    # it off, and the copies of that write (and its renewals) were lost at the cut.
    assert outcome.partitions == 1 and len(old_writes) == WRITES, steps
    assert old_writes[-1] < isolate < heal, steps
    lost = [note for s in outcome.result.schedule for note in s.notes]
    assert f"lost: {OLD} is cut off" in lost, "nothing was lost at the cut: the partition did not hold n1's write back"
    # Meanwhile the server expired n1's lease and n2 became leader with a higher
    # token and wrote; only after the heal did n1's old write reach storage.
    expired = position(steps, "server:Expire(1)", after=isolate)
    assert position(steps, "server:Grant(c2)", after=expired) < heal, steps
    assert outcome.tokens["c1"] < outcome.tokens["c2"], outcome.tokens
    position(steps, "storage:RejectWrite(c1)", after=heal)
    # Storage kept n2's data and told n1, which stepped down.
    state = outcome.store.state
    accepted = [(w["session"], w["token"]) for w in state.writes]
    assert accepted == [("c1", outcome.tokens["c1"])] + [("c2", outcome.tokens["c2"])] * WRITES, accepted
    assert state.data == {"k": value(NEW, WRITES)}, f"storage ends with {state.data}, not the new leader's write"
    assert state.rejected == {LOCK: 1}
    assert outcome.ended == {"c2": "released", "c1": "stepped down: stale token"}, outcome.ended
    # The implementation's trace is a behaviour of the spec, partition and all.
    validation = validate(outcome)
    assert validation.ok, validation.message
    after = fenced_writes(spec_states_after(outcome, variant=None))
    assert after and all(after), f"FencedWrites broken in {after.count(False)} of {len(after)} end states"
    # The schedule is fixed: the same run, step for step, every time.
    assert play(tmp_path / "again").result.indices == outcome.result.indices


def test_without_fencing_the_old_leaders_write_overwrites_the_new_leaders(tmp_path: Path) -> None:
    outcome = play(tmp_path, storage_variant="unfenced_storage")
    assert outcome.result.ok, outcome.result.render(compact=True)
    assert outcome.partitions == 1, "the schedule never cut n1 off"
    steps = timeline(outcome.result)
    # The same story up to the heal; then storage applied n1's stale write.
    heal = position(steps, "heal the partition")
    assert position(steps, "server:Grant(c2)") < heal, steps
    position(steps, "storage:AcceptWrite(c1)", after=heal)
    state = outcome.store.state
    tokens = [w["token"] for w in state.writes]
    old, new = outcome.tokens["c1"], outcome.tokens["c2"]
    assert tokens == [old] + [new] * WRITES + [old], f"accepted writes carry tokens {tokens}, in that order"
    assert state.data == {"k": value(OLD, WRITES)}, f"storage ends with {state.data}: expected the old leader's write"
    # n1 learnt it had lost the lock only when its block ended, after the damage.
    assert outcome.ended == {"c2": "released", "c1": "LockLost"}, outcome.ended
    # Trace validation rejects the stale write's acceptance...
    validation = validate(outcome)
    assert not validation.ok, "the reference spec explained a stale write landing after a newer one"
    assert "AcceptWrite" in validation.message, validation.message
    # ...and the spec's own unfenced_storage variant explains the trace only with
    # FencedWrites broken, in every state it can have reached.
    after = fenced_writes(spec_states_after(outcome, variant="unfenced_storage"))
    assert after and not any(after), f"FencedWrites holds in {sum(after)} of {len(after)} end states"
