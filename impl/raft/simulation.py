"""A Raft cluster with in-process client nodes, for the controlled scheduler (and
for free mode in one process): ``cluster(...)`` builds it, ``nodes()`` is what a
runtime runs.

Where it sits: like ``impl.paxos.cluster``, the builder tests and checks use.
Servers are ``n1..nN``; each workload is a client node ``c1, c2, ...`` that runs its
operations one after another with a ``NodeClient`` and keeps a ``History`` (the
operations invoked and their results in one real-time order, for
linearizability checks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from distcheck.impl.raft.client import ClientTiming, NodeClient, Unavailable
from distcheck.impl.raft.node import RaftNode, RaftOptions, Timing
from distcheck.impl.resilience import UNBOUNDED, RetryError, Retrying
from distcheck.impl.runtime.api import Context
from distcheck.impl.runtime.history import History


def put(key: str, value: Any) -> dict[str, Any]:
    return {"op": "put", "key": key, "value": value}


def get(key: str) -> dict[str, Any]:
    return {"op": "get", "key": key}


def cas(key: str, expected: Any, value: Any) -> dict[str, Any]:
    return {"op": "cas", "key": key, "expected": expected, "value": value}


def delete(key: str) -> dict[str, Any]:
    return {"op": "delete", "key": key}


def add_server(name: str) -> dict[str, Any]:
    return {"op": "add_server", "key": name}


def remove_server(name: str) -> dict[str, Any]:
    return {"op": "remove_server", "key": name}


class Workload:
    """A client node that runs ``ops`` in order and keeps the results."""

    def __init__(
        self,
        name: str,
        servers: Sequence[str],
        ops: Sequence[Mapping[str, Any]],
        history: History,
        timing: ClientTiming,
        pause: float = 0.0,
    ) -> None:
        self.name = name
        self.servers = tuple(servers)
        self.ops = [dict(op) for op in ops]
        self.history = history
        self.timing = timing
        #: virtual seconds between one answer and the next operation
        self.pause = pause
        self.results: list[Any] = []
        self.done = False

    def main(self, ctx: Context) -> None:
        # A restarted client is a new client (its session name says so).
        client = NodeClient(ctx, self.servers, self.timing, client_id=f"{self.name}.{len(self.results)}")
        for op in self.ops[len(self.results) :]:
            if self.results and self.pause:
                ctx.sleep(self.pause)
            # An unavailable call is tried again as a new copy (a new command, under
            # its own sequence number): the unanswered entry stays open in the
            # history, so the checker counts it as perhaps applied.
            copies = Retrying(
                backoff=False,
                max_attempts=UNBOUNDED,
                retry_on=Unavailable,
                idempotent=True,
                clock=ctx.now,
                sleep=ctx.sleep,
            )
            try:
                for attempt in copies:
                    with attempt:
                        entry = self.history.call(self.name, op)
                        result = client.execute(op)
                    if attempt.exception is None:
                        break
            except RetryError as error:  # only a bug gets here: raise it as it was
                raise error.last_exception or error from None
            self.history.ret(entry, result)
            self.results.append(result)
        self.done = True


@attrs.define
class Cluster:
    servers: list[RaftNode]
    clients: list[Workload]
    history: History

    def nodes(self) -> dict[str, Callable[[Context], None]]:
        out: dict[str, Callable[[Context], None]] = {s.name: s.main for s in self.servers}
        out.update({c.name: c.main for c in self.clients})
        return out

    def done(self) -> bool:
        return all(c.done for c in self.clients)


def cluster(
    servers: int = 3,
    workloads: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
    *,
    spares: int = 0,
    timing: Timing = Timing(heartbeat=1.0, election_timeout=10.0),
    options: RaftOptions = RaftOptions(),
    client_timing: ClientTiming = ClientTiming(attempt=20.0, backoff=1.0, max_backoff=10.0, timeout=1e9),
    variant: str | None = None,
    prefix: str = "n",
    pause: float = 0.0,
) -> Cluster:
    """Servers ``n1..nN`` (the members) and ``spares`` more (``n(N+1)``..., running but
    not members until a workload adds them), and a client node per workload (name ->
    operations).  ``variant``: one of ``node.VARIANTS`` (every server has it);
    ``prefix``: the servers' names (``s`` for raft.tla's ``s1..sN``); ``pause``: each
    client's think time between operations (so that a short workload spans a run's faults)."""
    if servers < 1 or spares < 0:
        raise ValueError(f"a cluster needs at least 1 server and no negative spares, got {servers}, {spares}")
    names = [f"{prefix}{i}" for i in range(1, servers + spares + 1)]
    members = names[:servers]
    history = History()
    workloads = workloads if workloads is not None else {"c1": [put("x", 1), get("x")]}
    clients = [Workload(name, names, list(ops), history, client_timing, pause) for name, ops in workloads.items()]
    nodes = [RaftNode(n, names, timing, options, members=members, variant=variant) for n in names]
    return Cluster(nodes, clients, history)
