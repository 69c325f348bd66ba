"""impl/pbft: keys and messages refuse what they must, every Byzantine nemesis is
survived under faults, the broken variants are caught, a run's trace file
validates on its own, and a replica survives any message a hostile node sends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distcheck.checks.cli import main
from distcheck.checks.conformance.simulate import SimOptions, SimOutcome, simulate
from distcheck.checks.conformance.wiring.pbft import NEMESIS_ORDER, PbftWiring
from distcheck.impl import pbft
from distcheck.impl.pbft.messages import BODIES, Prepare, PrePrepare, Request, batch_digest, open_signed, sign
from distcheck.impl.runtime import Context, FaultPolicy, RandomChoices, Simulation
from distcheck.impl.runtime.actor import MessageError, encode
from distcheck.spec.pbft import Config, Pbft

ALL_FAULTS = FaultPolicy(crash=True, drop=True, duplicate=True, reorder=True, partition=True)
SPEC = Pbft(Config())
RING = pbft.local_keyring(["r1", "r2", "r3", "r4"])


def run(seed: int, nemesis: str, variant: str | None = None, *, trace: bool = True) -> SimOutcome:
    wiring = PbftWiring(nemeses=(nemesis,))
    options = SimOptions(seed, "random", ALL_FAULTS, wiring.default_steps, 3, variant, check_trace=trace)
    return simulate(SPEC, wiring, {"replicas": 4, "faulty": 1}, options)


# ------------------------------------------------------------------ keys


def test_a_signature_binds_the_body_the_signer_and_the_cluster() -> None:
    r1, r2 = RING.for_replica("r1"), RING.for_replica("r2")
    signed = sign(r1, Prepare("r1", 0, 1, "d"))
    assert open_signed(r2, signed, Prepare) == Prepare("r1", 0, 1, "d")
    tampered = {"body": {**signed["body"], "digest": "e"}, "sig": signed["sig"]}
    with pytest.raises(MessageError, match="not signed by 'r1'"):
        open_signed(r2, tampered)
    claimed = {"body": {**signed["body"], "sender": "r3"}, "sig": signed["sig"]}
    with pytest.raises(MessageError, match="not signed by 'r3'"):
        open_signed(r2, claimed)  # r1 cannot speak for r3
    other = pbft.local_keyring(["r1", "r2", "r3", "r4"], cluster="another")
    with pytest.raises(MessageError, match="not signed"):
        open_signed(other.for_replica("r2"), signed)  # nor in another cluster
    with pytest.raises(MessageError, match="expected a signed PrePrepare"):
        open_signed(r2, signed, PrePrepare)


def test_a_client_mac_checks_only_at_its_replica_and_a_replica_cannot_mac_as_a_client() -> None:
    c1 = RING.for_client("c1")
    body = {"client": "c1", "timestamp": 1, "op": pbft.put("x", 1)}
    auth = c1.authenticator(["r1", "r2"], body)
    assert RING.for_replica("r2").check_mac("c1", body, auth["r2"])
    assert not RING.for_replica("r2").check_mac("c1", body, auth["r1"])
    assert not RING.for_replica("r2").check_mac("c1", {**body, "timestamp": 2}, auth["r2"])
    assert not RING.for_replica("r2").check_mac("r1", body, auth["r2"])
    with pytest.raises(ValueError, match="is a replica's name"):
        RING.for_client("r1")


def test_bad_input_is_refused_with_one_clear_line() -> None:
    with pytest.raises(ValueError, match="at least 4 replicas"):
        pbft.cluster(3)
    with pytest.raises(ValueError, match="unknown variant 'typo'; allowed: commit_quorum_2f"):
        pbft.cluster(4, variant="typo")
    with pytest.raises(ValueError, match="tolerate 1 Byzantine ones, not 2"):
        pbft.cluster(4, byzantine={r: pbft.NEMESES["silent"]() for r in ("r1", "r2")})
    with pytest.raises(ValueError, match="unknown nemesis typo; allowed: equivocate"):
        PbftWiring(nemeses=("typo",))
    request = {"client": "c1", "timestamp": 1, "op": pbft.put("x", 1), "auth": {}}
    with pytest.raises(MessageError, match="the digest is not the batch's"):
        BODIES.decode(encode(PrePrepare("r1", 0, 1, "0" * 16, (request,))))
    with pytest.raises(MessageError, match="op must be a get, put or cas"):
        BODIES.decode(encode(PrePrepare("r1", 0, 1, "x", ({**request, "op": {"op": "incr"}},))))
    assert batch_digest(()) == "null"


def test_simulate_refuses_a_run_whose_quorums_are_not_the_specs(capsys: pytest.CaptureFixture[str]) -> None:
    """The spec's quorum is replicas - faulty, the implementation's 2f + 1: a run
    has f = (replicas - 1) // 3 Byzantine replicas, or none is run."""
    assert main(["simulate", "pbft", "--runs", "1", "-p", "faulty=0"]) == 2
    assert "faulty = (replicas - 1) // 3" in capsys.readouterr().err


# ------------------------------------------------------ nemeses and faults


@pytest.mark.parametrize("nemesis", NEMESIS_ORDER)
def test_every_byzantine_nemesis_is_survived_under_every_fault(nemesis: str) -> None:
    crashed = 0
    for seed in range(4):
        outcome = run(seed, nemesis)
        assert outcome.ok, f"seed {seed}: {outcome.message}\n{outcome.run.render(compact=True)}"
        assert outcome.run.trace.header["nemesis"] == nemesis
        assert outcome.validation.events > 0
        crashed += sum(1 for s in outcome.run.schedule if s.choice.kind == "crash")
    assert crashed > 0  # the faults were there: replicas crashed and came back


def test_the_nemeses_lie_and_are_caught_at_the_door() -> None:
    """The forger's messages are refused by signature, the silent primary is
    replaced: the run passes and shows why."""
    forged = run(0, "forge")
    assert forged.ok
    header = forged.run.trace.header
    assert header["forged"], "the forger's batch with a made-up request MAC is named as forged"
    silent = run(0, "silent")
    assert silent.ok
    views = [e["action"]["view"] for e in silent.run.trace.events if e["action"]["type"] == "NewView"]
    assert views and min(views) >= 1  # the silent primary of view 0 was replaced


@pytest.mark.parametrize("variant", pbft.VARIANTS)
def test_each_broken_variant_is_caught_by_the_trace(variant: str) -> None:
    """A replica that executes without a quorum of commits takes a step the spec's
    Execute does not allow: the first such event fails validation.  (With the
    silent primary, a replica that needs only 2f commits has them from the two
    other honest replicas before the third.)"""
    caught = [o for o in (run(seed, "silent", variant) for seed in range(4)) if not o.ok]
    assert caught, "four runs did not catch it"
    for outcome in caught:
        assert outcome.kind == "invalid_trace", outcome.message
        mismatch = outcome.validation.mismatch
        assert mismatch is not None and mismatch.event["action"]["type"] == "Execute"
        assert mismatch.rule == "Execute"


@pytest.mark.parametrize("variant", pbft.VARIANTS)
def test_each_broken_variant_breaks_agreement_when_the_trace_is_not_checked(variant: str) -> None:
    """The state checks alone catch it too: with the equivocating primary, two
    honest replicas execute different batches at one number (seed 31, found by
    trying seeds in order)."""
    wiring = PbftWiring()
    options = SimOptions(31, "random", ALL_FAULTS, wiring.default_steps, 3, variant, check_trace=False)
    outcome = simulate(SPEC, wiring, {"replicas": 4, "faulty": 1}, options)
    assert outcome.kind == "invariant"
    assert "Agreement violated at number" in outcome.message
    assert run(31, "equivocate", trace=False).ok  # the reference passes the same schedule


# ------------------------------------------------------------- trace files


def test_a_runs_trace_file_validates_on_its_own_and_a_tampered_one_does_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run.jsonl"
    assert main(["simulate", "pbft", "--runs", "1", "--faults", "drop,crash", "--trace-out", str(out)]) == 0
    capsys.readouterr()
    assert main(["validate", "pbft", str(out)]) == 0
    assert "explained" in capsys.readouterr().out
    lines = out.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["byzantine"] and "nemesis" in header
    # An honest replica executes at a number a batch committed at another number.
    events = [json.loads(line) for line in lines[2:]]
    executes = [e for e in events if e["action"]["type"] == "Execute"]
    first = executes[0]["action"]
    other = next(e["action"]["request"] for e in executes if e["action"]["seq"] != first["seq"])
    first["request"] = other
    lines[executes[0]["step"] + 1] = json.dumps(executes[0])
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(lines) + "\n")
    assert main(["validate", "pbft", str(tampered)]) == 1
    assert "Execute" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("low", "low must be a number of at least 0"),
        ("view", "not a trace of impl/pbft's events"),
        ("byzantine", "the header's byzantine messages are not spec/pbft messages"),
        ("huge", "a model too large to validate"),
    ],
)
def test_a_damaged_run_trace_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str, says: str
) -> None:
    out = tmp_path / "run.jsonl"
    assert main(["simulate", "pbft", "--runs", "1", "--trace-out", str(out)]) == 0
    lines = out.read_text().splitlines()
    header, event = json.loads(lines[0]), json.loads(lines[2])
    if damage == "low":
        event["low"] = "x"
    elif damage == "view":
        event["action"]["view"] = "x"
    elif damage == "huge":
        event["action"]["view"] = 10**5
    else:
        header["byzantine"] = [{"type": "MsgPrepare", "sender": "r1"}]
    lines[0], lines[2] = json.dumps(header), json.dumps(event)
    out.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["validate", "pbft", str(out)]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------- hostile input


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.dictionaries(
                st.sampled_from(["type", "body", "sig", "client", "op", "auth"]), st.integers() | st.text()
            ),
            st.builds(
                lambda body, sig: {"type": "Signed", "body": body, "sig": sig},
                st.fixed_dictionaries(
                    {"type": st.sampled_from(["PrePrepare", "Prepare", "Commit", "ViewChange", "NewView", "State"])},
                    optional={
                        "sender": st.sampled_from(["r1", "r2", "c1", ""]),
                        "view": st.integers(-1, 3),
                        "seq": st.integers(-1, 5),
                        "digest": st.text(max_size=4),
                        "batch": st.lists(st.dictionaries(st.text(max_size=3), st.integers()), max_size=2),
                    },
                ),
                st.text(max_size=8),
            ),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_a_replica_survives_whatever_a_hostile_node_sends(garbage: list[dict[str, Any]]) -> None:
    tuning = pbft.Tuning(max_batch=2, window=2, checkpoint_interval=2)
    system = pbft.cluster(4, {"c1": [pbft.put("x", 1), pbft.get("x")]}, tuning=tuning)

    def hostile(ctx: Context) -> None:
        for msg in garbage:
            for r in ("r1", "r2", "r3", "r4"):
                ctx.send(r, msg)

    nodes = {**system.nodes(), "mallory": hostile}
    done = system.clients[0]
    sim = Simulation(nodes, RandomChoices(0), max_steps=8000, until=lambda s: len(done.results) == len(done.ops))
    result = sim.run()
    assert result.status == "ok", result.message
    assert done.results == ["ok", 1]
    assert not sim.failures  # rejected, never a crash of the replica's code


def test_a_request_with_a_bad_mac_is_not_executed() -> None:
    """A client's request whose MAC does not check (a forgery) is refused at the
    replica, not executed: the store stays as the honest client left it."""
    system = pbft.cluster(4, {"c1": [pbft.put("x", 1)]})
    fake = Request("c1", 99, pbft.put("x", "forged"), {r: "00" * 32 for r in RING.replicas})

    def forger(ctx: Context) -> None:
        for r in RING.replicas:
            ctx.send(r, encode(fake))

    nodes = {**system.nodes(), "mallory": forger}
    sim = Simulation(nodes, RandomChoices(1), max_steps=6000, until=lambda s: bool(system.clients[0].results))
    assert sim.run().status == "ok"
    assert all(r.data.get("x") in (None, 1) for r in system.replicas)
    assert any("MAC" in d for r in system.replicas for d in r.diagnostics)


def test_a_byzantine_replica_cannot_fill_a_replicas_memory() -> None:
    """Votes far ahead in views or numbers are dropped, and one checkpoint and one
    view-change above its own view are kept per sender: what r1 (signing with its
    own key) floods r2 with leaves a handful of entries, and the clients finish."""
    tuning = pbft.Tuning(max_batch=2, window=2, checkpoint_interval=2)
    keys = RING.for_replica("r1")

    def flooder(ctx: Context) -> None:
        for k in range(1, 60):
            for body in (
                Prepare("r1", k, k, "d"),
                pbft.messages.Commit("r1", 0, 1000 + k, "d"),
                pbft.messages.Checkpoint("r1", 2 * k, f"{k:016x}"),
                pbft.messages.ViewChange("r1", k, 0, (), ()),
            ):
                ctx.send("r2", encode(pbft.messages.Signed(**sign(keys, body))))

    system = pbft.cluster(
        4, {"c1": [pbft.put("x", 1), pbft.get("x")]}, tuning=tuning, byzantine={"r1": lambda *a: flooder}
    )
    done = system.clients[0]
    sim = Simulation(system.nodes(), RandomChoices(2), max_steps=20000, until=lambda s: len(done.results) == 2)
    assert sim.run().status == "ok"
    r2 = next(r for r in system.replicas if r.name == "r2")
    assert not any(key[1] > 1000 for key in r2.commits)
    assert not any(key[0] > r2.view + 2 for key in r2.prepares)
    assert sum(1 for votes in r2.checkpoints.values() if "r1" in votes) <= 1
    assert sum(1 for v, vcs in r2.view_changes.items() if v > r2.view and "r1" in vcs) <= 1
