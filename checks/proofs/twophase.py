"""TwoPhase and TCommit (``spec/twophase.py``) in z3, and the inductive invariant
that proves TCConsistent for TwoPhase.

Where it sits: the one module in ``checks/`` that knows TwoPhase's state; it
subclasses ``checks.proofs.system.Encoding`` and is registered in
``checks.proofs.registry``.  The cross-check compares it with the executable spec,
variants included.

State as fields (for RMs r1..rN):

- ``rm_state[r]`` ∈ {working, prepared, committed, aborted}
- ``tm_state`` ∈ {init, done}
- ``tm_prepared[r]``: the TM has recorded r's Prepared message
- ``sent_prepared[r]``, ``sent_commit``, ``sent_abort``: that message is in ``msgs``

Each spec action (TMRcvPrepared(r), TMCommit, TMAbort, RMPrepare(r),
RMChooseToAbort(r), RMRcvCommitMsg(r), RMRcvAbortMsg(r)) is one transition, with
the guards of the spec's variants (commit_early, abort_after_prepare, forgetful_tm).

The inductive invariant **TPInv**.  TCConsistent alone is not inductive: a state
where r1 has committed while r2 is still working satisfies it, and r2 may then
abort on its own.  Such a state is unreachable, and TPInv says why: it is the
conjunction of

- **RecordedWasSent**: the TM records r as prepared only if r sent Prepared;
- **SenderLeftWorking**: an RM that sent Prepared is no longer working;
- **CommitAfterAllPrepared**: a Commit message is sent only once the TM has
  recorded every RM as prepared (hence every RM has sent Prepared, hence none is
  still working);
- **DecisionIsFinal**: once Commit or Abort has been sent, the TM is done (so it
  will not send the other one);
- **OneDecision**: Commit and Abort are never both sent;
- **CommittedByCommit**: an RM has committed only if Commit was sent;
- **PreparedAbortByAbort**: an RM that sent Prepared and has aborted did so
  because Abort was sent (a prepared RM keeps its promise).

TCConsistent is not among them: it follows (the obligation TPInv ⇒ TCConsistent).
An RM has committed only if Commit was sent; then every RM has sent Prepared, so
none aborted on its own while working, and no Abort was sent for a prepared one to
obey.  Each conjunct is needed: without any one of them, what is left is either
not inductive or does not imply TCConsistent (the tests check this).

TCommit, the abstract problem, needs no strengthening: its only state is
``rm_state``, and its guards (commit only when every RM is prepared or committed,
abort only while none has committed) make TCConsistent inductive on its own.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import z3

from distcheck.checks.proofs.system import Candidate, Encoding, Field, Predicate, SymState, Transition
from distcheck.spec.network import MessageSet
from distcheck.spec.twophase import (
    ABORTED,
    COMMITTED,
    DONE,
    INIT,
    PREPARED,
    RM_STATES,
    WORKING,
    Abort,
    Commit,
    DecideAbort,
    DecideCommit,
    Message,
    Prepare,
    Prepared,
    RMChooseToAbort,
    RMPrepare,
    RMRcvAbortMsg,
    RMRcvCommitMsg,
    TCAction,
    TCommit,
    TCState,
    TMAbort,
    TMCommit,
    TMRcvPrepared,
    TPAction,
    TPState,
    TwoPhase,
)
from distcheck.spec.values import FrozenMap

ENCODED_VARIANTS = frozenset({"commit_early", "abort_after_prepare", "forgetful_tm"})


def rm_state(rm: str) -> str:
    return f"rm_state[{rm}]"


def tm_prepared(rm: str) -> str:
    return f"tm_prepared[{rm}]"


def sent_prepared(rm: str) -> str:
    return f"sent_prepared[{rm}]"


def tc_consistent(s: SymState, rms: Sequence[str]) -> z3.BoolRef:
    """No RM has committed while another has aborted."""
    some_committed = z3.Or(*[s.is_(rm_state(rm), COMMITTED) for rm in rms])
    some_aborted = z3.Or(*[s.is_(rm_state(rm), ABORTED) for rm in rms])
    return z3.Not(z3.And(some_committed, some_aborted))


class TwoPhaseEncoding(Encoding[TPState, TPAction]):
    def __init__(self, spec: TwoPhase) -> None:
        super().__init__(spec)
        if spec.variant is not None and spec.variant not in ENCODED_VARIANTS:
            raise ValueError(f"variant {spec.variant!r} has no z3 encoding; encoded: {', '.join(ENCODED_VARIANTS)}")
        self.rms = spec.rms
        self.variant = spec.variant

    # ------------------------------------------------------------------ state

    def state_fields(self) -> Sequence[Field]:
        fields = [Field(rm_state(rm), RM_STATES) for rm in self.rms]
        fields.append(Field("tm_state", (INIT, DONE)))
        fields += [Field(tm_prepared(rm)) for rm in self.rms]
        fields += [Field(sent_prepared(rm)) for rm in self.rms]
        fields += [Field("sent_commit"), Field("sent_abort")]
        return fields

    def values(self, state: TPState) -> Mapping[str, Hashable]:
        known = {Prepared(rm) for rm in self.rms} | {Commit(), Abort()}
        unknown = [m for m in state.msgs.sent if m not in known]
        if unknown:
            raise ValueError(f"messages outside the encoding: {', '.join(str(m) for m in unknown)}")
        out: dict[str, Hashable] = {"tm_state": state.tm_state}
        for rm in self.rms:
            out[rm_state(rm)] = state.rm_state[rm]
            out[tm_prepared(rm)] = rm in state.tm_prepared
            out[sent_prepared(rm)] = Prepared(rm) in state.msgs
        out["sent_commit"] = Commit() in state.msgs
        out["sent_abort"] = Abort() in state.msgs
        return out

    def state(self, values: Mapping[str, Hashable]) -> TPState:
        sent: list[Message] = [Prepared(rm) for rm in self.rms if values[sent_prepared(rm)]]
        if values["sent_commit"]:
            sent.append(Commit())
        if values["sent_abort"]:
            sent.append(Abort())
        return TPState(
            rm_state=FrozenMap({rm: str(values[rm_state(rm)]) for rm in self.rms}),
            tm_state=str(values["tm_state"]),
            tm_prepared=frozenset(rm for rm in self.rms if values[tm_prepared(rm)]),
            msgs=MessageSet(frozenset(sent)),
        )

    def init(self, s: SymState) -> z3.BoolRef:
        return z3.And(
            *[s.is_(rm_state(rm), WORKING) for rm in self.rms],
            s.is_("tm_state", INIT),
            *[z3.Not(s[tm_prepared(rm)]) for rm in self.rms],
            *[z3.Not(s[sent_prepared(rm)]) for rm in self.rms],
            z3.Not(s["sent_commit"]),
            z3.Not(s["sent_abort"]),
        )

    # ---------------------------------------------------------------- actions

    def actions(self) -> Sequence[TPAction]:
        out: list[TPAction] = [TMRcvPrepared(rm) for rm in self.rms]
        out += [TMCommit(), TMAbort()]
        for rm in self.rms:
            out += [RMPrepare(rm), RMChooseToAbort(rm), RMRcvCommitMsg(rm), RMRcvAbortMsg(rm)]
        return out

    def transition(self, action: TPAction, s: SymState) -> Transition:
        tm_undecided = s.is_("tm_state", INIT)
        match action:
            case TMRcvPrepared(rm):
                return Transition(z3.And(tm_undecided, s[sent_prepared(rm)]), {tm_prepared(rm): True})
            case TMCommit():
                all_recorded = z3.And(*[s[tm_prepared(rm)] for rm in self.rms])
                guard = tm_undecided if self.variant == "commit_early" else z3.And(tm_undecided, all_recorded)
                return Transition(guard, {"tm_state": DONE, "sent_commit": True})
            case TMAbort():
                guard = z3.Not(s["sent_abort"]) if self.variant == "forgetful_tm" else tm_undecided
                return Transition(guard, {"tm_state": DONE, "sent_abort": True})
            case RMPrepare(rm):
                return Transition(s.is_(rm_state(rm), WORKING), {rm_state(rm): PREPARED, sent_prepared(rm): True})
            case RMChooseToAbort(rm):
                may_abort = (WORKING, PREPARED) if self.variant == "abort_after_prepare" else (WORKING,)
                return Transition(s.is_in(rm_state(rm), may_abort), {rm_state(rm): ABORTED})
            case RMRcvCommitMsg(rm):
                return Transition(s["sent_commit"], {rm_state(rm): COMMITTED})
            case RMRcvAbortMsg(rm):
                return Transition(s["sent_abort"], {rm_state(rm): ABORTED})
        raise ValueError(f"not a TwoPhase action: {action!r}")

    # ------------------------------------------------------------- invariants

    def properties(self) -> Sequence[Predicate]:
        return (
            Predicate(
                "TCConsistent",
                "no RM has committed while another has aborted",
                lambda s: tc_consistent(s, self.rms),
            ),
        )

    def candidates(self) -> Sequence[Candidate]:
        rms = self.rms

        conjuncts = (
            Predicate(
                "RecordedWasSent",
                "the TM records an RM as prepared only if it sent Prepared",
                lambda s: z3.And(*[z3.Implies(s[tm_prepared(rm)], s[sent_prepared(rm)]) for rm in rms]),
            ),
            Predicate(
                "SenderLeftWorking",
                "an RM that sent Prepared is no longer working",
                lambda s: z3.And(
                    *[z3.Implies(s[sent_prepared(rm)], z3.Not(s.is_(rm_state(rm), WORKING))) for rm in rms]
                ),
            ),
            Predicate(
                "CommitAfterAllPrepared",
                "Commit is sent only once the TM has recorded every RM as prepared",
                lambda s: z3.Implies(s["sent_commit"], z3.And(*[s[tm_prepared(rm)] for rm in rms])),
            ),
            Predicate(
                "DecisionIsFinal",
                "once Commit or Abort has been sent, the TM is done",
                lambda s: z3.Implies(z3.Or(s["sent_commit"], s["sent_abort"]), s.is_("tm_state", DONE)),
            ),
            Predicate(
                "OneDecision",
                "Commit and Abort are never both sent",
                lambda s: z3.Not(z3.And(s["sent_commit"], s["sent_abort"])),
            ),
            Predicate(
                "CommittedByCommit",
                "an RM has committed only if Commit was sent",
                lambda s: z3.And(*[z3.Implies(s.is_(rm_state(rm), COMMITTED), s["sent_commit"]) for rm in rms]),
            ),
            Predicate(
                "PreparedAbortByAbort",
                "an RM that sent Prepared has aborted only if Abort was sent",
                lambda s: z3.And(
                    *[
                        z3.Implies(z3.And(s[sent_prepared(rm)], s.is_(rm_state(rm), ABORTED)), s["sent_abort"])
                        for rm in rms
                    ]
                ),
            ),
        )
        return (
            Candidate("TPInv", "TwoPhase's inductive invariant (see checks/proofs/twophase.py)", conjuncts),
            Candidate("TCConsistent", "TCConsistent alone (not inductive)", tuple(self.properties())),
        )


class TCommitEncoding(Encoding[TCState, TCAction]):
    """TCommit: one field per RM, three actions per RM."""

    def __init__(self, spec: TCommit) -> None:
        super().__init__(spec)
        self.rms = spec.rms

    def state_fields(self) -> Sequence[Field]:
        return [Field(rm_state(rm), RM_STATES) for rm in self.rms]

    def values(self, state: TCState) -> Mapping[str, Hashable]:
        return {rm_state(rm): state.rm_state[rm] for rm in self.rms}

    def state(self, values: Mapping[str, Hashable]) -> TCState:
        return TCState(FrozenMap({rm: str(values[rm_state(rm)]) for rm in self.rms}))

    def init(self, s: SymState) -> z3.BoolRef:
        return z3.And(*[s.is_(rm_state(rm), WORKING) for rm in self.rms])

    def actions(self) -> Sequence[TCAction]:
        out: list[TCAction] = []
        for rm in self.rms:
            out += [Prepare(rm), DecideCommit(rm), DecideAbort(rm)]
        return out

    def transition(self, action: TCAction, s: SymState) -> Transition:
        rm = action.rm
        match action:
            case Prepare():
                return Transition(s.is_(rm_state(rm), WORKING), {rm_state(rm): PREPARED})
            case DecideCommit():
                all_ready = z3.And(*[s.is_in(rm_state(r), (PREPARED, COMMITTED)) for r in self.rms])
                return Transition(z3.And(s.is_(rm_state(rm), PREPARED), all_ready), {rm_state(rm): COMMITTED})
            case DecideAbort():
                none_committed = z3.And(*[z3.Not(s.is_(rm_state(r), COMMITTED)) for r in self.rms])
                guard = z3.And(s.is_in(rm_state(rm), (WORKING, PREPARED)), none_committed)
                return Transition(guard, {rm_state(rm): ABORTED})
        raise ValueError(f"not a TCommit action: {action!r}")

    def properties(self) -> Sequence[Predicate]:
        return (
            Predicate(
                "TCConsistent",
                "no RM has committed while another has aborted",
                lambda s: tc_consistent(s, self.rms),
            ),
        )

    def candidates(self) -> Sequence[Candidate]:
        return (Candidate("TCConsistent", "TCConsistent, inductive on its own for TCommit", tuple(self.properties())),)
