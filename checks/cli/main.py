"""The ``distcheck`` command.

Where it sits: the front door; wires the registry (``spec.registry``) to the
checking machinery (``checks.explore``, ``checks.render``).

Exit codes, for every subcommand: 0 checked and fine; 1 a property failed (the
counterexample is printed); 2 bad usage or bad input (one line on stderr saying
what is wrong and what is allowed; never a traceback); 3 an internal error (a bug
in distcheck: one line too, the traceback only with DISTCHECK_TRACEBACK=1).

Every result is reported as a ``verdict`` (``checks.verdict``).  The usage of every
subcommand: ``python -m distcheck.checks.cli.usage`` (README.md's block is that text).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from distcheck.checks.cli import histories as cli_histories
from distcheck.checks.inputs import UsageError, clip, output_file, printable

if TYPE_CHECKING:
    from distcheck.checks.cli import prove as cli_prove
    from distcheck.checks.cli import runtime as cli_runtime
    from distcheck.checks.cli import trace as cli_trace
    from distcheck.checks.params import build_spec, positive_int
    from distcheck.checks.search.distributed import explore_on_dask
    from distcheck.checks.search.explore import (
        Explorer,
        Result,
        Stats,
        Violation,
        check_refinement_of,
        follow_witness,
    )
    from distcheck.checks.search.parallel import ParallelExplorer
    from distcheck.checks.search.swarm import SchedulerError, check_scheduler, swarm
    from distcheck.checks.traces.render import plural, step_table, trace_text
    from distcheck.checks.traces.trace import Trace, from_behaviour, violation_of
    from distcheck.checks.traces.trace import default_path as default_trace_path
    from distcheck.checks.traces.trace import write as write_trace
    from distcheck.checks.verdict import BOUNDED
    from distcheck.spec.codec import to_json
    from distcheck.spec.contract import Spec
    from distcheck.spec.registry import REGISTRY

# Everything but ``linearizable`` needs the spec registry, the explorers and the
# conformance wiring, which take about a second to import; ``linearizable`` needs
# none of it, so these names are imported on first use (``_load``), and a
# ``distcheck linearizable`` process starts in a tenth of that.
_LAZY: dict[str, tuple[str, str | None]] = {
    "cli_prove": ("distcheck.checks.cli.prove", None),
    "cli_runtime": ("distcheck.checks.cli.runtime", None),
    "cli_trace": ("distcheck.checks.cli.trace", None),
    "build_spec": ("distcheck.checks.params", "build_spec"),
    "positive_int": ("distcheck.checks.params", "positive_int"),
    "Explorer": ("distcheck.checks.search.explore", "Explorer"),
    "Result": ("distcheck.checks.search.explore", "Result"),
    "Stats": ("distcheck.checks.search.explore", "Stats"),
    "Violation": ("distcheck.checks.search.explore", "Violation"),
    "check_refinement_of": ("distcheck.checks.search.explore", "check_refinement_of"),
    "follow_witness": ("distcheck.checks.search.explore", "follow_witness"),
    "ParallelExplorer": ("distcheck.checks.search.parallel", "ParallelExplorer"),
    "explore_on_dask": ("distcheck.checks.search.distributed", "explore_on_dask"),
    "SchedulerError": ("distcheck.checks.search.swarm", "SchedulerError"),
    "check_scheduler": ("distcheck.checks.search.swarm", "check_scheduler"),
    "swarm": ("distcheck.checks.search.swarm", "swarm"),
    "plural": ("distcheck.checks.traces.render", "plural"),
    "step_table": ("distcheck.checks.traces.render", "step_table"),
    "trace_text": ("distcheck.checks.traces.render", "trace_text"),
    "Trace": ("distcheck.checks.traces.trace", "Trace"),
    "from_behaviour": ("distcheck.checks.traces.trace", "from_behaviour"),
    "violation_of": ("distcheck.checks.traces.trace", "violation_of"),
    "default_trace_path": ("distcheck.checks.traces.trace", "default_path"),
    "write_trace": ("distcheck.checks.traces.trace", "write"),
    "BOUNDED": ("distcheck.checks.verdict", "BOUNDED"),
    "to_json": ("distcheck.spec.codec", "to_json"),
    "Spec": ("distcheck.spec.contract", "Spec"),
    "REGISTRY": ("distcheck.spec.registry", "REGISTRY"),
}
_loaded = False


def _load() -> None:
    """Import the names in ``_LAZY`` into this module (once; a name already set, say
    by a test's monkeypatch, is kept)."""
    global _loaded
    if _loaded:
        return
    for name, (module_name, attribute) in _LAZY.items():
        if name not in globals():
            module = importlib.import_module(module_name)
            globals()[name] = module if attribute is None else getattr(module, attribute)
    _loaded = True


def __getattr__(name: str) -> Any:
    # ``main.REGISTRY`` and the like from outside, before any command ran.
    if name in _LAZY:
        _load()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


_DESCRIPTION = "Check distributed-protocol specifications."


def build_parser() -> argparse.ArgumentParser:
    _load()
    parser = _Parser(prog="distcheck", description=_DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p_list = sub.add_parser("list", help="list specs, their parameters and variants")
    p_list.add_argument("--json", action="store_true", help="machine-readable output")
    p_list.set_defaults(handler=cmd_list)

    p_check = sub.add_parser("check", help="explore a spec exhaustively (or 'all' registered specs)")
    p_check.add_argument("spec", help="spec name, or 'all'")
    p_check.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="set a parameter")
    p_check.add_argument("--variant", metavar="V", help="check a deliberately broken variant")
    p_check.add_argument("--symmetry", action="store_true", help="reduce by the spec's symmetry")
    p_check.add_argument("--max-depth", type=positive_int, metavar="N", help="explore at most N states deep")
    p_check.add_argument("--deadlock", action="store_true", help="fail on a state with no successor")
    p_check.add_argument("--refinement", action="store_true", help="check the spec's refinement mapping on every step")
    p_check.add_argument(
        "--witness",
        action="store_true",
        help="replay the variant's pinned counterexample instead of searching (variants too deep to search)",
    )
    p_check.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="explore on N processes (checks/search/parallel.py); with 'check all', N specs at a time",
    )
    p_check.add_argument("--json", action="store_true", help="print one JSON object")
    p_check.add_argument(
        "--trace-out",
        type=output_file,
        metavar="FILE",
        help="write a counterexample trace here (default: under .distcheck/traces/)",
    )
    swarm_group = p_check.add_argument_group("swarm search (randomized, not exhaustive; see checks/swarm.py)")
    swarm_group.add_argument("--swarm", type=positive_int, metavar="N", help="run N independent random searches")
    swarm_group.add_argument("--walks", type=positive_int, default=200, metavar="W", help="random walks per search")
    swarm_group.add_argument("--walk-depth", type=positive_int, default=40, metavar="D", help="steps per walk")
    swarm_group.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of the first search (the others follow)"
    )
    swarm_group.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a Dask scheduler (tcp://host:port): explore on its workers (checks/distributed.py), or run --swarm there",
    )
    p_check.set_defaults(handler=cmd_check)

    # Each further group of subcommands lives in its own module with register(sub).
    for module in (cli_trace, cli_prove, cli_runtime, cli_histories):
        module.register(sub)
    return parser


def _parser_for(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The whole parser, or for ``linearizable`` one that knows that subcommand alone
    (the same parser to it, without importing what the others need)."""
    if argv and argv[0] == "linearizable":
        parser = _Parser(prog="distcheck", description=_DESCRIPTION)
        cli_histories.register(parser.add_subparsers(dest="command", required=True, parser_class=_Parser))
        return parser
    return build_parser()


# --------------------------------------------------------------------------- list


def cmd_list(args: argparse.Namespace) -> int:
    if args.json:
        out = [
            {
                "name": e.name,
                "summary": e.summary,
                "params": {p.name: p.default for p in e.params()},
                "variants": dict(e.variants),
                "variant_params": {v: dict(p) for v, p in e.variant_params.items()},
            }
            for e in REGISTRY.values()
        ]
        print(json.dumps(out, indent=2))
        return 0
    for e in REGISTRY.values():
        print(f"{e.name}: {e.summary}")
        for p in e.params():
            bounds = f" [{p.minimum}..{p.maximum}]" if p.minimum is not None or p.maximum is not None else ""
            print(f"  -p {p.name}={p.default}{bounds}  {p.help}")
        for v, text in e.variants.items():
            size = e.variant_params.get(v)
            at = " (shown at " + " ".join(f"{k}={x}" for k, x in size.items()) + ")" if size else ""
            print(f"  --variant {v}  {text}{at}")
    return 0


# -------------------------------------------------------------------------- check


def _progress_printer() -> Any:
    def report(stats: Stats) -> None:
        sys.stderr.write(
            f"\r  {stats.distinct_states:,} distinct, {stats.generated_states:,} generated, "
            f"depth {stats.depth}, queue {stats.queue:,}, {stats.states_per_second:,.0f} states/s "
        )
        sys.stderr.flush()

    return report


def _run(spec: Spec[Any, Any], args: argparse.Namespace, quiet: bool, name: str, params: dict[str, Any]) -> Result:
    if args.symmetry and not spec.has_symmetry():
        raise UsageError(f"spec {spec.name!r} declares no symmetry; drop --symmetry")
    if args.refinement:
        if spec.refinement() is None:
            raise UsageError(f"spec {spec.name!r} declares no refinement mapping; drop --refinement")
        if args.workers > 1 or args.scheduler:
            flag = "--scheduler" if args.scheduler else "--workers"
            raise UsageError(f"--refinement is checked by the sequential explorer; drop {flag}")
        if args.symmetry:
            raise UsageError("--refinement is checked on unreduced states; drop --symmetry")
        return check_refinement_of(spec, max_depth=args.max_depth, check_deadlock=args.deadlock)
    show_progress = not quiet and sys.stderr.isatty()
    progress = _progress_printer() if show_progress else None
    explorer: Explorer | ParallelExplorer
    if (args.workers > 1 or args.scheduler) and spec.eventually():
        names = ", ".join(p.name for p in spec.eventually())
        flag = "--scheduler" if args.scheduler else "--workers"
        raise UsageError(f"liveness ({names}) is checked on the whole graph by the sequential explorer: drop {flag}")
    if args.scheduler:
        try:
            result = explore_on_dask(
                name,
                params,
                args.variant,
                args.symmetry,
                args.max_depth,
                args.deadlock,
                args.scheduler,
                progress=progress,
            )
        except SchedulerError as exc:
            raise UsageError(str(exc)) from None
        if show_progress:
            sys.stderr.write("\r" + " " * 100 + "\r")
        return result
    if args.workers > 1:
        explorer = ParallelExplorer(
            spec,
            workers=args.workers,
            symmetry=args.symmetry,
            max_depth=args.max_depth,
            check_deadlock=args.deadlock,
            progress=progress,
        )
    else:
        explorer = Explorer(
            spec, symmetry=args.symmetry, max_depth=args.max_depth, check_deadlock=args.deadlock, progress=progress
        )
    result = explorer.run()
    if show_progress:
        sys.stderr.write("\r" + " " * 100 + "\r")
    return result


def result_json(
    spec_name: str, params: dict[str, Any], variant: str | None, symmetry: bool, result: Result, spec: Spec[Any, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "spec": spec_name,
        "params": params,
        "variant": variant,
        "symmetry": symmetry,
        "verdict": result.verdict,
        "distinct_states": result.stats.distinct_states,
        "generated_states": result.stats.generated_states,
        "depth": result.stats.depth,
        "seconds": round(result.stats.seconds, 3),
        "complete": result.complete,
        "unreached": list(result.unreached),
    }
    if result.stats.longest_walk is not None:  # a swarm: random walks know no shortest paths
        out["depth"] = None
        out["longest_walk"] = result.stats.longest_walk
    if result.violation is not None:
        v = result.violation
        out["violation"] = {
            "invariant": v.name,
            "kind": v.kind,
            "statement": v.statement,
            "loop": v.loop,
            "trace": [
                {
                    "step": i,
                    "actor": None if s.action is None else s.action.actor,
                    "action": None if s.action is None else to_json(s.action),
                    "action_text": "Init" if s.action is None else str(s.action),
                    "state": to_json(s.state),
                }
                for i, s in enumerate(v.trace)
            ],
        }
    return out


def counterexample_trace(
    spec_name: str,
    params: dict[str, Any],
    variant: str | None,
    result: Result,
    spec: Spec[Any, Any],
    source: str = "explorer",
) -> Trace | None:
    """The explorer's counterexample as a trace (None when there is none to show)."""
    v = result.violation
    header_violation = None if v is None else violation_of(v.name, v.statement, v.kind)
    if v is None or header_violation is None or not v.trace:
        return None
    return from_behaviour(
        spec, v.trace, spec_name=spec_name, params=params, variant=variant, violation=header_violation, source=source
    )


def write_counterexample(tr: Trace, trace_out: str | None) -> Path:
    """Write a failure's trace to ``trace_out``, or under .distcheck/traces/."""
    try:
        return write_trace(tr, trace_out or default_trace_path(tr.header))
    except OSError as exc:
        raise UsageError(f"cannot write the trace to {trace_out}: {exc.strerror or exc}") from None


def liveness_note(v: Violation) -> str:
    """How to read a liveness counterexample."""
    end = len(v.trace) - 1
    how = (
        f"step {end} leads back to the state after step {v.loop}: round that loop for ever"
        if v.loop is not None
        else f"after step {end} nothing can happen"
    )
    return (
        f"\nfrom the state after step {end} no behaviour reaches {v.name}, fair or not ({how}, for one); "
        "the steps before are a shortest way into that trap"
    )


def print_result(
    spec: Spec[Any, Any],
    label: str,
    result: Result,
    tr: Trace | None = None,
    incomplete: str = "cut short by --max-depth",
    detail: str | None = None,
) -> None:
    """The outcome for people: the verdict first (with what bounded the search, if
    anything), the counterexample, then the counts."""
    s = result.stats
    v = result.violation
    if v is None:
        if result.verdict == BOUNDED:
            print(f"{label}: bounded: no property failed, but the search was not exhaustive ({incomplete})")
            if result.unreached:
                print(
                    f"not reached within the bound: {', '.join(result.unreached)} "
                    "(a deeper search may reach them; without a bound each must be reached)"
                )
        else:
            print(f"{label}: ok")
        if detail:
            print(detail)
    elif v.kind == "unreached":
        print(f"{label}: {v.name} was never reached: {v.statement}")
    else:
        what = {
            "invariant": "violated",
            "deadlock": "reached",
            "refinement": "violated",
            "action": "violated",
            "liveness": "out of reach",
        }[v.kind]
        print(f"{label}: {v.name} {what} after {plural(len(v.trace) - 1, 'step')}\n")
        if tr is not None:
            print(trace_text(tr, colour=sys.stdout.isatty() and not os.environ.get("NO_COLOR")))
        else:
            print(step_table([(st.action, st.state) for st in v.trace]))
            print(f"\n{v.name}: {v.statement}")
        if v.kind == "liveness":
            print(liveness_note(v))
    # A swarm's random walks know no shortest paths: its figure is the longest walk.
    depth = f"depth {s.depth}" if s.longest_walk is None else f"longest walk {plural(s.longest_walk, 'state')}"
    print(f"{s.distinct_states:,} distinct states, {s.generated_states:,} generated, {depth}, {s.seconds:.2f} s")


def cmd_check(args: argparse.Namespace) -> int:
    if args.spec == "all":
        if (
            args.param
            or args.variant
            or args.symmetry
            or args.max_depth
            or args.refinement
            or args.witness
            or args.swarm
            or args.scheduler
        ):
            raise UsageError(
                "'check all' runs every spec at its default size; it takes only --json, --deadlock and --workers"
            )
        if args.trace_out:
            raise UsageError("--trace-out takes the counterexample of one spec; drop it with 'check all'")
        return cmd_check_all(args)
    entry, params, spec = build_spec(args.spec, args.param, args.variant)
    info = entry.build.variants().get(args.variant or "")
    if args.witness and (info is None or not info.witness):
        pinned = [name for name, v in entry.build.variants().items() if v.witness]
        names = ", ".join(pinned) or "none"
        raise UsageError(f"--witness replays a variant's pinned counterexample; {entry.name} pins one for: {names}")
    if args.witness and (
        args.swarm or args.scheduler or args.symmetry or args.max_depth or args.refinement or args.workers > 1
    ):
        raise UsageError(
            "--witness replays one behaviour; drop --swarm, --scheduler, --symmetry, --max-depth, --refinement,"
            " --workers"
        )
    if info is not None and info.witness and not args.witness and not args.json:
        print(
            f"note: the shortest counterexample of {args.variant} lies deep; an exhaustive search to it may take"
            f" hours. --witness replays its pinned counterexample ({len(info.witness)} steps).",
            file=sys.stderr,
        )
    if args.scheduler and args.workers > 1:
        raise UsageError("--scheduler explores on the Dask cluster's workers; drop --workers")
    if args.swarm and (args.symmetry or args.max_depth or args.deadlock or args.refinement):
        raise UsageError("--swarm samples behaviours; drop --symmetry, --max-depth, --deadlock and --refinement")
    if args.swarm:
        try:
            if args.scheduler:
                check_scheduler(args.scheduler)
            result = swarm(
                entry.name,
                params,
                args.variant,
                runs=args.swarm,
                walks=args.walks,
                depth=args.walk_depth,
                seed=args.seed,
                scheduler=args.scheduler,
            )
        except SchedulerError as exc:
            raise UsageError(str(exc)) from None
    elif args.witness:
        assert info is not None
        result = follow_witness(spec, info.witness)
    else:
        result = _run(spec, args, quiet=args.json, name=entry.name, params=params)
    tr = counterexample_trace(entry.name, params, args.variant, result, spec, "swarm" if args.swarm else "explorer")
    written = write_counterexample(tr, args.trace_out) if tr is not None else None
    refinement = refinement_summary(spec, result) if args.refinement else None
    if args.json:
        out = result_json(entry.name, params, args.variant, args.symmetry, result, spec)
        if args.max_depth is not None:
            out["max_depth"] = args.max_depth
        if refinement is not None:
            out["refinement"] = refinement
        if args.swarm:
            out["swarm"] = {"runs": args.swarm, "walks": args.walks, "walk_depth": args.walk_depth, "seed": args.seed}
            out["swarm"]["scheduler"] = args.scheduler or "local"
        elif args.scheduler:
            out["scheduler"] = args.scheduler
        if written is not None:
            out["trace_file"] = str(written)
        print(json.dumps(out, indent=2))
    else:
        label = (
            entry.name
            + "".join(f" {k}={v}" for k, v in params.items())
            + (f" variant={args.variant}" if args.variant else "")
        )
        if args.swarm:
            reason = f"a swarm of {plural(args.swarm, 'random search', 'random searches')}"
        else:
            reason = f"--max-depth {args.max_depth} cut it short: states that deep have successors not explored"
        detail = None
        if refinement is not None:
            detail = (
                f"refines {refinement['abstract']}: every initial state maps to an initial state of "
                f"{refinement['abstract']}, and each of the {plural(refinement['steps'], 'step')} from the "
                f"{plural(refinement['states'], 'state')} maps to a {refinement['abstract']} step or a stutter"
            )
        print_result(spec, label, result, tr, incomplete=reason, detail=detail)
        if written is not None:
            print(f"trace written to {written} (replay it with: distcheck replay {written})")
    return 0 if result.ok else 1


def refinement_summary(spec: Spec[Any, Any], result: Result) -> dict[str, Any]:
    """What ``--refinement`` checked: the abstract spec, and how many states and
    steps of this one were mapped to it."""
    refinement = spec.refinement()
    assert refinement is not None  # _run refuses --refinement without a mapping
    initial = sum(1 for _ in spec.init_states())
    return {
        "abstract": refinement.abstract.name,
        "verdict": result.verdict,
        "states": result.stats.distinct_states,
        "steps": result.stats.generated_states - initial,
    }


def cmd_check_all(args: argparse.Namespace) -> int:
    # Each spec (with its refinement and variants) is checked on its own; with
    # --workers N, N specs at a time in forked processes, the rows kept in the
    # registry's order.
    names = list(REGISTRY)
    if args.workers > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(min(args.workers, len(names))) as pool:
            checked = pool.starmap(_check_one_of_all, [(name, args.deadlock) for name in names], chunksize=1)
    else:
        checked = [_check_one_of_all(name, args.deadlock) for name in names]
    rows = [row for row, _ in checked]
    failed = any(bad for _, bad in checked)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(_summary_table(rows))
    return 1 if failed else 0


def _check_one_of_all(name: str, deadlock: bool) -> tuple[dict[str, Any], bool]:
    """One row of ``check all``: the spec at its default size, its refinement, and
    each broken variant; and whether anything failed."""
    _load()  # in a forked worker as in the parent
    entry = REGISTRY[name]
    spec = entry.make()
    params = {p.name: p.default for p in entry.params()}
    result = Explorer(spec, check_deadlock=deadlock).run()
    row = result_json(entry.name, params, None, False, result, spec)
    failed = not result.ok
    if result.ok and spec.refinement() is not None:
        refined = check_refinement_of(spec)
        row["refinement"] = refinement_summary(spec, refined)
        failed |= not refined.ok
    row["variants"] = {}
    for variant, info in entry.build.variants().items():
        # A variant whose shortest counterexample lies deep has a pinned one.
        spec_v = entry.make(variant=variant)
        broken = follow_witness(spec_v, info.witness) if info.witness else Explorer(spec_v).run()
        caught = broken.violation is not None and broken.violation.kind != "unreached"
        row["variants"][variant] = {
            "params": entry.defaults(variant),
            "caught": caught,
            "invariant": broken.violation.name if broken.violation else None,
            "steps": len(broken.violation.trace) - 1 if broken.violation and broken.violation.trace else None,
            "search": "pinned counterexample" if info.witness else "exhaustive",
        }
        failed |= not caught
    return row, failed


def _summary_table(rows: list[dict[str, Any]]) -> str:
    header = ("spec", "verdict", "distinct", "depth", "seconds", "variants caught")
    body = []
    for r in rows:
        result = r["verdict"]
        if "violation" in r:
            result += f" ({r['violation']['invariant']})"
        refinement = r.get("refinement")
        if refinement is not None and refinement["verdict"] == "ok":
            result += f", refines {refinement['abstract']}"
        elif refinement is not None:
            result += f", does not refine {refinement['abstract']}"
        variants = ", ".join(
            f"{name} {'✓' if v['caught'] else '✗ MISSED'}"
            + (f" ({v['invariant']}, {plural(v['steps'], 'step')})" if v["caught"] else "")
            for name, v in r["variants"].items()
        )
        body.append(
            (r["spec"], result, f"{r['distinct_states']:,}", str(r["depth"]), f"{r['seconds']:.2f}", variants or "-")
        )
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *body]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
        if row is header:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 15)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    _survive_any_text()
    try:
        arguments = sys.argv[1:] if argv is None else list(argv)
        args = _parser_for(arguments).parse_args(arguments)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except UsageError as exc:
        print(f"distcheck: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("distcheck: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader (e.g. `| head`) went away: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (RecursionError, MemoryError) as exc:
        # The input boundary (checks/inputs.py) keeps files within limits; this is the
        # fence behind it, for input that is within them and still too much.
        what = "nested too deep" if isinstance(exc, RecursionError) else "too large for the memory available"
        print(f"distcheck: error: the input is {what} to check", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug in distcheck: one line, never a traceback (exit 3)
        if os.environ.get("DISTCHECK_TRACEBACK"):
            raise
        print(
            f"distcheck: internal error (a bug in distcheck, not in the input; set DISTCHECK_TRACEBACK=1 "
            f"to see where): {type(exc).__name__}: {one_line(str(exc))}",
            file=sys.stderr,
        )
        return 3


def one_line(text: str, most: int = 1000) -> str:
    """A message on one line that any terminal prints as it is: control characters
    (newlines included) escaped, cut to ``most`` characters."""
    return printable(clip(text, most))


def _survive_any_text() -> None:
    # A character the output's encoding cannot write (a lone surrogate from a file;
    # anything under PYTHONIOENCODING=ascii) is escaped instead of raising.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a stream that cannot be reconfigured: leave it
                pass


if __name__ == "__main__":
    sys.exit(main())
