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
from typing import Any

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
    from digitlab.files.atomic import atomic_write_text

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


# --- benchmarks of "a model other than the shipped one" (--model/--label/--key) -----------------


def add_model_options(ap: Any, key: str) -> None:
    """--model, --label and --key: run the benchmark on another model, into a section of its own."""
    ap.add_argument("--model", default=None, help="a model other than the shipped one (a run or model directory)")
    ap.add_argument("--label", default=None, help="how the table names that model (e.g. 'best candidate')")
    ap.add_argument("--key", default=key, help="the BENCHMARKS.md section to write")


def model_name(args: Any) -> str:
    """How tables name the benchmarked model."""
    return args.label or ("shipped pretrained" if args.model is None else args.model)


def model_arguments(args: Any, key: str) -> str:
    """The command-line part that picks the same model and section again ("" for the shipped one)."""
    if args.model is None:
        return ""
    return (f" --model {args.model}" + (f" --label '{args.label}'" if args.label else "")
            + (f" --key {args.key}" if args.key != key else ""))


def write_model_section(args: Any, key: str, heading: str, body: str) -> Path:
    """`write_section` for `args.key`; another model's section names it in its heading."""
    return write_section(args.key, heading if args.key == key else f"{heading} ({model_name(args)})", body)
