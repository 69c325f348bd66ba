"""Subcommands for traces: show, replay, fuzz.

Where it sits: ``checks/cli.py`` calls ``register`` to add these subcommands; each
sets ``handler`` (a function of the parsed arguments returning the exit code) and
raises ``checks.params.UsageError`` on bad input.  The work itself lives in
``checks.trace`` (reading, replay), ``checks.render`` (text), ``checks.html``,
``checks.shiviz``, ``checks.traces.spans`` (a span export as a trace) and
``checks.stateful`` (fuzz).

    distcheck show FILE [FILE ...] [--html OUT.html] [--shiviz OUT.log] [--python] [--trace-id ID]
    distcheck replay TRACE [--json]
    distcheck fuzz SPEC [-p NAME=VALUE ...] [--variant V] [--examples N] [--steps N]
                   [--seed S] [--trace-out FILE] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distcheck.checks.conformance.wiring import WIRINGS
from distcheck.checks.inputs import clip, printable
from distcheck.checks.params import UsageError, build_spec, non_negative_int, output_file, positive_int
from distcheck.checks.search import stateful
from distcheck.checks.traces import render, shiviz, spans, trace
from distcheck.checks.traces.html import page as html_page
from distcheck.checks.verdict import INVALID, VIOLATED
from distcheck.spec.contract import Spec
from distcheck.spec.registry import REGISTRY

#: Behaviours ``fuzz`` tries unless told: a few seconds for each spec at its default size.
DEFAULT_EXAMPLES = 200


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this module's subcommands to the ``distcheck`` parser."""
    p_show = sub.add_parser(
        "show", help="print a trace file or a span export as a step table and message chart (or write HTML / ShiViz)"
    )
    p_show.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="a trace file (JSON Lines, docs/trace-format.md), or one or more span exports "
        "(impl.telemetry's JSON lines, docs/observability.md), drawn together",
    )
    p_show.add_argument(
        "--html", type=output_file, metavar="OUT.html", help="write a self-contained HTML viewer instead"
    )
    p_show.add_argument(
        "--shiviz", type=output_file, metavar="OUT.log", help="write a ShiViz log (with vector clocks) instead"
    )
    p_show.add_argument("--python", action="store_true", help="print a Python snippet that replays the trace instead")
    p_show.add_argument(
        "--trace-id",
        metavar="ID",
        help="for span exports: the trace to draw (its id or a prefix only it has; default: the one with most spans)",
    )
    p_show.set_defaults(handler=cmd_show)

    p_replay = sub.add_parser("replay", help="re-execute a trace on its spec and check every step")
    p_replay.add_argument("trace", help="a trace file (JSON Lines, docs/trace-format.md)")
    p_replay.add_argument("--json", action="store_true", help="print one JSON object")
    p_replay.set_defaults(handler=cmd_replay)

    p_fuzz = sub.add_parser("fuzz", help="search random behaviours with hypothesis and shrink a failing one")
    p_fuzz.add_argument("spec", help="spec name (see distcheck list)")
    p_fuzz.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="set a parameter")
    p_fuzz.add_argument("--variant", metavar="V", help="fuzz a deliberately broken variant")
    p_fuzz.add_argument(
        "--examples",
        type=positive_int,
        default=DEFAULT_EXAMPLES,
        metavar="N",
        help=f"behaviours to generate and check (default {DEFAULT_EXAMPLES}; shrinking a failure runs more)",
    )
    p_fuzz.add_argument("--steps", type=positive_int, default=20, metavar="N", help="steps per behaviour (default 20)")
    p_fuzz.add_argument(
        "--seed", type=non_negative_int, metavar="S", help="make the run repeatable (default: drawn and shown)"
    )
    p_fuzz.add_argument(
        "--trace-out", type=output_file, metavar="FILE", help="write a counterexample here (default .distcheck/traces/)"
    )
    p_fuzz.add_argument("--json", action="store_true", help="print one JSON object")
    p_fuzz.set_defaults(handler=cmd_fuzz)


def use_colour() -> bool:
    """Colour only for a person at a terminal (and never when NO_COLOR is set)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def load_trace(path: str) -> trace.Trace:
    try:
        return trace.read(path)
    except trace.TraceFormatError as exc:
        raise UsageError(f"malformed trace {exc}") from None


def spec_of(tr: trace.Trace, origin: str = "trace") -> Spec[Any, Any]:
    """The spec a trace's header names, built with the header's parameters
    (``origin``: the file, named in the error when they name no spec we have)."""
    raw = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in tr.header.params.items()]
    try:
        return build_spec(tr.header.spec, raw, tr.header.variant)[2]
    except UsageError as exc:
        raise UsageError(f"{origin}:1: header: {exc}") from None


# -------------------------------------------------------------------------- show


def cmd_show(args: argparse.Namespace) -> int:
    if args.python and (args.html or args.shiviz):
        raise UsageError("--python prints a snippet instead of writing a view; drop --html and --shiviz, or --python")
    files: list[str] = args.files
    if spans.is_span_file(files[0]):
        return _show_spans(args, files)
    if len(files) > 1:
        raise UsageError(
            f"show takes one trace file, or several span exports; {files[0]} is not a span export "
            "(a span is a JSON object with traceId and spanId, docs/observability.md)"
        )
    if args.trace_id is not None:
        raise UsageError(f"--trace-id picks a trace in span exports; {files[0]} is a trace file: drop --trace-id")
    path = files[0]
    tr = load_trace(path)
    note = ""
    # A header naming a registered spec must name it rightly (a misspelled variant
    # would otherwise be shown as if it were the reference); a trace of a spec we
    # do not know is still shown, as recorded.
    spec = spec_of(tr, path) if tr.header.spec in REGISTRY else None
    if spec is not None and any(step.state is None for step in tr.steps):
        # A log without states (an implementation's): show the spec's states, when
        # the actions replay on it, so that the changes column says something.
        full = trace.completed(tr, spec)
        if full is not None:
            tr = full
            note = "(states not recorded in the file: shown as the spec computes them by replaying the actions)\n\n"
    if args.python:
        print(render.python_snippet(tr))
        return 0
    if args.html or args.shiviz:
        if args.html:
            print(f"wrote {_write(args.html, html_page(tr, title=Path(path).name))}")
        if args.shiviz:
            print(f"wrote {_write(args.shiviz, shiviz.export(tr))}")
        return 0
    print(note + render.trace_text(tr, colour=use_colour()))
    return 0


def _show_spans(args: argparse.Namespace, files: list[str]) -> int:
    """``show`` of span exports: one trace of them (``checks.traces.spans``) drawn as
    a trace is, with a first line saying which trace and what else the files hold."""
    if args.python:
        raise UsageError("--python replays a trace's actions on its spec; a span export has none: drop --python")
    try:
        records = spans.read(files)
    except spans.SpanFormatError as exc:
        raise UsageError(f"malformed span export {exc}") from None
    try:
        choice = spans.choose(records, args.trace_id)
    except LookupError as exc:
        raise UsageError(str(exc)) from None
    drawn = spans.to_trace(choice)
    nodes = ", ".join(drawn.nodes[:8]) + (", ..." if len(drawn.nodes) > 8 else "")
    counts = f"{render.plural(drawn.spans, 'span')} on {render.plural(len(drawn.nodes), 'node')}"
    line = f"trace {choice.trace_id}: {counts} ({nodes})"
    if choice.others:
        # Which trace this is, and how to see another: a file of a long run holds a trace per request.
        why = "the one --trace-id names" if args.trace_id is not None else "the one with the most spans"
        listed = ", ".join(f"{o.trace_id} ({o.root}, {render.plural(o.spans, 'span')})" for o in choice.others[:3])
        more = f" and {len(choice.others) - 3:,} more" if len(choice.others) > 3 else ""
        line += (
            f"\nshown: {why} of {render.plural(len(choice.others) + 1, 'trace')} in the files; "
            f"--trace-id ID shows another: {listed}{more}"
        )
    if args.html or args.shiviz:
        if args.html:
            title = Path(files[0]).name + (f" +{len(files) - 1}" if len(files) > 1 else "")
            print(f"wrote {_write(args.html, html_page(drawn.trace, title=title, notes=drawn.notes))}")
        if args.shiviz:
            print(f"wrote {_write(args.shiviz, shiviz.export(drawn.trace))}")
        return 0
    # Node and span names come from the files: escaped like every name the table shows.
    line = printable(clip(line, render.LINE_CHARS), keep_newlines=True)
    print(line + "\n\n" + render.trace_text(drawn.trace, colour=use_colour(), notes=drawn.notes))
    return 0


def _write(path: str, text: str) -> Path:
    out = Path(path)
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return out


# ------------------------------------------------------------------------ replay


def cmd_replay(args: argparse.Namespace) -> int:
    tr = load_trace(args.trace)
    spec = spec_of(tr, args.trace)
    several = several_instances(tr)
    if several is not None:
        raise UsageError(f"{args.trace} cannot be replayed as one behaviour: {several}")
    result = trace.replay(tr, spec)
    if result.verdict == INVALID:
        raise UsageError(f"{args.trace} is not a behaviour of {tr.header.spec}: {result.reason}")
    if args.json:
        out: dict[str, Any] = {
            "trace": args.trace,
            "spec": tr.header.spec,
            "params": dict(tr.header.params),
            "variant": tr.header.variant,
            "verdict": result.verdict,
            "steps": tr.length,
        }
        if result.violation is not None:
            out["violation"] = {
                "invariant": result.violation.invariant,
                "statement": result.violation.statement,
                "kind": result.violation.kind,
                "step": result.step,
                "matches_recorded": result.matches_recorded,
            }
        print(json.dumps(out, indent=2))
    elif result.verdict == VIOLATED:
        print(f"{args.trace}: reproduced: {result.reason}")
    else:
        steps = render.plural(tr.length, "step")
        print(f"{args.trace}: ok: a clean behaviour of {tr.header.spec} ({steps}): {result.reason}")
    return result.exit_code


def several_instances(tr: trace.Trace) -> str | None:
    """Why a trace is not one behaviour but several interleaved instances of the
    protocol (its implementation's wiring names the key that tells them apart, e.g.
    a transaction id), or None.  ``validate --split KEY`` checks each on its own."""
    wiring = WIRINGS.get(tr.header.spec)
    key = getattr(wiring, "split_key", None)
    if key is None:
        return None
    values: dict[str, None] = {}
    for step in tr.steps:
        if key in step.extra:
            values.setdefault(json.dumps(step.extra[key], sort_keys=True))
            if len(values) > 1:
                break
    if len(values) <= 1:
        return None
    shown = ", ".join(list(values)[:2])
    return (
        f"its steps belong to several instances of {tr.header.spec} (their {key!r} differs: {shown}, ...); "
        f"replay re-executes one; check each with: distcheck validate {tr.header.spec} TRACE --split {key}"
    )


# -------------------------------------------------------------------------- fuzz


def _fuzz_progress(examples: int) -> Callable[[int, bool], None]:
    """A one-line progress report on stderr, at most a few times a second."""
    started = time.perf_counter()
    last = [float("-inf")]  # the first behaviour is always reported

    def report(runs: int, shrinking: bool) -> None:
        now = time.perf_counter()
        if now - last[0] < 0.25:
            return
        last[0] = now
        what = f"shrinking a failure, {runs:,} behaviours run" if shrinking else f"{min(runs, examples):,}/{examples:,}"
        sys.stderr.write(f"\r  fuzz: {what}, {now - started:.1f} s ")
        sys.stderr.flush()

    return report


def cmd_fuzz(args: argparse.Namespace) -> int:
    entry, params, spec = build_spec(args.spec, args.param, args.variant)
    show_progress = not args.json and sys.stderr.isatty()
    trace_out = args.trace_out
    outcome = stateful.fuzz(
        spec,
        examples=args.examples,
        steps=args.steps,
        seed=args.seed,
        spec_name=entry.name,
        params=params,
        variant=args.variant,
        trace_path=trace_out,
        on_run=_fuzz_progress(args.examples) if show_progress else None,
    )
    if show_progress:
        sys.stderr.write("\r" + " " * 72 + "\r")
    written = None
    if outcome.trace is not None:
        written = str(trace_out or trace.default_path(outcome.trace.header))
    if args.json:
        out: dict[str, Any] = {
            "spec": entry.name,
            "params": params,
            "variant": args.variant,
            "verdict": outcome.verdict,
            "examples": outcome.examples,
            "runs": outcome.runs,
            "seconds": round(outcome.seconds, 3),
            "seed": outcome.seed,
            "steps": args.steps,
        }
        if outcome.trace is not None and outcome.trace.header.violation is not None:
            v = outcome.trace.header.violation
            out["violation"] = {
                "invariant": v.invariant,
                "kind": v.kind,
                "statement": v.statement,
                "trace": trace.steps_json(outcome.trace),
            }
            out["trace_file"] = written
        print(json.dumps(out, indent=2))
    else:
        label = entry.name + "".join(f" {k}={v}" for k, v in params.items())
        label += f" variant={args.variant}" if args.variant else ""
        runs = f"seed {outcome.seed}, {outcome.seconds:.2f} s"
        if outcome.trace is None:
            print(
                f"{label}: ok: no property failed in {render.plural(outcome.examples, 'behaviour')} "
                f"of up to {render.plural(args.steps, 'step')} ({runs})"
            )
        else:
            steps = render.plural(outcome.trace.length, "step")
            found = f"found in behaviour {outcome.examples:,}, shrunk ({render.plural(outcome.runs, 'behaviour')} run"
            print(f"{label}: {_violated(outcome.trace)} after {steps}, {found}, {runs})\n")
            print(render.trace_text(outcome.trace, colour=use_colour()))
            print(f"\ntrace written to {written} (replay it with: distcheck replay {written})")
    return 0 if outcome.trace is None else 1


def _violated(tr: trace.Trace) -> str:
    v = tr.header.violation
    return f"{v.invariant} violated" if v is not None else "failed"
