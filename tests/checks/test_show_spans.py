"""``distcheck show`` on span exports (issue #20): a span file written by
``impl.telemetry.otel`` around a free-runtime run is drawn as the message chart of
its trace, with an arrow per message handled on another node than the one that sent
it; several files make one export; bad lines are one usage error naming the line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distcheck.checks.cli import main
from distcheck.checks.traces import html, render, shiviz, spans
from distcheck.impl.resilience import UNBOUNDED, RetryError, Retrying
from distcheck.impl.runtime.api import Context, Envelope, Timer
from distcheck.impl.runtime.free import FreeRuntime
from distcheck.impl.telemetry import install, otel, span

# ------------------------------------------------------------------ a traced run


def relay(next_hops: list[str], *, defer: bool = False) -> Any:
    """A node that passes a Ping to each of ``next_hops`` (through a zero-delay timer
    when ``defer``: the batched Append a Raft leader sends), and answers an Append
    with an Ack to its sender."""

    def main(ctx: Context) -> None:
        while True:
            item = ctx.receive()
            if isinstance(item, Timer) and item.name == "flush":
                for hop in next_hops:
                    ctx.send(hop, {"type": "Append"})
            elif isinstance(item, Envelope) and item.msg["type"] == "Ping":
                if defer:
                    ctx.set_timer("flush", 0.0)
                else:
                    for hop in next_hops:
                        ctx.send(hop, {"type": "Ping"})
            elif isinstance(item, Envelope) and item.msg["type"] == "Append":
                ctx.send(item.src, {"type": "Ack"})

    return main


#: tester -Ping-> a -Ping-> b, b's flush timer -Append-> c and d, each -Ack-> b
EXPECTED_ARROWS = {
    ("tester", "a", "Ping"),
    ("a", "b", "Ping"),
    ("b", "c", "Append"),
    ("b", "d", "Append"),
    ("c", "b", "Ack"),
    ("d", "b", "Ack"),
}
SPANS_PER_REQUEST = 8  # request, Ping on a, Ping on b, timer flush, two Appends, two Acks


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _wait_for_spans(path: Path, count: int, timeout: float = 20.0) -> None:
    polls = Retrying(base=0.02, cap=0.05, jitter="none", max_attempts=UNBOUNDED, deadline=timeout, idempotent=True)
    try:
        for attempt in polls:
            with attempt:
                seen = len(_records(path))
                if seen < count:
                    raise LookupError(f"{seen} of {count} spans written")
            if attempt.exception is None:
                return
    except RetryError as error:
        raise AssertionError(str(error.last_exception)) from None


def traced_run(tmp_path: Path, requests: list[str]) -> Path:
    """A span file of one traced request per item of ``requests`` (the node the
    tester sends its Ping to), written by OpenTelemetry's JSON-lines exporter."""
    out = tmp_path / "run.spans.jsonl"
    telemetry = otel.OpenTelemetry("test", spans=out, batch=False)
    previous = install(telemetry)
    nodes = {
        "a": relay(["b"]),
        "b": relay(["c", "d"], defer=True),
        "c": relay([]),
        "d": relay([]),
        "client": lambda ctx: None,
    }
    expected = 0
    try:
        (tmp_path / "rt").mkdir()
        with FreeRuntime(nodes, tmp_path / "rt") as rt:
            for target in requests:
                with span("request", attributes={"distcheck.node": "tester", "distcheck.key": target}):
                    rt.send("client", target, {"type": "Ping"})
                expected += SPANS_PER_REQUEST if target == "a" else 1 + (target in ("c", "d"))
                _wait_for_spans(out, expected)
    finally:
        install(previous)
        telemetry.close()
    return out


@pytest.fixture(scope="module")
def one_request(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return traced_run(tmp_path_factory.mktemp("one"), ["a"])


@pytest.fixture(autouse=True)
def _width(monkeypatch: pytest.MonkeyPatch) -> None:
    # The chart fits the terminal (at most 100 columns): the same width wherever the tests run.
    monkeypatch.setenv("COLUMNS", "100")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_usage_error(code: int, out: str, err: str) -> str:
    assert code == 2 and out == "", (code, out, err)
    assert err.count("\n") == 1 and err.startswith("distcheck: error: ") and "Traceback" not in err, err
    return err


# ------------------------------------------------------------- reading the chart


RECEIPT = re.compile(r"(\S+) receives (\w+)(?:\((\w+)\))? \(sent at step (\d+)\)")


def chart_of(text: str) -> tuple[dict[int, tuple[str, str]], list[str], list[tuple[str, str, str, int, int]]]:
    """From show's text output: each step's (actor, action) from the step table, the
    lanes (the chart's header) and every arrow as (sender, receiver, label, sent at,
    the step receiving it)."""
    table, chart = text.split("Message sequence chart\n\n")
    actors: dict[int, tuple[str, str]] = {}
    for line in table.splitlines():
        row = re.match(r"\s*(\d+)  (\S+)\s+(.+?)  ", line)
        if row:
            actors[int(row.group(1))] = (row.group(2), row.group(3))
    lines = chart.splitlines()
    lanes = lines[0].split()
    out = []
    step = 0
    for line in lines[1:]:
        number = re.match(r"\s*(\d+) ", line)
        if number:
            step = int(number.group(1))
        found = RECEIPT.search(line)
        if found:
            sent_at = int(found.group(4))
            out.append((actors[sent_at][0], found.group(1), found.group(2), sent_at, step))
    return actors, lanes, out


def test_a_span_file_is_drawn_as_the_message_chart_of_its_trace(
    one_request: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = _records(one_request)
    assert len(records) == SPANS_PER_REQUEST and len({r["traceId"] for r in records}) == 1
    code, out, err = run(capsys, "show", str(one_request))
    assert code == 0 and err == ""
    first = out.splitlines()[0]
    assert first.startswith(f"trace {records[0]['traceId']}: 8 spans on 5 nodes") and "shown:" not in out
    actors, lanes, arrows = chart_of(out)
    # Lanes are nodes, in order of their first span; the tester's request opens the trace.
    assert lanes[:3] == ["tester", "a", "b"] and sorted(lanes[3:]) == ["c", "d"]
    assert actors[1] == ("tester", "request") and sorted(actors) == list(range(1, SPANS_PER_REQUEST + 1))
    # An arrow per message handled on another node, from the sender's lane, named after the message.
    assert {(s, r, label) for s, r, label, _, _ in arrows} == EXPECTED_ARROWS
    for _, receiver, label, sent_at, row in arrows:
        assert sent_at < row and actors[row] == (receiver, label)
    # The timer's span is a step on b that sends both Appends, after the Ping that armed it.
    flushes = {sent_at for _, _, label, sent_at, _ in arrows if label == "Append"}
    assert len(flushes) == 1
    flush = flushes.pop()
    assert actors[flush] == ("b", "timer flush")
    assert flush > next(row for _, r, label, _, row in arrows if (r, label) == ("b", "Ping"))


def test_steps_follow_start_times(one_request: Path) -> None:
    choice = spans.choose(spans.read([one_request]))
    drawn = spans.to_trace(choice)
    by_id = {r.span_id: r for r in choice.spans}
    # What the file says of a span stands where a trace shows a step's changes: its id first.
    shown = [by_id[drawn.notes[k][0].split(" span ")[1].split(",")[0]] for k in range(1, SPANS_PER_REQUEST + 1)]
    assert [(r.node, r.name) for r in shown] == [(s.actor, s.action["type"]) for s in drawn.trace.steps[1:]]
    assert sorted(r.span_id for r in shown) == sorted(by_id)
    assert [r.start for r in shown] == sorted(r.start for r in shown)
    assert drawn.notes[1][0].startswith("client span ") and ", at +0 µs for " in drawn.notes[1][0]
    assert "distcheck.key = a" in drawn.notes[1]


def test_several_files_and_a_file_given_twice_draw_the_same_chart(
    one_request: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One file per node, as each server process writes its own.
    per_node: dict[str, list[str]] = {}
    for line in one_request.read_text(encoding="utf-8").splitlines():
        per_node.setdefault(json.loads(line)["node"], []).append(line)
    files = []
    for node, lines in sorted(per_node.items(), reverse=True):
        files.append(tmp_path / f"{node}.spans.jsonl")
        files[-1].write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert len(files) == 5
    _, whole, _ = run(capsys, "show", str(one_request))
    code, split, err = run(capsys, "show", *map(str, files))
    assert code == 0 and err == "" and split == whole
    code, twice, _ = run(capsys, "show", str(one_request), str(one_request))
    assert code == 0 and twice == whole


def test_of_several_traces_the_one_with_most_spans_is_shown_and_trace_id_picks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = traced_run(tmp_path, ["c", "a", "d"])
    records = _records(path)
    traces: dict[str, list[str]] = {}
    for r in records:
        traces.setdefault(r["traceId"], []).append(r["node"])
    assert len(traces) == 3
    big = next(t for t, nodes in traces.items() if len(nodes) == SPANS_PER_REQUEST)
    code, out, _ = run(capsys, "show", str(path))
    first, second = out.splitlines()[:2]
    assert code == 0 and first.startswith(f"trace {big}: 8 spans")
    # The others are named by id, request and size, so a user finds theirs.
    assert second.startswith("shown: the one with the most spans of 3 traces in the files; --trace-id ID shows")
    assert all(f"{t} (request, 2 spans)" in second for t in traces if t != big)
    small = next(t for t, nodes in traces.items() if "c" in nodes and len(nodes) == 2)
    code, out, _ = run(capsys, "show", str(path), "--trace-id", small[:10])
    assert code == 0 and out.splitlines()[0].startswith(f"trace {small}: 2 spans on 2 nodes (tester, c)")
    _, _, arrows = chart_of(out)
    assert [(s, r, label) for s, r, label, _, _ in arrows] == [("tester", "c", "Ping")]
    one_line_usage_error(*run(capsys, "show", str(path), "--trace-id", "0" * 32))


def test_html_and_shiviz_of_a_span_file(one_request: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "show", str(one_request), "--html", str(tmp_path / "s.html"), "--shiviz", str(tmp_path / "s.log")
    )
    assert code == 0 and str(tmp_path / "s.html") in out
    page = (tmp_path / "s.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    found = re.search(r'<script type="application/json" id="trace-data">(.*?)</script>', page, re.S)
    assert found is not None
    data = json.loads(found.group(1).replace("<\\/", "</"))
    assert data["lanes"][:3] == ["tester", "a", "b"]
    # A label is the message's name, with the start of its span id where the name alone would not pair it.
    assert {(a["sender"], a["receiver"], a["label"].split("(")[0]) for a in data["arrows"]} == EXPECTED_ARROWS
    assert all(a["from"] is not None and a["from"] < a["to"] for a in data["arrows"])
    assert data["steps"][1]["changes"][0]["text"].startswith("client span ")
    # ShiViz: a host per node, and c's handling of the Append follows the tester's request.
    log = (tmp_path / "s.log").read_text(encoding="utf-8").splitlines()
    events = {log[k]: json.loads(log[k + 1].split(" ", 1)[1]) for k in range(2, len(log), 2)}
    hosts = {log[k + 1].split(" ", 1)[0] for k in range(2, len(log), 2)}
    assert hosts == {"tester", "a", "b", "c", "d"}
    c_append = next(clock for text, clock in events.items() if text.endswith(": Append") and "c" in clock)
    assert c_append.get("tester") == 1 and c_append.get("a") == 1


# ------------------------------------------------------------ written by hand


def record(
    span_id: str, name: str, node: str, start: float, *, parent: str | None = None, **more: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": "ab" * 16,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "kind": "server" if parent is not None else "client",
        "node": node,
        "start": start,
        "end": start + 1_000,
        "status": "unset",
        "attributes": {"distcheck.node": node},
    }
    out.update(more)
    return out


def write(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def test_a_parent_comes_first_whatever_the_clocks_say_and_a_missing_one_is_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path / "skewed.jsonl",
        [
            # n2's clock is behind: its Command starts "before" the client's call.
            record("2" * 16, "Command", "n2", 5_000, parent="1" * 16),
            record("1" * 16, "raft.put", "cli", 9_000),
            # A reply whose sender's span is in no file given.
            record(
                "3" * 16,
                "Reply",
                "cli",
                20_000,
                parent="9" * 16,
                attributes={"distcheck.node": "cli", "distcheck.src": "n3"},
            ),
        ],
    )
    code, out, _ = run(capsys, "show", str(path))
    assert code == 0
    actors, lanes, arrows = chart_of(out)
    assert lanes == ["cli", "n2"]
    assert actors == {1: ("cli", "raft.put"), 2: ("n2", "Command"), 3: ("cli", "Reply from n3")}
    assert [(s, r, label, sent_at) for s, r, label, sent_at, _ in arrows] == [("cli", "n2", "Command", 1)]
    assert "Reply from n3" in out and "cli receives Reply(33333333) (sender not in t" in out
    assert f"parent span {'9' * 16} is in none of the files (sent by n3)" in out


def test_a_message_handled_on_its_senders_node_is_a_step_not_an_arrow(tmp_path: Path) -> None:
    path = write(
        tmp_path / "self.jsonl",
        [record("1" * 16, "tick", "n1", 0), record("2" * 16, "Vote", "n1", 10, parent="1" * 16)],
    )
    drawn = spans.to_trace(spans.choose(spans.read([path])))
    assert [s.actor for s in drawn.trace.steps[1:]] == ["n1", "n1"]
    assert render.arrows(drawn.trace) == []


MALFORMED = [
    ("not json {", 2, "not valid JSON"),
    ("[1, 2]", 2, "expected a span (a JSON object with traceId, spanId, name, kind, start, end), got an array"),
    (json.dumps({"traceId": "ab" * 16, "name": "x"}), 2, "missing spanId, kind, start, end"),
    (json.dumps(record("2" * 16, "x", "n1", 10, kind="sideways")), 2, 'expected "kind" to be one of client, server'),
    (json.dumps(record("2" * 16, "x", "n1", 10, end=5)), 2, 'expected "end" (5) not to be before "start" (10)'),
    (json.dumps(record("zz", "x", "n1", 10)), 2, 'expected "spanId" to be a hex id'),
    (json.dumps(record("2" * 16, "x", "n1", 1.5)), 2, 'expected "start" to be a time in Unix nanoseconds'),
    (json.dumps(record("1" * 16, "other", "n1", 10)), 2, "with other contents; expected each span once"),
]


@pytest.mark.parametrize(("line", "number", "expected"), MALFORMED)
def test_a_malformed_line_is_one_usage_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, number: int, expected: str
) -> None:
    path = write(tmp_path / "bad.jsonl", [record("1" * 16, "raft.put", "cli", 0), line])
    err = one_line_usage_error(*run(capsys, "show", str(path)))
    assert err.startswith(f"distcheck: error: malformed span export {path}:{number}: "), err
    assert expected in err


def test_mixing_a_trace_with_spans_and_other_misuse_are_usage_errors(
    one_request: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = {"format": "distcheck-trace", "version": 1, "spec": "x", "params": {}, "variant": None}
    trace_file = write(tmp_path / "t.jsonl", [{**header, "source": "external", "violation": None}])
    err = one_line_usage_error(*run(capsys, "show", str(one_request), str(trace_file)))
    assert f"{trace_file}:1: expected a span" in err
    err = one_line_usage_error(*run(capsys, "show", str(trace_file), str(one_request)))
    assert "show takes one trace file, or several span exports" in err
    err = one_line_usage_error(*run(capsys, "show", str(trace_file), "--trace-id", "ab"))
    assert "drop --trace-id" in err
    err = one_line_usage_error(*run(capsys, "show", str(one_request), "--python"))
    assert "drop --python" in err


# ------------------------------------------------------------- any tree of spans


@st.composite
def span_trees(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A trace's spans as a tree (each span's parent an earlier one, or none), on
    three nodes, with start times in any order (clocks that disagree)."""
    count = draw(st.integers(1, 14))
    out = []
    for k in range(count):
        parent = draw(st.one_of(st.none(), st.integers(0, k - 1))) if k else None
        out.append(
            record(
                f"{k + 1:016x}",
                draw(st.sampled_from(["Ping", "Append", "Ack"])),
                draw(st.sampled_from(["n1", "n2", "n3"])),
                draw(st.integers(0, 50)),
                parent=None if parent is None else f"{parent + 1:016x}",
                kind=draw(st.sampled_from(spans.KINDS)),
            )
        )
    return out


@settings(max_examples=200, deadline=None)
@given(span_trees())
def test_every_arrow_starts_at_its_parents_step_and_every_view_renders(tree: list[dict[str, Any]]) -> None:
    records = [spans.parse_span(r, "mem", k) for k, r in enumerate(tree, start=1)]
    drawn = spans.to_trace(spans.choose(records))
    trace = drawn.trace
    step_of = {drawn.notes[k][0].split(" span ")[1].split(",")[0]: k for k in range(1, len(trace.steps))}
    assert sorted(step_of) == sorted(r.span_id for r in records)
    by_id = {r.span_id: r for r in records}
    expected = {}
    for r in records:
        parent = by_id.get(r.parent_id or "")
        if parent is not None:
            assert step_of[parent.span_id] < step_of[r.span_id]  # a parent is drawn first
            if r.kind in spans.RECEIVING and parent.node != r.node:
                expected[step_of[r.span_id]] = (step_of[parent.span_id], parent.node, r.node, r.name)
    arrows = {a.received_at: (a.sent_at, a.sender, a.receiver, a.message["type"]) for a in render.arrows(trace)}
    assert arrows == expected
    assert "Message sequence chart" in render.trace_text(trace, notes=drawn.notes) or not expected
    html.page_data(trace, drawn.notes)
    shiviz.export(trace)


# ------------------------------------------------------- a Raft cluster's files

RAFT = Path(__file__).resolve().parents[1] / "data" / "spans" / "raft"


def test_a_raft_put_over_four_processes_files(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(RAFT.glob("*.spans.jsonl"))
    records = [r for f in files for r in _records(f)]
    put = next(r for r in records if r["name"] == "raft.put")
    get = next(r for r in records if r["name"] == "raft.get")
    client = put["node"]
    code, out, _ = run(capsys, "show", *map(str, files))
    assert code == 0
    first, second = out.splitlines()[:2]
    assert first.startswith(f"trace {put['traceId']}: 9 spans on 4 nodes ({client}, n1, n2, n3)")
    assert second.endswith(f"--trace-id ID shows another: {get['traceId']} (raft.get, 7 spans)")
    assert "Message sequence chart" in out
    # The notes beside this chart are cut at 100 columns: read its arrows from the trace it draws.
    drawn = spans.to_trace(spans.choose(spans.read(files)))
    steps = drawn.trace.steps
    arrows = [(a.sender, a.receiver, a.message["type"], a.sent_at) for a in render.arrows(drawn.trace)]
    # The leader (n1) takes the command, its flush timer sends the entries, each
    # follower's sync timer answers.
    assert {(s, r, label) for s, r, label, _ in arrows} == {
        (client, "n1", "Command"),
        ("n1", "n2", "AppendEntriesRequest"),
        ("n1", "n3", "AppendEntriesRequest"),
        ("n2", "n1", "AppendEntriesResponse"),
        ("n3", "n1", "AppendEntriesResponse"),
    }
    wanted = {"AppendEntriesRequest": "timer FlushTimer()", "AppendEntriesResponse": "timer SyncTimer()"}
    for sender, _, label, sent_at in arrows:
        assert sent_at is not None and (steps[sent_at].actor, steps[sent_at].action_text) == (
            sender,
            wanted.get(label, "raft.put"),
        )

    code, out, _ = run(capsys, "show", *map(str, files), "--trace-id", get["traceId"][:6])
    assert code == 0 and out.startswith(f"trace {get['traceId']}: 7 spans on 4 nodes")
    assert "n1 receives Query (sent at step 1)" in out


def test_one_servers_file_alone_shows_what_came_from_outside_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", str(RAFT / "n1.spans.jsonl"))
    assert code == 0 and out.startswith("trace ") and ": 4 spans on 1 node (n1)" in out.splitlines()[0]
    assert "AppendEntriesResponse from n2" in out and "AppendEntriesResponse from n3" in out
    assert out.count("(sender not in t") == 3  # the client's Command and both responses
