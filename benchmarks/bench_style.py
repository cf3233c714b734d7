"""Measure a model on the generated handwriting style (`digitlab.data.styles`): per-digit accuracy,
and (--finetune) what fine-tuning on a few of the writer's digits changes.

    python benchmarks/bench_style.py [--n 100] [--seed 0] [--model PATH] [--runtime auto] [--montage PNG]
                                     [--finetune 10,20 [--set KEY=VALUE ...]] [--write]

Generates --n user-style images per digit from the held-out ("test") pool and
the fine-tuning ("train") pool, sends each through the prediction path
(`preprocess.normalize_digit`, then the model, as `digitlab predict` does) and
prints per-digit accuracy with the most common wrong answer. The default
model is the shipped pretrained one: this is the "before" number of issue 13's
fine-tuning measurement. --montage saves a sheet of the first 6 test images
of each digit; with --write, replaces the bench_style section of BENCHMARKS.md.

--finetune K1,K2,...: for each K, writes K images per digit of the "train"
pool as an image folder, fine-tunes the model on it exactly as
`digitlab train --data DIR --init pretrained` does (the Python API's `train`,
its defaults: MNIST replay, a few epochs at a low learning rate, the
forgetting budget; --set changes Config fields), and measures the fine-tuned model on the held-out
"test" pool (the same --n images per digit as the before column) and on the
MNIST test set. Issue 13's target: MNIST test accuracy >= 99.5% after.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import load_average, machine, write_section

HEADING = "## Handwriting style (`digitlab.data.styles`): the shipped model before and after fine-tuning"
MNIST_TARGET = 0.995  # issue 13: MNIST test accuracy after fine-tuning


def accuracy_table(model: str | None, runtime: str, n: int, seed: int) -> tuple[str, dict]:
    from digitlab.data import styles
    from digitlab.predict.predictor import Predictor

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


def finetune_table(model: str | None, ks: list[int], n: int, seed: int, overrides: dict) -> tuple[str, list]:
    """Fine-tune on K images per digit for each K; held-out style and MNIST test accuracy, before and after."""
    import tempfile
    from pathlib import Path

    from digitlab import train
    from digitlab.data import styles
    from digitlab.predict.predictor import Predictor

    x_test, y_test = styles.generate(n, pool="test", seed=seed)
    before = Predictor.load(model, runtime="keras").probabilities(x_test).argmax(axis=1)
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="bench_style-") as tmp:
        for k in ks:
            folder = styles.write_folder(Path(tmp) / f"style-{k}", k, pool="train", seed=seed)
            t0 = time.perf_counter()
            result = train(init=model or "pretrained", data=str(folder), out=str(Path(tmp) / "runs"),
                           name=f"style-{k}", **overrides)
            seconds = time.perf_counter() - t0
            after = Predictor.load(str(result.run_dir), runtime="keras").probabilities(x_test).argmax(axis=1)
            mnist = result.metrics["finetune"]["test_sets"]["mnist"]
            blend = (result.metrics["finetune"].get("mnist_validation") or {}).get("blend")
            per_digit = [float(np.mean(after[y_test == d] == d)) for d in range(10)]
            results.append({"k": k, "style_before": float(np.mean(before == y_test)),
                            "style_after": float(np.mean(after == y_test)), "mnist_before": mnist["before"],
                            "mnist_after": mnist["after"], "seconds": seconds, "per_digit": per_digit,
                            "blend": blend})
            r = results[-1]
            rows.append(f"| {k} ({10 * k} images) | {r['style_before'] * 100:.1f}% | **{r['style_after'] * 100:.1f}%** | "
                        f"{min(per_digit) * 100:.0f}% (digit {int(np.argmin(per_digit))}) | "
                        f"{r['mnist_before'] * 100:.2f}% | **{r['mnist_after'] * 100:.2f}%** | "
                        f"{'yes' if r['mnist_after'] >= MNIST_TARGET else 'NO'} | "
                        f"{'-' if blend is None else f'{blend:.0%}'} | {seconds:.0f} s |")
    sets = " ".join(f"--set {key}={value}" for key, value in overrides.items())
    body = "\n".join([
        "",
        "### Fine-tuning on the writer's digits (`digitlab train --data DIR --init pretrained`)",
        "",
        f"Command: `python benchmarks/bench_style.py --n {n} --seed {seed} --finetune {','.join(map(str, ks))}"
        + (f" --model {model}" if model else "") + (f" {sets}" if sets else "") + "`",
        f"Each row fine-tunes {'the shipped model' if model is None else model} on K images per digit of the "
        f"writer's \"train\" pool (the fine-tuning defaults, `presets.FINETUNE_DEFAULTS`, with MNIST replay), "
        f"then measures the held-out \"test\" pool ({n} images per digit, never trained on) and the MNIST test "
        f"set (10,000). Target: MNIST test >= {MNIST_TARGET * 100:.1f}% after. Kept: the share of the "
        "fine-tuned change the forgetting budget kept (`Config.forgetting_budget`: the weights are blended "
        "back towards the shipped model's until MNIST validation accuracy is within budget). Time: the "
        "whole `train` call (loading, fine-tuning, the budget check, calibration, evaluation).",
        "",
        "| K per digit | held-out style before | after | weakest digit after | MNIST test before | after | "
        ">= 99.5% | kept | time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
    ])
    return body, results


def montage(path: str, seed: int) -> None:
    from PIL import Image

    from digitlab.data import styles

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
    ap.add_argument("--finetune", default=None, metavar="K1,K2",
                    help="fine-tune on K images per digit for each K and measure before/after (e.g. 10,20)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="Config field for the fine-tuning runs (repeatable), as digitlab train --set")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args()
    body, _ = accuracy_table(args.model, args.runtime, args.n, args.seed)
    if args.finetune:
        from digitlab.config.settings import parse_overrides

        ks = [int(k) for k in args.finetune.split(",") if k.strip()]
        tuned, _ = finetune_table(args.model, ks, args.n, args.seed, parse_overrides(args.set))
        body += "\n" + tuned
    print(body)
    if args.montage:
        montage(args.montage, args.seed)
    if args.write:
        write_section("bench_style", HEADING, body)


if __name__ == "__main__":
    main()
