"""Test-wide settings: the hypothesis profiles every property test runs under.

Select one with ``HYPOTHESIS_PROFILE=ci|dev|thorough``.  Without it, the profile is
``ci`` when the ``CI`` variable is set (as ``.ci/run`` runs) and ``dev`` otherwise.

- ``ci``: derandomized (the same examples on every run, so a red CI is reproducible
  and never flaky), no example database, a bounded number of examples.
- ``dev``: random examples, the local example database (a failure found once is
  tried first next time), the same budget as ci.
- ``thorough``: ten times the examples and longer behaviours, for a deliberate hunt.

A test that needs a fixed budget to assert something (e.g. "fuzz finds this
variant") sets its own settings instead of relying on a profile.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev",
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=1000,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

PROFILES = ("ci", "dev", "thorough")
chosen = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
if chosen not in PROFILES:
    raise pytest.UsageError(f"HYPOTHESIS_PROFILE={chosen!r} is not a profile; allowed: {', '.join(PROFILES)}")
settings.load_profile(chosen)
