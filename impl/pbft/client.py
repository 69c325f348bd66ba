"""The PBFT client library and a cluster to run: replicas, clients, keys.

Where it sits: on ``impl.runtime`` (a client is a plain ``main(ctx)`` node, since
each call blocks until its result is known), beside ``impl.pbft.replica``.

Using it::

    system = cluster(replicas=4, workloads={"c1": [put("x", 1), get("x")]})
    # run system.nodes() in a runtime; or, inside any client node:
    kv = PbftClient(ctx, ["r1", "r2", "r3", "r4"], keyring.for_client("c1"))
    kv.put("x", 1); kv.cas("x", 1, 2); kv.get("x")      # → "ok", True, 2

A call sends the request to the replica it believes is the primary and returns
once f + 1 replicas sent the same result for it, each reply under the MAC that
replica shares with this client: at least one of them is honest, so the result is
the replicated state machine's.  Without f + 1 matching replies within
``retry`` seconds it sends the request to every replica (the backups relay it to
the primary and start their view-change timers) and keeps waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from distcheck.impl.paxos import KeyValueCalls, apply_op, cas, get, put
from distcheck.impl.pbft.auth import Keyring, NodeKeys, local_keyring
from distcheck.impl.pbft.messages import CLIENT_WIRE, Reply, Request
from distcheck.impl.pbft.replica import Replica, Timing, Tuning, primary_of
from distcheck.impl.resilience import UNBOUNDED, Retrying
from distcheck.impl.runtime import config
from distcheck.impl.runtime.actor import MessageError, encode
from distcheck.impl.runtime.api import Context, Envelope, NodeMain
from distcheck.impl.runtime.history import History

__all__ = ["Cluster", "PbftClient", "Workload", "cas", "cluster", "get", "put"]


class PbftClient(KeyValueCalls):
    """Blocking key-value calls on a PBFT cluster (``put``, ``get``, ``cas``)."""

    def __init__(
        self,
        ctx: Context,
        replicas: Sequence[str],
        keys: NodeKeys,
        history: History | None = None,
        retry: float = Timing().client_retry,
    ) -> None:
        if len(replicas) < 4:
            raise ValueError(f"a PBFT cluster has at least 4 replicas, got {len(replicas)}")
        self.ctx = ctx
        self.name = ctx.name
        self.replicas = tuple(replicas)
        self.f = (len(self.replicas) - 1) // 3
        self.keys = keys
        self.history = history
        self.retry = retry
        self.timestamp = 0
        self.view = 0  # the latest view a reply named: its primary gets the next request

    def execute(self, op: Mapping[str, Any]) -> Any:
        apply_op({}, op)  # refuses an unknown operation here, not at every replica
        # Timestamps grow across restarts of the client too: the clock's microseconds.
        self.timestamp = max(self.timestamp + 1, int(self.ctx.now() * 1_000_000))
        body: dict[str, Any] = {"client": self.name, "timestamp": self.timestamp, "op": dict(op)}
        request = encode(Request(self.name, self.timestamp, dict(op), self.keys.authenticator(self.replicas, body)))
        entry = self.history.call(self.name, op) if self.history is not None else None
        votes: dict[str, tuple[str, Any]] = {}  # replica → (result as JSON text, result), across attempts
        # The client and timestamp are the idempotency key: a replica executes a
        # client's timestamp once and answers a repeat with the same reply.
        resends = Retrying(
            backoff=False,
            max_attempts=UNBOUNDED,
            retry_on=TimeoutError,
            idempotency_key=f"{self.name}:{self.timestamp}",
            clock=self.ctx.now,
            sleep=self.ctx.sleep,
        )
        for attempt in resends:
            with attempt:
                # First to the primary; after ``retry`` seconds without a result, to
                # every replica (the backups relay it and start their view-change timers).
                for replica in self.replicas if attempt.number > 1 else [primary_of(self.view, self.replicas)]:
                    self.ctx.send(replica, request)
                result = self._await_result(votes, self.ctx.now() + attempt.bounded(self.retry))
            if attempt.exception is None:
                if entry is not None and self.history is not None:
                    self.history.ret(entry, result)
                return result
        raise AssertionError("unreachable: the attempts end in a return or a RetryError")  # pragma: no cover

    def _await_result(self, votes: dict[str, tuple[str, Any]], until: float) -> Any:
        """Take replies until f + 1 replicas agree on the result (returned), or raise
        TimeoutError at ``until``."""
        while (left := until - self.ctx.now()) > 0:
            reply = self._reply(left)
            if reply is None or reply.timestamp != self.timestamp or reply.client != self.name:
                continue
            votes[reply.replica] = (repr(reply.result), reply.result)
            same = [r for r, (text, _) in votes.items() if text == votes[reply.replica][0]]
            if len(same) >= self.f + 1:
                self.view = max(self.view, reply.view)
                return votes[reply.replica][1]
        raise TimeoutError(f"no f + 1 matching replies to timestamp {self.timestamp} yet")

    def _reply(self, timeout: float) -> Reply | None:
        """The next reply within ``timeout`` seconds that is well formed and carries
        a valid MAC of the replica it names (None: none came)."""
        item = self.ctx.receive(timeout=timeout)
        if not isinstance(item, Envelope):
            return None
        try:
            reply: Reply = CLIENT_WIRE.decode(item.msg)
        except MessageError as exc:
            self.ctx.log(f"ignored a message from {item.src}: {exc}")
            return None
        if reply.replica not in self.replicas or not self.keys.check_mac(reply.replica, reply.body(), reply.mac):
            self.ctx.log(f"ignored a reply from {item.src} whose MAC does not check")
            return None
        return reply


class Workload:
    """A client node that runs ``ops`` one after another and keeps the results."""

    def __init__(
        self,
        name: str,
        replicas: Sequence[str],
        keys: NodeKeys,
        ops: Sequence[Mapping[str, Any]],
        history: History,
        retry: float = Timing().client_retry,
    ) -> None:
        self.name = name
        self.replicas = tuple(replicas)
        self.keys = keys
        self.ops = [dict(op) for op in ops]
        self.history = history
        self.retry = retry
        self.results: list[Any] = []

    def main(self, ctx: Context) -> None:
        client = PbftClient(ctx, self.replicas, self.keys, self.history, self.retry)
        self.results = []
        for op in self.ops:
            self.results.append(client.execute(op))


@attrs.define
class Cluster:
    """Replicas and client workloads wired together: ``nodes()`` is what a runtime
    runs.  ``byzantine`` maps a replica's name to the node that runs in its place
    (``impl.pbft.byzantine``); ``replicas`` are the honest ones."""

    replicas: list[Replica]
    clients: list[Workload]
    history: History
    keyring: Keyring
    byzantine: dict[str, NodeMain] = attrs.field(factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return self.keyring.replicas

    def nodes(self) -> dict[str, Callable[[Context], None]]:
        out: dict[str, Callable[[Context], None]] = {r.name: r.main for r in self.replicas}
        out.update(self.byzantine)
        out.update({c.name: c.main for c in self.clients})
        return {name: out[name] for name in sorted(out)}


def cluster(
    replicas: int = 4,
    workloads: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
    variant: str | None = None,
    timing: Timing = Timing(),
    tuning: Tuning = Tuning(),
    byzantine: Mapping[str, Callable[[str, Sequence[str], NodeKeys], NodeMain]] | None = None,
    keyring: Keyring | None = None,
) -> Cluster:
    """Replicas ``r1..rN`` (``byzantine`` maps some of them to a maker of the node
    that runs in its place, given its name, the replicas and its keys) and one
    client node per workload (name → operations)."""
    from distcheck.impl.pbft.replica import VARIANTS

    config.check_variant(variant, VARIANTS)
    if replicas < 4:
        raise ValueError(f"a PBFT cluster needs at least 4 replicas (3f + 1 with f >= 1), got {replicas}")
    names = [f"r{i}" for i in range(1, replicas + 1)]
    byzantine = dict(byzantine or {})
    unknown = sorted(set(byzantine) - set(names))
    if unknown:
        raise ValueError(f"no replica named {', '.join(unknown)}; replicas: {', '.join(names)}")
    if len(byzantine) > (replicas - 1) // 3:
        raise ValueError(f"{replicas} replicas tolerate {(replicas - 1) // 3} Byzantine ones, not {len(byzantine)}")
    ring = keyring or local_keyring(names)
    history = History()
    workloads = workloads if workloads is not None else {"c1": [put("x", 1), get("x")]}
    clients = [
        Workload(name, names, ring.for_client(name), list(ops), history, timing.client_retry)
        for name, ops in workloads.items()
    ]
    honest = [Replica(n, names, ring.for_replica(n), timing, tuning, variant) for n in names if n not in byzantine]
    faulty = {n: make(n, names, ring.for_replica(n)) for n, make in byzantine.items()}
    return Cluster(honest, clients, history, ring, faulty)
