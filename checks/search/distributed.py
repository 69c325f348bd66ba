"""Exhaustive BFS on a Dask cluster: the sharded, level-synchronous search of
``checks.search.parallel``, with its shards living on the cluster's workers.

Where it sits: ``distcheck check SPEC --scheduler tcp://HOST:PORT`` (without
``--swarm``) runs it instead of the sequential ``Explorer``; the results (counts,
shortest counterexamples, reachability, deadlock, depth limit, symmetry) are the
same, and tests hold it to that on a local cluster.  The swarm (``checks.swarm``)
samples behaviours on the same kind of cluster; this module searches them all.

How: as in ``checks.search.parallel``, the fingerprint space is split into shards (a state
belongs to shard ``fingerprint % shards``), each keeping the seen set and parent
pointers of its share, and the search is level-synchronous, so counterexamples
stay shortest.  Here a shard is a Dask *actor* (a stateful object on one worker,
pinned round-robin to the workers), and the coordinator is the calling process:

1. *absorb*: each shard takes the batches other shards produced for it, keeps the
   new states and checks them;
2. *expand*: each shard computes the successors of its new states; those it owns
   it keeps (and checks), the others leave as one pickled batch per owner, which
   the coordinator hands on as bytes to the owner's next *absorb*.

A spec may hold lambdas and cannot be pickled, so a shard is sent only a recipe
(a picklable callable such as ``RegistrySpec``: registry name, parameters,
variant) and builds the spec itself; the workers need distcheck installed.  A
counterexample is rebuilt by asking the owners for parent fingerprints and
replaying on the coordinator's own copy of the spec (``replay_chain``).

The pieces do not depend on Dask: ``Shard`` is one share's per-level logic,
``search_levels`` the coordinator over any ``Shards`` transport, and
``DaskExplorer`` the Dask transport.  Unlike ``checks.search.parallel``, which
keeps each state where it was found and sends its owner only fingerprints, a state
here travels to its owner pickled: simpler, and across machines the network, not
pickling, is what a batch costs; the two could share the same pieces.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import attrs

from distcheck.checks.params import find_spec
from distcheck.checks.search.explore import ProgressCallback, Result, Stats, Step, Violation, replay_chain
from distcheck.checks.search.swarm import SchedulerError, check_scheduler
from distcheck.checks.verdict import BOUNDED, OK, VIOLATED
from distcheck.spec.contract import Spec
from distcheck.spec.values import fingerprint

#: A batch of states for one shard, as it travels: (state, fingerprint, parent fingerprint).
Batch = list[tuple[Any, int, int]]


@attrs.frozen
class RegistrySpec:
    """A spec of the registry by name, parameters and variant: plain values, so it
    pickles, and any worker rebuilds the same spec from it."""

    name: str
    params: dict[str, Any]
    variant: str | None = None

    def __call__(self) -> Spec[Any, Any]:
        return find_spec(self.name).make(variant=self.variant, **self.params)


class Absorbed(NamedTuple):
    frontier: int  # new states this shard will expand next
    violations: list[tuple[str, int]]  # (invariant, fingerprint) broken by a new state
    reached: dict[str, int]  # reachability property -> a fingerprint that reached it
    seen: int  # this shard's distinct states so far


class Expanded(NamedTuple):
    generated: int
    violations: list[tuple[str, int]]  # invariants broken by a new state, step properties by a step from it
    deadlock: int | None  # a state with no successor (when deadlocks are checked)
    truncated: bool  # the depth limit left successors unexplored
    reached: dict[str, int]
    seen: int
    outboxes: list[bytes]  # for each shard, the pickled batch of the states it owns


class Shard:
    """One share of the fingerprint space: the states whose fingerprint is ``index``
    modulo ``shards``, their parents, and the frontier of the current level."""

    def __init__(self, spec: Spec[Any, Any], index: int, shards: int, symmetry: bool, check_deadlock: bool) -> None:
        self.spec = spec
        self.index, self.shards = index, shards
        self.canon: Callable[[Any], Any] = spec.canonical if symmetry else (lambda s: s)
        self.check_deadlock = check_deadlock
        self.invariants = list(spec.invariants())
        self.step_properties = list(spec.step_properties())
        self.pending = {p.name: p for p in spec.reachable()}
        self.seen: dict[int, int] = {}  # fingerprint -> parent fingerprint, for this share
        self.sent: set[int] = set()  # fingerprints already sent to their owners: each goes once
        self.frontier: list[tuple[Any, int]] = []
        self.found_here: list[tuple[Any, int]] = []  # discovered while expanding, for the next level
        self.reached: dict[str, int] = {}

    def _check(self, state: Any, fp: int) -> tuple[str, int] | None:
        for inv in self.invariants:
            if not inv.holds(state):
                return inv.name, fp
        for name in [n for n, p in self.pending.items() if p.holds(state)]:
            self.reached[name] = fp
            del self.pending[name]
        return None

    def absorb(self, blobs: Sequence[bytes]) -> Absorbed:
        self.frontier, self.found_here = self.found_here, []
        violations = []
        for blob in blobs:
            batch: Batch = pickle.loads(blob)
            for state, fp, parent in batch:
                if fp in self.seen:
                    continue
                self.seen[fp] = parent
                broken = self._check(state, fp)
                if broken:
                    violations.append(broken)
                self.frontier.append((state, fp))
        return Absorbed(len(self.frontier), violations, dict(self.reached), len(self.seen))

    def expand(self, last_level: bool) -> Expanded:
        outboxes: list[Batch] = [[] for _ in range(self.shards)]
        generated = 0
        violations: list[tuple[str, int]] = []
        deadlock = None
        truncated = False
        seen, sent, within = self.seen, self.sent, self.spec.within_bounds
        for state, fp in self.frontier:
            successors = 0
            for _action, nxt in self.spec.successors(state):
                successors += 1
                if last_level:  # depth limit: only note that something lies beyond
                    truncated = True
                    break
                generated += 1
                # A broken step property is reported at the state the step leaves.
                violations.extend((p.name, fp) for p in self.step_properties if not p.holds(state, nxt))
                if not within(nxt):
                    continue
                nxt = self.canon(nxt)
                nfp = fingerprint(nxt)
                owner = nfp % self.shards
                if owner == self.index:
                    if nfp in seen:
                        continue
                    seen[nfp] = fp
                    broken = self._check(nxt, nfp)
                    if broken:
                        violations.append(broken)
                    self.found_here.append((nxt, nfp))
                elif nfp not in sent:
                    sent.add(nfp)
                    outboxes[owner].append((nxt, nfp, fp))
            if successors == 0 and self.check_deadlock and deadlock is None:
                deadlock = fp
        self.frontier = []  # expanded: the states need not stay in memory
        blobs = [pickle.dumps(box, protocol=pickle.HIGHEST_PROTOCOL) for box in outboxes]
        return Expanded(generated, violations, deadlock, truncated, dict(self.reached), len(seen), blobs)

    def parent(self, fp: int) -> int:
        return self.seen[fp]

    def count(self) -> int:
        return len(self.seen)


class DaskShard(Shard):
    """A ``Shard`` as a Dask actor: built on its worker from a spec recipe."""

    def __init__(
        self, make: Callable[[], Spec[Any, Any]], index: int, shards: int, symmetry: bool, check_deadlock: bool
    ) -> None:
        super().__init__(make(), index, shards, symmetry, check_deadlock)


def _step_holds(spec: Spec[Any, Any], name: str, state: Any, nxt: Any) -> bool:
    return all(prop.holds(state, nxt) for prop in spec.step_properties() if prop.name == name)


class Shards(Protocol):
    """The coordinator's view of the shards, whatever carries the calls (Dask
    actors here; pipes to forked processes would do as well)."""

    def __len__(self) -> int: ...

    def call_all(self, method: str, per_shard: Sequence[tuple[Any, ...]]) -> list[Any]:
        """``Shard.method`` on every shard (shard k with ``per_shard[k]``), all at
        once; their answers in shard order."""
        ...

    def call_one(self, index: int, method: str, *args: Any) -> Any:
        """``Shard.method`` on shard ``index``; its answer."""
        ...


class _Actors:
    """``Shards`` over Dask actors: a call returns a future at once, so every shard
    works while the coordinator waits for the first answer."""

    def __init__(self, actors: list[Any]) -> None:
        self.actors = actors

    def __len__(self) -> int:
        return len(self.actors)

    def call_all(self, method: str, per_shard: Sequence[tuple[Any, ...]]) -> list[Any]:
        futures = [getattr(actor, method)(*args) for actor, args in zip(self.actors, per_shard)]
        return [future.result() for future in futures]

    def call_one(self, index: int, method: str, *args: Any) -> Any:
        return getattr(self.actors[index], method)(*args).result()


def search_levels(
    spec: Spec[Any, Any],
    shards: Shards,
    *,
    symmetry: bool = False,
    max_depth: int | None = None,
    progress: ProgressCallback | None = None,
) -> Result:
    """The coordinator: drive ``shards`` (built for ``spec``, with the same symmetry
    and deadlock options) level by level, and turn what they report into the
    ``Result`` the sequential explorer would give."""
    count = len(shards)
    canon: Callable[[Any], Any] = spec.canonical if symmetry else (lambda s: s)
    started = time.perf_counter()
    stats = Stats()
    reached: dict[str, int] = {}
    statements = {inv.name: inv.statement for inv in spec.invariants()}
    step_statements = {prop.name: prop.statement for prop in spec.step_properties()}
    pending = {p.name: p.statement for p in spec.reachable()}

    def finish(violation: Violation | None, complete: bool = True, unreached: tuple[str, ...] = ()) -> Result:
        stats.distinct_states = sum(shards.call_all("count", [()] * count))
        stats.seconds = time.perf_counter() - started
        verdict = VIOLATED if violation is not None else OK if complete else BOUNDED
        return Result(verdict, stats, violation, complete=complete, reached=tuple(sorted(reached)), unreached=unreached)

    def path(fp: int) -> tuple[Step, ...]:
        chain = [fp]
        while (parent := shards.call_one(chain[-1] % count, "parent", chain[-1])) != chain[-1]:
            chain.append(parent)
        chain.reverse()
        return tuple(replay_chain(spec, chain, canon))

    def invariant_violation(found: list[tuple[str, int]]) -> Violation:
        name, fp = min(found, key=lambda nv: nv[1])  # the same choice in every run
        if name in step_statements:  # a step from the state ``fp`` broke it
            steps = path(fp)
            last = steps[-1].state
            bad = next((a, t) for a, t in spec.successors(last) if not _step_holds(spec, name, last, t))
            return Violation("action", name, step_statements[name], (*steps, Step(*bad)))
        return Violation("invariant", name, statements[name], path(fp))

    def note(replies: Sequence[Absorbed | Expanded]) -> None:
        for reply in replies:
            for name, fp in reply.reached.items():
                reached.setdefault(name, fp)

    # The initial states go to their owners as the first batch to absorb.
    batches: list[Batch] = [[] for _ in range(count)]
    for init in spec.init_states():
        stats.generated_states += 1
        state = canon(init)
        fp = fingerprint(state)
        batches[fp % count].append((state, fp, fp))
    incoming = [[pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)] for batch in batches]

    level = 0  # steps from an initial state of the states being absorbed
    complete = True
    while True:
        absorbed: list[Absorbed] = shards.call_all("absorb", [(blobs,) for blobs in incoming])
        note(absorbed)
        found = [v for reply in absorbed for v in reply.violations]
        frontier = sum(reply.frontier for reply in absorbed)
        if frontier or found:
            stats.depth = max(stats.depth, level + 1)
        if found:
            return finish(invariant_violation(found))
        if frontier == 0:
            break
        last_level = max_depth is not None and level + 1 >= max_depth
        expanded: list[Expanded] = shards.call_all("expand", [(last_level,)] * count)
        note(expanded)
        stats.generated_states += sum(reply.generated for reply in expanded)
        found = [v for reply in expanded for v in reply.violations]
        if found:
            stats.depth = level + 2
            return finish(invariant_violation(found))
        deadlocks = [reply.deadlock for reply in expanded if reply.deadlock is not None]
        if deadlocks:
            trace = path(min(deadlocks))
            return finish(Violation("deadlock", "Deadlock", "some action is enabled in every reachable state", trace))
        if last_level:
            complete = not any(reply.truncated for reply in expanded)
            break
        # Each owner's batches, handed on as bytes: the coordinator never unpickles them.
        incoming = [[reply.outboxes[owner] for reply in expanded] for owner in range(count)]
        level += 1
        if progress is not None:
            stats.distinct_states = sum(reply.seen for reply in expanded)
            stats.seconds = time.perf_counter() - started
            progress(stats)

    unreached = sorted(set(pending) - set(reached))
    if unreached and not complete:  # not reached within the bound: no failure (as Explorer)
        return finish(None, complete, tuple(unreached))
    if unreached:
        name = unreached[0]
        return finish(Violation("unreached", name, pending[name], ()), complete)
    return finish(None, complete)


class DaskExplorer:
    """``Explorer``'s search with its shards on a Dask cluster (same options, same
    results; liveness and refinement checking stay sequential).  ``make`` builds
    the spec and must pickle (``RegistrySpec``, or a module-level function or class);
    ``shards`` defaults to one per worker of the cluster (a worker runs its actors'
    calls one at a time, so more shards than workers buy no parallelism)."""

    def __init__(
        self,
        make: Callable[[], Spec[Any, Any]],
        address: str,
        *,
        shards: int | None = None,
        symmetry: bool = False,
        max_depth: int | None = None,
        check_deadlock: bool = False,
        progress: ProgressCallback | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        if shards is not None and shards < 1:
            raise ValueError("shards must be at least 1")
        self.make = make
        self.spec = make()  # the coordinator's own copy: initial states, statements, replays
        self.address = address
        self.shards = shards
        self.symmetry = symmetry
        self.max_depth = max_depth
        self.check_deadlock = check_deadlock
        self.progress = progress
        self.connect_timeout = connect_timeout

    def run(self) -> Result:
        check_scheduler(self.address)
        from distributed import Client

        try:
            client = Client(self.address, timeout=f"{self.connect_timeout}s")  # type: ignore[no-untyped-call]
        except (OSError, ValueError, TypeError) as exc:  # OSError covers a timeout
            raise SchedulerError(f"cannot reach the Dask scheduler at {self.address}: {exc}") from None
        with client:
            try:
                client.wait_for_workers(1, timeout=self.connect_timeout)
            except (OSError, TimeoutError):
                raise SchedulerError(f"the Dask scheduler at {self.address} has no workers") from None
            workers = sorted(client.nthreads())  # type: ignore[no-untyped-call]
            count = self.shards or len(workers)
            futures = [
                client.submit(
                    DaskShard,
                    self.make,
                    k,
                    count,
                    self.symmetry,
                    self.check_deadlock,
                    actor=True,
                    workers=[workers[k % len(workers)]],  # round-robin, so the shards spread
                    allow_other_workers=False,
                )
                for k in range(count)
            ]
            try:
                try:
                    actors = [future.result() for future in futures]
                except ImportError as exc:  # the workers' Python lacks distcheck (or the recipe's module)
                    raise SchedulerError(f"the Dask workers cannot build the spec: {exc}") from None
                return search_levels(
                    self.spec, _Actors(actors), symmetry=self.symmetry, max_depth=self.max_depth, progress=self.progress
                )
            except OSError as exc:  # a worker, and the shard on it, went away
                raise SchedulerError(f"lost a Dask worker during the search ({self.address}): {exc}") from None
            finally:
                client.cancel(futures)  # type: ignore[no-untyped-call]


def explore_on_dask(
    entry_name: str,
    params: dict[str, Any],
    variant: str | None,
    symmetry: bool,
    max_depth: int | None,
    check_deadlock: bool,
    address: str,
    shards: int | None = None,
    progress: ProgressCallback | None = None,
) -> Result:
    """Explore the registry's spec ``entry_name`` (these parameters and variant)
    exhaustively on the Dask cluster whose scheduler is at ``address``.  Raises
    ``SchedulerError`` (one line) when the cluster cannot be used."""
    return DaskExplorer(
        RegistrySpec(entry_name, params, variant),
        address,
        shards=shards,
        symmetry=symmetry,
        max_depth=max_depth,
        check_deadlock=check_deadlock,
        progress=progress,
    ).run()
