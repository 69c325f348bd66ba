"""The CAP demonstration: one partition, two stores, side by side.

Where it sits: in ``checks/conformance/wiring`` beside the wirings (it is
protocol knowledge, though no wiring: ``distcheck simulate cap`` reaches it through
the package), because it runs two implementations (``impl/registers/abd.py`` and ``impl/registers/dynamo.py``) under
the controlled scheduler and judges their client histories with the
linearizability checker (``checks/histories``); ``distcheck simulate cap`` prints
what it finds (docs/consistency.md reads the table).

The schedule, the same for both stores.  Servers s1, s2, s3; client c1 beside s1,
client c2 beside s2 and s3.  At the start the network splits into {s1, c1} and
{s2, s3, c2} (the runtime's partition with ``sides``).  c2 writes x = "b"; once
that write has returned, c1 reads x, writes x = "a" and reads x again.  When c1 is
through, the partition heals; c2 waits a while (anti-entropy runs meanwhile) and
reads x.  Everything else (message order, timers) the seed chooses.

- ABD needs a majority for every operation: c1's three operations find one server
  and give up (``Unavailable``): the store stays consistent (C) and is not
  available (A) on the minority side.  Every answer it gave is linearizable.
- The Dynamo store (N = 3, R = W = 1, version vectors) answers c1 from s1 alone:
  available on both sides, but c1 reads nothing after c2's write returned, which
  no order of the operations explains, so the history is not linearizable; after
  healing the replicas converge on both values as siblings, losing neither.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from distcheck.checks.histories.linearizability import Operation, check_history
from distcheck.checks.params import UsageError
from distcheck.checks.traces import trace as trace_file
from distcheck.checks.traces.render import plural
from distcheck.impl.paxos import get, put
from distcheck.impl.registers import abd, dynamo
from distcheck.impl.runtime import Choice, ChoiceSource, Context, FaultPolicy, Simulation, TraceLog
from distcheck.impl.runtime.history import History

SERVERS = ("s1", "s2", "s3")
#: the minority side: one server and the client beside it
MINORITY = ("s1", "c1")
KEY = "x"
#: c1's operations, in order, on the minority side
MINORITY_OPS = (get(KEY), put(KEY, "a"), get(KEY))
#: virtual seconds c2 waits after the heal before its last read (anti-entropy runs every 5)
SETTLE = 12.0
STORES = ("abd", "dynamo")
SUMMARY = "the CAP demonstration: the ABD and Dynamo stores under one partition, side by side"


@attrs.define
class Progress:
    """What the clients have done, for the script's conditions and the table."""

    history: History
    results: dict[str, list[Any]] = attrs.field(factory=lambda: {"c1": [], "c2": []})
    healed: bool = False

    def done(self, client: str, count: int) -> bool:
        return len(self.results[client]) >= count


@attrs.frozen
class StoreRun:
    """One store's run under the schedule."""

    store: str
    #: each client's results, in order ("unavailable" for an operation given up on)
    results: Mapping[str, Sequence[Any]]
    linearizable: bool
    #: the checker's verdict in words (it names the operations no order explains)
    verdict: str
    #: per server, the values it holds for x at the end
    replicas: Mapping[str, Sequence[Any]]
    converged: bool
    status: str
    trace: TraceLog

    @property
    def answered_in_partition(self) -> int:
        """How many of the minority client's operations got an answer."""
        return sum(1 for r in self.results["c1"] if r != "unavailable")


class _Script(ChoiceSource):
    """Partition at once, heal once c1 is through; otherwise a seeded random order of
    the ordinary options (messages and threads before the clock, so that timeouts
    fire only when nothing else can happen)."""

    def __init__(self, seed: int, progress: Progress) -> None:
        self.rng = random.Random(seed)
        self.progress = progress
        self.partitioned = False

    def choose(self, options: Sequence[Choice]) -> int:
        side = "+".join(MINORITY)
        for i, option in enumerate(options):
            if not self.partitioned and option.kind == "partition" and option.agent == side:
                self.partitioned = True
                return i
            if self.partitioned and option.kind == "heal" and self.progress.done("c1", len(MINORITY_OPS)):
                self.progress.healed = True
                return i
        ordinary = [i for i, o in enumerate(options) if not o.fault and o.kind != "heal"]
        if not ordinary:  # the healing phase: only healing or restarts are offered
            return next(i for i, o in enumerate(options) if not o.fault)
        moving = [i for i in ordinary if options[i].kind != "advance"]
        return self.rng.choice(moving or ordinary)


def _wait(ctx: Context, condition: Callable[[], bool]) -> None:
    """Block a client (on virtual time) until ``condition`` holds."""
    while not condition():
        ctx.sleep(0.5)


def _client_mains(
    progress: Progress, make: Callable[[Context, str], Any], unavailable: type[Exception]
) -> dict[str, Callable[[Context], None]]:
    def run(ctx: Context, client: Any, op: Mapping[str, Any]) -> None:
        try:
            progress.results[ctx.name].append(client.execute(op))
        except unavailable:
            progress.results[ctx.name].append("unavailable")

    def c1(ctx: Context) -> None:
        client = make(ctx, "c1")
        _wait(ctx, lambda: progress.done("c2", 1))
        for op in MINORITY_OPS:
            run(ctx, client, op)

    def c2(ctx: Context) -> None:
        client = make(ctx, "c2")
        run(ctx, client, put(KEY, "b"))
        _wait(ctx, lambda: progress.healed)
        ctx.sleep(SETTLE)
        run(ctx, client, get(KEY))

    return {"c1": c1, "c2": c2}


def _abd_nodes(progress: Progress) -> tuple[dict[str, Callable[[Context], None]], Callable[[], dict[str, list[Any]]]]:
    timing = abd.Timing(resend=0.5, request_timeout=5.0)
    servers = {name: abd.Server(name) for name in SERVERS}

    def make(ctx: Context, name: str) -> abd.AbdClient:
        return abd.AbdClient(ctx, SERVERS, progress.history, timing)

    def replicas() -> dict[str, list[Any]]:
        return {name: [s.copy(KEY).value] for name, s in servers.items()}

    nodes: dict[str, Callable[[Context], None]] = {name: s.main for name, s in servers.items()}
    nodes.update(_client_mains(progress, make, abd.Unavailable))
    return nodes, replicas


def _dynamo_nodes(
    progress: Progress,
) -> tuple[dict[str, Callable[[Context], None]], Callable[[], dict[str, list[Any]]]]:
    timing = dynamo.Timing(request_timeout=5.0, client_retry=2.0, replica_timeout=1.0, anti_entropy=5.0)
    servers = {name: dynamo.DynamoServer(name, SERVERS, r=1, w=1, timing=timing) for name in SERVERS}
    #: each client talks to the servers on its side of the partition
    near = {"c1": ["s1"], "c2": ["s2", "s3"]}

    def make(ctx: Context, name: str) -> dynamo.DynamoClient:
        return dynamo.DynamoClient(ctx, near[name], progress.history, timing, all_servers=SERVERS)

    def replicas() -> dict[str, list[Any]]:
        return {name: dynamo.sibling_values(s.store.get(KEY, ())) for name, s in servers.items()}

    nodes: dict[str, Callable[[Context], None]] = {name: s.main for name, s in servers.items()}
    nodes.update(_client_mains(progress, make, dynamo.Unavailable))
    return nodes, replicas


def run_store(store: str, seed: int = 0) -> StoreRun:
    """Run ``store`` ("abd" or "dynamo") under the schedule with ``seed``."""
    if store not in STORES:
        raise ValueError(f"unknown store {store!r}; the CAP demonstration runs {', '.join(STORES)}")
    progress = Progress(History())
    nodes, replicas = (_abd_nodes if store == "abd" else _dynamo_nodes)(progress)
    trace = TraceLog(f"{store}_store", {"servers": len(SERVERS)}, source="simulate")

    def over(sim: Simulation) -> bool:
        held = replicas()
        return progress.done("c2", 2) and all(v == held["s1"] for v in held.values())

    sim = Simulation(
        nodes,
        _Script(seed, progress),
        FaultPolicy(partition=True, max_partitions=1, sides=(MINORITY,)),
        fault_steps=20_000,
        max_steps=20_000,
        trace=trace,
        until=over,
    )
    result = sim.run()
    # (the Dynamo client records a get that saw siblings as such: a read no register gives)
    ops = [Operation(e.client, e.call, e.ret, e.op, e.result) for e in progress.history.entries]
    verdict = check_history(ops)
    held = replicas()
    return StoreRun(
        store=store,
        results={c: list(r) for c, r in progress.results.items()},
        linearizable=verdict.ok,
        verdict=verdict.message,
        replicas=held,
        converged=len({repr(v) for v in held.values()}) == 1,
        status=result.status,
        trace=trace,
    )


# ------------------------------------------------------------------ the table

ROWS = (
    ("c2 put x=b (majority side)", "c2", 0),
    ("c1 get x   (minority side)", "c1", 0),
    ("c1 put x=a (minority side)", "c1", 1),
    ("c1 get x   (minority side)", "c1", 2),
    ("-- the partition heals --", "", -1),
    ("c2 get x", "c2", 1),
)


def _result_text(result: Any) -> str:
    if result == "unavailable":
        return "Unavailable (no majority)"
    if isinstance(result, list):  # a Dynamo get: the sibling values
        if not result:
            return "absent"
        return result[0] if len(result) == 1 else "siblings " + ", ".join(map(str, result))
    return "absent" if result is None else str(result)


def _held(run: StoreRun) -> str:
    values = {", ".join(map(str, v)) for v in run.replicas.values()}
    if len(values) == 1:
        return f"all hold {values.pop()}"
    return "; ".join(f"{s} holds {', '.join(map(str, v))}" for s, v in run.replicas.items())


#: the puts of the schedule: (client, its operation's index, the value written)
PUTS = (("c2", 0, "b"), ("c1", 1, "a"))


def lost_writes(run: StoreRun) -> list[str]:
    """Acknowledged puts some replica does not hold at the end (nothing in the
    schedule supersedes a put: each one should be held everywhere once healed)."""
    acked = [(c, v) for c, i, v in PUTS if i < len(run.results[c]) and run.results[c][i] == "ok"]
    return [f"{c} put x={v}" for c, v in acked if not all(v in held for held in run.replicas.values())]


def surprises(abd_run: StoreRun, dynamo_run: StoreRun) -> list[str]:
    """How the runs differ from what the demonstration shows (none, normally): each
    store's run finished, ABD answered nothing on the minority side and stayed
    linearizable, Dynamo answered everything there, and both converged with no
    acknowledged write lost."""
    out = [f"the {r.store} run ended with {r.status}" for r in (abd_run, dynamo_run) if r.status != "ok"]
    if abd_run.answered_in_partition or not abd_run.linearizable:
        out.append(f"ABD answered {abd_run.answered_in_partition} on the minority side; {abd_run.verdict}")
    if dynamo_run.answered_in_partition != len(MINORITY_OPS):
        out.append(f"Dynamo answered only {dynamo_run.answered_in_partition} of c1's operations")
    out += [f"the {r.store} replicas did not converge: {_held(r)}" for r in (abd_run, dynamo_run) if not r.converged]
    out += [f"{r.store} lost an acknowledged write: {w}" for r in (abd_run, dynamo_run) for w in lost_writes(r)]
    return out


def _kept(run: StoreRun) -> str:
    lost = lost_writes(run)
    return "none lost" if not lost else "lost: " + ", ".join(lost)


def table(abd_run: StoreRun, dynamo_run: StoreRun, seed: int) -> str:
    """The two runs side by side, in rows a person reads in ten seconds."""
    head = ("", "ABD (majority quorums)", "Dynamo (N=3, R=W=1, version vectors)")
    rows: list[tuple[str, str, str]] = []
    for label, client, index in ROWS:
        if index < 0:
            rows.append((label, "", ""))
            continue
        cells = []
        for run in (abd_run, dynamo_run):
            results = run.results[client]
            cells.append(_result_text(results[index]) if index < len(results) else "(not run)")
        rows.append((label, cells[0], cells[1]))
    rows.append(
        (
            "answered on the minority side",
            f"{abd_run.answered_in_partition} of {len(MINORITY_OPS)}",
            f"{dynamo_run.answered_in_partition} of {len(MINORITY_OPS)}",
        )
    )
    rows.append(
        (
            "history",
            "linearizable" if abd_run.linearizable else "NOT linearizable",
            "linearizable" if dynamo_run.linearizable else "NOT linearizable",
        )
    )
    rows.append(("replicas after healing", _held(abd_run), _held(dynamo_run)))
    rows.append(("acknowledged writes", _kept(abd_run), _kept(dynamo_run)))
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(3)]
    lines = [
        f"CAP under one partition, {{{', '.join(MINORITY)}}} | {{s2, s3, c2}}, seed {seed}",
        "",
        "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip(),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- the command


def demonstrate(first_seed: int, runs: int, trace_out: str | None, as_json: bool) -> tuple[int, str]:
    """``distcheck simulate cap``: both stores under the schedule with seeds
    ``first_seed ..``; the table of the first seed, the checker's words on the Dynamo
    history, and that run's trace written (``trace_out``, or beside the explorer's
    counterexamples) for ``distcheck show``.  Exit code 1 if a run differs from
    what the demonstration shows (``surprises``)."""
    started = time.perf_counter()
    seeds = range(first_seed, first_seed + runs)
    results = [(seed, run_store("abd", seed), run_store("dynamo", seed)) for seed in seeds]
    seconds = time.perf_counter() - started
    seed, abd_run, dynamo_run = results[0]
    written = Path(trace_out) if trace_out else trace_file.DEFAULT_DIR / f"cap-dynamo-seed{seed}.jsonl"
    try:
        written.parent.mkdir(parents=True, exist_ok=True)
        written.write_text(dynamo_run.trace.text(), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write the trace to {written}: {exc.strerror or exc}") from None
    odd = {s: surprises(a, d) for s, a, d in results}
    failed = {s: found for s, found in odd.items() if found}
    code = 0 if not failed else 1
    if as_json:
        out = {
            "seeds": [seeds[0], seeds[-1]],
            "seconds": round(seconds, 3),
            "verdict": "ok" if not failed else "violated",
            "trace_file": str(written),
            "runs": [
                {
                    "seed": s,
                    **{
                        r.store: {
                            "results": r.results,
                            "linearizable": r.linearizable,
                            "checker": r.verdict,
                            "replicas": r.replicas,
                            "converged": r.converged,
                            "lost_writes": lost_writes(r),
                        }
                        for r in (a, d)
                    },
                    "surprises": odd[s],
                }
                for s, a, d in results
            ],
        }
        return code, json.dumps(out, indent=2)
    lines = [
        table(abd_run, dynamo_run, seed),
        f"\nThe checker on the Dynamo store's history: {dynamo_run.verdict}",
        f"Its run's trace: {written} (distcheck show {written})",
    ]
    if runs > 1:
        verdict = "every run as above" if not failed else f"{len(failed)} differ from the demonstration"
        lines.append(f"\n{plural(runs, 'seed')} ({seeds[0]}..{seeds[-1]}), {seconds:.2f} s: {verdict}")
    lines += [f"seed {s}: " + "; ".join(found) for s, found in failed.items()]
    return code, "\n".join(lines)
