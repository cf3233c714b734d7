"""Benchmark `digitlab predict`: decode + preprocess + inference per image, and cold start.

    python benchmarks/bench_predict.py [--n 1000] [--runtime auto] [--write]

Writes 1,000 user-style PNGs (MNIST test digits, black on white, 100x100) to a
temporary directory, then times (a) one image per call (`Predictor.predict`),
(b) batched (`prepare` every file, one model call per 256, as the CLI does),
and (c) the cold start of `digitlab predict one.png` in a new process (median
of 3). With --write, replaces the bench_predict section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
from _common import write_section  # noqa: E402
HEADING = "## Prediction (digitlab predict)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args()

    from digitlab.data import load_mnist_data
    from digitlab.predict import CHUNK, Predictor

    data = load_mnist_data()
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i in range(args.n):
            path = Path(tmp) / f"d{i:04d}.png"
            Image.fromarray(255 - data.x_test[i]).resize((100, 100), Image.Resampling.BICUBIC).save(path)
            files.append(path)
        predictor = Predictor.load(runtime=args.runtime)
        predictor.predict(files[0])  # warm up
        t = time.perf_counter()
        single = [predictor.predict(f) for f in files]
        t_single = (time.perf_counter() - t) / args.n
        t = time.perf_counter()
        batched = []
        for s in range(0, args.n, CHUNK):
            batched += predictor.finish([predictor.prepare(f, mode="auto") for f in files[s:s + CHUNK]])
        t_batch = (time.perf_counter() - t) / args.n
        t = time.perf_counter()
        prepared = [predictor.prepare(f, mode="digit") for f in files]
        t_prep = (time.perf_counter() - t) / args.n
        t = time.perf_counter()
        predictor.finish(prepared)
        t_model = (time.perf_counter() - t) / args.n
        acc = np.mean([r.label == y for r, y in zip(single, data.y_test[: args.n])])
        cold = []
        exe = Path(sys.executable).with_name("digitlab")
        for _ in range(args.cold_runs):
            t = time.perf_counter()
            subprocess.run([str(exe), "predict", str(files[0]), "--runtime", args.runtime], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cold.append(time.perf_counter() - t)
    cmd = "python benchmarks/bench_predict.py" + (f" --n {args.n}" if args.n != 1000 else "") + \
        (f" --runtime {args.runtime}" if args.runtime != "auto" else "") + " --write"
    table = "\n".join([
        f"Command: `{cmd}` · machine: {os.cpu_count()} CPU cores (shared, busy with other work while measured), "
        f"Python {platform.python_version()}, {platform.system()} {platform.machine()} · "
        f"model: shipped pretrained, runtime `{predictor.info['runtime']}` · "
        f"{args.n} PNG files, 100x100 black-on-white MNIST test digits (accuracy {acc * 100:.1f}%)",
        "",
        "| measurement | per image |",
        "|---|---|",
        f"| single: `Predictor.predict(path)` (decode + preprocess + 1 model call) | {t_single * 1e3:.2f} ms |",
        f"| batched: decode + preprocess (auto digit/number), one model call per {CHUNK} | {t_batch * 1e3:.2f} ms |",
        f"| &nbsp;&nbsp;of which decode + preprocess only | {t_prep * 1e3:.2f} ms |",
        f"| &nbsp;&nbsp;of which one model call for all {args.n} | {t_model * 1e3:.3f} ms |",
        f"| cold start: `digitlab predict one.png` in a new process (median of {args.cold_runs}) | "
        f"{statistics.median(cold):.2f} s |",
    ])
    print(table)
    if args.write:
        write_section("bench_predict", HEADING, table)


if __name__ == "__main__":
    main()
