"""Text rendering: the step table shows only what changed, the message-sequence chart
draws each receipt from the sender's lane to the receiver's, everything fits in 100
columns, and colour appears only when asked for; plus the ShiViz export's clocks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import attrs
import pytest

from distcheck.checks.cli import main
from distcheck.checks.search.explore import Explorer
from distcheck.checks.traces import render, shiviz, trace
from distcheck.spec.registry import REGISTRY


def variant_trace(variant: str) -> trace.Trace:
    spec = REGISTRY["twophase"].make(variant=variant)
    v = Explorer(spec).run().violation
    assert v is not None
    return trace.from_behaviour(spec, v.trace, violation=trace.violation_of(v.name, v.statement, v.kind))


def test_the_table_shows_only_what_changed_and_ends_with_the_invariant() -> None:
    tr = variant_trace("commit_early")
    text = render.trace_text(tr, width=100)
    table = render.trace_table(tr, width=100)
    assert text.startswith(table)
    rows = {line.split()[0]: line for line in table.splitlines() if re.match(r"^\s*\d+\s", line)}
    assert "RMChooseToAbort(r1)" in rows["2"] and rows["2"].endswith("rm_state[r1]: working → aborted")
    assert "tm_state" not in rows["2"]
    assert text.splitlines()[-1] == "TCConsistent: no RM has committed while another has aborted"


def test_the_chart_draws_each_message_from_sender_to_receiver() -> None:
    tr = variant_trace("forgetful_tm")
    chart = render.sequence_chart(tr, width=100).splitlines()
    header = chart[0]
    column = {name: header.index(name) + len(name) // 2 for name in header.split()}
    arrows = render.arrows(tr)
    assert [(a.sender, a.receiver) for a in arrows] == [
        (tr.steps[a.sent_at].actor, tr.steps[a.received_at].actor) for a in arrows if a.sent_at is not None
    ]
    assert len(arrows) == sum(len(s.received) for s in tr.steps) > 0
    arrow_rows = [line for line in chart if "receives" in line]
    assert len(arrow_rows) == len(arrows)
    for line, arrow in zip(arrow_rows, arrows):
        start, end = column[arrow.sender or ""], column[arrow.receiver]
        assert line[start] == "+"
        assert line[end - 1 if end > start else end + 1] == (">" if end > start else "<")


def test_a_message_of_the_initial_state_is_drawn_from_the_sender_it_names() -> None:
    """PBFT's Byzantine replica takes no step: its pre-prepares are in the initial
    state.  The n = 3f counterexample draws them from its own lane, one to each of
    the two honest replicas that accept different requests."""
    spec = REGISTRY["pbft"].make(variant="too_few_replicas")
    v = Explorer(spec).run().violation
    assert v is not None
    tr = trace.from_behaviour(spec, v.trace, violation=trace.violation_of(v.name, v.statement, v.kind))
    assert render.lanes(tr) == ["r2", "r3", "r1"]
    initial = [a for a in render.arrows(tr) if a.sent_at == 0]
    assert {(a.sender, a.receiver, a.message["request"]) for a in initial} == {("r1", "r2", "q1"), ("r1", "r3", "q2")}
    chart = render.sequence_chart(tr, width=200).splitlines()
    r1 = chart[0].index("r1") + 1
    from_r1 = [line for line in chart if "sent by r1 in the initial state" in line]
    assert len(from_r1) == 2 and all(line[r1] == "+" for line in from_r1)


def test_every_line_fits_in_100_columns_even_with_many_nodes() -> None:
    header = trace.TraceHeader("twophase", {"rms": 3}, violation=trace.TraceViolation("Safety", "x" * 150))
    steps = [trace.TraceStep(0, None, None, {"type": "S", "log": []})]
    for i in range(1, 13):
        msg = {"type": "AppendEntriesRequestWithALongName", "term": i, "entries": list(range(i))}
        steps.append(
            trace.TraceStep(
                i,
                f"node-{i % 9}",
                {"type": "Send" * 10, "n": i},
                {"type": "S", "log": list(range(i))},
                sent=(msg,),
                received=(msg,) if i > 1 else (),
            )
        )
    text = render.trace_text(trace.Trace(header, tuple(steps)), width=100)
    too_long = [line for line in text.splitlines()[:-1] if len(line) > 100]
    assert not too_long


def test_colour_only_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tr = variant_trace("commit_early")
    assert "\x1b[" in render.trace_text(tr, colour=True)
    assert "\x1b[" not in render.trace_text(tr, colour=False)
    path = trace.write(tr, tmp_path / "t.jsonl")
    assert main(["show", str(path)]) == 0  # captured stdout is not a terminal
    out = capsys.readouterr().out
    assert "\x1b[" not in out and "Message sequence chart" in out


def test_step_table_of_values_matches_the_trace_rendering() -> None:
    spec = REGISTRY["twophase"].make(variant="abort_after_prepare")
    v = Explorer(spec).run().violation
    assert v is not None
    from_values = render.step_table([(s.action, s.state) for s in v.trace], width=100)
    assert from_values == render.trace_table(trace.from_behaviour(spec, v.trace), width=100)


def test_partial_states_are_rendered_as_not_recorded() -> None:
    tr = variant_trace("commit_early")
    partial = trace.Trace(tr.header, tuple(trace.TraceStep(s.step, s.actor, s.action) for s in tr.steps))
    assert render.trace_table(partial).count("(state not recorded)") == len(tr.steps)


def test_shiviz_clocks_count_local_events_and_merge_on_receipt() -> None:
    tr = variant_trace("forgetful_tm")
    lines = shiviz.export(tr).splitlines()
    assert lines[0] == shiviz.PARSER_REGEX and lines[1] == ""
    events = list(zip(lines[2::2], lines[3::2]))
    assert len(events) == tr.length
    clocks = []
    seen: dict[str, int] = {}
    for (_, host_line), step in zip(events, tr.steps[1:]):
        host, clock_text = host_line.split(" ", 1)
        clock = json.loads(clock_text)
        assert host == step.actor
        seen[host] = seen.get(host, 0) + 1
        assert clock[host] == seen[host]  # a host's own entry counts its events, from 1
        clocks.append(clock)
    for arrow in render.arrows(tr):
        assert arrow.sent_at is not None
        sent, received = clocks[arrow.sent_at - 1], clocks[arrow.received_at - 1]
        assert all(received.get(h, 0) >= n for h, n in sent.items())  # the send happened before the receipt


@pytest.mark.parametrize("variant", list(REGISTRY["twophase"].variants))
def test_the_python_snippet_replays_the_counterexample(variant: str) -> None:
    tr = variant_trace(variant)
    exec(render.python_snippet(tr), {})  # raises if an action is disabled or the invariant holds
    cut_short = trace.Trace(tr.header, tr.steps[:-1])
    with pytest.raises(AssertionError):
        exec(render.python_snippet(cut_short), {})


def test_show_fills_in_the_states_an_implementation_log_leaves_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = variant_trace("commit_early")
    log = trace.Trace(
        attrs.evolve(full.header, source="impl", violation=None),
        tuple(trace.TraceStep(s.step, s.actor, s.action, extra={"txn": "t1"}) for s in full.steps),
    )
    spec = REGISTRY["twophase"].make(variant="commit_early")
    completed = trace.completed(log, spec)
    assert completed is not None
    assert [s.state for s in completed.steps] == [s.state for s in full.steps]
    assert [s.received for s in completed.steps] == [s.received for s in full.steps]
    assert all(s.extra == {"txn": "t1"} for s in completed.steps)
    path = trace.write(log, tmp_path / "log.jsonl")
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("(states not recorded in the file")
    assert "rm_state[r2]: working → committed" in out
    # A log that is not a behaviour of the spec is shown as written.
    wrong = trace.Trace(log.header, (log.steps[0], log.steps[3]))
    assert trace.completed(wrong, spec) is None
