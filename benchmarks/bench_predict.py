"""Benchmark `digitlab predict`: decode + preprocess + inference per image, and cold start.

    python benchmarks/bench_predict.py [--n 1000] [--runtime auto] [--write]

Writes 1,000 user-style PNGs (MNIST test digits, black on white, 100x100) to a
temporary directory, then times (a) one image per call (`Predictor.predict`),
(b) batched (`prepare` every file, one model call per 256, as the CLI does),
(c) decode + preprocess of 280x280 canvas PNGs (what the web page sends), and
(d) the cold start of `digitlab predict one.png` in a new process (median of 3;
--cold-runs 0 skips it). Timings are medians of --repeats passes.
With --write, replaces the bench_predict section of BENCHMARKS.md.
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
    ap.add_argument("--canvas", type=int, default=100, help="280x280 canvas PNGs to time (default 100)")
    ap.add_argument("--repeats", type=int, default=3, help="passes per measurement; the median is kept")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args()

    from digitlab.data.mnist import load_mnist_data
    from digitlab.predict.predictor import CHUNK, Predictor

    data = load_mnist_data()
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i in range(args.n):
            path = Path(tmp) / f"d{i:04d}.png"
            Image.fromarray(255 - data.x_test[i]).resize((100, 100), Image.Resampling.BICUBIC).save(path)
            files.append(path)
        canvas = []
        for i in range(args.canvas):
            path = Path(tmp) / f"c{i:04d}.png"
            Image.fromarray(255 - data.x_test[i]).resize((280, 280), Image.Resampling.BILINEAR).save(path)
            canvas.append(path)
        predictor = Predictor.load(runtime=args.runtime)
        predictor.predict(files[0])  # warm up

        def timed(fn, count):  # seconds per item, median of the passes; the last pass's result
            times, out = [], None
            for _ in range(max(1, args.repeats)):
                t = time.perf_counter()
                out = fn()
                times.append((time.perf_counter() - t) / count)
            return statistics.median(times), out

        def batch():
            out = []
            for s in range(0, args.n, CHUNK):
                out += predictor.finish([predictor.prepare(f, mode="auto") for f in files[s:s + CHUNK]])
            return out

        t_single, single = timed(lambda: [predictor.predict(f) for f in files], args.n)
        t_batch, batched = timed(batch, args.n)
        t_prep, prepared = timed(lambda: [predictor.prepare(f, mode="digit") for f in files], args.n)
        t_model, _ = timed(lambda: predictor.finish(prepared), args.n)
        t_canvas, _ = timed(lambda: [predictor.prepare(f, mode="digit") for f in canvas], max(1, len(canvas)))
        acc = np.mean([r.label == y for r, y in zip(single, data.y_test[: args.n])])
        acc_batch = np.mean([getattr(r, "label", None) == y for r, y in zip(batched, data.y_test[: args.n])])
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
        f"Command: `{cmd}` · machine: {os.cpu_count()} CPU cores (shared, busy with other work while measured: "
        f"load average {os.getloadavg()[0]:.1f} at the end), "
        f"Python {platform.python_version()}, {platform.system()} {platform.machine()} · "
        f"model: shipped pretrained, runtime `{predictor.info['runtime']}` · "
        f"{args.n} PNG files, 100x100 black-on-white MNIST test digits (accuracy {acc * 100:.1f}% single, "
        f"{acc_batch * 100:.1f}% batched) · median of {args.repeats} passes",
        "",
        "| measurement | per image |",
        "|---|---|",
        f"| single: `Predictor.predict(path)` (decode + preprocess + 1 model call) | {t_single * 1e3:.2f} ms |",
        f"| batched: decode + preprocess (auto digit/number), one model call per {CHUNK} | {t_batch * 1e3:.2f} ms |",
        f"| &nbsp;&nbsp;of which decode + preprocess only | {t_prep * 1e3:.2f} ms |",
        f"| &nbsp;&nbsp;of which one model call for all {args.n} | {t_model * 1e3:.3f} ms |",
        (f"| decode + preprocess of a 280x280 canvas PNG (as the page sends; {len(canvas)} digits) | "
         f"{t_canvas * 1e3:.2f} ms |"),
    ] + ([f"| cold start: `digitlab predict one.png` in a new process (median of {args.cold_runs}) | "
          f"{statistics.median(cold):.2f} s |"] if cold else []))
    print(table)
    if args.write:
        write_section("bench_predict", HEADING, table)


if __name__ == "__main__":
    main()
