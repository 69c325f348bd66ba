"""A lock service with leases and fencing tokens, in the style of Chubby, ZooKeeper
and etcd.

Clients ask a lock server for one named lock.  The server queues the requests in
the order they arrive and grants the lock to the oldest waiter once nobody holds an
unexpired lease: a grant is a lease with a time-to-live (``ttl`` ticks of the
server's clock) and a fencing token, the request's sequence number, so tokens
increase with every grant.  The holder renews the lease before it runs out and
releases it when done; if it crashes, the lease simply expires and the lock passes
on.  A client measures its lease on its own clock, which may run slow, so it
stops trusting the lease ``max_drift`` ticks early.  Timing alone cannot make a
lock safe, though: a client that checked its lease and then paused (a long garbage
collection, a slow network) acts after its lease is gone.  So the resource the
lock protects, a storage service, remembers the highest token it has accepted and
rejects any write that carries a lower one.  When the lock server itself is
replaced (a new leader takes over after the old one crashed or was deposed, or
the one server restarts without its lease table), the new server does not know
which leases the old one granted last, so before it grants anything it waits
until every lease the old one may have granted is over; the token counter is
durable, so tokens keep increasing across the change.

Sources: C. Gray and D. Cheriton, "Leases: An Efficient Fault-Tolerant Mechanism
for Distributed File Cache Consistency" (SOSP 1989); M. Burrows, "The Chubby lock
service for loosely-coupled distributed systems" (OSDI 2006: sequencers, the
client's conservative local lease timeout); the ZooKeeper lock recipe (sequential
nodes served lowest first); M. Kleppmann, "How to do distributed locking" (2016:
fencing tokens, the paused client, the critique of Redlock's timing assumptions);
the Redis documentation of SET NX PX and its safe-release pattern; Chubby's
master fail-over (the new master's conservative wait, its epoch number) and
etcd's lessor on leader change.

Modelling choices
    Time is a discrete clock, the server's (``now``); ``Tick`` advances it and with
    it every client's clock.  A client's clock may fall behind the server's, by at
    most ``max_drift`` ticks over any one lease; only that shortfall between the
    grant (or the last renewal) and now affects what a client does, so the state
    keeps just that: ``lag``, reset at each grant and renewal, raised by ``Drift``.
    A clock that runs fast only makes a client give up early, which is safe, so it
    is not modelled.
    The client-server exchanges (Acquire, Grant, Renew, Release) are atomic steps,
    not messages.  For safety this loses nothing: a lost request is a step not
    taken, a lost grant is a holder that never acts (the lease expires as after a
    crash), a late renewal or release is a Renew or Release taken late, which is
    allowed at any time while a client thinks it may hold the lock; and a real
    client starts its lease clock when it sends its request (Chubby, Redlock),
    which covers the grant's time in flight.  Modelling the messages would
    multiply the states without adding a behaviour the invariants can tell apart.
    The write to storage is the exception, because the delay between a client's
    lease check and its write's arrival is the whole point of fencing: ``Write``
    checks the lease and puts the write in flight; ``AcceptWrite`` or
    ``RejectWrite`` is the storage's decision, any number of ticks later.
    A pause is a stretch of ticks in which a client takes no step; interleaving
    gives every such stretch, so there is no Pause action (a paused process logs
    nothing).  Crashes are crash-stop: a restarted client is a new client (add one
    to ``clients``).  Only a client the service knows about (waiting or holding)
    crashes; an idle client's crash is indistinguishable from its silence.
    The server keeps lease records until they are released or reaped (``Expire``),
    as etcd's lessor does, and counts a lease as held only while it is unexpired
    by its own clock.
    A leader change (``LeaderChange``, at most ``max_leader_changes`` times) is
    modelled at its worst: the new server has none of its predecessor's lease
    records (they were granted or renewed in its last moments, not yet durable or
    replicated) and none of its queue (memory only); the token counter and the
    newest grant's token are durable and survive.  The unexpired leases it lost
    stay in the state as ``old_leases``, not the server's knowledge but the
    world's: their holders know nothing of the change and still trust them.  A
    holder that later renews or releases one finds that the server has no record
    of it (a renewal is refused).  Waiters learn that their requests are gone and
    may ask again.
    Clock assumption of the takeover: ``now`` is the clock the leases run on.  The
    new server measures its wait on its own clock, which over the wait gains at
    most ``max_drift`` ticks on ``now``; it waits ``ttl + max_drift`` ticks of it,
    that is at least ``ttl`` ticks of ``now``, after which every old lease (granted
    or renewed at the latest at the change, for at most ``ttl``) is over.  The
    spec takes the worst case: ``grants_after = now + ttl``.  A slower clock only
    waits longer, which removes behaviours.  (As for clients, only the clock's
    rate over one wait matters, so nothing else of it is kept.)
    The state space is bounded by ``max_time`` (the clock stops there) and
    ``max_requests`` (lock requests in one run), as guards of Tick and Acquire
    rather than a state constraint, so that every consumer of the spec (the z3
    encoding's cross-check, trace validation, hypothesis) sees the same finite
    model.  The price: ``--deadlock`` reports the end of time, a state at
    ``max_time`` with no request left in which nothing can happen.

State: ``now``; each client's ``status`` (idle, waiting, holding, lapsed: its
own clock says its lease is over, or crashed), ``token`` (its request's sequence
number: its place in the queue, then its fencing token), ``deadline`` (the server
time at which it stops trusting its lease, had its clock kept pace), ``lag``,
``in_flight`` (the token of its write on the way to storage) and ``crashed_at`` (a
history variable); the server's ``queue`` of (token, client) in request order,
``leases`` (token ↦ holder, grant time, expiry), ``issued`` (requests so far),
``last_granted`` (the newest grant's token), ``epoch`` (leader changes so far)
and ``grants_after`` (no grant before this tick); ``old_leases``, the leases of
earlier servers still unexpired at the change; the storage's ``highest`` token
accepted, the token of the write whose ``data`` it holds, and whether it has
``rejected`` a write.

Actions
    Acquire(client)      An idle client asks for the lock; the server queues it
                         with the next token (while fewer than max_requests).
    Grant(client)        The server grants the lock to the oldest waiter once no
                         lease is held and now >= grants_after: a lease until
                         now + ttl.
    Renew(client)        A holder asks to extend its lease; the server extends an
                         unexpired one to now + ttl, and otherwise refuses, and the
                         client learns it has lost the lock.
    Release(client)      A holder gives the lock back; the server deletes that
                         client's lease.
    Expire(token)        The server reaps a lease that has expired.
    LeaderChange         A new server takes over: it keeps the token counter,
                         loses the queue and its lease records, and grants nothing
                         before now + ttl (up to max_leader_changes times).
    Write(client)        A client that trusts its lease sends a write carrying its
                         token to storage.
    AcceptWrite(client)  Storage accepts the client's write: its token is at least
                         the highest it has accepted.
    RejectWrite(client)  Storage rejects the client's write: its token is stale.
    Drift(client)        A holder's clock falls one tick behind the server's.
    Crash(client)        A waiting or holding client stops for good; its write, if
                         one is in flight, still arrives.
    Tick                 The server's clock, and every client's, advances one tick
                         (up to max_time); a holder whose own clock reaches its
                         deadline lapses.

Invariants
    TypeOK                every variable holds a value of its type.
    MutualExclusion       at most one lease, granted by this server or an earlier
                          one, is unexpired.
    LeaseValidity         a client trusts its lease only while the server's clock
                          says it is unexpired.
    FencedWrites          storage never accepts a write from a superseded lease
                          after a write from the lease that superseded it.
    AutomaticRelease      a crashed client's lease is over within ttl ticks of the
                          crash (or of the grant, if granted after the crash).
    FirstComeFirstServed  no waiting client asked before the client most recently
                          granted the lock.
    (MutualExclusion and LeaseValidity together give what users rely on: at any
    instant at most one client trusts that it holds the lock.  checks/proofs/lock.py
    proves all five from an inductive invariant: ``distcheck prove lock``.)

Reachable (each must hold in some state)
    ExpiredAndRegranted   a lease expired unreleased and another client holds the
                          lock.
    CrashedHolderReplaced a crashed client's lease expired and another client holds
                          the lock.
    LeaseRenewed          a lease has been renewed past the expiry it was granted
                          with.
    StaleWriteRejected    storage has rejected a write with a stale token.
    DriftedHolder         a client trusts its lease with its clock max_drift ticks
                          behind (only when max_drift > 0).
    WaitedOutOldLease     a server that took over has granted the lock to another
                          client than its predecessor's holder (only when
                          max_leader_changes > 0).

Variants: deliberately broken versions, each a real mistake, each caught.  They
are declared at the end of this module, each a subclass that overrides the one
rule or derived fact it breaks (its docstring tells the story):
``unfenced_storage`` (storage ignores tokens: FencedWrites) overrides
``storage_accepts``; ``no_drift_margin`` (trust for the full ttl by a slow clock:
LeaseValidity) overrides ``trust_period``; ``release_by_non_holder`` (a release
frees whoever's lock: LeaseValidity) overrides the Release rule;
``renew_after_expiry`` (etcd #14758: MutualExclusion) overrides
``renewal_accepted``; ``no_expiry`` (a lock without a TTL: AutomaticRelease)
overrides ``lease_live``; ``barging`` (any waiter, not the oldest:
FirstComeFirstServed) overrides ``served_next``; ``no_lease_wait`` (a new server
grants at once: MutualExclusion) and ``no_takeover_drift_margin`` (it waits one
ttl by a clock that may run fast: MutualExclusion) override ``grant_barrier``.  ``Lock.variants()`` lists them
with their one-line descriptions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from distcheck.spec.codec import to_json
from distcheck.spec.contract import Action, Exists, Invariant, Next, Reachable, Spec, param, rule, variant
from distcheck.spec.values import FrozenMap, sorted_values

IDLE, WAITING, HOLDING, LAPSED, CRASHED = "idle", "waiting", "holding", "lapsed", "crashed"
STATUSES = (IDLE, WAITING, HOLDING, LAPSED, CRASHED)
KNOWN_TO_SERVER = (WAITING, HOLDING, LAPSED)  # statuses in which a client holds a token


def client_names(n: int) -> tuple[str, ...]:
    return tuple(f"c{i}" for i in range(1, n + 1))


# -------------------------------------------------------------------------- state


@attrs.frozen
class Client:
    """One client as it sees itself, plus its crash time (a history variable)."""

    status: str = IDLE
    token: int | None = None  # queue position while waiting, fencing token while holding
    deadline: int | None = None  # server time at which it stops trusting its lease, absent drift
    lag: int = 0  # ticks its clock has fallen behind the server's since the grant or renewal
    in_flight: int | None = None  # token carried by its write on the way to storage
    crashed_at: int | None = None

    def __str__(self) -> str:
        parts = [self.status if self.token is None else f"{self.status} #{self.token}"]
        if self.deadline is not None:
            parts.append(f"trusts until {self.deadline}" + (f" - lag {self.lag}" if self.lag else ""))
        if self.in_flight is not None:
            parts.append(f"write #{self.in_flight} in flight")
        if self.crashed_at is not None:
            parts.append(f"since {self.crashed_at}")
        return ", ".join(parts)


@attrs.frozen
class Lease:
    """The server's record of one grant."""

    holder: str
    granted_at: int
    expires: int

    def __str__(self) -> str:
        return f"{self.holder}@{self.granted_at}..{self.expires}"


@attrs.frozen
class Server:
    queue: tuple[tuple[int, str], ...] = ()  # (token, client), oldest request first
    leases: FrozenMap[int, Lease] = FrozenMap()  # token -> lease, until released or reaped
    issued: int = 0  # tokens handed out so far; the next request gets issued + 1
    last_granted: int = 0  # token of the most recent grant (0: none yet)
    epoch: int = 0  # leader changes so far: 0 is the first server
    grants_after: int = 0  # no grant while now < grants_after (the takeover's wait)


@attrs.frozen
class Storage:
    """The protected resource: it keeps the highest token it has accepted and the
    token of the write whose data it now holds (0: none yet)."""

    highest: int = 0
    data: int = 0
    rejected: bool = False


@attrs.frozen
class LockState:
    now: int
    clients: FrozenMap[str, Client]
    server: Server
    storage: Storage
    # Leases an earlier server granted that the current one has no record of, as
    # they stood at the leader change (only those still unexpired then).  They are
    # not the server's state but the world's: their holders may still trust them,
    # so the invariants count them.
    old_leases: FrozenMap[int, Lease] = FrozenMap()


# ------------------------------------------------------------------------ actions


@attrs.frozen
class Acquire(Action):
    ACTOR = "client"
    client: str


@attrs.frozen
class Grant(Action):
    ACTOR = "server"
    client: str


@attrs.frozen
class Renew(Action):
    ACTOR = "client"
    client: str


@attrs.frozen
class Release(Action):
    ACTOR = "client"
    client: str


@attrs.frozen
class Expire(Action):
    ACTOR = "server"
    token: int


@attrs.frozen
class Write(Action):
    ACTOR = "client"
    client: str


@attrs.frozen
class AcceptWrite(Action):
    ACTOR = "storage"
    client: str


@attrs.frozen
class RejectWrite(Action):
    ACTOR = "storage"
    client: str


@attrs.frozen
class Drift(Action):
    ACTOR = "client"
    client: str


@attrs.frozen
class ClientCrash(Action):
    """A client stops for good (crash-stop).  It reads as ``Crash(c1)``; its field is
    ``client`` so that Next binds it with the client's other steps."""

    ACTOR = "client"
    client: str

    def __str__(self) -> str:
        return f"Crash({self.client})"


@attrs.frozen
class LeaderChange(Action):
    ACTOR = "server"


@attrs.frozen
class Tick(Action):
    ACTOR = "clock"


LockAction = (
    Acquire
    | Grant
    | Renew
    | Release
    | Expire
    | LeaderChange
    | Write
    | AcceptWrite
    | RejectWrite
    | Drift
    | ClientCrash
    | Tick
)


@attrs.frozen
class Config:
    clients: int = param(2, help="number of clients", minimum=1, maximum=4)
    ttl: int = param(2, help="lease time-to-live, in ticks of the server's clock", minimum=1, maximum=6)
    max_drift: int = param(
        1, help="ticks a client's clock may fall behind the server's over one lease", minimum=0, maximum=5
    )
    max_time: int = param(2, help="last tick of the server's clock explored", minimum=0, maximum=12)
    max_requests: int = param(2, help="lock requests explored in one run", minimum=1, maximum=8)
    max_leader_changes: int = param(
        1, help="times the lock server is replaced (a new leader, a restart) in one run", minimum=0, maximum=3
    )
    variant: str | None = None

    def __attrs_post_init__(self) -> None:
        # The CLI checks each parameter's range; a Config built directly, and the
        # combinations, are checked here.  (An unknown variant is refused where the
        # spec is built, as for every spec.)
        for f in attrs.fields(Config):
            minimum, maximum = f.metadata.get("minimum"), f.metadata.get("maximum")
            value = getattr(self, f.name)
            if minimum is not None and not minimum <= value <= maximum:
                raise ValueError(f"{f.name} must be between {minimum} and {maximum}, got {value}")
        if self.max_drift >= self.ttl:
            # A client trusts its lease for ttl - max_drift ticks; with none left it
            # could never act as the holder and every check would pass vacuously.
            raise ValueError(f"max_drift ({self.max_drift}) must be below ttl ({self.ttl})")


# ---------------------------------------------------------------------------- spec


class Lock(Spec[LockState, LockAction]):
    name = "lock"

    config: Config

    def __init__(self, config: Config = Config()) -> None:
        super().__init__(config)
        self.clients = client_names(config.clients)
        self.ttl = config.ttl
        # How long a client trusts a fresh lease on its own clock.
        self.trusted = self.trust_period()

    def init_states(self) -> Iterable[LockState]:
        yield LockState(0, FrozenMap({c: Client() for c in self.clients}), Server(), Storage())

    def next(self) -> Next:
        # The server, storage, each client, then the clock.
        return (
            Exists("client", self.clients, self.grant),
            Exists("token", self.lease_tokens, self.expire),
            self.leader_change,
            Exists("client", self.clients, self.accept_write, self.reject_write),
            Exists("client", self.clients, self.acquire, self.renew, self.release, self.write, self.drift, self.crash),
            self.tick,
        )

    # Derived facts, each used by several rules or by the invariants.

    def trust_period(self) -> int:
        """How many ticks of its own clock a client trusts a fresh lease: the ttl,
        less the most its clock may fall behind the server's."""
        return self.config.ttl - self.config.max_drift

    def grant_barrier(self, s: LockState) -> int:
        """The first tick of ``now`` at which a server that takes over at ``s.now``
        may grant: it waits ttl + max_drift ticks of its own clock, which gains at
        most max_drift of them on ``now`` over the wait, so at least ttl ticks of
        ``now`` pass, and every lease its predecessor granted or renewed by then
        is over."""
        return s.now + self.config.ttl

    def lease_live(self, s: LockState, lease: Lease) -> bool:
        """Whether the server counts ``lease`` as held at its clock's ``now``."""
        return s.now < lease.expires

    def live_leases(self, s: LockState) -> list[Lease]:
        """The unexpired leases the server has a record of."""
        return [lease for lease in s.server.leases.values() if self.lease_live(s, lease)]

    def leases_in_force(self, s: LockState) -> list[Lease]:
        """The unexpired leases, the server's and those of earlier servers it does
        not know of: the leases some client may rely on."""
        return self.live_leases(s) + [lease for lease in s.old_leases.values() if self.lease_live(s, lease)]

    @staticmethod
    def lease_of(s: LockState, token: int) -> Lease | None:
        """The lease with fencing token ``token``, whichever server granted it."""
        lease: Lease | None = s.server.leases.get(token) or s.old_leases.get(token)
        return lease

    def lease_tokens(self, s: LockState) -> list[int]:
        """The tokens of the leases the server keeps, in token order (a map's
        insertion order depends on the path taken)."""
        return sorted(s.server.leases)

    def trusts_lease(self, s: LockState, c: str) -> bool:
        """Whether client ``c`` believes, by its own clock, that it holds the lock."""
        # Tick moves a holder whose own clock has reached its deadline to LAPSED.
        return s.clients[c].status == HOLDING

    def served_next(self, s: LockState, c: str) -> bool:
        """Whether ``c`` is the waiter the server serves next: the oldest."""
        queue = s.server.queue
        return bool(queue) and queue[0][1] == c

    def renewal_accepted(self, s: LockState, c: str) -> bool:
        """Whether the server extends ``c``'s lease: it is ``c``'s, and unexpired."""
        token = s.clients[c].token
        lease = s.server.leases.get(token) if token is not None else None
        return lease is not None and lease.holder == c and self.lease_live(s, lease)

    def storage_accepts(self, s: LockState, token: int) -> bool:
        """Whether storage accepts a write carrying ``token``: no higher token has
        written before it."""
        return token >= s.storage.highest

    @staticmethod
    def _holder(s: LockState, c: str) -> Client | None:
        """Client ``c``'s record if it holds or held a lease it has not given up."""
        client = s.clients[c]
        return client if client.status in (HOLDING, LAPSED) else None

    # ---------------------------------------------------------------------- rules

    @rule(Grant)
    def grant(self, s: LockState, client: str) -> LockState | None:
        """The server grants the lock to the waiter it serves next once no lease is
        held and its takeover's wait is over: a lease until now + ttl, whose
        fencing token is the request's."""
        if self.live_leases(s) or s.now < s.server.grants_after or not self.served_next(s, client):
            return None
        token = next(t for t, waiter in s.server.queue if waiter == client)
        server = attrs.evolve(
            s.server,
            queue=tuple(entry for entry in s.server.queue if entry[0] != token),
            leases=s.server.leases.set(token, Lease(client, s.now, s.now + self.ttl)),
            last_granted=token,
        )
        s = attrs.evolve(s, server=server)
        if s.clients[client].status == CRASHED:  # the server cannot know; the lease will expire
            return s
        return self._with_client(s, client, self._fresh_lease(s, s.clients[client], token))

    @rule(Expire)
    def expire(self, s: LockState, token: int) -> LockState | None:
        """The server reaps a lease that has expired by its clock."""
        if self.lease_live(s, s.server.leases[token]):
            return None
        return self._with_leases(s, _without(s.server.leases, token))

    @rule(LeaderChange)
    def leader_change(self, s: LockState) -> LockState | None:
        """A new server takes over (a new leader after the old one crashed or was
        deposed, or the one server restarted): it keeps the durable token counter,
        loses the queue and every lease record, and grants nothing until every
        lease its predecessor may have granted is over (up to max_leader_changes
        times)."""
        if s.server.epoch >= self.config.max_leader_changes:
            return None
        # The old server's grants stay in force for their holders; an expired one
        # can matter to nobody any more.
        in_force = {**s.old_leases, **s.server.leases}
        old = FrozenMap({t: lease for t, lease in sorted(in_force.items()) if self.lease_live(s, lease)})
        server = Server(
            issued=s.server.issued,
            last_granted=s.server.last_granted,
            epoch=s.server.epoch + 1,
            grants_after=self.grant_barrier(s),
        )
        # A waiter's request is lost with the queue; it learns so (its request
        # times out, or its session reports the change) and may ask again.
        clients = FrozenMap(
            {
                c: Client(IDLE, in_flight=client.in_flight) if client.status == WAITING else client
                for c, client in s.clients.items()
            }
        )
        return attrs.evolve(s, clients=clients, server=server, old_leases=old)

    @rule(AcceptWrite)
    def accept_write(self, s: LockState, client: str) -> LockState | None:
        """Storage accepts the client's write in flight: its token is at least the
        highest it has accepted."""
        writer = s.clients[client]
        if writer.in_flight is None or not self.storage_accepts(s, writer.in_flight):
            return None
        storage = Storage(max(s.storage.highest, writer.in_flight), writer.in_flight, s.storage.rejected)
        return attrs.evolve(s, storage=storage, clients=s.clients.set(client, attrs.evolve(writer, in_flight=None)))

    @rule(RejectWrite)
    def reject_write(self, s: LockState, client: str) -> LockState | None:
        """Storage rejects the client's write in flight: its token is stale."""
        writer = s.clients[client]
        if writer.in_flight is None or self.storage_accepts(s, writer.in_flight):
            return None
        storage = attrs.evolve(s.storage, rejected=True)
        return attrs.evolve(s, storage=storage, clients=s.clients.set(client, attrs.evolve(writer, in_flight=None)))

    @rule(Acquire)
    def acquire(self, s: LockState, client: str) -> LockState | None:
        """An idle client asks for the lock; the server queues it with the next
        token (while fewer than max_requests have been made)."""
        if s.clients[client].status != IDLE or s.server.issued >= self.config.max_requests:
            return None
        token = s.server.issued + 1
        server = attrs.evolve(s.server, queue=(*s.server.queue, (token, client)), issued=token)
        waiting = Client(WAITING, token, in_flight=s.clients[client].in_flight)
        return attrs.evolve(s, server=server, clients=s.clients.set(client, waiting))

    @rule(Renew)
    def renew(self, s: LockState, client: str) -> LockState | None:
        """A holder asks to extend its lease; the server extends it to now + ttl if
        it accepts the renewal, and otherwise refuses, and the client learns it has
        lost the lock."""
        holder = self._holder(s, client)
        if holder is None or holder.token is None:
            return None
        if not self.renewal_accepted(s, client):
            return self._with_client(s, client, Client(IDLE, in_flight=holder.in_flight))
        lease = s.server.leases[holder.token]
        s = self._with_leases(s, s.server.leases.set(holder.token, attrs.evolve(lease, expires=s.now + self.ttl)))
        return self._with_client(s, client, self._fresh_lease(s, holder, holder.token))

    @rule(Release)
    def release(self, s: LockState, client: str) -> LockState | None:
        """A holder gives the lock back; the server deletes that client's lease."""
        holder = self._holder(s, client)
        if holder is None or holder.token is None:
            return None
        s = self._with_leases(s, _without(s.server.leases, holder.token))
        return self._with_client(s, client, Client(IDLE, in_flight=holder.in_flight))

    @rule(Write)
    def write(self, s: LockState, client: str) -> LockState | None:
        """A client that trusts its lease, with no write in flight, sends a write
        carrying its token to storage."""
        if not self.trusts_lease(s, client) or s.clients[client].in_flight is not None:
            return None
        return self._with_client(s, client, attrs.evolve(s.clients[client], in_flight=s.clients[client].token))

    @rule(Drift)
    def drift(self, s: LockState, client: str) -> LockState | None:
        """A holder's clock falls one tick behind the server's (at most max_drift
        over one lease)."""
        if not self.trusts_lease(s, client) or s.clients[client].lag >= self.config.max_drift:
            return None
        return self._with_client(s, client, attrs.evolve(s.clients[client], lag=s.clients[client].lag + 1))

    @rule(ClientCrash)
    def crash(self, s: LockState, client: str) -> LockState | None:
        """A client the service knows about (waiting or holding) stops for good."""
        record = s.clients[client]
        if record.status not in KNOWN_TO_SERVER:
            return None
        # A write already sent is in the network and still arrives.
        return self._with_client(s, client, Client(CRASHED, in_flight=record.in_flight, crashed_at=s.now))

    @rule(Tick)
    def tick(self, s: LockState) -> LockState | None:
        """The server's clock, and every client's, advances one tick (up to
        max_time); a holder whose own clock reaches its deadline lapses."""
        if s.now >= self.config.max_time:
            return None
        now = s.now + 1
        lapsed = {
            c: Client(LAPSED, client.token, in_flight=client.in_flight)
            for c, client in s.clients.items()
            if client.status == HOLDING and client.deadline is not None and now - client.lag >= client.deadline
        }
        clients = FrozenMap({**s.clients, **lapsed}) if lapsed else s.clients
        return attrs.evolve(s, now=now, clients=clients)

    def observe(self, s: LockState, a: LockAction) -> Mapping[str, Any] | None:
        """What an implementation logs for a step (used by trace validation).

        A client cannot see its own clock drift, so Drift is left for validation to
        infer.  Every other step is logged by its action alone, without the actor:
        each action names the client it is about, and in a real service the server
        decides Acquire, Renew and Release and ticks the clock, so it is the server
        that logs them.  (A crash need not be logged: a client that stops is, to
        the spec, a client that takes no more steps.)"""
        if isinstance(a, Drift):
            return None
        return {"action": to_json(a)}

    def _fresh_lease(self, s: LockState, client: Client, token: int) -> Client:
        """The client after the server granted or renewed its lease at ``s.now``."""
        return Client(HOLDING, token, s.now + self.trusted, 0, client.in_flight)

    @staticmethod
    def _with_client(s: LockState, c: str, client: Client) -> LockState:
        return attrs.evolve(s, clients=s.clients.set(c, client))

    @staticmethod
    def _with_leases(s: LockState, leases: FrozenMap[int, Lease]) -> LockState:
        return attrs.evolve(s, server=attrs.evolve(s.server, leases=leases))

    # ------------------------------------------------------------------ properties

    def invariants(self) -> Sequence[Invariant[LockState]]:
        return (
            Invariant("TypeOK", "every variable holds a value of its type", self._type_ok),
            Invariant(
                "MutualExclusion",
                "at most one lease, granted by this server or an earlier one, is unexpired",
                self.mutual_exclusion,
            ),
            Invariant(
                "LeaseValidity",
                "a client trusts its lease only while the server's clock says it is unexpired",
                self.lease_validity,
            ),
            Invariant(
                "FencedWrites",
                "storage never accepts a superseded lease's write after one from the lease that superseded it",
                fenced_writes,
            ),
            Invariant(
                "AutomaticRelease",
                "a crashed client's lease is over within ttl ticks of the crash, or of the grant if later",
                self.automatic_release,
            ),
            Invariant(
                "FirstComeFirstServed",
                "no waiting client asked for the lock before the client most recently granted it",
                first_come_first_served,
            ),
        )

    def mutual_exclusion(self, s: LockState) -> bool:
        return len(self.leases_in_force(s)) <= 1

    def lease_validity(self, s: LockState) -> bool:
        for c in self.clients:
            if self.trusts_lease(s, c):
                token = s.clients[c].token
                lease = self.lease_of(s, token) if token is not None else None
                if lease is None or lease.holder != c or not self.lease_live(s, lease):
                    return False
        return True

    def automatic_release(self, s: LockState) -> bool:
        for lease in self.leases_in_force(s):
            crashed_at = s.clients[lease.holder].crashed_at
            if crashed_at is not None and s.now >= max(crashed_at, lease.granted_at) + self.ttl:
                return False
        return True

    def _type_ok(self, s: LockState) -> bool:
        issued = s.server.issued
        tokens = range(1, issued + 1)
        clients_ok = set(s.clients) == set(self.clients) and all(
            c.status in STATUSES
            and (c.token is None or c.token in tokens)
            and (c.in_flight is None or c.in_flight in tokens)
            and 0 <= c.lag <= self.config.max_drift
            and (c.status == HOLDING) == (c.deadline is not None)
            and (c.deadline is None or s.now - c.lag < c.deadline)
            and (c.status in KNOWN_TO_SERVER) == (c.token is not None)
            and (c.status == CRASHED) == (c.crashed_at is not None)
            for c in s.clients.values()
        )
        queue_tokens = [t for t, _ in s.server.queue]
        server_ok = (
            queue_tokens == sorted(set(queue_tokens))
            and all(t in tokens and c in s.clients for t, c in s.server.queue)
            and all(t in tokens and lease.holder in s.clients for t, lease in s.server.leases.items())
            and 0 <= s.server.last_granted <= issued
            and 0 <= s.server.epoch <= self.config.max_leader_changes
            and 0 <= s.server.grants_after <= s.now + self.ttl
            and all(t in tokens and lease.holder in s.clients for t, lease in s.old_leases.items())
            and not set(s.old_leases) & set(s.server.leases)
        )
        storage_ok = 0 <= s.storage.data <= s.storage.highest <= issued
        return 0 <= s.now and clients_ok and server_ok and storage_ok

    def reachable(self) -> Sequence[Reachable[LockState]]:
        properties = [
            Reachable(
                "ExpiredAndRegranted",
                "a lease expired unreleased and another client holds the lock",
                self._expired_and_regranted,
            ),
            Reachable(
                "CrashedHolderReplaced",
                "a crashed client's lease expired and another client holds the lock",
                lambda s: self._expired_and_regranted(s, crashed_only=True),
            ),
            Reachable(
                "LeaseRenewed",
                "a lease has been renewed past the expiry it was granted with",
                self._renewed,
            ),
            Reachable(
                "StaleWriteRejected", "storage has rejected a write with a stale token", lambda s: s.storage.rejected
            ),
        ]
        if self.config.max_leader_changes > 0:
            properties.append(
                Reachable(
                    "WaitedOutOldLease",
                    "a server that took over has granted the lock to another client than its predecessor's holder",
                    lambda s: any(
                        old.holder != lease.holder
                        for old in s.old_leases.values()
                        for lease in s.server.leases.values()
                    ),
                )
            )
        if self.config.max_drift > 0:
            properties.append(
                Reachable(
                    "DriftedHolder",
                    "a client trusts its lease with its clock max_drift ticks behind the server's",
                    lambda s: any(
                        self.trusts_lease(s, c) and s.clients[c].lag == self.config.max_drift for c in self.clients
                    ),
                )
            )
        return properties

    def _renewed(self, s: LockState) -> bool:
        return any(lease.expires > lease.granted_at + self.ttl for lease in s.server.leases.values())

    def _expired_and_regranted(self, s: LockState, crashed_only: bool = False) -> bool:
        live = self.leases_in_force(s)
        for lease in [*s.server.leases.values(), *s.old_leases.values()]:
            if lease in live or (crashed_only and s.clients[lease.holder].status != CRASHED):
                continue
            if any(other.holder != lease.holder for other in live):
                return True
        return False

    # -------------------------------------------------------------------- symmetry

    def canonical(self, s: LockState) -> LockState:
        """Symmetry over clients.  A client's whole role in a state is its signature:
        its own record, its place in the queue and its lease records, the server's
        and its predecessors' (tokens are unique to one client, so nothing else
        mentions it).  Sorting the signatures
        and handing them to c1, c2, ... in order gives one representative per orbit."""
        signatures = sorted_values(
            (
                s.clients[c],
                tuple(t for t, waiter in s.server.queue if waiter == c),
                tuple(
                    sorted(
                        (t, lease.granted_at, lease.expires)
                        for t, lease in s.server.leases.items()
                        if lease.holder == c
                    )
                ),
                tuple(
                    sorted(
                        (t, lease.granted_at, lease.expires) for t, lease in s.old_leases.items() if lease.holder == c
                    )
                ),
            )
            for c in self.clients
        )
        clients = FrozenMap({c: sig[0] for c, sig in zip(self.clients, signatures)})
        queue = sorted((t, c) for c, sig in zip(self.clients, signatures) for t in sig[1])
        leases = FrozenMap(
            {
                t: Lease(c, granted, expires)
                for c, sig in zip(self.clients, signatures)
                for t, granted, expires in sig[2]
            }
        )
        old_leases = FrozenMap(
            {
                t: Lease(c, granted, expires)
                for c, sig in zip(self.clients, signatures)
                for t, granted, expires in sig[3]
            }
        )
        server = attrs.evolve(s.server, queue=tuple(queue), leases=leases)
        return LockState(s.now, clients, server, s.storage, old_leases)


def _without(leases: FrozenMap[int, Lease], token: int) -> FrozenMap[int, Lease]:
    return FrozenMap({t: lease for t, lease in leases.items() if t != token})


def fenced_writes(s: LockState) -> bool:
    # The stored data comes from the newest lease that has written: a write with a
    # lower token never lands after one with a higher token.
    return s.storage.data == s.storage.highest


def first_come_first_served(s: LockState) -> bool:
    return all(token > s.server.last_granted for token, _ in s.server.queue)


# ------------------------------------------------------------------------ variants
# Each a real mistake, as a subclass that overrides the one rule or derived fact it
# breaks.


@variant("unfenced_storage", "storage accepts writes without checking their fencing token")
class UnfencedStorage(Lock):
    def storage_accepts(self, s: LockState, token: int) -> bool:
        """Storage accepts every write, ignoring its token.  A client checks its
        lease and sends a write that lands only after the next holder's (it paused
        past its expiry, as in Kleppmann's example, or released the lock before the
        write arrived): FencedWrites."""
        return True


@variant("no_drift_margin", "the client trusts its lease for the full ttl by its own clock")
class NoDriftMargin(Lock):
    def trust_period(self) -> int:
        """The client trusts its lease for the full ttl by its own clock, as if
        clocks kept pace (Redlock without its drift factor).  A slow clock keeps it
        trusting after the server expired the lease: LeaseValidity."""
        return self.config.ttl


@variant("release_by_non_holder", "the server frees the lock on a release from a client that does not hold it")
class ReleaseByNonHolder(Lock):
    @rule(Release)
    def release(self, s: LockState, client: str) -> LockState | None:
        """The server frees the lock on any client's release without checking whose
        lease it is (a Redis lock released with a plain DEL).  A client whose lease
        expired releases the next holder's: LeaseValidity."""
        holder = self._holder(s, client)
        if holder is None or holder.token is None:
            return None
        s = self._with_leases(s, FrozenMap())  # "DEL lock", whoever holds it
        return self._with_client(s, client, Client(IDLE, in_flight=holder.in_flight))


@variant("renew_after_expiry", "the server renews a lease that has already expired")
class RenewAfterExpiry(Lock):
    def renewal_accepted(self, s: LockState, c: str) -> bool:
        """The server renews a lease it still has a record of even though it has
        expired (etcd #14758: a keep-alive racing the revocation of an expired
        lease renewed it).  A late renewal revives a lease after the lock went to
        someone else: MutualExclusion."""
        token = s.clients[c].token
        lease = s.server.leases.get(token) if token is not None else None
        return lease is not None and lease.holder == c


@variant("no_expiry", "the server never expires a lease (a lock without a TTL)")
class NoExpiry(Lock):
    def lease_live(self, s: LockState, lease: Lease) -> bool:
        """The server never expires a lease (a lock without a TTL, like SETNX
        without EXPIRE).  A crashed holder keeps the lock for ever:
        AutomaticRelease."""
        return True


@variant("barging", "the lock goes to any waiter, not the one that has waited longest")
class Barging(Lock):
    def served_next(self, s: LockState, c: str) -> bool:
        """The lock goes to any waiter, not the oldest one (waiters that retry SET
        NX race for it), so a newcomer can overtake and starve an older waiter:
        FirstComeFirstServed."""
        return any(waiter == c for _, waiter in s.server.queue)


@variant("no_lease_wait", "a new server grants at once, without waiting out its predecessor's leases")
class NoLeaseWait(Lock):
    def grant_barrier(self, s: LockState) -> int:
        """A server that takes over grants at once, as if the leases it has no
        record of did not exist (a lock table in the leader's memory, a restart
        that forgets the table).  The old holder still trusts its lease when the
        new server grants the lock to another client: MutualExclusion."""
        return s.now


@variant(
    "no_takeover_drift_margin",
    "a new server waits out one ttl by its own clock, which may run fast",
)
class NoTakeoverDriftMargin(Lock):
    def grant_barrier(self, s: LockState) -> int:
        """A server that takes over waits ttl ticks of its own clock, as if it kept
        pace with the clock the old leases run on.  A clock that gains max_drift
        ticks over the wait ends it while the old holder's lease is still
        unexpired: MutualExclusion."""
        return s.now + self.config.ttl - self.config.max_drift
