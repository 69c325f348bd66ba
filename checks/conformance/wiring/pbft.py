"""The PBFT key-value store (``impl/pbft/``) wired to ``spec/pbft.py``, with a
Byzantine replica in every run.

Each run replaces the faulty replicas r1..rf (``faulty``, default 1: the primary of
view 0) with one of the nemeses of ``impl.pbft.byzantine``, the seed choosing which
(``NEMESES``: equivocate, conflicting_votes, forge, replay, silent, twins), while
the scheduler may crash, partition, drop, copy and reorder as ``--faults`` allows.

Checked after every step, on the honest replicas' real state: Agreement (no two
honest replicas executed different batches at one number, over the whole run) and
Validity (every request an honest replica executed was sent by its client).  At
the end: every client finished, honest replicas that executed as far hold the
same store, the clients' results are linearizable (``checks.histories``), and the
honest replicas' trace is a behaviour of spec/pbft.

Validating the trace (docs/pbft.md, "Checking the implementation").
- A batch stands for the spec's request by its digest; the digests become the
  spec's ``q1..qK`` in order of first appearance, a null batch ``null``, a batch
  holding a request no client sent ``forged``.
- What the Byzantine replicas sent is the spec's Byzantine vocabulary: the run's
  trace carries it in its header (``byzantine``: every message the faulty
  replicas sent under their own names with a valid signature, in the spec's
  terms; a view-change claims the certificates whose evidence holds), and the
  trace is validated from the spec's initial state holding those
  (``Pbft.initial``), the spec's sizes (views, numbers, requests) those of the run.
- A new-view re-issues the numbers above the highest stable checkpoint it carries
  (``low``); below it, what was executed there is stable at a quorum, and the new
  view carries it in the spec's terms: the validation fills those numbers in with
  the request honest replicas executed there.
- Every honest step is logged, so each event is one spec action, applied directly
  (``checks.conformance.directed``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from distcheck.checks.conformance.directed import validate_directed
from distcheck.checks.conformance.simulate import Wiring
from distcheck.checks.conformance.validate import Validation, trace_events
from distcheck.checks.histories.linearizability import Operation, check_history
from distcheck.checks.params import UsageError
from distcheck.checks.traces.trace import Trace
from distcheck.impl import pbft as impl_pbft
from distcheck.impl.pbft.auth import digest
from distcheck.impl.pbft.byzantine import NEMESES
from distcheck.impl.pbft.messages import BODIES, NULL, Commit, NewView, Prepare, PrePrepare, ViewChange
from distcheck.impl.pbft.replica import certified_pre_prepare
from distcheck.impl.runtime import FaultPolicy, NodeMain, Simulation
from distcheck.impl.runtime.actor import MessageError
from distcheck.spec.codec import from_json, to_json
from distcheck.spec.contract import Spec
from distcheck.spec.pbft import (
    FORGED,
    Config,
    Message,
    MsgCommit,
    MsgNewView,
    MsgPrepare,
    MsgPrePrepare,
    MsgReply,
    MsgViewChange,
    Pbft,
    PbftState,
)
from distcheck.spec.values import fingerprint

#: the nemeses, in the order seeds take them
NEMESIS_ORDER = tuple(NEMESES)


class PbftWiring(Wiring):
    """``impl.pbft`` (replicas r1..rN, N = ``replicas``, the first ``faulty`` of them
    Byzantine, and two clients running a few random puts, gets and compare-and-sets
    on two keys) against ``spec.pbft``."""

    spec_name = "pbft"
    variants = impl_pbft.VARIANTS
    incremental_trace = False
    # View changes under a Byzantine replica and faults make a run long.
    default_steps = 10000
    unbounded_params = ("max_view", "requests", "seqs")
    state_checks = (
        "Byzantine r1..rf in every run (the seed picks: " + ", ".join(NEMESIS_ORDER) + "), "
        "Agreement and Validity among the honest replicas after every step"
    )
    clients = ("c1", "c2")
    keys = ("x", "y")
    #: small batches, windows and checkpoint intervals, so that a short run fills
    #: batches, moves its water marks and collects garbage
    tuning = impl_pbft.Tuning(max_batch=2, window=2, checkpoint_interval=2)
    timing = impl_pbft.Timing()

    def __init__(self, nemeses: Sequence[str] = NEMESIS_ORDER) -> None:
        """``nemeses``: the ones seeds choose from (a test may pin one)."""
        unknown = sorted(set(nemeses) - set(NEMESES))
        if unknown or not nemeses:
            raise ValueError(f"unknown nemesis {', '.join(unknown) or '(none given)'}; allowed: {', '.join(NEMESES)}")
        self.nemeses = tuple(nemeses)

    def build(self, params: Mapping[str, Any], variant: str | None, rng: random.Random) -> Any:
        replicas = int(params.get("replicas", 4))
        faulty = int(params.get("faulty", 1))
        if replicas < 4 or faulty != (replicas - 1) // 3:
            # The spec's quorum is replicas - faulty; the implementation's is 2f + 1 with
            # f = (replicas - 1) // 3: the two agree when the run has f Byzantine replicas.
            raise UsageError(
                f"simulate pbft runs replicas >= 4 with faulty = (replicas - 1) // 3 Byzantine ones (the spec's "
                f"quorum is replicas - faulty, the implementation's 2f + 1); got replicas={replicas}, faulty={faulty}"
            )
        nemesis = rng.choice(self.nemeses)
        byzantine = {f"r{i}": NEMESES[nemesis](self.timing, self.tuning) for i in range(1, faulty + 1)}
        workloads = {c: [self.random_op(rng) for _ in range(rng.randint(2, 4))] for c in self.clients}
        cluster = impl_pbft.cluster(
            replicas, workloads, variant, timing=self.timing, tuning=self.tuning, byzantine=byzantine
        )
        return PbftSystem(cluster, nemesis if faulty else "none")

    def random_op(self, rng: random.Random) -> dict[str, Any]:
        key = rng.choice(self.keys)
        kind = rng.choice(("put", "get", "cas"))
        if kind == "put":
            return impl_pbft.put(key, rng.randint(1, 3))
        if kind == "get":
            return impl_pbft.get(key)
        return impl_pbft.cas(key, rng.choice((None, 1, 2, 3)), rng.randint(1, 3))

    def nodes(self, system: Any) -> dict[str, NodeMain]:
        pbft_system: PbftSystem = system
        return pbft_system.cluster.nodes()

    def fault_policy(self, faults: FaultPolicy, system: Any) -> FaultPolicy:
        pbft_system: PbftSystem = system
        replicas = pbft_system.cluster.names
        return attrs.evolve(faults, crashable=replicas, partitioned=replicas)

    # ------------------------------------------------------------ state checks

    def check_state(self, spec: Spec[Any, Any], sim: Simulation, system: Any) -> str | None:
        pbft_system: PbftSystem = system
        pbft_system.read(sim)
        for r in pbft_system.cluster.replicas:
            for seq, d in r.executed.items():
                first = pbft_system.executed.setdefault(seq, (d, r.name))
                if first[0] != d:
                    return (
                        f"Agreement violated at number {seq}: {first[1]} executed batch {first[0]}, "
                        f"{r.name} executed batch {d}"
                    )
                if d not in pbft_system.checked:
                    problem = pbft_system.forged_request(d)
                    if problem is not None:
                        return f"Validity violated: {r.name} executed batch {d} at number {seq}, {problem}"
                    pbft_system.checked.add(d)
        return None

    def done(self, sim: Simulation, system: Any) -> bool:
        pbft_system: PbftSystem = system
        return all(len(c.results) == len(c.ops) for c in pbft_system.cluster.clients)

    def history(self, system: Any) -> list[Operation]:
        pbft_system: PbftSystem = system
        return [Operation(e.client, e.call, e.ret, e.op, e.result) for e in pbft_system.cluster.history.entries]

    def finished(self, sim: Simulation, system: Any) -> str | None:
        if sim.failures:
            return f"a node's own code failed: {sim.failures[0]}"
        pbft_system: PbftSystem = system
        cluster = pbft_system.cluster
        for c in cluster.clients:
            if len(c.results) < len(c.ops):
                return f"client {c.name} finished {len(c.results)} of its {len(c.ops)} operations"
        by_progress: dict[int, dict[str, Any]] = {}
        for r in cluster.replicas:
            first = by_progress.setdefault(r.last_executed, {"name": r.name, "data": r.data})
            if first["data"] != r.data:
                return (
                    f"{first['name']} and {r.name} executed up to {r.last_executed} but hold different stores: "
                    f"{first['data']} and {r.data}"
                )
        history = [Operation(e.client, e.call, e.ret, e.op, e.result) for e in cluster.history.entries]
        verdict = check_history(history)
        if not verdict.ok:
            return f"the clients' results are {verdict.message}"
        return None

    # ------------------------------------------------------------------ traces

    def annotate(self, header: dict[str, Any], sim: Simulation, system: Any) -> None:
        pbft_system: PbftSystem = system
        pbft_system.read(sim)
        header["nemesis"] = pbft_system.nemesis
        header["byzantine"] = [to_json(m) for m in pbft_system.faulty_messages()]
        header["forged"] = sorted(pbft_system.forged_batches())

    def validate(
        self, spec: Spec[Any, Any], events: Sequence[Mapping[str, Any]], header: Mapping[str, Any] | None = None
    ) -> Validation:
        if not isinstance(spec, Pbft):
            raise TypeError(f"the PBFT store validates against spec/pbft, not {type(spec).__name__}")
        return validate_run(spec.config, events, header or {})

    def validate_file(
        self, spec: Spec[Any, Any], trace: Trace, split: str | None, max_states: int
    ) -> Validation | None:
        """A trace of ``impl/pbft`` (its header names the Byzantine messages, its
        events batches by digest) is validated as a run; any other trace of pbft
        (already in the spec's vocabulary) the generic way."""
        if not isinstance(spec, Pbft):
            raise TypeError(f"the PBFT store validates against spec/pbft, not {type(spec).__name__}")
        if "byzantine" not in trace.header.extra:
            return None
        if split is not None:
            raise UsageError("a PBFT run's trace is one instance; it takes no --split")
        return validate_run(spec.config, trace_events(trace), trace.header.extra, max_states)


# ---------------------------------------------------------------- the system


@attrs.define
class PbftSystem:
    cluster: impl_pbft.Cluster
    nemesis: str
    #: seq → (batch digest, the first honest replica seen executing it)
    executed: dict[int, tuple[str, str]] = attrs.field(factory=dict)
    #: batch digests whose requests were checked against the clients'
    checked: set[str] = attrs.field(factory=set)
    #: digest → batch, from every pre-prepare seen on the network
    batches: dict[str, tuple[dict[str, Any], ...]] = attrs.field(factory=dict)
    #: the digests of the requests the clients sent
    requests: set[str] = attrs.field(factory=set)
    #: (sender, signed body) of every signed message the faulty replicas sent
    faulty_sent: list[dict[str, Any]] = attrs.field(factory=list)
    seen: int = 0

    def read(self, sim: Simulation) -> None:
        """Take in the messages sent since the last call."""
        clients = {c.name for c in self.cluster.clients}
        faulty = set(self.cluster.byzantine)
        for src, _, msg in sim.sent[self.seen :]:
            if src in clients and msg.get("type") == "Request":
                self.requests.add(digest({k: msg[k] for k in ("client", "timestamp", "op")}))
            elif msg.get("type") == "Signed" and isinstance(msg.get("body"), dict):
                body = msg["body"]
                if body.get("type") == "PrePrepare" and isinstance(body.get("digest"), str):
                    self._batch(body)
                elif body.get("type") == "NewView":
                    for m in body.get("pre_prepares") or ():
                        if isinstance(m, dict) and isinstance(m.get("body"), dict):
                            self._batch(m["body"])
                if src in faulty:
                    self.faulty_sent.append(msg)
        self.seen = len(sim.sent)

    def _batch(self, body: Mapping[str, Any]) -> None:
        try:
            pp = BODIES.decode(body)
        except MessageError:
            return
        self.batches.setdefault(pp.digest, pp.batch)

    def forged_request(self, d: str) -> str | None:
        """What is wrong with batch ``d``'s requests (None: every one a client's)."""
        if d == NULL:
            return None
        batch = self.batches.get(d)
        if batch is None:
            return "a batch no pre-prepare carried"
        for r in batch:
            if digest({k: r[k] for k in ("client", "timestamp", "op")}) not in self.requests:
                return f"whose request {r['client']}@{r['timestamp']} {r['op']} its client never sent"
        return None

    def forged_batches(self) -> set[str]:
        return {d for d in self.batches if self.forged_request(d) is not None}

    def faulty_messages(self) -> list[Message]:
        """What the faulty replicas sent, in the spec's terms (docstring)."""
        keys = self.cluster.keyring.for_client("checker")
        names = self.cluster.names
        faulty = set(self.cluster.byzantine)
        out: dict[Message, None] = {}
        for msg in self.faulty_sent:
            try:
                body = BODIES.decode(msg["body"])
            except MessageError:
                continue
            if body.sender not in faulty or not keys.verify(body.sender, msg["body"], str(msg.get("sig"))):
                continue  # a forgery (no valid signature), or a replay of an honest replica's message
            match body:
                case PrePrepare(sender, view, seq, d, _):
                    out[MsgPrePrepare(sender, view, seq, d)] = None
                case Prepare(sender, view, seq, d):
                    out[MsgPrepare(sender, view, seq, d)] = None
                case Commit(sender, view, seq, d):
                    out[MsgCommit(sender, view, seq, d)] = None
                case ViewChange(sender, view, stable, _, prepared):
                    certs = []
                    for cert in prepared:
                        pp = certified_pre_prepare(keys, names, cert, view, stable)
                        if pp is not None:
                            certs.append((pp.view, pp.seq, pp.digest))
                    out[MsgViewChange(sender, view, tuple(sorted(set(certs))))] = None
                case NewView(sender, view, _, pre_prepares):
                    carried = []
                    for m in pre_prepares:
                        pp = BODIES.decode(m["body"]) if isinstance(m, dict) else None
                        if isinstance(pp, PrePrepare) and pp.sender == sender and pp.view == view:
                            out[MsgPrePrepare(sender, view, pp.seq, pp.digest)] = None
                            carried.append((pp.seq, pp.digest))
                    out[MsgNewView(sender, view, tuple(carried))] = None
        return list(out)


# ------------------------------------------------------------------ validation


def validate_run(
    config: Config, events: Sequence[Mapping[str, Any]], header: Mapping[str, Any], max_states: int = 200_000
) -> Validation:
    """The honest replicas' trace of a run against spec/pbft (module docstring)."""
    probe = Pbft(Config(replicas=config.replicas, faulty=config.faulty, max_view=0, requests=1, seqs=1))
    try:
        faulty = [from_json(m, probe.value_types()) for m in header.get("byzantine") or ()]
        forged = {str(d) for d in header.get("forged") or ()}
    except (TypeError, ValueError, KeyError) as exc:
        raise UsageError(f"the header's byzantine messages are not spec/pbft messages: {exc}") from None
    names: dict[str, str] = {NULL: NULL, **{d: FORGED for d in forged}}

    def name(d: Any) -> str:
        d = str(d)
        if d not in names:
            names[d] = f"q{sum(1 for n in names.values() if n.startswith('q')) + 1}"
        return names[d]

    try:
        mapped_events, vocabulary, spec = _spec_terms(config, events, faulty, names, name)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise UsageError(f"not a trace of impl/pbft's events: {exc}") from None
    initial = spec.initial(vocabulary)

    def step(states: Sequence[PbftState], event: Mapping[str, Any]) -> list[PbftState]:
        out: dict[int, PbftState] = {}
        for state in states:
            action_json = dict(event["action"])
            low = int(event.get("low", 0))  # checked by _spec_terms
            if action_json.get("type") == "NewView":
                filled = _executed_below(spec, state, low)
                if filled is None:
                    continue
                action_json["carried"] = [*filled, *action_json["carried"]]
            try:
                action = spec.action_from_json(action_json)
            except (TypeError, ValueError, KeyError):
                continue
            if getattr(action, "replica", None) != event.get("actor"):
                continue
            nxt = spec.next_state(state, action)
            if nxt is not None:
                out.setdefault(fingerprint(nxt), nxt)
        return list(out.values())

    validation, _ = validate_directed(
        spec,
        [{k: v for k, v in e.items()} for e in mapped_events],
        step,
        receipt=lambda e: None,
        copy=lambda states, e: None,
        max_states=max_states,
        initial=[initial],
    )
    return validation


#: the largest model a run's trace is validated in: (views)² × numbers × requests
MAX_VALIDATION_SIZE = 5_000_000


def _spec_terms(
    config: Config,
    events: Sequence[Mapping[str, Any]],
    faulty: Sequence[Message],
    names: Mapping[str, str],
    name: Callable[[Any], str],
) -> tuple[list[dict[str, Any]], list[Message], Pbft]:
    """The events and the Byzantine messages in the spec's terms, and the spec at
    the run's sizes; TypeError, ValueError or KeyError on an event that is not one
    of impl/pbft's (or one too large: a Byzantine vocabulary that grows as views² ×
    numbers × requests, which a diagnosis enumerates)."""
    views, seqs = [0], [1]
    mapped_events = []
    for e in events:
        action = dict(e.get("action") or {})
        if "request" in action:
            action["request"] = name(action["request"])
        if action.get("type") == "NewView":
            action["carried"] = [[int(n), name(d)] for n, d in action.get("carried") or ()]
            seqs += [int(n) for n, _ in action["carried"]]
        views.append(int(action.get("view", 0)))
        seqs.append(int(action.get("seq", 1)))
        low = e.get("low", 0)
        if isinstance(low, bool) or not isinstance(low, int) or low < 0:
            raise ValueError(f"step {e.get('step')}: low must be a number of at least 0, got {low!r}")
        mapped_events.append({**e, "action": action})
    vocabulary: list[Message] = []
    for m in faulty:
        match m:
            case MsgPrePrepare() | MsgPrepare() | MsgCommit():
                vocabulary.append(attrs.evolve(m, request=name(m.request)))
                seqs.append(m.seq)
            case MsgViewChange():
                vocabulary.append(attrs.evolve(m, prepared=tuple((v, n, name(r)) for v, n, r in m.prepared)))
                seqs += [n for _, n, _ in m.prepared]
            case MsgNewView():
                vocabulary.append(attrs.evolve(m, carried=tuple((n, name(r)) for n, r in m.carried)))
        views.append(m.view)
    requests = max(1, sum(1 for n in names.values() if n.startswith("q")))
    size = (max(views) + 1) ** 2 * max(seqs) * (requests + 1)
    if size > MAX_VALIDATION_SIZE:
        raise ValueError(f"views up to {max(views)} and numbers up to {max(seqs)}: a model too large to validate")
    spec = Pbft(Config(config.replicas, config.faulty, max(views), requests, max(seqs)))
    return mapped_events, vocabulary, spec


def _executed_below(spec: Pbft, state: PbftState, low: int) -> list[list[Any]] | None:
    """Numbers 1..low with the request honest replicas executed at each (None if
    some number has none: the new view's stable checkpoint is not explained)."""
    done: dict[int, str] = {}
    for m in state.msgs.sent:
        if isinstance(m, MsgReply) and m.sender in spec.honest:
            done.setdefault(m.seq, m.request)
    if any(n not in done for n in range(1, low + 1)):
        return None
    return [[n, done[n]] for n in range(1, low + 1)]


__all__ = ["NEMESIS_ORDER", "PbftSystem", "PbftWiring", "validate_run"]
