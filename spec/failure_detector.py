"""Heartbeat failure detection: a timeout detector and a phi-accrual detector, over a
network that loses and delays heartbeats, among processes that crash.

Processes ``p1..pN`` join at time 0 and each sends a heartbeat to every other process
every ``interval`` ticks (at interval, 2 · interval, ...).  A heartbeat arrives 0 ..
``max_delay`` ticks after it is sent, or is lost (at most ``losses`` in all); a
process may crash (at most ``crashes`` of them) and then sends nothing more, though
heartbeats it sent before may still arrive.  Each process runs a failure detector
that keeps, for each peer, when it last heard from it, and suspects the peer when
the silence since then is too long; once it hears from a suspected peer it trusts
it again.  Two detectors, chosen by ``detector``:

- **timeout**: suspect q once ``timeout`` ticks have passed without a heartbeat from
  q.  With heartbeats every I ticks, each late by at most D, the silence between
  two arrivals is at most I + D, so a timeout above I + D never suspects a correct
  process whose heartbeats arrive; with j heartbeats lost in a row the silence
  reaches (j + 1) · I + D.
- **phi** (phi-accrual): keep the last ``window`` inter-arrival times from q; with
  their mean μ and standard deviation σ, phi(Δ) = −log10 P(the next heartbeat comes
  later than Δ after the last) under the normal distribution N(μ, σ²), and q is
  suspected when phi exceeds a threshold Φ.  P is decreasing in Δ, so phi(Δ) > Φ
  exactly when Δ > μ + z·σ, z being the normal quantile with tail 10^−Φ: this
  detector compares the silence with μ + z·σ for a whole z = ``sigmas`` (z = 1, 2, 3
  are Φ ≈ 0.80, 1.64, 2.87), in integers (``phi_suspects``).  As in Akka's detector
  σ is taken to be at least ``min_spread``, so that a window of equal times (σ = 0)
  does not make every late heartbeat a failure.

Sources: T. Chandra, S. Toueg, "Unreliable failure detectors for reliable
distributed systems" (JACM 1996: completeness and accuracy); N. Hayashibara, X.
Défago, R. Yared, T. Katayama, "The phi accrual failure detector" (SRDS 2004); W.
Chen, S. Toueg, M. Aguilera, "On the quality of service of failure detectors" (IEEE
TC 2002: detection time); Akka's PhiAccrualFailureDetector (min-std-deviation).

Abstractions.  Time is an integer ``now`` (0 .. ``max_time``) with a Tick step; what
is due at a tick is done at that tick, before the clock moves on: a heartbeat due is
sent, a heartbeat ``max_delay`` ticks old is received or lost, and a detector whose
verdict on a peer has changed suspects or trusts it (it checks at every tick).  Steps
due at one tick come in any order, so a heartbeat and a suspicion due together come
either way.  Processes join together at 0, so every detector starts as if it had
heard from every peer then, and phi's window starts full of ``interval`` (the
expected time, as Akka's first-heartbeat estimate).  A heartbeat to a crashed process
is not sent, and one in flight to a process that crashes is gone with it.

Completeness is an invariant with a detection time, not an ``Eventually``: time is
bounded, so a process that crashes just before ``max_time`` cannot be suspected by
then, and "eventually" would fail on that dead end.  The bounded form is the
stronger promise (suspected within a stated time) and is checked in every state.

State: ``now``; ``beat_at``, when each process last sent its heartbeats (0 at the
start); ``crashed_at``, each crashed process's crash time; ``detectors``, each
process's detector (per peer: when it last heard from it and, for phi, the window of
inter-arrival times; and whom it suspects); ``msgs``, the heartbeats in flight (each
with its send time); and two history variables: ``lost``, the heartbeats lost, and
``trusted_again``, the pairs (p, q) where p trusted q again after suspecting it.

Actions
    Tick                        The clock advances one tick (up to ``max_time``) when nothing is due.
    Beat(process)               Every ``interval`` ticks, a live process sends a heartbeat to every other live one.
    Receive(process, message)   A live process takes a heartbeat: its detector hears from the sender now.
    Lose(message)               The network loses a heartbeat in flight (at most ``losses`` in all).
    Suspect(process, peer)      The detector finds the silence from a peer it trusts too long, and suspects it.
    Trust(process, peer)        The detector finds a suspected peer's silence no longer too long, and trusts it.
    Crash(process)              A live process crashes (at most ``crashes`` of them).

Invariants
    TypeOK              every variable holds a value of its type.
    StrongCompleteness  a process that crashed more than ``detection_time`` ticks ago is suspected by every live
                        process: ``max_delay`` + ``timeout`` (timeout); ``max_delay`` + the longest silence phi
                        tolerates with any window its heartbeats can produce (phi).
    Accuracy            a live process is suspected by a live process only after more of the heartbeats between
                        them were lost than the timeout covers, max(0, (timeout − max_delay − 1) // interval − 1);
                        phi covers none.  It needs timeout > interval + max_delay (phi: sigmas · min_spread ≥
                        2 · max_delay is enough).

Reachable
    CrashedSuspectedByAll       a crashed process is suspected by every live process.
    FalseSuspicionCorrected     a live process was suspected (after a loss) and then trusted again.

Variants, each caught
    timeout_below_delay     the timeout is the heartbeat interval, with no room for delay      Accuracy
    forgets_crashed         a suspicion re-arms the peer's timer, so it is trusted again       StrongCompleteness
    shared_timer            one timer for every peer: any heartbeat resets it                 StrongCompleteness
    phi_without_min_spread  phi with σ = 0 allowed: equal arrivals make any delay a failure   Accuracy
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import attrs

from distcheck.spec.contract import Action, Exists, Invariant, Next, Reachable, Spec, param, rule, variant
from distcheck.spec.values import FrozenMap

TIMEOUT, PHI = "timeout", "phi"
DETECTORS = (TIMEOUT, PHI)

# ----------------------------------------------------------------------- values


@attrs.frozen
class Heartbeat:
    """A heartbeat in flight: from ``sender`` to ``to``, sent at time ``sent``."""

    sender: str
    to: str
    sent: int

    def __str__(self) -> str:
        return f"hb({self.sender}→{self.to}@{self.sent})"


@attrs.frozen
class Detector:
    """One process's failure detector: per peer, when it last heard from it and (phi)
    the last inter-arrival times, oldest first; and the peers it suspects."""

    heard: FrozenMap[str, int]
    windows: FrozenMap[str, tuple[int, ...]]  # phi only: empty for the timeout detector
    suspects: frozenset[str]

    def __str__(self) -> str:
        heard = ",".join(f"{q}@{t}" for q, t in sorted(self.heard.items()))
        windows = ",".join(f"{q}:{list(w)}" for q, w in sorted(self.windows.items()) if w)
        suspects = ",".join(sorted(self.suspects))
        return f"heard {heard}" + (f" window {windows}" if windows else "") + f" suspects {{{suspects}}}"


@attrs.frozen
class DetectorState:
    now: int
    beat_at: FrozenMap[str, int]  # when each process last sent its heartbeats
    crashed_at: FrozenMap[str, int]  # each crashed process's crash time
    detectors: FrozenMap[str, Detector]
    msgs: frozenset[Heartbeat]
    lost: frozenset[Heartbeat]  # every heartbeat lost (a history variable)
    trusted_again: frozenset[tuple[str, str]]  # (p, q): p trusted q after suspecting it (history)


# ---------------------------------------------------------------------- actions


class ProcessAction(Action):
    __slots__ = ()
    ACTOR = "process"


@attrs.frozen
class Tick(Action):
    ACTOR = "clock"


@attrs.frozen
class Beat(ProcessAction):
    process: str


@attrs.frozen
class Receive(ProcessAction):
    process: str
    message: Heartbeat


@attrs.frozen
class Lose(Action):
    ACTOR = "network"
    message: Heartbeat


@attrs.frozen
class Suspect(ProcessAction):
    process: str
    peer: str


@attrs.frozen
class Trust(ProcessAction):
    process: str
    peer: str


@attrs.frozen
class Crash(ProcessAction):
    process: str


DetectorAction = Tick | Beat | Receive | Lose | Suspect | Trust | Crash


@attrs.frozen
class Config:
    processes: int = param(2, help="processes p1, p2, ...", minimum=2, maximum=4)
    detector: str = param(TIMEOUT, help="timeout or phi")
    interval: int = param(2, help="ticks between a process's heartbeats", minimum=1, maximum=4)
    max_delay: int = param(1, help="a heartbeat arrives 0..max_delay ticks after it is sent", minimum=0, maximum=4)
    timeout: int = param(
        4, help="timeout detector: suspect after this many ticks without a heartbeat", minimum=1, maximum=12
    )
    window: int = param(2, help="phi detector: inter-arrival times kept per peer", minimum=1, maximum=4)
    sigmas: int = param(
        2,
        help="phi detector: suspect past mean + sigmas · spread (phi threshold 0.80, 1.64, 2.87 at 1, 2, 3)",
        minimum=0,
        maximum=5,
    )
    min_spread: int = param(1, help="phi detector: the least standard deviation it assumes", minimum=0, maximum=4)
    losses: int = param(1, help="bound: heartbeats lost, in all", minimum=0, maximum=3)
    crashes: int = param(1, help="bound: processes that crash", minimum=0, maximum=3)
    max_time: int = param(8, help="bound: time runs 0..max_time", minimum=1, maximum=12)
    variant: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {self.detector!r}")
        for f in attrs.fields(Config):
            minimum, maximum = f.metadata.get("minimum"), f.metadata.get("maximum")
            value = getattr(self, f.name)
            if minimum is not None and not minimum <= value <= maximum:
                raise ValueError(f"{f.name} must be between {minimum} and {maximum}, got {value}")
        if self.crashes >= self.processes:
            raise ValueError(f"crashes ({self.crashes}) must be below processes ({self.processes}): someone must watch")


def phi_suspects(window: Sequence[int], silence: int, sigmas: int, min_spread: int) -> bool:
    """Phi above its threshold, in integers: the silence exceeds the window's mean by
    more than ``sigmas`` standard deviations, the deviation being at least ``min_spread``.

    With n, S, Q the window's size, sum and sum of squares, μ = S/n and σ² = (n·Q −
    S²)/n², so Δ > μ + z·σ is n·Δ − S > z·√(n·Q − S²): both sides squared, as below.
    """
    n, total, squares = len(window), sum(window), sum(x * x for x in window)
    excess = n * silence - total
    variance_n2 = max(n * squares - total * total, (n * min_spread) ** 2)  # n² · max(σ, min_spread)²
    return excess > 0 and excess * excess > sigmas * sigmas * variance_n2


def phi_deadline(window: Sequence[int], sigmas: int, min_spread: int) -> int:
    """The shortest silence the phi detector suspects, with this window."""
    silence = 0
    while not phi_suspects(window, silence, sigmas, min_spread):
        silence += 1
    return silence


# ------------------------------------------------------------------------- spec


class FailureDetector(Spec[DetectorState, DetectorAction]):
    name = "failure_detector"
    config: Config

    def __init__(self, config: Config = Config()) -> None:
        self.config = config
        self.processes = tuple(f"p{i}" for i in range(1, config.processes + 1))
        self.peers = {p: tuple(q for q in self.processes if q != p) for p in self.processes}
        # Both are read in every state's invariants; phi's detection time is a search over windows.
        self.detection_limit = self.detection_time()
        self.losses_covered = self.absorbed()

    def init_states(self) -> Iterable[DetectorState]:
        start = (self.config.interval,) * self.config.window if self.config.detector == PHI else ()
        yield DetectorState(
            now=0,
            beat_at=FrozenMap({p: 0 for p in self.processes}),
            crashed_at=FrozenMap(),
            detectors=FrozenMap(
                {
                    p: Detector(
                        heard=FrozenMap({q: 0 for q in self.peers[p]}),
                        windows=FrozenMap({q: start for q in self.peers[p]}),
                        suspects=frozenset(),
                    )
                    for p in self.processes
                }
            ),
            msgs=frozenset(),
            lost=frozenset(),
            trusted_again=frozenset(),
        )

    def next(self) -> Next:
        return (
            self.tick,
            Exists(
                "process",
                self.processes,
                self.beat,
                Exists("message", self.inbox, self.receive),
                Exists("peer", self.peers_of, self.suspect, self.trust),
                self.crash,
            ),
            Exists("message", self.in_flight, self.lose),
        )

    # ------------------------------------------------------------ helpers

    def inbox(self, s: DetectorState, process: str) -> list[Heartbeat]:
        return sorted((m for m in s.msgs if m.to == process), key=lambda m: (m.sender, m.sent))

    def in_flight(self, s: DetectorState) -> list[Heartbeat]:
        return sorted(s.msgs, key=lambda m: (m.sender, m.to, m.sent))

    def peers_of(self, s: DetectorState, process: str) -> tuple[str, ...]:
        return self.peers[process]

    def up(self, s: DetectorState, process: str) -> bool:
        return process not in s.crashed_at

    def timeout_ticks(self) -> int:
        """The timeout detector's silence limit."""
        return self.config.timeout

    def spread_floor(self) -> int:
        """The least standard deviation the phi detector assumes."""
        return self.config.min_spread

    def suspicious(self, s: DetectorState, process: str, peer: str) -> bool:
        """The detector's verdict: the silence from ``peer`` is too long."""
        detector = s.detectors[process]
        silence = s.now - detector.heard[peer]
        if self.config.detector == TIMEOUT:
            return silence >= self.timeout_ticks()
        return phi_suspects(detector.windows[peer], silence, self.config.sigmas, self.spread_floor())

    def beat_due(self, s: DetectorState, process: str) -> bool:
        return self.up(s, process) and s.now >= s.beat_at[process] + self.config.interval

    def verdict_due(self, s: DetectorState, process: str, peer: str) -> bool:
        """The detector's suspect list disagrees with its verdict on ``peer``."""
        return self.up(s, process) and (peer in s.detectors[process].suspects) != self.suspicious(s, process, peer)

    def nothing_due(self, s: DetectorState) -> bool:
        """No heartbeat is due, none is ``max_delay`` ticks old, and no verdict is due."""
        if any(self.beat_due(s, p) for p in self.processes):
            return False
        if any(s.now - m.sent >= self.config.max_delay for m in s.msgs):
            return False
        return not any(self.verdict_due(s, p, q) for p in self.processes for q in self.peers[p])

    def hear(self, s: DetectorState, process: str, sender: str) -> Detector:
        """The receiver's detector after it hears from ``sender`` now: phi records the
        inter-arrival time in its window, dropping the oldest."""
        detector = s.detectors[process]
        windows = detector.windows
        if self.config.detector == PHI:
            sample = s.now - detector.heard[sender]
            windows = windows.set(sender, (*windows[sender], sample)[-self.config.window :])
        return attrs.evolve(detector, heard=detector.heard.set(sender, s.now), windows=windows)

    def set_suspects(self, s: DetectorState, process: str, suspects: frozenset[str]) -> DetectorState:
        detector = attrs.evolve(s.detectors[process], suspects=suspects)
        return attrs.evolve(s, detectors=s.detectors.set(process, detector))

    # ------------------------------------------------------- derived bounds

    def detection_time(self) -> int:
        """How long after a crash every live process suspects the crashed one: its last
        heartbeat arrives within ``max_delay``, then the detector's longest tolerated
        silence passes (phi: over every window of inter-arrival times its heartbeats
        can produce, each between interval − max_delay and (losses + 1) · interval +
        max_delay)."""
        c = self.config
        if c.detector == TIMEOUT:
            return c.max_delay + self.timeout_ticks()
        samples = range(max(0, c.interval - c.max_delay), (c.losses + 1) * c.interval + c.max_delay + 1)
        windows = itertools.combinations_with_replacement(samples, c.window)
        return c.max_delay + max(phi_deadline(w, c.sigmas, self.spread_floor()) for w in windows)

    def absorbed(self) -> int:
        """The heartbeats lost in a row the timeout covers: with j lost, the silence
        between arrivals is at most (j + 1) · interval + max_delay.  Phi promises
        nothing after a loss (how much its window tolerates depends on its history)."""
        c = self.config
        if c.detector == PHI:
            return 0
        return max(0, (c.timeout - c.max_delay - 1) // c.interval - 1)

    # -------------------------------------------------------------- rules

    @rule(Tick)
    def tick(self, s: DetectorState) -> DetectorState | None:
        """The clock advances one tick, up to max_time, once nothing is due at this one."""
        if s.now >= self.config.max_time or not self.nothing_due(s):
            return None
        return attrs.evolve(s, now=s.now + 1)

    @rule(Beat)
    def beat(self, s: DetectorState, process: str) -> DetectorState | None:
        """A live process, ``interval`` ticks after its last heartbeats, sends one to every other live process."""
        if not self.beat_due(s, process):
            return None
        sent = {Heartbeat(process, q, s.now) for q in self.peers[process] if self.up(s, q)}
        return attrs.evolve(s, beat_at=s.beat_at.set(process, s.now), msgs=s.msgs | sent)

    @rule(Receive)
    def receive(self, s: DetectorState, process: str, message: Heartbeat) -> DetectorState | None:
        """A live process takes a heartbeat in flight to it: its detector hears from the sender now."""
        if message not in s.msgs or message.to != process or not self.up(s, process):
            return None
        return attrs.evolve(
            s,
            msgs=s.msgs - {message},
            detectors=s.detectors.set(process, self.hear(s, process, message.sender)),
        )

    @rule(Lose)
    def lose(self, s: DetectorState, message: Heartbeat) -> DetectorState | None:
        """The network loses a heartbeat in flight, while fewer than ``losses`` have been lost."""
        if message not in s.msgs or len(s.lost) >= self.config.losses:
            return None
        return attrs.evolve(s, msgs=s.msgs - {message}, lost=s.lost | {message})

    @rule(Suspect)
    def suspect(self, s: DetectorState, process: str, peer: str) -> DetectorState | None:
        """A live process's detector finds the silence from a peer it trusts too long, and suspects it."""
        if not self.up(s, process) or peer in s.detectors[process].suspects or not self.suspicious(s, process, peer):
            return None
        return self.set_suspects(s, process, s.detectors[process].suspects | {peer})

    @rule(Trust)
    def trust(self, s: DetectorState, process: str, peer: str) -> DetectorState | None:
        """A live process's detector no longer finds the silence from a suspected peer too
        long (it heard from it), and trusts it again."""
        if not self.up(s, process) or peer not in s.detectors[process].suspects or self.suspicious(s, process, peer):
            return None
        s = self.set_suspects(s, process, s.detectors[process].suspects - {peer})
        return attrs.evolve(s, trusted_again=s.trusted_again | {(process, peer)})

    @rule(Crash)
    def crash(self, s: DetectorState, process: str) -> DetectorState | None:
        """A live process crashes, while fewer than ``crashes`` have: it sends nothing more,
        and the heartbeats in flight to it are gone."""
        if not self.up(s, process) or len(s.crashed_at) >= self.config.crashes:
            return None
        return attrs.evolve(
            s,
            crashed_at=s.crashed_at.set(process, s.now),
            msgs=frozenset(m for m in s.msgs if m.to != process),
        )

    # ========================================================== properties

    def invariants(self) -> Sequence[Invariant[DetectorState]]:
        return (
            Invariant("TypeOK", "every variable holds a value of its type", self._type_ok),
            Invariant(
                "StrongCompleteness",
                f"every process that crashed more than {self.detection_limit} ticks ago (the detection time) "
                "is suspected by every live process",
                self._complete,
            ),
            Invariant(
                "Accuracy",
                f"a live process is suspected by a live process only after more than {self.losses_covered} "
                "of the heartbeats between them were lost (what the timeout covers)",
                self._accurate,
            ),
        )

    def _type_ok(self, s: DetectorState) -> bool:
        c = self.config
        width = c.window if c.detector == PHI else 0
        return (
            0 <= s.now <= c.max_time
            and set(s.beat_at) == set(self.processes)
            and all(t % c.interval == 0 and 0 <= t <= s.now for t in s.beat_at.values())
            and set(s.crashed_at) <= set(self.processes)
            and len(s.crashed_at) <= c.crashes
            and all(0 <= t <= s.now for t in s.crashed_at.values())
            and set(s.detectors) == set(self.processes)
            and all(
                set(d.heard) == set(self.peers[p])
                and all(0 <= t <= s.now for t in d.heard.values())
                and set(d.windows) == set(self.peers[p])
                and all(len(w) == width and all(x >= 0 for x in w) for w in d.windows.values())
                and d.suspects <= set(self.peers[p])
                for p, d in s.detectors.items()
            )
            and all(
                m.sender in self.processes and m.to in self.peers[m.sender] and 0 <= s.now - m.sent <= c.max_delay
                for m in s.msgs
            )
            and len(s.lost) <= c.losses
        )

    def _complete(self, s: DetectorState) -> bool:
        late = [q for q, t in s.crashed_at.items() if s.now > t + self.detection_limit]
        return all(q in s.detectors[p].suspects for p in self.processes if self.up(s, p) for q in late)

    def _accurate(self, s: DetectorState) -> bool:
        absorbed = self.losses_covered
        for p in self.processes:
            if not self.up(s, p):
                continue
            for q in s.detectors[p].suspects:
                if self.up(s, q) and sum(1 for m in s.lost if m.sender == q and m.to == p) <= absorbed:
                    return False
        return True

    def reachable(self) -> Sequence[Reachable[DetectorState]]:
        return (
            Reachable(
                "CrashedSuspectedByAll",
                "a crashed process is suspected by every live process",
                lambda s: any(
                    all(q in s.detectors[p].suspects for p in self.processes if self.up(s, p)) for q in s.crashed_at
                ),
            ),
            Reachable(
                "FalseSuspicionCorrected",
                "a live process was suspected after a loss, then trusted again",
                lambda s: any(self.up(s, p) and self.up(s, q) for p, q in s.trusted_again),
            ),
        )


# ------------------------------------------------------------------------ variants


@variant("timeout_below_delay", "the timeout is the heartbeat interval, leaving no room for a heartbeat's delay")
class TimeoutBelowDelay(FailureDetector):
    def timeout_ticks(self) -> int:
        """The detector expects each heartbeat exactly on schedule."""
        return self.config.interval


@variant(
    "forgets_crashed",
    "raising a suspicion re-arms the peer's timer, as a watchdog restarted when it fires: the peer is trusted again",
)
class ForgetsCrashed(FailureDetector):
    def suspect(self, s: DetectorState, process: str, peer: str) -> DetectorState | None:
        """The detector suspects the peer and restarts its timer, so its silence counts from now."""
        t = super().suspect(s, process, peer)
        if t is None:
            return None
        detector = t.detectors[process]
        return attrs.evolve(
            t, detectors=t.detectors.set(process, attrs.evolve(detector, heard=detector.heard.set(peer, t.now)))
        )


@variant(
    "shared_timer",
    "one timer for every peer: a heartbeat from anyone resets it, so a crashed peer is not suspected",
    params={"processes": 3},  # one timer shared needs two peers to watch
)
class SharedTimer(FailureDetector):
    def hear(self, s: DetectorState, process: str, sender: str) -> Detector:
        """Any heartbeat counts as hearing from every peer."""
        detector = super().hear(s, process, sender)
        return attrs.evolve(detector, heard=FrozenMap({q: s.now for q in detector.heard}))


@variant(
    "phi_without_min_spread",
    "phi with no least deviation: after equal inter-arrival times (σ = 0) any late heartbeat is a failure",
    params={"detector": PHI},
)
class PhiWithoutMinSpread(FailureDetector):
    def spread_floor(self) -> int:
        """The window's own deviation, however small."""
        return 0
