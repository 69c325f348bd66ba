"""The actor layer (``impl.runtime.actor``): messages decoded and shape-checked
before any handler runs, malformed or unexpected ones rejected and recorded while
the node goes on serving, typed timers, and a handler that raises crashing its
node (restartable under the controlled scheduler, restarted by the free runtime)
instead of leaving a zombie."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from distcheck.impl.runtime import (
    Actor,
    Choice,
    ChoiceSource,
    Context,
    Envelope,
    FreeRuntime,
    MessageError,
    Messages,
    RandomChoices,
    Rejected,
    Simulation,
    encode,
    wire,
)
from tests.impl.waiting import wait_for


@attrs.frozen
class Add:
    amount: int


@attrs.frozen
class Scale:
    factor: float
    note: str | None = None


@attrs.frozen
class Span:
    first: int = attrs.field(metadata=wire("from"))
    items: tuple[tuple[int, str], ...]


@attrs.frozen
class Total:
    total: int


@attrs.frozen
class Reset:
    """A timer: zero the total after a while (shows timers come back as records)."""

    reason: str


COUNTER_MESSAGES = Messages(Add, Scale)
UNLUCKY = 13


class Counter(Actor):
    """Keeps a durable running total; answers every Add with the new total.  Adding
    13 raises (a bug); a negative amount is refused by the handler."""

    LOG = "adds"
    messages = COUNTER_MESSAGES

    def __init__(self, name: str = "counter", peers: Sequence[str] | None = None) -> None:
        super().__init__(name, peers)
        self.total = 0
        self.starts = 0
        self.timers_seen: list[Any] = []

    def on_start(self) -> None:
        self.starts += 1
        self.log = self.ctx.storage(self.LOG)
        self.total = sum(int(r["amount"]) for r in self.log.records())

    def on_message(self, src: str, msg: Any) -> None:
        match msg:
            case Add(amount) if amount == UNLUCKY:
                raise ValueError(f"unlucky {amount}")
            case Add(amount) if amount < 0:
                raise Rejected(f"cannot add {amount}")
            case Add(amount):
                self.log.append({"amount": amount})
                self.log.sync()
                self.total += amount
                self.send(src, Total(self.total))
            case Scale():
                self.set_timer(Reset("scaled"), 1.0)

    def on_timer(self, timer: Any) -> None:
        self.timers_seen.append(timer)


# ------------------------------------------------------------------ decoding


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"type": "Add"}, "field 'amount' is missing"),
        ({"type": "Add", "amount": "3"}, "Add.amount must be an integer, got str"),
        ({"type": "Add", "amount": True}, "Add.amount must be an integer, got bool"),
        ({"type": "Add", "amount": 2.5}, "Add.amount must be an integer, got float"),
        ({"type": "Scale", "factor": math.nan}, "Scale.factor must be a finite number"),
        ({"type": "Scale", "factor": math.inf}, "Scale.factor must be a finite number"),
        ({"type": "Scale", "factor": False}, "Scale.factor must be a finite number"),
        ({"type": "Add", "amount": 1, "by": "me"}, "unexpected field(s) by"),
        ({"type": "Subtract", "amount": 1}, "unknown message type 'Subtract'"),
        ({"amount": 1}, "unknown message type None"),
        (["Add", 1], "a message must be a JSON object"),
        ("Add", "a message must be a JSON object"),
    ],
)
def test_a_malformed_message_does_not_decode(payload: object, reason: str) -> None:
    with pytest.raises(MessageError) as caught:
        COUNTER_MESSAGES.decode(payload)
    assert reason in str(caught.value)


def test_a_message_decodes_to_its_record_and_encodes_back() -> None:
    spans = Messages(Span)
    wire_form = {"type": "Span", "from": 3, "items": [[1, "a"], [2, "b"]]}
    decoded = spans.decode(wire_form)
    assert decoded == Span(3, ((1, "a"), (2, "b")))
    assert spans.encode(decoded) == {"type": "Span", "from": 3, "items": ((1, "a"), (2, "b"))}
    assert COUNTER_MESSAGES.decode({"type": "Scale", "factor": 2}) == Scale(2.0)  # an int is a number
    assert COUNTER_MESSAGES.decode({"type": "Scale", "factor": 2, "note": None}) == Scale(2.0)
    assert encode(Add(1)) == {"type": "Add", "amount": 1}
    with pytest.raises(MessageError, match=r"Span.items\[1\]\[0\] must be an integer"):
        spans.decode({"type": "Span", "from": 0, "items": [[1, "a"], ["2", "b"]]})
    with pytest.raises(MessageError, match=r"Span.items\[0\] must be a list of 2 items"):
        spans.decode({"type": "Span", "from": 0, "items": [[1]]})


# -------------------------------------------------------- controlled: rejects


def client_node(script: Sequence[tuple[str, dict[str, Any]]], answers: list[int], wait_after: bool = True) -> Any:
    """A plain node that sends ``script`` (node, message) in order, then one good Add
    and records the totals it hears."""

    def main(ctx: Context) -> None:
        for dst, msg in script:
            ctx.send(dst, msg)
        ctx.send("counter", {"type": "Add", "amount": 2})
        while True:
            item = ctx.receive()
            if isinstance(item, Envelope) and item.msg.get("type") == "Total":
                answers.append(int(item.msg["total"]))

    return main


MALFORMED: list[tuple[dict[str, Any], str]] = [
    ({"type": "Add"}, "field 'amount' is missing"),
    ({"type": "Add", "amount": "2"}, "must be an integer, got str"),
    ({"type": "Add", "amount": True}, "must be an integer, got bool"),
    ({"type": "Scale", "factor": math.nan}, "must be a finite number, got float nan"),
    ({"type": "Scale", "factor": -math.inf}, "must be a finite number, got float -inf"),
    ({"type": "Add", "amount": 1, "extra": 1}, "unexpected field(s) extra"),
    ({"type": "Subtract", "amount": 1}, "unknown message type 'Subtract'"),
    ({"type": "Add", "amount": -1}, "rejected it: cannot add -1"),
]


def test_malformed_and_unexpected_messages_are_rejected_and_the_node_goes_on_serving() -> None:
    counter = Counter(peers=["client"])
    answers: list[int] = []
    script = [("counter", msg) for msg, _ in MALFORMED]
    stranger_sends = [("counter", {"type": "Add", "amount": 100})]
    sim = Simulation(
        {
            "counter": counter.main,
            "client": client_node(script, answers),
            "stranger": client_node(stranger_sends, []),
        },
        RandomChoices(3),
    )
    result = sim.run()
    assert result.status == "ok", result.message
    # Only the client's good Add counted: nothing malformed, refused or from a stranger did.
    assert answers == [2] and counter.total == 2
    notes = list(counter.diagnostics)
    for _, reason in MALFORMED:
        assert sum(reason in n for n in notes) == 1, (reason, notes)
    assert [n for n in notes if "stranger" in n] == [
        "rejected Add from stranger: not a sender this node accepts",
        "rejected Add from stranger: not a sender this node accepts",
    ]
    assert sim.failures == [] and counter.starts == 1
    # The runtime's own log says the same, step by step.
    logged = [n for s in result.schedule for n in s.notes]
    assert any("counter: rejected a message from client: Add: field 'amount' is missing" in n for n in logged)


def test_diagnostics_are_a_bounded_ring_of_the_newest() -> None:
    counter = Counter()
    script = [("counter", {"type": "Add", "amount": f"n{i}"}) for i in range(100)]
    sim = Simulation({"counter": counter.main, "client": client_node(script, [])}, RandomChoices(0))
    assert sim.run().status == "ok"
    assert len(counter.diagnostics) == counter.diagnostics.maxlen == 64
    assert "got str 'n99'" in counter.diagnostics[-1]


def test_timers_come_back_as_the_records_armed() -> None:
    counter = Counter()
    script = [("counter", {"type": "Scale", "factor": 2})]
    sim = Simulation({"counter": counter.main, "client": client_node(script, [])}, RandomChoices(0))
    assert sim.run().status == "ok"
    assert counter.timers_seen == [Reset("scaled")]


# ------------------------------------------------------ a handler that raises


class Restarter(ChoiceSource):
    """Ordinary steps, first option first, but a node that is down is restarted at once."""

    def choose(self, options: Sequence[Choice]) -> int:
        restart = [i for i, o in enumerate(options) if o.kind == "restart"]
        return restart[0] if restart else next(i for i, o in enumerate(options) if not o.fault)


def retrying_client(amounts: Sequence[int], answers: list[int], retry: float = 5.0) -> Any:
    """Sends each Add, re-sending every ``retry`` seconds until a Total answers it;
    gives up on an amount after 3 tries (the unlucky one is never answered)."""

    def main(ctx: Context) -> None:
        for amount in amounts:
            for _ in range(3):
                ctx.send("counter", {"type": "Add", "amount": amount})
                item = ctx.receive(timeout=retry)
                if isinstance(item, Envelope) and item.msg.get("type") == "Total":
                    answers.append(int(item.msg["total"]))
                    break

    return main


def test_a_handler_that_raises_crashes_its_node_and_the_scheduler_restarts_it() -> None:
    counter = Counter()
    answers: list[int] = []
    sim = Simulation({"counter": counter.main, "client": retrying_client([1, UNLUCKY, 2], answers)}, Restarter())
    result = sim.run()
    assert result.status == "ok", result.message
    # Every unlucky copy crashed the node; each time it came back with its total
    # rebuilt from storage and went on serving: 1, then 1 + 2.
    assert answers == [1, 3]
    assert sim.failures == ["counter: on_message(Add from client) raised ValueError: unlucky 13"] * 3
    assert counter.starts == 4
    assert list(counter.diagnostics).count("crashed: on_message(Add from client) raised ValueError: unlucky 13") == 3
    steps = [s.choice.text for s in result.schedule]
    assert steps.count("restart counter") == 3
    crashed_at = next(i for i, s in enumerate(result.schedule) if any("counter crashed" in n for n in s.notes))
    assert result.schedule[crashed_at + 1].choice.text == "restart counter"
    assert sim.crashes == 0  # not a fault: the fault budget is untouched


def test_a_crashed_node_stays_down_until_restarted() -> None:
    """Under the controlled scheduler the crash is real: a message sent to the node
    while it is down is lost, as for an injected crash."""
    counter = Counter()
    sim = Simulation({"counter": counter.main, "client": retrying_client([UNLUCKY], [])}, RandomChoices(0))
    sim.start()
    try:
        while sim.result is None and not sim.failures:
            options = sim.options()
            sim.take(options, next(i for i, o in enumerate(options) if o.kind != "restart"))
        assert sim.failures and not sim.is_up("counter")
        assert any(o.text == "restart counter" for o in sim.options())
    finally:
        sim.close()


def test_in_free_mode_a_handler_that_raises_crashes_its_node_and_the_runtime_restarts_it(tmp_path: Path) -> None:
    counter = Counter()
    answers: list[int] = []
    runtime = FreeRuntime(
        {"counter": counter.main, "client": retrying_client([1, UNLUCKY, 2], answers, retry=1.0)},
        tmp_path,
        max_restarts=5,
        restart_delay=0.01,
    )
    with runtime:
        wait_for(lambda: len(answers) == 2, "the client's two good adds to be answered")
    assert answers == [1, 3]
    assert runtime.errors == []
    # A copy that reaches the node while it is down is lost with its mailbox, so
    # the three unlucky copies crash it one to three times.
    assert 1 <= len(runtime.crashes) <= 3
    assert set(runtime.crashes) == {"counter: on_message(Add from client) raised ValueError: unlucky 13"}
    assert counter.starts == 1 + len(runtime.crashes)
    assert sum("counter restarted" in d for d in runtime.diagnostics) == len(runtime.crashes)
    assert runtime.alive() == []


def test_in_free_mode_a_node_that_keeps_crashing_stays_down_and_says_so(tmp_path: Path) -> None:
    counter = Counter()
    runtime = FreeRuntime(
        {"counter": counter.main, "client": retrying_client([UNLUCKY], [], retry=0.5)},
        tmp_path,
        max_restarts=1,
        restart_delay=0.01,
    )
    with runtime:
        wait_for(lambda: bool(runtime.errors), "the runtime to give up on the counter")
        assert runtime.errors == ["counter crashed 2 times; it stays down"]
    assert counter.starts == 2 and len(runtime.crashes) == 2


def test_in_free_mode_malformed_messages_over_tcp_are_rejected_and_the_node_serves(tmp_path: Path) -> None:
    counter = Counter(peers=["client"])
    answers: list[int] = []
    script = [("counter", msg) for msg, _ in MALFORMED]
    runtime = FreeRuntime({"counter": counter.main, "client": client_node(script, answers)}, tmp_path)
    with runtime:
        wait_for(lambda: answers == [2], "the good Add to be answered")
        wait_for(lambda: len(counter.diagnostics) == len(MALFORMED), "every rejection to be noted")
    notes = list(counter.diagnostics)
    for _, reason in MALFORMED:
        assert sum(reason in n for n in notes) == 1, (reason, notes)
    assert runtime.errors == [] and runtime.crashes == []


@attrs.frozen
class Deposit:
    amount: int = attrs.field(validator=attrs.validators.ge(0))


def test_a_message_class_s_own_validators_reject_as_a_malformed_message() -> None:
    with pytest.raises(MessageError, match="Deposit: 'amount' must be >= 0"):
        Messages(Deposit).decode({"type": "Deposit", "amount": -5})


# ------------------------------------------------------------------ batches


class Ledger(Counter):
    """The Counter as a batched actor: appends per message, one sync per batch."""

    batched = True

    def on_start(self) -> None:
        super().on_start()
        self.batches: list[int] = []  # messages per batch that appended something
        self.appended = 0

    def on_message(self, src: str, msg: Any) -> None:
        match msg:
            case Add(amount):
                self.log.append({"amount": amount})
                self.appended += 1
                self.total += amount
                self.send(src, Total(self.total))  # held until after on_batch_end

    def on_batch_end(self) -> None:
        if self.appended:
            self.log.sync()
            self.batches.append(self.appended)
            self.appended = 0


def run_ledger(seed: int) -> tuple[Ledger, list[tuple[int, int]]]:
    """A client sends 8 Adds at once, then reads the answers; returns the ledger and,
    per answer, (the total it says, the total durable when it arrived)."""
    ledger = Ledger("ledger")
    seen: list[tuple[int, int]] = []

    def client(ctx: Context) -> None:
        for amount in range(1, 9):
            ctx.send("ledger", encode(Add(amount)))
        while len(seen) < 8:
            item = ctx.receive()
            if isinstance(item, Envelope):
                durable = sum(int(r["amount"]) for r in sim.durable_records("ledger", Ledger.LOG))
                seen.append((int(item.msg["total"]), durable))

    sim = Simulation({"ledger": ledger.main, "client": client}, RandomChoices(seed, fault_rate=0.0))
    assert sim.run().status == "ok"
    return ledger, seen


@pytest.mark.parametrize("seed", range(6))
def test_a_batched_actor_syncs_once_per_batch_before_any_reply_leaves(seed: int) -> None:
    ledger, seen = run_ledger(seed)
    assert [total for total, _ in seen] == [sum(range(1, n + 1)) for n in range(1, 9)]
    # No answer arrived before the sync that made its total durable.
    assert all(durable >= total for total, durable in seen), seen
    assert sum(ledger.batches) == 8


def test_a_batch_gathers_the_messages_waiting() -> None:
    sizes = [size for seed in range(6) for size in run_ledger(seed)[0].batches]
    assert max(sizes) > 1 and len(sizes) < 6 * 8, sizes
