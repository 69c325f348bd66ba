"""docs/resilience.md's examples run as they are, and benchmarks/resilience_overhead.py
still measures every case (at a tiny size: this checks that it runs, not how fast)."""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import resilience_overhead  # a script folder, put on the path above

ROOT = Path(__file__).resolve().parents[2]

BLOCKS = re.findall(r"^```python\n(.*?)^```", (ROOT / "docs" / "resilience.md").read_text(), re.S | re.M)


def test_the_page_has_its_examples() -> None:
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_each_example_on_the_page_runs(number: int) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(BLOCKS[number], f"docs/resilience.md example {number + 1}", "exec"), {"__name__": "example"})
    assert "Traceback" not in out.getvalue()


def test_the_examples_print_what_the_page_says_they_do() -> None:
    """The retry, breaker and detector examples' outcomes, which the page's prose states."""
    printed = {}
    for number, block in enumerate(BLOCKS):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, f"example {number + 1}", "exec"), {"__name__": "example"})
        printed[number] = out.getvalue()
    text = "\n".join(printed.values())
    assert "pong after" in text and "budget 3 ZeroDivisionError" in text
    assert "charged applied 1 time(s)" in text  # a lost answer retried under the key: applied once
    assert "rejected the call: open for another 30.000 s" in text
    assert "half-open with all its probes in flight" in text
    assert "closed 3" in text
    assert "BreakerRecord(mode='open', opened_at=1000.0, generation=1) 60.0" in text
    assert "bulkhead 'reports' is full" in text


def test_the_benchmark_measures_every_case_or_says_why_not() -> None:
    rows = resilience_overhead.measure(calls=50, repeat=1)
    assert [r["case"] for r in rows] == list(resilience_overhead.ours())
    for row in rows:
        assert row["ours"] > 0
        assert ("ratio" in row) != ("skipped" in row)
