"""Subcommand ``prove``: z3 proof obligations of a spec, or of the quorum lemmas.

Where it sits: ``checks/cli.py`` calls ``register`` to add the subcommand; the
targets and their obligations come from ``checks.proofs.registry``.  Bad options raise
``checks.params.UsageError`` (one line, exit 2).

    distcheck prove SPEC [-p NAME=VALUE ...] [--variant V] [--invariant NAME]
                         [--no-cross-check] [--timeout SECONDS] [--json]
    distcheck prove quorums -p n=N -p f=F [-p q=Q] [--json]

Each obligation is printed as proved or failed (with its counterexample) and the
time it took.  Exit 0 when every obligation is proved, 1 when one failed or z3
could not decide.  ``--json`` prints one object with the keys ``spec``, ``params``,
``variant``, ``invariant``, ``verdict`` ("ok", "violated" or "unknown"),
``seconds`` and ``obligations`` (each with ``name``, ``statement``, ``verdict``: proved, failed, unknown or skipped,
``seconds``, and ``counterexample`` where one exists).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from distcheck.checks.proofs.obligations import (
    DEFAULT_TIMEOUT_SECONDS,
    FAILED,
    PROVED,
    SKIPPED,
    Outcome,
    discharge,
    overall,
)
from distcheck.checks.proofs.registry import PROVABLE, Target, find_target
from distcheck.checks.verdict import OK


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``prove`` to the ``distcheck`` parser."""
    p = sub.add_parser(
        "prove",
        help="prove a spec's inductive invariant, or the quorum lemmas, with z3",
        description="Targets: " + "; ".join(_describe(t) for t in PROVABLE.values()),
    )
    p.add_argument("target", metavar="SPEC", help=f"what to prove: {', '.join(PROVABLE)}")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="set a parameter")
    p.add_argument("--variant", metavar="V", help="prove a deliberately broken variant (the proof should fail)")
    p.add_argument("--invariant", metavar="NAME", help="the candidate inductive invariant (default: the spec's own)")
    p.add_argument("--no-cross-check", action="store_true", help="skip comparing the encoding with the spec")
    p.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"give up on one obligation after this long (default {DEFAULT_TIMEOUT_SECONDS:g})",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_prove)


def _describe(target: Target) -> str:
    extras = []
    if target.invariants():
        extras.append("--invariant " + " | ".join(target.invariants()))
    if target.variants():
        extras.append("--variant " + " | ".join(target.variants()))
    # A parameter without a default (quorums' q, derived from n and f) shows its name.
    defaults = [f"-p {p.name}={p.name.upper() if p.default is None else p.default}" for p in target.params()]
    extras.append(" ".join(defaults))
    return f"{target.name} ({target.summary}; {', '.join(extras)})"


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def cmd_prove(args: argparse.Namespace) -> int:
    target = find_target(args.target)
    plan = target.plan(
        args.param,
        variant=args.variant,
        invariant=args.invariant,
        cross_check=not args.no_cross_check,
        timeout=args.timeout,
    )
    started = time.perf_counter()
    label = (
        target.name
        + "".join(f" {k}={v}" for k, v in plan.params.items())
        + (f" variant={args.variant}" if args.variant else "")
        + (f", invariant {plan.invariant}" if plan.invariant else "")
    )
    if not args.json:
        print(label)
    outcomes: list[Outcome] = []
    for obligation in plan.obligations:
        outcome = discharge(obligation)
        outcomes.append(outcome)
        if not args.json:
            print(_outcome_line(outcome), flush=True)
            if outcome.counterexample is not None:
                print("\n" + _indent(outcome.counterexample.text, "    ") + "\n")
    seconds = time.perf_counter() - started
    verdict = overall(outcomes)
    if args.json:
        out = {
            "spec": target.name,
            "params": plan.params,
            "variant": args.variant,
            "invariant": plan.invariant,
            "verdict": verdict,
            "seconds": round(seconds, 3),
            "obligations": [o.to_json() for o in outcomes],
        }
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        failed = sum(o.verdict == FAILED for o in outcomes)
        proved = sum(o.verdict == PROVED for o in outcomes)
        skipped = sum(o.verdict == SKIPPED for o in outcomes)
        also = f", {skipped} skipped" if skipped else ""
        print(f"{verdict}: {proved} of {len(outcomes)} obligations proved, {failed} failed{also}, {seconds:.2f} s")
    return 0 if verdict == OK else 1


def _outcome_line(o: Outcome) -> str:
    detail = f" ({o.detail})" if o.detail else ""
    return f"  {o.name:<25} {o.verdict:<8} {o.seconds:6.2f} s  {o.statement}{detail}"


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())
