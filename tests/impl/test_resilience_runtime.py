"""impl/resilience on the project's runtime: a client node retries a call with the
library (clock ``ctx.now``, sleep ``ctx.sleep``) under the controlled scheduler,
which drops and duplicates messages; the deadline holds in virtual time, the
server applies the keyed call at most once, and a seed replays the same run."""

from __future__ import annotations

import random

from distcheck.impl.resilience import RetryError, Retrying
from distcheck.impl.runtime import Context, Envelope, FaultPolicy, RandomChoices, Simulation

DEADLINE = 6.0
ATTEMPT_TIMEOUT = 1.0


def run(seed: int) -> tuple[list[tuple[str, float, int]], dict[str, int]]:
    """One controlled run: the client's (outcome, elapsed, attempts), and how many
    requests the server took as successes, per key (it applies each key once)."""
    outcome: list[tuple[str, float, int]] = []
    succeeded: dict[str, int] = {}

    def server(ctx: Context) -> None:
        answered = 0
        while True:
            got = ctx.receive()
            if not isinstance(got, Envelope):
                continue
            key = got.msg["key"]
            answered += 1
            ok = answered > 2  # the first two requests fail (a 503), without effect
            if ok:
                succeeded[key] = succeeded.get(key, 0) + 1
            ctx.send(got.src, {"attempt": got.msg["attempt"], "ok": ok})

    def client(ctx: Context) -> None:
        policy = Retrying(
            base=0.5,
            cap=2.0,
            max_attempts=6,
            deadline=DEADLINE,
            attempt_timeout=ATTEMPT_TIMEOUT,
            idempotency_key="order-1",
            clock=ctx.now,
            sleep=ctx.sleep,
            rng=random.Random(seed),
        )
        start = ctx.now()
        number = 0
        try:
            for attempt in policy:
                with attempt:
                    number = attempt.number
                    ctx.send("server", {"key": attempt.idempotency_key, "attempt": attempt.number})
                    assert attempt.timeout is not None
                    until = ctx.now() + attempt.timeout
                    while True:
                        got = ctx.receive(timeout=max(0.0, until - ctx.now()))
                        if got is None:
                            raise TimeoutError
                        if isinstance(got, Envelope) and got.msg["attempt"] == attempt.number:
                            if not got.msg["ok"]:
                                raise ConnectionError("503")
                            break
            outcome.append(("ok", ctx.now() - start, number))
        except RetryError as error:
            outcome.append((error.reason, ctx.now() - start, error.attempts))

    sim = Simulation(
        {"server": server, "client": client},
        RandomChoices(seed, fault_rate=0.3),
        FaultPolicy(drop=True, duplicate=True, max_drops=3, max_duplicates=2),
        until=lambda _: bool(outcome),
    )
    result = sim.run()
    assert result.status in ("ok", "deadlock"), result.render()
    return outcome, succeeded


def test_retry_runs_on_the_controlled_scheduler_in_virtual_time() -> None:
    reasons = set()
    repeats = 0
    for seed in range(25):
        outcome, succeeded = run(seed)
        assert len(outcome) == 1, seed
        reason, elapsed, attempts = outcome[0]
        reasons.add(reason)
        assert elapsed <= DEADLINE + 1e-9, (seed, outcome)
        assert 1 <= attempts <= 6
        assert set(succeeded) <= {"order-1"}  # every attempt carried the call's one key
        repeats += sum(n > 1 for n in succeeded.values())
        assert run(seed) == (outcome, succeeded)  # the same seed, the same run
    assert "ok" in reasons and len(reasons) > 1, reasons
    # Some runs had a request succeed more than once (a lost answer, a duplicate):
    # without the key, the server would have applied the call twice there.
    assert repeats > 0
