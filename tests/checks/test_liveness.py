"""Liveness ("eventually") properties on small specs whose graphs are known by hand:
a request retried until it succeeds, in three versions — one that always still can
succeed (live), one that can give up (a dead end), and one that can fall into a
ping-pong that never ends (a loop).  The explorer finds each trap with a shortest way
in, the CLI prints it, and the written trace replays to the same verdict."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import attrs
import pytest

from distcheck.checks.search.explore import explore
from distcheck.checks.traces.trace import from_behaviour, read, replay, violation_of, write
from distcheck.spec.contract import Action, Eventually, Invariant, Next, Spec, rule


@attrs.frozen
class Request:
    tries: int
    status: str  # "pending", "done", "abandoned", "ping", "pong"


@attrs.frozen
class Fail(Action):
    ACTOR = "client"


@attrs.frozen
class Succeed(Action):
    ACTOR = "server"


@attrs.frozen
class GiveUp(Action):
    ACTOR = "client"


@attrs.frozen
class Bounce(Action):
    ACTOR = "client"


class Retry(Spec[Request, Fail | Succeed | GiveUp | Bounce]):
    """A request fails up to ``cap`` times and can always still succeed; ``trap``
    adds a mistake: "give_up" (abandon after ``cap`` failures) or "bounce" (after
    ``cap`` failures, ping-pong between two states for ever)."""

    name = "retry"

    def __init__(self, cap: int = 2, trap: str | None = None) -> None:
        self.cap, self.trap = cap, trap

    def init_states(self) -> Iterable[Request]:
        yield Request(0, "pending")

    def next(self) -> Next:
        return (self.fail, self.succeed, self.give_up, self.bounce)

    @rule(Fail)
    def fail(self, s: Request) -> Request | None:
        """An attempt fails: retried, up to the cap."""
        return Request(s.tries + 1, "pending") if s.status == "pending" and s.tries < self.cap else None

    @rule(Succeed)
    def succeed(self, s: Request) -> Request | None:
        """An attempt succeeds."""
        return Request(s.tries, "done") if s.status == "pending" else None

    @rule(GiveUp)
    def give_up(self, s: Request) -> Request | None:
        """The client abandons the request at the cap (the "give_up" mistake)."""
        ok = self.trap == "give_up" and s.status == "pending" and s.tries == self.cap
        return Request(s.tries, "abandoned") if ok else None

    @rule(Bounce)
    def bounce(self, s: Request) -> Request | None:
        """The client bounces between two states at the cap (the "bounce" mistake)."""
        if self.trap != "bounce" or s.tries != self.cap:
            return None
        return {"pending": Request(s.tries, "ping"), "ping": Request(s.tries, "pong")}.get(
            s.status, Request(s.tries, "ping") if s.status == "pong" else None
        )

    def invariants(self) -> Sequence[Invariant[Request]]:
        return (Invariant("TriesBounded", "no more tries than the cap", lambda s: s.tries <= self.cap),)

    def eventually(self) -> Sequence[Eventually[Request]]:
        return (Eventually("Done", "every request eventually succeeds", lambda s: s.status == "done"),)


def test_a_request_that_can_always_still_succeed_is_live() -> None:
    result = explore(Retry())
    assert result.verdict == "ok" and result.stats.distinct_states == 6


def test_giving_up_is_a_dead_end_found_by_a_shortest_way_in() -> None:
    result = explore(Retry(trap="give_up"))
    v = result.violation
    assert v is not None and (v.kind, v.name, v.loop) == ("liveness", "Done", None)
    assert [str(s.action) for s in v.trace[1:]] == ["Fail", "Fail", "GiveUp"]


def test_a_ping_pong_is_a_loop_that_never_ends() -> None:
    v = explore(Retry(trap="bounce")).violation
    assert v is not None and v.kind == "liveness"
    # A shortest way in (two failures, the first bounce: from "ping" there is no
    # way back to "pending"), then round the loop until a state repeats.
    assert [str(s.action) for s in v.trace[1:]] == ["Fail", "Fail", "Bounce", "Bounce", "Bounce"]
    assert v.loop == 3 and v.trace[-1].state == v.trace[v.loop].state


def test_the_cut_of_a_depth_bound_leaves_liveness_unchecked() -> None:
    result = explore(Retry(trap="give_up"), max_depth=2)
    assert result.violation is None and result.verdict == "bounded"


def test_the_counterexample_trace_replays_to_the_same_verdict(tmp_path: Path) -> None:
    spec = Retry(trap="bounce")
    v = explore(spec).violation
    assert v is not None
    header_violation = violation_of(v.name, v.statement, v.kind)
    tr = from_behaviour(spec, v.trace, spec_name="retry", params={}, variant=None, violation=header_violation)
    path = write(tr, tmp_path / "live.jsonl")
    again = replay(read(path), spec)
    assert again.verdict == "violated" and again.violation is not None and again.violation.kind == "liveness"
    # Cut before the trap, the same header's claim does not replay.
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3]) + "\n")
    assert replay(read(path), spec).verdict != "violated"
    assert json.loads(lines[0])["violation"]["kind"] == "liveness"


@pytest.mark.parametrize("trap", ["give_up", "bounce"])
def test_the_explorer_names_the_property_and_the_state(trap: str) -> None:
    v = explore(Retry(trap=trap)).violation
    assert v is not None and v.statement == "every request eventually succeeds"
    assert all(s.state.status != "done" for s in v.trace)
