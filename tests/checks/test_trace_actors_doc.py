"""docs/trace-format.md's table "Actors: who takes each step" against the specs: every
action each spec can take has a row, the actor the row names is the spec's, and the
row says whether ``distcheck validate`` checks it exactly when the spec's ``observe``
logs an actor.  A spec that changes who takes a step fails here until the docs say so."""

from __future__ import annotations

import functools
import re
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from distcheck.spec.registry import REGISTRY

DOC = Path(__file__).resolve().parents[2] / "docs" / "trace-format.md"


def actor_rows() -> dict[tuple[str, str], tuple[str, str]]:
    """(spec, action) → (actor column, checked column)."""
    text = DOC.read_text()
    section = text.split("### Actors: who takes each step", 1)[1].split("\n### ", 1)[0]
    rows: dict[tuple[str, str], tuple[str, str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        spec = re.match(r"`(\w+)`", cells[0])
        assert spec is not None, line
        for action in re.findall(r"`(\w+)`", cells[1]):
            rows[(spec.group(1), action)] = (cells[2], cells[3])
    return rows


#: specs whose every action is not reached within the first 4000 states
LIMITS = {"raft": 30_000, "lock": 13_000}  # lock: RejectWrite first fires past state 4,000


@functools.cache
def samples(name: str, variant: str | None = None) -> dict[str, tuple[Any, Any]]:
    """One (action, observation) per action type the spec takes within its limit of states."""
    limit = LIMITS.get(name, 4000)
    spec = REGISTRY[name].make(variant=variant)
    seen = {0}
    queue: deque[Any] = deque(spec.init_states())
    out: dict[str, tuple[Any, Any]] = {}
    while queue and len(seen) < limit:
        state = queue.popleft()
        for action, nxt in spec.successors(state):
            out.setdefault(type(action).__name__, (action, spec.observe(state, action)))
            if not spec.within_bounds(nxt):
                continue
            key = hash(repr(nxt))
            if key not in seen:
                seen.add(key)
                queue.append(nxt)
    return out


CASES = [(name, None) for name in REGISTRY] + [("paxos", "forgotten_vote")]


@pytest.mark.parametrize("name,variant", CASES)
def test_every_action_has_a_row_naming_the_specs_actor(name: str, variant: str | None) -> None:
    rows = actor_rows()
    found = samples(name, variant)
    assert found, name
    for kind, (action, observation) in found.items():
        assert (name, kind) in rows, f"docs/trace-format.md has no actor row for {name} {kind}"
        actor, checked = rows[(name, kind)]
        field = re.fullmatch(r"the action's `(\w+)`", actor)
        literal = re.fullmatch(r"`(\w+)`", actor)
        message_field = re.fullmatch(r"the message's `(\w+)`", actor)
        if field is not None:
            assert action.actor == getattr(action, field.group(1)), (name, kind)
        elif message_field is not None:
            assert action.actor == getattr(action.msg, message_field.group(1)), (name, kind)
        elif literal is not None:
            assert action.actor == literal.group(1), (name, kind)
        else:  # the Paxos proposer: the spec's own name for it is p<ballot>
            assert actor.startswith("the proposer of the ballot"), actor
            assert action.actor == f"p{action.bal}"
        if observation is None:
            assert checked.startswith("not logged"), (name, kind, checked)
        elif "actor" in observation:
            assert checked.startswith("yes"), (name, kind, checked)
        else:
            assert checked.startswith("no"), (name, kind, checked)


def test_every_row_names_actions_the_spec_takes() -> None:
    taken = {(name, kind) for name, variant in CASES for kind in samples(name, variant)}
    stale = sorted(set(actor_rows()) - taken)
    assert not stale, f"docs/trace-format.md names actions no spec takes: {stale}"
