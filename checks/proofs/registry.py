"""The provable targets: what ``distcheck prove NAME`` can prove, by name.

Where it sits: between the CLI (``checks/cli/prove.py``) and the protocol modules
of ``checks/proofs``.  Two kinds of target:

- ``SpecProof``: an executable spec from ``spec.registry`` with a z3 ``Encoding``.
  Its obligations are the cross-check (the encoding says what the spec does, on
  every reachable state) followed by Init ⇒ Inv, Inv ∧ Next ⇒ Inv′ and Inv ⇒ P for
  its safety properties.  Parameters and variants are the spec's own.
- ``LemmaProof``: a set of lemmas with parameters of their own (``quorums``).

A new protocol adds a module with its ``Encoding`` and one line in ``PROVABLE``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from distcheck.checks.params import UsageError, build_spec, find_spec, parse_params
from distcheck.checks.proofs import abd, clocks, crosscheck, induction, quorums, retry
from distcheck.checks.proofs.broker import BrokerNoLossEncoding
from distcheck.checks.proofs.circuit_breaker import BreakerEncoding, step_obligations
from distcheck.checks.proofs.lock import LockEncoding
from distcheck.checks.proofs.obligations import DEFAULT_TIMEOUT_SECONDS, SKIPPED, Obligation, Verdict
from distcheck.checks.proofs.paxos import PaxosEncoding, VotingEncoding
from distcheck.checks.proofs.pbft import PbftEncoding, quorum_lemmas
from distcheck.checks.proofs.raft import RaftElectionEncoding
from distcheck.checks.proofs.reliable_link import LinkEncoding
from distcheck.checks.proofs.saga import SagaAtomicityEncoding
from distcheck.checks.proofs.system import Encoding
from distcheck.checks.proofs.twophase import TCommitEncoding, TwoPhaseEncoding
from distcheck.spec.abd import Abd
from distcheck.spec.clocks import Clocks
from distcheck.spec.registry import ParamInfo
from distcheck.spec.retry import RetryBackoff

#: Past this many reachable states the cross-check is skipped by ``prove`` (it is
#: linear in the states; the tests cross-check the same encodings on smaller sizes).
CROSS_CHECK_LIMIT = 30_000


@attrs.frozen
class Plan:
    """What ``prove`` will run: parameter values (defaults filled in), the candidate
    invariant (None for lemmas) and the obligations, in order."""

    params: dict[str, Any]
    invariant: str | None
    obligations: list[Obligation]


class Target(ABC):
    name: str
    summary: str

    @abstractmethod
    def params(self) -> list[ParamInfo]: ...

    def variants(self) -> Mapping[str, str]:
        return {}

    def invariants(self) -> Sequence[str]:
        """Names of the candidate invariants a user may pick (first: the default)."""
        return ()

    @abstractmethod
    def plan(
        self,
        raw_params: Sequence[str],
        *,
        variant: str | None = None,
        invariant: str | None = None,
        cross_check: bool = True,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> Plan:
        """The obligations for these options; UsageError on bad ones."""


class SpecProof(Target):
    """``lemmas``: obligations the induction rests on, for the instance at hand
    (PBFT's quorum intersection), discharged after the cross-check."""

    def __init__(
        self,
        spec_name: str,
        encoding: Callable[[Any], Encoding[Any, Any]],
        lemmas: Callable[[Any, float], list[Obligation]] | None = None,
    ) -> None:
        self.name = spec_name
        self.entry = find_spec(spec_name)
        self.summary = f"inductive invariant of {spec_name}: {self.entry.summary}"
        self.encoding = encoding
        self.lemmas = lemmas

    def params(self) -> list[ParamInfo]:
        return self.entry.params()

    def variants(self) -> Mapping[str, str]:
        return self.entry.variants

    def invariants(self) -> Sequence[str]:
        return [c.name for c in self.encoding(self.entry.make()).candidates()]

    def plan(
        self,
        raw_params: Sequence[str],
        *,
        variant: str | None = None,
        invariant: str | None = None,
        cross_check: bool = True,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> Plan:
        _, params, spec = build_spec(self.name, raw_params, variant)
        try:
            encoding = self.encoding(spec)
            candidate = encoding.candidate(invariant)
        except (KeyError, ValueError) as exc:
            raise UsageError(str(exc.args[0]) if exc.args else str(exc)) from None
        reachable = _ReachableOnce(spec, encoding.reachability_key)

        def check_encoding() -> Verdict:
            if not cross_check:
                return Verdict(SKIPPED, detail="--no-cross-check")
            states = reachable.states()
            if states is None:
                return Verdict(
                    SKIPPED,
                    detail=f"more than {CROSS_CHECK_LIMIT:,} reachable states; the tests cross-check smaller sizes",
                )
            return crosscheck.cross_check(encoding, states).verdict()

        obligations = [
            Obligation("CrossCheck", _CROSS_CHECK[encoding.abstraction], check_encoding),
            *(self.lemmas(spec, timeout) if self.lemmas is not None else ()),
            *induction.obligations(encoding, candidate, is_reachable=reachable.contains, timeout=timeout),
        ]
        return Plan(params, candidate.name, obligations)


_CROSS_CHECK = {
    False: "the z3 encoding takes exactly the spec's steps",
    True: "the z3 abstraction simulates every step of the spec",
}


class _ReachableOnce:
    """The spec's reachable states, computed on first use and shared by the
    cross-check and the counterexample's "is this state reachable?" note."""

    def __init__(self, spec: Any, key: Callable[[Any], Any]) -> None:
        self.spec = spec
        self.key = key
        self.computed = False
        self.found: crosscheck.Steps | None = None
        self.members: frozenset[Any] = frozenset()

    def states(self) -> crosscheck.Steps | None:
        """Each reachable state with its steps (None past the limit)."""
        if not self.computed:
            self.computed = True
            try:
                self.found = crosscheck.reachable_steps(self.spec, limit=CROSS_CHECK_LIMIT)
                self.members = frozenset(self.key(state) for state in self.found)
            except ValueError:
                self.found = None
        return self.found

    def contains(self, state: Any) -> bool | None:
        """Whether ``state`` is reachable; None when the instance is too large to say."""
        return None if self.states() is None else self.key(state) in self.members


class LemmaProof(Target):
    def __init__(
        self,
        name: str,
        summary: str,
        params: Sequence[ParamInfo],
        check: Callable[[Mapping[str, Any]], dict[str, int]],
        obligations: Callable[..., list[Obligation]],
        variants: Mapping[str, str] | None = None,
    ) -> None:
        """``variants``: the spec variants whose broken rule the lemmas can be stated
        with (name → what is wrong); ``obligations`` then takes ``broken=`` one of them,
        so ``prove NAME --variant V`` shows which lemmas the mistake breaks."""
        self.name = name
        self.summary = summary
        self._params = list(params)
        self._check = check
        self._obligations = obligations
        self._variants = dict(variants or {})

    def params(self) -> list[ParamInfo]:
        return self._params

    def variants(self) -> Mapping[str, str]:
        return self._variants

    def plan(
        self,
        raw_params: Sequence[str],
        *,
        variant: str | None = None,
        invariant: str | None = None,
        cross_check: bool = True,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> Plan:
        if variant is not None and not self._variants:
            raise UsageError(f"{self.name} has no variants; drop --variant")
        if variant is not None and variant not in self._variants:
            raise UsageError(f"unknown variant {variant!r} for {self.name}; allowed: {', '.join(self._variants)}")
        if invariant is not None:
            raise UsageError(f"{self.name} is a set of lemmas, not an induction; drop --invariant")
        try:
            params = self._check(parse_params(self, raw_params))
        except ValueError as exc:
            raise UsageError(f"{self.name}: {exc}") from None
        if variant is None:
            return Plan(params, None, self._obligations(params, timeout=timeout))
        return Plan(params, None, self._obligations(params, timeout=timeout, broken=variant))


PROVABLE: dict[str, Target] = {
    target.name: target
    for target in (
        SpecProof("twophase", TwoPhaseEncoding),
        SpecProof("tcommit", TCommitEncoding),
        SpecProof("lock", LockEncoding),
        SpecProof("paxos", PaxosEncoding),
        SpecProof("voting", VotingEncoding),
        SpecProof("raft", RaftElectionEncoding),
        SpecProof("broker", BrokerNoLossEncoding),
        SpecProof("reliable_link", LinkEncoding),
        SpecProof("saga", SagaAtomicityEncoding),
        SpecProof("pbft", PbftEncoding, lemmas=quorum_lemmas),
        SpecProof("circuit_breaker", BreakerEncoding, lemmas=step_obligations),
        LemmaProof(
            "quorums",
            "quorum intersection: majorities; BFT quorums of n - f share f + 1 nodes iff n > 3f",
            quorums.PARAMS,
            quorums.check_params,
            quorums.obligations,
        ),
        LemmaProof(
            "clocks",
            "logical clocks' update rules for all integers: Lamport and HLC steps, HLC within ε of physical time",
            clocks.PARAMS,
            clocks.check_params,
            clocks.obligations,
            {name: Clocks.variants()[name].description for name in clocks.BROKEN},
        ),
        LemmaProof(
            "abd",
            "ABD's quorum argument at N servers: completed writes and reads are seen by every later quorum",
            abd.PARAMS,
            abd.check_params,
            abd.obligations,
            {name: Abd.variants()[name].description for name in abd.BROKEN},
        ),
        LemmaProof(
            "retry",
            "retries' deadline, budget, key and jitter bounds, for every base, cap, deadline and budget in range",
            retry.PARAMS,
            retry.check_params,
            retry.obligations,
            {name: RetryBackoff.variants()[name].description for name in retry.BROKEN},
        ),
    )
}


def find_target(name: str) -> Target:
    target = PROVABLE.get(name)
    if target is None:
        raise UsageError(f"nothing to prove called {name!r}; provable: {', '.join(PROVABLE)}")
    return target
