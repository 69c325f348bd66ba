"""The lock service (``spec/lock.py``) in z3, and the inductive invariant that proves
its five safety properties: MutualExclusion, LeaseValidity, FencedWrites,
AutomaticRelease and FirstComeFirstServed.

Where it sits: the one module in ``checks/`` that knows the lock spec's state; it
subclasses ``checks.proofs.system.Encoding`` and is registered in
``checks.proofs.registry``, so ``distcheck prove lock`` cross-checks it against the
executable spec and then discharges the obligations.  Every variant is encoded.

State as fields, for clients c1..cN, tokens 1..R (R = max_requests) and times
0..T (T = max_time); the spec's "absent" (None) is a value of its own:

- ``now``, ``issued``, ``last_granted``, ``epoch``, ``grants_after``; storage
  ``highest``, ``data``, ``rejected``
- ``queue[k]``: the client waiting with token k (the spec's queue is in token
  order, so the set of waiting tokens gives it back)
- ``lease[k].holder``, ``lease[k].granted_at``, ``lease[k].expires``: the server's
  record for token k (holder None and times 0 when there is none), and
  ``lease[k].old``: whether that lease is an earlier server's, one of the spec's
  ``old_leases`` (tokens are never reused, so a token has at most one lease)
- ``c.status``, ``c.token``, ``c.deadline``, ``c.lag``, ``c.in_flight``,
  ``c.crashed_at``: client c's record

Numbers are stored so that a field's z3 index is the number itself (None, where
allowed, is index 0 and numbers start at 1), except ``crashed_at``, whose index is
the time plus one; so ``now + ttl`` is a z3 term, not a table.

The inductive invariant **LockInv** is the conjunction of the five properties and
of what makes them inductive:

- **HolderDeadlineWithinLease**: a holder's own deadline is at least max_drift
  ticks before its lease's expiry.  This is the drift margin at work: a holder
  whose clock lags at most max_drift ticks stops trusting its lease no later than
  the server lets it expire, so LeaseValidity survives every Tick;
- **TokensIssued**: every token in the queue, in a lease, held by a client, in
  flight or granted is at most ``issued``, so Acquire hands out a fresh one;
- **TokenOwnedByOne**: the queue entry and the lease of a client's token name no
  other client, so a client releasing or renewing its own token never touches
  another client's lease;
- **QueueHoldsWaiters**: a client named in the queue is waiting with that token,
  or has crashed, so a grant goes to a client that is not holding another lease;
- **CrashedLeaseBounded**: a crashed client's lease expires within ttl of the
  crash, or of the grant if the server granted it to the client after the crash;
- **LeaseTimesConsistent**: a lease was granted at or before now and expires by
  now + ttl, so a lease held when its client crashes ends within ttl of the crash;
- **OldLeasesWithinBarrier**: every lease of an earlier server expires by
  ``grants_after``, so once the current server may grant, no lease it has no
  record of is still held.  LeaderChange sets ``grants_after`` to now + ttl,
  which LeaseTimesConsistent puts beyond every lease's expiry.

Why each property holds, in one line each.  MutualExclusion: a grant needs every
lease of the server expired and the takeover's wait over (which outlasts every
earlier server's lease), and a renewal needs its own lease unexpired.  FencedWrites: storage
accepts a token no lower than the highest, which becomes the data.  LeaseValidity:
the drift margin (above).  AutomaticRelease: nobody renews a crashed client's
lease.  FirstComeFirstServed: grants take the oldest token and new tokens exceed
every old one.  The variants break exactly these steps: with ``--variant V`` the
consecution obligation fails at a Grant, Renew, Release, AcceptWrite, Tick or
LeaderChange that the executable variant takes too.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import z3

from distcheck.checks.proofs.system import Candidate, Encoding, Field, Predicate, SymState, Transition
from distcheck.spec.lock import (
    CRASHED,
    HOLDING,
    IDLE,
    KNOWN_TO_SERVER,
    LAPSED,
    STATUSES,
    WAITING,
    AcceptWrite,
    Acquire,
    Client,
    ClientCrash,
    Drift,
    Expire,
    Grant,
    LeaderChange,
    Lease,
    Lock,
    LockAction,
    LockState,
    RejectWrite,
    Release,
    Renew,
    Server,
    Storage,
    Tick,
    Write,
)
from distcheck.spec.values import FrozenMap

ABSENT = 0  # z3 index of None in every field that allows it


def queue(k: int) -> str:
    return f"queue[{k}]"


def holder(k: int) -> str:
    return f"lease[{k}].holder"


def granted_at(k: int) -> str:
    return f"lease[{k}].granted_at"


def expires(k: int) -> str:
    return f"lease[{k}].expires"


def old(k: int) -> str:
    return f"lease[{k}].old"


def status(c: str) -> str:
    return f"{c}.status"


def token(c: str) -> str:
    return f"{c}.token"


def deadline(c: str) -> str:
    return f"{c}.deadline"


def lag(c: str) -> str:
    return f"{c}.lag"


def in_flight(c: str) -> str:
    return f"{c}.in_flight"


def crashed_at(c: str) -> str:
    return f"{c}.crashed_at"


def numbers(first: int, last: int) -> tuple[int, ...]:
    return tuple(range(first, last + 1))


class LockEncoding(Encoding[LockState, LockAction]):
    def __init__(self, spec: Lock) -> None:
        super().__init__(spec)
        self.lock = spec
        self.clients = spec.clients
        self.tokens = numbers(1, spec.config.max_requests)
        self.max_time = spec.config.max_time
        self.ttl = spec.ttl
        self.max_drift = spec.config.max_drift
        self.trusted = spec.trusted
        self.max_leader_changes = spec.config.max_leader_changes
        self.variant = spec.variant

    # ------------------------------------------------------------------ state

    def state_fields(self) -> Sequence[Field]:
        requests = len(self.tokens)
        maybe_client: tuple[Hashable, ...] = (None, *self.clients)
        maybe_token: tuple[Hashable, ...] = (None, *self.tokens)
        fields = [
            Field("now", numbers(0, self.max_time)),
            Field("issued", numbers(0, requests)),
            Field("last_granted", numbers(0, requests)),
            Field("highest", numbers(0, requests)),
            Field("data", numbers(0, requests)),
            Field("rejected"),
            Field("epoch", numbers(0, self.max_leader_changes)),
            Field("grants_after", numbers(0, self.max_time + self.ttl)),
        ]
        for k in self.tokens:
            fields += [
                Field(queue(k), maybe_client),
                Field(holder(k), maybe_client),
                Field(granted_at(k), numbers(0, self.max_time)),
                Field(expires(k), numbers(0, self.max_time + self.ttl)),
                Field(old(k)),
            ]
        for c in self.clients:
            fields += [
                Field(status(c), STATUSES),
                Field(token(c), maybe_token),
                Field(deadline(c), (None, *numbers(1, self.max_time + self.trusted))),
                Field(lag(c), numbers(0, self.max_drift)),
                Field(in_flight(c), maybe_token),
                Field(crashed_at(c), (None, *numbers(0, self.max_time))),
            ]
        return fields

    def values(self, state: LockState) -> Mapping[str, Hashable]:
        waiting = dict(state.server.queue)
        if list(state.server.queue) != sorted(waiting.items()):
            raise ValueError(f"queue {state.server.queue} is not in token order with one entry per token")
        out: dict[str, Hashable] = {
            "now": state.now,
            "issued": state.server.issued,
            "last_granted": state.server.last_granted,
            "highest": state.storage.highest,
            "data": state.storage.data,
            "rejected": state.storage.rejected,
            "epoch": state.server.epoch,
            "grants_after": state.server.grants_after,
        }
        for k in self.tokens:
            if k in state.server.leases and k in state.old_leases:
                raise ValueError(f"token {k} has a lease of this server and of an earlier one")
            lease = state.server.leases.get(k) or state.old_leases.get(k)
            out[old(k)] = k in state.old_leases
            out[queue(k)] = waiting.get(k)
            out[holder(k)] = None if lease is None else lease.holder
            out[granted_at(k)] = 0 if lease is None else lease.granted_at
            out[expires(k)] = 0 if lease is None else lease.expires
        for c in self.clients:
            client = state.clients[c]
            out[status(c)] = client.status
            out[token(c)] = client.token
            out[deadline(c)] = client.deadline
            out[lag(c)] = client.lag
            out[in_flight(c)] = client.in_flight
            out[crashed_at(c)] = client.crashed_at
        return out

    def state(self, values: Mapping[str, Hashable]) -> LockState:
        def number(name: str) -> int:
            value = values[name]
            assert isinstance(value, int)
            return value

        def optional(name: str) -> int | None:
            value = values[name]
            assert value is None or isinstance(value, int)
            return value

        def leases(of_earlier_servers: bool) -> FrozenMap[int, Lease]:
            return FrozenMap(
                {
                    k: Lease(str(values[holder(k)]), number(granted_at(k)), number(expires(k)))
                    for k in self.tokens
                    if values[holder(k)] is not None and bool(values[old(k)]) == of_earlier_servers
                }
            )

        server = Server(
            queue=tuple((k, str(values[queue(k)])) for k in self.tokens if values[queue(k)] is not None),
            leases=leases(False),
            issued=number("issued"),
            last_granted=number("last_granted"),
            epoch=number("epoch"),
            grants_after=number("grants_after"),
        )
        clients = FrozenMap(
            {
                c: Client(
                    str(values[status(c)]),
                    optional(token(c)),
                    optional(deadline(c)),
                    number(lag(c)),
                    optional(in_flight(c)),
                    optional(crashed_at(c)),
                )
                for c in self.clients
            }
        )
        storage = Storage(number("highest"), number("data"), bool(values["rejected"]))
        return LockState(number("now"), clients, server, storage, leases(True))

    def init(self, s: SymState) -> z3.BoolRef:
        return s.equals(self.values(next(iter(self.spec.init_states()))))

    # -------------------------------------------------------------- helpers

    def live(self, s: SymState, k: int) -> z3.BoolRef:
        """The lease of token k, this server's or an earlier one's, is held."""
        exists = z3.Not(s.is_(holder(k), None))
        if self.variant == "no_expiry":
            return exists
        return z3.And(exists, s["now"] < s[expires(k)])

    def known(self, s: SymState, k: int) -> z3.BoolRef:
        """The current server has a record of the lease of token k."""
        return z3.And(z3.Not(s.is_(holder(k), None)), z3.Not(s[old(k)]))

    def grant_barrier(self, s: SymState) -> z3.ArithRef:
        """The first tick at which a server taking over now may grant."""
        if self.variant == "no_lease_wait":
            return s["now"]
        if self.variant == "no_takeover_drift_margin":
            return s["now"] + self.ttl - self.max_drift
        return s["now"] + self.ttl

    def cleared(self, s: SymState, k: int, gone: z3.BoolRef) -> dict[str, Hashable | z3.ExprRef]:
        """The lease fields of token k, emptied where ``gone`` holds."""
        return {
            holder(k): z3.If(gone, s.term(holder(k), None), s[holder(k)]),
            granted_at(k): z3.If(gone, 0, s[granted_at(k)]),
            expires(k): z3.If(gone, 0, s[expires(k)]),
            old(k): z3.And(z3.Not(gone), s[old(k)]),
        }

    def holds_token(self, s: SymState, c: str, k: int) -> z3.BoolRef:
        return s[token(c)] == k

    def leaves(self, s: SymState, c: str, new_status: str) -> dict[str, Hashable | z3.ExprRef]:
        """Client c's record after it gives up its token (keeping a write in flight)."""
        return {status(c): new_status, token(c): None, deadline(c): None, lag(c): 0, crashed_at(c): None}

    def fresh_lease(self, s: SymState, c: str, tok: z3.ExprRef) -> dict[str, Hashable | z3.ExprRef]:
        """Client c's record after a grant or renewal at ``now``."""
        return {
            status(c): HOLDING,
            token(c): tok,
            deadline(c): s["now"] + self.trusted,
            lag(c): 0,
            crashed_at(c): None,
        }

    # ---------------------------------------------------------------- actions

    def actions(self) -> Sequence[LockAction]:
        out: list[LockAction] = [Grant(c) for c in self.clients]
        out += [Expire(k) for k in self.tokens]
        out.append(LeaderChange())
        for c in self.clients:
            out += [AcceptWrite(c), RejectWrite(c)]
        for c in self.clients:
            out += [Acquire(c), Renew(c), Release(c), Write(c), Drift(c), ClientCrash(c)]
        out.append(Tick())
        return out

    def transition(self, action: LockAction, s: SymState) -> Transition:
        match action:
            case Tick():
                return self._tick(s)
            case Expire(k):
                return Transition(
                    z3.And(self.known(s, k), z3.Not(self.live(s, k))),
                    {holder(k): None, granted_at(k): 0, expires(k): 0, old(k): False},
                )
            case LeaderChange():
                return self._leader_change(s)
            case ClientCrash(client=c):
                return Transition(
                    s.is_in(status(c), KNOWN_TO_SERVER),
                    {**self.leaves(s, c, CRASHED), crashed_at(c): s["now"] + 1},
                )
            case Acquire(client=c):
                fresh = s["issued"] + 1
                updates: dict[str, Hashable | z3.ExprRef] = {
                    "issued": fresh,
                    status(c): WAITING,
                    token(c): fresh,
                    deadline(c): None,
                    lag(c): 0,
                    crashed_at(c): None,
                }
                for k in self.tokens:
                    updates[queue(k)] = z3.If(fresh == k, s.term(queue(k), c), s[queue(k)])
                return Transition(z3.And(s.is_(status(c), IDLE), s["issued"] < len(self.tokens)), updates)
            case Grant(client=c):
                return self._grant(s, c)
            case Renew(client=c):
                return self._renew(s, c)
            case Release(client=c):
                # The server deletes only a lease it has a record of.
                released = {
                    k: z3.And(
                        z3.Not(s[old(k)]),
                        z3.BoolVal(True) if self.variant == "release_by_non_holder" else self.holds_token(s, c, k),
                    )
                    for k in self.tokens
                }
                updates = dict(self.leaves(s, c, IDLE))
                for k in self.tokens:
                    updates.update(self.cleared(s, k, released[k]))
                return Transition(self._has_token_to_give_back(s, c), updates)
            case Write(client=c):
                return Transition(
                    z3.And(s.is_(status(c), HOLDING), s.is_(in_flight(c), None)), {in_flight(c): s[token(c)]}
                )
            case AcceptWrite(client=c):
                carried = s[in_flight(c)]
                return Transition(
                    z3.And(z3.Not(s.is_(in_flight(c), None)), self._storage_accepts(s, carried)),
                    {
                        "highest": z3.If(carried > s["highest"], carried, s["highest"]),
                        "data": carried,
                        in_flight(c): None,
                    },
                )
            case RejectWrite(client=c):
                carried = s[in_flight(c)]
                return Transition(
                    z3.And(z3.Not(s.is_(in_flight(c), None)), z3.Not(self._storage_accepts(s, carried))),
                    {"rejected": True, in_flight(c): None},
                )
            case Drift(client=c):
                return Transition(
                    z3.And(s.is_(status(c), HOLDING), s[lag(c)] < self.max_drift), {lag(c): s[lag(c)] + 1}
                )
        raise ValueError(f"not a lock action: {action!r}")

    def _tick(self, s: SymState) -> Transition:
        later = s["now"] + 1
        updates: dict[str, Hashable | z3.ExprRef] = {"now": later}
        for c in self.clients:
            # A holder whose own clock reaches its deadline lapses.
            lapses = z3.And(
                s.is_(status(c), HOLDING),
                z3.Not(s.is_(deadline(c), None)),
                later - s[lag(c)] >= s[deadline(c)],
            )
            updates[status(c)] = z3.If(lapses, s.term(status(c), LAPSED), s[status(c)])
            updates[deadline(c)] = z3.If(lapses, ABSENT, s[deadline(c)])
            updates[lag(c)] = z3.If(lapses, 0, s[lag(c)])
            updates[crashed_at(c)] = z3.If(lapses, ABSENT, s[crashed_at(c)])
        return Transition(s["now"] < self.max_time, updates)

    def _grant(self, s: SymState, c: str) -> Transition:
        mine = {k: s.is_(queue(k), c) for k in self.tokens}
        if self.variant == "barging":
            chosen = z3.Or(*mine.values())
        else:  # c's entry is the oldest in the queue
            chosen = z3.Or(
                *[z3.And(mine[k], *[s.is_(queue(j), None) for j in self.tokens if j < k]) for k in self.tokens]
            )
        # The server sees only its own leases; its takeover's wait covers the others.
        no_lease_held = z3.And(
            *[z3.Not(z3.And(self.known(s, k), self.live(s, k))) for k in self.tokens],
            s["now"] >= s["grants_after"],
        )
        # c's token: its oldest entry in the queue.
        tok: z3.ArithRef = z3.IntVal(ABSENT)
        for k in reversed(self.tokens):
            tok = z3.If(mine[k], k, tok)
        updates: dict[str, Hashable | z3.ExprRef] = {"last_granted": tok}
        for k in self.tokens:
            granted = tok == k
            updates[queue(k)] = z3.If(granted, s.term(queue(k), None), s[queue(k)])
            updates[holder(k)] = z3.If(granted, s.term(holder(k), c), s[holder(k)])
            updates[granted_at(k)] = z3.If(granted, s["now"], s[granted_at(k)])
            updates[expires(k)] = z3.If(granted, s["now"] + self.ttl, s[expires(k)])
            updates[old(k)] = z3.And(z3.Not(granted), s[old(k)])
        crashed = s.is_(status(c), CRASHED)  # the server cannot know; the client stays down
        for name, value in self.fresh_lease(s, c, tok).items():
            new = value if isinstance(value, z3.ExprRef) else s.term(name, value)
            updates[name] = z3.If(crashed, s[name], new)
        return Transition(z3.And(chosen, no_lease_held), updates)

    def _renew(self, s: SymState, c: str) -> Transition:
        accepted = z3.Or(
            *[
                z3.And(
                    self.holds_token(s, c, k),
                    s.is_(holder(k), c),
                    z3.Not(s[old(k)]),
                    z3.BoolVal(True) if self.variant == "renew_after_expiry" else self.live(s, k),
                )
                for k in self.tokens
            ]
        )
        updates: dict[str, Hashable | z3.ExprRef] = {}
        for k in self.tokens:
            updates[expires(k)] = z3.If(z3.And(accepted, self.holds_token(s, c, k)), s["now"] + self.ttl, s[expires(k)])
        renewed = self.fresh_lease(s, c, s[token(c)])
        lost = self.leaves(s, c, IDLE)
        for name in renewed:
            updates[name] = z3.If(accepted, _term(s, name, renewed[name]), _term(s, name, lost[name]))
        return Transition(self._has_token_to_give_back(s, c), updates)

    def _leader_change(self, s: SymState) -> Transition:
        updates: dict[str, Hashable | z3.ExprRef] = {
            "epoch": s["epoch"] + 1,
            "grants_after": self.grant_barrier(s),
        }
        for k in self.tokens:
            # Every unexpired lease becomes an earlier server's; the rest are gone.
            updates[queue(k)] = None
            kept = self.live(s, k)
            updates.update(self.cleared(s, k, z3.Not(kept)))
            updates[old(k)] = kept
        for c in self.clients:
            waiting = s.is_(status(c), WAITING)
            idle = self.leaves(s, c, IDLE)
            for name, value in idle.items():
                updates[name] = z3.If(waiting, _term(s, name, value), s[name])
        return Transition(s["epoch"] < self.max_leader_changes, updates)

    def _has_token_to_give_back(self, s: SymState, c: str) -> z3.BoolRef:
        return z3.And(s.is_in(status(c), (HOLDING, LAPSED)), z3.Not(s.is_(token(c), None)))

    def _storage_accepts(self, s: SymState, carried: z3.ExprRef) -> z3.BoolRef:
        if self.variant == "unfenced_storage":
            return z3.BoolVal(True)
        return carried >= s["highest"]

    # ------------------------------------------------------------- invariants

    def mutual_exclusion(self, s: SymState) -> z3.BoolRef:
        pairs = [(k, j) for k in self.tokens for j in self.tokens if k < j]
        return z3.And(*[z3.Not(z3.And(self.live(s, k), self.live(s, j))) for k, j in pairs])

    def lease_validity(self, s: SymState) -> z3.BoolRef:
        return z3.And(
            *[
                z3.Implies(
                    s.is_(status(c), HOLDING),
                    z3.Or(
                        *[z3.And(self.holds_token(s, c, k), s.is_(holder(k), c), self.live(s, k)) for k in self.tokens]
                    ),
                )
                for c in self.clients
            ]
        )

    def fenced_writes(self, s: SymState) -> z3.BoolRef:
        return s["data"] == s["highest"]

    def automatic_release(self, s: SymState) -> z3.BoolRef:
        return z3.And(
            *[
                z3.Implies(
                    z3.And(self.live(s, k), s.is_(holder(k), c), z3.Not(s.is_(crashed_at(c), None))),
                    s["now"] < self.release_deadline(s, c, k),
                )
                for c in self.clients
                for k in self.tokens
            ]
        )

    def release_deadline(self, s: SymState, c: str, k: int) -> z3.ArithRef:
        """ttl ticks after the later of c's crash and the grant of lease k."""
        crash_time = s[crashed_at(c)] - 1  # the field's index is the time plus one
        later = z3.If(crash_time > s[granted_at(k)], crash_time, s[granted_at(k)])
        return later + self.ttl

    def first_come_first_served(self, s: SymState) -> z3.BoolRef:
        return z3.And(*[z3.Implies(z3.Not(s.is_(queue(k), None)), k > s["last_granted"]) for k in self.tokens])

    def properties(self) -> Sequence[Predicate]:
        statements = {inv.name: inv.statement for inv in self.spec.invariants()}
        formulas = {
            "MutualExclusion": self.mutual_exclusion,
            "LeaseValidity": self.lease_validity,
            "FencedWrites": self.fenced_writes,
            "AutomaticRelease": self.automatic_release,
            "FirstComeFirstServed": self.first_come_first_served,
        }
        return tuple(Predicate(name, statements[name], formula) for name, formula in formulas.items())

    def candidates(self) -> Sequence[Candidate]:
        tokens, clients = self.tokens, self.clients

        def deadline_within_lease(s: SymState) -> z3.BoolRef:
            return z3.And(
                *[
                    z3.Implies(
                        z3.And(s.is_(status(c), HOLDING), self.holds_token(s, c, k)),
                        z3.And(z3.Not(s.is_(deadline(c), None)), s[deadline(c)] + self.max_drift <= s[expires(k)]),
                    )
                    for c in clients
                    for k in tokens
                ]
            )

        def tokens_issued(s: SymState) -> z3.BoolRef:
            issued = s["issued"]
            return z3.And(
                s["last_granted"] <= issued,
                *[z3.Implies(z3.Not(s.is_(name(k), None)), k <= issued) for k in tokens for name in (queue, holder)],
                *[z3.And(s[token(c)] <= issued, s[in_flight(c)] <= issued) for c in clients],
            )

        def token_owned_by_one(s: SymState) -> z3.BoolRef:
            return z3.And(
                *[
                    z3.Implies(
                        self.holds_token(s, c, k),
                        z3.And(s.is_in(queue(k), (None, c)), s.is_in(holder(k), (None, c))),
                    )
                    for c in clients
                    for k in tokens
                ]
            )

        def queue_holds_waiters(s: SymState) -> z3.BoolRef:
            return z3.And(
                *[
                    z3.Implies(
                        s.is_(queue(k), c),
                        z3.Or(z3.And(s.is_(status(c), WAITING), self.holds_token(s, c, k)), s.is_(status(c), CRASHED)),
                    )
                    for c in clients
                    for k in tokens
                ]
            )

        def crashed_lease_bounded(s: SymState) -> z3.BoolRef:
            return z3.And(
                *[
                    z3.Implies(
                        z3.And(s.is_(holder(k), c), z3.Not(s.is_(crashed_at(c), None))),
                        s[expires(k)] <= self.release_deadline(s, c, k),
                    )
                    for c in clients
                    for k in tokens
                ]
            )

        def lease_times_consistent(s: SymState) -> z3.BoolRef:
            return z3.And(
                *[
                    z3.Implies(
                        z3.Not(s.is_(holder(k), None)),
                        z3.And(s[granted_at(k)] <= s["now"], s[expires(k)] <= s["now"] + self.ttl),
                    )
                    for k in tokens
                ]
            )

        def old_leases_within_barrier(s: SymState) -> z3.BoolRef:
            return z3.And(
                *[
                    z3.Implies(s[old(k)], z3.And(z3.Not(s.is_(holder(k), None)), s[expires(k)] <= s["grants_after"]))
                    for k in tokens
                ]
            )

        strengthening = (
            Predicate(
                "HolderDeadlineWithinLease",
                "a holder's own deadline is at least max_drift ticks before its lease expires",
                deadline_within_lease,
            ),
            Predicate("TokensIssued", "every token in use is at most the number issued", tokens_issued),
            Predicate(
                "TokenOwnedByOne",
                "the queue entry and the lease of a client's token name no other client",
                token_owned_by_one,
            ),
            Predicate(
                "QueueHoldsWaiters",
                "a client named in the queue is waiting with that token, or has crashed",
                queue_holds_waiters,
            ),
            Predicate(
                "CrashedLeaseBounded",
                "a crashed client's lease expires within ttl of the crash or of its grant, if later",
                crashed_lease_bounded,
            ),
            Predicate(
                "LeaseTimesConsistent",
                "a lease was granted at or before now and expires by now + ttl",
                lease_times_consistent,
            ),
            Predicate(
                "OldLeasesWithinBarrier",
                "every lease of an earlier server expires by the tick from which the current one may grant",
                old_leases_within_barrier,
            ),
        )
        return (
            Candidate(
                "LockInv",
                "the lock service's inductive invariant (see checks/proofs/lock.py)",
                (*self.properties(), *strengthening),
            ),
            Candidate(
                "Properties",
                "the properties alone (LeaseValidity is not inductive without HolderDeadlineWithinLease)",
                tuple(self.properties()),
            ),
        )


def _term(s: SymState, name: str, value: Hashable | z3.ExprRef) -> z3.ExprRef:
    return value if isinstance(value, z3.ExprRef) else s.term(name, value)
