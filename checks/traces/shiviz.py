"""Export of a trace to ShiViz, the space-time diagram viewer for distributed logs.

Where it sits: ``distcheck show TRACE --shiviz OUT.log`` calls ``export``; it reads
only the trace model (``checks.trace``) and the message arrows that
``checks.render`` matches from the steps' ``sent``/``received`` fields.

ShiViz orders events by vector clocks, not by arrows, so each step becomes an event
on its actor's host with a vector clock: a host's own entry counts its events (the
first is 1), and a receipt first merges the clock of the step that sent the
message.  The file is ShiViz's upload layout: the parsing regular expression on
line 1, an empty line for the (unused) multiple-executions delimiter, then two lines
per event (the event text, then ``host {clock}``).
"""

from __future__ import annotations

import json

from distcheck.checks.traces.render import arrows, step_action_text
from distcheck.checks.traces.trace import Trace

# ShiViz's own default expression: an event line, then "host {clock}".
PARSER_REGEX = r"(?<event>.*)\n(?<host>\S*) (?<clock>{.*})"


def host_name(actor: str | None) -> str:
    """The actor as a ShiViz host: the parser reads a host as one word."""
    return "_".join((actor or "env").split()) or "env"


def vector_clocks(tr: Trace) -> dict[int, dict[str, int]]:
    """The vector clock of every step after the initial state, by step number."""
    sender_of: dict[int, list[int]] = {}
    for arrow in arrows(tr):
        if arrow.sent_at is not None:
            sender_of.setdefault(arrow.received_at, []).append(arrow.sent_at)
    latest: dict[str, dict[str, int]] = {}
    clocks: dict[int, dict[str, int]] = {}
    for step in tr.steps[1:]:
        host = host_name(step.actor)
        clock = dict(latest.get(host, {}))
        for sent_at in sender_of.get(step.step, []):
            for other, count in clocks.get(sent_at, {}).items():
                clock[other] = max(clock.get(other, 0), count)
        clock[host] = clock.get(host, 0) + 1
        clocks[step.step] = clock
        latest[host] = clock
    return clocks


def export(tr: Trace) -> str:
    """The trace as a ShiViz log file."""
    clocks = vector_clocks(tr)
    lines = [PARSER_REGEX, ""]
    for step in tr.steps[1:]:
        host = host_name(step.actor)
        text = f"{step.step}: {step_action_text(step)}"
        if tr.header.violation is not None and step is tr.steps[-1]:
            text += f"  [{tr.header.violation.invariant} violated]"
        lines.append(text.replace("\n", " "))
        lines.append(f"{host} {json.dumps(clocks[step.step], sort_keys=True)}")
    return "\n".join(lines) + "\n"
