"""Exhaustive BFS on several cores: the same search as ``checks.search.explore``, sharded.

Where it sits: ``distcheck check SPEC --workers N`` uses it instead of the
sequential ``Explorer``; results (counts, shortest counterexamples, reachability,
deadlock, depth limit, symmetry) are the same, and tests hold it to that.

How: the fingerprint space is split among N worker processes (a fingerprint
belongs to worker ``fingerprint % N``), each keeping the seen set and parent
pointers of its share.  A worker keeps every state it computes and asks the
owner of its fingerprint whether it is new, so mostly integers cross processes.
The search is level-synchronous, so counterexamples stay shortest:

1. *expand*: each worker computes the successors of its frontier.  A successor
   whose fingerprint it owns it records (and checks) at once; for the others it
   holds the state and sends the owner the fingerprint and the parent's, 16 bytes;
2. *claim*: each owner records the fingerprints it has not seen, taking the
   senders in a fixed order, and answers each sender with one byte per
   fingerprint: new or not;
3. *admit*: each worker checks the held states that were new and adds them to
   its next frontier (together with those it recorded in step 1);
4. *rebalance*: a state is expanded by the worker that found it, so a worker
   with a much longer frontier than the others hands them part of it (pickled:
   the only states that travel, besides the initial ones).  Once the frontiers
   are even they tend to stay so, and little moves.

Before, every state went to its owner pickled, and pickling a state cost about as
much as expanding it: two processes were slower than one.  A worker remembers
which fingerprints it has asked about and asks about each at most once (an
answered one is in its owner's seen set).  Who claims a state first is fixed (the
owner, then the senders in order), so runs are reproducible.  A counterexample is
rebuilt by asking the owners for parent fingerprints and replaying, as the
sequential explorer does.  Workers are forked, so they inherit the spec (no
pickling of specs, which may hold lambdas); the coordinator forwards the batches
as bytes.
"""

from __future__ import annotations

import gc
import multiprocessing
import pickle
import time
from array import array
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from distcheck.checks.search.explore import (
    _KNOWN_RAW_LIMIT,
    ProgressCallback,
    Result,
    Stats,
    Step,
    Violation,
    replay_chain,
)
from distcheck.checks.verdict import BOUNDED, OK, VIOLATED
from distcheck.spec.contract import Spec
from distcheck.spec.values import fingerprint


def _worker(
    spec: Spec[Any, Any], index: int, workers: int, conn: Connection, symmetry: bool, check_deadlock: bool
) -> None:
    # As in Explorer.run: the frontier is long-lived, so the youngest generation
    # of the cyclic collector runs less often (it is a forked copy: no restore).
    gc.set_threshold(max(gc.get_threshold()[0], 100_000), *gc.get_threshold()[1:])
    canon: Callable[[Any], Any] | None = spec.canonical if symmetry else None
    invariants = list(spec.invariants())
    step_properties = list(spec.step_properties())
    pending = {p.name: p for p in spec.reachable()}
    within = spec.within_bounds if type(spec).within_bounds is not Spec.within_bounds else None
    seen: dict[int, int] = {}  # fingerprint -> parent fingerprint, for this worker's share
    asked: set[int] = set()  # fingerprints of other shares already asked about
    frontier: list[tuple[Any, int]] = []
    found_here: list[tuple[Any, int]] = []  # own share, recorded during expansion
    held: list[list[tuple[Any, int]]] = [[] for _ in range(workers)]  # other shares, awaiting the owner's answer
    reached: dict[str, int] = {}
    known_raw: set[int] = set()  # under symmetry: fingerprints of unreduced successors already handled

    def check(state: Any, fp: int) -> tuple[str, int] | None:
        for inv in invariants:
            if not inv.holds(state):
                return inv.name, fp
        if pending:
            for name in [n for n, p in pending.items() if p.holds(state)]:
                reached[name] = fp
                del pending[name]
        return None

    while True:
        command = conn.recv()
        if command[0] == "seed":  # the initial states of this share
            violations = []
            for state, fp in pickle.loads(command[1]):
                if fp in seen:
                    continue
                seen[fp] = fp
                broken = check(state, fp)
                if broken:
                    violations.append(broken)
                frontier.append((state, fp))
            conn.send((len(frontier), violations, dict(reached)))
        elif command[0] == "expand":
            queries = [array("Q") for _ in range(workers)]  # (fingerprint, parent) pairs, per owner
            generated = 0
            violations = []
            deadlock = None
            truncated = False
            last_level = command[1]
            for state, fp in frontier:
                pairs = spec.successors(state)
                if not pairs:
                    if check_deadlock and deadlock is None:
                        deadlock = fp
                    continue
                if last_level:  # depth limit: only note that something lies beyond
                    truncated = True
                    continue
                generated += len(pairs)
                for _action, nxt in pairs:
                    # A broken step property is reported at the state the step leaves.
                    for prop in step_properties:
                        if not prop.holds(state, nxt):
                            violations.append((prop.name, fp))
                    if within is not None and not within(nxt):
                        continue
                    if canon is not None:  # skip states canonicalised before, as Explorer does
                        raw = fingerprint(nxt)
                        if raw in known_raw:
                            continue
                        if len(known_raw) >= _KNOWN_RAW_LIMIT:
                            known_raw.clear()
                        known_raw.add(raw)
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
                    elif nfp not in asked:
                        asked.add(nfp)
                        held[owner].append((nxt, nfp))
                        queries[owner].append(nfp)
                        queries[owner].append(fp)
            frontier = []
            conn.send((generated, violations, deadlock, truncated, dict(reached)))
            for owner in range(workers):
                conn.send_bytes(queries[owner].tobytes())
        elif command[0] == "claim":  # from each sender in turn: which of its fingerprints are new
            answers = []
            for blob in command[1]:
                asked_here = array("Q")
                asked_here.frombytes(blob)
                new = bytearray(len(asked_here) // 2)
                for i in range(0, len(asked_here), 2):
                    nfp = asked_here[i]
                    if nfp not in seen:
                        seen[nfp] = asked_here[i + 1]
                        new[i // 2] = 1
                answers.append(bytes(new))
            conn.send(answers)
        elif command[0] == "admit":  # the owners' answers, one per owner
            frontier, found_here = found_here, []
            violations = []
            for owner, answer in enumerate(command[1]):
                for (state, fp), new in zip(held[owner], answer):
                    if new:
                        broken = check(state, fp)
                        if broken:
                            violations.append(broken)
                        frontier.append((state, fp))
                held[owner] = []
            conn.send((len(frontier), violations, dict(reached)))
        elif command[0] == "give":  # part of the frontier, for workers with less to do
            blobs = []
            for _recipient, count in command[1]:
                frontier, given = frontier[: len(frontier) - count], frontier[len(frontier) - count :]
                blobs.append(pickle.dumps(given, protocol=pickle.HIGHEST_PROTOCOL))
            conn.send(blobs)
        elif command[0] == "take":  # states given by other workers, already checked there
            for blob in command[1]:
                frontier.extend(pickle.loads(blob))
        elif command[0] == "parent":
            conn.send(seen[command[1]])
        elif command[0] == "count":
            conn.send(len(seen))
        else:
            conn.close()
            return


def _step_holds(spec: Spec[Any, Any], name: str, state: Any, nxt: Any) -> bool:
    return all(prop.holds(state, nxt) for prop in spec.step_properties() if prop.name == name)


def _rebalance(sizes: list[int]) -> list[tuple[int, int, int]]:
    """Moves (giver, recipient, count) that even out the workers' frontiers, or
    none when they are even enough.

    A worker expands the states it found, so without moves a search that starts
    from one initial state would stay on the worker that owns it.  Once even, the
    frontiers tend to stay so (a state found by several workers goes to its owner,
    one found by a single worker stays with it), and few states move.
    """
    total = len(sizes) and sum(sizes)
    if not total or max(sizes) - min(sizes) <= max(64, total // 10):
        return []
    share, extra = divmod(total, len(sizes))
    targets = [share + (1 if k < extra else 0) for k in range(len(sizes))]
    surplus = [[k, sizes[k] - targets[k]] for k in range(len(sizes)) if sizes[k] > targets[k]]
    moves = []
    for k in range(len(sizes)):
        need = targets[k] - sizes[k]
        while need > 0:
            giver = surplus[0]
            count = min(need, giver[1])
            moves.append((giver[0], k, count))
            need -= count
            giver[1] -= count
            if giver[1] == 0:
                surplus.pop(0)
    return moves


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

        # The initial states go to their owners (the only states that travel).
        batches: list[list[tuple[Any, int]]] = [[] for _ in range(workers)]
        for init in spec.init_states():
            stats.generated_states += 1
            state = self._canon(init)
            fp = fingerprint(state)
            batches[fp % workers].append((state, fp))
        for conn, batch in zip(conns, batches):
            conn.send(("seed", pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)))
        absorbed = [conn.recv() for conn in conns]

        level = 0  # steps from an initial state of the states just added to the frontiers
        complete = True
        while True:
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
            moves = _rebalance([n for n, _, _ in absorbed])
            if moves and not last_level:
                givers = sorted({giver for giver, _, _ in moves})
                for giver in givers:
                    conns[giver].send(("give", [(to, count) for g, to, count in moves if g == giver]))
                given = {giver: conns[giver].recv() for giver in givers}
                taken: dict[int, list[bytes]] = {}
                for giver in givers:
                    recipients = [to for g, to, _ in moves if g == giver]
                    for to, blob in zip(recipients, given[giver]):
                        taken.setdefault(to, []).append(blob)
                for to, blobs in sorted(taken.items()):
                    conns[to].send(("take", blobs))
            for conn in conns:
                conn.send(("expand", last_level))
            replies = []
            queries: list[list[bytes]] = []  # [sender][owner]
            for conn in conns:
                replies.append(conn.recv())
                queries.append([conn.recv_bytes() for _ in range(workers)])
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
            for owner, conn in enumerate(conns):
                conn.send(("claim", [queries[sender][owner] for sender in range(workers)]))
            answers = [conn.recv() for conn in conns]  # [owner][sender]
            for sender, conn in enumerate(conns):
                conn.send(("admit", [answers[owner][sender] for owner in range(workers)]))
            absorbed = [conn.recv() for conn in conns]
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
