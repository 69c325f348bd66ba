"""Exhaustive breadth-first exploration of a spec (the model checker).

Where it sits: used by the CLI (``distcheck check``), the tests and the benchmarks;
it sees a spec only through the contract of ``spec.contract``.

What it checks, in the manner of TLC:

- every invariant on every reachable state; a violation comes with a *shortest*
  counterexample, because states are checked when BFS first discovers them;
- every reachability ("sometimes") property is reached by some state, else the
  run fails: a vacuous spec cannot pass;
- every liveness ("eventually") property, once the whole graph is explored: from
  every reachable state a state satisfying it is still reachable, which on a finite
  graph is the property under strong fairness of every step (``spec.contract.
  Eventually``); the counterexample is a behaviour to the first state from which it
  is out of reach, then on into a loop or a dead end that never reaches it;
- optionally, deadlock (a state with no successor at all), the refinement mapping
  (every step maps to an abstract step or a stutter), a depth limit, and the spec's
  state constraint ``within_bounds`` (successors outside it are discarded, as
  TLC does with CONSTRAINT);
- symmetry reduction through ``spec.canonical``: one representative per orbit.

Memory: the seen set maps a state's 64-bit fingerprint to its parent's fingerprint
and keeps no states; only the BFS frontier holds states.  A counterexample is
rebuilt by replaying from an initial state and choosing, at each step, the action
whose (canonical) successor has the next fingerprint on the path, so it works under
symmetry as well and yields real, unreduced states.  Under symmetry the search
also remembers (up to a bound, about 130 MB) the fingerprints of unreduced
successors it has already canonicalised, since ``canonical`` costs more than the
rest of a step and the same unreduced state recurs as a successor many times.

Counting follows TLC: ``generated_states`` counts initial states plus every
successor computed (stutters included); ``depth`` is the number of states on the
longest shortest path from an initial state (so a spec with only its initial state
has depth 1).
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from distcheck.checks.verdict import BOUNDED, OK, VIOLATED
from distcheck.spec.contract import Spec, StepProperty
from distcheck.spec.values import fingerprint


@attrs.frozen
class Step:
    """One step of a behaviour: the action taken (None for the initial state) and
    the state it led to."""

    action: Any
    state: Any


@attrs.frozen
class Violation:
    """A failed property with its counterexample.

    kind: "invariant", "deadlock", "refinement", "action" (a step property failed on
    the trace's last step), "unreached" (a reachability property no state satisfied;
    its trace is empty) or "liveness" (an eventually property: the trace runs into
    states none of which reaches it; ``loop`` is the index of the state its last step
    leads back to, or None where it ends in a state with no successor).
    """

    kind: str
    name: str
    statement: str
    trace: tuple[Step, ...]
    loop: int | None = None


@attrs.define
class Stats:
    distinct_states: int = 0
    generated_states: int = 0
    depth: int = 0
    queue: int = 0
    seconds: float = 0.0
    #: a random search (swarm) knows no shortest paths, so no ``depth``: instead the
    #: states on its longest walk
    longest_walk: int | None = None

    @property
    def states_per_second(self) -> float:
        return self.distinct_states / self.seconds if self.seconds > 0 else 0.0


@attrs.frozen
class Result:
    """What a search found (``checks.verdict``): verdict "ok" (every property holds
    on every reachable state), "violated" (``violation`` says what and how; its kind
    tells an invariant from a deadlock, a refinement step or a reachability property
    never reached) or "bounded" (nothing failed, but a depth bound or a random
    sample left states unexplored: ``complete`` is False, and ``unreached`` names
    the reachability properties not reached within the bound, which a deeper search
    might still reach)."""

    verdict: str
    stats: Stats
    violation: Violation | None = None
    complete: bool = True  # False when a depth limit (or sampling) left states unexplored
    reached: tuple[str, ...] = ()
    unreached: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Nothing failed (verdict "ok" or "bounded"): exit code 0."""
        return self.verdict != VIOLATED


ProgressCallback = Callable[[Stats], None]


#: How many unreduced fingerprints the search remembers under symmetry (about
#: 60 bytes each) before it forgets them all and starts again.
_KNOWN_RAW_LIMIT = 1 << 21


class Explorer:
    """BFS over a spec.  ``run()`` returns a ``Result``; ``path_to(fp)`` rebuilds the
    behaviour that reaches a fingerprint (used for counterexamples and witnesses)."""

    def __init__(
        self,
        spec: Spec[Any, Any],
        *,
        symmetry: bool = False,
        max_depth: int | None = None,
        check_deadlock: bool = False,
        check_refinement: bool = False,
        progress: ProgressCallback | None = None,
        progress_interval: float = 1.0,
    ) -> None:
        if symmetry and check_refinement:
            raise ValueError("refinement is checked on unreduced states: use it without symmetry")
        if check_refinement and spec.refinement() is None:
            raise ValueError(f"spec {spec.name!r} declares no refinement mapping")
        self.spec = spec
        self.symmetry = symmetry
        self.max_depth = max_depth
        self.check_deadlock = check_deadlock
        self.check_refinement = check_refinement
        self.progress = progress
        self.progress_interval = progress_interval
        self.parents: dict[int, int] = {}  # fingerprint -> parent fingerprint (itself for an initial state)
        self.reached: dict[str, int] = {}  # reachability property -> first fingerprint that satisfied it
        # For liveness: each state's successors, and the states where each property
        # holds (kept only when the spec states some).
        self.edges: dict[int, list[int]] = {}
        self.goals: dict[str, set[int]] = {}

    def _canon(self, state: Any) -> Any:
        return self.spec.canonical(state) if self.symmetry else state

    def run(self) -> Result:
        # The search allocates a few container objects per successor and keeps a
        # frontier of states alive; the cyclic collector's youngest generation
        # would run every 700 allocations and repeatedly walk objects that are not
        # garbage (spec values form no cycles).  Collections are made rarer for
        # the run, not switched off: a spec that does make cyclic garbage still
        # has it collected.
        thresholds = gc.get_threshold()
        gc.set_threshold(max(thresholds[0], 100_000), *thresholds[1:])
        try:
            return self._run()
        finally:
            gc.set_threshold(*thresholds)

    def _run(self) -> Result:
        spec = self.spec
        started = time.perf_counter()
        last_report = started
        stats = Stats()
        invariants = list(spec.invariants())
        pending = {p.name: p for p in spec.reachable()}
        parents = self.parents
        canon = spec.canonical if self.symmetry else None
        # Skip calls that cannot change anything (17 million of them on a large model).
        within = spec.within_bounds if type(spec).within_bounds is not Spec.within_bounds else None
        refinement = spec.refinement() if self.check_refinement else None
        step_properties = list(spec.step_properties())
        liveness = list(spec.eventually())
        edges, goals = self.edges, self.goals
        for goal in liveness:
            goals[goal.name] = set()
        cut: set[int] = set()  # states with a successor discarded by within_bounds
        queue: deque[tuple[Any, int, int]] = deque()
        truncated = False

        def finish(violation: Violation | None, unreached: tuple[str, ...] = ()) -> Result:
            stats.seconds = time.perf_counter() - started
            stats.queue = len(queue)
            verdict = VIOLATED if violation is not None else BOUNDED if truncated else OK
            reached = tuple(sorted(self.reached))
            return Result(verdict, stats, violation, complete=not truncated, reached=reached, unreached=unreached)

        def discover(state: Any, fp: int, depth: int) -> Violation | None:
            """Record a newly seen state; return the first invariant it breaks."""
            stats.distinct_states += 1
            if depth + 1 > stats.depth:
                stats.depth = depth + 1
            for inv in invariants:
                if not inv.holds(state):
                    return Violation("invariant", inv.name, inv.statement, tuple(self.path_to(fp)))
            if pending:
                for name in [n for n, p in pending.items() if p.holds(state)]:
                    self.reached[name] = fp
                    del pending[name]
            for goal in liveness:
                if goal.holds(state):
                    goals[goal.name].add(fp)
            queue.append((state, fp, depth))
            return None

        for init in spec.init_states():
            stats.generated_states += 1
            state = canon(init) if canon else init
            fp = fingerprint(state)
            if fp in parents:
                continue
            parents[fp] = fp
            violation = discover(state, fp, 0)
            if violation:
                return finish(violation)

        successors_of, popleft = spec.successors, queue.popleft
        # Without refinement, step properties or liveness (the usual case) a
        # successor needs only its fingerprint looked up: that loop is written out
        # apart, with the generated count taken per state rather than per successor.
        plain = refinement is None and not step_properties and not liveness
        # Under symmetry, the fingerprints of successors as computed (before
        # ``canonical``) whose representative is already in ``parents``: the same
        # unreduced state recurs as a successor of many states, and its
        # fingerprint is far cheaper than canonicalising it again.  A hit is
        # always a state seen before, so results do not change; the set is
        # emptied when it grows past a bound, which only costs recomputation.
        known_raw: set[int] = set()
        while queue:
            state, fp, depth = popleft()
            if self.max_depth is not None and depth + 1 >= self.max_depth:
                truncated = truncated or bool(successors_of(state))
                continue
            if plain:
                pairs = successors_of(state)
                stats.generated_states += len(pairs)
                for pair in pairs:
                    nxt = pair[1]
                    if within is not None and not within(nxt):
                        cut.add(fp)
                        continue
                    if canon is not None:
                        raw = fingerprint(nxt)
                        if raw in known_raw:
                            continue
                        if len(known_raw) >= _KNOWN_RAW_LIMIT:
                            known_raw.clear()
                        known_raw.add(raw)
                        nxt = canon(nxt)
                    nfp = fingerprint(nxt)
                    if nfp in parents:
                        continue
                    parents[nfp] = fp
                    violation = discover(nxt, nfp, depth + 1)
                    if violation:
                        # Counted as the general loop counts: up to this successor.
                        stats.generated_states -= len(pairs) - 1 - next(i for i, p in enumerate(pairs) if p is pair)
                        return finish(violation)
                successors = len(pairs)
            else:
                successors = 0
                out: list[int] | None = edges.setdefault(fp, []) if liveness else None
                for action, nxt in successors_of(state):
                    successors += 1
                    stats.generated_states += 1
                    if refinement is not None and not _refines_step(refinement, state, nxt):
                        trace = (*self.path_to(fp), Step(action, nxt))
                        return finish(
                            Violation(
                                "refinement",
                                f"Refines{refinement.abstract.name.capitalize()}",
                                f"every step maps to a {refinement.abstract.name} step or a stutter",
                                trace,
                            ),
                        )
                    for prop in step_properties:
                        if not prop.holds(state, nxt):
                            return finish(Violation("action", prop.name, prop.statement, self._bad_step(fp, prop)))
                    if within is not None and not within(nxt):
                        cut.add(fp)
                        continue
                    if canon is not None:
                        nxt = canon(nxt)
                    nfp = fingerprint(nxt)
                    if out is not None:
                        out.append(nfp)
                    if nfp in parents:
                        continue
                    parents[nfp] = fp
                    violation = discover(nxt, nfp, depth + 1)
                    if violation:
                        return finish(violation)
            if successors == 0 and self.check_deadlock:
                return finish(
                    Violation(
                        "deadlock",
                        "Deadlock",
                        "some action is enabled in every reachable state",
                        tuple(self.path_to(fp)),
                    ),
                )
            if self.progress is not None:
                now = time.perf_counter()
                if now - last_report >= self.progress_interval:
                    last_report = now
                    stats.seconds = now - started
                    stats.queue = len(queue)
                    self.progress(stats)

        if pending and truncated:
            # Not reached within the bound: a deeper search might reach them, so
            # this is no failure, and the result says so.
            return finish(None, unreached=tuple(sorted(pending)))
        if pending:
            name, wanted = next(iter(sorted(pending.items())))
            return finish(Violation("unreached", name, wanted.statement, ()))
        if not truncated:
            for goal in liveness:
                violation = self._check_eventually(goal.name, goal.statement, cut)
                if violation is not None:
                    return finish(violation)
        return finish(None)

    def _check_eventually(self, name: str, statement: str, cut: set[int]) -> Violation | None:
        """From every state, a goal state of ``name`` still reachable?  Searched
        backwards from the goals.  A state whose successors ``within_bounds`` cut off
        counts as a goal: what lies beyond the bound is not known."""
        predecessors: dict[int, list[int]] = {}
        for fp, outs in self.edges.items():
            for nfp in outs:
                predecessors.setdefault(nfp, []).append(fp)
        live = set(self.goals[name]) | cut
        frontier = list(live)
        while frontier:
            for before in predecessors.get(frontier.pop(), ()):
                if before not in live:
                    live.add(before)
                    frontier.append(before)
        # The first state in BFS order from which the goal is out of reach: a shortest
        # behaviour there, then on through states that cannot reach it either, until
        # one repeats (a loop) or has no successor.
        stuck = next((fp for fp in self.parents if fp not in live), None)
        if stuck is None:
            return None
        chain = [fp for fp in self._chain_to(stuck)]
        on_path = {fp: i for i, fp in enumerate(chain)}
        loop: int | None = None
        while self.edges.get(chain[-1]):
            nxt = self.edges[chain[-1]][0]  # every successor of a stuck state is stuck too
            if nxt in on_path:
                loop = on_path[nxt]
                chain.append(nxt)
                break
            on_path[nxt] = len(chain)
            chain.append(nxt)
        steps = replay_chain(self.spec, chain, self._canon)
        return Violation("liveness", name, statement, tuple(steps), loop)

    def _chain_to(self, fp: int) -> list[int]:
        chain = [fp]
        while self.parents[chain[-1]] != chain[-1]:
            chain.append(self.parents[chain[-1]])
        chain.reverse()
        return chain

    def path_to(self, fp: int) -> list[Step]:
        """The behaviour from an initial state to the state with fingerprint ``fp``,
        as real (unreduced) states."""
        return replay_chain(self.spec, self._chain_to(fp), self._canon)

    def _bad_step(self, fp: int, prop: StepProperty[Any]) -> tuple[Step, ...]:
        """The behaviour to the state with fingerprint ``fp`` and one step from it that
        breaks ``prop``.  Under symmetry the search held a representative; the real
        state at the path's end breaks the (symmetric) property by some step too."""
        path = self.path_to(fp)
        last = path[-1].state
        bad = next((a, t) for a, t in self.spec.successors(last) if not prop.holds(last, t))
        return (*path, Step(*bad))

    def witness(self, name: str) -> list[Step]:
        """A shortest behaviour reaching reachability property ``name``."""
        return self.path_to(self.reached[name])


def replay_chain(spec: Spec[Any, Any], chain: Sequence[int], canon: Callable[[Any], Any]) -> list[Step]:
    """Rebuild a behaviour from the fingerprints of its (canonical) states: start
    from the initial state whose fingerprint is ``chain[0]`` and, at each step,
    take the action whose canonical successor has the next fingerprint."""
    state = next(s for s in spec.init_states() if fingerprint(canon(s)) == chain[0])
    steps = [Step(None, state)]
    for target in chain[1:]:
        for action, nxt in spec.successors(state):
            if fingerprint(canon(nxt)) == target:
                steps.append(Step(action, nxt))
                state = nxt
                break
        else:  # pragma: no cover - would mean next_state is not deterministic
            raise RuntimeError("could not replay the path: next_state is not deterministic")
    return steps


def _refines_step(refinement: Any, state: Any, nxt: Any) -> bool:
    abstract = refinement.abstract
    a, b = refinement.mapping(state), refinement.mapping(nxt)
    return a == b or any(t == b for _, t in abstract.successors(a))


def explore(spec: Spec[Any, Any], **options: Any) -> Result:
    """Explore ``spec`` exhaustively; options as for ``Explorer``."""
    return Explorer(spec, **options).run()


def check_refinement_of(spec: Spec[Any, Any], **options: Any) -> Result:
    """Explore ``spec`` checking its refinement mapping on every step, plus that its
    initial states map to the abstract spec's initial states; other options as for
    ``Explorer`` (a depth bound, deadlock)."""
    refinement = spec.refinement()
    if refinement is None:
        raise ValueError(f"spec {spec.name!r} declares no refinement mapping")
    abstract_inits = set(refinement.abstract.init_states())
    for init in spec.init_states():
        if refinement.mapping(init) not in abstract_inits:
            return Result(
                VIOLATED,
                Stats(),
                Violation(
                    "refinement",
                    "RefinesInit",
                    "every initial state maps to an abstract initial state",
                    (Step(None, init),),
                ),
            )
    return explore(spec, check_refinement=True, **options)


def follow_witness(spec: Spec[Any, Any], witness: Sequence[str]) -> Result:
    """Replay a pinned counterexample (each action as ``str`` shows it) from the spec's
    initial state, checking the invariants and step properties after every step; the
    result's violation is the first property that fails.  A witness that does not
    replay (an action not enabled where it stands) raises ValueError naming the step."""
    started = time.perf_counter()
    stats = Stats()
    state = next(iter(spec.init_states()))
    steps = [Step(None, state)]
    invariants, step_properties = list(spec.invariants()), list(spec.step_properties())
    for number, text in enumerate(witness, 1):
        found = next(((a, t) for a, t in spec.successors(state) if str(a) == text), None)
        if found is None:
            raise ValueError(f"witness step {number} ({text}) is not enabled in {spec.name}")
        action, nxt = found
        steps.append(Step(action, nxt))
        stats.generated_states += 1
        broken: Violation | None = None
        for prop in step_properties:
            if broken is None and not prop.holds(state, nxt):
                broken = Violation("action", prop.name, prop.statement, tuple(steps))
        for inv in invariants:
            if broken is None and not inv.holds(nxt):
                broken = Violation("invariant", inv.name, inv.statement, tuple(steps))
        state = nxt
        stats.depth = number + 1
        if broken is not None:
            stats.seconds = time.perf_counter() - started
            return Result(VIOLATED, stats, broken, complete=False)
    stats.seconds = time.perf_counter() - started
    return Result(BOUNDED, stats, None, complete=False)


def check_invariants(spec: Spec[Any, Any], state: Any) -> Sequence[str]:
    """Names of the invariants ``state`` breaks."""
    return [inv.name for inv in spec.invariants() if not inv.holds(state)]
