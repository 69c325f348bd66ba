"""Fencing, shown on the implementation in the default run: Kleppmann's paused lock
holder, played out by the controlled scheduler on a schedule the test writes
itself, so it happens every time, in a few hundred steps, with no search.

Client c1 takes the lock, checks its lease and records its write; then its process
pauses (none of its threads runs) before the write leaves.  Virtual time passes;
the server expires c1's lease and grants the lock to the waiting c2 with a higher
fencing token; c2 writes.  Then c1 wakes and its write, carrying the old token,
reaches storage, which rejects it: c1 gets ``StaleToken`` and the data is c2's.
The same schedule against storage that does not check tokens
(``unfenced_storage``) lets the stale write overwrite c2's, which the spec's
FencedWrites forbids and trace validation reports: so the assertions here can fail.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

from distcheck.checks.conformance.validate import Validation, validate_trace
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
from distcheck.impl.runtime import Choice, ChoiceSource, Context, RunResult, TraceLog, run_simulation
from distcheck.spec.lock import Config, Lock

TICK = 1.0  # virtual seconds
TTL_TICKS = 3
MAX_TIME = 8  # the server's horizon and the model's max_time
MODEL = Config(clients=2, ttl=TTL_TICKS, max_drift=1, max_time=MAX_TIME, max_requests=2)
PARAMS = {k: v for k, v in attrs.asdict(MODEL).items() if k != "variant"}
HOLDER = "a"  # the node of client c1, the one that pauses


class PausedHolder(ChoiceSource):
    """A fixed schedule: every thread runs as soon as it can, then every message is
    delivered, and time advances only when nothing else can happen; except that
    once node ``HOLDER`` has recorded a write, none of its threads runs until
    storage has accepted a write from the client that took the lock over."""

    def __init__(self, trace: TraceLog) -> None:
        self.trace = trace
        self.paused_steps = 0

    def paused(self) -> bool:
        events = self.trace.events
        wrote = any(e["actor"] == HOLDER and e["action"]["type"] == "Write" for e in events)
        overtaken = any(e["action"] == {"type": "AcceptWrite", "client": "c2"} for e in events)
        return wrote and not overtaken

    def choose(self, options: Sequence[Choice]) -> int:
        paused = self.paused()
        allowed = [
            i for i, o in enumerate(options) if not (paused and o.kind == "run" and o.agent.startswith(f"{HOLDER}."))
        ]
        assert allowed, f"only the paused holder can move: {[o.text for o in options]}"
        self.paused_steps += paused
        for kind in ("run", "deliver", "advance"):
            for i in allowed:
                if options[i].kind == kind:
                    return i
        return allowed[0]


@attrs.define
class Outcome:
    result: RunResult
    store: FencedStore
    tokens: dict[str, int]
    ended: dict[str, str]  # client -> how its attempt ended
    paused_steps: int
    validation: Validation


def play(tmp_path: Path, storage_variant: str | None = None) -> Outcome:
    tokens: dict[str, int] = {}
    ended: dict[str, str] = {}
    timing = ClientTiming(retry=0.5, drift_bound=0.1)

    def client(session: str, wait_for_holder: bool) -> Callable[[Context], None]:
        def main(ctx: Context) -> None:
            if wait_for_holder:  # c2 asks only once c1 holds the lock, so c1 gets it first
                while "c1" not in tokens:
                    ctx.sleep(0.1)
            lock_client = LockClient(ctx, session, timing=timing)
            storage = FencedStorage(lock_client)
            try:
                with lock_client.lock("L", ttl=TTL_TICKS * TICK, timeout=30.0) as lease:
                    tokens[session] = lease.token
                    storage.write("k", f"from {session}", lease)
                ended[session] = "released"
            except StaleToken:
                ended[session] = "stale token"
            except (LockLost, LockTimeout) as exc:
                ended[session] = type(exc).__name__

        return main

    trace = TraceLog("lock", PARAMS)
    store = FencedStore(variant=storage_variant)
    nodes = {
        "server": LockServer("server", TICK, horizon=MAX_TIME).main,
        "storage": store.main,
        HOLDER: client("c1", wait_for_holder=False),
        "b": client("c2", wait_for_holder=True),
    }
    choices = PausedHolder(trace)
    _, result = run_simulation(nodes, choices, trace=trace, directory=tmp_path / "nodes", max_steps=3000)
    path = tmp_path / "trace.jsonl"
    trace.write(path)
    validation = validate_trace(Lock(MODEL), trace_file.read(path), split_key="lock")
    return Outcome(result, store, tokens, ended, choices.paused_steps, validation)


def actions(result: RunResult) -> list[str]:
    return [f"{e['actor']}:{e['action']['type']}" for s in result.schedule for e in s.events]


def test_a_paused_holders_stale_write_is_rejected_by_fenced_storage(tmp_path: Path) -> None:
    outcome = play(tmp_path)
    assert outcome.result.ok, outcome.result.render(compact=True)
    assert outcome.paused_steps > 0
    # c1's lease expired while it was paused, and c2 got the lock with a higher token.
    steps = actions(outcome.result)
    assert "server:Expire" in steps
    assert outcome.tokens["c1"] < outcome.tokens["c2"]
    # c2's write was accepted; c1's, carrying the old token, arrived after it and
    # was rejected, and c1 was told so.
    assert steps.index("storage:AcceptWrite") < steps.index("storage:RejectWrite")
    assert outcome.ended == {"c2": "released", "c1": "stale token"}
    state = outcome.store.state
    assert [(w["session"], w["token"]) for w in state.writes] == [("c2", outcome.tokens["c2"])]
    assert state.data == {"k": "from c2"}
    assert state.rejected == {"L": 1}
    # The implementation's trace is a behaviour of the spec, stale write and all.
    assert outcome.validation.ok, outcome.validation.message
    # The schedule is fixed: the same run, step for step, every time.
    assert play(tmp_path / "again").result.indices == outcome.result.indices


def test_the_same_schedule_without_fencing_lets_the_stale_write_through(tmp_path: Path) -> None:
    outcome = play(tmp_path, storage_variant="unfenced_storage")
    assert outcome.result.ok, outcome.result.render(compact=True)
    # c1's write went through; the client library found its lease lost only when
    # the block ended, after the damage: the token went down, c1's stale write
    # overwrote c2's.
    assert outcome.ended == {"c2": "released", "c1": "LockLost"}
    state = outcome.store.state
    assert [w["token"] for w in state.writes] == [outcome.tokens["c2"], outcome.tokens["c1"]]
    assert state.data == {"k": "from c1"}
    assert not outcome.validation.ok
    assert "AcceptWrite" in outcome.validation.message, outcome.validation.message
