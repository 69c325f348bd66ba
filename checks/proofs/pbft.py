"""PBFT (``spec/pbft.py``) in z3, and the inductive invariant that proves Agreement,
PreparedConsistent and Validity for a bounded instance (issue #18, item 2).

Where it sits: the one module in ``checks/`` that knows PBFT's state.
``PbftEncoding`` subclasses ``checks.proofs.system.Encoding``; the registry
(``checks.proofs.registry``) names it ``pbft``, with ``quorum_lemmas``: the lemma of
``checks.proofs.quorums`` (CorrectInIntersection for the instance's N, f and
quorum) as an obligation of its own, after the cross-check and before the
induction.  The cross-check compares the encoding with the executable spec,
variants included.

**The state.**  Each honest replica's ``view[r]`` (an Int over the views), and one
Boolean per message an honest replica could ever send at the bounded instance:
``pp[p,v,n,q]`` (a pre-prepare, for p the honest primary of v), ``prep[b,v,n,q]``
(a prepare, for b an honest backup of v), ``commit[r,v,n,q]``, ``reply[r,v,n,q]``,
``vc[r,v,C]`` for every content C a view-change for v could carry (per number: no
certificate, or one (w, n, q) with w < v) and ``nv[v,K]`` for every carried list K
(per number up to its length: any request, the null one included), q ranging over
the clients' requests, ``null`` and ``forged``.  The faulty replicas' messages are
the constants of their vocabulary (``Pbft.byzantine_vocabulary``): true for every
request but ``null``, false otherwise.  A faulty replica sends no new-view.

**Next** is the spec's six rules with their guards.  NewView is a finite
disjunction built in Python: for every group of quorum − 1 other senders and every
choice of one view-change per member (the primary's own among them), the union C
of the certificates they claim; the carried list K is allowed for C when it is what
``Pbft.carry`` computes from the certified members of C, stated per number as
"the highest view certified there is this request" (or "none is", for null).
Certified is the spec's: the primary's pre-prepare and quorum − 1 backups' prepares.
Everything is read off the spec object (``quorum``, ``commit_quorum``,
``acceptable``, ``accepts_from``, ``carry`` tested against the base class), so the
encoding follows a variant without being told which one it is.

**PbftInv**, in the spirit of Castro and Liskov's proof (TOCS 2002, section 4),
with Commitable(w, n, q) standing for "(w, n, q) can still become committed": at
least commit_quorum − f honest replicas have committed it or are still at a view
≤ w without having accepted another request there.  It only ever goes from true to
false (a replica that left view w can no longer commit in it), which is what makes
it usable in an invariant while the commits themselves arrive late.

- **Views**: an honest replica's messages are of views up to its own, a view-change
  for v ≥ 1 only;
- **PrePrepares**: an honest primary pre-prepares at most one request per number,
  never ``forged``; in a view after the first, only after its new-view, and there it
  is the carried request or a number past the carried list; the new-view's carried
  requests were all pre-prepared, and there is at most one new-view per view;
- **Prepares**: an honest backup prepares at most one request per number, a signed
  one, matching a pre-prepare of a sender it accepts from, in a started view;
- **Commits**: an honest commit is of the request its sender accepted and has a
  quorum − 1 of backups' prepares (a prepared certificate);
- **Replies**: an honest reply follows its sender's commit and commit_quorum
  commits, at most one per number;
- **ViewChanges**: an honest view-change for v reports, for each number, its
  sender's highest-view commit below v (the spec's ``certificates``);
- **NewViewSafe**: a new-view for v carries (n, q) whenever (w, n, q) is Commitable
  for some w < v.

Why it is inductive.  Call "(w, n, q) is certified" the spec's ``certified``.  In
any state satisfying PbftInv, if (w, n, q) is Commitable then no other request is
certified at number n in view w or later (CertificateSafe; not a conjunct, since
z3 derives it within one state from the others, and the tests check that every
conjunct is needed).  At view w it is the quorum intersection counted out: the
commit_quorum − f honest replicas that can still commit q and the honest ones among
quorum − 1 backups that prepared another request cannot all fit in the N − f
honest replicas when N > 3f (CorrectInIntersection is the case of two quorums);
at a later view the certificate needs the primary's pre-prepare, which is the
request its new-view carried (PrePrepares), which NewViewSafe fixes.  NewViewSafe
itself at a NewView step: a quorum of view-change senders is at view ≥ v, the
commit_quorum − f Commitable witnesses must meet it in an honest replica (two
quorums share a correct replica, the same count), and that replica, at view ≥ v >
w, is a witness only by having committed q: its view-change reports a certificate
at a view ≥ w (ViewChanges), certified (Commits, Prepares), so the highest
certified one the quorum reports is at a view ≥ w too, hence q's by
CertificateSafe.  Every other step only makes Commitable false (a replica leaves
view w, or accepts another request) or keeps it.  Then the properties: a reply
means commit_quorum commits (Replies), hence Commitable; another reply at the same
number follows a certified commit at a view at least as high (or lower,
symmetrically), so by CertificateSafe it is the same request.
PreparedConsistent is the same counting at one view, Validity that no honest
replica accepts ``forged`` (Prepares, PrePrepares).

The variants: ``too_few_replicas`` (quorums of 2 of 3) and ``commit_quorum_2f``
break the counting: the quorum lemma fails for the first, and the induction fails
at a NewView that drops a request a replica may still commit, from a reachable
state; ``new_view_ignores_prepared`` fails NewViewSafe at the same step;
``unsigned_request`` fails PrePrepares at a NewView that carries the forged
request (and Validity); ``accept_from_non_primary`` keeps PbftInv inductive (its
Prepares conjunct reads the variant's ``accepts_from``) but it no longer implies
Agreement or PreparedConsistent, since a prepare need not match the primary's
pre-prepare: z3 returns a state that breaks them.

Where it stops.  The encoding is quantifier-free.  NewView's guard is a disjunction
over the sets of certificates a quorum's view-changes can claim together (built
one sender at a time, ``claims``) times the carried lists, each with its carry
formula: 15 claim sets at the default instance (4 replicas, f = 1, views 0..1, two
requests, one number), where Consecution takes a fraction of a second; 8,649 for
view 2 at two numbers and views 0..2 (times 21 carried lists), where Consecution
takes 46 to 85 s, up to a third of it building these formulas in Python.  Measurements in
``docs/proofs.md``.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import z3

from distcheck.checks.proofs import quorums
from distcheck.checks.proofs.obligations import DEFAULT_TIMEOUT_SECONDS, Obligation
from distcheck.checks.proofs.system import Candidate, Encoding, Field, Predicate, SymState, Transition
from distcheck.spec.network import MessageSet
from distcheck.spec.pbft import (
    NULL,
    Commit,
    Execute,
    Message,
    MsgCommit,
    MsgNewView,
    MsgPrepare,
    MsgPrePrepare,
    MsgReply,
    MsgViewChange,
    NewView,
    Pbft,
    PbftAction,
    PbftState,
    Prepare,
    PrePrepare,
    ViewChange,
)
from distcheck.spec.values import FrozenMap

if TYPE_CHECKING:
    pass

Cert = tuple[int, int, str]  # (view, seq, request): a prepared certificate
Content = tuple[Cert, ...]  # what a view-change reports
Carried = tuple[tuple[int, str], ...]  # what a new-view carries

# ------------------------------------------------------------------- field names


def view_of(r: str) -> str:
    return f"view[{r}]"


def pp(p: str, v: int, n: int, q: str) -> str:
    return f"pp[{p},{v},{n},{q}]"


def prep(b: str, v: int, n: int, q: str) -> str:
    return f"prep[{b},{v},{n},{q}]"


def commit(r: str, v: int, n: int, q: str) -> str:
    return f"commit[{r},{v},{n},{q}]"


def reply(r: str, v: int, n: int, q: str) -> str:
    return f"reply[{r},{v},{n},{q}]"


def vc(r: str, v: int, content: Content) -> str:
    return f"vc[{r},{v},{_content_text(content)}]"


def nv(v: int, carried: Carried) -> str:
    return f"nv[{v},{_carried_text(carried)}]"


def _content_text(content: Content) -> str:
    return "(" + " ".join(f"{q}@{w}#{n}" for w, n, q in content) + ")"


def _carried_text(carried: Carried) -> str:
    return "(" + " ".join(f"{n}:{q}" for n, q in carried) + ")"


def at_least(terms: Sequence[z3.BoolRef | bool], k: int) -> z3.BoolRef:
    """At least ``k`` of ``terms`` hold (Python booleans count as constants)."""
    fixed = sum(1 for t in terms if t is True)
    free = [t for t in terms if not isinstance(t, bool)]
    need = k - fixed
    if need <= 0:
        return z3.BoolVal(True)
    if need > len(free):
        return z3.BoolVal(False)
    return z3.AtLeast(*free, need)


def _or(terms: Iterable[z3.BoolRef | bool]) -> z3.BoolRef:
    items = list(terms)
    if any(t is True for t in items):
        return z3.BoolVal(True)
    rest = [t for t in items if not isinstance(t, bool)]
    return z3.Or(*rest) if rest else z3.BoolVal(False)


def _and(terms: Iterable[z3.BoolRef | bool]) -> z3.BoolRef:
    items = list(terms)
    if any(t is False for t in items):
        return z3.BoolVal(False)
    rest = [t for t in items if not isinstance(t, bool)]
    return z3.And(*rest) if rest else z3.BoolVal(True)


# -------------------------------------------------------------------- the encoding


class PbftEncoding(Encoding[PbftState, PbftAction]):
    def __init__(self, spec: Pbft) -> None:
        super().__init__(spec)
        self.pbft = spec
        self.replicas, self.faulty, self.honest = spec.replicas, spec.faulty, spec.honest
        self.views, self.seqs, self.domain = spec.views, spec.seqs, spec.request_domain
        self.quorum, self.commit_quorum = spec.quorum, spec.commit_quorum
        self.base_vocabulary = frozenset(spec.byzantine_vocabulary())
        # The carry of the base class, or the variant's own (new_view_ignores_prepared).
        self.carries_certificates = type(spec).carry is Pbft.carry
        self.initial = next(iter(spec.init_states()))
        self.contents: dict[int, tuple[Content, ...]] = {v: self._contents(v) for v in self.views[1:]}
        self.carried_lists: tuple[Carried, ...] = self._carried_lists()
        #: views whose primary is honest and may therefore send a new-view
        self.new_views = tuple(v for v in self.views[1:] if spec.primary(v) in self.honest)
        self._message_names: dict[Message, str] | None = None
        self._carry_terms: dict[tuple[str, str, frozenset[Cert], str], z3.BoolRef] = {}
        self._nv_claims: dict[tuple[str, str, int], dict[frozenset[Cert], z3.BoolRef]] = {}

    def _contents(self, v: int) -> tuple[Content, ...]:
        """Every report an honest view-change for ``v`` could carry: per number, none
        or one certificate of a lower view."""
        per_seq = [[None, *[(w, n, q) for w in range(v) for q in self.domain]] for n in self.seqs]
        return tuple(tuple(c for c in combo if c is not None) for combo in itertools.product(*per_seq))

    def _carried_lists(self) -> tuple[Carried, ...]:
        out: list[Carried] = [()]
        for top in self.seqs:
            for combo in itertools.product(self.domain, repeat=top):
                out.append(tuple(zip(range(1, top + 1), combo)))
        return tuple(out)

    # ------------------------------------------------------------------ state

    def state_fields(self) -> Sequence[Field]:
        fields = [Field(view_of(r), tuple(self.views)) for r in self.honest]
        fields += [Field(name) for name in self.message_names().values()]
        return fields

    def message_names(self) -> dict[Message, str]:
        """Each message an honest replica could send, with its field."""
        if self._message_names is None:
            out: dict[Message, str] = {}
            for v in self.views:
                primary = self.pbft.primary(v)
                for n in self.seqs:
                    for q in self.domain:
                        if primary in self.honest:
                            out[MsgPrePrepare(primary, v, n, q)] = pp(primary, v, n, q)
                        for r in self.honest:
                            if r != primary:
                                out[MsgPrepare(r, v, n, q)] = prep(r, v, n, q)
                        for r in self.honest:
                            out[MsgCommit(r, v, n, q)] = commit(r, v, n, q)
                            out[MsgReply(r, v, n, q)] = reply(r, v, n, q)
            for v, contents in self.contents.items():
                for r in self.honest:
                    for c in contents:
                        out[MsgViewChange(r, v, c)] = vc(r, v, c)
            for v in self.new_views:
                for k in self.carried_lists:
                    out[MsgNewView(self.pbft.primary(v), v, k)] = nv(v, k)
            self._message_names = out
        return self._message_names

    def values(self, state: PbftState) -> Mapping[str, Hashable]:
        names = self.message_names()
        unknown = [m for m in state.msgs.sent if m not in names and m not in self.base_vocabulary]
        if unknown:
            raise ValueError(f"messages outside the encoding: {', '.join(str(m) for m in unknown[:5])}")
        out: dict[str, Hashable] = {name: m in state.msgs for m, name in names.items()}
        for r in self.honest:
            out[view_of(r)] = state.view[r]
        return out

    def state(self, values: Mapping[str, Hashable]) -> PbftState:
        sent = [m for m, name in self.message_names().items() if values[name]]
        views: dict[str, int] = {}
        for r in self.honest:
            value = values[view_of(r)]
            if not isinstance(value, int):
                raise ValueError(f"not a view: {value!r}")
            views[r] = value
        return PbftState(view=FrozenMap(views), msgs=MessageSet(frozenset(sent) | self.base_vocabulary))

    def init(self, s: SymState) -> z3.BoolRef:
        return z3.And(
            *[s.is_(view_of(r), 0) for r in self.honest],
            *[z3.Not(s[name]) for name in self.message_names().values()],
        )

    # ------------------------------------------------------- message formulas

    def _faulty_vote(self, sender: str, q: str) -> bool:
        """A faulty replica's pre-prepare, prepare or commit of ``q`` (its vocabulary)."""
        return sender in self.faulty and q != NULL

    def sent_pp(self, s: SymState, sender: str, v: int, n: int, q: str) -> z3.BoolRef | bool:
        if sender in self.faulty:
            return self._faulty_vote(sender, q)
        return s[pp(sender, v, n, q)] if sender == self.pbft.primary(v) else False

    def sent_prep(self, s: SymState, sender: str, v: int, n: int, q: str) -> z3.BoolRef | bool:
        if sender in self.faulty:
            return self._faulty_vote(sender, q)
        return s[prep(sender, v, n, q)] if sender != self.pbft.primary(v) else False

    def sent_commit(self, s: SymState, sender: str, v: int, n: int, q: str) -> z3.BoolRef | bool:
        if sender in self.faulty:
            return self._faulty_vote(sender, q)
        return s[commit(sender, v, n, q)]

    def accepted(self, s: SymState, r: str, v: int, n: int, q: str) -> z3.BoolRef:
        """The honest replica ``r`` accepted ``q`` at (v, n): its pre-prepare if it is
        the primary, its prepare otherwise."""
        name = pp(r, v, n, q) if r == self.pbft.primary(v) else prep(r, v, n, q)
        term: z3.BoolRef = s[name]
        return term

    def prepared_by_quorum(self, s: SymState, v: int, n: int, q: str) -> z3.BoolRef:
        """Quorum − 1 backups (not the primary) prepared ``q`` at (v, n)."""
        backups = [r for r in self.replicas if r != self.pbft.primary(v)]
        return at_least([self.sent_prep(s, b, v, n, q) for b in backups], self.quorum - 1)

    def certified(self, s: SymState, v: int, n: int, q: str) -> z3.BoolRef:
        """The spec's ``certified``: the primary's pre-prepare and quorum − 1 backups' prepares."""
        return _and([self.sent_pp(s, self.pbft.primary(v), v, n, q), self.prepared_by_quorum(s, v, n, q)])

    def committed_by_quorum(self, s: SymState, v: int, n: int, q: str) -> z3.BoolRef:
        return at_least([self.sent_commit(s, r, v, n, q) for r in self.replicas], self.commit_quorum)

    def started(self, s: SymState, r: str, v: int) -> z3.BoolRef:
        here = s.is_(view_of(r), v)
        if v == 0:
            return here
        return z3.And(here, self.new_view_sent(s, v))

    def new_view_sent(self, s: SymState, v: int) -> z3.BoolRef:
        if v not in self.new_views:
            return z3.BoolVal(False)
        return z3.Or(*[s[nv(v, k)] for k in self.carried_lists])

    def accepted_any_other(self, s: SymState, r: str, v: int, n: int, q: str) -> z3.BoolRef:
        return z3.Or(*[self.accepted(s, r, v, n, other) for other in self.domain if other != q])

    # ---------------------------------------------------------------- actions

    def actions(self) -> Sequence[PbftAction]:
        out: list[PbftAction] = []
        for v in self.views:
            primary = self.pbft.primary(v)
            if primary in self.honest:
                out += [PrePrepare(primary, v, n, q) for n in self.seqs for q in self.pbft.requests]
            for r in self.honest:
                if r != primary:
                    out += [Prepare(r, v, n, q) for n in self.seqs for q in self.domain]
            for r in self.honest:
                out += [Commit(r, v, n, q) for n in self.seqs for q in self.domain]
                out += [Execute(r, v, n, q) for n in self.seqs for q in self.domain]
        for r in self.honest:
            out += [ViewChange(r, v) for v in self.views[1:]]
        for v in self.new_views:
            out += [NewView(self.pbft.primary(v), v, k) for k in self.carried_lists]
        return out

    def transition(self, action: PbftAction, s: SymState) -> Transition:
        match action:
            case PrePrepare(p, v, n, q):
                guard = [
                    self.started(s, p, v),
                    *[z3.Not(s[pp(p, v, n, other)]) for other in self.domain],
                    *[z3.Not(s[pp(p, v, m, q)]) for m in self.seqs],
                ]
                return Transition(z3.And(*guard), {pp(p, v, n, q): True})
            case Prepare(b, v, n, q):
                if not self.pbft.acceptable(q):
                    return Transition(z3.BoolVal(False), {prep(b, v, n, q): True})
                offered = _or(
                    self.sent_pp(s, sender, v, n, q) for sender in self.replicas if self.pbft.accepts_from(sender, v)
                )
                guard = [
                    self.started(s, b, v),
                    *[z3.Not(s[prep(b, v, n, other)]) for other in self.domain],
                    offered,
                ]
                return Transition(z3.And(*guard), {prep(b, v, n, q): True})
            case Commit(r, v, n, q):
                guard = [
                    s.is_(view_of(r), v),
                    self.accepted(s, r, v, n, q),
                    z3.Not(self.accepted_any_other(s, r, v, n, q)),
                    z3.Not(s[commit(r, v, n, q)]),
                    self.prepared_by_quorum(s, v, n, q),
                ]
                return Transition(z3.And(*guard), {commit(r, v, n, q): True})
            case Execute(r, v, n, q):
                guard = [
                    s.is_(view_of(r), v),
                    s[commit(r, v, n, q)],
                    *[z3.Not(s[reply(r, w, n, other)]) for w in self.views for other in self.domain],
                    self.committed_by_quorum(s, v, n, q),
                ]
                return Transition(z3.And(*guard), {reply(r, v, n, q): True})
            case ViewChange(r, v):
                updates: dict[str, Hashable | z3.ExprRef] = {view_of(r): v}
                for c in self.contents[v]:
                    updates[vc(r, v, c)] = z3.Or(s[vc(r, v, c)], self.reports(s, r, v, c))
                return Transition(s.is_(view_of(r), v - 1), updates)
            case NewView(p, v, k):
                guard = [
                    s.is_(view_of(p), v),
                    z3.Not(self.new_view_sent(s, v)),
                    self.new_view_choice(s, p, v, k),
                ]
                nv_updates: dict[str, Hashable | z3.ExprRef] = {nv(v, k): True}
                nv_updates.update({pp(p, v, n, q): True for n, q in k})
                return Transition(z3.And(*guard), nv_updates)
        raise ValueError(f"not a PBFT action of this encoding: {action!r}")

    def reports(self, s: SymState, r: str, v: int, content: Content) -> z3.BoolRef:
        """The honest replica ``r``'s certificates below ``v`` are ``content``: per
        number, its highest-view commit (or none)."""
        by_seq = {n: cert for cert in content for n in [cert[1]]}
        parts = []
        for n in self.seqs:
            cert = by_seq.get(n)
            if cert is None:
                parts += [z3.Not(s[commit(r, w, n, q)]) for w in range(v) for q in self.domain]
            else:
                w, _, q = cert
                parts.append(s[commit(r, w, n, q)])
                parts += [z3.Not(s[commit(r, u, n, x)]) for u in range(w + 1, v) for x in self.domain]
        return z3.And(*parts)

    def sender_options(self, s: SymState, r: str, v: int) -> list[tuple[z3.BoolRef | bool, Content]]:
        """The view-changes ``r`` may have sent for ``v``: (sent, content) pairs."""
        if r in self.faulty:
            return [
                (True, m.prepared)
                for m in self.base_vocabulary
                if isinstance(m, MsgViewChange) and m.sender == r and m.view == v
            ]
        return [(s[vc(r, v, c)], c) for c in self.contents[v]]

    def new_view_choice(self, s: SymState, p: str, v: int, k: Carried) -> z3.BoolRef:
        """Some quorum of view-change senders for ``v`` (``p`` among them), each with one
        of its view-changes, claims certificates whose certified ones carry ``k``."""
        claims = self.claims(s, p, v)
        return _or(z3.And(present, self.carry_is(s, claim, k)) for claim, present in claims.items())

    def claims(self, s: SymState, p: str, v: int) -> dict[frozenset[Cert], z3.BoolRef]:
        """For each set of certificates a quorum's view-changes for ``v`` (``p``'s own
        among them) may claim together: the formula "such view-changes were sent".

        Built one sender at a time (each in the quorum with one of its view-changes, or
        not in it), keyed by how many others were taken and what they claim so far:
        the same disjunction as enumerating every quorum and every choice of
        view-changes, without the product's size."""
        key = (s.tag, p, v)
        if key not in self._nv_claims:
            table: dict[tuple[int, frozenset[Cert]], z3.BoolRef] = {}
            for sent, content in self.sender_options(s, p, v):
                entry = (0, frozenset(content))
                table[entry] = _or([table.get(entry, False), sent])
            for r in self.replicas:
                if r == p:
                    continue
                grown: dict[tuple[int, frozenset[Cert]], list[z3.BoolRef | bool]] = {
                    entry: [f] for entry, f in table.items()
                }
                for (taken, claim), f in table.items():
                    if taken == self.quorum - 1:
                        continue
                    for sent, content in self.sender_options(s, r, v):
                        grown.setdefault((taken + 1, claim | frozenset(content)), []).append(_and([f, sent]))
                table = {entry: _or(fs) for entry, fs in grown.items()}
            self._nv_claims[key] = {claim: f for (taken, claim), f in table.items() if taken == self.quorum - 1}
        return self._nv_claims[key]

    def carry_is(self, s: SymState, claim: frozenset[Cert], k: Carried) -> z3.BoolRef:
        """``k`` is among the spec's ``carry`` of view-changes claiming ``claim``."""
        if not self.carries_certificates:
            # A variant's own carry: the spec's answer does not depend on certificates.
            return z3.BoolVal(k in self.pbft.carry(self.initial, ()))
        by_seq = {n: frozenset(c for c in claim if c[1] == n) for n in self.seqs}
        if not k:
            return _and(self.none_certified(s, by_seq[n]) for n in self.seqs)
        top = len(k)
        parts = [z3.Not(self.none_certified(s, by_seq[top]))]
        parts += [self.none_certified(s, by_seq[n]) for n in self.seqs if n > top]
        for n, q in k:
            highest = self.highest_certified_is(s, by_seq[n], q)
            parts.append(_or([self.none_certified(s, by_seq[n]), highest]) if q == NULL else highest)
        return _and(parts)

    def none_certified(self, s: SymState, certs: frozenset[Cert]) -> z3.BoolRef:
        """No certificate of ``certs`` is certified (the formulas are shared: NewView's
        guard asks the same questions about many claims)."""
        key = (s.tag, "none", certs, "")
        if key not in self._carry_terms:
            self._carry_terms[key] = _and(z3.Not(self.certified(s, *c)) for c in sorted(certs))
        return self._carry_terms[key]

    def highest_certified_is(self, s: SymState, certs: frozenset[Cert], q: str) -> z3.BoolRef:
        """Among ``certs`` (of one number), a highest-view certified one is of ``q``."""
        key = (s.tag, "highest", certs, q)
        if key not in self._carry_terms:
            self._carry_terms[key] = _or(
                z3.And(self.certified(s, *c), *[z3.Not(self.certified(s, *d)) for d in certs if d[0] > c[0]])
                for c in sorted(certs)
                if c[2] == q
            )
        return self._carry_terms[key]

    # ------------------------------------------------------------- properties

    def honest_votes(self) -> Iterable[tuple[str, int, int, str]]:
        return itertools.product(self.honest, self.views, self.seqs, self.domain)

    def agreement(self, s: SymState) -> z3.BoolRef:
        parts = []
        for r, v, n, q in self.honest_votes():
            for r2, v2, q2 in itertools.product(self.honest, self.views, self.domain):
                if q < q2:
                    parts.append(z3.Not(z3.And(s[reply(r, v, n, q)], s[reply(r2, v2, n, q2)])))
        return z3.And(*parts)

    def validity(self, s: SymState) -> z3.BoolRef:
        return z3.And(
            *[
                z3.Not(s[reply(r, v, n, q)])
                for r, v, n, q in self.honest_votes()
                if q not in self.pbft.requests and q != NULL
            ]
        )

    def prepared_consistent(self, s: SymState) -> z3.BoolRef:
        parts = []
        for r, v, n, q in self.honest_votes():
            for r2, q2 in itertools.product(self.honest, self.domain):
                if q < q2:
                    parts.append(z3.Not(z3.And(s[commit(r, v, n, q)], s[commit(r2, v, n, q2)])))
        return z3.And(*parts)

    def properties(self) -> Sequence[Predicate]:
        return (
            Predicate(
                "Agreement",
                "no two honest replicas execute different requests at the same number, in any views",
                self.agreement,
            ),
            Predicate(
                "Validity",
                "honest replicas execute only the clients' requests (or the null request)",
                self.validity,
            ),
            Predicate(
                "PreparedConsistent",
                "no two honest replicas are prepared for different requests at the same view and number",
                self.prepared_consistent,
            ),
        )

    # ------------------------------------------------------------- invariants

    def views_inv(self, s: SymState) -> z3.BoolRef:
        parts = []
        for r, v, n, q in self.honest_votes():
            mine = [commit(r, v, n, q), reply(r, v, n, q)]
            mine.append(pp(r, v, n, q) if r == self.pbft.primary(v) else prep(r, v, n, q))
            parts += [z3.Implies(s[name], z3.IntVal(s.fields[view_of(r)].index(v)) <= s[view_of(r)]) for name in mine]
        for v, contents in self.contents.items():
            for r in self.honest:
                for c in contents:
                    parts.append(z3.Implies(s[vc(r, v, c)], s.fields[view_of(r)].index(v) <= s[view_of(r)]))
        return z3.And(*parts)

    def commitable(self, s: SymState, w: int, n: int, q: str) -> z3.BoolRef:
        """(w, n, q) can still be committed: commit_quorum − f honest replicas have
        committed it, or are at a view ≤ w and accepted no other request there."""
        index = s.fields[view_of(self.honest[0])].index(w) if self.honest else 0
        witnesses = [
            z3.Or(
                s[commit(r, w, n, q)],
                z3.And(s[view_of(r)] <= index, z3.Not(self.accepted_any_other(s, r, w, n, q))),
            )
            for r in self.honest
        ]
        return at_least(witnesses, self.commit_quorum - len(self.faulty))

    def pre_prepares_inv(self, s: SymState) -> z3.BoolRef:
        parts: list[z3.BoolRef] = []
        for v in self.views:
            p = self.pbft.primary(v)
            if p not in self.honest:
                continue
            for n in self.seqs:
                for q, q2 in itertools.combinations(self.domain, 2):
                    parts.append(z3.Not(z3.And(s[pp(p, v, n, q)], s[pp(p, v, n, q2)])))
                parts += [z3.Not(s[pp(p, v, n, q)]) for q in self.domain if not self._signed(q)]
                if v == 0:
                    continue
                for q in self.domain:
                    fits = [s[nv(v, k)] for k in self.carried_lists if (n, q) in k or len(k) < n]
                    parts.append(z3.Implies(s[pp(p, v, n, q)], _or(fits)))
            if v == 0:
                continue
            for k in self.carried_lists:
                parts.append(z3.Implies(s[nv(v, k)], z3.And(*[s[pp(p, v, n, q)] for n, q in k])))
            for k, k2 in itertools.combinations(self.carried_lists, 2):
                parts.append(z3.Not(z3.And(s[nv(v, k)], s[nv(v, k2)])))
            parts.append(z3.Implies(self.new_view_sent(s, v), s.fields[view_of(p)].index(v) <= s[view_of(p)]))
        return _and(parts)

    def _signed(self, q: str) -> bool:
        return q in self.pbft.requests or q == NULL

    def prepares_inv(self, s: SymState) -> z3.BoolRef:
        parts: list[z3.BoolRef] = []
        for v in self.views:
            p = self.pbft.primary(v)
            for b in self.honest:
                if b == p:
                    continue
                for n in self.seqs:
                    for q, q2 in itertools.combinations(self.domain, 2):
                        parts.append(z3.Not(z3.And(s[prep(b, v, n, q)], s[prep(b, v, n, q2)])))
                    for q in self.domain:
                        offered = _or(
                            self.sent_pp(s, sender, v, n, q)
                            for sender in self.replicas
                            if self.pbft.accepts_from(sender, v)
                        )
                        ok = [offered, z3.BoolVal(self.pbft.acceptable(q))]
                        if v > 0:
                            ok.append(self.new_view_sent(s, v))
                        parts.append(z3.Implies(s[prep(b, v, n, q)], z3.And(*ok)))
        return _and(parts)

    def commits_inv(self, s: SymState) -> z3.BoolRef:
        return z3.And(
            *[
                z3.Implies(
                    s[commit(r, v, n, q)],
                    z3.And(self.accepted(s, r, v, n, q), self.prepared_by_quorum(s, v, n, q)),
                )
                for r, v, n, q in self.honest_votes()
            ]
        )

    def replies_inv(self, s: SymState) -> z3.BoolRef:
        parts = [
            z3.Implies(s[reply(r, v, n, q)], z3.And(s[commit(r, v, n, q)], self.committed_by_quorum(s, v, n, q)))
            for r, v, n, q in self.honest_votes()
        ]
        for r in self.honest:
            for n in self.seqs:
                mine = [s[reply(r, v, n, q)] for v in self.views for q in self.domain]
                parts.append(z3.AtMost(*mine, 1))
        return z3.And(*parts)

    def view_changes_inv(self, s: SymState) -> z3.BoolRef:
        return _and(
            z3.Implies(s[vc(r, v, c)], self.reports(s, r, v, c))
            for v, contents in self.contents.items()
            for r in self.honest
            for c in contents
        )

    def carries(self, k: Carried, n: int, q: str) -> bool:
        return (n, q) in k

    def new_view_safe(self, s: SymState) -> z3.BoolRef:
        parts = []
        for v in self.new_views:
            for k in self.carried_lists:
                for w in range(v):
                    for n in self.seqs:
                        for q in self.domain:
                            if not self.carries(k, n, q):
                                parts.append(z3.Implies(s[nv(v, k)], z3.Not(self.commitable(s, w, n, q))))
        return _and(parts)

    def candidates(self) -> Sequence[Candidate]:
        conjuncts = (
            Predicate("Views", "an honest replica's messages are of views up to its own", self.views_inv),
            Predicate(
                "PrePrepares",
                "an honest primary pre-prepares one signed request per number, after its new-view the carried one",
                self.pre_prepares_inv,
            ),
            Predicate(
                "Prepares",
                "an honest backup prepares one signed request per number, its primary's, in a started view",
                self.prepares_inv,
            ),
            Predicate("Commits", "an honest commit is of an accepted request with a certificate", self.commits_inv),
            Predicate(
                "Replies", "an honest reply follows its commit and a commit quorum, once per number", self.replies_inv
            ),
            Predicate(
                "ViewChanges",
                "an honest view-change reports its sender's highest commits below its view",
                self.view_changes_inv,
            ),
            Predicate(
                "NewViewSafe",
                "a new-view for v carries every request still committable at a lower view",
                self.new_view_safe,
            ),
        )
        return (
            Candidate("PbftInv", "PBFT's inductive invariant (see checks/proofs/pbft.py)", conjuncts),
            Candidate(
                "Safety", "Agreement ∧ Validity ∧ PreparedConsistent alone (not inductive)", tuple(self.properties())
            ),
        )


# ------------------------------------------------------------------ the target


def quorum_lemmas(spec: Pbft, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> list[Obligation]:
    """CorrectInIntersection (``checks/proofs/quorums.py``) for this instance's N, f
    and quorum: the lemma the induction's counting rests on (``SpecProof``'s
    ``lemmas``, discharged after the cross-check)."""
    params = {"n": len(spec.replicas), "f": len(spec.faulty), "q": spec.quorum}
    return [o for o in quorums.obligations(params, timeout=timeout) if o.name == "CorrectInIntersection"]
