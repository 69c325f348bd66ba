"""Contract tests that every registered spec must pass (DESIGN.md, "The spec contract").

Each test runs over a bounded sample of reachable states of every spec in the
registry at its default size, so a new spec is checked by adding it to the registry.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from distcheck.checks.search.explore import Result, explore, follow_witness
from distcheck.spec.codec import to_json
from distcheck.spec.contract import Spec
from distcheck.spec.registry import REGISTRY
from distcheck.spec.values import canonical_text, fingerprint

SAMPLE = 1500  # states per spec: enough to cover every action kind at default sizes


def reachable_sample(spec: Spec[Any, Any], limit: int = SAMPLE) -> list[Any]:
    """The first ``limit`` reachable states in BFS order (unreduced), within the spec's
    bounds as the explorer keeps them."""
    seen: set[int] = set()
    out: list[Any] = []
    queue: deque[Any] = deque()
    for s in spec.init_states():
        if fingerprint(s) not in seen:
            seen.add(fingerprint(s))
            queue.append(s)
    while queue and len(out) < limit:
        s = queue.popleft()
        out.append(s)
        for _, t in spec.successors(s):
            fp = fingerprint(t)
            if fp not in seen and spec.within_bounds(t):
                seen.add(fp)
                queue.append(t)
    return out


def all_specs() -> Iterator[Any]:
    for name, entry in REGISTRY.items():
        yield pytest.param(entry.make(), id=name)


SPECS = list(all_specs())


@pytest.mark.parametrize("spec", SPECS)
def test_next_state_is_deterministic_and_pure(spec: Spec[Any, Any]) -> None:
    for s in reachable_sample(spec):
        before = canonical_text(s)
        for a in spec.actions(s):
            first, second = spec.next_state(s, a), spec.next_state(s, a)
            assert first == second, f"{a} from {s} is not deterministic"
            assert first is not None, f"actions() offered {a}, which next_state says is not enabled"
        assert canonical_text(s) == before, "next_state changed its input state"


@pytest.mark.parametrize("spec", SPECS)
def test_states_and_actions_are_hashable_values(spec: Spec[Any, Any]) -> None:
    for s in reachable_sample(spec, 300):
        rebuilt = attrs.evolve(s)  # a fresh object with equal fields
        assert rebuilt == s and hash(rebuilt) == hash(s)
        json.dumps(to_json(s))  # every state has a JSON form (raises otherwise)
        for a in spec.actions(s):
            hash(a)
            assert str(a), "an action needs a short readable str"


@pytest.mark.parametrize("spec", SPECS)
def test_actions_round_trip_through_json(spec: Spec[Any, Any]) -> None:
    checked = 0
    for s in reachable_sample(spec, 500):
        for a in spec.actions(s):
            text = json.dumps(to_json(a))
            assert spec.action_from_json(json.loads(text)) == a, text
            checked += 1
    assert checked > 0


@pytest.mark.parametrize("spec", SPECS)
def test_canonical_preserves_every_invariant(spec: Spec[Any, Any]) -> None:
    if not spec.has_symmetry():
        pytest.skip(f"{spec.name} declares no symmetry")
    for s in reachable_sample(spec):
        c = spec.canonical(s)
        assert spec.canonical(c) == c, "canonical() must be idempotent"
        for inv in spec.invariants():
            assert inv.holds(s) == inv.holds(c), f"canonical() changes {inv.name} on {s}"
        for prop in spec.reachable():
            assert prop.holds(s) == prop.holds(c), f"canonical() changes {prop.name} on {s}"


@pytest.mark.parametrize("spec", SPECS)
def test_every_reachability_property_is_reached_and_invariants_hold(spec: Spec[Any, Any]) -> None:
    result = explore(spec)
    assert result.verdict == "ok", result.violation
    assert set(result.reached) == {p.name for p in spec.reachable()}
    assert spec.reachable(), f"{spec.name} states no reachability property, so a vacuous spec would pass"


ROOT = Path(__file__).resolve().parents[2]  # the script imports tests.spec.test_contract from there
_FINGERPRINT_SCRIPT = """
import json, sys
from distcheck.spec.registry import REGISTRY
from tests.spec.test_contract import reachable_sample
from distcheck.spec.values import fingerprint
out = {}
for name, entry in REGISTRY.items():
    spec = entry.make()
    states = reachable_sample(spec, 200)
    out[name] = [[fingerprint(s), [str(a) for a in spec.actions(s)]] for s in states]
print(json.dumps(out))
"""


def test_fingerprints_and_action_order_are_stable_across_processes() -> None:
    """Python salts hash() of strings per process; fingerprints and the order of
    actions() must not depend on it, or stored paths would not replay elsewhere."""
    runs = []
    for seed in ("1", "2", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", _FINGERPRINT_SCRIPT], capture_output=True, text=True, env=env, check=True, cwd=ROOT
        )
        runs.append(json.loads(done.stdout))
    assert runs[0] == runs[1] == runs[2]
    here = {
        name: [[fingerprint(s), [str(a) for a in entry.make().actions(s)]] for s in reachable_sample(entry.make(), 200)]
        for name, entry in REGISTRY.items()
    }
    assert here == runs[0]


@functools.cache
def variant_result(name: str, variant: str) -> Result:
    """The variant at its default size, searched (or its pinned counterexample
    followed); kept for the process, for both tests below (one xdist worker runs them)."""
    entry = REGISTRY[name]
    witness = entry.build.variants()[variant].witness
    return follow_witness(entry.make(variant=variant), witness) if witness else explore(entry.make(variant=variant))


@pytest.mark.xdist_group("variants")
@pytest.mark.parametrize(
    "name,variant",
    [pytest.param(n, v, id=f"{n}-{v}") for n, e in REGISTRY.items() for v in e.variants],
)
def test_every_variant_is_caught_with_a_shortest_counterexample(name: str, variant: str) -> None:
    entry = REGISTRY[name]
    witness = entry.build.variants()[variant].witness
    result = variant_result(name, variant)
    if witness:
        # Too deep to search in a test: its pinned counterexample must replay and break
        # a property only at its last step, and the reference spec, at the same size,
        # either cannot take those steps or breaks nothing taking them.
        assert result.violation is not None and len(result.violation.trace) == len(witness) + 1, result
        reference = entry.build(entry.config_type(**entry.defaults(variant)))
        try:
            assert follow_witness(reference, witness).violation is None
        except ValueError:
            pass  # the mistake is a step the reference does not take
        return
    assert result.violation is not None and result.violation.kind in ("invariant", "action", "liveness"), result
    if result.violation.kind == "liveness":
        # Its trace is a shortest way into the trap and then round it: the way in is
        # shortest by the search's order, which the explorer's own tests check.
        return
    steps = len(result.violation.trace) - 1
    # Shortest: no behaviour one step shorter reaches a violation.
    shorter = explore(entry.make(variant=variant), max_depth=steps)
    assert shorter.violation is None or shorter.violation.kind == "unreached"


@pytest.mark.xdist_group("variants")
def test_every_invariant_fails_on_some_variant() -> None:
    """An invariant no variant can break is untested (TypeOK excepted: a type
    invariant is broken by a malformed spec, not a protocol mistake)."""
    for name, entry in REGISTRY.items():
        if not entry.variants:
            continue
        broken = {
            violation.name for v in entry.variants if (violation := variant_result(name, v).violation) is not None
        }
        spec = entry.make()
        names = [inv.name for inv in spec.invariants()] + [prop.name for prop in spec.step_properties()]
        names += [goal.name for goal in spec.eventually()]
        for inv_name in names:
            if inv_name != "TypeOK":
                assert inv_name in broken, f"{name}: no variant breaks {inv_name}"


#: Each spec at its default size: distinct states and depth (TLC's figures where a
#: TLA+ spec exists: TwoPhase 288, Paxos 3,921), so that a changed default shows.
DEFAULT_SIZE = {
    "twophase": (288, 11),
    "tcommit": (34, 7),
    "paxos": (3921, 17),
    "voting": (599, 11),
    "consensus": (3, 2),
    "paxoscommit": (1461, 15),
    "lock": (12769, 17),
    "raft": (25164, 41),
    "reliable_link": (3836, 24),
    "fifo_broadcast": (4312, 13),
    "causal_broadcast": (2494, 13),
    "broker": (1291, 15),
    "event_store": (606, 12),
    "cqrs": (3304, 16),
    "saga": (6333, 22),
    "pbft": (12239, 19),
    "abd": (37879, 19),
    "clocks": (5186, 6),
    "dynamo": (10478, 12),
    "retry": (4100, 25),
    "circuit_breaker": (4690, 25),
    "failure_detector": (5891, 28),
}


def test_every_spec_at_its_default_size() -> None:
    assert set(DEFAULT_SIZE) == set(REGISTRY)
    for name, entry in REGISTRY.items():
        stats = explore(entry.make()).stats
        assert (stats.distinct_states, stats.depth) == DEFAULT_SIZE[name], name
