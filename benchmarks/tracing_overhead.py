"""What tracing costs: distcheck's Raft key-value store with telemetry off, passing
trace contexts through, and recording everything, in alternating rounds of one run;
and the free runtime's message path with and without spans.

    .venv/bin/python benchmarks/tracing_overhead.py [--clients 1 8] [--seconds 3]
        [--rounds 2] [--modes off,pass,on] [--ops put,get] [--pings 5000]
        [--ping-repeat 5] [--parts cluster,micro] [--json]

**The cluster** (``distcheck.impl.raft.cluster.LocalCluster``: three server
processes on loopback, the log fsynced on every append, as in benchmarks/raft_kv.py).
Each round starts a fresh cluster in one mode, then, for each operation and number
of clients, drives it for ``--seconds``: closed-loop clients (threads spread over up
to four forked worker processes, one ``cluster.client()`` each, each on its own 16
keys, 16-byte values, one untimed put first), as benchmarks/raft_kv.py does.  The
modes:

- ``off``: the servers without observability flags, no telemetry in the clients: the
  baseline (the facade's calls return at once);
- ``pass``: the base ``impl.telemetry.Telemetry`` installed in each client process
  (it records nothing) and every operation made inside a new root context, so every
  frame carries a ``traceparent`` that the servers, with no telemetry, parse and
  stamp on what they send: the cost of carrying a trace through nodes that do not
  record it;
- ``on``: every server with ``--spans``, ``--metrics-port 0`` and ``--log-json``
  (OpenTelemetry's SDK, batch span processor, JSON-lines files), and in each client
  process an installed ``impl.telemetry.otel.OpenTelemetry`` writing its spans to a
  file with the batch processor: each call is a new trace, every server adds spans;
- ``sampled``: as ``on``, but the clients record one trace in a hundred
  (``OpenTelemetry(sample=0.01)``): the others carry an unsampled ``traceparent`` and
  the servers record nothing for them; metrics and the JSON log as in ``on``.

Rounds go through the modes in turn, ``--rounds`` times (off, pass, on, sampled,
off...), so that whatever else the machine does falls on every mode alike.  Each row
of the first table is one cell of one round: ops/s, p50 and p99 latency, failed
operations (retried after 10 ms, not counted), the CPU time the three servers used
per operation (from /proc, in ms) and the clients' (the load generator's processes,
setup included).  After each round's cells, a line gives the spans it wrote (by the
servers, by the clients, and how many of those are client calls) and the JSON log's
lines, read back (``impl.telemetry.otel.read_spans``) once the cluster has stopped,
to show that tracing really happened; the rounds that ask for none must write none.
The summary pools a mode's rounds (ops over seconds; percentiles over every latency)
and gives the ratio of each mode to ``off``: ``ops/s x`` below 1 and ``p50 x`` above
1 are the cost.
On a shared machine throughput and latency move with whatever else runs from one
round to the next; the servers' CPU time per operation (``srv CPU/op x``) moves
much less, and is the steadier measure of what the telemetry itself costs.

**The message path** (``impl.runtime.free.FreeRuntime``): two nodes in one runtime
(a send between them is encoded, decoded and put in the other's mailbox, no socket)
ping-pong ``--pings`` round trips, started by one message; the time from that
message to the last answer, the best and the median of ``--ping-repeat`` runs, modes
alternating.  Modes: ``off`` (nothing installed, untraced), ``metrics`` (OpenTelemetry installed, the
ping untraced: only the message counters), ``pass`` (base Telemetry, the ping in a
trace: contexts stamped and parsed, no span), ``on`` (OpenTelemetry installed, spans
to a file with the batch processor, the ping in a recorded span: a span per message
handled).  Printed: microseconds per round trip (rt), the ratios to ``off``, and the
spans written (expected: two per round trip, one for the first message, one for the
root).

The machine's load average is printed at the start and the end: the figures are a
comparison made in one run on a shared machine, not capacity.  Benchmarks are not
run by CI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import multiprocessing.synchronize
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from distcheck.impl.raft.client import RaftClient
from distcheck.impl.raft.cluster import LocalCluster
from distcheck.impl.runtime.api import Context, Envelope
from distcheck.impl.runtime.free import FreeRuntime
from distcheck.impl.telemetry import Telemetry, TraceContext, install, span, use

MODES = ("off", "pass", "on", "sampled")
#: the share of client calls recorded in mode ``sampled``
SAMPLE = 0.01
PING_MODES = ("off", "metrics", "pass", "on")
OPS = ("put", "get")
PARTS = ("cluster", "micro")
KEYS_PER_CLIENT = 16
VALUE_BYTES = 16
MAX_WORKERS = 4  # worker processes of the load generator
START_TIMEOUT = 60.0  # seconds for a cluster to accept a write, or a worker to be ready
OP_TIMEOUT = 10.0  # seconds a worker's thread may overrun the window


def otel_missing() -> str | None:
    """Why OpenTelemetry cannot be used here, or None."""
    try:
        import distcheck.impl.telemetry.otel  # noqa: F401
    except ImportError as error:
        return str(error)
    return None


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def key(client: int, n: int) -> str:
    return f"key-{client}-{n % KEYS_PER_CLIENT}"


def value(client: int, n: int) -> str:
    return f"{client}-{n}".ljust(VALUE_BYTES, "x")[:VALUE_BYTES]


def process_cpu(pid: int) -> float | None:
    """Seconds of CPU (user + system) process ``pid`` has used, or None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def servers_cpu(cluster: LocalCluster) -> float | None:
    total = 0.0
    for proc in cluster.procs.values():
        used = process_cpu(proc.pid)
        if used is None:
            return None
        total += used
    return total


# --- the cluster ---------------------------------------------------------------------


def server_args(mode: str, directory: Path) -> list[str]:
    """The observability flags of a round's servers (``{name}``: each server's own file)."""
    if mode not in ("on", "sampled"):
        return []
    return [
        "--spans",
        str(directory / "{name}.spans.jsonl"),
        "--metrics-port",
        "0",
        "--log-json",
        str(directory / "{name}.log.jsonl"),
    ]


@contextlib.contextmanager
def client_telemetry(mode: str, spans: Path) -> Iterator[None]:
    """What a worker process installs for ``mode``, closed (its spans flushed) at the end."""
    if mode == "off":
        yield
        return
    telemetry: Telemetry
    if mode == "pass":
        telemetry = Telemetry()
    else:
        from distcheck.impl.telemetry.otel import OpenTelemetry

        sample = SAMPLE if mode == "sampled" else 1.0
        telemetry = OpenTelemetry(f"clients-{os.getpid()}", spans=spans, batch=True, sample=sample)
    previous = install(telemetry)
    try:
        yield
    finally:
        install(previous)
        telemetry.close()


def context_for(mode: str) -> contextlib.AbstractContextManager[Any]:
    """The context one operation runs in: in ``pass``, a new trace nobody records."""
    return use(TraceContext.new_root()) if mode == "pass" else contextlib.nullcontext()


def worker(
    addresses: dict[str, tuple[str, int]],
    mode: str,
    spans: Path,
    op: str,
    first: int,
    threads: int,
    seconds: float,
    barrier: multiprocessing.synchronize.Barrier,
    results: multiprocessing.Queue[tuple[list[float], int, str]],
) -> None:
    """One worker process: ``threads`` clients numbered from ``first``, each in a closed
    loop of ``op`` for ``seconds`` from the moment every worker is ready."""
    latencies: list[float] = []
    errors = [0]
    first_error: list[str] = []
    guard = threading.Lock()
    connected = threading.Barrier(threads + 1)
    go = threading.Event()
    deadline = [0.0]

    def failed(error: Exception) -> None:
        with guard:
            errors[0] += 1
            if not first_error:
                first_error.append(f"{type(error).__name__}: {error}")

    def run(index: int) -> None:
        client: RaftClient | None = None
        try:
            client = RaftClient(addresses)
            with context_for(mode):
                client.put(key(index, 0), value(index, 0))  # untimed: connects, finds the leader
        except Exception as error:
            failed(error)
        connected.wait()
        go.wait()
        mine: list[float] = []
        n = 0
        while client is not None:
            began = time.monotonic()
            if began >= deadline[0]:
                break
            try:
                with context_for(mode):
                    if op == "put":
                        client.put(key(index, n), value(index, n))
                    else:
                        client.get(key(index, n))
            except Exception as error:
                failed(error)
                time.sleep(0.01)  # a failing node must not turn a client into a busy loop
                continue
            finished = time.monotonic()
            if finished <= deadline[0]:
                mine.append(finished - began)
            n += 1
        with guard:
            latencies.extend(mine)
        if client is not None:
            client.close()

    try:
        with client_telemetry(mode, spans):
            pool = [threading.Thread(target=run, args=(first + i,), daemon=True) for i in range(threads)]
            for thread in pool:
                thread.start()
            try:
                connected.wait(timeout=START_TIMEOUT)
                barrier.wait(timeout=START_TIMEOUT)
                deadline[0] = time.monotonic() + seconds
                go.set()
                for thread in pool:
                    thread.join(timeout=seconds + OP_TIMEOUT + 5)
            finally:
                go.set()
    finally:
        with guard:
            results.put((list(latencies), errors[0], first_error[0] if first_error else ""))


def measure(cluster: LocalCluster, mode: str, directory: Path, op: str, clients: int, seconds: float) -> dict[str, Any]:
    """One cell: ``clients`` closed-loop clients doing ``op`` for ``seconds`` in ``mode``."""
    context = multiprocessing.get_context("fork")
    workers = min(clients, MAX_WORKERS)
    shares = [clients // workers + (1 if i < clients % workers else 0) for i in range(workers)]
    barrier = context.Barrier(workers + 1)
    results: multiprocessing.Queue[tuple[list[float], int, str]] = context.Queue()
    processes = []
    first = 0
    for i, share in enumerate(shares):
        spans = directory / f"clients-{op}-{clients}-{i}.spans.jsonl"
        args = (dict(cluster.addresses), mode, spans, op, first, share, seconds, barrier, results)
        processes.append(context.Process(target=worker, args=args, daemon=True))
        first += share
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    latencies: list[float] = []
    errors = 0
    first_error = ""
    for process in processes:
        process.start()
    try:
        barrier.wait(timeout=START_TIMEOUT)
        server_cpu_before = servers_cpu(cluster)  # the window starts here for the servers
        for _ in processes:
            mine, failures, error = results.get(timeout=seconds + START_TIMEOUT + OP_TIMEOUT)
            latencies += mine
            errors += failures
            first_error = first_error or error
        server_cpu_after = servers_cpu(cluster)
    finally:
        for process in processes:
            process.join(timeout=30)  # closing its telemetry flushes its spans first
            if process.is_alive():
                process.kill()
                process.join()
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    ops = len(latencies)
    server_cpu = (
        server_cpu_after - server_cpu_before if server_cpu_after is not None and server_cpu_before is not None else None
    )
    return {
        "mode": mode,
        "op": op,
        "clients": clients,
        "seconds": seconds,
        "ops": ops,
        "ops_per_s": ops / seconds,
        "latencies": latencies,
        "p50_ms": percentile(latencies, 50) * 1000 if latencies else None,
        "p99_ms": percentile(latencies, 99) * 1000 if latencies else None,
        "errors": errors,
        "first_error": first_error or None,
        "server_cpu_ms_per_op": server_cpu / ops * 1000 if server_cpu is not None and ops else None,
        "client_cpu_ms_per_op": client_cpu / ops * 1000 if ops else None,
    }


def count_spans(directory: Path) -> dict[str, int]:
    """The spans a round's files hold: by the servers, by the clients, and the clients'
    call spans (``raft.put``, ``raft.get``: one per call made, the untimed ones included)."""
    from distcheck.impl.telemetry.otel import read_spans

    servers = sum(len(read_spans(path)) for path in sorted(directory.glob("n*.spans.jsonl")))
    client_records = [r for path in sorted(directory.glob("clients-*.spans.jsonl")) for r in read_spans(path)]
    calls = sum(1 for r in client_records if str(r.get("name", "")).startswith("raft."))
    return {"server_spans": servers, "client_spans": len(client_records), "client_call_spans": calls}


def run_round(
    number: int,
    mode: str,
    directory: Path,
    ops: list[str],
    clients: list[int],
    seconds: float,
    on_cell: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """One round: a fresh cluster in ``mode`` under every cell, then its spans counted."""
    directory.mkdir(parents=True)
    cells: list[dict[str, Any]] = []
    with LocalCluster(3, directory, server_args=server_args(mode, directory)) as cluster:
        with cluster.client() as probe:
            probe.put("warmup", "warmup")  # a leader elected and a write through
        for op in ops:
            for n in clients:
                cell = measure(cluster, mode, directory, op, n, seconds)
                cell["round"] = number
                cells.append(cell)
                on_cell(cell)
    # The servers flush their spans when they stop (SIGTERM): count them now.
    report: dict[str, Any] = {"round": number, "mode": mode, "cells": cells}
    if mode in ("on", "sampled"):
        report.update(count_spans(directory))
        report["log_lines"] = sum(
            len(path.read_text(encoding="utf-8").splitlines()) for path in directory.glob("n*.log.jsonl")
        )
    else:
        spans = count_spans(directory) if otel_missing() is None else {}
        report["stray_spans"] = spans.get("server_spans", 0) + spans.get("client_spans", 0)
    return report


def run_cluster(
    modes: list[str],
    rounds: int,
    ops: list[str],
    clients: list[int],
    seconds: float,
    on_cell: Callable[[dict[str, Any]], None],
    on_round: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Every round (modes in turn, ``rounds`` times), then the summary per mode."""
    top = Path(tempfile.mkdtemp(prefix="tracing-overhead-"))
    reports: list[dict[str, Any]] = []
    try:
        number = 0
        for _ in range(rounds):
            for mode in modes:
                number += 1
                report = run_round(number, mode, top / f"round-{number}-{mode}", ops, clients, seconds, on_cell)
                reports.append(report)
                on_round(report)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return {"rounds": reports, "summary": summarize(reports, modes, ops, clients)}


def summarize(
    reports: list[dict[str, Any]], modes: list[str], ops: list[str], clients: list[int]
) -> list[dict[str, Any]]:
    """A row per operation, number of clients and mode: its rounds pooled, and its
    ratios to ``off`` (None where ``off`` did not run)."""
    rows: list[dict[str, Any]] = []
    for op in ops:
        for n in clients:
            pooled: dict[str, dict[str, Any]] = {}
            for mode in modes:
                cells = [
                    c for r in reports for c in r["cells"] if r["mode"] == mode and c["op"] == op and c["clients"] == n
                ]
                latencies = [x for c in cells for x in c["latencies"]]
                total = sum(c["seconds"] for c in cells)
                server_cpu = [
                    c["server_cpu_ms_per_op"] * c["ops"] for c in cells if c["server_cpu_ms_per_op"] is not None
                ]
                ops_done = sum(c["ops"] for c in cells)
                pooled[mode] = {
                    "op": op,
                    "clients": n,
                    "mode": mode,
                    "rounds": len(cells),
                    "ops": ops_done,
                    "ops_per_s": ops_done / total if total else 0.0,
                    "p50_ms": percentile(latencies, 50) * 1000 if latencies else None,
                    "p99_ms": percentile(latencies, 99) * 1000 if latencies else None,
                    "server_cpu_ms_per_op": sum(server_cpu) / ops_done if server_cpu and ops_done else None,
                    "errors": sum(c["errors"] for c in cells),
                }
            base = pooled.get("off")
            for mode in modes:
                row = pooled[mode]
                for name in ("ops_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_op"):
                    row[f"{name}_vs_off"] = ratio(row[name], base[name]) if base is not None else None
                rows.append(row)
    return rows


# --- the message path ----------------------------------------------------------------


def ping_pong(directory: Path, pings: int, mode: str) -> dict[str, Any]:
    """``pings`` round trips between two nodes of one FreeRuntime in ``mode``; seconds
    per round trip, and the spans written (None where none were asked for)."""
    done = threading.Event()
    elapsed = [0.0]

    def a(ctx: Context) -> None:
        while True:
            item = ctx.receive()
            if isinstance(item, Envelope) and item.msg.get("type") == "Go":
                began = time.perf_counter()
                for n in range(pings):
                    ctx.send("b", {"type": "Ping", "n": n})
                    while True:
                        answer = ctx.receive()
                        if isinstance(answer, Envelope) and answer.msg.get("type") == "Pong":
                            break
                elapsed[0] = time.perf_counter() - began
                done.set()

    def b(ctx: Context) -> None:
        while True:
            item = ctx.receive()
            if isinstance(item, Envelope) and item.msg.get("type") == "Ping":
                ctx.send(item.src, {"type": "Pong", "n": item.msg["n"]})

    spans = directory / f"ping-{mode}-{time.monotonic_ns()}.spans.jsonl"
    telemetry: Telemetry | None = None
    if mode == "pass":
        telemetry = Telemetry()
    elif mode in ("metrics", "on"):
        from distcheck.impl.telemetry.otel import OpenTelemetry

        telemetry = OpenTelemetry("ping", spans=spans if mode == "on" else None, batch=True)
    previous = install(telemetry) if telemetry is not None else None
    try:
        # entering starts every node (a second ``start`` would run each node's main twice)
        with FreeRuntime({"a": a, "b": b, "client": lambda ctx: None}, directory) as runtime:
            if mode == "on":
                with span("ping", kind="internal", attributes={"distcheck.node": "client"}):
                    runtime.send("client", "a", {"type": "Go"})
            elif mode == "pass":
                with use(TraceContext.new_root()):
                    runtime.send("client", "a", {"type": "Go"})
            else:
                runtime.send("client", "a", {"type": "Go"})
            if not done.wait(timeout=max(60.0, pings * 0.01)):
                raise RuntimeError(f"{pings} round trips did not end within the time allowed ({mode})")
    finally:
        if telemetry is not None:
            install(previous)
            telemetry.close()
    written: int | None = None
    if mode == "on":
        from distcheck.impl.telemetry.otel import read_spans

        written = len(read_spans(spans))
    return {"mode": mode, "seconds_per_round_trip": elapsed[0] / pings, "spans": written}


def run_micro(
    modes: list[str], pings: int, repeat: int, on_row: Callable[[dict[str, Any]], None]
) -> list[dict[str, Any]]:
    """Every mode ``repeat`` times, modes in turn; a row per mode: the best run and the
    median one, their ratios to ``off``'s, the spans the ``on`` runs wrote (the fewest)."""
    top = Path(tempfile.mkdtemp(prefix="tracing-overhead-ping-"))
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    try:
        for i in range(repeat):
            for mode in modes:
                directory = top / f"{mode}-{i}"
                directory.mkdir()
                runs[mode].append(ping_pong(directory, pings, mode))
    finally:
        shutil.rmtree(top, ignore_errors=True)
    rows = []
    best = {mode: min(r["seconds_per_round_trip"] for r in runs[mode]) for mode in modes}
    # on a loaded machine one lucky run can make the best misleading: the median too
    middle = {mode: statistics.median(r["seconds_per_round_trip"] for r in runs[mode]) for mode in modes}
    for mode in modes:
        written = [r["spans"] for r in runs[mode] if r["spans"] is not None]
        row = {
            "mode": mode,
            "pings": pings,
            "runs": len(runs[mode]),
            "us_per_round_trip": best[mode] * 1e6,
            "each_us": [r["seconds_per_round_trip"] * 1e6 for r in runs[mode]],
            "vs_off": ratio(best[mode], best["off"]) if "off" in best else None,
            "median_us_per_round_trip": middle[mode] * 1e6,
            "median_vs_off": ratio(middle[mode], middle["off"]) if "off" in middle else None,
            "spans": min(written) if written else None,
            "spans_expected": 2 * pings + 2 if mode == "on" else None,
        }
        rows.append(row)
        on_row(row)
    return rows


# --- the run -------------------------------------------------------------------------


def ratio(this: float | None, base: float | None) -> float | None:
    return this / base if this is not None and base else None


def text(number: float | None, digits: int) -> str:
    return "-" if number is None else f"{number:.{digits}f}"


CELL_HEADER = (
    f"{'round':>5} {'mode':<5} {'op':<4} {'clients':>7} {'ops/s':>8} {'p50 ms':>7} {'p99 ms':>7}"
    f" {'errors':>6} {'srv CPU ms/op':>13} {'cli CPU ms/op':>13}"
)
SUMMARY_HEADER = (
    f"{'op':<4} {'clients':>7} {'mode':<5} {'rounds':>6} {'ops/s':>8} {'p50 ms':>7} {'p99 ms':>7}"
    f" {'ops/s x':>7} {'p50 x':>6} {'p99 x':>6} {'srv CPU/op x':>12}"
)
PING_HEADER = (
    f"{'mode':<8} {'best us/rt':>10} {'x off':>6} {'median us/rt':>12} {'x off':>6} {'spans written':>13}"
    "  each run (us)"
)


def cell_row(cell: dict[str, Any]) -> str:
    return (
        f"{cell['round']:>5} {cell['mode']:<5} {cell['op']:<4} {cell['clients']:>7} {cell['ops_per_s']:>8.0f}"
        f" {text(cell['p50_ms'], 2):>7} {text(cell['p99_ms'], 2):>7} {cell['errors']:>6}"
        f" {text(cell['server_cpu_ms_per_op'], 3):>13} {text(cell['client_cpu_ms_per_op'], 3):>13}"
    )


def round_line(report: dict[str, Any]) -> str:
    if report["mode"] in ("on", "sampled"):
        return (
            f"{report['round']:>5} {report['mode']:<5} spans written: {report['server_spans']} by the servers,"
            f" {report['client_spans']} by the clients ({report['client_call_spans']} client calls);"
            f" {report['log_lines']} JSON log lines"
        )
    return f"{report['round']:>5} {report['mode']:<5} spans written: {report['stray_spans']} (none asked for)"


def summary_row(row: dict[str, Any]) -> str:
    return (
        f"{row['op']:<4} {row['clients']:>7} {row['mode']:<5} {row['rounds']:>6} {row['ops_per_s']:>8.0f}"
        f" {text(row['p50_ms'], 2):>7} {text(row['p99_ms'], 2):>7} {text(row['ops_per_s_vs_off'], 2):>7}"
        f" {text(row['p50_ms_vs_off'], 2):>6} {text(row['p99_ms_vs_off'], 2):>6}"
        f" {text(row['server_cpu_ms_per_op_vs_off'], 2):>12}"
    )


def ping_row(row: dict[str, Any]) -> str:
    spans = "-" if row["spans"] is None else f"{row['spans']}/{row['spans_expected']}"
    each = ", ".join(f"{us:.1f}" for us in row["each_us"])
    return (
        f"{row['mode']:<8} {row['us_per_round_trip']:>10.1f} {text(row['vs_off'], 2):>6}"
        f" {row['median_us_per_round_trip']:>12.1f} {text(row['median_vs_off'], 2):>6} {spans:>13}  {each}"
    )


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min; {os.cpu_count()} CPUs)"


def names(text: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    """The comma-separated names of ``text`` in ``allowed``'s order; ValueError saying what is wrong."""
    given = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in given if name not in allowed]
    if unknown or not given:
        raise ValueError(f"{flag}: unknown {', '.join(unknown) or '(none given)'}; choose among {', '.join(allowed)}")
    return sorted(set(given), key=allowed.index)


class Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr, exit status 2 (not argparse's usage block)."""

    def error(self, message: str) -> NoReturn:
        print(f"tracing_overhead.py: {message}", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8], help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per cell")
    parser.add_argument("--rounds", type=int, default=2, help="times every mode runs, in turn")
    parser.add_argument("--modes", default=",".join(MODES), help="cluster modes, among " + ", ".join(MODES))
    parser.add_argument("--ops", default=",".join(OPS), help="operations, among " + ", ".join(OPS))
    parser.add_argument("--pings", type=int, default=5000, help="round trips per message-path run")
    parser.add_argument(
        "--ping-repeat", type=int, default=5, help="message-path runs per mode (best and median printed)"
    )
    parser.add_argument("--parts", default=",".join(PARTS), help="what to run, among " + ", ".join(PARTS))
    parser.add_argument("--json", action="store_true", help="one JSON document instead of the tables")
    args = parser.parse_args(argv)
    try:
        modes = names(args.modes, MODES, "--modes")
        ops = names(args.ops, OPS, "--ops")
        parts = names(args.parts, PARTS, "--parts")
        if args.seconds <= 0 or any(n < 1 for n in args.clients) or args.rounds < 1:
            raise ValueError("--seconds, --clients and --rounds must be positive")
        if args.pings < 1 or args.ping_repeat < 1:
            raise ValueError("--pings and --ping-repeat must be positive")
    except ValueError as error:
        print(f"tracing_overhead.py: {error}", file=sys.stderr)
        return 2
    missing = otel_missing()
    if missing is not None:
        modes = [mode for mode in modes if mode not in ("on", "sampled")]
    say: Callable[[str], None] = (lambda line: None) if args.json else (lambda line: print(line, flush=True))
    results: dict[str, Any] = {"load_average_start": load_average()}
    say(f"load average at the start: {results['load_average_start']}")
    if missing is not None:
        say(f"mode on: skipped: {missing}")
    if "cluster" in parts:
        say(f"Raft KV, 3 servers (LocalCluster, fsync on), {args.seconds:g} s per cell, modes {', '.join(modes)}")
        say(CELL_HEADER)

        def on_cell(cell: dict[str, Any]) -> None:
            say(cell_row(cell))
            if cell["first_error"]:
                say(f"{'':>5} first error: {cell['first_error']}")

        cluster = run_cluster(
            modes, args.rounds, ops, args.clients, args.seconds, on_cell, lambda r: say(round_line(r))
        )
        say("")
        say("Summary (rounds pooled; x: the ratio to off)")
        say(SUMMARY_HEADER)
        for row in cluster["summary"]:
            say(summary_row(row))
        for report in cluster["rounds"]:
            for cell in report["cells"]:
                del cell["latencies"]  # pooled in the summary; too long for the JSON
        results["cluster"] = cluster
        say("")
    if "micro" in parts:
        ping_modes = [mode for mode in PING_MODES if missing is None or mode not in ("metrics", "on")]
        say(f"FreeRuntime message path: 2 nodes, {args.pings} round trips, {args.ping_repeat} runs per mode")
        say(PING_HEADER)
        results["micro"] = run_micro(ping_modes, args.pings, args.ping_repeat, lambda row: say(ping_row(row)))
        say("")
    results["load_average_end"] = load_average()
    say(f"load average at the end: {results['load_average_end']}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
