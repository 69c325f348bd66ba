"""``.ci/run`` runs the README's test command verbatim, under the hypothesis profile it
means: README tells a newcomer the command CI runs, so the two must not drift apart."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ci_test_command() -> str:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    marker = next(i for i, line in enumerate(lines) if line.startswith("# The README's test command"))
    return lines[marker + 1].strip()


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    command = ci_test_command()
    assert ".venv/bin/python -m pytest" in command
    readme = [line.strip() for line in (ROOT / "README.md").read_text().splitlines()]
    assert command in readme, f"README does not show .ci/run's test command: {command}"


def test_ci_selects_the_ci_hypothesis_profile_itself() -> None:
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "export HYPOTHESIS_PROFILE=ci" in [line.strip() for line in script]
