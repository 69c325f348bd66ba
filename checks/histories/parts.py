"""A whole history's verdict from its sub-histories: budgets, a deadline, and the
sub-histories checked on several cores.

Where it sits: ``distcheck linearizable`` (``checks.cli.histories``) reads a file
(``checks.histories.formats``) and asks ``check_parts`` for the verdict;
``check_parts`` asks the model to split the history (one part per key of a map) and
``checks.histories.linearizability.check_part`` to search each part.  Linearizability
is local (Herlihy & Wing), so the history is linearizable exactly when every part
is, and a part's verdict does not depend on the others.  ``check_file`` is the two
steps in one call, for a benchmark or a script.

Order.  Parts are checked smallest first, in two rounds: each with a budget of
``FIRST_ROUND_STEPS`` search steps, then the ones that ran out with the full
``max_steps`` each.  A part that fails quickly is so found before another part's
long search.  The verdict is the first decisive result in that order: the first
part no order explains, else (a part still undecided) unknown, else ok.

On several cores (``workers`` > 1).  When a round has two parts or more and the
history has at least ``PARALLEL_MIN_OPERATIONS`` operations, the round's parts are
searched by a pool of worker processes (``concurrent.futures``; forked where the
system can, so a part is not copied to a worker), and the results are read back in
the same order as above.  Each part's search is deterministic, so the verdict, the
failing part, its report and the step count are the same as with one process; only
the time differs.  Below the threshold a pool costs more to start than the search
takes (measured: docs/histories.md).  ``steps`` counts the work the verdict needed,
as one process does it: a worker's search of a part after the deciding one is
not counted, since one process would never have run it.

The deadline (``timeout``) is a ``time.monotonic()`` reading that every search
checks, in this process or a worker (the clock is the same across processes).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from distcheck.checks.histories.formats import History, read_history
from distcheck.checks.histories.linearizability import (
    DEFAULT_MAX_STEPS,
    HistoryTooLarge,
    Linearizability,
    Model,
    Operation,
    PartSearch,
    SearchTimedOut,
    Stuck,
    check_operations,
)
from distcheck.checks.verdict import OK, UNKNOWN, VIOLATED

if TYPE_CHECKING:
    import concurrent.futures

# The first round's budget for each part; the second round has max_steps.
FIRST_ROUND_STEPS: Final = 10_000
# A pool of workers pays for itself from about this many operations in the history
# (docs/histories.md, "On several cores", has the measurements).
PARALLEL_MIN_OPERATIONS: Final = 1_000


@attrs.define
class Outcome:
    """The verdict on a history (``OK``, ``VIOLATED`` or ``UNKNOWN``), with the message
    to print; ``order`` a witness when ok; ``failure`` the checker's account of the
    part no order explains when violated; ``steps`` the search's work; ``workers``
    the processes that searched (1: this one)."""

    verdict: str
    message: str
    sub_histories: Sequence[Sequence[Operation]]
    order: tuple[Operation, ...] = ()
    failure: Linearizability | None = None
    steps: int = 0
    workers: int = 1

    @property
    def parts(self) -> int:
        return len(self.sub_histories)


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_parts(
    model: Model[Any],
    ops: Sequence[Operation],
    max_steps: int = DEFAULT_MAX_STEPS,
    timeout: float | None = None,
    workers: int = 1,
) -> Outcome:
    """The verdict on ``ops``: each part checked on its own, in a round of short
    searches and then one of searches up to ``max_steps`` each, stopping at the
    first part that no order explains.  ``ValueError`` (one line) for a malformed
    history or operations the model refuses."""
    deadline = None if timeout is None else time.monotonic() + timeout
    parts = sorted(model.partition(ops), key=len)
    for part in parts:
        check_operations(part)
    pool_size = min(workers, len(parts)) if len(ops) >= PARALLEL_MIN_OPERATIONS else 1
    runner = _Runner(model, parts, deadline, pool_size)
    try:
        return _decide(runner, ops, parts, max_steps, timeout)
    finally:
        runner.close()


def check_file(
    path: str | Path,
    model: str | Model[Any] = "kv",
    initial: Any = None,
    fmt: str = "auto",
    max_steps: int = DEFAULT_MAX_STEPS,
    timeout: float | None = None,
    workers: int | None = None,
) -> tuple[History, Outcome]:
    """Read ``path`` and check it: what ``distcheck linearizable`` does, without the
    printing (``workers`` None: every core).  ``model`` is a name (``load_model``)
    or a model; ``initial`` None keeps the model's own initial value (a string for
    Porcupine's key-value files: ``initial=""``).  ``InputError`` for a file that
    breaks its format, ``ValueError`` for a model or history that is refused."""
    from distcheck.checks.histories.models import NO_INITIAL, load_model

    loaded = load_model(model, NO_INITIAL if initial is None else initial) if isinstance(model, str) else model
    history = read_history(path, loaded, fmt)
    outcome = check_parts(
        loaded, history.operations, max_steps, timeout, default_workers() if workers is None else workers
    )
    return history, outcome


def _decide(
    runner: _Runner, ops: Sequence[Operation], parts: list[list[Operation]], max_steps: int, timeout: float | None
) -> Outcome:
    orders: dict[int, tuple[Operation, ...]] = {}
    undecided = list(range(len(parts)))
    budget = min(FIRST_ROUND_STEPS, max_steps)
    # Each part's steps as its search last reported them: a part's second round goes
    # on from its first (in this process; a worker that did not search it in the
    # first round starts afresh and reaches the same count), so a part's count is
    # its search's, once.
    counted: dict[int, int] = {}
    while True:
        still: list[int] = []
        for index, found in runner.run(undecided, budget):
            counted[index] = found.steps
            steps = sum(counted.values())
            if found.kind == _TIMED_OUT:
                message = f"the search took longer than --timeout {timeout:g} s"
                return Outcome(UNKNOWN, message, parts, steps=steps, workers=runner.size)
            if found.kind == _OVER:
                still.append(index)
                continue
            if found.kind == _VIOLATED:
                failure = found.rebuild(parts[index])
                return Outcome(VIOLATED, failure.message, parts, failure=failure, steps=steps, workers=runner.size)
            orders[index] = tuple(parts[index][i] for i in found.order)
        if not still:
            break
        if budget >= max_steps:
            sizes = ", ".join(str(len(parts[i])) for i in still)
            return Outcome(
                UNKNOWN,
                f"the search exceeded --max-steps {max_steps:,} on {len(still)} sub-history(ies) "
                f"(of {sizes} operations) without an answer; every other one is linearizable",
                parts,
                steps=sum(counted.values()),
                workers=runner.size,
            )
        undecided = still
        budget = max_steps
    order = merge_orders([orders[i] for i in range(len(parts))])
    steps = sum(counted.values())
    return Outcome(OK, _ok_message(ops, len(parts)), parts, order=order, steps=steps, workers=runner.size)


def _ok_message(ops: Sequence[Operation], parts: int) -> str:
    pending = sum(1 for o in ops if o.ret is None)
    never = f", {pending} of which never completed" if pending else ""
    return (
        f"linearizable: {len(ops)} operations{never}, in {parts} independent sub-histor{'y' if parts == 1 else 'ies'}"
    )


def merge_orders(orders: Sequence[Sequence[Operation]]) -> tuple[Operation, ...]:
    """One order of the whole history from each part's: each operation at the latest
    invocation among itself and those before it in its own order.  That point lies
    inside the operation's interval, so sorting by it keeps each part's order and
    real time across them."""
    points: list[tuple[int, int, int, Operation]] = []
    for part, order in enumerate(orders):
        latest = None
        for index, operation in enumerate(order):
            latest = operation.call if latest is None else max(latest, operation.call)
            points.append((latest, part, index, operation))
    points.sort(key=lambda p: p[:3])
    return tuple(p[3] for p in points)


# ------------------------------------------------------------------ one part's search

_OK: Final = "ok"
_VIOLATED: Final = "violated"
_OVER: Final = "over budget"
_TIMED_OUT: Final = "timed out"


@attrs.frozen
class _Found:
    """One part's search, as positions in the part (a worker's answer carries no
    operations: the parent maps positions back onto its own)."""

    kind: str
    steps: int
    order: tuple[int, ...] = ()
    message: str = ""
    prefix: tuple[int, ...] = ()
    stuck: tuple[tuple[int, Any], ...] = ()

    def rebuild(self, part: Sequence[Operation]) -> Linearizability:
        return Linearizability(
            False,
            None,
            self.message,
            sub_history=tuple(part),
            prefix=tuple(part[i] for i in self.prefix),
            stuck=tuple(Stuck(part[i], answer) for i, answer in self.stuck),
            steps=self.steps,
        )


def _search(search: PartSearch, budget: int, deadline: float | None) -> _Found:
    part = search.part
    try:
        result = search.check(budget, deadline)
    except HistoryTooLarge as exc:
        return _Found(_OVER, exc.steps)
    except SearchTimedOut as exc:
        return _Found(_TIMED_OUT, exc.steps)
    position = {id(o): i for i, o in enumerate(part)}
    if result.ok:
        return _Found(_OK, result.steps, tuple(position[id(o)] for o in result.order or ()))
    return _Found(
        _VIOLATED,
        result.steps,
        message=result.message,
        prefix=tuple(position[id(o)] for o in result.prefix),
        stuck=tuple((position[id(s.operation)], s.answer) for s in result.stuck),
    )


# A worker's model, parts and deadline, set once when it starts, and the searches
# it has begun (a part's second round goes on from its first when the same worker
# gets it).
_worker: tuple[Model[Any], list[list[Operation]], float | None] | None = None
_worker_searches: dict[int, PartSearch] = {}


def _start_worker(model: Model[Any], parts: list[list[Operation]], deadline: float | None) -> None:
    global _worker
    _worker = (model, parts, deadline)
    _worker_searches.clear()


def _search_in_worker(index: int, budget: int) -> _Found:
    assert _worker is not None, "the pool starts its workers with _start_worker"
    model, parts, deadline = _worker
    search = _worker_searches.setdefault(index, PartSearch(parts[index], model))
    return _search(search, budget, deadline)


class _Runner:
    """Runs a round of parts' searches, here or in a pool, and yields each result in
    the order the parts were given (so the first decisive one is the same either way)."""

    def __init__(self, model: Model[Any], parts: list[list[Operation]], deadline: float | None, size: int) -> None:
        self.model = model
        self.parts = parts
        self.deadline = deadline
        self.size = max(1, size)
        self.pool: concurrent.futures.ProcessPoolExecutor | None = None
        self.searches: dict[int, PartSearch] = {}

    def run(self, indices: Sequence[int], budget: int) -> Iterator[tuple[int, _Found]]:
        if self.size == 1 or len(indices) < 2:
            for index in indices:
                search = self.searches.setdefault(index, PartSearch(self.parts[index], self.model))
                yield index, _search(search, budget, self.deadline)
            return
        pool = self._pool()
        futures = [pool.submit(_search_in_worker, index, budget) for index in indices]
        try:
            for index, future in zip(indices, futures):
                yield index, future.result()
        finally:
            # The caller stopped at a decisive result: the searches not started are not needed.
            for future in futures:
                future.cancel()

    def _pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self.pool is None:
            # Imported here: a history checked in this process has no use for them.
            import concurrent.futures
            import multiprocessing

            methods = multiprocessing.get_all_start_methods()
            # Forked workers share the parts with this process instead of receiving a copy.
            context = multiprocessing.get_context("fork" if "fork" in methods else None)
            self.pool = concurrent.futures.ProcessPoolExecutor(
                self.size,
                mp_context=context,
                initializer=_start_worker,
                initargs=(self.model, self.parts, self.deadline),
            )
        return self.pool

    def close(self) -> None:
        if self.pool is None:
            return
        # A worker may still be searching a part the verdict no longer needs (up to
        # max_steps): stop it rather than wait for it, here or at the interpreter's
        # exit.  The executor has no public way to (before Python 3.14's
        # terminate_workers), hence its table of processes.
        processes = dict(getattr(self.pool, "_processes", None) or {})
        self.pool.shutdown(wait=False, cancel_futures=True)
        for process in processes.values():
            if process.is_alive():
                process.terminate()
        for process in processes.values():
            process.join()
        self.pool = None
