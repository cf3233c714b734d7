"""Measure a model on the generated handwriting style (`digitlab.styles`): per-digit accuracy.

    python benchmarks/bench_style.py [--n 100] [--seed 0] [--model PATH] [--runtime auto] [--montage PNG] [--write]

Generates --n user-style images per digit from the held-out ("test") pool and
the fine-tuning ("train") pool, sends each through the prediction path
(`preprocess.normalize_digit`, then the model, as `digitlab predict` does) and
prints per-digit accuracy with the most common wrong answer. The default
model is the shipped pretrained one: this is the "before" number of issue 13's
fine-tuning measurement. --montage saves a sheet of the first 6 test images
of each digit; with --write, replaces the bench_style section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import load_average, machine, write_section

HEADING = "## Handwriting style (`digitlab.styles`): the shipped model before fine-tuning"


def accuracy_table(model: str | None, runtime: str, n: int, seed: int) -> tuple[str, dict]:
    from digitlab import styles
    from digitlab.predict import Predictor

    predictor = Predictor.load(model, runtime=runtime)
    results = {}
    for pool in ("test", "train"):
        t0 = time.perf_counter()
        x, y = styles.generate(n, pool=pool, seed=seed)
        pred = predictor.probabilities(x).argmax(axis=1)
        results[pool] = (y, pred, time.perf_counter() - t0)
    y, pred, seconds = results["test"]
    y_tr, pred_tr, _ = results["train"]
    rows = ["| digit | the writer's form | held-out accuracy | read as (wrong answers) | train-pool accuracy |",
            "| --- | --- | --- | --- | --- |"]
    forms = {0: "slashed", 1: "long flag, no foot", 2: "looped", 3: "flat top", 4: "open top",
             5: "detached flag", 6: "loop left open", 7: "crossed, hooked top", 8: "two triangles",
             9: "hooked tail"}
    for d in range(10):
        mine = pred[y == d]
        wrong = np.bincount(mine[mine != d], minlength=10)
        read_as = ", ".join(f"{k} x{wrong[k]}" for k in np.argsort(-wrong)[:2] if wrong[k]) or "-"
        rows.append(f"| {d} | {forms[d]} | {np.mean(mine == d) * 100:.0f}% | {read_as} | "
                    f"{np.mean(pred_tr[y_tr == d] == d) * 100:.0f}% |")
    rows.append(f"| all | | **{np.mean(pred == y) * 100:.1f}%** | | {np.mean(pred_tr == y_tr) * 100:.1f}% |")
    info = predictor.info
    body = "\n".join([
        f"Command: `python benchmarks/bench_style.py --n {n} --seed {seed}"
        + (f" --model {model}" if model else "") + "`",
        f"Model: {'the shipped pretrained model' if model is None else model} ({info.get('preset')}, "
        f"{(info.get('test_accuracy') or 0) * 100:.2f}% on MNIST test), runtime {info.get('runtime')}; "
        f"{n} images per digit and pool; generating and predicting {10 * n} images took {seconds:.1f} s.",
        f"Machine: {machine()}; load average {load_average()}.",
        "",
        *rows,
    ])
    return body, {"accuracy": float(np.mean(pred == y))}


def montage(path: str, seed: int) -> None:
    from PIL import Image

    from digitlab import styles

    pairs = styles.images(6, pool="test", seed=seed)
    sheet = Image.new("L", (styles.CANVAS * 10, styles.CANVAS * 6), 255)
    for i, (d, img) in enumerate(pairs):
        sheet.paste(img, (d * styles.CANVAS, (i % 6) * styles.CANVAS))
    sheet.save(path)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="images per digit and pool (default 100)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="model directory or file (default: the shipped model)")
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--montage", default=None, help="save a sheet of test-pool images to this PNG")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args()
    body, _ = accuracy_table(args.model, args.runtime, args.n, args.seed)
    print(body)
    if args.montage:
        montage(args.montage, args.seed)
    if args.write:
        write_section("bench_style", HEADING, body)


if __name__ == "__main__":
    main()
