"""``distcheck linearizable --html``: the timeline of a client history (issue #21, item 4).

Without a browser: the page is self-contained, untrusted text from the history
cannot break out of it, the checker hands over the failure as data, and output
path errors are one line.  In the real headless Chromium (tests/checks/browser.py;
skipped with the reason where it is missing, and .ci/run installs it): one lane
per client, the longest explained prefix numbered in order and the stuck
operations highlighted for a history that is not linearizable, the witness order
numbered for one that is, open operations drawn to the end, hovering a bar shows
the operation; screenshots go to test-artifacts/.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from distcheck.checks.cli import main
from distcheck.checks.histories.linearizability import KeyValue, Operation, check_history
from distcheck.checks.histories.timeline import page
from distcheck.checks.verdict import VIOLATED
from tests.checks.browser import Chromium, find_chromium

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
#: Porcupine's key-value histories (MIT; tests/data/porcupine-kv/README.md says where from)
PORCUPINE_KV = ROOT / "tests" / "data" / "porcupine-kv"

# docs/histories.md's example: alice's append timed out (it may have happened), bob
# read it, and carol, after bob, did not.  Lines 9-10 (carol's read) are what no
# order explains.
BANK: list[dict[str, Any]] = [
    {"client": "alice", "type": "invoke", "op": {"op": "put", "key": "x", "value": "1"}},
    {"client": "bob", "type": "invoke", "op": {"op": "get", "key": "x"}},
    {"client": "alice", "type": "ok", "result": "ok"},
    {"client": "bob", "type": "ok", "result": "1"},
    {"client": "alice", "type": "invoke", "op": {"op": "append", "key": "x", "value": "2"}},
    {"client": "alice", "type": "info", "error": "timeout"},
    {"client": "bob", "type": "invoke", "op": {"op": "get", "key": "x"}},
    {"client": "bob", "type": "ok", "result": "12"},
    {"client": "carol", "type": "invoke", "op": {"op": "get", "key": "x"}},
    {"client": "carol", "type": "ok", "result": "1"},
    # Another key, linearizable, so that the page has something to filter out.
    {"client": "dave", "type": "invoke", "op": {"op": "put", "key": "y", "value": "7"}},
    {"client": "dave", "type": "ok", "result": "ok"},
]


def write_jsonl(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def page_data(text: str) -> dict[str, Any]:
    """The JSON the page's script draws from."""
    match = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)
    assert match is not None
    data: dict[str, Any] = json.loads(match.group(1))
    return data


# ------------------------------------------------------------------ no browser


def test_a_failed_check_hands_over_the_failing_key_its_longest_prefix_and_the_stuck_operations() -> None:
    history = [
        Operation("a", 0, 1, {"op": "put", "key": "x", "value": 1}, "ok"),
        Operation("b", 2, 3, {"op": "get", "key": "x"}, 1),
        Operation("c", 4, 5, {"op": "get", "key": "x"}, None),  # stale: x was 1 before it began
        Operation("d", 6, 7, {"op": "put", "key": "y", "value": 2}, "ok"),
    ]
    result = check_history(history, KeyValue())
    assert not result.ok
    assert sorted(result.sub_history, key=lambda o: o.call) == history[:3]
    assert result.prefix == tuple(history[:2])
    assert [(s.operation, s.answer) for s in result.stuck] == [(history[2], 1)]
    # A linearizable history has none of it.
    fine = check_history(history[:2] + history[3:], KeyValue())
    assert fine.ok and fine.sub_history == fine.prefix == () and fine.stuck == ()


def test_the_page_is_self_contained_and_untrusted_text_stays_text() -> None:
    evil_client = "</script><script>alert(1)</script>"
    evil_value = "<img src=x onerror=alert(2)> & <!--"
    history = [
        Operation(evil_client, 0, 1, {"op": "put", "key": "<b>k</b>", "value": evil_value}, "ok"),
        Operation("p2", 2, None, {"op": "get", "key": "<b>k</b>"}, None),
    ]
    result = check_history(history, KeyValue())
    assert result.ok and result.order is not None
    text = page(
        title="<title>evil.jsonl",
        operations=history,
        sub_histories=[history],
        verdict="ok",
        message=f"{evil_value} in the message",
        order=result.order,
    )
    assert "<link" not in text
    assert not re.search(r"""\b(src|href)\s*=""", text.replace(r"src=x", ""))  # the only src= is escaped data
    assert not re.search(r"https?://", text)
    # Exactly the page's own two script elements: the history cannot open or close one.
    assert text.count("<script") == 2 and text.count("</script>") == 2
    assert evil_client not in text and "<img" not in text and "<b>k" not in text and "<!--" not in text
    assert "&lt;title&gt;evil.jsonl" in text and "&lt;img src=x" in text
    data = page_data(text)
    # What the escapes stand for arrives intact.
    assert data["clients"] == sorted([evil_client, "p2"])
    assert data["ops"][0]["client"] == evil_client and evil_value in data["ops"][0]["label"]


def test_the_cli_writes_the_page_and_says_where(tmp_path: Path) -> None:
    history = write_jsonl(tmp_path / "bank.jsonl", BANK)
    out_file = tmp_path / "bank.html"
    code, out, err = run("linearizable", str(history), "--model", "kv", "--html", str(out_file))
    assert code == 1 and err == ""
    assert out.rstrip().endswith(f"timeline: {out_file}")
    data = page_data(out_file.read_text(encoding="utf-8"))
    assert data["verdict"] == VIOLATED
    kinds = {(o["client"], o["call"]): (o["kind"], o["rank"]) for o in data["ops"]}
    assert kinds == {
        ("alice", 1): ("ordered", 1),
        ("bob", 2): ("ordered", 2),
        ("alice", 5): ("ordered", 3),  # never returned, but bob's read of '12' needs it
        ("bob", 7): ("ordered", 4),
        ("carol", 9): ("stuck", None),
        ("dave", 11): ("other", None),
    }
    assert [p["label"] for p in data["parts"] if p["failing"]] == ["key x"]
    # --json stays one object, and names the file it wrote.
    code, out, err = run("linearizable", str(history), "--model", "kv", "--html", str(out_file), "--json")
    assert code == 1 and json.loads(out)["html"] == str(out_file)


@pytest.mark.parametrize("where", ["missing-folder/t.html", "."])
def test_an_output_path_that_cannot_be_written_is_one_line(tmp_path: Path, where: str) -> None:
    history = write_jsonl(tmp_path / "bank.jsonl", BANK)
    code, out, err = run("linearizable", str(history), "--model", "kv", "--html", str(tmp_path / where))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("distcheck: error: ") and "--html" in err


def test_a_write_that_fails_is_one_line_and_nothing_else_is_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = write_jsonl(tmp_path / "bank.jsonl", BANK)

    def refuse(self: Path, *args: Any, **kwargs: Any) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "write_text", refuse)
    code, out, err = run("linearizable", str(history), "--model", "kv", "--html", str(tmp_path / "t.html"))
    assert (code, out) == (2, "")
    assert err == f"distcheck: error: cannot write {tmp_path / 't.html'}: Permission denied\n"


# ------------------------------------------------------------------ in Chromium

chromium = find_chromium()
needs_chromium = pytest.mark.skipif(chromium is None, reason="Debian's chromium is not installed (.ci/run installs it)")


def hover(browser: Chromium, selector: str) -> str:
    """Move the real mouse onto the element's centre; the tooltip's text."""
    box = browser.evaluate(
        f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
        " e.scrollIntoView({block: 'center', inline: 'center'}); const r = e.getBoundingClientRect();"
        " return [r.left + Math.min(r.width / 2, 10), r.top + r.height / 2]; })()"
    )
    assert box is not None, f"no element matches {selector}"
    browser.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": box[0], "y": box[1]})
    assert browser.evaluate("document.getElementById('tip').hidden") is False
    text: str = browser.evaluate("document.getElementById('tip').textContent")
    return text


def bars(browser: Chromium, selector: str) -> list[dict[str, Any]]:
    """Each bar matching ``selector`` in the timeline: its lane, call, rank, classes."""
    found: list[dict[str, Any]] = browser.evaluate(
        f"[...document.querySelectorAll('#timeline {selector}')].map(b => ({{"
        " client: b.closest('.lane').dataset.client, call: Number(b.dataset.call),"
        " rank: b.dataset.rank === undefined ? null : Number(b.dataset.rank), classes: b.className,"
        " right: b.offsetLeft + b.offsetWidth, track: b.parentElement.offsetWidth }))"
    )
    return found


@needs_chromium
def test_a_violation_numbers_the_longest_prefix_and_highlights_what_no_order_explains(tmp_path: Path) -> None:
    assert chromium is not None
    history = write_jsonl(tmp_path / "bank.jsonl", BANK)
    html_file = tmp_path / "bank.html"
    assert run("linearizable", str(history), "--model", "kv", "--html", str(html_file))[0] == 1
    with Chromium(chromium) as browser:
        browser.open(html_file.as_uri())
        # The failing key by default, and the page says so: dave (key y) has no lane.
        lanes = browser.evaluate("[...document.querySelectorAll('#timeline .lane')].map(l => l.dataset.client)")
        note = browser.evaluate("document.getElementById('note').textContent")
        numbered = sorted((b["rank"], b["client"], b["call"]) for b in bars(browser, ".op[data-rank]"))
        stuck = bars(browser, ".op.stuck")
        open_bars = bars(browser, ".op.open")
        tip = hover(browser, '#timeline .op.stuck[data-call="9"]')
        browser.screenshot(ARTIFACTS / "timeline-violated.png")
        browser.evaluate(
            "(() => { const s = document.getElementById('part'); s.value = '-1';"
            " s.dispatchEvent(new Event('change')); })()"
        )
        all_lanes = browser.evaluate("document.querySelectorAll('#timeline .lane').length")
        order_list = browser.evaluate("[...document.querySelectorAll('#lists ol.order li')].map(li => li.textContent)")
    assert lanes == ["alice", "bob", "carol"]
    assert "showing key x, the part no order explains: 5 of 6 operations" in note
    assert numbered == [(1, "alice", 1), (2, "bob", 2), (3, "alice", 5), (4, "bob", 7)]
    assert [(b["client"], b["call"]) for b in stuck] == [("carol", 9)]
    assert [(b["client"], b["call"]) for b in open_bars] == [("alice", 5)]
    assert open_bars[0]["right"] == open_bars[0]["track"]  # drawn to the end of the timeline
    assert tip.splitlines() == [
        "carol get(x) → '1'",
        "call at line 9, return: line 10",
        "key x",
        "could come next, but the model answers '12'",
    ]
    assert all_lanes == 4
    assert order_list[2] == "alice append(x, '2') → (no response) [call 5, never returned]"


@needs_chromium
def test_porcupine_c10_bad_shows_the_failing_key_and_stays_usable(tmp_path: Path) -> None:
    assert chromium is not None
    source = PORCUPINE_KV / "c10-bad.txt"
    html_file = tmp_path / "c10-bad.html"
    assert run("linearizable", str(source), "--model", "kv", "--initial", '""', "--html", str(html_file))[0] == 1
    data = page_data(html_file.read_text(encoding="utf-8"))
    _, report_text, _ = run("linearizable", str(source), "--model", "kv", "--initial", '""', "--json")
    offending = {(o["client"], o["call"]) for o in json.loads(report_text)["offending"]}
    failing = next(i for i, p in enumerate(data["parts"]) if p["failing"])
    clients_on_key = {o["client"] for o in data["ops"] if o["part"] == failing}
    with Chromium(chromium) as browser:
        browser.open(html_file.as_uri())
        lanes = browser.evaluate("document.querySelectorAll('#timeline .lane').length")
        shown = browser.evaluate("document.querySelectorAll('#timeline .op').length")
        stuck = {(b["client"], b["call"]) for b in bars(browser, ".op.stuck")}
        ranks = sorted(b["rank"] for b in bars(browser, ".op[data-rank]"))
        tip = hover(browser, "#timeline .op.stuck")
        browser.screenshot(ARTIFACTS / "timeline-porcupine-c10-bad.png")
        browser.evaluate(
            "(() => { const s = document.getElementById('part'); s.value = '-1';"
            " s.dispatchEvent(new Event('change')); })()"
        )
        all_lanes = browser.evaluate("document.querySelectorAll('#timeline .lane').length")
        all_bars = browser.evaluate("document.querySelectorAll('#timeline .op').length")
    assert data["parts"][failing]["label"] == "key 7"
    assert lanes == len(clients_on_key) and shown == data["parts"][failing]["size"] < len(data["ops"])
    assert stuck == offending == {("p8", 154)}
    assert ranks == list(range(1, len(ranks) + 1)) and ranks  # the prefix, numbered from 1 without gaps
    assert "p8 get(7) → ''" in tip and "call at line 154, return: line 157" in tip
    assert all_lanes == 10 and all_bars == len(data["ops"]) == 405


@needs_chromium
def test_a_linearizable_history_numbers_the_witness_order(tmp_path: Path) -> None:
    assert chromium is not None
    events = [e for e in BANK if e["client"] != "carol"]  # without carol's stale read it is linearizable
    history = write_jsonl(tmp_path / "fine.jsonl", events)
    html_file = tmp_path / "fine.html"
    code, out, _ = run("linearizable", str(history), "--model", "kv", "--html", str(html_file), "--json")
    assert code == 0
    witness = [(o["client"], o["call"]) for o in json.loads(out)["order"]]
    with Chromium(chromium) as browser:
        browser.open(html_file.as_uri())
        lanes = browser.evaluate("document.querySelectorAll('#timeline .lane').length")
        numbered = sorted((b["rank"], b["client"], b["call"]) for b in bars(browser, ".op[data-rank]"))
        highlighted = browser.evaluate("document.querySelectorAll('#timeline .op.stuck').length")
        tip = hover(browser, '#timeline .op[data-call="7"]')
        browser.screenshot(ARTIFACTS / "timeline-linearizable.png")
    assert lanes == 3  # alice, bob, dave: every key is shown when all are fine
    assert [(client, call) for _, client, call in numbered] == witness
    assert [rank for rank, _, _ in numbered] == list(range(1, len(witness) + 1))
    assert highlighted == 0
    assert "bob get(x) → '12'" in tip and "in the witness order" in tip
