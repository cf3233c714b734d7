"""Shared by the benchmark scripts: machine description and BENCHMARKS.md sections.

Each script owns one section of BENCHMARKS.md between its own markers
(`<!-- KEY:begin -->` ... `<!-- KEY:end -->`) and replaces only that, so the
scripts can be re-run independently and in any order.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout even without installing


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line naming the machine, for every table."""
    return (f"{cpu_name()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def load_average() -> str:
    """The 1-minute load average, so a reader can see how busy the machine was."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def write_section(key: str, heading: str, body: str, path: Path = BENCHMARKS_MD) -> Path:
    """Replace (or append) the section between `key`'s markers in BENCHMARKS.md, atomically."""
    from digitlab.runs import atomic_write_text

    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(old):
        new = pattern.sub(lambda _: block, old, count=1)
    else:
        new = old.rstrip("\n") + f"\n\n{heading}\n\n{block}\n"
    atomic_write_text(path, new)
    print(f"updated {path} ({key})")
    return path
