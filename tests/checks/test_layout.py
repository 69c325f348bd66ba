"""The dependency rules of DESIGN.md ("the arrows that may exist"), read from the
source with ``ast``, so that a wrong arrow fails the default test run:

- ``spec/`` imports only the standard library, attrs and ``distcheck.spec`` itself;
- ``impl/`` imports neither ``distcheck.spec`` nor ``distcheck.checks``;
- nothing imports the folders by their bare names (``spec``, ``checks``, ``impl``):
  only ``distcheck.spec``, ``distcheck.checks``, ``distcheck.impl``;
- no module of the generic ``checks`` packages imports a protocol's spec module, a
  protocol's implementation, or one protocol's wiring or z3 encoding (they ask the
  registries: ``checks.conformance.wiring.WIRINGS``, ``checks.proofs.registry``).  Protocol knowledge may live only in
  ``checks/conformance/wiring/`` (one wiring per implemented protocol) and in
  ``checks/proofs/<protocol>.py`` (one z3 encoding per protocol), plus the proofs
  registry that maps target names to encodings.

A protocol's spec module is one that defines a registered spec (or the abstract spec
one refines), found from the registry itself, so that a new protocol is covered
without editing this file and the contract modules (``spec/core.py`` and whatever it
is split into) stay allowed.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

from distcheck.spec.registry import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
SOURCE_FOLDERS = ("spec", "impl", "checks", "tests", "benchmarks", "examples", "distcheck")
BARE = ("spec", "checks", "impl")


def protocol_spec_modules() -> set[str]:
    """The modules that define a registered spec, or the abstract spec one refines."""
    modules: set[str] = set()
    for entry in REGISTRY.values():
        spec = entry.make()
        modules.add(type(spec).__module__)
        refinement = spec.refinement()
        if refinement is not None:
            modules.add(type(refinement.abstract).__module__)
    return modules


def protocol_impl_modules(root: Path) -> set[str]:
    """``distcheck.impl.<p>`` for every implementation (everything in impl/ but the runtime)."""
    impl = root / "impl"
    names = {p.stem for p in impl.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in impl.iterdir() if p.is_dir() and (p / "__init__.py").exists()
    }
    return {f"distcheck.impl.{name}" for name in names - {"runtime"}}


def module_name(root: Path, path: Path) -> str:
    """The dotted name a file is imported as (the three folders live under ``distcheck.``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if parts and parts[0] in BARE:
        parts.insert(0, "distcheck")
    return ".".join(parts)


def imports(root: Path, path: Path) -> Iterator[tuple[int, str, bool]]:
    """(line, imported module, written as an absolute import) for every import in a
    file, at any depth (a function's lazy import counts); relative imports are
    resolved against the file's package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(root, path).split(".")
    if path.name != "__init__.py":
        package.pop()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, True
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
                yield node.lineno, base, True
                # ``from distcheck.spec import paxos`` imports distcheck.spec.paxos.
                for alias in node.names:
                    yield node.lineno, f"{base}.{alias.name}", True
            else:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
                yield node.lineno, base, False
                for alias in node.names:
                    yield node.lineno, f"{base}.{alias.name}", False


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def is_generic_checks_module(relative: Path, protocol_names: set[str]) -> bool:
    parts = relative.parts
    if parts[0] != "checks":
        return False
    if parts[:3] == ("checks", "conformance", "wiring"):
        return False
    if parts[:2] == ("checks", "proofs") and len(parts) == 3:
        stem = relative.stem
        return stem != "registry" and stem not in protocol_names
    return True


def _broken_rules(
    where: str,
    generic: bool,
    module: str,
    absolute: bool,
    stdlib: set[str],
    protocol_specs: set[str],
    protocol_impls: set[str],
    protocol_checks: set[str],
) -> Iterator[str]:
    """The rules one import breaks, for a file in top folder ``where``."""
    top = module.split(".")[0]
    if absolute and top in BARE:
        yield "import it as distcheck." + module + ", never by the bare folder name"
        return
    if where == "spec" and not (top in stdlib or top == "attrs" or within(module, "distcheck.spec")):
        yield "spec/ imports only the standard library, attrs and distcheck.spec"
    if where == "impl" and (within(module, "distcheck.spec") or within(module, "distcheck.checks")):
        yield "impl/ imports neither distcheck.spec nor distcheck.checks"
    if generic and any(within(module, m) for m in protocol_specs):
        yield "a generic checks module must not know a protocol's spec (ask the registry or the wiring)"
    if generic and any(within(module, m) for m in protocol_impls):
        yield "a generic checks module must not know a protocol's implementation (ask the wiring)"
    if generic and any(within(module, m) for m in protocol_checks):
        yield "a generic checks module must not import one protocol's wiring or encoding (ask their registries)"


def protocol_checks_modules(root: Path, protocol_names: set[str]) -> set[str]:
    """The per-protocol modules of checks/: each wiring, and each z3 encoding."""
    wiring = root / "checks" / "conformance" / "wiring"
    proofs = root / "checks" / "proofs"
    out = {f"distcheck.checks.conformance.wiring.{p.stem}" for p in wiring.glob("*.py") if p.stem != "__init__"}
    out |= {f"distcheck.checks.proofs.{p.stem}" for p in proofs.glob("*.py") if p.stem in protocol_names}
    return out


def layout_violations(root: Path, protocol_specs: set[str], protocol_impls: set[str]) -> list[str]:
    """Every import that breaks a dependency rule, as ``path:line: why``."""
    protocol_names = {m.rsplit(".", 1)[-1] for m in protocol_specs | protocol_impls}
    protocol_checks = protocol_checks_modules(root, protocol_names)
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    found: list[str] = []
    reported: set[tuple[Path, int, str]] = set()  # one line per statement and rule
    for folder in SOURCE_FOLDERS:
        base = root / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            relative = path.relative_to(root)
            where = relative.parts[0]
            generic = is_generic_checks_module(relative, protocol_names)
            for line, module, absolute in imports(root, path):
                rules = _broken_rules(
                    where, generic, module, absolute, stdlib, protocol_specs, protocol_impls, protocol_checks
                )
                for why in rules:
                    if (relative, line, why) not in reported:
                        reported.add((relative, line, why))
                        found.append(f"{relative}:{line}: imports {module}: {why}")
    return found


def test_the_repository_follows_the_dependency_rules() -> None:
    problems = layout_violations(ROOT, protocol_spec_modules(), protocol_impl_modules(ROOT))
    assert problems == [], "\n".join(problems)


def test_the_registry_names_the_protocol_spec_modules() -> None:
    # If this set came back empty, the generic-module rule would pass vacuously.
    modules = protocol_spec_modules()
    assert {"distcheck.spec.twophase", "distcheck.spec.paxos", "distcheck.spec.lock"} <= modules
    assert "distcheck.spec.registry" not in modules
    assert not any(m.startswith("distcheck.spec.core") for m in modules)


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for folder in ("spec", "impl", "checks"):
        for directory in [root / folder, *(p for p in (root / folder).rglob("*") if p.is_dir())]:
            if directory.is_dir() and not (directory / "__init__.py").exists():
                (directory / "__init__.py").write_text("", encoding="utf-8")
    return root


def _violations(root: Path) -> list[str]:
    return layout_violations(root, {"distcheck.spec.toy"}, {"distcheck.impl.toy"})


def test_each_rule_catches_its_wrong_arrow(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "spec/toy.py": "import attrs\nimport json\nfrom distcheck.spec import core\n",
            "spec/core.py": "",
            "spec/bad.py": "import numpy\nfrom distcheck.checks.search import explore\n",
            "impl/toy.py": "from distcheck.impl.runtime import api\n",
            "impl/runtime/api.py": "from distcheck.spec.core import Spec\n",
            "checks/search/explore.py": "from distcheck.spec.core import Spec\nfrom distcheck.spec.registry import R\n",
            "checks/search/bad.py": "def f():\n    from distcheck.spec.toy import Toy\n",
            "checks/cli/bad.py": "from distcheck.spec import toy\nfrom distcheck.impl import toy as t\n",
            "checks/cli/relative.py": "from ...spec import toy\n",
            "checks/cli/wired.py": "from distcheck.checks.conformance.wiring import WIRINGS\n"
            "from distcheck.checks.conformance.wiring.toy import ToyWiring\n"
            "from distcheck.checks.proofs import registry\n"
            "from distcheck.checks.proofs.toy import ToyEncoding\n",
            "checks/conformance/wiring/toy.py": "from distcheck.spec.toy import Toy\nfrom distcheck.impl import toy\n",
            "checks/proofs/toy.py": "from distcheck.spec.toy import Toy\n",
            "checks/proofs/registry.py": "from distcheck.checks.proofs.toy import Enc\n",
            "checks/proofs/induction.py": "from distcheck.spec.toy import Toy\n",
            "tests/test_bare.py": "from checks.search import explore\nimport spec.core\n",
        },
    )
    problems = _violations(root)
    offenders = sorted({p.split(":")[0] for p in problems})
    assert offenders == [
        "checks/cli/bad.py",
        "checks/cli/relative.py",
        "checks/cli/wired.py",
        "checks/proofs/induction.py",
        "checks/search/bad.py",
        "impl/runtime/api.py",
        "spec/bad.py",
        "tests/test_bare.py",
    ]
    assert any("spec/bad.py:1: imports numpy" in p for p in problems)
    assert any("spec/bad.py:2: imports distcheck.checks" in p for p in problems)
    assert any("checks/cli/bad.py:2: imports distcheck.impl.toy" in p for p in problems)
    assert {p.split(":")[1] for p in problems if p.startswith("tests/test_bare.py")} == {"1", "2"}
    assert {p.split(":")[1] for p in problems if p.startswith("checks/cli/wired.py")} == {"2", "4"}


def test_a_clean_tree_has_no_violations(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"spec/toy.py": "import attrs\n", "checks/search/explore.py": "import json\n"})
    assert _violations(root) == []
