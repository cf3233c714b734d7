"""Benchmark robustness: the 15 MNIST-C corruptions, read back through the full `Predictor` path.

    python benchmarks/bench_corruptions.py [--limit N] [--seed 0] [--write] [--montage docs/corruptions.png]
                                           [--model PATH --label TEXT --key SECTION]

MNIST-C (Mu & Gilmer 2019, google-research/mnist-c `corruptions.py`) corrupts the MNIST test
set 15 ways; the corruptions are those of benchmarks/mnist_c.py (the standard benchmark on raw
arrays is benchmarks/bench_mnist_c.py). This one asks what a user sees: each corrupted test
image is saved as a PNG file, read back by `Predictor.predict_many` (decode, preprocess, model: file in,
label out) with the shipped model, and scored. A second column feeds the same corrupted 28x28
arrays straight to the model (`Predictor.probabilities`), separating the model's own
robustness from what preprocessing does to the picture.
With --write, replaces the bench_corruptions section of BENCHMARKS.md; --montage saves one
example of each (and what the model was given) as a figure.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from _common import ROOT, add_model_options, load_average, machine, model_arguments, model_name, write_model_section
from mnist_c import CORRUPTIONS, EFFECT, corrupt

HEADING = "## Robustness: MNIST-C corruptions through `Predictor`"


# --------------------------------------------------------------------------- the benchmark


def _score(predictor, files: list[Path], chunk: int = 1000) -> list:
    """`Predictor.predict_many` on the files (file in, label out), a chunk at a time; an unreadable
    file gives its ImageError in its place."""
    results = []
    for s in range(0, len(files), chunk):
        results += predictor.predict_many([str(f) for f in files[s:s + chunk]])
    return results


def _answer(r, truth: int) -> str:
    if getattr(r, "label", None) is None:
        return "no digit"
    return f"-> {r.label} {r.confidence * 100:.0f}% {'ok' if r.label == truth else 'wrong'}"


def _why(acc: float, empty: float, raw: float, wrong: Counter) -> str:
    """Where the errors come from, read off the two columns: preprocessing or the model."""
    total = sum(wrong.values())
    top = ", ".join(f"{k} ({v / total * 100:.0f}%)" for k, v in wrong.most_common(2)) if total else "none"
    if empty >= 0.2:
        where = (f"preprocessing finds no digit in {empty * 100:.0f}% of them (the model on the raw array "
                 f"scores {raw * 100:.1f}%)")
    elif acc < raw - 0.03:
        where = f"preprocessing makes it worse (the raw array scores {raw * 100:.1f}%)"
    elif raw < 0.85:
        where = f"the model itself: the raw array scores {raw * 100:.1f}% too"
    else:
        where = f"the raw array scores {raw * 100:.1f}%"
    return f"{where}; wrong answers mostly {top}"


def montage(path: Path, corrupted: dict[str, np.ndarray], seen: dict, answers: dict) -> None:
    """One example per corruption: the file sent (top) and the model input (below), with the answer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from digitlab.files.atomic import atomic_path

    names = list(corrupted)
    cols = 8
    rows = 2 * ((len(names) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.45, rows * 1.6))
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_color("0.75")
    for k, name in enumerate(names):
        r, c = 2 * (k // cols), k % cols
        axes[r, c].imshow(corrupted[name], cmap="gray", vmin=0, vmax=255)
        axes[r, c].set_title(name.replace("_", " "), fontsize=8)
        inp = seen[name]
        axes[r + 1, c].imshow(np.zeros((28, 28)) if inp is None else inp, cmap="gray", vmin=0, vmax=255)
        axes[r + 1, c].set_title(answers[name], fontsize=7, color="tab:red" if "wrong" in answers[name] else "black")
    fig.suptitle("MNIST-C corruptions: the PNG file sent (odd rows) and what the model was given (even rows)",
                 fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=10000, help="MNIST test images per corruption (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--example", type=int, default=0, help="test image shown in the montage")
    ap.add_argument("--montage", type=Path, default=None, help="save the example figure here (docs/corruptions.png)")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    add_model_options(ap, "bench_corruptions")
    args = ap.parse_args()

    from PIL import Image

    from digitlab.data.mnist import load_mnist_data
    from digitlab.predict.predictor import Predictor

    data = load_mnist_data()
    x, y = data.x_test[:args.limit], data.y_test[:args.limit]
    predictor = Predictor.load(args.model)
    rows, seen, answers, examples, wrong = [], {}, {}, {}, {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in ["identity", *CORRUPTIONS]:
            t = time.perf_counter()
            xc = corrupt(name, x, args.seed)
            files = []
            for i, img in enumerate(xc):
                files.append(Path(tmp) / f"{name}_{i:05d}.png")
                Image.fromarray(img, "L").save(files[-1])
            results = _score(predictor, files)
            correct = np.array([getattr(r, "label", None) == t for r, t in zip(results, y)])
            empty = np.array([bool(getattr(r, "no_digit", True)) for r in results])  # ImageError counts
            unsure = np.array([bool(getattr(r, "uncertain", True)) for r in results])
            raw = predictor.probabilities(xc).argmax(axis=1) == y
            for f in files:
                f.unlink()
            rows.append((name, correct.mean(), empty.mean(), unsure.mean(), raw.mean()))
            wrong[name] = Counter(r.label for r, t in zip(results, y) if getattr(r, "label", None) not in (None, t))
            e = args.example
            examples[name], seen[name] = xc[e], getattr(results[e], "model_input", None)
            answers[name] = _answer(results[e], int(y[e]))
            print(f"{name:14s} file {correct.mean() * 100:6.2f}%  no digit {empty.mean() * 100:5.2f}%  "
                  f"uncertain {unsure.mean() * 100:5.2f}%  raw 28x28 {raw.mean() * 100:6.2f}%  "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
    elapsed = time.perf_counter() - t0
    if args.montage:
        montage(args.montage if args.montage.is_absolute() else ROOT / args.montage, examples, seen, answers)

    body = [r for r in rows if r[0] != "identity"]
    mean_file = np.mean([r[1] for r in body])
    mean_raw = np.mean([r[4] for r in body])
    below = [r[0] for r in body if r[1] < 0.85]
    cmd = "python benchmarks/bench_corruptions.py" + (f" --limit {args.limit}" if args.limit != 10000 else "") + \
        (f" --seed {args.seed}" if args.seed else "") + \
        model_arguments(args, "bench_corruptions") + \
        (" --montage docs/corruptions.png" if args.montage else "") + " --write"
    who = model_name(args)
    lines = [
        f"Command: `{cmd}` · machine: {machine()}; load average {load_average()} at the end; "
        f"{elapsed:.0f} s in all · model: {who} (`{predictor.info.get('preset')}`, {predictor.info.get('model_id')}), "
        f"runtime `{predictor.info['runtime']}`, uncertain below {predictor.threshold:.3f}"
        + (f", not a digit above {predictor.not_digit_above:.3f}" if predictor.not_digit_above is not None else "")
        + f" · {len(x):,} MNIST test "
        f"images per corruption, each saved as a 28x28 PNG and read back with `Predictor.predict_many` "
        "(decode + preprocess + model). The 15 corruptions and their severities follow the reference "
        "implementation (google-research/mnist-c `corruptions.py`), re-implemented with numpy/scipy "
        "in `benchmarks/mnist_c.py`; examples: [docs/corruptions.png](docs/corruptions.png).",
        "",
        "| corruption | accuracy (file in, label out) | no digit | flagged (uncertain, no digit or not a digit) | "
        "accuracy, raw 28x28 array to the model |",
        "|---|---|---|---|---|",
    ]
    for name, acc, empty, unsure, raw in rows:
        label = "none (clean test set)" if name == "identity" else name.replace("_", " ")
        flag = " **(< 85%)**" if name != "identity" and acc < 0.85 else ""
        lines.append(f"| {label} | {acc * 100:.2f}%{flag} | {empty * 100:.2f}% | {unsure * 100:.2f}% | {raw * 100:.2f}% |")
    notes = [f"- **{name.replace('_', ' ')}** ({EFFECT[name]}): "
             f"{_why(acc, empty, raw, wrong[name])}" for name, acc, empty, unsure, raw in body if acc < 0.85]
    lines += [
        f"| **mean of the 15** | **{mean_file * 100:.2f}%** | | | **{mean_raw * 100:.2f}%** |",
        "",
        f"Goal (issue 9): mean >= 95%, none below 85%. Measured: mean {mean_file * 100:.1f}%"
        f" ({'met' if mean_file >= 0.95 else 'not met'}); below 85%: {', '.join(below) if below else 'none'}. "
        "A standard CNN on the raw arrays (the tutorial's, no augmentation): the baseline column of the "
        "MNIST-C section (bench_mnist_c.py).",
    ] + (["", "Where the ones below 85% fail (the montage shows the file sent and the model input):", ""]
         + notes if notes else [])
    table = "\n".join(lines)
    print(table)
    if args.write:
        write_model_section(args, "bench_corruptions", HEADING, table)


if __name__ == "__main__":
    main()
