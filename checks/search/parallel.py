"""Exhaustive BFS on several cores: the same search as ``checks.explore``, sharded.

Where it sits: ``distcheck check SPEC --workers N`` uses it instead of the
sequential ``Explorer``; results (counts, shortest counterexamples, reachability,
deadlock, depth limit, symmetry) are the same, and tests hold it to that.

How: the fingerprint space is split among N worker processes (a state belongs to
worker ``fingerprint % N``), each keeping the seen set and parent pointers of its
share.  The search is level-synchronous, so counterexamples stay shortest:

1. *absorb*: each worker takes the states that other workers found for it during
   the last expansion, keeps the new ones, and checks them;
2. *expand*: each worker computes the successors of its new states; those it owns
   it keeps (and checks), the others go to their owner in one pickled batch per
   owner, forwarded by the coordinator as bytes without unpickling.

A worker remembers which fingerprints it has sent before and sends each state at
most once.  A counterexample is rebuilt by asking the owners for parent
fingerprints and replaying, as the sequential explorer does.  Workers are forked,
so they inherit the spec (no pickling of specs, which may hold lambdas).
"""

from __future__ import annotations

import multiprocessing
import pickle
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from distcheck.checks.search.explore import ProgressCallback, Result, Stats, Step, Violation, replay_chain
from distcheck.checks.verdict import BOUNDED, OK, VIOLATED
from distcheck.spec.contract import Spec
from distcheck.spec.values import fingerprint


def _worker(
    spec: Spec[Any, Any], index: int, workers: int, conn: Connection, symmetry: bool, check_deadlock: bool
) -> None:
    canon: Callable[[Any], Any] = spec.canonical if symmetry else (lambda s: s)
    invariants = list(spec.invariants())
    step_properties = list(spec.step_properties())
    pending = {p.name: p for p in spec.reachable()}
    within = spec.within_bounds
    seen: dict[int, int] = {}  # fingerprint -> parent fingerprint, for this worker's share
    sent: set[int] = set()  # fingerprints already sent to their owners
    frontier: list[tuple[Any, int]] = []
    found_here: list[tuple[Any, int]] = []  # discovered during expansion, for the next level
    reached: dict[str, int] = {}

    def check(state: Any, fp: int) -> tuple[str, int] | None:
        for inv in invariants:
            if not inv.holds(state):
                return inv.name, fp
        for name in [n for n, p in pending.items() if p.holds(state)]:
            reached[name] = fp
            del pending[name]
        return None

    while True:
        command = conn.recv()
        if command[0] == "absorb":
            frontier, found_here = found_here, []
            violations = []
            for blob in command[1]:
                for state, fp, parent in pickle.loads(blob):
                    if fp in seen:
                        continue
                    seen[fp] = parent
                    broken = check(state, fp)
                    if broken:
                        violations.append(broken)
                    frontier.append((state, fp))
            conn.send((len(frontier), violations, dict(reached)))
        elif command[0] == "expand":
            outboxes: list[list[tuple[Any, int, int]]] = [[] for _ in range(workers)]
            generated = 0
            violations = []
            deadlock = None
            truncated = False
            last_level = command[1]
            for state, fp in frontier:
                successors = 0
                for _action, nxt in spec.successors(state):
                    successors += 1
                    if last_level:  # depth limit: only note that something lies beyond
                        truncated = True
                        break
                    generated += 1
                    # A broken step property is reported at the state the step leaves.
                    violations.extend((prop.name, fp) for prop in step_properties if not prop.holds(state, nxt))
                    if not within(nxt):
                        continue
                    nxt = canon(nxt)
                    nfp = fingerprint(nxt)
                    owner = nfp % workers
                    if owner == index:
                        if nfp in seen:
                            continue
                        seen[nfp] = fp
                        broken = check(nxt, nfp)
                        if broken:
                            violations.append(broken)
                        found_here.append((nxt, nfp))
                    elif nfp not in sent:
                        sent.add(nfp)
                        outboxes[owner].append((nxt, nfp, fp))
                if successors == 0 and check_deadlock and deadlock is None:
                    deadlock = fp
            conn.send((generated, violations, deadlock, truncated, dict(reached)))
            for owner in range(workers):
                conn.send_bytes(pickle.dumps(outboxes[owner], protocol=pickle.HIGHEST_PROTOCOL))
        elif command[0] == "parent":
            conn.send(seen[command[1]])
        elif command[0] == "count":
            conn.send(len(seen))
        else:
            conn.close()
            return


def _step_holds(spec: Spec[Any, Any], name: str, state: Any, nxt: Any) -> bool:
    return all(prop.holds(state, nxt) for prop in spec.step_properties() if prop.name == name)


class ParallelExplorer:
    """``Explorer``'s search on ``workers`` processes (same options, same results;
    refinement checking stays sequential)."""

    def __init__(
        self,
        spec: Spec[Any, Any],
        *,
        workers: int = 2,
        symmetry: bool = False,
        max_depth: int | None = None,
        check_deadlock: bool = False,
        progress: ProgressCallback | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.spec = spec
        self.workers = workers
        self.symmetry = symmetry
        self.max_depth = max_depth
        self.check_deadlock = check_deadlock
        self.progress = progress

    def _canon(self, state: Any) -> Any:
        return self.spec.canonical(state) if self.symmetry else state

    def run(self) -> Result:
        context = multiprocessing.get_context("fork")
        pipes = [context.Pipe() for _ in range(self.workers)]
        procs = [
            context.Process(
                target=_worker,
                args=(self.spec, k, self.workers, pipes[k][1], self.symmetry, self.check_deadlock),
                daemon=True,
            )
            for k in range(self.workers)
        ]
        for proc in procs:
            proc.start()
        conns = [parent for parent, _ in pipes]
        try:
            return self._search(conns)
        finally:
            for conn in conns:
                try:
                    conn.send(("stop",))
                except (BrokenPipeError, OSError):
                    pass
            for proc in procs:
                proc.join(timeout=5)
                if proc.is_alive():
                    proc.kill()

    def _search(self, conns: list[Connection]) -> Result:
        spec, workers = self.spec, self.workers
        started = time.perf_counter()
        stats = Stats()
        reached: dict[str, int] = {}
        statements = {inv.name: inv.statement for inv in spec.invariants()}
        step_statements = {prop.name: prop.statement for prop in spec.step_properties()}
        pending = {p.name: p.statement for p in spec.reachable()}

        def finish(violation: Violation | None, complete: bool = True, unreached: tuple[str, ...] = ()) -> Result:
            for conn in conns:
                conn.send(("count",))
            stats.distinct_states = sum(conn.recv() for conn in conns)
            stats.seconds = time.perf_counter() - started
            verdict = VIOLATED if violation is not None else OK if complete else BOUNDED
            return Result(
                verdict, stats, violation, complete=complete, reached=tuple(sorted(reached)), unreached=unreached
            )

        def path(fp: int) -> tuple[Any, ...]:
            chain = [fp]
            while True:
                conns[chain[-1] % workers].send(("parent", chain[-1]))
                parent = conns[chain[-1] % workers].recv()
                if parent == chain[-1]:
                    break
                chain.append(parent)
            chain.reverse()
            return tuple(replay_chain(spec, chain, self._canon))

        def invariant_violation(found: list[tuple[str, int]]) -> Violation:
            name, fp = min(found, key=lambda nv: nv[1])  # the same choice in every run
            if name in step_statements:  # a step from the state ``fp`` broke it
                steps = path(fp)
                last = steps[-1].state
                bad = next((a, t) for a, t in spec.successors(last) if not _step_holds(spec, name, last, t))
                return Violation("action", name, step_statements[name], (*steps, Step(*bad)))
            return Violation("invariant", name, statements[name], path(fp))

        # The initial states go to their owners as the first batch to absorb.
        batches: list[list[tuple[Any, int, int]]] = [[] for _ in range(workers)]
        for init in spec.init_states():
            stats.generated_states += 1
            state = self._canon(init)
            fp = fingerprint(state)
            batches[fp % workers].append((state, fp, fp))
        incoming = [[pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)] for batch in batches]

        level = 0  # steps from an initial state of the states being absorbed
        complete = True
        while True:
            for conn, blobs in zip(conns, incoming):
                conn.send(("absorb", blobs))
            absorbed = [conn.recv() for conn in conns]
            found = [v for _, vs, _ in absorbed for v in vs]
            for _, _, got in absorbed:
                for name, fp in got.items():
                    reached.setdefault(name, fp)
            frontier = sum(n for n, _, _ in absorbed)
            if frontier or found:
                stats.depth = max(stats.depth, level + 1)
            if found:
                return finish(invariant_violation(found))
            if frontier == 0:
                break
            last_level = self.max_depth is not None and level + 1 >= self.max_depth
            for conn in conns:
                conn.send(("expand", last_level))
            replies = []
            outgoing: list[list[bytes]] = []
            for conn in conns:
                replies.append(conn.recv())
                outgoing.append([conn.recv_bytes() for _ in range(workers)])
            stats.generated_states += sum(r[0] for r in replies)
            for reply in replies:
                for name, fp in reply[4].items():
                    reached.setdefault(name, fp)
            found = [v for r in replies for v in r[1]]
            if found:
                stats.depth = level + 2
                return finish(invariant_violation(found))
            deadlocks = [r[2] for r in replies if r[2] is not None]
            if deadlocks:
                trace = path(min(deadlocks))
                return finish(
                    Violation("deadlock", "Deadlock", "some action is enabled in every reachable state", trace),
                )
            if last_level:
                complete = not any(r[3] for r in replies)
                break
            incoming = [[outgoing[sender][owner] for sender in range(workers)] for owner in range(workers)]
            level += 1
            if self.progress is not None:
                stats.seconds = time.perf_counter() - started
                self.progress(stats)

        unreached = sorted(set(pending) - set(reached))
        if unreached and not complete:  # not reached within the bound: no failure (as Explorer)
            return finish(None, complete, tuple(unreached))
        if unreached:
            name = unreached[0]
            return finish(Violation("unreached", name, pending[name], ()), complete)
        return finish(None, complete)
