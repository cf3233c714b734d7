"""Benchmark: MNIST-C as the paper runs it, the 15 corruptions of the 10,000 MNIST test digits,
each 28x28 array given straight to the model.

    python benchmarks/bench_mnist_c.py [--limit N] [--seed 0] [--raw-only] [--baseline seed|PATH|none]
                                       [--write] [--montage docs/mnist_c.png] [--model PATH --label TEXT --key SECTION]

Mu & Gilmer (2019) evaluate models on the corrupted arrays themselves: here the model input is
the corrupted uint8 array times the model's input scale (1/255), through the model's runner
(`Predictor.probabilities`), no preprocessing. Per corruption the table gives that accuracy and
its risk-coverage point at the model's own uncertain threshold (config.json `uncertain_below`):
the share of answers at or above it (coverage) and their accuracy. A second set of columns
asks what a user sees: each corrupted array saved as a PNG file (in memory) and read by
`Predictor.predict_many` (decode, find the digit, re-centre, model: file in, label out;
flagged = uncertain, no digit or not a digit); --raw-only leaves it out. The corruptions are
benchmarks/mnist_c.py's (the reference's severities).

The baseline column is a standard CNN on the same raw arrays: the tutorial's seed CNN
(Conv32-Pool-Conv64-Pool-Dense64-Dense10, Adam, 10 epochs, no augmentation), trained here
from scratch (`--baseline seed`, about 80 s) or loaded (`--baseline PATH`). It stands where the
paper's own CNN row would, measured rather than quoted (see the note the table carries).
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from _common import ROOT, add_model_options, load_average, machine, model_arguments, model_name, write_model_section
from mnist_c import CORRUPTIONS, SEVERITY, corrupt

HEADING = "## Robustness: MNIST-C (Mu & Gilmer 2019), raw 28x28 arrays and as files through `predict`"
KEY = "bench_mnist_c"
CHUNK = 1000  # images per preprocessing call: bounded memory for the answers' model inputs
HELD_OUT = 5000  # the preprocessing for these corruptions was developed on test indices below this (issue 19):
# the summary also gives the through-preprocessing figures on the indices from here on, which it was not tuned on


def raw_scores(predictor, xc: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy of the raw arrays, and the risk-coverage point at the model's uncertain threshold."""
    probs = predictor.probabilities(xc)
    right = probs.argmax(axis=1) == y
    answered = probs.max(axis=1) >= predictor.threshold
    return {"accuracy": right.mean(), "coverage": answered.mean(),
            "answered_accuracy": right[answered].mean() if answered.any() else float("nan"),
            "example": (int(probs[0].argmax()), float(probs[0].max()))}


def baseline_predictor(spec: str):
    """The baseline model: a run or model directory, or a preset name trained here (seed 42) into
    a temporary runs directory; None for "none"."""
    from digitlab.predict.predictor import Predictor

    if spec == "none":
        return None, None
    if Path(spec).exists():
        return Predictor.load(spec), spec
    import tempfile

    from digitlab.pipeline import train

    tmp = tempfile.mkdtemp(prefix="digitlab-baseline-")
    print(f"training the baseline (preset {spec}) into {tmp}", flush=True)
    result = train(spec, out=tmp)
    return Predictor.load(str(result.run_dir)), f"preset `{spec}` trained here (seed 42)"


def _png(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def preprocessed_scores(predictor, xc: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The same as a user's files: each array a PNG file (in memory), read by the whole prediction
    path (decode, preprocess, model); a flagged answer (uncertain, no digit, not a digit) is not
    answered, and "no digit" counts as wrong."""
    results = []
    for s in range(0, len(xc), CHUNK):
        results += predictor.predict_many([_png(a) for a in xc[s:s + CHUNK]])
    right = np.array([getattr(r, "label", None) == t for r, t in zip(results, y)])
    answered = ~np.array([bool(getattr(r, "uncertain", True)) for r in results])  # an ImageError is flagged
    return {"accuracy": right.mean(), "coverage": answered.mean(),
            "answered_accuracy": right[answered].mean() if answered.any() else float("nan"), "right": right}


def montage(path: Path, examples: dict[str, np.ndarray], captions: dict[str, str]) -> None:
    """One example per corruption (the same test digit), with the model's answer on the raw array."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from digitlab.files.atomic import atomic_path

    names = list(examples)
    cols = 8
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.4, rows * 1.9))
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():  # a frame: white regions (stripe) stay visible on the page
            side.set_color("0.6")
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    for k, name in enumerate(names):
        ax = axes.ravel()[k]
        ax.imshow(examples[name], cmap="gray", vmin=0, vmax=255)
        title = "clean" if name == "identity" else name.replace("_", " ")
        ax.set_title(f"{title}\n{captions[name]}", fontsize=7,
                     color="tab:red" if "wrong" in captions[name] else "black")
    fig.suptitle("MNIST-C (the reference's severities): test digit 0 under each corruption, "
                 "and the model's answer on the raw array", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    print(f"wrote {path}")


def _held_out(body: list, start: int) -> list[str]:
    """The through-preprocessing mean and worst on the test indices >= HELD_OUT in this run."""
    first = max(0, HELD_OUT - start)
    if first >= len(body[0][2]["right"]):
        return []
    accs = [(float(p["right"][first:].mean()), name.replace("_", " ")) for name, _, p, _ in body]
    n = len(body[0][2]["right"]) - first
    return ["", f"Through preprocessing on the {n:,} test images from index {start + first} on, which the "
            f"preprocessing was not developed on: mean of the 15 {np.mean([a for a, _ in accs]) * 100:.2f}%, "
            f"worst {min(accs)[1]} {min(accs)[0] * 100:.2f}%."]


def _goals(body: list) -> str:
    """The issues' goals for the through-preprocessing figures, and whether they are met."""
    accs = [float(p["accuracy"]) for _, _, p, _ in body]
    mean, worst = float(np.mean(accs)), min(accs)
    out = []
    for issue, goal_mean, goal_worst in (("9", 0.95, 0.85), ("19", 0.97, 0.90)):
        met = mean >= goal_mean and worst >= goal_worst
        out.append(f"issue {issue}, mean >= {goal_mean:.0%} and none below {goal_worst:.0%}: "
                   f"{'met' if met else 'NOT met'}")
    return (f"Goals through preprocessing (mean {mean * 100:.2f}%, worst {worst * 100:.2f}%): "
            + "; ".join(out) + ".")


def _pct(v: float) -> str:
    return "n/a" if v != v else f"{v * 100:.2f}%"


def table(rows: list[tuple[str, dict, dict | None, float | None]], threshold: float) -> list[str]:
    """The Markdown table: clean row, the 15, their mean and the worst."""
    pre = rows[0][2] is not None
    base = rows[0][3] is not None
    head = ["corruption", "reference setting (severity of 5)"] + (["baseline CNN, raw array"] if base else []) + [
            "accuracy, raw array",
            f"answered (confidence >= {threshold:.3f})", "accuracy of the answered"]
    if pre:
        head += ["accuracy through preprocessing", "answered (not flagged)", "accuracy of the answered"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cells(r: dict, p: dict | None) -> list[str]:
        out = [_pct(r["accuracy"]), _pct(r["coverage"]), _pct(r["answered_accuracy"])]
        return out + ([_pct(p["accuracy"]), _pct(p["coverage"]), _pct(p["answered_accuracy"])] if p else [])

    for name, r, p, b in rows:
        label, setting = ("none (clean test set)", "") if name == "identity" else (name.replace("_", " "), SEVERITY[name])
        lines.append("| " + " | ".join([label, setting, *([_pct(b)] if base else []), *cells(r, p)]) + " |")
    body = rows[1:]

    def mean(key: str, which: int) -> float:
        return float(np.mean([row[which][key] for row in body]))

    m_raw = {k: mean(k, 1) for k in ("accuracy", "coverage", "answered_accuracy")}
    m_pre = {k: mean(k, 2) for k in ("accuracy", "coverage", "answered_accuracy")} if pre else None
    m_base = [f"**{_pct(float(np.mean([row[3] for row in body])))}**"] if base else []
    lines.append("| " + " | ".join(["**mean of the 15**", "", *m_base, *(f"**{c}**" for c in cells(m_raw, m_pre))])
                 + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=10000, help="MNIST test images (default: all 10,000)")
    ap.add_argument("--start", type=int, default=0,
                    help="first MNIST test image (e.g. 5000: a half not used to develop the preprocessing)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the corruptions' randomness")
    ap.add_argument("--raw-only", action="store_true", help="skip the through-preprocessing columns")
    ap.add_argument("--baseline", default="seed",
                    help="the baseline CNN column: a preset trained here (default: seed, the tutorial's CNN), "
                         "a run or model directory, or none")
    ap.add_argument("--montage", type=Path, default=None, help="save one example per corruption (docs/mnist_c.png)")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    add_model_options(ap, KEY)
    args = ap.parse_args()
    if args.limit < 1:
        ap.error("--limit must be at least 1")
    if not 0 <= args.start < 10000:
        ap.error("--start must be between 0 and 9999")

    from digitlab.data.mnist import load_mnist
    from digitlab.predict.predictor import Predictor

    _, (x_test, y_test) = load_mnist()
    x, y = x_test[args.start:args.start + args.limit], y_test[args.start:args.start + args.limit]
    predictor = Predictor.load(args.model)
    t0 = time.perf_counter()
    baseline, baseline_name = baseline_predictor(args.baseline)
    t_base = time.perf_counter() - t0
    rows, examples, captions = [], {}, {}
    t_corrupt = t_raw = t_pre = 0.0
    for name in ["identity", *CORRUPTIONS]:
        t = time.perf_counter()
        xc = corrupt(name, x, args.seed)
        t_corrupt += time.perf_counter() - (t1 := t)
        t = time.perf_counter()
        r = raw_scores(predictor, xc, y)
        t_raw += time.perf_counter() - t
        t = time.perf_counter()
        p = None if args.raw_only else preprocessed_scores(predictor, xc, y)
        t_pre += time.perf_counter() - t
        t = time.perf_counter()
        b = None if baseline is None else float((baseline.probabilities(xc).argmax(axis=1) == y).mean())
        t_base += time.perf_counter() - t
        rows.append((name, r, p, b))
        label, conf = r["example"]
        examples[name] = xc[0]
        captions[name] = f"-> {label} {conf * 100:.0f}% {'ok' if label == y[0] else 'wrong'}"
        print(f"{name:14s} raw {r['accuracy'] * 100:6.2f}% (answered {r['coverage'] * 100:6.2f}%, "
              f"{r['answered_accuracy'] * 100:6.2f}% right)"
              + ("" if p is None else f"  preprocessed {p['accuracy'] * 100:6.2f}%")
              + ("" if b is None else f"  baseline {b * 100:6.2f}%")
              + f"  ({time.perf_counter() - t1:.0f} s)", flush=True)
    elapsed = time.perf_counter() - t0
    if args.montage:
        montage(args.montage if args.montage.is_absolute() else ROOT / args.montage, examples, captions)

    body = rows[1:]
    accs = [(r["accuracy"], name) for name, r, _, _ in body]
    worst = min(accs)
    cmd = ("python benchmarks/bench_mnist_c.py" + (f" --start {args.start}" if args.start else "")
           + (f" --limit {args.limit}" if args.limit != 10000 else "")
           + (f" --seed {args.seed}" if args.seed else "") + (" --raw-only" if args.raw_only else "")
           + (f" --baseline {args.baseline}" if args.baseline != "seed" else "")
           + model_arguments(args, KEY) + (" --montage docs/mnist_c.png" if args.montage else "") + " --write")
    lines = [
        f"Command: `{cmd}` · machine: {machine()}; load average {load_average()} at the end; "
        f"{elapsed:.0f} s in all (corrupting {t_corrupt:.0f} s, model on raw arrays {t_raw:.0f} s"
        + ("" if args.raw_only else f", through preprocessing {t_pre:.0f} s")
        + ("" if baseline is None else f", baseline training and scoring {t_base:.0f} s") + ") · model: "
        f"{model_name(args)} (`{predictor.info.get('preset')}`, {predictor.info.get('model_id')}), runtime "
        f"`{predictor.info['runtime']}`, uncertain below {predictor.threshold:.3f} · {len(x):,} MNIST test images "
        f"per corruption{f' (test indices {args.start}-{args.start + len(x) - 1})' if args.start else ''}, "
        f"seed {args.seed}. The 15 corruptions of MNIST-C at the severities of the published "
        "dataset (the reference implementation's defaults, google-research/mnist-c `corruptions.py`), "
        "re-implemented with numpy/scipy in `benchmarks/mnist_c.py`; examples: [docs/mnist_c.png](docs/mnist_c.png). "
        "Raw array = what the paper evaluates: the corrupted 28x28 array / 255 straight to the model. "
        "Through preprocessing = what a user's file gets: each corrupted array saved as a PNG file and read by "
        "`Predictor.predict_many` (decode, preprocess, model). "
        "Answered = the answers the model does not flag uncertain (confidence at or above its `uncertain_below`); "
        "through preprocessing, flagged also counts no digit and not a digit.",
        "",
        *table(rows, predictor.threshold),
        "",
        f"Clean: {rows[0][1]['accuracy'] * 100:.2f}% · mean of the 15 (raw arrays): "
        f"{np.mean([a for a, _ in accs]) * 100:.2f}% · worst: {worst[1].replace('_', ' ')} {worst[0] * 100:.2f}%"
        + ("" if args.raw_only else " (through preprocessing: {1} {0:.2f}%)".format(
            *min((p["accuracy"] * 100, name.replace("_", " ")) for name, _, p, _ in body))) + ".",
        *([] if args.raw_only else _held_out(body, args.start)),
        *([] if args.raw_only else ["", _goals(body)]),
        "",
        ("Baseline CNN: the tutorial's seed CNN (" + str(baseline_name) + "), no augmentation, the same raw "
         "arrays: a standard MNIST CNN of the kind the paper's baseline is, measured here. The paper's own "
         "per-corruption figures (arXiv:1906.02337) are not quoted: they are in the paper, not in the "
         "reference repository, and no copy of its table could be checked from this machine. " if baseline else
         "No baseline column (--baseline none). ") +
        "The shipped model is not a held-out test of the benchmark either: its training "
        "augmentation (`Config.corruptions`, `digitlab.models.augment`) includes corruptions of its own "
        "(blur, a one-sided motion smear, noise, lines, zigzags, outlines) that resemble several of "
        "these; none of MNIST-C's code is used in training (tests/test_mnist_c.py checks that nothing "
        "under src/digitlab imports it).",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_model_section(args, KEY, HEADING, text)


if __name__ == "__main__":
    main()
