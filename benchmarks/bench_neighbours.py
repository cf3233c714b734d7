"""Benchmark the nearest-training-example search: exact numpy search per class, ms per query.

    python benchmarks/bench_neighbours.py [--queries 300] [--full] [--write]

For the shipped model's index (the first 1,000 training images of each class) and, with
--full, an index of all 60,000 training images built for a temporary copy of the shipped model
(needs TensorFlow, about a minute): the time to load the index, and per query (one MNIST test
digit) the embedding (ONNX Runtime), the search of the top-3 classes, and the 15 PNGs the API
sends; beside them, the model's own prediction of one image, as the ratio a user pays extra.
Medians over --queries test digits. With --write, replaces the bench_neighbours section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import load_average, machine, write_section

HEADING = "## Nearest training examples (digitlab neighbours)"


def _median_ms(fn, items) -> float:
    times = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def measure(folder: Path, digits: np.ndarray, label: str) -> dict:
    from digitlab.predict import Predictor
    from digitlab.predict.neighbours import NeighbourIndex

    t0 = time.perf_counter()
    index = NeighbourIndex(folder)
    load_s = time.perf_counter() - t0
    predictor = Predictor.load(folder, runtime="onnx" if (folder / "model.onnx").is_file() else "keras")
    top3 = [[int(k) for k in np.argsort(-p)[:3]] for p in predictor.probabilities(digits)]
    embeddings = index.embed(digits)
    pairs = list(zip(embeddings, top3))
    found = index.for_input(digits[0], top3[0])
    return {
        "label": label, "size": index.size, "dims": index.dims, "load_s": load_s,
        "predict_ms": _median_ms(lambda d: predictor.probabilities(d[None]), digits),
        "embed_ms": _median_ms(lambda d: index.embed(d[None]), digits),
        "search_ms": _median_ms(lambda p: [index.nearest(p[0], c) for c in p[1]], pairs),
        "query_ms": _median_ms(lambda i: index.for_input(digits[i], top3[i]), range(len(digits))),
        "png_ms": _median_ms(lambda _: [n.to_dict() for n in found], range(min(50, len(digits)))),
        "file_mb": (folder / "neighbours.npz").stat().st_size / 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--full", action="store_true", help="also build and time a 60,000-image index (TensorFlow)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()

    from digitlab.data.mnist import load_mnist_data
    from digitlab.runs.artifacts import pretrained_dir

    digits = load_mnist_data().x_test[: args.queries]
    rows = [measure(pretrained_dir(), digits, "shipped model, 1,000 per class")]
    if args.full:
        from digitlab.export.neighbours import build_index

        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for name in ("model.keras", "config.json", "metrics.json", "model.onnx", "model.onnx.json"):
                shutil.copy(pretrained_dir() / name, folder / name)
            t0 = time.perf_counter()
            build_index(folder)
            build_s = time.perf_counter() - t0
            rows.append({**measure(folder, digits, "shipped model, all 60,000"), "build_s": build_s})
    lines = [f"Machine: {machine()}; load average {load_average()}. Command: "
             f"`python benchmarks/bench_neighbours.py --queries {args.queries}{' --full' if args.full else ''} --write`.",
             "", "| index | images x dims | file | load | predict one image | embed | search top-3 | "
             "whole query | 15 PNGs |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['size']:,} x {r['dims']} | {r['file_mb']:.1f} MB | {r['load_s']:.2f} s | "
                     f"{r['predict_ms']:.3f} ms | {r['embed_ms']:.3f} ms | {r['search_ms']:.3f} ms | "
                     f"{r['query_ms']:.3f} ms ({r['query_ms'] / r['predict_ms']:.1f}x a prediction) | "
                     f"{r['png_ms']:.2f} ms |")
    if any("build_s" in r for r in rows):
        lines += ["", "Building the 60,000-image index (embedding.onnx conversion, parity check, 60,000 "
                  f"embeddings, compressed npz): {rows[-1]['build_s']:.0f} s."]
    lines += ["", "Exact search (one matrix-vector product per asked class, then a partial sort) is fast "
              "enough: no approximate index is needed at this size."]
    body = "\n".join(lines)
    print(body)
    if args.write:
        write_section("bench_neighbours", HEADING, body)


if __name__ == "__main__":
    sys.exit(main())
