"""The HTML viewer: self-contained, and in a real headless Chromium a click on a step
shows that step's state with exactly its changes highlighted."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from distcheck.checks.cli import main
from distcheck.checks.search.explore import Explorer
from distcheck.checks.traces import trace
from distcheck.checks.traces.html import page
from distcheck.checks.traces.render import show_json
from distcheck.spec.registry import REGISTRY
from tests.checks.browser import Chromium, find_chromium

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def forgetful_tm_trace() -> trace.Trace:
    spec = REGISTRY["twophase"].make(variant="forgetful_tm")
    v = Explorer(spec).run().violation
    assert v is not None
    return trace.from_behaviour(spec, v.trace, violation=trace.violation_of(v.name, v.statement, v.kind))


def test_the_page_is_self_contained() -> None:
    text = page(forgetful_tm_trace())
    assert "<link" not in text
    assert not re.search(r"""(src|href)\s*=""", text)
    # The only URL is the SVG namespace name, which is never fetched.
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) <= {"http://www.w3.org/2000/svg"}
    assert "TCConsistent" in text


def test_show_writes_html_and_shiviz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = trace.write(forgetful_tm_trace(), tmp_path / "t.jsonl")
    code = main(["show", str(source), "--html", str(tmp_path / "t.html"), "--shiviz", str(tmp_path / "t.log")])
    assert code == 0
    assert (tmp_path / "t.html").read_text().startswith("<!DOCTYPE html>")
    assert (tmp_path / "t.log").read_text().splitlines()[0].startswith("(?<event>")
    assert str(tmp_path / "t.html") in capsys.readouterr().out


def leaf_lines(value: Any, label: str | None = None) -> list[str]:
    """What the state panel shows for a JSON state: one 'key: value' line per leaf."""
    if isinstance(value, dict) and (isinstance(value.get("type"), str) or "bag" not in value):
        out = [] if label is None else [f"{label}: " + (value["type"] if "type" in value else "")]
        for k, v in value.items():
            if k != "type":
                out += leaf_lines(v, k)
        return out
    return [f"{label}: {show_json(value)}"]


chromium = find_chromium()


@pytest.mark.skipif(chromium is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_clicking_a_step_shows_its_state_with_its_changes_highlighted(tmp_path: Path) -> None:
    assert chromium is not None
    tr = forgetful_tm_trace()
    html_file = tmp_path / "viewer.html"
    html_file.write_text(page(tr, title="forgetful_tm"), encoding="utf-8")
    chosen = 7  # TMCommit: a step that changes two fields, neither of them the last step's
    expected_changes = {
        json.dumps(list(c.path), separators=(",", ":"))
        for c in trace.diff(tr.steps[chosen - 1].state, tr.steps[chosen].state)
    }
    assert len(expected_changes) >= 2
    with Chromium(chromium) as browser:
        browser.open(html_file.as_uri())
        # The page opens on the violating step.
        assert browser.evaluate("document.getElementById('title').textContent").startswith(f"Step {tr.length} ")
        browser.click(f'#steps li[data-step="{chosen}"]')
        title = browser.evaluate("document.getElementById('title').textContent")
        state_text = browser.evaluate("document.getElementById('state').innerText")
        highlighted = browser.evaluate("[...document.querySelectorAll('#state .changed')].map(n => n.dataset.path)")
        violation = browser.evaluate("document.getElementById('violation').textContent")
        screenshot = browser.screenshot(ARTIFACTS / "html-viewer.png")
        # A dot of the space-time diagram selects its step too.
        browser.click('circle[data-step="1"]')
        dot_title = browser.evaluate("document.getElementById('title').textContent")
    assert dot_title == f"Step 1 · {tr.steps[1].actor} · {tr.steps[1].action_text}"
    assert title == f"Step {chosen} · {tr.steps[chosen].actor} · {tr.steps[chosen].action_text}"
    shown = [line.strip() for line in state_text.splitlines()]
    for line in leaf_lines(tr.steps[chosen].state)[1:]:
        assert line.strip() in shown, f"{line!r} not shown for step {chosen}"
    assert set(highlighted) == expected_changes
    assert "TCConsistent violated at step" in violation
    assert screenshot.stat().st_size > 10_000
