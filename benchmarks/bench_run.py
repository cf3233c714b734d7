"""Benchmark the main job: `digitlab run` with the full seed settings.

Runs the CLI in a child process (as a user would), then reads the run's own
timings.json/metrics.json and records wall time, seconds per epoch, test
accuracy, peak memory and the share of time spent outside `fit`.

    python benchmarks/bench_run.py [--repeats N] [--write]

--write replaces the "Main job" table in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

from _common import load_average, machine, write_section


def one_run(out: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "digitlab", "run", "--out", str(out), "--name", "bench", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    run_dir = out / "bench"
    timings = json.loads((run_dir / "timings.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    fit = timings["train"]
    return {
        "wall_s": wall,
        "fit_s": fit,
        "s_per_epoch": metrics["seconds_per_epoch"],
        "epochs": metrics["epochs_completed"],
        "test_accuracy": metrics["test_accuracy"],
        "accuracy_score": metrics["accuracy_score"],
        # Outside fit = everything the process did besides training, including
        # Python/TensorFlow start-up, which timings.json cannot see.
        "outside_fit_share": 1 - fit / wall,
        "peak_rss_mib": max(peak_kib, before) / 1024,
        "timings": timings,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    ap.add_argument("--preset", default="seed",
                    help="preset to run (default seed: the tutorial's full settings, which issue 2 measures)")
    ap.add_argument("extra", nargs="*", help="extra arguments for `digitlab run` (after --)")
    args = ap.parse_args()
    args.extra = ["--preset", args.preset, *args.extra]
    load = load_average()
    results = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(one_run(Path(tmp), args.extra))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "timings"}, indent=1), flush=True)
    med = {k: median(r[k] for r in results) for k in results[0] if k != "timings"}
    phases = results[-1]["timings"]
    table = [
        f"Command: `python benchmarks/bench_run.py --repeats {args.repeats} --preset {args.preset} --write` (runs `digitlab run`"
        + (" " + " ".join(args.extra) if args.extra else "") + " in a child process)",
        "",
        f"Machine: {machine()}; load average before the run {load} (1 min); date {time.strftime('%Y-%m-%d')}; "
        f"median of {len(results)} run(s).",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| wall time of `digitlab run` (process start to exit) | {med['wall_s']:.1f} s |",
        f"| time in `fit` ({med['epochs']:.0f} epochs) | {med['fit_s']:.1f} s |",
        f"| seconds per epoch | {med['s_per_epoch']:.2f} s |",
        f"| test accuracy (`model.evaluate` / `accuracy_score`) | {med['test_accuracy'] * 100:.2f}% / {med['accuracy_score'] * 100:.2f}% |",
        f"| peak RSS of the process | {med['peak_rss_mib']:.0f} MiB |",
        # The <= 10% target is the seed run's (10 epochs of fit); a 2-epoch preset's fixed costs
        # (data, calibration, figures) are a large share of a short run by nature.
        f"| share of wall time outside `fit` | {med['outside_fit_share'] * 100:.1f}%"
        + (" (target <= 10%)" if args.preset == "seed" else "") + " |",
        "",
        "Phases of the last run (from its timings.json), seconds: "
        + ", ".join(f"{k} {v:.2f}" for k, v in phases.items() if not k.endswith("_share")),
    ]
    text = "\n".join(table)
    print(text)
    if args.write:
        write_section(f"bench_run_{args.preset}", f"## Main job (`digitlab run --preset {args.preset}`, full settings)", text)

if __name__ == "__main__":
    main()
