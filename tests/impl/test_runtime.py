"""The controlled runtime on its own: determinism, replay, virtual time, crashes
losing unsynced writes, partitions, deadlock detection, PCT, locks and queues, the
durable log."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from distcheck.impl import twophase
from distcheck.impl.runtime import (
    Choice,
    ChoiceSource,
    Context,
    Envelope,
    FaultPolicy,
    Lock,
    NodeCrashed,
    PCTChoices,
    RandomChoices,
    ReplayChoices,
    RunResult,
    Simulation,
    Timer,
    TraceLog,
    run_simulation,
)
from distcheck.impl.runtime.controlled import FAULTS
from distcheck.impl.runtime.storage import DurableLog, encode_record, read_log

ALL_FAULTS = FaultPolicy(crash=True, drop=True, duplicate=True, reorder=True)


def run_2pc(choices: ChoiceSource, faults: FaultPolicy = ALL_FAULTS) -> tuple[str, str]:
    cluster = twophase.cluster(3)
    trace = TraceLog("twophase", {"rms": 3})
    _, result = run_simulation(cluster.nodes(), choices, faults, trace=trace)
    return result.render(), trace.text()


@pytest.mark.parametrize("make", [lambda s: RandomChoices(s), lambda s: PCTChoices(s, depth=3)], ids=["random", "pct"])
def test_same_seed_gives_the_identical_run_and_trace(make: Callable[[int], ChoiceSource]) -> None:
    runs = {seed: run_2pc(make(seed)) for seed in range(4)}
    for seed in range(4):
        assert run_2pc(make(seed)) == runs[seed]
    # ... and the seed matters: not every seed gives the same schedule.
    assert len({schedule for schedule, _ in runs.values()}) > 1


def test_recorded_choices_replay_the_run_exactly() -> None:
    cluster = twophase.cluster(3)
    _, first = run_simulation(cluster.nodes(), RandomChoices(11), ALL_FAULTS, trace=TraceLog("twophase"))
    again = twophase.cluster(3)
    _, replayed = run_simulation(again.nodes(), ReplayChoices(first.indices), ALL_FAULTS, trace=TraceLog("twophase"))
    assert replayed.render() == first.render()
    assert replayed.trace.text() == first.trace.text()


class Scripted(ChoiceSource):
    """Takes the first option whose text contains the next wanted word, else option 0."""

    def __init__(self, wanted: Sequence[str]) -> None:
        self.wanted = list(wanted)

    def choose(self, options: Sequence[Choice]) -> int:
        if self.wanted:
            for i, o in enumerate(options):
                if self.wanted[0] in o.text:
                    self.wanted.pop(0)
                    return i
        return next((i for i, o in enumerate(options) if not o.fault), 0)


def test_a_crash_loses_what_was_written_but_not_synced_and_recovery_reads_the_rest() -> None:
    seen_after_restart: list[list[dict[str, object]]] = []

    def node(ctx: Context) -> None:
        log = ctx.storage("data")
        seen_after_restart.append(log.records())
        if not log.records():
            log.append({"n": 1})
            log.sync()
            log.append({"n": 2})  # never synced
            ctx.yield_now()
        ctx.receive()

    # run the node to its explicit yield, crash it there, then let it restart
    sim = Simulation(
        {"a": node},
        Scripted(["run", "run", "run", "run", "crash a", "restart a"]),
        FaultPolicy(crash=True, max_crashes=1),
    )
    result = sim.run()
    assert result.ok, result.render()
    assert seen_after_restart == [[], [{"n": 1}]]
    assert any("lost 1 unsynced record" in note for step in result.schedule for note in step.notes)


def test_virtual_time_orders_timers_and_timeouts() -> None:
    log: list[tuple[float, str]] = []

    def node(ctx: Context) -> None:
        ctx.set_timer("late", 5.0)
        ctx.set_timer("early", 2.0)
        for _ in range(2):
            item = ctx.receive()
            assert isinstance(item, Timer)
            log.append((ctx.now(), item.name))
        assert ctx.receive(timeout=1.5) is None
        log.append((ctx.now(), "timeout"))
        ctx.sleep(10)
        log.append((ctx.now(), "slept"))

    _, result = run_simulation({"a": node}, RandomChoices(0))
    assert result.ok, result.render()
    assert log == [(2.0, "early"), (5.0, "late"), (6.5, "timeout"), (16.5, "slept")]


def test_messages_arrive_in_order_without_reorder_and_can_be_reordered_with_it() -> None:
    def orders(faults: FaultPolicy) -> set[tuple[int, ...]]:
        seen: set[tuple[int, ...]] = set()
        for seed in range(40):
            got: list[int] = []

            def sender(ctx: Context) -> None:
                for i in range(3):
                    ctx.send("b", {"type": "N", "i": i})

            def receiver(ctx: Context, got: list[int] = got) -> None:
                while len(got) < 3:
                    item = ctx.receive()
                    assert isinstance(item, Envelope)
                    got.append(int(item.msg["i"]))

            _, result = run_simulation({"a": sender, "b": receiver}, RandomChoices(seed), faults)
            assert result.ok, result.render()
            seen.add(tuple(got))
        return seen

    assert orders(FaultPolicy()) == {(0, 1, 2)}
    assert len(orders(FaultPolicy(reorder=True))) > 1


def lock_program(opposite_order: bool) -> dict[str, Callable[[Context], None]]:
    def node(ctx: Context) -> None:
        first, second = ctx.lock(), ctx.lock()

        def worker(a: Lock, b: Lock) -> Callable[[], None]:
            def run() -> None:
                with a, b:
                    ctx.yield_now()

            return run

        ctx.spawn("w1", worker(first, second))
        ctx.spawn("w2", worker(second, first) if opposite_order else worker(first, second))

    return {"n": node}


def test_a_deadlock_is_reported_with_its_trace() -> None:
    statuses = {}
    for seed in range(30):
        _, result = run_simulation(lock_program(opposite_order=True), RandomChoices(seed))
        statuses[seed] = result.status
        if result.status == "deadlock":
            assert "n.w1 waits for lock" in result.message and "n.w2 waits for lock" in result.message
            assert "run n.w2 (lock)" in result.render() or "run n.w1 (lock)" in result.render()
    assert "deadlock" in statuses.values()
    # the same program taking the locks in one order never deadlocks
    for seed in range(30):
        _, result = run_simulation(lock_program(opposite_order=False), RandomChoices(seed))
        assert result.ok, result.render()


def test_queue_hands_items_between_threads_of_a_node() -> None:
    got: list[int] = []

    def node(ctx: Context) -> None:
        q = ctx.queue()

        def producer() -> None:
            for i in range(5):
                q.put(i)

        ctx.spawn("producer", producer)
        while len(got) < 5:
            item = q.get(timeout=10)
            if item is not None:
                got.append(item)

    for seed in range(10):
        got.clear()
        _, result = run_simulation({"n": node}, RandomChoices(seed))
        assert result.ok, result.render()
        assert got == [0, 1, 2, 3, 4]


def test_node_crashed_is_not_swallowed_by_except_exception() -> None:
    attempts: list[int] = []

    def node(ctx: Context) -> None:
        attempts.append(1)
        while True:
            try:
                ctx.sleep(1)
            except Exception:  # protocol code catching broadly must not survive a crash
                pass

    sim = Simulation(
        {"a": node},
        Scripted(["run", "crash a", "restart a", "run"]),
        FaultPolicy(crash=True, max_crashes=1),
        max_steps=8,
    )
    result = sim.run()
    assert len(attempts) == 2  # the first incarnation stopped; main ran again after the restart
    assert result.status == "step_limit"  # it sleeps forever, which is allowed but never quiescent


def test_a_node_that_raises_fails_the_run() -> None:
    def node(ctx: Context) -> None:
        ctx.yield_now()
        raise ValueError("boom")

    _, result = run_simulation({"a": node}, RandomChoices(0))
    assert result.status == "error" and "ValueError: boom" in result.message


def test_pct_finds_an_ordering_bug_that_needs_a_late_message() -> None:
    """b must see 'go' only after a has written: a depth-2 ordering bug (the reply
    overtaking the write needs one priority change)."""

    def found(choices: ChoiceSource) -> bool:
        state = {"written": False, "bug": False}

        def a(ctx: Context) -> None:
            ctx.send("b", {"type": "go"})
            ctx.yield_now()
            state["written"] = True

        def b(ctx: Context) -> None:
            ctx.receive()
            if not state["written"]:
                state["bug"] = True

        _, result = run_simulation({"a": a, "b": b}, choices)
        assert result.ok
        return state["bug"]

    pct_hits = [seed for seed in range(50) if found(PCTChoices(seed, depth=2, expected_steps=6))]
    assert pct_hits  # some seed exposes it
    assert len(pct_hits) < 50  # and not every one: the priorities do matter


def test_durable_log_survives_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "log"
    log = DurableLog(path)
    log.append({"a": 1})
    log.append({"b": [1, 2]})
    log.sync()
    log.close()
    torn = encode_record({"c": 3})[:-2]
    with path.open("ab") as f:
        f.write(torn)
    assert read_log(path) == [{"a": 1}, {"b": [1, 2]}]
    reopened = DurableLog(path)
    assert reopened.records() == [{"a": 1}, {"b": [1, 2]}]
    reopened.append({"d": 4})
    reopened.sync()
    reopened.close()
    assert read_log(path) == [{"a": 1}, {"b": [1, 2]}, {"d": 4}]
    # a flipped byte in a record fails its checksum: the log stops before it
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    assert read_log(path) == []


def test_trace_lines_follow_the_documented_header() -> None:
    trace = TraceLog("twophase", {"rms": 2}, source="impl")
    trace.record("r1", {"type": "RMPrepare", "rm": "r1"}, txn="t1")
    lines = [json.loads(line) for line in trace.lines()]
    assert lines[0]["format"] == "distcheck-trace" and lines[0]["spec"] == "twophase"
    assert lines[1] == {"step": 0, "actor": None, "action": None}
    assert lines[2] == {"step": 1, "actor": "r1", "action": {"type": "RMPrepare", "rm": "r1"}, "txn": "t1"}


def test_crash_unwinds_the_nodes_threads() -> None:
    unwound: list[str] = []

    def node(ctx: Context) -> None:
        try:
            ctx.receive()
        except NodeCrashed:
            unwound.append("main")
            raise

    sim = Simulation({"a": node}, Scripted(["run", "crash a"]), FaultPolicy(crash=True, max_crashes=1))
    result = sim.run()
    assert result.ok, result.render()
    # once at the crash, once for the restarted incarnation when the run closes
    # (closing stops the threads the same way a crash does)
    assert unwound == ["main", "main"]
    assert [s.choice.kind for s in result.schedule][:3] == ["run", "crash", "restart"]


# ------------------------------------------------------------------ partitions


def partition_program(got: dict[str, list[str]]) -> dict[str, Callable[[Context], None]]:
    """a sends one message to each of a, b and c; every node records what reaches it.
    The tests cut a off (or c) before the messages are delivered."""

    def sender(ctx: Context) -> None:
        for dst in ("a", "b", "c"):
            ctx.send(dst, {"type": "N", "to": dst})
        receiver(ctx)

    def receiver(ctx: Context) -> None:
        while True:
            item = ctx.receive()
            assert isinstance(item, Envelope)
            got[ctx.name].append(f"{item.src}→{item.msg['to']}")

    return {"a": sender, "b": receiver, "c": receiver}


def test_a_message_across_the_cut_is_lost_and_one_within_a_side_arrives() -> None:
    got: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    # isolate c after a has sent everything (a's main: start, 3 sends), then deliver
    sim = Simulation(
        partition_program(got),
        Scripted(
            [
                "run a.main (start)",
                "run a.main",
                "run a.main",
                "run a.main",
                "isolate c",
                "deliver",
                "deliver",
                "deliver",
            ]
        ),
        FaultPolicy(partition=True, max_partitions=1),
    )
    result = sim.run()
    assert result.ok, result.render()
    assert sim.partitions == 1
    assert got == {"a": ["a→a"], "b": ["a→b"], "c": []}
    lost = [note for s in result.schedule for note in s.notes]
    assert lost == ["lost: c is cut off"]
    # the cut shows in the rendered trace, also in compact form
    for text in (result.render(), result.render(compact=True)):
        assert "isolate c" in text and "(lost: c is cut off)" in text and "heal the partition" in text


def test_the_isolated_side_reaches_only_itself() -> None:
    got: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    sim = Simulation(
        partition_program(got),
        Scripted(
            [
                "run a.main (start)",
                "isolate a",
                "run a.main",
                "run a.main",
                "run a.main",
                "deliver",
                "deliver",
                "deliver",
            ]
        ),
        FaultPolicy(partition=True, max_partitions=1),
    )
    result = sim.run()
    assert result.ok, result.render()
    assert got == {"a": ["a→a"], "b": [], "c": []}
    assert sorted(note for s in result.schedule for note in s.notes) == ["lost: a is cut off"] * 2
    assert sim.cut("a", "b") is False  # healed by the end of the run
    assert sim.isolated is None


def test_a_side_of_several_nodes_is_cut_off_as_a_whole() -> None:
    """With ``sides``, a partition cuts a group off (a server and its clients, say):
    its members still reach each other, and only the groups named are offered."""
    got: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    sim = Simulation(
        partition_program(got),
        Scripted(["run a.main (start)", "isolate a, b", "run a.main", "run a.main", "run a.main"]),
        FaultPolicy(partition=True, max_partitions=1, sides=(("a", "b"),)),
    )
    sim.start()
    try:
        offered = [o for o in sim.options() if o.kind == "partition"]
        assert [(o.agent, o.text) for o in offered] == [("a+b", "isolate a, b")]
        while sim.result is None:
            options = sim.options()
            sim.take(options, sim.choices.choose(options))
            if sim.isolated is not None:
                assert sim.cut("a", "c") and sim.cut("c", "b") and not sim.cut("a", "b")
        result = sim.result
    finally:
        sim.close()
    assert result.ok, result.render()
    assert got == {"a": ["a→a"], "b": ["a→b"], "c": []}
    assert [note for s in result.schedule for note in s.notes] == ["lost: a+b is cut off"]
    with pytest.raises(ValueError, match="a partition side names nodes of the system"):
        Simulation(partition_program(got), Scripted([]), FaultPolicy(partition=True, sides=(("a", "z"),)))


def test_heal_restores_delivery() -> None:
    got: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    sim = Simulation(
        partition_program(got),
        Scripted(["run a.main (start)", "isolate b", "run a.main", "heal the partition", "run a.main", "run a.main"]),
        FaultPolicy(partition=True, max_partitions=1),
    )
    # drive by hand to look at the state between steps
    sim.start()
    try:
        cut_seen: list[bool] = []
        while sim.result is None:
            options = sim.options()
            sim.take(options, sim.choices.choose(options))
            cut_seen.append(sim.cut("a", "b"))
        result = sim.result
    finally:
        sim.close()
    assert result.ok, result.render()
    assert cut_seen[:3] == [False, True, True] and not any(cut_seen[3:])
    # the message sent to b while it was cut off was only delivered after the heal
    assert got == {"a": ["a→a"], "b": ["a→b"], "c": ["a→c"]}
    assert not any(s.notes for s in result.schedule)
    kinds = [s.choice.kind for s in result.schedule]
    assert kinds.index("partition") < kinds.index("heal") < kinds.index("deliver")
    compact = result.render(compact=True)
    assert "isolate b" in compact and "heal the partition" in compact


def test_heal_is_an_ordinary_option_offered_only_while_a_partition_is_in_force() -> None:
    got: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    sim = Simulation(partition_program(got), Scripted([]), FaultPolicy(partition=True))
    sim.start()
    try:
        options = sim.options()
        assert not any(o.kind == "heal" for o in options)
        offered = [o for o in options if o.kind == "partition"]
        assert [(o.agent, o.text, o.fault) for o in offered] == [
            ("a", "isolate a", True),
            ("b", "isolate b", True),
            ("c", "isolate c", True),
        ]
        sim.take(options, options.index(offered[1]))
        options = sim.options()
        assert Choice("heal", "network", "heal the partition") in options
        assert not any(o.kind == "partition" for o in options)  # one partition at a time
    finally:
        sim.close()


def test_the_healing_phase_heals_the_partition_before_anything_else() -> None:
    got: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    # isolate a at step 2, then fault_steps ends: the very next step must heal,
    # though a's thread could run and nothing has been delivered yet
    sim = Simulation(
        partition_program(got),
        Scripted(["run a.main (start)", "isolate a"]),
        FaultPolicy(partition=True, crash=True),
        fault_steps=2,
    )
    sim.start()
    try:
        for wanted in ("run a.main (start)", "isolate a"):
            options = sim.options()
            sim.take(options, next(i for i, o in enumerate(options) if o.text == wanted))
        assert sim.isolated == "a"
        assert sim.options() == [Choice("heal", "network", "heal the partition")]
        sim.take(sim.options(), 0)
        assert sim.isolated is None
        assert not any(o.fault for o in sim.options())
        while sim.result is None:
            sim.take(sim.options(), 0)
        result = sim.result
    finally:
        sim.close()
    assert result.ok, result.render()
    assert got == {"a": ["a→a"], "b": ["a→b"], "c": ["a→c"]}


def test_the_healing_phase_heals_before_restarting_crashed_nodes() -> None:
    got: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    sim = Simulation(
        partition_program(got),
        Scripted(["run a.main (start)", "crash b", "isolate c"]),
        FaultPolicy(partition=True, crash=True),
        fault_steps=3,
    )
    result = sim.run()
    assert result.ok, result.render()
    assert [s.choice.kind for s in result.schedule][:5] == ["run", "crash", "partition", "heal", "restart"]


def test_the_partition_budget_is_respected() -> None:
    def idle(ctx: Context) -> None:
        ctx.sleep(100)

    for budget in (0, 1, 3):
        # always isolate someone when allowed, and heal at once
        sim = Simulation(
            {"a": idle, "b": idle, "c": idle},
            Scripted(["isolate", "heal"] * 10),
            FaultPolicy(partition=True, max_partitions=budget),
        )
        result = sim.run()
        assert result.ok, result.render()
        kinds = [s.choice.kind for s in result.schedule]
        assert sim.partitions == budget
        assert kinds.count("partition") == budget and kinds.count("heal") == budget
        assert kinds[: 2 * budget] == ["partition", "heal"] * budget


def test_partitions_are_not_offered_unless_the_policy_allows_them() -> None:
    def idle(ctx: Context) -> None:
        ctx.sleep(1)

    for faults in (FaultPolicy(), FaultPolicy(crash=True, drop=True, duplicate=True, reorder=True)):
        sim = Simulation({"a": idle, "b": idle}, Scripted([]), faults)
        sim.start()
        try:
            assert not any(o.kind in ("partition", "heal") for o in sim.options())
        finally:
            sim.close()


def test_a_partitioned_run_replays_exactly() -> None:
    faults = FaultPolicy(partition=True, drop=True, max_partitions=3)

    def run(choices: ChoiceSource) -> RunResult:
        _, result = run_simulation(twophase.cluster(3).nodes(), choices, faults, trace=TraceLog("twophase"))
        return result

    runs = [run(RandomChoices(seed, fault_rate=0.3)) for seed in range(12)]
    partitioned = [r for r in runs if any(s.choice.kind == "partition" for s in r.schedule)]
    assert partitioned  # some seed does cut a node off
    assert any("is cut off" in r.render() for r in partitioned)  # and loses a message to it
    for first in partitioned:
        replayed = run(ReplayChoices(first.indices))
        assert replayed.render() == first.render()
        assert replayed.trace.text() == first.trace.text()


def test_fault_policy_parses_partition_and_rejects_unknown_faults() -> None:
    policy = FaultPolicy.parse("partition")
    assert policy.partition and not policy.crash and policy.max_partitions == 2
    both = FaultPolicy.parse("crash, partition", max_partitions=5)
    assert both.crash and both.partition and both.max_partitions == 5
    assert both.names() == ["crash", "partition"]
    assert "partition" in FAULTS
    with pytest.raises(ValueError, match=r"unknown fault\(s\) partiton; allowed: .*partition"):
        FaultPolicy.parse("crash,partiton")


# ----------------------------------------------------------- until: work done


def ticker(ticks: list[float]) -> Callable[[Context], None]:
    """A node that never goes quiet (a heartbeat): it sleeps one time unit, forever."""

    def node(ctx: Context) -> None:
        while True:
            ctx.sleep(1)
            ticks.append(ctx.now())

    return node


def test_until_ends_a_run_that_never_goes_quiet_but_only_once_faults_are_over() -> None:
    asked: list[int] = []

    def always(sim: Simulation) -> bool:
        asked.append(len(sim.schedule))
        return True

    sim = Simulation({"a": ticker([]), "b": ticker([])}, RandomChoices(1), FaultPolicy(), fault_steps=10, until=always)
    result = sim.run()
    assert result.status == "ok", result.render()
    assert result.steps == 10 and result.message == "done after 10 steps"
    assert asked == [10]  # never asked during the fault steps
    # without until the same system runs to the step limit
    _, endless = run_simulation({"a": ticker([]), "b": ticker([])}, RandomChoices(1), fault_steps=10, max_steps=60)
    assert endless.status == "step_limit"


def test_until_ends_the_run_at_the_first_step_it_says_so() -> None:
    ticks: list[float] = []
    asked: list[int] = []

    def five_ticks(sim: Simulation) -> bool:
        asked.append(len(sim.schedule))
        return len(ticks) >= 5

    sim = Simulation({"a": ticker(ticks)}, RandomChoices(0), fault_steps=3, max_steps=500, until=five_ticks)
    result = sim.run()
    assert result.status == "ok", result.render()
    assert len(ticks) == 5  # not one tick more: the run ended the step the fifth was taken
    assert asked == list(range(3, result.steps + 1))
    assert result.message == f"done after {result.steps} steps" and result.steps > 3
    # until never true: the run goes on to the step limit
    never = Simulation({"a": ticker([])}, RandomChoices(0), fault_steps=3, max_steps=40, until=lambda s: False)
    assert never.run().status == "step_limit"


def test_final_check_still_runs_when_until_ends_the_run() -> None:
    checked: list[int] = []

    def final(sim: Simulation) -> str | None:
        checked.append(len(sim.schedule))
        return "the store lost a write"

    sim = Simulation(
        {"a": ticker([])}, RandomChoices(0), fault_steps=4, max_steps=100, until=lambda s: True, final_check=final
    )
    result = sim.run()
    assert result.status == "violation" and result.message == "the store lost a write"
    assert checked == [4]


@pytest.mark.parametrize(
    ("script", "fault_steps", "first_asked", "healing"),
    [
        (["run a.main (start)", "isolate a"], 2, 3, ["heal"]),
        (["run a.main (start)", "crash a"], 2, 3, ["restart"]),
        (["run a.main (start)", "crash b", "isolate c"], 3, 5, ["heal", "restart"]),
    ],
    ids=["partition", "crash", "both"],
)
def test_until_is_not_asked_while_a_node_is_down_or_cut_off(
    script: list[str], fault_steps: int, first_asked: int, healing: list[str]
) -> None:
    asked: list[tuple[int, str | None, list[str]]] = []

    def until(sim: Simulation) -> bool:
        down = [n for n in sim.nodes if not sim.is_up(n)]
        asked.append((len(sim.schedule), sim.isolated, down))
        return True

    nodes = {name: ticker([]) for name in ("a", "b", "c")}
    sim = Simulation(
        nodes, Scripted(script), FaultPolicy(crash=True, partition=True), fault_steps=fault_steps, until=until
    )
    result = sim.run()
    assert result.status == "ok", result.render()
    # the fault came at the last fault step; until was first asked once it was repaired
    assert asked == [(first_asked, None, [])]
    assert result.steps == first_asked
    kinds = [s.choice.kind for s in result.schedule]
    assert kinds[fault_steps:] == healing


# ------------------------------------------------ partitions among some nodes


def servers_and_client(got: dict[str, list[str]]) -> dict[str, Callable[[Context], None]]:
    """a sends to b (a server) and to d (a client); d sends to a.  Every node records
    what reaches it."""

    def receive_forever(ctx: Context) -> None:
        while True:
            item = ctx.receive()
            assert isinstance(item, Envelope)
            got[ctx.name].append(f"{item.src}→{ctx.name}")

    def a(ctx: Context) -> None:
        ctx.send("b", {"type": "N"})
        ctx.send("d", {"type": "N"})
        receive_forever(ctx)

    def d(ctx: Context) -> None:
        ctx.send("a", {"type": "N"})
        receive_forever(ctx)

    return {"a": a, "b": receive_forever, "c": receive_forever, "d": d}


def test_partitioned_limits_the_nodes_that_can_be_isolated() -> None:
    got: dict[str, list[str]] = {n: [] for n in "abcd"}
    faults = FaultPolicy(partition=True, partitioned=("a", "b", "c"))
    sim = Simulation(servers_and_client(got), Scripted([]), faults)
    sim.start()
    try:
        offered = [o.text for o in sim.options() if o.kind == "partition"]
        assert offered == ["isolate a", "isolate b", "isolate c"]
    finally:
        sim.close()
    # without the limit, every node may be cut off
    everyone = Simulation(servers_and_client(got), Scripted([]), FaultPolicy(partition=True))
    everyone.start()
    try:
        assert [o.text for o in everyone.options() if o.kind == "partition"] == [f"isolate {n}" for n in "abcd"]
    finally:
        everyone.close()


def test_an_isolated_server_still_reaches_the_clients_but_not_the_other_servers() -> None:
    got: dict[str, list[str]] = {n: [] for n in "abcd"}
    sim = Simulation(
        servers_and_client(got),
        Scripted(
            [
                "run a.main (start)",
                "run a.main",
                "run a.main",
                "run d.main (start)",
                "run d.main",
                "isolate a",
                "deliver a→b",
                "deliver a→d",
                "deliver d→a",
            ]
        ),
        FaultPolicy(partition=True, max_partitions=1, partitioned=("a", "b", "c")),
    )
    sim.start()
    try:
        while sim.result is None:
            options = sim.options()
            sim.take(options, sim.choices.choose(options))
            if sim.isolated == "a":
                assert sim.cut("a", "b") and sim.cut("c", "a")
                assert not sim.cut("a", "d") and not sim.cut("d", "a") and not sim.cut("b", "c")
        result = sim.result
    finally:
        sim.close()
    assert result.ok, result.render()
    delivered = [s.choice.text.split(" ")[1] for s in result.schedule if s.choice.kind == "deliver"]
    assert delivered == ["a→b", "a→d", "d→a"]  # all three delivered while a was cut off
    assert got == {"a": ["d→a"], "b": [], "c": [], "d": ["a→d"]}
    assert [note for s in result.schedule for note in s.notes] == ["lost: a is cut off"]


# ------------------------------------------------------ rare heals, counted


def test_a_low_heal_weight_makes_heal_a_rare_choice() -> None:
    options = [
        Choice("run", "a.main", "run a.main"),
        Choice("deliver", "msg1", "deliver a→b"),
        Choice("heal", "network", "heal the partition"),
        Choice("partition", "b", "isolate b", fault=True),
    ]

    def heals(heal_weight: float) -> int:
        choices = RandomChoices(7, fault_rate=0.0, heal_weight=heal_weight)
        return sum(options[choices.choose(options)].kind == "heal" for _ in range(3000))

    rare, even = heals(0.02), heals(1.0)
    assert 0 < rare < 100  # about 1 in 100 of 3000
    assert 800 < even < 1200  # about 1 in 3
    assert RandomChoices(7).heal_weight == 0.02  # and rare is the default


def test_a_low_heal_weight_keeps_partitions_in_force_longer_in_a_run() -> None:
    def run(heal_weight: float) -> tuple[int, int]:
        nodes = {name: ticker([]) for name in ("a", "b", "c")}
        sim = Simulation(
            nodes,
            RandomChoices(3, fault_rate=0.3, heal_weight=heal_weight),
            FaultPolicy(partition=True, max_partitions=1000),
            fault_steps=600,
            max_steps=600,
        )
        result = sim.run()
        assert result.status == "step_limit"
        kinds = [s.choice.kind for s in result.schedule]
        cut_steps = 0
        isolated = False
        for kind in kinds:
            isolated = kind == "partition" or (isolated and kind != "heal")
            cut_steps += isolated
        return kinds.count("heal"), cut_steps

    rare_heals, rare_cut = run(0.02)
    even_heals, even_cut = run(1.0)
    assert rare_heals * 4 < even_heals
    assert rare_cut > even_cut


def test_durable_log_keeps_nothing_in_memory_and_reads_back_what_it_wrote(tmp_path: Path) -> None:
    log = DurableLog(tmp_path / "log")
    for i in range(100):
        log.append({"i": i})
    log.sync()
    log.append({"i": 100})
    assert not hasattr(log, "_records")  # a long run holds the file's length, not its records
    assert log.records() == [{"i": i} for i in range(101)]
    assert log.synced_records() == [{"i": i} for i in range(100)] and log.unsynced == 1
    log.discard_unsynced()  # closes it: what it held stays readable
    assert log.records() == log.synced_records() == [{"i": i} for i in range(100)]


def test_durable_log_without_fsync_never_calls_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    unsafe = DurableLog(tmp_path / "unsafe", fsync=False)
    unsafe.append({"a": 1})
    unsafe.sync()
    assert calls == [] and unsafe.unsynced == 0  # synced as far as this process can tell
    safe = DurableLog(tmp_path / "safe")
    safe.append({"a": 1})
    safe.sync()
    assert len(calls) == 1
