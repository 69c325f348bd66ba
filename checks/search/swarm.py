"""Swarm search: many independent randomized searches of one spec, merged.

Where it sits: the scale-out companion of ``checks.explore``.  Exhaustive search
needs the whole state space in one process; a swarm (in the sense of Holzmann's
swarm verification) instead runs many small, differently seeded searches — on the
local cores by default, or on an existing Dask cluster given its scheduler's
address — and merges what they found.  It is not exhaustive: "no violation" means
none in the behaviours sampled, and the result says so (``complete: false``).

Each search is a series of random walks from an initial state, up to ``depth``
steps each, choosing uniformly among the enabled actions with its own seed and
checking every invariant on every state.  A task is described by plain values
(spec name, parameters, variant, seed), so it pickles cheaply and any worker
rebuilds the spec from the registry.  A violation comes back as the list of
actions (JSON); the driver replays it on the spec, removes loops and
unnecessary steps (the counterexample must still be a behaviour that violates
the same invariant), and renders it like any other counterexample.

Random walks know no shortest paths, so a swarm reports no ``depth`` (the explorer's
states on the longest shortest path) but ``longest_walk``: the states on the
longest walk it took.  Its verdict is "bounded" at best (``checks.verdict``).
"""

from __future__ import annotations

import importlib.util
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import attrs

from distcheck.checks.search.explore import Result, Stats, Step, Violation
from distcheck.checks.verdict import BOUNDED, VIOLATED
from distcheck.spec.codec import to_json
from distcheck.spec.contract import Spec
from distcheck.spec.registry import REGISTRY
from distcheck.spec.values import fingerprint

#: Fingerprints a task reports for the merged distinct-state count (beyond it,
#: the count is a lower bound and the result says so).
FINGERPRINT_CAP = 200_000


@attrs.frozen
class SwarmTask:
    spec: str
    params: dict[str, Any]
    variant: str | None
    seed: int
    walks: int
    depth: int


def run_task(task: SwarmTask) -> dict[str, Any]:
    """One randomized search; returns plain data (safe to send between processes)."""
    spec = REGISTRY[task.spec].make(variant=task.variant, **task.params)
    rng = random.Random(task.seed)
    invariants = list(spec.invariants())
    inits = list(spec.init_states())
    seen: set[int] = set()
    generated = 0
    deepest = 0
    for _ in range(task.walks):
        state = rng.choice(inits)
        path: list[Any] = []
        for step in range(task.depth + 1):
            if len(seen) < FINGERPRINT_CAP:
                seen.add(fingerprint(state))
            broken = next((inv for inv in invariants if not inv.holds(state)), None)
            if broken is not None:
                return {
                    "seed": task.seed,
                    "generated": generated,
                    "fingerprints": sorted(seen),
                    "longest_walk": max(deepest, step + 1),
                    "violation": {"invariant": broken.name, "actions": [to_json(a) for a in path]},
                }
            if step == task.depth:
                break
            successors = list(spec.successors(state))
            generated += len(successors)
            if not successors:
                break
            action, state = rng.choice(successors)
            path.append(action)
            deepest = max(deepest, step + 2)
    return {
        "seed": task.seed,
        "generated": generated,
        "fingerprints": sorted(seen),
        "longest_walk": deepest,
        "violation": None,
    }


def _local_map(tasks: Sequence[SwarmTask], workers: int) -> Iterable[dict[str, Any]]:
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(run_task, tasks)


class SchedulerError(Exception):
    """The Dask scheduler cannot be used: the client is not installed, the address
    is malformed, or nothing answers there (the message says which, in one line)."""


#: ``tcp://host:port`` or ``tls://host:port`` (a host name, an IPv4 address or a
#: bracketed IPv6 address), the addresses a Dask scheduler listens on.
SCHEDULER_ADDRESS = re.compile(r"(tcp|tls)://([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})")


def check_scheduler(address: str) -> None:
    """Raise ``SchedulerError`` unless ``address`` is a scheduler address and the
    Dask client (the ``[swarm]`` extra) is installed; before any work starts."""
    match = SCHEDULER_ADDRESS.fullmatch(address)
    if match is None or not 0 < int(match.group(3)) < 65536:
        raise SchedulerError(f"--scheduler {address!r} is not an address like tcp://HOST:PORT")
    if importlib.util.find_spec("distributed") is None:
        raise SchedulerError(
            "--scheduler needs the Dask client, which is not installed: pip install 'distcheck[swarm]'"
        )


def _dask_map(tasks: Sequence[SwarmTask], address: str) -> Iterable[dict[str, Any]]:
    check_scheduler(address)
    from distributed import Client

    try:
        client = Client(address, timeout="10s")  # type: ignore[no-untyped-call]
    except (OSError, ValueError, TypeError) as exc:  # OSError covers a timeout
        raise SchedulerError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    with client:
        futures = client.map(run_task, tasks, pure=False)
        yield from client.gather(futures)  # type: ignore[no-untyped-call]


def swarm(
    spec_name: str,
    params: dict[str, Any],
    variant: str | None = None,
    *,
    runs: int = 8,
    walks: int = 200,
    depth: int = 40,
    seed: int = 0,
    scheduler: str | None = None,
    workers: int | None = None,
) -> Result:
    """Run ``runs`` searches (seeds ``seed``, ``seed + 1``, ...) and merge them."""
    started = time.perf_counter()
    tasks = [SwarmTask(spec_name, params, variant, seed + i, walks, depth) for i in range(runs)]
    if scheduler:
        outcomes = list(_dask_map(tasks, scheduler))
    else:
        outcomes = list(_local_map(tasks, workers or os.cpu_count() or 1))
    spec = REGISTRY[spec_name].make(variant=variant, **params)
    merged: set[int] = set()
    for outcome in outcomes:
        merged.update(outcome["fingerprints"])
    stats = Stats(
        distinct_states=len(merged),
        generated_states=sum(o["generated"] for o in outcomes),
        longest_walk=max((o["longest_walk"] for o in outcomes), default=0),
    )
    found = [o["violation"] for o in outcomes if o["violation"] is not None]
    violation = None
    if found:
        best = min(found, key=lambda v: len(v["actions"]))
        actions = [spec.action_from_json(a) for a in best["actions"]]
        violation = _violation(spec, best["invariant"], shorten(spec, best["invariant"], actions))
    stats.seconds = time.perf_counter() - started
    return Result(VIOLATED if violation else BOUNDED, stats, violation, complete=False)


def _violation(spec: Spec[Any, Any], name: str, actions: Sequence[Any]) -> Violation:
    steps = [Step(None, next(iter(spec.init_states())))]
    for action in actions:
        nxt = spec.next_state(steps[-1].state, action)
        assert nxt is not None, "a swarm counterexample must replay"
        steps.append(Step(action, nxt))
    statement = next(inv.statement for inv in spec.invariants() if inv.name == name)
    return Violation("invariant", name, statement, tuple(steps))


def violates(spec: Spec[Any, Any], name: str, actions: Sequence[Any]) -> bool:
    """``actions`` is a behaviour of ``spec`` from its first initial state that ends
    in a state breaking invariant ``name`` (and none before it)."""
    invariant: Callable[[Any], bool] = next(inv.holds for inv in spec.invariants() if inv.name == name)
    state = next(iter(spec.init_states()))
    for action in actions:
        if not invariant(state):
            return False
        nxt = spec.next_state(state, action)
        if nxt is None:
            return False
        state = nxt
    return not invariant(state)


def shorten(spec: Spec[Any, Any], name: str, actions: Sequence[Any]) -> list[Any]:
    """A shorter counterexample for the same invariant: first cut loops (a state
    visited twice), then drop single steps while what remains still violates it."""
    states = [next(iter(spec.init_states()))]
    for action in actions:
        states.append(spec.next_state(states[-1], action))
    kept = list(actions)
    first_seen: dict[int, int] = {}
    i = 0
    while i < len(states):  # cut loops: from a state's first visit straight to its next
        fp = fingerprint(states[i])
        if fp in first_seen:
            start = first_seen[fp]
            del kept[start:i]
            del states[start:i]
            first_seen = {fingerprint(states[k]): k for k in range(start)}
            i = start
            continue
        first_seen[fp] = i
        i += 1
    changed = True
    while changed:
        changed = False
        for j in range(len(kept)):
            candidate = kept[:j] + kept[j + 1 :]
            if violates(spec, name, candidate):
                kept = candidate
                changed = True
                break
    return kept
