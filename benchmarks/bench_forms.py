"""Read numbers as forms show them (issue 19, part 3): touching digits, boxes and comb fields,
ruled and squared paper, coloured ink on coloured paper.

    python benchmarks/bench_forms.py [--n 200] [--dev] [--kinds touching,boxes] [--model PATH]
                                     [--runtime auto] [--failures DIR] [--write]

Generates --n images of each kind (`benchmarks/forms.py`) from MNIST test digits 5000-9999
with seed 1 (the reported set; --dev: digits 0-4999 with seed 0, the set the code was tuned
on), reads each with `Predictor.predict_number` (what `digitlab predict --number` does) and
prints per kind the share of exactly read strings (and of strings whose digits the model reads
right from their own MNIST arrays, one at a time: the ceiling without form or segmentation),
the share of digits right (position by position, over the true string's length), and how many
answers were flagged uncertain.
--failures saves the misread images there; --write replaces the bench_forms section of
BENCHMARKS.md (refused with --dev: only the held-out set is reported).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import add_model_options, load_average, machine, model_arguments, model_name, write_model_section
from forms import DEV, KINDS, REPORT, generate

KEY = "bench_forms"
HEADING = "## Numbers on forms (issue 19, part 3): touching digits, boxes, ruled paper, coloured ink"
GOAL = 0.98  # issue 19: exact strings on each kind


def measure(predictor, kind: str, n: int, dev: bool, failures: Path | None) -> dict:
    indices, seed = DEV if dev else REPORT
    t0 = time.perf_counter()
    items = generate(kind, n, indices, seed, with_digits=True)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = predictor.predict_many([im for im, _, _ in items], mode="number")
    seconds = time.perf_counter() - t0
    # The recognition ceiling: each digit's own MNIST array read alone, no form, no segmentation
    probs = predictor.probabilities(np.concatenate([d for _, _, d in items]))
    alone, at = 0, 0
    for _, text, d in items:
        alone += "".join(str(int(k)) for k in probs[at:at + len(d)].argmax(axis=1)) == text
        at += len(d)
    exact = digits = total = flagged = flagged_wrong = 0
    wrong = []
    for i, ((im, text, _), r) in enumerate(zip(items, results)):
        got = getattr(r, "text", "")
        ok = got == text
        exact += ok
        digits += sum(a == b for a, b in zip(got, text)) if len(got) == len(text) else 0
        total += len(text)
        flag = bool(getattr(r, "uncertain", True))
        flagged += flag
        flagged_wrong += flag and not ok
        if not ok:
            wrong.append((i, text, got))
            if failures is not None:
                failures.mkdir(parents=True, exist_ok=True)
                im.save(failures / f"{kind}-{i:03d}-{text}-as-{got or 'none'}.png")
    return {"kind": kind, "n": n, "exact": exact / n, "alone": alone / n, "digits": digits / total, "flagged": flagged,
            "flagged_wrong": flagged_wrong, "wrong": wrong, "seconds": seconds, "generate_s": t_gen}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="images per kind (default 200)")
    ap.add_argument("--dev", action="store_true", help="the development set (MNIST test 0-4999, seed 0)")
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated kinds (default: all four)")
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--failures", default=None, help="save misread images to this directory")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    add_model_options(ap, KEY)
    args = ap.parse_args()
    if args.write and args.dev:
        ap.error("--write reports the held-out set only; drop --dev")
    from digitlab.predict.predictor import Predictor

    t0 = time.perf_counter()
    predictor = Predictor.load(args.model, runtime=args.runtime)
    load_s = time.perf_counter() - t0
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    rows = []
    for kind in kinds:
        r = measure(predictor, kind, args.n, args.dev, Path(args.failures) if args.failures else None)
        rows.append(r)
        examples = ", ".join(f"{t} as {g or '(none)'}" for _, t, g in r["wrong"][:4]) or "-"
        print(f"{kind}: exact {r['exact']:.3f} (digits alone {r['alone']:.3f}) digits {r['digits']:.3f} flagged {r['flagged']} "
              f"({r['flagged_wrong']} of {len(r['wrong'])} wrong) {r['seconds']:.1f} s; e.g. {examples}")
    info = predictor.info
    table = ["| kind | images | exact strings | the digits alone | digits right | flagged uncertain (of them wrong) | "
             f">= {GOAL:.0%} | misread, e.g. (true as read) | time |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        examples = ", ".join(f"{t} as {g or '(none)'}" for _, t, g in r["wrong"][:3]) or "-"
        table.append(f"| {r['kind']} | {r['n']} | **{r['exact'] * 100:.1f}%** | {r['alone'] * 100:.1f}% | "
                     f"{r['digits'] * 100:.1f}% | "
                     f"{r['flagged']} ({r['flagged_wrong']} of {len(r['wrong'])} misread) | "
                     f"{'yes' if r['exact'] >= GOAL else 'NO'} | {examples} | {r['seconds']:.1f} s |")
    indices, seed = DEV if args.dev else REPORT
    body = "\n".join([
        f"Command: `python benchmarks/bench_forms.py --n {args.n}{model_arguments(args, KEY)}"
        + (" --dev" if args.dev else "") + "`",
        f"Model: {model_name(args)} ({info.get('preset')}), runtime {info.get('runtime')}, loaded in {load_s:.1f} s; "
        f"images from `benchmarks/forms.py`, MNIST test digits {indices.start}-{indices.stop - 1}, seed {seed} "
        "(the code was tuned on digits 0-4999, seed 0); each a 2-6 digit string, digits 40-80 px high, "
        "blur, noise and JPEG. Read with `Predictor.predict_number` (`digitlab predict --number`). "
        "Exact: the whole string right; the digits alone: the string the model reads from its digits' own "
        "28x28 MNIST arrays, one at a time (no form, no segmentation: the recognition ceiling); "
        "digits: position by position where the length is right; "
        f"time: reading the {args.n} images of a kind. Goal (issue 19): >= {GOAL:.0%} exact on each kind.",
        f"Machine: {machine()}; load average {load_average()}.",
        "",
        *table,
    ])
    print(body)
    if args.write:
        write_model_section(args, KEY, HEADING, body)


if __name__ == "__main__":
    main()
