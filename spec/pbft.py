"""PBFT: Castro and Liskov's Practical Byzantine Fault Tolerance, the normal case and
the view change, with Byzantine replicas (a Byzantine primary among them).

N replicas (``replicas``) order clients' requests although up to f of them
(``faulty``) are Byzantine: they may send anything, lie and equivocate.  Replicas
move through views; the primary of view v is replica ``v mod N`` (r1 for view 0).
In the normal case the primary assigns a request a sequence number and multicasts a
pre-prepare; a backup that accepts it (it is in that view, it is the primary's,
the request carries the client's signature, and the backup accepted no other
request at that view and number) multicasts a prepare.  A replica that accepted the
pre-prepare and holds matching prepares from a quorum less one of the backups is
*prepared* (it holds a prepared certificate) and multicasts a commit; a prepared
replica holding matching commits from a quorum *commits* the request locally,
executes it and replies to the client.  A quorum is N − f replicas (2f + 1 when
N = 3f + 1): any two quorums share f + 1 replicas, so at least one honest one
(``distcheck prove quorums``, CorrectInIntersection).

A replica that suspects the primary (a timeout, at any moment here) moves to the
next view and multicasts a view-change carrying its prepared certificates.  The new
primary, holding view-changes from a quorum (its own among them), computes the
new view: for each sequence number up to the highest one certified, the request of
the highest-view valid certificate, or a null request where there is none; it
multicasts a new-view and re-issues those requests as pre-prepares of the new
view.  A certificate is valid if the signed pre-prepare and prepares it is made of
were sent: a Byzantine replica can claim any certificate, or none, but the primary
checks the evidence.  A request committed at an honest replica was prepared at a
quorum, so at f + 1 honest replicas; a view-change quorum contains one of them, and
the new view carries the request on.

Sources: M. Castro and B. Liskov, "Practical Byzantine Fault Tolerance" (OSDI 1999)
and "Practical Byzantine Fault Tolerance and Proactive Recovery" (TOCS 2002),
sections 2-4 (the normal case, the view change, the invariants of the proof).

Abstractions (to keep the default check to a few seconds; docs/pbft.md).
- The client's requests ``q1``, ``q2``, ... are a fixed set, signed by the client
  and sent at the start: a request is a constant, not a message.  A reply is the
  local commit itself (``Execute`` sends the reply; the client is not modelled).
- Sequence numbers are 1..``seqs`` (default 1: the two requests compete for one
  slot, which is where agreement can fail).  No checkpoints: with a bounded number
  of slots there is no log to collect.
- One TLA+-style message set: a message is sent once and stays, so loss, delay,
  duplication and reordering are behaviours of the spec.  What a replica has
  accepted is what it has sent: it accepted a pre-prepare iff it sent the matching
  prepare (the primary: iff it sent the pre-prepare), it is prepared iff it sent
  the commit, it committed iff it sent the reply.  Its only other variable is its
  view.
- Signatures: every message names its sender, and an honest replica's messages
  are sent only by its own rules.  The faulty replicas are r1..rf (so the primary
  of view 0 is Byzantine whenever f ≥ 1).  They may send any message whose sender
  is a faulty replica, from a finite vocabulary: a pre-prepare, a prepare and a
  commit for every view, sequence number and request (the clients', and a
  ``forged`` request no client signed), and for every later view a
  view-change claiming no certificate or any one certificate.  Since the message
  set only grows and a receiver may ignore any message, a faulty replica that has
  sent its whole vocabulary at the start is as strong as one that sends it bit by
  bit, in any order: the initial state holds it, and the faulty replicas take no
  steps (which keeps the state space to the honest replicas' choices).  A faulty
  replica sends no new-view: a view whose primary is faulty, other than view 0,
  never starts (a silent primary).

State: ``view`` (each honest replica's view: the view it is in, or the one it has
moved to by sending a view-change and awaits the new-view of) and ``msgs``.

Actions (all of honest replicas)
    PrePrepare(replica, view, seq, request)  The primary assigns the request a free number in its started view.
    Prepare(replica, view, seq, request)     A backup accepts the primary's pre-prepare and multicasts a prepare.
    Commit(replica, view, seq, request)      A replica that accepted it, holding a quorum's prepares, is prepared.
    Execute(replica, view, seq, request)     A prepared replica, holding a quorum's commits, executes and replies.
    ViewChange(replica, view)                A replica moves to the next view and sends its prepared certificates.
    NewView(replica, view, carried)          The new primary, on a quorum's view-changes, starts the view.

Invariants
    TypeOK              every variable holds a value of its type.
    Agreement           no two honest replicas execute different requests at the same number, in any views.
    Validity            honest replicas execute only the clients' requests (or the null request).
    PreparedConsistent  no two honest replicas are prepared for different requests at the same view and number.

Reachable (the first two where the primary of view 0 is faulty, the first with two
requests or more; the third where it is honest; the last two with views 0..1 or more)
    EquivocationAccepted            two honest replicas accepted different pre-prepares for one view and number.
    CommittedUnderByzantinePrimary  an honest replica executed a request pre-prepared by a faulty primary.
    RequestExecuted                 an honest replica executed a request.
    CommittedAfterViewChange        an honest replica executed a request in a view after the first.
    CarriedOver                     a request prepared in one view was carried by a new-view and executed in it.

Variants, each caught
    too_few_replicas           N = 3f (3 replicas, f = 1), quorums of N − f = 2f   PreparedConsistent
    commit_quorum_2f           a replica commits on 2f commits, not 2f + 1         Agreement
    new_view_ignores_prepared  the new primary carries no prepared certificate     Agreement
    accept_from_non_primary    a backup accepts a pre-prepare from any replica     PreparedConsistent
    unsigned_request           a backup accepts a request no client signed         Validity
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from distcheck.spec.codec import to_json
from distcheck.spec.contract import Action, Exists, Invariant, Next, Reachable, Spec, param, rule, variant
from distcheck.spec.network import MessageSet
from distcheck.spec.values import FrozenMap

NULL = "null"  # the null request a new view puts where no certificate was found
FORGED = "forged"  # a request no client signed: only a Byzantine replica sends it

# ------------------------------------------------------------------------ messages


@attrs.frozen
class MsgPrePrepare:
    """``sender``, as the primary of ``view``, assigns ``request`` the number ``seq``."""

    sender: str
    view: int
    seq: int
    request: str

    def __str__(self) -> str:
        return f"pre-prepare({self.sender}, v{self.view}, {self.seq}, {self.request})"


@attrs.frozen
class MsgPrepare:
    """``sender`` accepted the pre-prepare of ``request`` at ``view`` and ``seq``."""

    sender: str
    view: int
    seq: int
    request: str

    def __str__(self) -> str:
        return f"prepare({self.sender}, v{self.view}, {self.seq}, {self.request})"


@attrs.frozen
class MsgCommit:
    """``sender`` is prepared for ``request`` at ``view`` and ``seq``."""

    sender: str
    view: int
    seq: int
    request: str

    def __str__(self) -> str:
        return f"commit({self.sender}, v{self.view}, {self.seq}, {self.request})"


@attrs.frozen
class MsgReply:
    """``sender`` committed ``request`` at ``seq`` in ``view``, executed it and replies."""

    sender: str
    view: int
    seq: int
    request: str

    def __str__(self) -> str:
        return f"reply({self.sender}, v{self.view}, {self.seq}, {self.request})"


@attrs.frozen
class MsgViewChange:
    """``sender`` moves to ``view`` and reports its prepared certificates, each a
    (view, seq, request), the highest view's for each number."""

    sender: str
    view: int
    prepared: tuple[tuple[int, int, str], ...]

    def __str__(self) -> str:
        certs = ", ".join(f"{r}@v{v}#{n}" for v, n, r in self.prepared) or "none"
        return f"view-change({self.sender}, v{self.view}, prepared: {certs})"


@attrs.frozen
class MsgNewView:
    """The primary of ``view`` starts it, re-issuing ``carried``: (seq, request) pairs."""

    sender: str
    view: int
    carried: tuple[tuple[int, str], ...]

    def __str__(self) -> str:
        carried = ", ".join(f"{n}: {r}" for n, r in self.carried) or "nothing"
        return f"new-view({self.sender}, v{self.view}, carries {carried})"


Message = MsgPrePrepare | MsgPrepare | MsgCommit | MsgReply | MsgViewChange | MsgNewView
VOTES = (MsgPrePrepare, MsgPrepare, MsgCommit, MsgReply)

# -------------------------------------------------------------------------- state


@attrs.frozen
class PbftState:
    view: FrozenMap[str, int]  # each honest replica's view
    msgs: MessageSet[Message]


# ------------------------------------------------------------------------ actions


class ReplicaAction(Action):
    __slots__ = ()
    ACTOR = "replica"


@attrs.frozen
class PrePrepare(ReplicaAction):
    replica: str
    view: int
    seq: int
    request: str


@attrs.frozen
class Prepare(ReplicaAction):
    replica: str
    view: int
    seq: int
    request: str


@attrs.frozen
class Commit(ReplicaAction):
    replica: str
    view: int
    seq: int
    request: str


@attrs.frozen
class Execute(ReplicaAction):
    replica: str
    view: int
    seq: int
    request: str


@attrs.frozen
class ViewChange(ReplicaAction):
    replica: str
    view: int


@attrs.frozen
class NewView(ReplicaAction):
    replica: str
    view: int
    carried: tuple[tuple[int, str], ...]


PbftAction = PrePrepare | Prepare | Commit | Execute | ViewChange | NewView


class Index:
    """One message set's messages, indexed for the rules (not a value of the spec)."""

    __slots__ = (
        "base_sent",
        "commit_count",
        "msgs",
        "new_views",
        "pre_prepares",
        "prepare_count",
        "prepares",
        "replied",
        "view_changes",
    )

    def __init__(self, msgs: MessageSet[Message], primaries: Sequence[str], base: Index | None = None) -> None:
        """The index of ``msgs``: ``base``'s (of a subset of them, the faulty
        replicas' vocabulary) and the rest."""
        self.msgs = msgs
        #: the initial messages (the faulty replicas'), which every later state holds
        self.base_sent: frozenset[Message] = base.base_sent if base else msgs.sent
        #: (sender, view, seq) -> the requests it pre-prepared or prepared there
        self.pre_prepares: dict[tuple[str, int, int], tuple[str, ...]] = dict(base.pre_prepares) if base else {}
        self.prepares: dict[tuple[str, int, int], tuple[str, ...]] = dict(base.prepares) if base else {}
        #: (view, seq, request) -> how many backups prepared it, how many replicas committed it
        self.prepare_count: dict[tuple[int, int, str], int] = dict(base.prepare_count) if base else {}
        self.commit_count: dict[tuple[int, int, str], int] = dict(base.commit_count) if base else {}
        self.replied: set[tuple[str, int]] = set(base.replied) if base else set()
        self.view_changes: dict[int, list[MsgViewChange]] = (
            {v: list(vcs) for v, vcs in base.view_changes.items()} if base else {}
        )
        self.new_views: set[int] = set(base.new_views) if base else set()
        added = msgs.sent - base.msgs.sent if base else msgs.sent
        for m in added:  # each entry's order is irrelevant: membership and counts only
            match m:
                case MsgPrePrepare(sender, view, seq, request):
                    key = (sender, view, seq)
                    self.pre_prepares[key] = (*self.pre_prepares.get(key, ()), request)
                case MsgPrepare(sender, view, seq, request):
                    key = (sender, view, seq)
                    self.prepares[key] = (*self.prepares.get(key, ()), request)
                    if sender != primaries[view]:
                        vote = (view, seq, request)
                        self.prepare_count[vote] = self.prepare_count.get(vote, 0) + 1
                case MsgCommit(_, view, seq, request):
                    vote = (view, seq, request)
                    self.commit_count[vote] = self.commit_count.get(vote, 0) + 1
                case MsgReply(sender, _, seq, _):
                    self.replied.add((sender, seq))
                case MsgViewChange(_, view, _):
                    self.view_changes.setdefault(view, []).append(m)
                case MsgNewView(sender, view, _) if sender == primaries[view]:
                    self.new_views.add(view)  # a new-view counts only from its view's primary


@attrs.frozen
class Config:
    replicas: int = param(4, help="number of replicas, r1, r2, ...", minimum=3, maximum=7)
    faulty: int = param(1, help="Byzantine replicas, r1..rf (at most (replicas - 1) // 3)", minimum=0, maximum=2)
    max_view: int = param(1, help="views are 0..max_view", minimum=0, maximum=1_000_000)
    requests: int = param(2, help="client requests q1, q2, ...", minimum=1, maximum=1_000_000)
    seqs: int = param(1, help="sequence numbers are 1..seqs", minimum=1, maximum=1_000_000)
    variant: str | None = None

    def __attrs_post_init__(self) -> None:
        for f in attrs.fields(Config):
            minimum, maximum = f.metadata.get("minimum"), f.metadata.get("maximum")
            value = getattr(self, f.name)
            if minimum is not None and not minimum <= value <= maximum:
                raise ValueError(f"{f.name} must be between {minimum} and {maximum}, got {value}")
        if self.variant != "too_few_replicas" and self.replicas < 3 * self.faulty + 1:
            raise ValueError(
                f"PBFT needs replicas >= 3 * faulty + 1, got replicas={self.replicas}, faulty={self.faulty}"
                " (the variant too_few_replicas allows it)"
            )


def replica_names(n: int) -> tuple[str, ...]:
    return tuple(f"r{i}" for i in range(1, n + 1))


# ------------------------------------------------------------------------ the spec


class Pbft(Spec[PbftState, PbftAction]):
    name = "pbft"

    def __init__(self, config: Config = Config()) -> None:
        self.config = config
        self.replicas = replica_names(config.replicas)
        self.faulty = self.replicas[: config.faulty]
        self.honest = self.replicas[config.faulty :]
        self.views = tuple(range(config.max_view + 1))
        self.seqs = tuple(range(1, config.seqs + 1))
        self.requests = tuple(f"q{i}" for i in range(1, config.requests + 1))
        #: what a request field may hold: the clients' requests, the null request, a forgery
        self.request_domain = (*self.requests, NULL, FORGED)
        self.quorum = config.replicas - config.faulty
        self.commit_quorum = self.quorum
        self._primaries = tuple(self.replicas[v % len(self.replicas)] for v in self.views)
        self._index: Index | None = None
        #: the indexes of the initial message sets (``initial``), largest first: a
        #: state's index starts from one its messages include
        self._bases: list[Index] = []

    def primary(self, view: int) -> str:
        return self._primaries[view]

    # --------------------------------------------------------- initial state

    def byzantine_vocabulary(self) -> list[Message]:
        """Every message a faulty replica may send (docstring: "Signatures")."""
        out: list[Message] = []
        requests = (*self.requests, FORGED)
        for b in self.faulty:
            for v, n, r in itertools.product(self.views, self.seqs, requests):
                out += [MsgPrePrepare(b, v, n, r), MsgPrepare(b, v, n, r), MsgCommit(b, v, n, r)]
            for v in self.views[1:]:
                out.append(MsgViewChange(b, v, ()))
                for w, n, r in itertools.product(range(v), self.seqs, requests):
                    out.append(MsgViewChange(b, v, ((w, n, r),)))
        return out

    def init_states(self) -> Iterable[PbftState]:
        yield self.initial(self.byzantine_vocabulary())

    def initial(self, sent_by_faulty: Iterable[Message]) -> PbftState:
        """The initial state in which the faulty replicas have sent ``sent_by_faulty``.
        The model's is the whole finite vocabulary; a trace of an implementation is
        validated from the messages its Byzantine replicas really sent, whatever they
        were (a view-change may claim several certificates there).  The states that
        follow are indexed from this one (kept, so that it costs once)."""
        msgs = MessageSet(sent_by_faulty)
        if any(m.sender not in self.faulty for m in msgs.sent):
            raise ValueError("the initial messages must all be the faulty replicas'")
        if all(b.msgs.sent != msgs.sent for b in self._bases):
            self._bases.append(Index(msgs, self._primaries))
            self._bases.sort(key=lambda b: -len(b.msgs.sent))
        return PbftState(view=FrozenMap({r: 0 for r in self.honest}), msgs=msgs)

    def next(self) -> Next:
        # Each honest replica's steps in its own view (every rule but ViewChange
        # requires the replica to be in the action's view), then its view changes.
        return (
            Exists(
                "replica",
                self.honest,
                Exists(
                    "view",
                    self.own_view,
                    Exists(
                        "seq",
                        self.seqs,
                        Exists("request", self.candidates, self.pre_prepare, self.prepare, self.commit, self.execute),
                    ),
                    Exists("carried", self.new_view_options, self.new_view),
                ),
                Exists("view", self.views, self.view_change),
            ),
        )

    def own_view(self, s: PbftState, replica: str) -> tuple[int, ...]:
        """The view the replica is in: the only one its normal-case steps take."""
        return (s.view[replica],)

    # -------------------------------------------------------------- helpers

    def index(self, s: PbftState) -> Index:
        """The state's messages, indexed (kept for the last message set asked about:
        the rules are asked about one state many times in a row)."""
        if self._index is None or self._index.msgs is not s.msgs:
            base = next((b for b in self._bases if b.msgs.sent <= s.msgs.sent), None)
            self._index = Index(s.msgs, self._primaries, base)
        return self._index

    def started(self, s: PbftState, replica: str, view: int) -> bool:
        """The replica is in ``view`` and the view has started (view 0, or its
        primary's new-view was sent)."""
        return s.view[replica] == view and (view == 0 or view in self.index(s).new_views)

    def acceptable(self, request: str) -> bool:
        """An honest replica accepts a request that carries its client's signature
        (or the null request of a new view)."""
        return request in self.requests or request == NULL

    def accepts_from(self, sender: str, view: int) -> bool:
        """A backup takes a pre-prepare from the primary of its view only."""
        return sender == self.primary(view)

    def accepted_request(self, s: PbftState, replica: str, view: int, seq: int) -> str | None:
        """The request whose pre-prepare the replica accepted at this view and number:
        the primary's own pre-prepare, a backup's prepare; None if none."""
        table = self.index(s).pre_prepares if replica == self.primary(view) else self.index(s).prepares
        found = table.get((replica, view, seq), ())
        return found[0] if found else None

    def prepares(self, s: PbftState, view: int, seq: int, request: str) -> int:
        """The backups (not the primary) that sent a matching prepare."""
        return self.index(s).prepare_count.get((view, seq, request), 0)

    def certified(self, s: PbftState, view: int, seq: int, request: str) -> bool:
        """A prepared certificate's evidence was sent: the primary's pre-prepare and a
        quorum less one of backups' prepares (all signed)."""
        return (
            request in self.index(s).pre_prepares.get((self.primary(view), view, seq), ())
            and self.prepares(s, view, seq, request) >= self.quorum - 1
        )

    def certificates(self, s: PbftState, replica: str) -> tuple[tuple[int, int, str], ...]:
        """The replica's prepared certificates, the highest view's for each number."""
        best: dict[int, tuple[int, int, str]] = {}
        for m in s.msgs.sent:
            if isinstance(m, MsgCommit) and m.sender == replica:
                if m.seq not in best or best[m.seq][0] < m.view:
                    best[m.seq] = (m.view, m.seq, m.request)
        return tuple(best[n] for n in sorted(best))

    def candidates(self, s: PbftState, replica: str, view: int, seq: int) -> tuple[str, ...]:
        """The requests the replica's normal-case steps may take at this view and
        number: the one it accepted, if any; else those pre-prepared there by a sender
        it takes pre-prepares from, and the clients' if it is the primary."""
        mine = self.accepted_request(s, replica, view, seq)
        if mine is not None:
            return (mine,)
        offered: set[str] = set(self.requests) if replica == self.primary(view) else set()
        for (sender, v, n), requests in self.index(s).pre_prepares.items():
            if (v, n) == (view, seq) and self.accepts_from(sender, view):
                offered.update(requests)
        return tuple(r for r in self.request_domain if r in offered)

    def new_view_options(self, s: PbftState, replica: str, view: int) -> list[tuple[tuple[int, str], ...]]:
        """What the new primary may carry into ``view``: for some quorum of
        view-changes for it (one per sender, its own among them), the requests
        ``carry`` computes from their valid certificates."""
        if view == 0 or replica != self.primary(view) or view in self.index(s).new_views:
            return []
        by_sender: dict[str, list[MsgViewChange]] = {}
        for m in self.index(s).view_changes.get(view, ()):
            by_sender.setdefault(m.sender, []).append(m)
        if replica not in by_sender:
            return []
        others = sorted(r for r in by_sender if r != replica)
        out: set[tuple[tuple[int, str], ...]] = set()
        for group in itertools.combinations(others, self.quorum - 1):
            for chosen in itertools.product(*(by_sender[r] for r in (replica, *group))):
                out |= self.carry(s, chosen)
        return sorted(out)

    def carry(self, s: PbftState, vcs: Sequence[MsgViewChange]) -> set[tuple[tuple[int, str], ...]]:
        """The new view's pre-prepares from a quorum's view-changes: up to the highest
        number with a valid certificate, each number's highest-view certified request
        (each, if two were certified at that view), the null request where none is."""
        certs = {c for m in vcs for c in m.prepared if self.certified(s, *c)}
        if not certs:
            return {()}
        top = max(n for _, n, _ in certs)
        choices: list[list[tuple[int, str]]] = []
        for n in range(1, top + 1):
            at_n = [c for c in certs if c[1] == n]
            if not at_n:
                choices.append([(n, NULL)])
                continue
            high = max(v for v, _, _ in at_n)
            choices.append(sorted({(n, r) for v, _, r in at_n if v == high}))
        return set(itertools.product(*choices))

    # ------------------------------------------------------------------ rules

    @rule(PrePrepare)
    def pre_prepare(self, s: PbftState, replica: str, view: int, seq: int, request: str) -> PbftState | None:
        """The primary of its started view assigns a client's request, not yet
        assigned in this view, a number not yet used or carried in it."""
        if replica != self.primary(view) or not self.started(s, replica, view) or request not in self.requests:
            return None
        pre_prepares = self.index(s).pre_prepares
        if (replica, view, seq) in pre_prepares:
            return None
        if any(request in pre_prepares.get((replica, view, n), ()) for n in self.seqs):
            return None
        return attrs.evolve(s, msgs=s.msgs.send(MsgPrePrepare(replica, view, seq, request)))

    @rule(Prepare)
    def prepare(self, s: PbftState, replica: str, view: int, seq: int, request: str) -> PbftState | None:
        """A backup in the started view accepts a pre-prepare from its primary, of a
        signed request, having accepted no other at that view and number; it sends a
        prepare."""
        if replica == self.primary(view) or not self.started(s, replica, view) or not self.acceptable(request):
            return None
        if (replica, view, seq) in self.index(s).prepares:
            return None
        if not any(
            request in requests and self.accepts_from(sender, view)
            for (sender, v, n), requests in self.index(s).pre_prepares.items()
            if (v, n) == (view, seq)
        ):
            return None
        return attrs.evolve(s, msgs=s.msgs.send(MsgPrepare(replica, view, seq, request)))

    @rule(Commit)
    def commit(self, s: PbftState, replica: str, view: int, seq: int, request: str) -> PbftState | None:
        """A replica in the view that accepted the pre-prepare and holds matching
        prepares from a quorum less one of the backups is prepared; it sends a commit."""
        if s.view[replica] != view or self.accepted_request(s, replica, view, seq) != request:
            return None
        if MsgCommit(replica, view, seq, request) in s.msgs or self.prepares(s, view, seq, request) < self.quorum - 1:
            return None
        return attrs.evolve(s, msgs=s.msgs.send(MsgCommit(replica, view, seq, request)))

    @rule(Execute)
    def execute(self, s: PbftState, replica: str, view: int, seq: int, request: str) -> PbftState | None:
        """A prepared replica in the view holding matching commits from a quorum
        commits the request, executes it (once per number) and replies."""
        if s.view[replica] != view or MsgCommit(replica, view, seq, request) not in s.msgs:
            return None
        index = self.index(s)
        if (replica, seq) in index.replied or index.commit_count.get((view, seq, request), 0) < self.commit_quorum:
            return None
        return attrs.evolve(s, msgs=s.msgs.send(MsgReply(replica, view, seq, request)))

    @rule(ViewChange)
    def view_change(self, s: PbftState, replica: str, view: int) -> PbftState | None:
        """A replica suspecting its primary moves to the next view and sends a
        view-change with its prepared certificates."""
        if view != s.view[replica] + 1 or view not in self.views:
            return None
        vc = MsgViewChange(replica, view, self.certificates(s, replica))
        return PbftState(view=s.view.set(replica, view), msgs=s.msgs.send(vc))

    @rule(NewView)
    def new_view(self, s: PbftState, replica: str, view: int, carried: tuple[tuple[int, str], ...]) -> PbftState | None:
        """The primary of ``view``, in it and holding a quorum's view-changes (its own
        among them), starts it: it sends the new-view and a pre-prepare for each
        request the certificates carry."""
        if s.view[replica] != view or carried not in self.new_view_options(s, replica, view):
            return None
        pre = [MsgPrePrepare(replica, view, n, r) for n, r in carried]
        return attrs.evolve(s, msgs=s.msgs.send(MsgNewView(replica, view, carried), *pre))

    # ------------------------------------------------------------- observation

    def observe(self, s: PbftState, a: PbftAction) -> Mapping[str, Any] | None:
        """What an honest replica logs: every step, by its action; the replica that
        takes it is the action's ``replica``.  Faulty replicas log nothing (their
        messages are in the initial state)."""
        return {"actor": a.replica, "action": to_json(a)}

    # ============================================================ properties

    def executed(self, s: PbftState) -> list[MsgReply]:
        return [m for m in s.msgs.sent if isinstance(m, MsgReply) and m.sender in self.honest]

    def invariants(self) -> Sequence[Invariant[PbftState]]:
        return (
            Invariant("TypeOK", "every variable holds a value of its type", self._type_ok),
            Invariant(
                "Agreement",
                "no two honest replicas execute different requests at the same number, in any views",
                self._agreement,
            ),
            Invariant(
                "Validity",
                "honest replicas execute only the clients' requests (or the null request)",
                lambda s: all(m.request in self.requests or m.request == NULL for m in self.executed(s)),
            ),
            Invariant(
                "PreparedConsistent",
                "no two honest replicas are prepared for different requests at the same view and number",
                self._prepared_consistent,
            ),
        )

    def _agreement(self, s: PbftState) -> bool:
        done: dict[int, str] = {}
        for m in self.executed(s):
            if done.setdefault(m.seq, m.request) != m.request:
                return False
        return True

    def _prepared_consistent(self, s: PbftState) -> bool:
        prepared: dict[tuple[int, int], str] = {}
        for m in s.msgs.sent:
            if isinstance(m, MsgCommit) and m.sender in self.honest:
                if prepared.setdefault((m.view, m.seq), m.request) != m.request:
                    return False
        return True

    def _type_ok(self, s: PbftState) -> bool:
        if set(s.view) != set(self.honest) or not all(v in self.views for v in s.view.values()):
            return False
        for m in s.msgs.sent - self.index(s).base_sent:
            if m.sender not in self.replicas or m.view not in self.views:
                return False
            if isinstance(m, VOTES) and (m.seq not in self.seqs or m.request not in self.request_domain):
                return False
        return True

    def reachable(self) -> Sequence[Reachable[PbftState]]:
        out: list[Reachable[PbftState]] = []
        if self.primary(0) in self.faulty:
            if self.requests[1:]:
                out.append(
                    Reachable(
                        "EquivocationAccepted",
                        "two honest replicas accepted different pre-prepares for one view and number",
                        self._equivocation_accepted,
                    )
                )
            out.append(
                Reachable(
                    "CommittedUnderByzantinePrimary",
                    "an honest replica executed a request pre-prepared by a faulty primary",
                    lambda s: any(m.view == 0 for m in self.executed(s)),
                )
            )
        else:
            out.append(
                Reachable("RequestExecuted", "an honest replica executed a request", lambda s: bool(self.executed(s)))
            )
        if self.views[1:]:
            out += [
                Reachable(
                    "CommittedAfterViewChange",
                    "an honest replica executed a request in a view after the first",
                    lambda s: any(m.view > 0 for m in self.executed(s)),
                ),
                Reachable(
                    "CarriedOver",
                    "a request prepared in one view was carried by a new-view and executed in it",
                    self._carried_over,
                ),
            ]
        return out

    def _equivocation_accepted(self, s: PbftState) -> bool:
        accepted: dict[tuple[int, int], set[str]] = {}
        for m in s.msgs.sent:
            if isinstance(m, MsgPrepare) and m.sender in self.honest:
                accepted.setdefault((m.view, m.seq), set()).add(m.request)
        return any(len(rs) > 1 for rs in accepted.values())

    def _carried_over(self, s: PbftState) -> bool:
        carried = {(m.view, n, r) for m in s.msgs.sent if isinstance(m, MsgNewView) for n, r in m.carried if r != NULL}
        return any((m.view, m.seq, m.request) in carried for m in self.executed(s))


# ------------------------------------------------------------------------ variants
# Each a real mistake, as a subclass that overrides the one definition it breaks.


@variant(
    "too_few_replicas",
    "3f replicas (3, f = 1): quorums of N - f = 2f meet only in the Byzantine replica",
    params={"replicas": 3, "faulty": 1},
)
class TooFewReplicas(Pbft):
    """The protocol unchanged, deployed on N = 3f replicas: a replica waits for the
    N − f = 2f answers it can count on, and two such quorums share only f replicas,
    all of which may be Byzantine."""


@variant("commit_quorum_2f", "a prepared replica commits on 2f commits instead of 2f + 1")
class CommitQuorum2f(Pbft):
    def __init__(self, config: Config = Config()) -> None:
        super().__init__(config)
        self.commit_quorum = self.quorum - 1


@variant("new_view_ignores_prepared", "the new primary carries no prepared certificate into the new view")
class NewViewIgnoresPrepared(Pbft):
    def carry(self, s: PbftState, vcs: Sequence[MsgViewChange]) -> set[tuple[tuple[int, str], ...]]:
        """The new primary waits for a quorum's view-changes but starts afresh."""
        return {()}


@variant("accept_from_non_primary", "a backup accepts a pre-prepare from a replica that is not the primary")
class AcceptFromNonPrimary(Pbft):
    def accepts_from(self, sender: str, view: int) -> bool:
        """A backup takes a pre-prepare from whoever sends it."""
        return True


@variant("unsigned_request", "a backup accepts a pre-prepared request without checking the client's signature")
class UnsignedRequest(Pbft):
    def acceptable(self, request: str) -> bool:
        """Any request will do: the backup does not check the client's signature."""
        return True
