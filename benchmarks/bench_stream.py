"""Benchmark `digitlab predict SOURCE --out results.jsonl` (predict/batch.py, the local engine).

    python benchmarks/bench_stream.py [--n 10000] [--big 200000] [--workers 1,2] [--write]

Writes the first --n MNIST test digits as black-on-white 28x28 PNGs, then runs the real
command in a new process for each --workers value and reports images/s (the command's own
summary: from the first listed input to the last row written, worker start-up included).
Memory: the same command over --n files and over --big files (--big / --n folders of
symbolic links to the --n PNGs: a real walk of that many entries), peak RSS of the main
process and of the whole process tree, sampled every 0.1 s. It must be flat.
The ratio: pipeline images/s against bare ONNX inference on the same 28x28 inputs
(`Predictor.probabilities` on batches of CHUNK, one thread), and against --workers
times one core's decode + preprocess + inference rate (the parallel efficiency).
With --write, replaces the bench_stream section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import load_average, machine, write_section

HEADING = "## Streaming batch prediction (`digitlab predict SOURCE --out FILE`)"


def run_cli(source: Path, out: Path, workers: int) -> dict:
    """One `digitlab predict SOURCE --out OUT --workers N` in a new process: its rate and peak RSS."""
    import psutil

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    cmd = [sys.executable, "-m", "digitlab", "predict", str(source), "--out", str(out), "--workers", str(workers)]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    main = psutil.Process(proc.pid)
    peak_main = peak_tree = 0
    while proc.poll() is None:
        try:
            rss = main.memory_info().rss
            tree = rss + sum(c.memory_info().rss for c in main.children(recursive=True))
        except psutil.Error:
            break
        peak_main, peak_tree = max(peak_main, rss), max(peak_tree, tree)
        time.sleep(0.1)
    stdout = proc.communicate()[0]
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {stdout}")
    match = re.search(r": ([\d,]+) images in ([\d.]+) s \(([\d,]+) images/s", stdout)
    images, seconds = int(match.group(1).replace(",", "")), float(match.group(2))
    return {"images": images, "seconds": seconds, "rate": images / seconds, "wall": wall,
            "peak_main": peak_main / 2**20, "peak_tree": peak_tree / 2**20}


def bare_rates(files: list[Path]) -> tuple[float, float]:
    """(bare ONNX inference images/s, one core's decode + preprocess + inference images/s)."""
    import numpy as np

    from digitlab.predict.predictor import CHUNK, Predictor

    predictor = Predictor.load(runtime="onnx", threads=1)
    t = time.perf_counter()
    prepared = [predictor.prepare(f, mode="auto") for f in files]
    t_prep = time.perf_counter() - t
    inputs = np.stack([a for p in prepared for a in p.inputs])
    predictor.probabilities(inputs[:CHUNK])  # warm up
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for s in range(0, len(inputs), CHUNK):
            predictor.probabilities(inputs[s:s + CHUNK])
        best = min(best, time.perf_counter() - t)
    t = time.perf_counter()
    for s in range(0, len(prepared), CHUNK):
        predictor.finish(prepared[s:s + CHUNK])
    t_finish = time.perf_counter() - t
    return len(inputs) / best, len(files) / (t_prep + t_finish)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="distinct PNG files (MNIST test digits, at most 10,000)")
    ap.add_argument("--big", type=int, default=200_000, help="files of the memory run (links to the --n PNGs)")
    ap.add_argument("--workers", default="1,2", help="comma-separated --workers values to time")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",")]

    from PIL import Image

    from digitlab.data.mnist import load_mnist_data

    data = load_mnist_data()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        small = root / "small"
        files = []
        for i in range(args.n):
            folder = small / f"{i // 1000:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            files.append(folder / f"{i:05d}.png")
            Image.fromarray(255 - data.x_test[i % len(data.x_test)]).save(files[-1])
        big = root / "big"
        for k in range(args.big):
            folder = big / f"{k // args.n:03d}" / f"{k % args.n // 1000:02d}"
            if k % 1000 == 0:
                folder.mkdir(parents=True, exist_ok=True)
            os.symlink(files[k % args.n], folder / f"{k:06d}.png")
        bare, one_core = bare_rates(files)
        runs = {w: run_cli(small, root / f"w{w}.jsonl", w) for w in workers}
        top = max(workers)
        memory = {"small": runs[top], "big": run_cli(big, root / "big.jsonl", top)}
    lines = [
        f"Command: `python benchmarks/bench_stream.py --n {args.n} --big {args.big} --workers {args.workers} --write` "
        f"· machine: {machine()} (shared with other work: load average {load_average()} at the end) "
        f"· model: shipped pretrained, ONNX runtime, one inference thread in the main process "
        f"· inputs: 28x28 black-on-white PNGs of MNIST test digits, `--out results.jsonl` (fsync per batch of 256)",
        "",
        "| `--workers` | images | images/s | vs. bare ONNX inference | parallel efficiency | wall (with start-up) |",
        "|---|---|---|---|---|---|",
    ]
    for w, r in runs.items():
        lines.append(f"| {w} | {r['images']:,} | {r['rate']:,.0f} | {r['rate'] / bare:.3f} "
                     f"| {r['rate'] / (w * one_core):.2f} | {r['wall']:.1f} s |")
    lines += [
        "",
        f"Bare ONNX inference on the same 28x28 inputs (batches of 256, one thread): {bare:,.0f} images/s; "
        f"one core's whole path in one process (decode + preprocess + inference, `Predictor.prepare` + "
        f"`finish`): {one_core:,.0f} images/s. Parallel efficiency = images/s / (workers x that).",
        "",
        f"| memory (`--workers {top}`) | images | images/s | peak RSS, main process | peak RSS, all processes |",
        "|---|---|---|---|---|",
    ]
    for name, r in memory.items():
        lines.append(f"| {name} ({'real files' if name == 'small' else 'symbolic links to them'}) | {r['images']:,} "
                     f"| {r['rate']:,.0f} | {r['peak_main']:.0f} MiB | {r['peak_tree']:.0f} MiB |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section("bench_stream", HEADING, text)


if __name__ == "__main__":
    main()
