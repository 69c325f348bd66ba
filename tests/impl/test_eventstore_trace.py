"""A run of the event store library, traced (``impl.eventstore.traced``), is a
behaviour of spec/event_store: concurrent commands through ``Repository.update``
(conflicts and retries included), snapshots, a projector following on a thread and
restarted in the middle.  ``distcheck validate event_store`` accepts the file; a
trace with a commit taken out, or a projector that skips an event, is refused."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from distcheck.checks.cli import main
from distcheck.impl.eventstore.aggregate import Aggregate, Repository
from distcheck.impl.eventstore.projection import Projection, Projector
from distcheck.impl.eventstore.store import NewEvent, RecordedEvent, SQLiteEventStore
from distcheck.impl.eventstore.traced import TracedStore
from distcheck.impl.runtime import TraceLog


class Counter(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.n = 0

    def add(self) -> None:
        self.record("Added")

    def apply(self, type: str, data: Mapping[str, Any]) -> None:
        self.n += 1


class Totals(Projection):
    name = "totals"

    def setup(self, db: Any) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS total (stream TEXT PRIMARY KEY, n INTEGER NOT NULL)")

    def handle(self, db: Any, event: RecordedEvent) -> None:
        db.execute("INSERT INTO total VALUES (?, 1) ON CONFLICT (stream) DO UPDATE SET n = n + 1", (event.stream,))


def traced_run(tmp_path: Path) -> tuple[TraceLog, TracedStore]:
    trace = TraceLog("event_store", source="impl")
    store = TracedStore(SQLiteEventStore(tmp_path / "events.db", fsync=False), trace)
    counters = Repository(store, Counter, snapshot_every=4)
    projector = Projector(store, Totals(), tmp_path / "read.db", batch=3).start()

    # Threads 0 and 2 both update c0 first, and both load it before either saves: one
    # of them conflicts whatever the scheduler does (the others may conflict too).
    both_loaded = threading.Barrier(2)

    def work(t: int) -> None:
        meet = t in (0, 2)

        def add(c: Counter) -> None:
            nonlocal meet
            if meet:
                meet = False
                both_loaded.wait(timeout=30)
            c.add()

        for _ in range(6):
            counters.update(f"c{t % 2}", add, attempts=1000)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    threads[0].join()
    projector.close()  # stopped in the middle, and started again on its read model
    projector = Projector(store, Totals(), tmp_path / "read.db", batch=3).start()
    for t in threads[1:]:
        t.join()
    assert projector.wait_for(store.head(), timeout=30)
    projector.close()
    store.close()
    return trace, store


def test_a_traced_run_is_a_behaviour_of_the_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace, _ = traced_run(tmp_path)
    kinds = [e["action"]["type"] for e in trace.events]
    assert kinds.count("Commit") == 24 + 24 // 4  # every command, and the snapshots
    assert "Conflict" in kinds and "ProjectorCrash" in kinds
    assert kinds.count("Handle") == kinds.count("Commit")
    path = tmp_path / "run.jsonl"
    trace.write(path)
    assert main(["validate", "event_store", str(path)]) == 0
    assert "explained" in capsys.readouterr().out


def rewrite(path: Path, keep: Any) -> None:
    header, *steps = [json.loads(line) for line in path.read_text().splitlines()]
    kept = [s for s in steps if keep(s)]
    path.write_text("".join(json.dumps(x) + "\n" for x in [header, *[{**s, "step": n} for n, s in enumerate(kept)]]))


def test_a_trace_with_a_commit_taken_out_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace, _ = traced_run(tmp_path)
    path = tmp_path / "run.jsonl"
    trace.write(path)
    first = next(e["step"] for e in trace.events if e["action"]["type"] == "Commit")
    rewrite(path, lambda s: s["step"] != first)
    assert main(["validate", "event_store", str(path)]) == 1
    assert "not explained" in capsys.readouterr().out


def test_a_projector_that_passes_an_event_in_flight_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hand-written trace of the gap race: w2's event at position 2 is handled
    while w1's append, at position 1, is in flight."""
    trace = TraceLog("event_store", {"writers": 2, "streams": 2, "appends": 1, "max_crashes": 1})
    for actor, action in [
        ("w1", {"type": "Read", "w": "w1", "stream": "s1"}),
        ("w2", {"type": "Read", "w": "w2", "stream": "s2"}),
        ("w1", {"type": "Append", "w": "w1"}),
        ("w2", {"type": "Append", "w": "w2"}),
        ("w2", {"type": "Commit", "w": "w2"}),
        ("subscription", {"type": "Fetch"}),
    ]:
        trace.record(actor, action)
    path = tmp_path / "gap.jsonl"
    trace.write(path)
    assert main(["validate", "event_store", str(path)]) == 1
    out = capsys.readouterr().out
    assert "step 6" in out and "Fetch" in out


def test_an_append_of_several_events_is_refused_when_traced(tmp_path: Path) -> None:
    store = TracedStore(SQLiteEventStore(tmp_path / "events.db", fsync=False), TraceLog("event_store"))
    with pytest.raises(ValueError, match="one event"):
        store.append("s", [NewEvent("A", {}), NewEvent("B", {})])
    store.close()
