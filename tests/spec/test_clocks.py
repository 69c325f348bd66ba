"""Logical clocks (spec/clocks.py): the three clocks' rules on hand-made inputs, the
invariants at the default size and beyond it, and each variant's counterexample."""

from __future__ import annotations

from distcheck.checks.search.explore import explore
from distcheck.spec.clocks import Clocks, ClocksAction, Config, Hlc, Local, Receive, Send, Tick
from tests.spec.steps import broken, replay


def spec(variant: str | None = None, **params: int) -> Clocks:
    return Clocks(Config(variant=variant, **params))


# ------------------------------------------------------------------ the rules


def test_hlc_follows_physical_time_and_counts_within_one_l() -> None:
    s = spec()
    assert s.hlc(Hlc(0, 0), 5, None) == Hlc(5, 0)  # a local event reads the clock
    assert s.hlc(Hlc(5, 0), 5, None) == Hlc(5, 1)  # the clock has not moved: count
    assert s.hlc(Hlc(5, 1), 3, None) == Hlc(5, 2)  # the clock jumped back: l stays
    assert s.hlc(Hlc(5, 2), 4, Hlc(7, 3)) == Hlc(7, 4)  # a message from ahead
    assert s.hlc(Hlc(7, 2), 4, Hlc(7, 3)) == Hlc(7, 4)  # the same l on both sides
    assert s.hlc(Hlc(5, 2), 9, Hlc(7, 3)) == Hlc(9, 0)  # the clock is ahead of both


def test_lamport_and_vector_merge_on_receipt() -> None:
    s = spec(processes=3)
    assert s.lamport(2, 5) == 6 and s.lamport(7, 5) == 8 and s.lamport(3, None) == 4
    assert s.vector("p2", (1, 0, 2), (0, 3, 1)) == (1, 4, 2)
    assert s.vector("p1", (1, 0, 2), None) == (2, 0, 2)


# ------------------------------------------------------------------ exploration


def test_the_clocks_keep_their_promises_at_the_default_size() -> None:
    result = explore(spec())
    assert result.verdict == "ok"
    assert (result.stats.distinct_states, result.stats.depth) == (5186, 6)
    assert set(result.reached) == {"ConcurrentEvents", "LamportOrdersConcurrent", "HlcAheadOfPhysical"}


def test_three_processes_and_a_wider_skew() -> None:
    assert explore(spec(processes=3, events=1, skew=2)).verdict == "ok"


def test_a_clock_that_jumps_back_leaves_hlc_ahead_of_it_within_the_skew() -> None:
    """p1 reads 3 and then, after an NTP step back, 2: Lamport and HLC go on
    forward, and HLC's l stays at 3, one (the skew) ahead of the clock."""
    s = spec()
    state = replay(s, [Tick(), Local("p1", 3), Local("p1", 2)])
    first, second = state.log["p1"]
    assert (first.stamps.hlc, second.stamps.hlc) == (Hlc(3, 0), Hlc(3, 1))
    assert second.stamps.hlc.l - second.pt == 1 == s.config.skew
    assert second.stamps.lamport == first.stamps.lamport + 1
    assert broken(s, state) == []


# ------------------------------------------------------------------ variants


def test_a_receipt_that_skips_the_lamport_max_breaks_the_clock_condition() -> None:
    s = spec("lamport_skips_max")
    state = replay(s, [Local("p1", 1), Send("p1", "p2", 1)])
    (message,) = state.msgs
    after = replay(s, [Local("p1", 1), Send("p1", "p2", 1), Receive("p2", message, 1)])
    assert after.log["p2"][0].stamps.lamport == 1 < message.stamps.lamport
    assert broken(s, after) == ["ClockCondition"]
    reference = spec()
    assert broken(reference, replay(reference, [Local("p1", 1), Send("p1", "p2", 1), Receive("p2", message, 1)])) == []


def test_a_vector_that_skips_the_merge_misses_causality() -> None:
    s = spec("vector_skips_merge")
    sent = replay(s, [Send("p1", "p2", 1)])
    (message,) = sent.msgs
    assert broken(s, replay(s, [Send("p1", "p2", 1), Receive("p2", message, 1)])) == ["VectorsAreCausality"]


def test_hlc_from_the_wall_clock_alone_orders_a_receipt_before_its_send() -> None:
    """A wall-clock timestamp: p1 sends at 2, p2's clock reads 1 (within the skew)."""
    s = spec("hlc_physical_only")
    path: list[ClocksAction] = [Send("p1", "p2", 2)]
    (message,) = replay(s, path).msgs
    assert broken(s, replay(s, [*path, Receive("p2", message, 1)])) == ["ClockCondition"]
