"""Two-phase commit: Lamport's TwoPhase and the abstract TCommit it implements.

A transaction spans several resource managers (RMs).  Each RM either prepares
(promises it can commit) or chooses to abort.  A transaction manager (TM) collects
"Prepared" messages; once every RM has prepared it may broadcast "Commit", and at
any time before deciding it may broadcast "Abort".  RMs obey whichever decision
message they receive.  The protocol is correct but blocking: an RM that has prepared
must wait for the TM.

Sources: J. Gray and L. Lamport, "Consensus on Transaction Commit" (ACM TODS 2006);
Lamport's TLA+ specs TCommit.tla and TwoPhase.tla (tlaplus/Examples).  This module
models the same abstraction, so its state counts equal TLC's for the same
constants: TwoPhase with 3 RMs has 288 distinct states (1,146 generated, depth 11),
with 5 RMs 8,832, and with 5 RMs under RM symmetry 314; TCommit with 3 RMs has 34.

TwoPhase state: ``rm_state`` (each RM: working | prepared | committed | aborted),
``tm_state`` (init | done), ``tm_prepared`` (RMs the TM knows prepared), ``msgs``
(a TLA+-style message set: Prepared(rm), Commit, Abort; sent once, never removed).

Actions (TwoPhase)
    TMRcvPrepared(rm)   TM records rm's Prepared message.
    TMCommit            TM, with every RM prepared, decides commit and sends Commit.
    TMAbort             TM, undecided, decides abort and sends Abort.
    RMPrepare(rm)       A working RM prepares and sends Prepared.
    RMChooseToAbort(rm) A working RM aborts on its own.
    RMRcvCommitMsg(rm)  An RM receives Commit and commits.
    RMRcvAbortMsg(rm)   An RM receives Abort and aborts.

Invariants
    TypeOK          every variable has a value of the right type.
    TCConsistent    no RM has committed while another has aborted.

Reachable (each must hold in some state)
    AllCommitted    every RM committed.
    AllAborted      every RM aborted.
    CommitDecided   the TM decided commit.

Refinement: every TwoPhase step maps, through ``rm_state``, to a TCommit step or a
stutter.

Variants: deliberately broken versions, each a real mistake caught by
TCConsistent, declared at the end of this module as a subclass that overrides the
one rule it breaks (``commit_early``: TMCommit; ``abort_after_prepare``:
RMChooseToAbort; ``forgetful_tm``: TMAbort).  ``TwoPhase.variants()`` lists them
with their one-line descriptions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from distcheck.spec.contract import Action, Exists, Invariant, Next, Reachable, Refinement, Spec, param, rule, variant
from distcheck.spec.network import MessageSet
from distcheck.spec.values import FrozenMap

WORKING, PREPARED, COMMITTED, ABORTED = "working", "prepared", "committed", "aborted"
RM_STATES = (WORKING, PREPARED, COMMITTED, ABORTED)
INIT, DONE = "init", "done"


def rm_names(n: int) -> tuple[str, ...]:
    return tuple(f"r{i}" for i in range(1, n + 1))


# ------------------------------------------------------------------------ messages


@attrs.frozen
class Prepared:
    rm: str

    def __str__(self) -> str:
        return f"Prepared({self.rm})"


@attrs.frozen
class Commit:
    def __str__(self) -> str:
        return "Commit"


@attrs.frozen
class Abort:
    def __str__(self) -> str:
        return "Abort"


Message = Prepared | Commit | Abort

# -------------------------------------------------------------------------- state


@attrs.frozen
class TPState:
    rm_state: FrozenMap[str, str]
    tm_state: str
    tm_prepared: frozenset[str]
    msgs: MessageSet[Message]


# ------------------------------------------------------------------------ actions


class TMAction(Action):
    __slots__ = ()
    ACTOR = "tm"


@attrs.frozen
class TMRcvPrepared(TMAction):
    rm: str


@attrs.frozen
class TMCommit(TMAction):
    pass


@attrs.frozen
class TMAbort(TMAction):
    pass


@attrs.frozen
class RMPrepare(Action):
    ACTOR = "rm"
    rm: str


@attrs.frozen
class RMChooseToAbort(Action):
    ACTOR = "rm"
    rm: str


@attrs.frozen
class RMRcvCommitMsg(Action):
    ACTOR = "rm"
    rm: str


@attrs.frozen
class RMRcvAbortMsg(Action):
    ACTOR = "rm"
    rm: str


TPAction = TMRcvPrepared | TMCommit | TMAbort | RMPrepare | RMChooseToAbort | RMRcvCommitMsg | RMRcvAbortMsg


@attrs.frozen
class Config:
    rms: int = param(3, help="number of resource managers", minimum=1, maximum=9)
    variant: str | None = None


# ------------------------------------------------------------------------ TwoPhase


class TwoPhase(Spec[TPState, TPAction]):
    name = "twophase"

    def __init__(self, config: Config = Config()) -> None:
        self.config = config
        self.rms = rm_names(config.rms)
        self.all_rms = frozenset(self.rms)

    def init_states(self) -> Iterable[TPState]:
        yield TPState(
            rm_state=FrozenMap({rm: WORKING for rm in self.rms}),
            tm_state=INIT,
            tm_prepared=frozenset(),
            msgs=MessageSet(),
        )

    def next(self) -> Next:
        # TPNext: the TM's steps, then each RM's, in this fixed order.
        return (
            Exists("rm", self.rms, self.tm_rcv_prepared),
            self.tm_commit,
            self.tm_abort,
            Exists(
                "rm", self.rms, self.rm_prepare, self.rm_choose_to_abort, self.rm_rcv_commit_msg, self.rm_rcv_abort_msg
            ),
        )

    @rule(TMRcvPrepared)
    def tm_rcv_prepared(self, s: TPState, rm: str) -> TPState | None:
        """The undecided TM records an RM's Prepared message."""
        if s.tm_state != INIT or Prepared(rm) not in s.msgs:
            return None
        return attrs.evolve(s, tm_prepared=s.tm_prepared | {rm})

    @rule(TMCommit)
    def tm_commit(self, s: TPState) -> TPState | None:
        """The undecided TM, with every RM prepared, decides commit and sends Commit."""
        if s.tm_state != INIT or s.tm_prepared != self.all_rms:
            return None
        return attrs.evolve(s, tm_state=DONE, msgs=s.msgs.send(Commit()))

    @rule(TMAbort)
    def tm_abort(self, s: TPState) -> TPState | None:
        """The undecided TM decides abort and sends Abort."""
        if s.tm_state != INIT:
            return None
        return attrs.evolve(s, tm_state=DONE, msgs=s.msgs.send(Abort()))

    @rule(RMPrepare)
    def rm_prepare(self, s: TPState, rm: str) -> TPState | None:
        """A working RM prepares and sends Prepared."""
        if s.rm_state[rm] != WORKING:
            return None
        return attrs.evolve(s, rm_state=s.rm_state.set(rm, PREPARED), msgs=s.msgs.send(Prepared(rm)))

    @rule(RMChooseToAbort)
    def rm_choose_to_abort(self, s: TPState, rm: str) -> TPState | None:
        """A working RM aborts on its own."""
        if s.rm_state[rm] != WORKING:
            return None
        return attrs.evolve(s, rm_state=s.rm_state.set(rm, ABORTED))

    @rule(RMRcvCommitMsg)
    def rm_rcv_commit_msg(self, s: TPState, rm: str) -> TPState | None:
        """An RM receives Commit and commits."""
        if Commit() not in s.msgs:
            return None
        return attrs.evolve(s, rm_state=s.rm_state.set(rm, COMMITTED))

    @rule(RMRcvAbortMsg)
    def rm_rcv_abort_msg(self, s: TPState, rm: str) -> TPState | None:
        """An RM receives Abort and aborts."""
        if Abort() not in s.msgs:
            return None
        return attrs.evolve(s, rm_state=s.rm_state.set(rm, ABORTED))

    def invariants(self) -> Sequence[Invariant[TPState]]:
        return (
            Invariant("TypeOK", "every variable holds a value of its type", self._type_ok),
            Invariant("TCConsistent", "no RM has committed while another has aborted", tc_consistent_tp),
        )

    def _type_ok(self, s: TPState) -> bool:
        rms = frozenset(self.rms)
        return (
            set(s.rm_state) == rms
            and all(v in RM_STATES for v in s.rm_state.values())
            and s.tm_state in (INIT, DONE)
            and s.tm_prepared <= rms
            and all(isinstance(m, (Commit, Abort)) or (isinstance(m, Prepared) and m.rm in rms) for m in s.msgs.sent)
        )

    def reachable(self) -> Sequence[Reachable[TPState]]:
        return (
            Reachable("AllCommitted", "every RM has committed", lambda s: all_in(s.rm_state, COMMITTED)),
            Reachable("AllAborted", "every RM has aborted", lambda s: all_in(s.rm_state, ABORTED)),
            Reachable("CommitDecided", "the TM has decided commit", lambda s: Commit() in s.msgs),
        )

    def canonical(self, s: TPState) -> TPState:
        """Symmetry over RMs.  An RM's whole role in a state is its signature (its
        state, whether the TM recorded it, whether its Prepared was sent); RMs are
        otherwise interchangeable, so sorting the signatures and handing them out to
        r1, r2, ... in order gives one exact representative per orbit."""
        signatures = sorted((s.rm_state[rm], rm in s.tm_prepared, Prepared(rm) in s.msgs) for rm in self.rms)
        rm_state = FrozenMap({rm: sig[0] for rm, sig in zip(self.rms, signatures)})
        tm_prepared = frozenset(rm for rm, sig in zip(self.rms, signatures) if sig[1])
        sent: list[Message] = [m for m in s.msgs.sent if not isinstance(m, Prepared)]
        sent += [Prepared(rm) for rm, sig in zip(self.rms, signatures) if sig[2]]
        return TPState(rm_state, s.tm_state, tm_prepared, MessageSet(frozenset(sent)))

    def refinement(self) -> Refinement[TPState, TCState]:
        return Refinement(TCommit(TCConfig(rms=self.config.rms)), lambda s: TCState(s.rm_state))


def all_in(rm_state: FrozenMap[str, str], value: str) -> bool:
    return all(v == value for v in rm_state.values())


def tc_consistent(rm_state: FrozenMap[str, str]) -> bool:
    states = set(rm_state.values())
    return not (COMMITTED in states and ABORTED in states)


def tc_consistent_tp(s: TPState) -> bool:
    return tc_consistent(s.rm_state)


# ------------------------------------------------------------------------- TCommit


@attrs.frozen
class TCState:
    rm_state: FrozenMap[str, str]


@attrs.frozen
class Prepare(Action):
    """An RM prepares."""

    ACTOR = "rm"
    rm: str


@attrs.frozen
class DecideCommit(Action):
    """A prepared RM commits; allowed only when every RM is prepared or committed."""

    ACTOR = "rm"
    rm: str


@attrs.frozen
class DecideAbort(Action):
    """A working or prepared RM aborts; allowed only while no RM has committed."""

    ACTOR = "rm"
    rm: str


TCAction = Prepare | DecideCommit | DecideAbort


@attrs.frozen
class TCConfig:
    rms: int = param(3, help="number of resource managers", minimum=1, maximum=9)
    variant: str | None = None


class TCommit(Spec[TCState, TCAction]):
    """The transaction-commit problem itself: what any commit protocol must achieve,
    with no TM and no messages.  (TLA+'s Decide(rm) is split into its commit and its
    abort disjunct, so that each action has one successor.)"""

    name = "tcommit"

    def __init__(self, config: TCConfig = TCConfig()) -> None:
        self.config = config
        self.rms = rm_names(config.rms)

    def init_states(self) -> Iterable[TCState]:
        yield TCState(FrozenMap({rm: WORKING for rm in self.rms}))

    def next(self) -> Next:
        return (Exists("rm", self.rms, self.prepare, self.decide_commit, self.decide_abort),)

    @rule(Prepare)
    def prepare(self, s: TCState, rm: str) -> TCState | None:
        """A working RM prepares."""
        if s.rm_state[rm] != WORKING:
            return None
        return TCState(s.rm_state.set(rm, PREPARED))

    @rule(DecideCommit)
    def decide_commit(self, s: TCState, rm: str) -> TCState | None:
        """A prepared RM commits, once every RM is prepared or committed."""
        if s.rm_state[rm] != PREPARED or not all(v in (PREPARED, COMMITTED) for v in s.rm_state.values()):
            return None
        return TCState(s.rm_state.set(rm, COMMITTED))

    @rule(DecideAbort)
    def decide_abort(self, s: TCState, rm: str) -> TCState | None:
        """A working or prepared RM aborts, while no RM has committed."""
        if s.rm_state[rm] not in (WORKING, PREPARED) or COMMITTED in s.rm_state.values():
            return None
        return TCState(s.rm_state.set(rm, ABORTED))

    def invariants(self) -> Sequence[Invariant[TCState]]:
        return (
            Invariant(
                "TypeOK",
                "every RM is working, prepared, committed or aborted",
                lambda s: set(s.rm_state) == set(self.rms) and all(v in RM_STATES for v in s.rm_state.values()),
            ),
            Invariant(
                "TCConsistent", "no RM has committed while another has aborted", lambda s: tc_consistent(s.rm_state)
            ),
        )

    def reachable(self) -> Sequence[Reachable[TCState]]:
        return (
            Reachable("AllCommitted", "every RM has committed", lambda s: all_in(s.rm_state, COMMITTED)),
            Reachable("AllAborted", "every RM has aborted", lambda s: all_in(s.rm_state, ABORTED)),
        )


# ------------------------------------------------------------------------ variants
# Each a real mistake, as a subclass that overrides the one rule it breaks.


@variant("commit_early", "the TM commits before every RM has prepared")
class CommitEarly(TwoPhase):
    @rule(TMCommit)
    def tm_commit(self, s: TPState) -> TPState | None:
        """The undecided TM decides commit without waiting for every Prepared, so an
        RM still working can abort on its own."""
        if s.tm_state != INIT:
            return None
        return attrs.evolve(s, tm_state=DONE, msgs=s.msgs.send(Commit()))


@variant("abort_after_prepare", "an RM aborts on its own after it has prepared")
class AbortAfterPrepare(TwoPhase):
    @rule(RMChooseToAbort)
    def rm_choose_to_abort(self, s: TPState, rm: str) -> TPState | None:
        """A working or prepared RM aborts on its own, breaking the promise its
        Prepared message made."""
        if s.rm_state[rm] not in (WORKING, PREPARED):
            return None
        return attrs.evolve(s, rm_state=s.rm_state.set(rm, ABORTED))


@variant("forgetful_tm", "the TM does not log its decision and presumes abort after a restart")
class ForgetfulTM(TwoPhase):
    @rule(TMAbort)
    def tm_abort(self, s: TPState) -> TPState | None:
        """With no decision record, a recovering TM cannot tell "done" from "init", so
        it may abort after having sent Commit."""
        if Abort() in s.msgs:
            return None
        return attrs.evolve(s, tm_state=DONE, msgs=s.msgs.send(Abort()))
