"""Waiting in free-mode tests, where real threads run on the real clock: shared by
the free-mode tests of every implementation."""

from __future__ import annotations

import time
from collections.abc import Callable

#: seconds: the most a free-mode test waits for something before it gives up (and
#: fails); generous, so that a slow CI machine does not fail a correct run
WAIT = 30.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)
