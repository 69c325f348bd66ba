"""ABD's quorum lemmas (``distcheck prove abd``): each holds at bounded numbers of
servers; each fails on the broken rule of the spec/abd.py variant it is about,
and its counterexample, replayed on that variant's own rules, really breaks the
claim; the lemmas' rules agree with the spec's steps; the command line proves
them and rejects bad parameters with exit code 2."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import pytest

from distcheck.checks.cli import main
from distcheck.checks.proofs.abd import BROKEN, check_params, obligations, step_mismatch
from distcheck.checks.proofs.crosscheck import bounded_successors
from distcheck.checks.proofs.obligations import FAILED, PROVED, Outcome, discharge
from distcheck.spec.abd import Abd, AbdAction, AbdState, Config, EndQuery, ReplyUpdate, Tag

LEMMAS = ["QuorumsIntersect", "CopiesGrow", "CompletedWriteVisible", "WriteTagAbove", "ReadReturnsVisible"]


def run(servers: int = 3, updates: int = 1, broken: str | None = None) -> dict[str, Outcome]:
    params = check_params({"servers": servers, "updates": updates})
    return {o.name: discharge(o) for o in obligations(params, broken=broken)}


def spec(variant: str | None = None, **params: int) -> Abd:
    cls = Abd.variants()[variant].cls if variant else Abd
    made = cls(Config(**params, variant=variant))
    assert isinstance(made, Abd)
    return made


# --------------------------------------------------------------------- the lemmas


@pytest.mark.parametrize(("servers", "updates"), [(1, 1), (2, 1), (3, 0), (3, 1), (4, 2), (5, 1), (7, 1), (25, 1)])
def test_every_lemma_holds(servers: int, updates: int) -> None:
    assert {name: o.verdict for name, o in run(servers, updates).items()} == dict.fromkeys(LEMMAS, PROVED)


@pytest.mark.parametrize("servers", [3, 4, 5])
@pytest.mark.parametrize(
    ("broken", "fails"),
    [
        ("small_quorums", {"QuorumsIntersect", "CompletedWriteVisible", "WriteTagAbove", "ReadReturnsVisible"}),
        ("overwrite_older", {"CopiesGrow", "CompletedWriteVisible", "WriteTagAbove", "ReadReturnsVisible"}),
        ("read_skips_write_back", {"ReadReturnsVisible"}),
    ],
)
def test_each_lemma_fails_exactly_on_the_mistakes_it_is_about(servers: int, broken: str, fails: set[str]) -> None:
    outcomes = run(servers, broken=broken)
    assert {name for name, o in outcomes.items() if o.verdict == FAILED} == fails
    assert {name for name, o in outcomes.items() if o.verdict == PROVED} == set(LEMMAS) - fails


def test_every_broken_rule_is_a_variant_of_the_spec() -> None:
    assert set(BROKEN) == set(Abd.variants())


# ------------------------------------------------ counterexamples, replayed on the spec


def counterexample(lemma: str, broken: str, servers: int = 3) -> tuple[dict[str, list[object]], dict[str, Tag]]:
    outcome = run(servers, broken=broken)[lemma]
    assert outcome.counterexample is not None
    values = outcome.counterexample.values
    return values["columns"], values["tags"]


def tags_of(column: Sequence[object]) -> list[Tag]:
    assert all(isinstance(t, Tag) for t in column)
    return [t for t in column if isinstance(t, Tag)]


def members(column: Sequence[object]) -> list[int]:
    return [i for i, inside in enumerate(column) if inside is True]


def take(variant: Abd, held: Tag, update: object) -> Tag:
    """A server's tag after ReplyUpdate, by the variant's own ``newer`` (None: no update)."""
    if update is None:
        return held
    assert isinstance(update, Tag)
    return update if variant.newer(update, held) else held


def highest(copies: Sequence[object], quorum: Sequence[int]) -> Tag:
    tags = [copies[i] for i in quorum]
    assert all(isinstance(t, Tag) for t in tags)
    return max(t for t in tags if isinstance(t, Tag))


def test_disjoint_small_quorums_are_quorums_of_the_variant() -> None:
    columns, _ = counterexample("QuorumsIntersect", "small_quorums", servers=4)
    q1, q2 = members(columns["Q1"]), members(columns["Q2"])
    assert not set(q1) & set(q2)
    assert min(len(q1), len(q2)) >= spec("small_quorums", servers=4).quorum == 2


@pytest.mark.parametrize("broken", ["small_quorums", "overwrite_older"])
def test_the_unseen_write_replays_on_the_variants_rules(broken: str) -> None:
    """Q1 acknowledges t by the variant's rule, the later updates go through it too,
    and Q2's highest answer is below t."""
    variant = spec(broken)
    columns, tags = counterexample("CompletedWriteVisible", broken)
    t, q1, q2 = tags["t"], members(columns["Q1"]), members(columns["Q2"])
    assert min(len(q1), len(q2)) >= variant.quorum

    def replay(rules: Abd) -> list[Tag]:
        copies = [take(rules, c, t) if i in q1 else c for i, c in enumerate(tags_of(columns["copy"]))]
        return [take(rules, c, u) for c, u in zip(copies, columns["update"])]

    assert highest(replay(variant), q2) == tags["highest of Q2"] < t
    # The same scenario under the reference rules: t survives in Q1 ∩ Q2 when they meet.
    if set(q1) & set(q2):
        assert highest(replay(spec()), q2) >= t


def test_a_new_write_can_be_tagged_below_a_completed_one_with_small_quorums() -> None:
    _, tags = counterexample("WriteTagAbove", "small_quorums")
    new = tags["the new write's tag"]
    assert new.number == tags["highest of Q2"].number + 1
    assert not new > tags["t"]


def test_the_new_old_inversion_replays_without_write_back() -> None:
    """R1 returns the highest answer of its quorum; with no write-back, R2's quorum,
    after the same updates, answers only older tags."""
    variant = spec("read_skips_write_back", readers=2)
    columns, tags = counterexample("ReadReturnsVisible", "read_skips_write_back")
    assert "Q1" not in columns  # no write-back quorum in the scenario
    t = highest(columns["copy"], members(columns["Q0"]))
    assert t == tags["R1 returns (t)"]
    copies = [take(variant, c, u) for c, u in zip(tags_of(columns["copy"]), columns["update"])]
    copies = [take(variant, c, u) for c, u in zip(copies, columns["update'"])]
    returned = highest(copies, members(columns["Q2"]))
    assert returned == tags["R2 returns"] < t


def test_counterexamples_print_one_row_per_server() -> None:
    outcome = run(3, broken="read_skips_write_back")["ReadReturnsVisible"]
    assert outcome.counterexample is not None
    text = outcome.counterexample.text
    assert text.startswith("3 servers, quorums of 2:")
    assert all(f"\n  {s} " in text for s in ("s1", "s2", "s3"))
    assert "new-old inversion" in text


# ------------------------------------------------- the lemmas' rules against the spec


def walk_steps(made: Abd, walks: int, length: int, seed: int) -> Iterator[tuple[AbdState, AbdAction, AbdState]]:
    """Every step enabled along seeded random walks of the spec (deterministic)."""
    rng = random.Random(seed)
    for _ in range(walks):
        state = next(iter(made.init_states()))
        for _ in range(length):
            successors = bounded_successors(made, state)
            if not successors:
                break
            for action, after in successors:
                yield state, action, after
            state = rng.choice(successors)[1]


@pytest.mark.parametrize(
    ("variant", "params"),
    [
        (None, {}),
        (None, {"writers": 2, "readers": 2, "servers": 4}),
        ("read_skips_write_back", {"readers": 2}),
        ("small_quorums", {"writers": 2, "servers": 4}),
        ("overwrite_older", {"writers": 2}),
    ],
)
def test_the_lemmas_rules_agree_with_the_spec_steps(variant: str | None, params: dict[str, int]) -> None:
    made = spec(variant, **params)
    checked = {ReplyUpdate: 0, EndQuery: 0}
    for before, action, after in walk_steps(made, walks=20, length=25, seed=7):
        assert step_mismatch(made, before, action, after) is None
        if type(action) in checked:
            checked[type(action)] += 1
    assert min(checked.values()) > 0


@pytest.mark.parametrize(
    ("steps_of", "judged_as", "params", "says"),
    [
        (None, "overwrite_older", {}, "store("),  # a refused older update, judged by "store every update"
        ("overwrite_older", None, {}, "store("),
        ("small_quorums", None, {}, "no quorum's highest answer"),  # a query ended on one answer
        ("read_skips_write_back", None, {"readers": 2}, "writes_back"),
        (None, "read_skips_write_back", {"readers": 2}, "writes_back"),
    ],
)
def test_the_cross_check_notices_a_rule_that_differs_from_the_spec(
    steps_of: str | None, judged_as: str | None, params: dict[str, int], says: str
) -> None:
    """Steps of one spec judged by the lemmas' rules of another: each mismatch is named."""
    stepping, judge = spec(steps_of, **params), spec(judged_as, **params)
    found = [step_mismatch(judge, *step) for step in walk_steps(stepping, walks=20, length=25, seed=7)]
    mismatches = [m for m in found if m is not None]
    assert mismatches and all(says in m for m in mismatches)


# ----------------------------------------------------------------- the command line


def test_prove_abd_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "abd", "-p", "servers=5"]) == 0
    assert "5 of 5 obligations proved" in capsys.readouterr().out
    # --variant states the lemmas with that variant's broken rule
    assert main(["prove", "abd", "--variant", "read_skips_write_back"]) == 1
    out = capsys.readouterr().out
    assert "new-old inversion" in out and "4 of 5 obligations proved" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "servers=0"], "parameter servers of abd must be between 1 and"),
        (["-p", "updates=-1"], "parameter updates of abd must be between 0 and"),
        (["-p", "n=3"], "unknown parameter 'n' for abd"),
        (["--invariant", "Linearizable"], "abd is a set of lemmas"),
        (["--variant", "nope"], "unknown variant 'nope' for abd; allowed: small_quorums"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "abd", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
