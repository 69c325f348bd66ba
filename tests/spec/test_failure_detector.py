"""Heartbeat failure detection (spec/failure_detector.py): phi's integer test against
phi itself, the derived bounds, exhaustive checks of both detectors, the guards on
hand-reached states, the accuracy bound broken by parameters, and each variant's
counterexample pinned as an action list."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest

from distcheck.checks.search.explore import explore
from distcheck.spec.failure_detector import (
    Beat,
    Config,
    Crash,
    DetectorAction,
    FailureDetector,
    Heartbeat,
    Lose,
    Receive,
    Suspect,
    Tick,
    Trust,
    phi_deadline,
    phi_suspects,
)
from tests.spec.steps import broken, replay


def spec(variant: str | None = None, **params: object) -> FailureDetector:
    params = {**(FailureDetector.variants()[variant].params if variant else {}), **params}
    return FailureDetector(Config(variant=variant, **params))  # type: ignore[arg-type]


def enabled(s: FailureDetector, actions: Sequence[object]) -> list[str]:
    return [str(a) for a in s.actions(replay(s, actions))]


def hb(sender: str, to: str, sent: int) -> Heartbeat:
    return Heartbeat(sender, to, sent)


TO_2: list[DetectorAction] = [Tick(), Tick()]
#: Both processes send their first heartbeats, at 2.
FIRST_BEATS: list[DetectorAction] = [*TO_2, Beat("p1"), Beat("p2")]
#: p2's first heartbeat to p1 is lost; its second comes a tick late, after p1 suspected it.
FALSE_SUSPICION: list[DetectorAction] = [
    *FIRST_BEATS,
    Lose(hb("p2", "p1", 2)),
    Receive("p2", hb("p1", "p2", 2)),
    Tick(),
    Tick(),
    Beat("p1"),
    Beat("p2"),
    Receive("p2", hb("p1", "p2", 4)),
    Suspect("p1", "p2"),  # four ticks without a heartbeat from p2
    Tick(),
    Receive("p1", hb("p2", "p1", 4)),
    Trust("p1", "p2"),
]
#: p2 crashes at once; p1 suspects it at 4, four ticks after it joined.
CRASH_SUSPECTED: list[DetectorAction] = [
    Crash("p2"),
    *TO_2,
    Beat("p1"),
    Tick(),
    Tick(),
    Beat("p1"),
    Suspect("p1", "p2"),
]


# ------------------------------------------------------------------ phi


def phi(window: Sequence[int], silence: int, min_spread: int) -> float:
    """Hayashibara et al.'s phi under N(μ, σ²), σ at least min_spread: −log10 of the
    chance that a heartbeat comes later than ``silence`` after the last one."""
    mean = sum(window) / len(window)
    sigma = max(math.sqrt(sum((x - mean) ** 2 for x in window) / len(window)), min_spread)
    return -math.log10(0.5 * math.erfc((silence - mean) / (sigma * math.sqrt(2))))


@pytest.mark.parametrize("sigmas", [1, 2, 3])
def test_phi_suspects_exactly_when_phi_passes_its_threshold(sigmas: int) -> None:
    threshold = -math.log10(0.5 * math.erfc(sigmas / math.sqrt(2)))  # 0.80, 1.64, 2.87
    compared = 0
    for window in [(2, 2), (1, 3), (2, 5), (1, 1, 4), (3,), (0, 6)]:
        for silence in range(12):
            for min_spread in (1, 2):
                n, total = len(window), sum(window)
                excess = n * silence - total
                variance = max(n * sum(x * x for x in window) - total * total, (n * min_spread) ** 2)
                if excess > 0 and excess * excess == sigmas * sigmas * variance:
                    continue  # phi equals the threshold: floating point may round either way
                assert phi_suspects(window, silence, sigmas, min_spread) == (
                    phi(window, silence, min_spread) > threshold
                ), (window, silence, min_spread)
                compared += 1
    assert compared > 100


def test_phi_deadline_is_the_shortest_silence_suspected() -> None:
    assert phi_deadline((2, 2), 2, 1) == 5  # mean 2, σ 0 taken as 1: past 4
    assert phi_deadline((2, 2), 2, 0) == 3  # σ 0: any silence past the mean
    assert phi_deadline((1, 5), 2, 1) == 8  # mean 3, σ 2: past 7
    assert phi_deadline((5, 5), 2, 1) == 8


def test_the_derived_bounds() -> None:
    assert spec().detection_time() == 5  # max_delay 1 + timeout 4
    assert spec(detector="phi").detection_time() == 9  # 1 + 8: windows (1, 5) and (5, 5)
    assert spec(detector="phi", losses=0).detection_time() == 7  # 1 + 6: window (3, 3)
    assert [spec(timeout=t).absorbed() for t in (3, 4, 5, 6, 7, 8)] == [0, 0, 0, 1, 1, 2]
    assert spec(detector="phi", timeout=8).absorbed() == 0


def test_a_config_out_of_range_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="detector must be one of timeout, phi, got 'gossip'"):
        Config(detector="gossip")
    with pytest.raises(ValueError, match=r"crashes \(2\) must be below processes \(2\)"):
        Config(crashes=2)
    with pytest.raises(ValueError, match="timeout must be between 1 and 12, got 0"):
        Config(timeout=0)


# ------------------------------------------------------------------ exploration


@pytest.mark.parametrize(
    "params,size",
    [({}, (5891, 28)), ({"detector": "phi", "max_time": 6}, (3722, 22))],
    ids=["timeout", "phi"],
)
def test_both_detectors_are_complete_and_accurate(params: dict[str, Any], size: tuple[int, int]) -> None:
    result = explore(spec(**params))
    assert result.verdict == "ok"
    assert (result.stats.distinct_states, result.stats.depth) == size
    assert set(result.reached) == {"CrashedSuspectedByAll", "FalseSuspicionCorrected"}


def test_phi_is_complete_where_its_detection_time_fits() -> None:
    """Without loss phi detects within 7 ticks, so completeness bites at 8: every
    invariant holds on the whole graph, and only a false suspicion (which needs a
    loss) is never reached."""
    result = explore(spec(detector="phi", losses=0))
    assert result.violation is not None
    assert (result.violation.kind, result.violation.name) == ("unreached", "FalseSuspicionCorrected")
    assert result.stats.distinct_states == 4224
    assert result.reached == ("CrashedSuspectedByAll",)


def test_a_timeout_covering_a_loss_suspects_only_after_two() -> None:
    """timeout 6 > 2 · interval + max_delay: one lost heartbeat is covered, and
    Accuracy promises that much (a false suspicion takes two losses)."""
    result = explore(spec(timeout=6, losses=2))
    assert result.verdict == "ok" and "FalseSuspicionCorrected" in result.reached
    single = explore(spec(timeout=6, losses=1))  # one loss: no false suspicion at all
    assert single.violation is not None
    assert (single.violation.kind, single.violation.name) == ("unreached", "FalseSuspicionCorrected")


# ------------------------------------------------------------------ the guards


def test_a_heartbeat_due_and_one_max_delay_old_hold_the_clock() -> None:
    s = spec()
    assert "Tick" not in enabled(s, TO_2)  # heartbeats due at 2
    assert "Tick" in enabled(s, FIRST_BEATS)  # they may arrive at 2 or 3
    late = enabled(s, [*FIRST_BEATS, Tick()])
    assert "Tick" not in late  # at 3 they are max_delay old: received or lost now
    assert {"Receive(p1, hb(p2→p1@2))", "Lose(hb(p2→p1@2))"} <= set(late)


def test_the_reachable_steps_pinned() -> None:
    s = spec()
    state = replay(s, FALSE_SUSPICION)
    assert state.trusted_again == {("p1", "p2")} and broken(s, state) == []
    state = replay(s, CRASH_SUSPECTED)
    assert state.detectors["p1"].suspects == {"p2"} and broken(s, state) == []
    assert "Tick" not in enabled(s, CRASH_SUSPECTED[:-1])  # the suspicion is due at 4


def test_phi_records_inter_arrival_times_in_its_window() -> None:
    s = spec(detector="phi")
    state = replay(s, [*FIRST_BEATS, Tick(), Receive("p1", hb("p2", "p1", 2))])
    assert state.detectors["p1"].windows["p2"] == (2, 3)  # the start estimate, then 3 ticks since joining
    assert state.detectors["p2"].windows["p1"] == (2, 2)


# ------------------------------------------------------------------ the bound broken


def test_a_timeout_at_interval_plus_delay_races_the_late_heartbeat() -> None:
    """timeout 3 = interval + max_delay: at 3 the late heartbeat and the suspicion are
    due together, and the suspicion may come first."""
    at_3 = [*FIRST_BEATS, Tick()]
    assert {"Suspect(p1, p2)", "Receive(p1, hb(p2→p1@2))"} <= set(enabled(spec(timeout=3), at_3))
    s = spec(timeout=3)
    assert broken(s, replay(s, [*at_3, Suspect("p1", "p2")])) == ["Accuracy"]
    assert "Suspect(p1, p2)" not in enabled(spec(), at_3)  # timeout 4 > 3
    assert explore(spec(timeout=3)).violation.name == "Accuracy"  # type: ignore[union-attr]


# ------------------------------------------------------------------ variants


def test_a_timeout_of_one_interval_suspects_a_correct_process() -> None:
    s = spec("timeout_below_delay")
    path: list[DetectorAction] = [*TO_2, Suspect("p1", "p2")]
    assert broken(s, replay(s, path)) == ["Accuracy"]
    assert spec().next_state(replay(spec(), TO_2), Suspect("p1", "p2")) is None


def test_a_timer_re_armed_by_its_suspicion_forgets_the_crash() -> None:
    s = spec("forgets_crashed")
    path: list[DetectorAction] = [*CRASH_SUSPECTED, Trust("p1", "p2"), Tick(), Tick()]
    assert broken(s, replay(s, path)) == ["StrongCompleteness"]  # at 6, past 0 + 5
    assert broken(s, replay(s, path[:-1])) == []
    reference = spec()
    assert reference.next_state(replay(reference, CRASH_SUSPECTED), Trust("p1", "p2")) is None


def test_one_timer_for_every_peer_never_suspects_the_crashed_one() -> None:
    s = spec("shared_timer")
    assert s.config.processes == 3
    rounds: list[DetectorAction] = []
    for t in (2, 4):
        rounds += [Beat("p1"), Beat("p2"), Receive("p1", hb("p2", "p1", t)), Receive("p2", hb("p1", "p2", t))]
        rounds += [Tick(), Tick()]
    path: list[DetectorAction] = [Crash("p3"), *TO_2, *rounds]
    assert broken(s, replay(s, path)) == ["StrongCompleteness"]  # p3, crashed at 0, trusted at 6
    assert broken(s, replay(s, path[:-1])) == []
    reference = spec(processes=3)
    assert "Tick" not in enabled(reference, path[:-3])  # at 4 the reference suspects p3 first


def test_phi_without_a_least_deviation_suspects_a_late_heartbeat() -> None:
    s = spec("phi_without_min_spread")
    at_3: list[DetectorAction] = [*FIRST_BEATS, Tick()]
    assert broken(s, replay(s, [*at_3, Suspect("p1", "p2")])) == ["Accuracy"]  # 3 > mean 2, σ 0
    reference = spec(detector="phi")
    assert reference.next_state(replay(reference, at_3), Suspect("p1", "p2")) is None
