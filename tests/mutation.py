"""A small mutation run: does the test suite notice when a module's logic changes?

Not a test itself (pytest does not collect it).  For each module named, it makes
small changes to the syntax tree, one at a time — a comparison turned around, ``and``
for ``or``, a ``not`` dropped, a constant nudged, a guard's condition forced — writes
the mutant over the module in a scratch copy of the repository, and runs the tests
that cover that module there.  A mutant the tests fail on is *killed*; one they pass
is *alive*, and is printed so that a person can judge it: an equivalent mutant (the
same behaviour written differently) or a gap in the tests.

Usage (from the repository root, on a clean tree; it works in a scratch worktree
and never touches the checkout)::

    python -m tests.mutation spec/twophase.py=tests/spec/test_twophase.py,tests/spec/test_rules.py \\
        [--sample N] [--seed S] [--timeout SECONDS] [--json OUT]

Each argument is ``MODULE=TESTS`` (comma-separated test files or node ids).
``--sample N`` draws N mutants per module (seeded) instead of trying them all.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

_SWAP_COMPARE: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}


def _mutation_sites(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(node index in ast.walk order, description) for every mutation we make."""
    for i, node in enumerate(ast.walk(tree)):
        if isinstance(node, ast.Compare):
            for j, op in enumerate(node.ops):
                if type(op) in _SWAP_COMPARE:
                    yield i, f"compare{j}"
        elif isinstance(node, ast.BoolOp):
            yield i, "boolop"
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield i, "drop-not"
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            yield i, "int+1"
        elif isinstance(node, ast.Constant) and type(node.value) is bool:
            yield i, "flip-bool"
        elif isinstance(node, ast.If):
            yield i, "if-false"
            yield i, "if-true"
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            yield i, "add-sub"


def _skip(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Leave docstrings, type annotations and ``if TYPE_CHECKING`` alone."""
    while node in parents:
        parent = parents[node]
        if isinstance(parent, (ast.AnnAssign, ast.arg)) and getattr(parent, "annotation", None) is node:
            return True
        if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)) and node is parent.returns:
            return True
        node = parent
    return False


def mutants(source: str) -> Iterator[tuple[str, int, str]]:
    """(description, line, mutant source) for every mutation of ``source``."""
    tree = ast.parse(source)
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    for index, kind in _mutation_sites(tree):
        mutant_tree = copy.deepcopy(tree)
        node = list(ast.walk(mutant_tree))[index]
        original = list(ast.walk(tree))[index]
        if _skip(original, parents):
            continue
        line = getattr(node, "lineno", 0)
        if kind.startswith("compare"):
            assert isinstance(node, ast.Compare)
            j = int(kind[len("compare") :])
            node.ops[j] = _SWAP_COMPARE[type(node.ops[j])]()
            desc = f"{ast.unparse(original)} -> {ast.unparse(node)}"
        elif kind == "boolop":
            assert isinstance(node, ast.BoolOp)
            node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            desc = f"{ast.unparse(original)} -> {ast.unparse(node)}"
        elif kind == "drop-not":
            assert isinstance(node, ast.UnaryOp)
            replacement = node.operand
            _replace(mutant_tree, node, replacement)
            desc = f"{ast.unparse(original)} -> {ast.unparse(replacement)}"
        elif kind == "int+1":
            assert isinstance(node, ast.Constant) and isinstance(node.value, int)
            node.value = node.value + 1
            desc = f"{original.value!r} -> {node.value!r}"  # type: ignore[attr-defined]
        elif kind == "flip-bool":
            assert isinstance(node, ast.Constant)
            node.value = not node.value
            desc = f"{original.value!r} -> {node.value!r}"  # type: ignore[attr-defined]
        elif kind in ("if-false", "if-true"):
            assert isinstance(node, ast.If)
            node.test = ast.Constant(kind == "if-true")
            desc = f"if {ast.unparse(original.test)}: -> if {kind == 'if-true'}:"  # type: ignore[attr-defined]
        else:  # add-sub
            assert isinstance(node, ast.BinOp)
            node.op = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
            desc = f"{ast.unparse(original)} -> {ast.unparse(node)}"
        ast.fix_missing_locations(mutant_tree)
        try:
            text = ast.unparse(mutant_tree)
        except Exception:  # pragma: no cover - an unparsable mutant is skipped
            continue
        yield desc, line, text


def _replace(tree: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, new)
                return
            if isinstance(value, list):
                for k, item in enumerate(value):
                    if item is old:
                        value[k] = new
                        return


def run(repo: Path, module: str, tests: list[str], sample: int | None, seed: int, timeout: float) -> dict[str, object]:
    source = (repo / module).read_text()
    all_mutants = list(mutants(source))
    chosen = all_mutants
    if sample is not None and sample < len(all_mutants):
        chosen = random.Random(seed).sample(all_mutants, sample)
        chosen.sort(key=lambda m: m[1])
    scratch = Path(tempfile.mkdtemp(prefix="distcheck-mutation-"))
    work = scratch / "repo"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(work), "HEAD"], cwd=repo, check=True)
    try:
        # The uncommitted state of the module and its tests is what we measure.
        for path in [module, *[t.split("::")[0] for t in tests]]:
            shutil.copy(repo / path, work / path)
        env = {**os.environ, "HYPOTHESIS_PROFILE": "ci", "PYTHONDONTWRITEBYTECODE": "1"}
        base = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout * 4,
        )
        if base.returncode != 0:
            raise SystemExit(f"{module}: the tests fail before any mutation:\n{base.stdout[-2000:]}")
        alive: list[dict[str, object]] = []
        killed = 0
        for n, (desc, line, text) in enumerate(chosen, 1):
            (work / module).write_text(text)
            try:
                done = subprocess.run(
                    [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                    cwd=work,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                )
                survived = done.returncode == 0
            except subprocess.TimeoutExpired:
                survived = False  # a mutant that hangs the tests is noticed
            if survived:
                alive.append({"line": line, "mutation": desc})
            else:
                killed += 1
            if sys.stderr.isatty():
                print(f"\r{module}: {n}/{len(chosen)} mutants, {len(alive)} alive", end="", file=sys.stderr, flush=True)
            elif n % 10 == 0 or n == len(chosen):
                print(f"{module}: {n}/{len(chosen)} mutants, {len(alive)} alive", file=sys.stderr, flush=True)
        if sys.stderr.isatty():
            print(file=sys.stderr)
        return {"module": module, "mutants": len(chosen), "of": len(all_mutants), "killed": killed, "alive": alive}
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(work)], cwd=repo, check=False)
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="+", metavar="MODULE=TESTS")
    parser.add_argument("--sample", type=int, default=None, help="mutants per module (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per test run of one mutant")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    repo = Path.cwd()
    results = []
    started = time.monotonic()
    for target in args.targets:
        module, sep, tests = target.partition("=")
        if not sep or not (repo / module).is_file():
            parser.error(f"{target!r}: expected MODULE=TEST[,TEST...] with MODULE a file of this repository")
        results.append(run(repo, module, tests.split(","), args.sample, args.seed, args.timeout))
    total = sum(int(r["mutants"]) for r in results)  # type: ignore[call-overload]
    killed = sum(int(r["killed"]) for r in results)  # type: ignore[call-overload]
    for r in results:
        print(f"{r['module']}: {r['killed']}/{r['mutants']} killed (of {r['of']} mutants)")
        for a in r["alive"]:  # type: ignore[attr-defined]
            print(f"    alive  line {a['line']}: {a['mutation']}")
    print(
        f"total: {killed}/{total} killed ({100 * killed / max(total, 1):.0f} %) in {time.monotonic() - started:.0f} s"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
