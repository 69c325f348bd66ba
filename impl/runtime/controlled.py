"""The controlled runtime: a deterministic scheduler over real threads, virtual time
and injected faults.

Where it sits: tests and ``distcheck simulate`` build a ``Simulation`` from node
functions (``impl.runtime.api.NodeMain``), a ``ChoiceSource``
(``impl.runtime.strategies``) and a ``FaultPolicy``, and run it.  Protocol code is
unchanged: it sees the same ``Context`` as in free mode.

How it works.  Every node thread is a real Python thread, but exactly one runs at a
time: a thread runs until its next yield point (send, receive, sleep, lock, queue,
storage append or sync, explicit yield), parks there saying what it waits for, and
hands the baton back.  The scheduler then lists every option enabled in that state,
in a fixed order, and asks the choice source to pick one:

====================  ==============================================================
``run``               resume a thread whose wait is satisfied
``deliver``           move a message from the network into its receiver's mailbox
                      (without ``reorder``, only the oldest message of each
                      sender→receiver channel; a node that is down loses it, and
                      so does the network when the message crosses a partition)
``advance``           move virtual time to the next timer or timeout deadline
``restart``           bring a crashed node back: ``main`` runs again from the top
``heal``              end the partition in force: every node reaches every other
``drop``              fault: lose a message in flight
``duplicate``         fault: deliver a message in flight one extra time
``crash``             fault: stop a node; its threads unwind with ``NodeCrashed``,
                      its mailbox and timers are lost, and its storage loses every
                      record appended but not synced
``partition``         fault: cut one node off from every other node, or one of the
                      policy's ``sides`` (a group of nodes, such as a server and
                      the clients next to it) off from the rest (one partition at
                      a time: a minority/majority split is what small clusters
                      need); a message crossing the cut is lost when delivered,
                      and nodes on one side still reach each other
====================  ==============================================================

Faults are allowed during the first ``fault_steps`` steps, within the policy's
budgets; afterwards the run heals (the partition is healed, then every crashed node
is restarted, before anything else happens) so that a protocol's recovery and
termination can be checked.  Yield points come *before* the operation: what a
thread does between two yield points happens atomically, which is what lets a node
make a record durable and log its trace step with no crash in between.

The run ends when a check fails (``check`` after every step, ``final_check`` at the
end), a thread raises, nothing is enabled, ``until`` says the work is done (for
systems that never go quiet, such as a replicated log with heartbeats; asked only
once faults are over and every node is up and connected), or ``max_steps`` is
reached.  Nothing
enabled while some thread waits for a lock or queue (not for a message: a server
waiting for work is idle, not stuck) is a **deadlock**.  Everything the run did is
in the result's schedule: the choice made at each step and the trace events that
step recorded, so a failure prints as a readable trace, and the recorded choice
indices (or the seed) replay it exactly.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import attrs

from distcheck.impl.runtime.api import (
    Context,
    Envelope,
    Lock,
    Message,
    NodeCrashed,
    NodeMain,
    Queue,
    Received,
    Storage,
    Timer,
)
from distcheck.impl.runtime.storage import DurableLog, read_log
from distcheck.impl.runtime.strategies import Choice, ChoiceSource
from distcheck.impl.runtime.tracelog import TraceLog

FAULTS = ("crash", "drop", "duplicate", "reorder", "partition")


@attrs.frozen
class FaultPolicy:
    """Which faults the scheduler may inject, and how many of each."""

    crash: bool = False
    drop: bool = False
    duplicate: bool = False
    reorder: bool = False
    partition: bool = False
    max_crashes: int = 3
    max_drops: int = 4
    max_duplicates: int = 4
    max_partitions: int = 2
    #: nodes that may crash (None: every node)
    crashable: tuple[str, ...] | None = None
    #: the nodes a partition separates (None: every node).  With the servers of a
    #: replicated service here and its clients left out, a partition cuts one
    #: server off from the other servers while clients still reach it: the split
    #: that lets a deposed leader go on answering clients.
    partitioned: tuple[str, ...] | None = None
    #: the groups of nodes a partition may cut off from the others, each as a whole
    #: (None: each node of ``partitioned`` alone).  A group is named in the
    #: schedule by its nodes joined with "+" (``s1+c1``).
    sides: tuple[tuple[str, ...], ...] | None = None

    @classmethod
    def parse(cls, text: str, **budgets: Any) -> FaultPolicy:
        """``"crash,drop"`` → a policy with those faults on; ValueError names the allowed ones."""
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {', '.join(unknown)}; allowed: {', '.join(FAULTS)}")
        options: dict[str, Any] = {n: True for n in names}
        options.update(budgets)
        return cls(**options)

    def names(self) -> list[str]:
        return [n for n in FAULTS if getattr(self, n)]


@attrs.define
class StepRecord:
    """One scheduler step: the choice taken (index ``index`` of ``options``) and
    what it caused (trace events recorded, diagnostic lines)."""

    step: int
    choice: Choice
    index: int
    options: int
    time: float
    events: list[dict[str, Any]] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)


@attrs.define
class RunResult:
    """status: ok | violation | deadlock | error | step_limit."""

    status: str
    message: str
    steps: int
    schedule: list[StepRecord]
    trace: TraceLog

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def indices(self) -> list[int]:
        """The choice indices taken: ``ReplayChoices(result.indices)`` replays the run."""
        return [s.index for s in self.schedule]

    def render(self, compact: bool = False) -> str:
        """The run as a readable trace: each step's choice, then, indented, the
        protocol steps it recorded.  ``compact`` keeps only the steps that recorded
        something, injected a fault, restarted a node or healed a partition (and the
        last one), and says how many ordinary steps lie between them."""
        lines = []
        width = len(str(len(self.schedule)))
        skipped = 0
        for s in self.schedule:
            shown = s.events or s.notes or s.choice.fault or s.choice.kind in ("restart", "heal")
            shown = shown or s is self.schedule[-1]
            if compact and not shown:
                skipped += 1
                continue
            if skipped:
                lines.append(" " * (width + 2) + f"… {skipped} ordinary step(s)")
                skipped = 0
            lines.append(f"{s.step:>{width}}  t={s.time:<6g} {s.choice.text}")
            for e in s.events:
                extra = {k: v for k, v in e.items() if k not in ("step", "actor", "action")}
                lines.append(
                    " " * (width + 4)
                    + f"→ {e.get('actor') or 'env'}: {_action_text(e['action'])}"
                    + (f"  {extra}" if extra else "")
                )
            for note in s.notes:
                lines.append(" " * (width + 4) + f"  ({note})")
        lines.append(f"{self.status}: {self.message}")
        return "\n".join(lines)


def _action_text(action: Mapping[str, Any]) -> str:
    args = ", ".join(str(v) for k, v in action.items() if k != "type")
    return f"{action.get('type')}({args})" if args else str(action.get("type"))


@attrs.define
class _Wait:
    kind: str
    ready: Callable[[], bool]
    deadline: float | None = None
    #: waiting for work (a message) rather than for another thread: not a deadlock
    idle: bool = False


def _always() -> bool:
    return True


def _never() -> bool:
    return False


class _Thread:
    def __init__(self, node: _Node, tid: str, fn: Callable[[], None]) -> None:
        self.node = node
        self.id = tid
        self.fn = fn
        self.go = threading.Semaphore(0)
        self.wait: _Wait | None = _Wait("start", _always)
        self.done = False
        self.killed = False
        self.py: threading.Thread | None = None


class _Node:
    def __init__(self, name: str, main: NodeMain) -> None:
        self.name = name
        self.main = main
        self.up = True
        self.incarnation = 0
        self.mailbox: deque[Received] = deque()
        self.timers: dict[str, float] = {}
        self.threads: list[_Thread] = []
        self.logs: dict[str, DurableLog] = {}
        self.thread_count = 0

    def live_threads(self) -> list[_Thread]:
        return [t for t in self.threads if not t.done]


@attrs.define
class _Packet:
    seq: int
    src: str
    dst: str
    msg: dict[str, Any]


class Simulation:
    """One controlled run of a set of nodes.  Build, ``run()`` once, then inspect."""

    def __init__(
        self,
        nodes: Mapping[str, NodeMain],
        choices: ChoiceSource,
        faults: FaultPolicy = FaultPolicy(),
        *,
        fault_steps: int = 200,
        max_steps: int = 5000,
        trace: TraceLog | None = None,
        directory: Path | None = None,
        check: Callable[[Simulation], str | None] | None = None,
        final_check: Callable[[Simulation], str | None] | None = None,
        until: Callable[[Simulation], bool] | None = None,
    ) -> None:
        self.nodes = {name: _Node(name, main) for name, main in nodes.items()}
        self.choices = choices
        self.faults = faults
        for side in faults.sides or ():
            strangers = [n for n in side if n not in nodes]
            if not side or strangers:
                raise ValueError(f"a partition side names nodes of the system, got {side!r}; nodes: {', '.join(nodes)}")
        self.fault_steps = fault_steps
        self.max_steps = max_steps
        self.trace = trace if trace is not None else TraceLog("unknown")
        self.check = check
        self.final_check = final_check
        self.until = until
        self.now = 0.0
        self.network: list[_Packet] = []
        #: every message ever sent, as (sender, receiver, message)
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.crashes = self.drops = self.duplicates = self.partitions = 0
        #: crashes a node's own code caused (``Context.crash``): "node: reason", in order
        self.failures: list[str] = []
        #: the node (or the side, "s1+c1") cut off from the others by the partition
        #: in force, if any
        self.isolated: str | None = None
        self.schedule: list[StepRecord] = []
        self._seq = 0
        self._back = threading.Semaphore(0)
        self._by_ident: dict[int, _Thread] = {}
        self._errors: list[str] = []
        self._pending_notes: list[str] = []
        self.result: RunResult | None = None
        self._owns_directory = directory is None
        shm = Path("/dev/shm")
        base = str(shm) if shm.is_dir() else None  # memory-backed, so fsync is cheap in bulk runs
        self.directory = directory or Path(tempfile.mkdtemp(prefix="distcheck-sim-", dir=base))
        self._ran = False
        self._closed = False
        self._durable_cache: dict[tuple[str, str], tuple[DurableLog, int, list[dict[str, Any]]]] = {}

    # ------------------------------------------------------------ inspection

    def is_up(self, node: str) -> bool:
        return self.nodes[node].up

    def cut(self, src: str, dst: str) -> bool:
        """Whether the partition in force separates ``src`` from ``dst``."""
        if self.isolated is None:
            return False
        side = self.isolated.split("+")
        if (src in side) == (dst in side):
            return False
        among = self.faults.partitioned
        return among is None or (src in among and dst in among)

    def durable_records(self, node: str, log: str) -> list[dict[str, Any]]:
        """The records of ``node``'s log ``log`` that a crash now would keep."""
        opened = self.nodes[node].logs.get(log)
        if opened is None:
            return read_log(self._log_path(node, log))
        # Checks read every log after every step; most steps sync nothing, so the
        # records last read are still the synced ones when the size is unchanged.
        cached = self._durable_cache.get((node, log))
        if cached is not None and cached[0] is opened and cached[1] == opened.synced_size:
            return list(cached[2])
        records = opened.synced_records()
        self._durable_cache[(node, log)] = (opened, opened.synced_size, records)
        return list(records)

    def _log_path(self, node: str, log: str) -> Path:
        return self.directory / node / f"{log}.log"

    # ------------------------------------------------------------------ run

    def run(self) -> RunResult:
        """Run to the end, taking each step the choice source picks."""
        self.start()
        try:
            while self.result is None:
                options = self.options()
                self.take(options, self.choices.choose(options))
            return self.result
        finally:
            self.close()

    # The run can also be driven from outside, one step at a time (a hypothesis
    # state machine does): start(), then options() / take() until ``result`` is
    # set, then close().

    def start(self) -> None:
        if self._ran:
            raise RuntimeError("a Simulation runs once; build a new one")
        self._ran = True
        for node in self.nodes.values():
            self._start_node(node)
        self._settle()

    def options(self) -> list[Choice]:
        """What may happen next (empty once the run is over)."""
        if self.result is not None:
            return []
        return self._options(faulty=len(self.schedule) < self.fault_steps)

    def take(self, options: Sequence[Choice], index: int) -> None:
        """Take option ``index`` of ``options`` (the list ``options()`` returned)."""
        choice = options[index]
        record = StepRecord(len(self.schedule) + 1, choice, index, len(options), self.now)
        first_event = len(self.trace.events)
        self._apply(choice)
        record.events = self.trace.events[first_event:]
        record.notes, self._pending_notes = self._pending_notes, []
        self.schedule.append(record)
        self._settle()

    def _settle(self) -> None:
        """Decide whether the run is over after the last step."""
        step = len(self.schedule)
        if self._errors:
            self.result = self._result("error", self._errors[0], step)
            return
        if self.check is not None:
            problem = self.check(self)
            if problem is not None:
                self.result = self._result("violation", problem, step)
                return
        healed = self.isolated is None and all(n.up for n in self.nodes.values())
        if self.until is not None and step >= self.fault_steps and healed and self.until(self):
            # A system that never goes quiet (heartbeats, election timers) is done
            # when the caller says so, once faults are over.
            self._finish(step, f"done after {step} steps")
            return
        if self._options(faulty=step < self.fault_steps):
            if step >= self.max_steps:
                self.result = self._result("step_limit", f"still running after {step} steps", step)
            return
        stuck = [
            f"{t.id} waits for {t.wait.kind}"
            for n in self.nodes.values()
            for t in n.live_threads()
            if t.wait is not None and not t.wait.idle
        ]
        if stuck:
            self.result = self._result("deadlock", "deadlock: " + "; ".join(stuck), step)
            return
        self._finish(step, f"quiescent after {step} steps")

    def _finish(self, step: int, message: str) -> None:
        if self.final_check is not None:
            problem = self.final_check(self)
            if problem is not None:
                self.result = self._result("violation", problem, step)
                return
        self.result = self._result("ok", message, step)

    def _result(self, status: str, message: str, steps: int) -> RunResult:
        return RunResult(status, message, steps, self.schedule, self.trace)

    # -------------------------------------------------------------- options

    def _enabled(self, t: _Thread) -> bool:
        w = t.wait
        if w is None or t.done:
            return False
        return w.ready() or (w.deadline is not None and w.deadline <= self.now)

    def _deliverable(self) -> list[_Packet]:
        if self.faults.reorder:
            return list(self.network)
        heads: dict[tuple[str, str], _Packet] = {}
        for p in self.network:
            heads.setdefault((p.src, p.dst), p)
        return list(heads.values())

    def _next_deadline(self) -> float | None:
        deadlines = [d for n in self.nodes.values() if n.up for d in n.timers.values()]
        deadlines += [
            t.wait.deadline
            for n in self.nodes.values()
            for t in n.live_threads()
            if t.wait is not None and t.wait.deadline is not None
        ]
        future = [d for d in deadlines if d > self.now]
        return min(future) if future else None

    def _options(self, faulty: bool) -> list[Choice]:
        out: list[Choice] = []
        heal = Choice("heal", "network", "heal the partition")
        down = [node for node in self.nodes.values() if not node.up]
        if not faulty:
            # Healing: once faults are over, the network is whole again and crashed
            # nodes come back first, so that recovery and termination are checked
            # however the choices fall.
            if self.isolated is not None:
                return [heal]
            if down:
                return [Choice("restart", node.name, f"restart {node.name}") for node in down]
        for node in self.nodes.values():
            for t in node.live_threads():
                if self._enabled(t):
                    assert t.wait is not None
                    out.append(Choice("run", t.id, f"run {t.id} ({t.wait.kind})"))
        deliverable = self._deliverable()
        for p in deliverable:
            out.append(Choice("deliver", f"msg{p.seq}", f"deliver {p.src}→{p.dst} {_brief(p.msg)}"))
        deadline = self._next_deadline()
        if deadline is not None:
            out.append(Choice("advance", "clock", f"advance time to {deadline:g}"))
        for node in self.nodes.values():
            if not node.up:
                out.append(Choice("restart", node.name, f"restart {node.name}"))
        if self.isolated is not None:
            out.append(heal)
        if not faulty:
            return out
        f = self.faults
        for p in deliverable:
            if f.drop and self.drops < f.max_drops:
                out.append(Choice("drop", f"msg{p.seq}", f"drop {p.src}→{p.dst} {_brief(p.msg)}", fault=True))
            if f.duplicate and self.duplicates < f.max_duplicates:
                out.append(Choice("duplicate", f"msg{p.seq}", f"duplicate {p.src}→{p.dst} {_brief(p.msg)}", fault=True))
        if f.crash and self.crashes < f.max_crashes:
            for node in self.nodes.values():
                if node.up and (f.crashable is None or node.name in f.crashable):
                    out.append(Choice("crash", node.name, f"crash {node.name}", fault=True))
        if f.partition and self.partitions < f.max_partitions and self.isolated is None and len(self.nodes) > 1:
            sides: list[tuple[str, ...]]
            if f.sides is None:
                sides = [(n,) for n in self.nodes if f.partitioned is None or n in f.partitioned]
            else:
                sides = list(f.sides)
            for side in sides:
                out.append(Choice("partition", "+".join(side), f"isolate {', '.join(side)}", fault=True))
        return out

    # ---------------------------------------------------------------- apply

    def _apply(self, choice: Choice) -> None:
        kind = choice.kind
        if kind == "run":
            self._resume(self._thread(choice.agent))
        elif kind == "deliver":
            p = self._take(choice.agent)
            dst = self.nodes[p.dst]
            if self.cut(p.src, p.dst):
                self._pending_notes.append(f"lost: {self.isolated} is cut off")
            elif dst.up:
                dst.mailbox.append(Envelope(p.src, p.msg))
            else:
                self._pending_notes.append(f"lost: {p.dst} is down")
        elif kind == "drop":
            self._take(choice.agent)
            self.drops += 1
        elif kind == "duplicate":
            p = self._packet(choice.agent)
            self._seq += 1
            self.network.append(_Packet(self._seq, p.src, p.dst, json.loads(json.dumps(p.msg))))
            self.duplicates += 1
        elif kind == "advance":
            deadline = self._next_deadline()
            assert deadline is not None
            self.now = deadline
        elif kind == "crash":
            self._crash(self.nodes[choice.agent])
            self.crashes += 1
        elif kind == "partition":
            self.isolated = choice.agent
            self.partitions += 1
        elif kind == "heal":
            self.isolated = None
        elif kind == "restart":
            node = self.nodes[choice.agent]
            node.up = True
            node.incarnation += 1
            self._start_node(node)
        else:  # pragma: no cover - the options above are the only kinds
            raise AssertionError(kind)
        self._fire_timers()

    def _fire_timers(self) -> None:
        due = sorted(
            (deadline, node.name, name)
            for node in self.nodes.values()
            if node.up
            for name, deadline in node.timers.items()
            if deadline <= self.now
        )
        for _, node_name, name in due:
            node = self.nodes[node_name]
            del node.timers[name]
            node.mailbox.append(Timer(name))

    def _thread(self, tid: str) -> _Thread:
        for node in self.nodes.values():
            for t in node.threads:
                if t.id == tid:
                    return t
        raise KeyError(tid)

    def _packet(self, agent: str) -> _Packet:
        seq = int(agent.removeprefix("msg"))
        for p in self.network:
            if p.seq == seq:
                return p
        raise KeyError(agent)

    def _take(self, agent: str) -> _Packet:
        p = self._packet(agent)
        self.network.remove(p)
        return p

    # -------------------------------------------------------------- threads

    def _start_node(self, node: _Node) -> None:
        ctx = _SimContext(self, node)
        self._spawn(node, "main", lambda: node.main(ctx))

    def _spawn(self, node: _Node, name: str, fn: Callable[[], None]) -> None:
        node.thread_count += 1
        suffix = f"#{node.incarnation}" if node.incarnation else ""
        tid = f"{node.name}{suffix}.{name}"
        if any(t.id == tid for t in node.threads):
            tid += f"-{node.thread_count}"
        t = _Thread(node, tid, fn)
        node.threads.append(t)
        py = threading.Thread(target=self._bootstrap, args=(t,), name=f"sim:{t.id}", daemon=True)
        t.py = py
        py.start()

    def _bootstrap(self, t: _Thread) -> None:
        t.go.acquire()
        self._by_ident[threading.get_ident()] = t
        try:
            if not t.killed:
                t.fn()
        except NodeCrashed:
            pass
        except BaseException as exc:
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            self._errors.append(f"{t.id} raised {detail}\n{traceback.format_exc()}")
        finally:
            t.done = True
            t.wait = None
            self._back.release()

    def _resume(self, t: _Thread) -> None:
        t.go.release()
        self._back.acquire()

    def _park(self, t: _Thread, wait: _Wait) -> None:
        """Called on the node's thread: hand the baton back and wait to be chosen."""
        if t.killed:
            raise NodeCrashed
        t.wait = wait
        self._back.release()
        t.go.acquire()
        t.wait = None
        if t.killed:
            raise NodeCrashed

    def current(self) -> _Thread:
        return self._by_ident[threading.get_ident()]

    def _kill(self, t: _Thread) -> None:
        t.killed = True
        self._resume(t)

    def _crash(self, node: _Node, caller: _Thread | None = None) -> None:
        node.up = False
        for t in node.live_threads():
            if t is caller:
                t.killed = True  # it unwinds by itself, holding the baton until it ends
            else:
                self._kill(t)
        node.mailbox.clear()
        node.timers.clear()
        for log in node.logs.values():
            lost = log.unsynced
            if lost:
                self._pending_notes.append(f"{node.name} lost {lost} unsynced record(s) of {log.path.stem}")
            log.discard_unsynced()
        node.logs.clear()

    def close(self) -> None:
        """Stop every thread and remove the run's files (when the run made the directory)."""
        if self._closed:
            return
        self._closed = True
        for node in self.nodes.values():
            for t in node.live_threads():
                self._kill(t)
            for log in node.logs.values():
                log.close()
        for node in self.nodes.values():
            for t in node.threads:
                if t.py is not None:
                    t.py.join()
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def note(self, text: str) -> None:
        self._pending_notes.append(text)


def _brief(msg: Mapping[str, Any]) -> str:
    fields = ", ".join(f"{k}={v}" for k, v in msg.items() if k != "type")
    return f"{msg.get('type', '?')}({fields})"


# ----------------------------------------------------------------- primitives


class _SimLock(Lock):
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.owner: _Thread | None = None

    def acquire(self) -> None:
        t = self.sim.current()
        self.sim._park(t, _Wait("lock", lambda: self.owner is None))
        self.owner = t

    def release(self) -> None:
        if self.owner is not self.sim.current():
            raise RuntimeError("release of a lock this thread does not hold")
        self.owner = None


class _SimQueue(Queue):
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.items: deque[Any] = deque()

    def put(self, item: Any) -> None:
        self.sim._park(self.sim.current(), _Wait("queue put", _always))
        self.items.append(item)

    def get(self, timeout: float | None = None) -> Any | None:
        deadline = None if timeout is None else self.sim.now + timeout
        self.sim._park(self.sim.current(), _Wait("queue get", lambda: bool(self.items), deadline))
        return self.items.popleft() if self.items else None


class _SimStorage(Storage):
    def __init__(self, sim: Simulation, log: DurableLog) -> None:
        self.sim = sim
        self.log = log

    def append(self, record: Mapping[str, Any]) -> None:
        self.sim._park(self.sim.current(), _Wait("storage append", _always))
        self.log.append(record)

    def sync(self) -> None:
        self.sim._park(self.sim.current(), _Wait("storage sync", _always))
        self.log.sync()

    def records(self) -> list[dict[str, Any]]:
        self._check_alive()
        return self.log.records()

    def _check_alive(self) -> None:
        if self.sim.current().killed:
            raise NodeCrashed


class _SimContext(Context):
    def __init__(self, sim: Simulation, node: _Node) -> None:
        self.sim = sim
        self.node = node
        self.name = node.name

    def _me(self) -> _Thread:
        t = self.sim.current()
        if t.killed:
            raise NodeCrashed
        return t

    def knows(self, node: str) -> bool:
        return node in self.sim.nodes

    def send(self, dst: str, msg: Message) -> None:
        if dst not in self.sim.nodes:
            raise ValueError(f"{self.name} sends to unknown node {dst!r}; nodes: {', '.join(self.sim.nodes)}")
        self.sim._park(self._me(), _Wait("send", _always))
        copy = json.loads(json.dumps(dict(msg)))  # what crosses a wire is a copy, as JSON
        self.sim._seq += 1
        self.sim.network.append(_Packet(self.sim._seq, self.name, dst, copy))
        self.sim.sent.append((self.name, dst, copy))

    def receive(self, timeout: float | None = None) -> Received | None:
        mailbox = self.node.mailbox
        if timeout is None:
            self.sim._park(self._me(), _Wait("receive", lambda: bool(mailbox), idle=True))
        else:
            self.sim._park(self._me(), _Wait("receive", lambda: bool(mailbox), self.sim.now + timeout))
        return mailbox.popleft() if mailbox else None

    def receive_ready(self) -> Received | None:
        # What the scheduler already delivered; taking it is no yield point, so it
        # is handled in the same step as the work before it (a schedule that ran
        # nothing else in between, which the scheduler could always have chosen).
        mailbox = self.node.mailbox
        if self.sim.current().killed or not mailbox:
            return None
        return mailbox.popleft()

    def set_timer(self, name: str, delay: float) -> None:
        self._me()
        self.node.timers[name] = self.sim.now + max(delay, 0.0)
        self.sim._fire_timers()

    def cancel_timer(self, name: str) -> None:
        self._me()
        self.node.timers.pop(name, None)

    def now(self) -> float:
        self._me()
        return self.sim.now

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            self.yield_now()
            return
        self.sim._park(self._me(), _Wait("sleep", _never, self.sim.now + seconds))

    def yield_now(self) -> None:
        self.sim._park(self._me(), _Wait("yield", _always))

    def lock(self) -> Lock:
        self._me()
        return _SimLock(self.sim)

    def queue(self) -> Queue:
        self._me()
        return _SimQueue(self.sim)

    def storage(self, name: str) -> Storage:
        self._me()
        log = self.node.logs.get(name)
        if log is None:
            log = DurableLog(self.sim._log_path(self.name, name))
            self.node.logs[name] = log
        return _SimStorage(self.sim, log)

    def spawn(self, name: str, fn: Callable[[], None]) -> None:
        self._me()
        self.sim._spawn(self.node, name, fn)

    def record(self, action: Mapping[str, Any], **extra: Any) -> None:
        self._me()
        self.sim.trace.record(self.name, action, **extra)

    def log(self, text: str) -> None:
        self._me()
        self.sim.note(f"{self.name}: {text}")

    def crash(self, reason: str) -> NoReturn:
        me = self._me()
        # Not a fault: it uses no fault budget, and a restart option follows as for
        # any node that is down.
        self.sim.failures.append(f"{self.name}: {reason}")
        self.sim.note(f"{self.name} crashed: {reason}")
        self.sim._crash(self.node, caller=me)
        raise NodeCrashed


def run_simulation(
    nodes: Mapping[str, NodeMain],
    choices: ChoiceSource,
    faults: FaultPolicy = FaultPolicy(),
    **options: Any,
) -> tuple[Simulation, RunResult]:
    """Build a simulation, run it, and return both (the simulation for inspection)."""
    sim = Simulation(nodes, choices, faults, **options)
    return sim, sim.run()
