"""``checks.linearizability``: histories a sequential execution could produce are
accepted with a witness that replays and respects real time; stale reads, double
cas successes and lost updates are refused with a message naming the key and the
operations; operations that never returned may or may not take effect; malformed
input and oversized searches fail loudly instead of answering wrongly."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from distcheck.checks.histories import parts
from distcheck.checks.histories.formats import read_history
from distcheck.checks.histories.linearizability import (
    HistoryTooLarge,
    KeyValue,
    Linearizability,
    Model,
    Operation,
    PartSearch,
    SearchTimedOut,
    check_history,
    check_part,
    same_result,
)
from distcheck.checks.histories.models import load_model
from distcheck.checks.histories.parts import check_file, check_parts


def put(client: str, call: int, ret: int | None, key: str, value: Any) -> Operation:
    return Operation(client, call, ret, {"op": "put", "key": key, "value": value}, "ok")


def get(client: str, call: int, ret: int | None, key: str, result: Any) -> Operation:
    return Operation(client, call, ret, {"op": "get", "key": key}, result)


def cas(client: str, call: int, ret: int | None, key: str, expected: Any, value: Any, result: bool) -> Operation:
    return Operation(client, call, ret, {"op": "cas", "key": key, "expected": expected, "value": value}, result)


def assert_witness(history: Sequence[Operation], outcome: Linearizability) -> None:
    """The witness is a linearization: every completed operation exactly once, an
    operation that never returned at most once, the model gives each completed one
    its recorded result, and no operation precedes one that returned before it was
    invoked."""
    assert outcome.ok, outcome.message
    assert outcome.order is not None
    order = outcome.order
    ids = [id(o) for o in order]
    assert len(ids) == len(set(ids))
    assert set(ids) <= {id(o) for o in history}
    assert {id(o) for o in history if o.ret is not None} <= set(ids)
    model = KeyValue()
    states: dict[Any, Any] = {}
    for operation in order:
        key = operation.op["key"]
        states[key], result = model.step(states.get(key, model.init()), operation.op)
        if operation.ret is not None:
            assert same_result(result, operation.result), operation
    for i, earlier in enumerate(order):
        for later in order[i + 1 :]:
            assert later.ret is None or later.ret >= earlier.call, (earlier, later)


# --- sequential and concurrent histories ----------------------------------------------------------


def sequential_history() -> list[Operation]:
    return [
        get("c1", 0, 1, "x", None),
        put("c1", 2, 3, "x", 1),
        get("c2", 4, 5, "x", 1),
        cas("c2", 6, 7, "x", 1, 2, True),
        cas("c1", 8, 9, "x", 1, 3, False),
        get("c1", 10, 11, "x", 2),
    ]


def test_sequential_history_is_accepted_in_its_own_order() -> None:
    history = sequential_history()
    outcome = check_history(history)
    assert_witness(history, outcome)
    assert outcome.order == tuple(history)


def test_sequential_history_with_a_wrong_final_read_is_refused() -> None:
    history = [*sequential_history()[:-1], get("c1", 10, 11, "x", 3)]
    outcome = check_history(history)
    assert not outcome.ok
    assert outcome.order is None
    assert "c1 get(x) → 3 [call 10, ret 11]" in outcome.message
    assert "the model answers 2" in outcome.message


@pytest.mark.parametrize("seen", [1, 2])
def test_concurrent_puts_can_be_ordered_either_way(seen: int) -> None:
    history = [put("c1", 0, 3, "x", 1), put("c2", 1, 4, "x", 2), get("c3", 5, 6, "x", seen)]
    outcome = check_history(history)
    assert_witness(history, outcome)
    assert outcome.order is not None
    assert outcome.order[1].op["value"] == seen


def test_a_read_of_a_value_neither_concurrent_put_wrote_is_refused() -> None:
    history = [put("c1", 0, 3, "x", 1), put("c2", 1, 4, "x", 2), get("c3", 5, 6, "x", 3)]
    assert not check_history(history).ok


def test_a_read_concurrent_with_a_put_may_see_the_old_or_the_new_value() -> None:
    for seen in (1, 2):
        history = [put("c1", 0, 1, "x", 1), put("c1", 2, 5, "x", 2), get("c2", 3, 4, "x", seen)]
        assert_witness(history, check_history(history))


def test_stale_read_is_refused_naming_the_key_and_the_read() -> None:
    history = [
        put("c1", 0, 1, "x", 1),
        put("c2", 2, 3, "x", 2),
        get("c3", 4, 5, "x", 1),
    ]
    outcome = check_history(history)
    assert not outcome.ok
    assert "key x" in outcome.message
    assert "c3 get(x) → 1 [call 4, ret 5]" in outcome.message
    assert "\n" not in outcome.message


def test_results_must_match_exactly_so_true_is_not_one() -> None:
    history = [put("c1", 0, 1, "x", 1), get("c2", 2, 3, "x", True)]
    assert not check_history(history).ok
    assert check_history([put("c1", 0, 1, "x", 1), get("c2", 2, 3, "x", 1)]).ok


# --- cas and lost updates -------------------------------------------------------------------------


def test_cas_succeeding_twice_on_the_same_expected_value_is_refused() -> None:
    history = [
        put("c0", 0, 1, "x", 0),
        cas("c1", 2, 5, "x", 0, 1, True),
        cas("c2", 3, 6, "x", 0, 2, True),
    ]
    outcome = check_history(history)
    assert not outcome.ok
    assert "key x" in outcome.message
    assert "cas(x, 0, 2) → True" in outcome.message or "cas(x, 0, 1) → True" in outcome.message


def test_cas_race_with_one_winner_is_accepted() -> None:
    history = [
        put("c0", 0, 1, "x", 0),
        cas("c1", 2, 5, "x", 0, 1, True),
        cas("c2", 3, 6, "x", 0, 2, False),
        get("c3", 7, 8, "x", 1),
    ]
    assert_witness(history, check_history(history))


def counter_increments(second_cas_wins: bool, final: int) -> list[Operation]:
    """Two clients increment a counter by read-then-cas; both read 0."""
    return [
        put("c0", 0, 1, "n", 0),
        get("c1", 2, 3, "n", 0),
        get("c2", 4, 5, "n", 0),
        cas("c1", 6, 7, "n", 0, 1, True),
        cas("c2", 8, 9, "n", 0, 1, second_cas_wins),
        get("c3", 10, 11, "n", final),
    ]


def test_lost_update_through_cas_is_refused() -> None:
    outcome = check_history(counter_increments(second_cas_wins=True, final=1))
    assert not outcome.ok
    assert "key n" in outcome.message
    assert "c2 cas(n, 0, 1) → True [call 8, ret 9]" in outcome.message


def test_increment_whose_cas_failed_is_accepted() -> None:
    history = counter_increments(second_cas_wins=False, final=1)
    assert_witness(history, check_history(history))


def test_lost_update_seen_as_two_reads_disagreeing_on_the_last_write_is_refused() -> None:
    history = [
        put("c1", 0, 3, "x", 1),
        put("c2", 1, 4, "x", 2),
        get("c3", 5, 6, "x", 1),
        get("c4", 7, 8, "x", 2),
    ]
    outcome = check_history(history)
    assert not outcome.ok
    assert "key x" in outcome.message


# --- operations that never returned ---------------------------------------------------------------


@pytest.mark.parametrize("took_effect", [True, False])
def test_an_operation_that_never_returned_may_or_may_not_take_effect(took_effect: bool) -> None:
    pending = put("c2", 2, None, "x", 2)
    history = [
        put("c1", 0, 1, "x", 1),
        pending,
        get("c3", 4, 5, "x", 2 if took_effect else 1),
        get("c3", 6, 7, "x", 2 if took_effect else 1),
    ]
    outcome = check_history(history)
    assert_witness(history, outcome)
    assert outcome.order is not None
    assert (pending in outcome.order) is took_effect


def test_an_operation_that_never_returned_cannot_take_effect_before_its_call() -> None:
    history = [put("c1", 0, 1, "x", 1), get("c3", 2, 3, "x", 2), put("c2", 5, None, "x", 2)]
    outcome = check_history(history)
    assert not outcome.ok
    assert "c3 get(x) → 2 [call 2, ret 3]" in outcome.message


def test_an_operation_that_never_returned_takes_effect_at_most_once() -> None:
    history = [
        put("c1", 0, 1, "x", 1),
        put("c2", 2, None, "x", 2),
        get("c3", 3, 4, "x", 2),
        put("c1", 5, 6, "x", 1),
        get("c3", 7, 8, "x", 2),
    ]
    assert not check_history(history).ok


def test_the_result_of_an_operation_that_never_returned_is_ignored() -> None:
    history = [put("c1", 0, 1, "x", 1), cas("c2", 2, None, "x", 1, 2, False), get("c3", 3, 4, "x", 2)]
    assert_witness(history, check_history(history))


# --- partitioning ---------------------------------------------------------------------------------


def many_keys(keys: int, stale_key: int | None) -> list[Operation]:
    history: list[Operation] = []
    for k in range(keys):
        base = 10 * k
        key = f"k{k}"
        history.append(put(f"c{k}", base, base + 4, key, k))
        history.append(put(f"d{k}", base + 1, base + 5, key, -k))
        history.append(get(f"e{k}", base + 6, base + 7, key, k if k != stale_key else 1000))
    return history


def test_many_independent_keys_are_accepted_with_a_witness() -> None:
    history = many_keys(60, None)
    outcome = check_history(history)
    assert_witness(history, outcome)
    assert "60 independent sub-histories" in outcome.message


def test_a_violation_on_one_key_among_many_is_found_and_named() -> None:
    outcome = check_history(many_keys(60, 37))
    assert not outcome.ok
    assert "key k37" in outcome.message
    assert "e37 get(k37) → 1000 [call 376, ret 377]" in outcome.message
    assert "k36" not in outcome.message


def test_witness_respects_real_time_across_keys() -> None:
    history = [
        put("c1", 0, 10, "x", 1),
        put("c2", 1, 2, "y", 1),
        get("c3", 3, 4, "y", 1),
        get("c4", 5, 6, "x", 1),
        put("c5", 11, 12, "y", 2),
    ]
    outcome = check_history(history)
    assert_witness(history, outcome)


# --- bad input and oversized searches -------------------------------------------------------------


def test_return_before_call_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="returns at 2, before its call at 5") as info:
        check_history([put("c1", 5, 2, "x", 1)])
    assert "\n" not in str(info.value)


def test_unknown_operation_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown operation 'incr'") as info:
        check_history([Operation("c1", 0, 1, {"op": "incr", "key": "x"}, 1)])
    assert "\n" not in str(info.value)


def test_operation_missing_a_field_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="lacks expected"):
        check_history([Operation("c1", 0, 1, {"op": "cas", "key": "x", "value": 1}, True)])


def op_(client: Any, call: Any, ret: Any, op: Any, result: Any = "ok") -> Operation:
    """An operation with fields of any type, as a caller's bug would build it."""
    return Operation(client, call, ret, op, result)


PUT = {"op": "put", "key": "x", "value": 1}

MALFORMED: list[tuple[str, list[Any], str]] = [
    ("not-an-operation", [{"client": "c1", "call": 0, "ret": 1, "op": PUT}], "history entry 0 is dict"),
    ("second-entry-not-an-operation", [put("c1", 0, 1, "x", 1), None], "history entry 1 is NoneType None"),
    ("client-not-a-string", [op_(7, 0, 1, PUT)], "history entry 0 has client int 7"),
    ("op-not-a-mapping", [op_("c1", 0, 1, "put x 1")], "c1's operation at call 0 is str 'put x 1'"),
    ("op-a-list", [op_("c1", 0, 1, ["put", "x", 1])], "c1's operation at call 0 is list"),
    ("call-not-an-integer", [op_("c1", "0", 1, PUT)], "has call '0' and ret 1; both must be integer"),
    ("call-a-bool", [op_("c1", True, 2, PUT)], "has call True and ret 2; both must be integer"),
    ("ret-a-float", [op_("c1", 0, 1.5, PUT)], "has call 0 and ret 1.5; both must be integer"),
    ("call-missing", [op_("c1", None, 1, PUT)], "has call None and ret 1; both must be integer"),
    ("return-before-call", [put("c1", 5, 2, "x", 1)], "returns at 2, before its call at 5"),
    ("call-and-return-at-one-position", [put("c1", 3, 3, "x", 1)], "position 3 holds two events"),
    (
        "two-operations-at-one-position",
        [put("c1", 0, 2, "x", 1), get("c2", 2, 3, "x", 1)],
        "position 2 holds two events, the response of c1 put(x, 1) → ok [call 0, ret 2] and the invocation of",
    ),
    (
        "one-client-overlapping-itself",
        [put("c1", 0, 3, "x", 1), get("c1", 1, 2, "x", None)],
        "c1's operations overlap: c1 put(x, 1) → ok [call 0, ret 3] and c1 get(x) → absent [call 1, ret 2]",
    ),
    (
        "one-client-invoking-again-while-another-call-is-open",
        [put("c1", 0, 2, "x", 1), get("c1", 1, 3, "x", 1)],
        "c1's operations overlap",
    ),
    (
        "one-client-going-on-after-an-operation-that-never-returned",
        [put("c1", 0, None, "x", 1), get("c1", 1, 2, "x", 1)],
        "c1 invoked c1 get(x) → 1 [call 1, ret 2] after c1 put(x, 1) → (no response) [call 0, never returned]",
    ),
    ("unknown-operation", [op_("c1", 0, 1, {"op": "incr", "key": "x"})], "unknown operation 'incr'"),
    ("operation-name-not-a-string", [op_("c1", 0, 1, {"op": 3, "key": "x"})], "unknown operation 3"),
    ("operation-name-missing", [op_("c1", 0, 1, {"key": "x", "value": 1})], "unknown operation None"),
    ("put-without-a-value", [op_("c1", 0, 1, {"op": "put", "key": "x"})], "c1's put at call 0 lacks value"),
    ("get-without-a-key", [op_("c1", 0, 1, {"op": "get"}, None)], "c1's get at call 0 lacks key"),
    (
        "cas-without-expected-or-value",
        [op_("c1", 0, 1, {"op": "cas", "key": "x"}, True)],
        "c1's cas at call 0 lacks expected, value",
    ),
    (
        "get-carrying-a-value",
        [op_("c1", 0, 1, {"op": "get", "key": "x", "value": 1}, None)],
        "c1's get at call 0 has value, which get does not take (it takes key)",
    ),
    (
        "misspelt-field",
        [op_("c1", 0, 1, {"op": "put", "key": "x", "value": 1, "vlaue": 2})],
        "c1's put at call 0 has vlaue, which put does not take",
    ),
    ("unhashable-key", [op_("c1", 0, 1, {"op": "put", "key": ["x"], "value": 1})], "unhashable key ['x']"),
]


@pytest.mark.parametrize(("history", "expected"), [(h, e) for _, h, e in MALFORMED], ids=[i for i, _, _ in MALFORMED])
def test_every_malformed_history_is_refused_with_one_readable_line(history: list[Any], expected: str) -> None:
    with pytest.raises(ValueError) as info:
        check_history(history)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message and len(message) < 400


def test_the_nearest_well_formed_histories_are_accepted() -> None:
    """What the refusals above must not catch: a client's next call right after its
    last response, and a client whose last operation never returned."""
    back_to_back = [put("c1", 0, 1, "x", 1), get("c1", 2, 3, "x", 1), cas("c1", 4, 5, "x", 1, 2, True)]
    assert check_history(back_to_back).ok
    last_open = [put("c1", 0, 1, "x", 1), put("c1", 2, None, "x", 2), get("c2", 3, 4, "x", 2)]
    assert check_history(last_open).ok
    interleaved = [put("c1", 0, 3, "x", 1), get("c2", 1, 2, "x", None), get("c2", 4, 5, "x", 1)]
    assert check_history(interleaved).ok


def test_search_beyond_max_steps_raises_instead_of_answering() -> None:
    # Many concurrent writes and a read of a value none wrote: refusing it needs
    # the search to try every subset of writes.
    history = [put(f"c{i}", i, 100 + i, "x", i) for i in range(14)]
    history.append(get("r", 50, 200, "x", -1))
    with pytest.raises(HistoryTooLarge, match="exceeded 500 steps on key x"):
        check_history(history, max_steps=500)
    assert not check_history(history).ok


# --- property: what a sequential execution produced is accepted ------------------------------------


@attrs.frozen
class Generated:
    history: list[Operation]
    completed_gets: list[int]


@st.composite
def executed_histories(draw: st.DrawFn, force_get: bool = False, max_ops: int = 12) -> Generated:
    """Run random operations one after another on the model (operation i takes
    effect at time 100·i), then give each an interval around that point; some never
    return, and of those some took effect and some did not."""
    n = draw(st.integers(1, max_ops))
    forced = draw(st.integers(0, n - 1)) if force_get else -1
    model = KeyValue()
    states: dict[str, Any] = {}
    drafts: list[tuple[int, int | None, dict[str, Any], Any]] = []
    for i in range(n):
        key = draw(st.sampled_from(["x", "y"]))
        kind = "get" if i == forced else draw(st.sampled_from(["put", "get", "cas"]))
        value = draw(st.integers(1, 3))
        op: dict[str, Any] = {"op": kind, "key": key}
        if kind != "get":
            op["value"] = value
        if kind == "cas":
            op["expected"] = draw(st.sampled_from([None, 1, 2, 3]))
        returned = i == forced or draw(st.integers(0, 5)) > 0
        took_effect = returned or draw(st.booleans())
        result: Any = None
        if took_effect:
            states[key], result = model.step(states.get(key), op)
        point = 100 * i
        call = point - draw(st.integers(1, 250))
        ret = point + draw(st.integers(1, 250)) if returned else None
        drafts.append((call, ret, op, result))
    # Positions in one global order of events: rank the times.  A response and an
    # invocation at the same time belong to operations already in that order.
    events = sorted(
        [(call, 1, i) for i, (call, _, _, _) in enumerate(drafts)]
        + [(ret, 0, i) for i, (_, ret, _, _) in enumerate(drafts) if ret is not None]
    )
    calls: dict[int, int] = {}
    rets: dict[int, int] = {}
    for position, (_, is_call, i) in enumerate(events):
        (calls if is_call else rets)[i] = position
    history = [
        Operation(f"c{i}", calls[i], rets.get(i), op, result if ret is not None else None)
        for i, (_, ret, op, result) in enumerate(drafts)
    ]
    gets = [i for i, o in enumerate(history) if o.op["op"] == "get" and o.ret is not None]
    return Generated(history, gets)


@given(executed_histories())
def test_histories_of_a_sequential_execution_are_accepted(generated: Generated) -> None:
    assert_witness(generated.history, check_history(generated.history))


@given(executed_histories(force_get=True), st.data())
def test_a_read_of_a_value_never_written_is_refused(generated: Generated, data: st.DataObject) -> None:
    assert generated.completed_gets
    index = data.draw(st.sampled_from(generated.completed_gets))
    history = list(generated.history)
    history[index] = attrs.evolve(history[index], result=99)
    outcome = check_history(history)
    assert not outcome.ok
    assert f"key {history[index].op['key']}" in outcome.message
    assert check_history(generated.history).ok


def linearizable_by_brute_force(history: Sequence[Operation]) -> bool:
    """Every order of the completed operations and of each subset of the ones that
    never returned, checked directly against the definition."""
    completed = [o for o in history if o.ret is not None]
    pending = [o for o in history if o.ret is None]
    model = KeyValue()
    for size in range(len(pending) + 1):
        for chosen in itertools.combinations(pending, size):
            for order in itertools.permutations([*completed, *chosen]):
                if any(
                    later.ret is not None and later.ret < earlier.call
                    for i, earlier in enumerate(order)
                    for later in order[i + 1 :]
                ):
                    continue
                states: dict[Any, Any] = {}
                for operation in order:
                    key = operation.op["key"]
                    states[key], result = model.step(states.get(key), operation.op)
                    if operation.ret is not None and not same_result(result, operation.result):
                        break
                else:
                    return True
    return False


@given(executed_histories(max_ops=6), st.data())
def test_agrees_with_brute_force_on_small_histories_with_perturbed_results(
    generated: Generated, data: st.DataObject
) -> None:
    history = [
        attrs.evolve(o, result=data.draw(st.sampled_from([None, 1, 2, 3])))
        if o.op["op"] == "get" and data.draw(st.booleans())
        else attrs.evolve(o, result=not o.result)
        if o.op["op"] == "cas" and o.ret is not None and data.draw(st.booleans())
        else o
        for o in generated.history
    ]
    outcome = check_history(history)
    event("linearizable" if outcome.ok else "not linearizable")
    assert outcome.ok == linearizable_by_brute_force(history), outcome.message
    if outcome.ok:
        assert_witness(history, outcome)


# --- steps, deadline, several processes ----------------------------------------------------------


def test_the_steps_count_the_pairs_the_search_reached() -> None:
    # Sequential: the start, then each operation in turn; nothing else is tried.
    assert check_history(sequential_history()).steps == 1 + len(sequential_history())
    history = [put(f"c{i}", i, 100 + i, "x", i) for i in range(14)]
    history.append(get("r", 50, 200, "x", -1))
    refused = check_history(history)
    assert not refused.ok and refused.steps > 2**14  # every subset of the puts, in each state


def test_a_search_past_its_deadline_raises_instead_of_answering() -> None:
    history = [put(f"c{i}", i, 100 + i, "x", i) for i in range(14)]
    history.append(get("r", 50, 200, "x", -1))
    with pytest.raises(SearchTimedOut) as raised:
        check_history(history, deadline=time.monotonic() - 1)
    assert raised.value.steps > 0


def porcupine(name: str) -> tuple[Model[Any], tuple[Operation, ...]]:
    model = load_model("kv", "")
    path = Path(__file__).resolve().parents[1] / "data" / "porcupine-kv" / f"{name}.txt"
    return model, read_history(path, model).operations


@pytest.mark.parametrize("name", ["c10-ok", "c10-bad"])
def test_parts_on_two_processes_are_the_parts_on_one(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model, ops = porcupine(name)
    alone = check_parts(model, ops, workers=1)
    monkeypatch.setattr(parts, "PARALLEL_MIN_OPERATIONS", 0)
    shared = check_parts(model, ops, workers=2)
    assert (alone.workers, shared.workers) == (1, 2)
    assert (shared.verdict, shared.message, shared.steps) == (alone.verdict, alone.message, alone.steps)
    # The same operations, not copies: a worker answers with positions.
    assert [id(o) for o in shared.order] == [id(o) for o in alone.order]
    if alone.failure is not None:
        assert shared.failure is not None
        assert [id(o) for o in shared.failure.sub_history] == [id(o) for o in alone.failure.sub_history]
        assert [id(o) for o in shared.failure.prefix] == [id(o) for o in alone.failure.prefix]
        assert [(id(s.operation), s.answer) for s in shared.failure.stuck] == [
            (id(s.operation), s.answer) for s in alone.failure.stuck
        ]


def test_check_file_reads_and_checks_as_the_command_does() -> None:
    path = Path(__file__).resolve().parents[1] / "data" / "porcupine-kv" / "c10-bad.txt"
    history, outcome = check_file(path, "kv", initial="", workers=1)
    assert len(history.operations) == 405 and outcome.verdict == "violated"
    assert outcome.failure is not None and "key 7" in outcome.message
    assert [(s.operation.client, s.operation.call) for s in outcome.failure.stuck] == [("p8", 154)]


@pytest.mark.parametrize("name", ["c10-ok", "c10-bad"])
def test_a_search_out_of_budget_goes_on_from_where_it_stopped(name: str) -> None:
    model, ops = porcupine(name)
    part = max(model.partition(ops), key=lambda p: check_part(p, model).steps)
    whole = check_part(part, model)
    assert whole.steps > 20
    search = PartSearch(part, model)
    with pytest.raises(HistoryTooLarge) as raised:
        search.check(max_steps=20)
    assert raised.value.steps == 20
    again = search.check()
    assert (again.ok, again.message, again.steps, again.order, again.prefix) == (
        whole.ok,
        whole.message,
        whole.steps,
        whole.order,
        whole.prefix,
    )


def test_a_search_that_timed_out_stays_timed_out() -> None:
    history = [put(f"c{i}", i, 100 + i, "x", i) for i in range(14)]
    history.append(get("r", 50, 200, "x", -1))
    search = PartSearch(history, KeyValue())
    with pytest.raises(SearchTimedOut):
        search.check(deadline=time.monotonic() - 1)
    with pytest.raises(SearchTimedOut):
        search.check()
