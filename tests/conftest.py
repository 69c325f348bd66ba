"""Test-wide settings: the hypothesis profiles every property test runs under.

Select one with ``HYPOTHESIS_PROFILE=ci|dev|thorough``; ``.ci/run`` exports
``HYPOTHESIS_PROFILE=ci``, so it runs the ci profile wherever it is started.  Without
the variable, the profile is ``ci`` when ``CI`` is set (as CI services set it) and
``dev`` otherwise.

- ``ci``: derandomized (the same examples on every run, so a red CI is reproducible
  and never flaky), no example database, a bounded number of examples.
- ``dev``: random examples, the local example database (a failure found once is
  tried first next time), the same budget as ci.
- ``thorough``: ten times the examples and longer behaviours, for a deliberate hunt.

A test that needs a fixed budget to assert something (e.g. "fuzz finds this
variant") sets its own settings instead of relying on a profile.

Every test session (each pytest-xdist worker is one) runs in a working directory of
its own, so what the code under test writes relative to it (``.distcheck/traces/``,
the CLI's default place for a counterexample) neither lands in the repository nor
is shared by parallel workers.  The example database stays in the repository's
``.hypothesis/``, wherever the tests run from.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = DirectoryBasedExampleDatabase(ROOT / ".hypothesis" / "examples")

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
    database=EXAMPLES,
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    database=EXAMPLES,
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


@pytest.fixture(autouse=True, scope="session")
def own_working_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Run the session in a fresh directory (see the module docstring)."""
    before = Path.cwd()
    here = tmp_path_factory.mktemp("cwd")
    os.chdir(here)
    try:
        yield here
    finally:
        os.chdir(before)
