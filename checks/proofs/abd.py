"""ABD's quorum-intersection argument (``spec/abd.py``), proved by z3 at a bounded number of servers.

Where it sits: in ``checks/proofs``, registered as the provable target ``abd``
(``distcheck prove abd -p servers=N``).  Like ``quorums`` and ``clocks``, a set of
lemmas rather than an induction over the bounded spec: each is a claim about a
few steps of the protocol, for every tag (numbers and writers unbounded), every
choice of quorums of the N servers and every copy each server holds, which is
what exploring ``spec/abd.py`` (one or two clients of each kind, small tags)
cannot give.  The linearizability argument built on them is on paper, in
``docs/proofs.md``.

The lemmas, t being the tag of a completed operation (a write's update, or a
read's write-back, acknowledged by a quorum Q1):

- **QuorumsIntersect**: any two quorums of ⌊N/2⌋+1 servers share a server.
- **CopiesGrow**: a server that takes an update holds a tag at least the update's
  and at least the one it held: copies only grow (for all tags).
- **CompletedWriteVisible**: after Q1 acknowledged t, and each server took up to
  ``updates`` further updates of any tags (delayed messages included), the highest
  answer of any quorum Q2's query is at least t.
- **WriteTagAbove**: the tag a writer then picks, (highest number + 1, its id), is
  above t: a write that starts after an operation completed gets a higher tag.
- **ReadReturnsVisible**: a read R1 takes the highest answer t of its query
  quorum and writes it back to a quorum before returning it; after further
  updates, a read R2 returns (the highest answer of its own query quorum) a tag at
  least t: reads that do not overlap never go back, no new-old inversion.

Each lemma is checked by asking z3 for a counterexample: the steps as formulas
(``store``, ``Scenario.highest``, ``write_tag``, ``writes_back``: the rules of
``spec/abd.py``, which ``step_mismatch`` compares with the spec's own steps, in
the tests) and the negated claim; none means it holds for this N and this many
updates.  Tags are pairs of unbounded integers (number, writer) ordered
as the spec's ``Tag``; writer 0 is the initial tag's empty writer.  ``broken``
names a variant of ``spec/abd.py`` whose rule replaces the reference one, for the
tests to show each lemma fails on the mistake it is about:

- ``small_quorums``: quorums of max(1, ⌊N/2⌋) servers;
- ``overwrite_older``: a server stores every update, older ones too;
- ``read_skips_write_back``: a read returns after its query.

A counterexample prints as a table, one row per server: its copy at each moment
of the scenario and whether it is in each quorum.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import z3

from distcheck.checks.proofs.obligations import (
    DEFAULT_TIMEOUT_SECONDS,
    FAILED,
    PROVED,
    UNKNOWN,
    Counterexample,
    Obligation,
    Verdict,
    find_model,
)
from distcheck.spec.abd import (
    QUERY,
    UPDATE,
    Abd,
    AbdAction,
    AbdState,
    EndQuery,
    MsgQueryReply,
    MsgUpdate,
    ReplyUpdate,
    Tag,
)
from distcheck.spec.registry import ParamInfo

MAX_SERVERS = 101
MAX_UPDATES = 10

PARAMS = (
    ParamInfo("servers", 3, int, "servers s1, s2, ...; quorums of servers // 2 + 1", 1, MAX_SERVERS),
    ParamInfo(
        "updates", 1, int, "updates each server may take between one quorum's phase and the next", 0, MAX_UPDATES
    ),
)

#: the rules a test may swap in (``spec/abd.py``'s variants)
BROKEN = ("small_quorums", "overwrite_older", "read_skips_write_back")


def check_params(values: Mapping[str, Any]) -> dict[str, int]:
    """The parameters with defaults filled in (each one's range is checked against
    ``PARAMS`` before)."""
    return {"servers": int(values.get("servers", 3)), "updates": int(values.get("updates", 1))}


def server_names(n: int) -> tuple[str, ...]:
    return tuple(f"s{i}" for i in range(1, n + 1))


# ------------------------------------------------------------------------- tags


@attrs.frozen
class SymTag:
    """A tag as two z3 integers: ordered by ``number``, then ``writer`` (0 for the
    initial tag's empty writer, i for wi)."""

    number: z3.ArithRef
    writer: z3.ArithRef

    def __gt__(self, other: SymTag) -> z3.BoolRef:
        return z3.Or(self.number > other.number, z3.And(self.number == other.number, self.writer > other.writer))

    def __ge__(self, other: SymTag) -> z3.BoolRef:
        return z3.Not(other > self)

    def same(self, other: SymTag) -> z3.BoolRef:
        return z3.And(self.number == other.number, self.writer == other.writer)


def tag_variable(name: str) -> SymTag:
    return SymTag(z3.Int(f"{name}.number"), z3.Int(f"{name}.writer"))


def small(tag: SymTag) -> list[z3.BoolRef]:
    """Soft constraints that keep a counterexample's tags small (1.w1, not 26786.w1)."""
    return [bound for k in (0, 1, 2) for bound in (tag.number <= k, tag.writer <= k)]


def well_formed(tag: SymTag) -> z3.BoolRef:
    """A tag the spec can hold: the initial (0, "") or a write's (number ≥ 1, some wi)."""
    return z3.Or(
        z3.And(tag.number == 0, tag.writer == 0),
        z3.And(tag.number >= 1, tag.writer >= 1),
    )


def choose(condition: z3.BoolRef, then: SymTag, otherwise: SymTag) -> SymTag:
    return SymTag(z3.If(condition, then.number, otherwise.number), z3.If(condition, then.writer, otherwise.writer))


def tag_text(number: int, writer: int) -> str:
    """As ``spec.abd.Tag`` prints: ``1.w2``, ``0.-``."""
    return f"{number}.{'w' + str(writer) if writer else '-'}"


# ------------------------------------------------------------------------ rules


def quorum_size(n: int, broken: str | None = None) -> int:
    """``Abd.quorum``: a majority; ``small_quorums``' half."""
    return max(1, n // 2) if broken == "small_quorums" else n // 2 + 1


def store(held: SymTag, update: SymTag, broken: str | None = None) -> SymTag:
    """A server's copy after ``ReplyUpdate``: the update if its tag is higher
    (``Abd.newer``); every update with ``overwrite_older``."""
    if broken == "overwrite_older":
        return update
    return choose(update > held, update, held)


def write_tag(highest: SymTag, writer: z3.ArithRef) -> SymTag:
    """The tag ``EndQuery`` gives a writer's value: one number above the highest answer."""
    return SymTag(highest.number + 1, writer)


def writes_back(broken: str | None = None) -> bool:
    """``Abd.writes_back``: a read writes back before it returns."""
    return broken != "read_skips_write_back"


# -------------------------------------------------------------------- scenarios


class Scenario:
    """The variables of one lemma's scenario over servers s1..sN and the facts
    that tie them, with what the counterexample table shows: one column per
    moment (each server's copy) or quorum (membership), and named single tags."""

    def __init__(self, n: int, broken: str | None) -> None:
        self.servers = server_names(n)
        self.broken = broken
        self.facts: list[z3.BoolRef] = []
        self.columns: list[tuple[str, list[SymTag] | list[z3.BoolRef]]] = []
        self.quorums: list[tuple[str, str, list[z3.BoolRef]]] = []
        self.singles: list[tuple[str, SymTag]] = []
        self.prefer: list[z3.BoolRef] = []
        self.count = 0

    def fresh(self, label: str) -> str:
        self.count += 1
        return f"{label}#{self.count}"

    def tag(self, label: str) -> SymTag:
        """A single tag, any the spec can hold."""
        tag = tag_variable(self.fresh(label))
        self.facts.append(well_formed(tag))
        self.prefer += small(tag)
        self.singles.append((label, tag))
        return tag

    def copies(self, label: str) -> list[SymTag]:
        """Each server's copy at some moment: any tags at all."""
        name = self.fresh(label)
        tags = [tag_variable(f"{name}[{s}]") for s in self.servers]
        self.facts += [well_formed(t) for t in tags]
        self.prefer += [bound for t in tags for bound in small(t)]
        self.columns.append((label, tags))
        return tags

    def quorum(self, label: str, role: str) -> list[z3.BoolRef]:
        """Some quorum of the servers; ``role`` says what it is in the scenario."""
        name = self.fresh(label)
        members = [z3.Bool(f"{name}[{s}]") for s in self.servers]
        self.facts.append(z3.AtLeast(*members, quorum_size(len(self.servers), self.broken)))
        self.prefer += [z3.Not(m) for m in members]
        self.quorums.append((label, role, members))
        self.columns.append((label, members))
        return members

    def highest(self, label: str, copies: Sequence[SymTag], members: Sequence[z3.BoolRef]) -> SymTag:
        """The highest of one answer from each member of a quorum (each answer the
        member's copy when it answers): the ``highest`` of ``EndQuery``."""
        tag = self.tag(label)
        self.facts.append(z3.Or(*(z3.And(m, tag.same(c)) for m, c in zip(members, copies))))
        self.facts += [z3.Implies(m, tag >= c) for m, c in zip(members, copies)]
        return tag

    def acknowledge(
        self, label: str, role: str, copies: Sequence[SymTag], update: SymTag
    ) -> tuple[list[z3.BoolRef], list[SymTag]]:
        """An update phase that returns: a quorum took ``update`` (``ReplyUpdate``)
        and acknowledged it; the other servers have not yet."""
        members = self.quorum(label, role)
        after = [choose(m, store(c, update, self.broken), c) for m, c in zip(members, copies)]
        self.columns.append((f"after {label}", after))
        return members, after

    def later_updates(self, label: str, copies: Sequence[SymTag], updates: int) -> list[SymTag]:
        """Each server takes up to ``updates`` updates of any tags: other clients'
        operations, or messages delayed since any earlier one."""
        current = list(copies)
        for _ in range(updates):
            name = self.fresh(label)
            taken = [z3.Bool(f"{name}.taken[{s}]") for s in self.servers]
            tags = [tag_variable(f"{name}[{s}]") for s in self.servers]
            self.facts += [well_formed(t) for t in tags]
            self.prefer += [z3.Not(x) for x in taken] + [bound for t in tags for bound in small(t)]
            current = [choose(x, store(c, u, self.broken), c) for x, u, c in zip(taken, tags, current)]
            self.columns.append((label, [choose(x, u, _NO_UPDATE) for x, u in zip(taken, tags)]))
        if updates:
            self.columns.append((f"after {label}", current))
        return current

    def symmetry(self) -> list[z3.BoolRef]:
        """Servers are interchangeable (every fact is stated alike for each), so if
        a counterexample exists, one exists whose quorum memberships, read as a
        binary number per server, never increase from s1 to sN: sort its servers."""
        weights = [2**i for i in range(len(self.quorums))]
        signature = [
            z3.Sum(*(z3.If(members[i], weight, 0) for (_, _, members), weight in zip(self.quorums, weights)))
            for i in range(len(self.servers))
        ]
        return [signature[i] >= signature[i + 1] for i in range(len(signature) - 1)]


#: shown where a server took no update (tags are never negative)
_NO_UPDATE = SymTag(z3.IntVal(-1), z3.IntVal(-1))


def _prove(n: int, broken: str | None, build: Callable[[Scenario], tuple[z3.BoolRef, str]], timeout: float) -> Verdict:
    """Look for a scenario of ``build`` in which its claim is false.  ``build``
    states the scenario and returns the claim and the line that says, in the
    counterexample, how the claim fails."""
    scenario = Scenario(n, broken)
    claim, failure = build(scenario)
    constraints = [*scenario.facts, *scenario.symmetry(), z3.Not(claim)]
    status, model, reason = find_model(constraints, prefer=scenario.prefer, timeout=timeout)
    if status == "unsat":
        return Verdict(PROVED)
    if model is None:
        return Verdict(UNKNOWN, detail=f"z3 gave up: {reason or 'unknown'}")
    return Verdict(FAILED, _counterexample(scenario, model, failure))


def _value(model: z3.ModelRef, x: z3.ExprRef) -> int:
    value = model.eval(x, model_completion=True)
    assert isinstance(value, z3.IntNumRef)  # every tag component is an integer term
    return int(value.as_long())


def _counterexample(scenario: Scenario, model: z3.ModelRef, failure: str) -> Counterexample:
    """The model as a table, one row per server; ``values`` keeps each cell as a
    spec ``Tag`` (None where a server took no update) or a membership bool, for
    tests to replay the scenario on the spec's own rules."""

    def tag_of(tag: SymTag) -> Tag | None:
        number, writer = _value(model, tag.number), _value(model, tag.writer)
        return None if number < 0 else Tag(number, f"w{writer}" if writer else "")

    def value_of(x: SymTag | z3.BoolRef) -> Tag | bool | None:
        if isinstance(x, SymTag):
            return tag_of(x)
        return bool(z3.is_true(model.eval(x, model_completion=True)))

    def text(value: Tag | bool | None) -> str:
        if value is None:
            return "–"
        if isinstance(value, bool):
            return "✓" if value else ""
        return str(value)

    servers = scenario.servers
    column_values = {label: [value_of(x) for x in cells] for label, cells in scenario.columns}
    columns = {label: [text(v) for v in cells] for label, cells in column_values.items()}
    quorums = {
        label: [s for s, m in zip(servers, members) if z3.is_true(model.eval(m, model_completion=True))]
        for label, _, members in scenario.quorums
    }
    tag_values = {label: tag_of(tag) for label, tag in scenario.singles}
    singles = {label: text(tag) for label, tag in tag_values.items()}
    lines = []
    if columns:
        size = quorum_size(len(servers), scenario.broken)
        lines.append(f"{len(servers)} servers, quorums of {size}:")
        for label, role, _ in scenario.quorums:
            lines.append(f"  {label} = {{{', '.join(quorums[label])}}}".ljust(24) + f"  {role}")
        header = ["server", *columns]
        rows = [[s, *(column[i] for column in columns.values())] for i, s in enumerate(servers)]
        widths = [max(len(row[j]) for row in (header, *rows)) for j in range(len(header))]
        for row in (header, *rows):
            lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    indent = "  " if columns else ""
    lines += [f"{indent}{label} = {text}" for label, text in singles.items()]
    lines.append(f"{indent}{failure}")
    data: dict[str, Any] = {"servers": list(servers), "quorums": quorums, "columns": columns, "tags": singles}
    return Counterexample("\n".join(lines), data, {"columns": column_values, "tags": tag_values})


# ----------------------------------------------------------------------- lemmas


def obligations(
    params: Mapping[str, int], *, timeout: float = DEFAULT_TIMEOUT_SECONDS, broken: str | None = None
) -> list[Obligation]:
    n, updates = params["servers"], params["updates"]
    size = quorum_size(n, broken)

    def quorums_intersect(sc: Scenario) -> tuple[z3.BoolRef, str]:
        first, second = sc.quorum("Q1", "one quorum"), sc.quorum("Q2", "another")
        return z3.Or(*(z3.And(a, b) for a, b in zip(first, second))), "Q1 and Q2 share no server"

    def copies_grow(sc: Scenario) -> tuple[z3.BoolRef, str]:
        held, update = sc.tag("held"), sc.tag("update")
        after = store(held, update, broken)
        sc.singles.append(("after ReplyUpdate", after))
        return z3.And(after >= held, after >= update), "the copy after the update is below the one held, or the update"

    def completed(sc: Scenario) -> tuple[SymTag, list[SymTag]]:
        """An operation with tag t completes on Q1, then servers take later updates."""
        before = sc.copies("copy")
        t = sc.tag("t")
        _, acknowledged = sc.acknowledge("Q1", "acknowledged t: the operation completed", before, t)
        return t, sc.later_updates("update", acknowledged, updates)

    def write_visible(sc: Scenario) -> tuple[z3.BoolRef, str]:
        t, later = completed(sc)
        highest = sc.highest("highest of Q2", later, sc.quorum("Q2", "a later query's quorum"))
        return highest >= t, "the highest answer of Q2 is below t: a completed operation is not seen"

    def write_tag_above(sc: Scenario) -> tuple[z3.BoolRef, str]:
        t, later = completed(sc)
        highest = sc.highest("highest of Q2", later, sc.quorum("Q2", "the new write's query quorum"))
        writer = z3.Int("writer")
        sc.facts.append(writer >= 1)
        tag = write_tag(highest, writer)
        sc.singles.append(("the new write's tag", tag))
        return tag > t, "the new write's tag is not above t: it would be ordered before a write that completed first"

    def read_visible(sc: Scenario) -> tuple[z3.BoolRef, str]:
        at_query = sc.copies("copy")
        t = sc.highest("R1 returns (t)", at_query, sc.quorum("Q0", "R1's query quorum"))
        copies = sc.later_updates("update", at_query, updates)
        if writes_back(broken):
            _, copies = sc.acknowledge("Q1", "acknowledged R1's write-back of t", copies, t)
        copies = sc.later_updates("update'", copies, updates)
        returned = sc.highest("R2 returns", copies, sc.quorum("Q2", "R2's query quorum, after R1 returned"))
        return (
            returned >= t,
            "R2 returns an older tag than R1 did, though it started after R1 returned: new-old inversion",
        )

    def lemma(build: Callable[[Scenario], tuple[z3.BoolRef, str]]) -> Callable[[], Verdict]:
        return functools.partial(_prove, n, broken, build, timeout)

    later = f"up to {updates} further update{'s' if updates != 1 else ''} per server"
    return [
        Obligation(
            "QuorumsIntersect",
            f"any two quorums of {size} of the {n} servers share a server",
            lemma(quorums_intersect),
        ),
        Obligation(
            "CopiesGrow",
            "a server's copy after an update is at least the one it held and the update: copies only grow",
            lemma(copies_grow),
        ),
        Obligation(
            "CompletedWriteVisible",
            f"once a quorum acknowledged tag t, then {later}, any quorum's highest answer is ≥ t",
            lemma(write_visible),
        ),
        Obligation(
            "WriteTagAbove",
            f"once a quorum acknowledged tag t, then {later}, a writer's tag (highest number + 1, id) is > t",
            lemma(write_tag_above),
        ),
        Obligation(
            "ReadReturnsVisible",
            f"a read that returned t (after writing it back), then {later}: a later read returns ≥ t",
            lemma(read_visible),
        ),
    ]


# ------------------------------------------------------ the rules against the spec


def constant(tag: Tag) -> SymTag:
    """A spec tag as z3 constants (writer ``wi`` is i, the empty writer 0)."""
    return SymTag(z3.IntVal(tag.number), z3.IntVal(int(tag.writer[1:]) if tag.writer else 0))


def _evaluated(tag: SymTag) -> tuple[int, int]:
    number, writer = z3.simplify(tag.number), z3.simplify(tag.writer)
    assert isinstance(number, z3.IntNumRef) and isinstance(writer, z3.IntNumRef)  # built from constants
    return int(number.as_long()), int(writer.as_long())


def step_mismatch(spec: Abd, before: AbdState, action: AbdAction, after: AbdState) -> str | None:
    """Whether the lemmas' rules say what ``spec`` did in this step (None) or how
    they differ.  The rules are evaluated by z3 on the step's concrete tags:

    - ReplyUpdate: the server's new copy has the tag ``store`` gives;
    - EndQuery: its ``highest`` is the highest answer of some quorum (of
      ``quorum_size``) of the servers that answered the client, as ``Scenario.highest``
      states it; a writer carries ``write_tag`` of it; a reader moves on to its
      write-back exactly when ``writes_back``.
    """
    broken = spec.config.variant
    if spec.quorum != quorum_size(len(spec.servers), broken):
        return f"quorums of {spec.quorum}, the lemmas say {quorum_size(len(spec.servers), broken)}"
    if isinstance(action, ReplyUpdate):
        update = next(m for m in before.msgs.sent if isinstance(m, MsgUpdate) and m.client == action.client)
        held, now = before.copy[action.server].tag, after.copy[action.server].tag
        stored = _evaluated(store(constant(held), constant(update.copy.tag), broken))
        if stored != _evaluated(constant(now)):
            return f"{action}: the server holds {now}, store({held}, {update.copy.tag}) = {tag_text(*stored)}"
    if isinstance(action, EndQuery) and before.phase[action.client] == QUERY:
        answers = {
            m.server: m.copy.tag for m in before.msgs.sent if isinstance(m, MsgQueryReply) and m.client == action.client
        }
        scenario = Scenario(len(spec.servers), broken)
        members = scenario.quorum("Q", "the query's quorum")
        copies = [constant(answers.get(server, Tag(0, ""))) for server in spec.servers]
        highest = scenario.highest("highest", copies, members)
        answered = [z3.Implies(m, z3.BoolVal(server in answers)) for m, server in zip(members, spec.servers)]
        solver = z3.Solver()
        solver.add(*scenario.facts, *answered, highest.same(constant(action.highest.tag)))
        if solver.check() != z3.sat:
            return f"{action}: {action.highest.tag} is no quorum's highest answer by the lemmas' rule"
        carried = after.carries[action.client]
        if action.client in spec.writers:
            writer = int(action.client[1:])
            expected = _evaluated(write_tag(constant(action.highest.tag), z3.IntVal(writer)))
            if carried is None or _evaluated(constant(carried.tag)) != expected:
                return f"{action}: the writer carries {carried}, write_tag gives {tag_text(*expected)}"
        elif (after.phase[action.client] == UPDATE) != writes_back(broken):
            return f"{action}: the reader's phase is {after.phase[action.client]}, writes_back is {writes_back(broken)}"
    return None
