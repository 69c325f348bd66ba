"""The saga library (``impl/saga/``) wired to ``spec/saga.py``, in both styles.

A run books ``SAGAS`` sagas of ``steps`` steps (participants ``p1``..``pN``, the
spec's names) by the spec's ``style``: an orchestrator and participants, or the
choreographed participants, an initiator and our broker.  The environment is drawn
per run: which sagas have a step refused and where, how many times each
compensation fails transiently first, and the timeouts (short ones make the
orchestrator give up on steps, or the initiator cancel, racing the steps).

What is checked.  The participants' books are the real state: append-only and
durable, so a step run twice, or undone twice, or undone without having run, shows
in them at the end as well as when it happened; the end is checked with them
(``book_problems``): **AtMostOnce** and **NothingCompensatedThatDidNotCommit** on
every record, and **SemanticAtomicity** on every saga (completed: every step in
force; compensated: none), against the outcome the client or initiator learned.
Order (**ReverseOrder**, **NoStepAfterUndo**) is the trace's: every run's trace is
validated against the spec, saga by saga (``split_key`` "saga"), with no loss budget
(a message lost is one never delivered, which the spec's message set allows with no
step) and the scheduler's crash budget; in choreography the broker's own steps
(spec/broker's vocabulary) are left out.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from distcheck.checks.conformance.simulate import Wiring
from distcheck.checks.conformance.validate import Validation, trace_events, validate_events
from distcheck.checks.params import UsageError
from distcheck.checks.traces.trace import Trace
from distcheck.impl.messaging.broker import BrokerNode, BrokerTiming
from distcheck.impl.runtime import NodeMain, Simulation
from distcheck.impl.saga import choreography as chor
from distcheck.impl.saga import orchestrator as orch
from distcheck.impl.saga import participant as part
from distcheck.spec.contract import Spec

SAGAS = ("s1", "s2", "s3")
COMPLETED, COMPENSATED = orch.COMPLETED, orch.COMPENSATED


def definition(steps: int) -> orch.SagaDefinition:
    return orch.SagaDefinition("saga", tuple(orch.Step(f"do{i}", f"p{i}", f"undo{i}") for i in range(1, steps + 1)))


@attrs.define
class Environment:
    """What the run's world does: ``refuse`` maps a saga to the step (0-based) its
    participant refuses; ``flaky`` how many times each participant's compensation
    fails transiently before it works (across sagas)."""

    refuse: dict[str, int]
    flaky: dict[str, int]

    def handlers(self, name: str, step: int) -> dict[str, Any]:
        failures = [self.flaky.get(name, 0)]

        def do(saga: str, data: Any) -> str:
            if self.refuse.get(saga) == step:
                raise part.StepRefused(f"{name} refuses {saga}")
            return f"{name}:{saga}"

        def undo(saga: str, result: Any) -> None:
            if failures[0] > 0:
                failures[0] -= 1
                raise part.TryAgain(f"{name} is busy")

        return {f"do{step + 1}": do, f"undo{step + 1}": undo}


@attrs.define
class SagaSystem:
    """What a run builds: the nodes, the participants (for their books), the sagas run
    and who learns their outcomes."""

    nodes: dict[str, NodeMain]
    participants: Sequence[part.Participant] | Sequence[chor.ChoreographedParticipant]
    learned: Mapping[str, str]  # saga -> outcome, as the client or the initiator learned it
    steps: int
    sagas: tuple[str, ...] = SAGAS


def orchestrated(cluster: orch.Cluster) -> SagaSystem:
    """An orchestrated cluster as a system to check (its client's sagas, outcomes as it learns them)."""
    client = cluster.client
    learned = _Learned(lambda: {saga: outcome.status for saga, outcome in client.outcomes.items()})
    sagas = tuple(saga for saga, _, _ in client.sagas)
    steps = len(next(iter(cluster.orchestrator.definitions.values())).steps)
    return SagaSystem(cluster.nodes(), cluster.participants, learned, steps, sagas)


def choreographed(choreography: chor.Choreography) -> SagaSystem:
    """A choreography as a system to check (its initiator's sagas, outcomes as it learns them)."""
    initiator = choreography.initiator
    sagas = tuple(saga for saga, _ in initiator.sagas)
    steps = len(initiator.definition.steps)
    learned = _Learned(lambda: initiator.outcomes)
    return SagaSystem(choreography.nodes(), choreography.participants, learned, steps, sagas)


def book_problems(sim: Simulation, system: SagaSystem, finished: bool) -> str | None:
    """What is wrong with the participants' books; once ``finished``, with each saga's
    outcome too (see the module)."""
    in_force: dict[str, set[int]] = {}
    for p in system.participants:
        seen: dict[tuple[str, int], list[str]] = {}
        for r in sim.durable_records(p.name, p.LOG):
            if "state" in r:
                seen.setdefault((str(r["saga"]), int(r["step"])), []).append(str(r["state"]))
        for (saga, step), states in sorted(seen.items()):
            if states[:1] == [part.UNDONE]:
                return f"{p.name} undid step {step + 1} of {saga} without having run it"
            if states not in ([part.DONE], [part.REFUSED], [part.CANCELLED], [part.DONE, part.UNDONE]):
                return f"{p.name}'s book holds {states} for step {step + 1} of {saga}: not at most once"
            if states == [part.DONE]:
                in_force.setdefault(saga, set()).add(step)
    if not finished:
        return None
    for saga in system.sagas:
        outcome = system.learned.get(saga)
        if outcome is None:
            return f"saga {saga} never finished"
        held = sorted(in_force.get(saga, set()))
        wanted = list(range(system.steps)) if outcome == COMPLETED else []
        if held != wanted:
            shown = [f"p{i + 1}" for i in held]
            return f"saga {saga} ended {outcome}, but in force at {shown or 'none'}: SemanticAtomicity violated"
    return None


class SagaWiring(Wiring):
    spec_name = "saga"
    variants: Mapping[str, str] = {**orch.VARIANTS, **part.VARIANTS}
    split_key = "saga"
    default_params = ("losses=0", "crashes=3")
    default_steps = 30000  # a choreographed run takes some 20,000 steps (heartbeats, the broker)
    incremental_trace = False  # validated once, at the end, without the broker's steps
    state_checks = "the participants' books checked at the end"

    def build(self, params: Mapping[str, Any], variant: str | None, rng: random.Random) -> Any:
        steps = int(params.get("steps", 3))
        saga = definition(steps)
        names = [s.participant for s in saga.steps]
        environment = Environment(
            refuse={s: rng.randrange(steps) for s in SAGAS if rng.random() < 0.4},
            flaky={name: rng.choice([0, 0, 1, 2]) for name in names},
        )
        orchestrator_variant = variant if variant in orch.VARIANTS else None
        participant_variant = variant if variant in part.VARIANTS else None
        if params.get("style", "orchestration") == "choreography":
            if orchestrator_variant is not None:
                allowed = ", ".join(part.VARIANTS)
                raise UsageError(f"{variant} is the orchestrator's; a choreography has none (variants: {allowed})")
            bus = chor.Timing(heartbeat=2.0, republish=2.0, saga_timeout=rng.choice([3.0, 30.0, 1e6]))
            chor_participants = [
                chor.ChoreographedParticipant(
                    name, saga, environment.handlers(name, i), "initiator", timing=bus, variant=participant_variant
                )
                for i, name in enumerate(names)
            ]
            initiator = chor.Initiator("initiator", saga, [(s, {}) for s in SAGAS], timing=bus)
            broker = BrokerNode("broker", BrokerTiming(visibility=3.0, consumer_timeout=8.0, tick=1.0))
            return choreographed(chor.Choreography(broker, chor_participants, initiator))
        orch_participants = [
            part.Participant(name, environment.handlers(name, i), participant_variant) for i, name in enumerate(names)
        ]
        timing = orch.Timing(step_timeout=rng.choice([0.5, 5.0, 60.0]))
        orchestrator = orch.Orchestrator("orchestrator", {saga.name: saga}, timing, orchestrator_variant)
        client = orch.Client("client", "orchestrator", [(s, saga.name, {}) for s in SAGAS])
        return orchestrated(orch.Cluster(orchestrator, orch_participants, client))

    def nodes(self, system: Any) -> dict[str, NodeMain]:
        s: SagaSystem = system
        return s.nodes

    def check_state(self, spec: Spec[Any, Any], sim: Simulation, system: Any) -> str | None:
        # The books are append-only: what goes wrong in them stays there, and the
        # end's check sees it (reading them after every step costs more than the run).
        return None

    def done(self, sim: Simulation, system: Any) -> bool:
        s: SagaSystem = system
        return all(saga in s.learned for saga in s.sagas)

    def finished(self, sim: Simulation, system: Any) -> str | None:
        if sim.failures:
            return f"a node's own code failed: {sim.failures[0]}"
        return book_problems(sim, system, finished=True)

    validate_splits: Mapping[str, str] = {"saga": "each saga on its own (the default); events with no saga left out"}

    def validate(
        self, spec: Spec[Any, Any], events: Sequence[Mapping[str, Any]], header: Mapping[str, Any] | None = None
    ) -> Validation:
        return validate_events(spec, saga_events(events), split_key="saga")

    def validate_file(
        self, spec: Spec[Any, Any], trace: Trace, split: str | None, max_states: int
    ) -> Validation | None:
        """A saga trace: saga by saga (events carry ``"saga"``; a log of one saga may
        leave it out), without the steps of anything else that logged to the same
        file (our broker logs spec/broker's)."""
        if split not in (None, "saga"):
            raise UsageError(f"a saga trace is validated saga by saga (--split saga), not by {split!r}")
        events = trace_events(trace)
        tagged = saga_events(events)
        if not tagged:  # one saga, untagged
            return validate_events(spec, events, max_states=max_states)
        return validate_events(spec, tagged, split_key="saga", max_states=max_states)


def saga_events(events: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The events of sagas: those that name theirs."""
    return [e for e in events if "saga" in e]


class _Learned(Mapping[str, str]):
    """The outcomes the client or the initiator holds now (each rebuilds its memory
    when it restarts: read through, never copied)."""

    def __init__(self, read: Callable[[], Mapping[str, str]]) -> None:
        self.read = read

    def __getitem__(self, saga: str) -> str:
        return self.read()[saga]

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self.read()))

    def __len__(self) -> int:
        return len(self.read())
