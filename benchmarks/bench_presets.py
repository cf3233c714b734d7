"""Presets head to head, beside the official Keras example: time-to-accuracy, hardware use, inference.

Every (preset, seed) trains in its own child process (so peak RSS is its own)
and all of them run in ONE invocation, one after another, so their times are
comparable. The training clock is the wall time inside `fit` (validation
included, since training needs it); the test set is evaluated after every
epoch by a callback whose time is taken OFF the clock.

The peer, `keras-example`, is what a Keras user would run instead: the
official keras-io example `examples/vision/mnist_convnet.py` (Conv32-Pool-
Conv64-Pool-Flatten-Dropout 0.5-Dense10, Adam, categorical cross-entropy,
batch 128, 15 epochs, `validation_split=0.1`), trained with its own `fit` on
NumPy arrays, timed by the same callback.

Seeds: seed i trains with `--seed 42+i` on the train/validation split of seed
42, exactly as the members of an ensemble are trained, so the soft vote of
the seeds of one preset is also reported.

    python benchmarks/bench_presets.py [--presets seed,keras-example,fast,balanced,strong,ensemble]
        [--seeds N] [--reference-seeds M] [--ensemble-seeds K] [--write] [--smoke]

--seeds: seeds for fast/balanced/strong (default 1); --reference-seeds: seeds
for `seed` and the Keras example (default 1: they are references); --ensemble-
seeds: trainings of the `ensemble` preset (default 1: it trains all its
members). --write replaces the "Presets" section of BENCHMARKS.md and draws
docs/presets.png. --smoke checks the harness end to end in about two minutes
(1,000 images, 1-2 epochs: the numbers mean nothing). Trained models stay in
runs/bench-presets/.
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

THRESHOLDS = (0.990, 0.995, 0.997)
BASE_SEED = 42
OUT_DIR = ROOT / "runs" / "bench-presets"
PLOT = ROOT / "docs" / "presets.png"
PEER = "keras-example"
PEER_SOURCE = ("keras-io `examples/vision/mnist_convnet.py` (Simple MNIST convnet, fchollet, "
               "last modified 2020/04/21)")
REFERENCES = ("seed", PEER)
RUN_PRESET = "fast"  # the preset whose whole `digitlab run` is timed (the default of `digitlab run`)
ONNX_CALLS = 2000  # single-image ONNX Runtime calls per model (median)

# The goals (issue 12). Times are training seconds (the clock above), means over seeds.
GOAL_FAST = ("fast", 0.990, 8.0)  # preset, test accuracy, seconds
GOAL_RUN_S = 45.0  # whole `digitlab run --preset fast`, wall
GOAL_995 = (0.995, 60.0)  # any preset
GOAL_STRONG = ("strong", 0.9970, 900.0)  # single-model mean test accuracy within 15 minutes
GOAL_ENSEMBLE = ("ensemble", 0.9975)
GOAL_ONNX_MS = 0.15  # one image, ONNX Runtime, every preset


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
            total += 2 * h * w * kh * kw * cin * cout // layer.groups
        elif kind == "Dense":
            total += 2 * int(layer.input.shape[-1]) * int(layer.units)
    return int(total)


def keras_example_model(keras):
    """The Keras example's network as its source defines it (34,826 parameters)."""
    layers = keras.layers
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])


def make_test_clock(keras, x_test, y_test, curves: list[list[dict]]):
    """A callback: test accuracy after every epoch, its own time taken off the training clock.

    Every `fit` (every member of an ensemble) starts a new curve.
    """

    class TestClock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.t0, self.excluded = time.perf_counter(), 0.0
            curves.append([])

        def on_epoch_end(self, epoch, logs=None):
            t = time.perf_counter()
            probs = self.model.predict(x_test, batch_size=1024, verbose=0)
            curves[-1].append({"epoch": epoch + 1, "train_s": t - self.t0 - self.excluded,
                               "val": float(logs["val_accuracy"]), "test": float((probs.argmax(1) == y_test).mean())})
            self.excluded += time.perf_counter() - t

    return TestClock()


def onnx_latency_ms(run_dir: Path) -> float:
    """Export `run_dir`'s model with `digitlab export` (parity-checked) and time one image on ONNX Runtime."""
    import numpy as np

    from digitlab.export.exporter import export_model
    from digitlab.export.runtimes import open_runner

    runner = open_runner(export_model(run_dir, "onnx"), "onnx")  # default threads, as `digitlab predict`
    x = np.random.default_rng(0).random((1, 28, 28, 1), dtype=np.float32)
    for _ in range(200):
        runner(x)
    times = []
    for _ in range(ONNX_CALLS):
        t = time.perf_counter()
        runner(x)
        times.append(time.perf_counter() - t)
    return 1000 * median(times)


def child(preset: str, index: int, result_file: Path, smoke: bool = False) -> None:
    import numpy as np

    from digitlab.config.settings import make_config
    from digitlab.data.mnist import load_mnist_data
    from digitlab.files.atomic import atomic_write_json
    from digitlab.models import backend
    from digitlab.models.training import make_splits, train
    from digitlab.preprocess import to_model_input

    keras, tf = backend.keras(), backend.tensorflow()
    run_dir = OUT_DIR / f"{preset}-s{index}"
    run_dir.mkdir(parents=True, exist_ok=True)
    data = load_mnist_data()
    x_test = to_model_input(data.x_test)
    y_test = np.asarray(data.y_test)
    curves: list[list[dict]] = []
    clock = make_test_clock(keras, x_test, y_test, curves)
    members: list[dict] = []
    member_curves: list[list[dict]] = []
    if preset == PEER:
        # The example's own data handling: all 60,000 images, one-hot labels, Keras' validation_split.
        backend.set_seed(BASE_SEED + index)
        n = 1000 if smoke else len(data.x_train)
        x_train = to_model_input(data.x_train[:n])
        y_train = keras.utils.to_categorical(data.y_train[:n], 10)
        config = make_config("seed", seed=BASE_SEED + index, out=str(OUT_DIR), name=run_dir.name)  # for export only
        model = keras_example_model(keras)
        model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
        epochs = 2 if smoke else 15
        model.fit(x_train, y_train, batch_size=128, epochs=epochs, validation_split=0.1, callbacks=[clock], verbose=0)
        model.save(run_dir / "model.keras")
        epoch_s = [b["train_s"] - a["train_s"] for a, b in zip([{"train_s": 0.0}] + curves[0][:-1], curves[0])]
        n_val = int(round(0.1 * n))
        n_train = n - n_val
    else:
        config = make_config(preset, seed=BASE_SEED + index, out=str(OUT_DIR), name=run_dir.name)
        if smoke:
            config = config.replace(limit=1000, epochs=min(config.epochs, 2))
        splits = make_splits(config.replace(seed=BASE_SEED), data)  # one split for all seeds (as ensemble members)
        config.save(run_dir)
        result = train(config, splits, run_dir, progress=False, callbacks=[clock])
        model = result.model
        epochs = result.epochs_completed
        epoch_s = result.history["epoch_seconds"]
        n_train, n_val = len(splits.x_train), len(splits.x_val)
        if config.members > 1:
            # One point for the ensemble (after its last member), one curve per member.
            for i, curve in enumerate(curves):
                member = model.get_layer(f"member_{i}")
                probs = member.predict(x_test, batch_size=1024, verbose=0)
                members.append({"train_s": curve[-1]["train_s"], "val": curve[-1]["val"],
                                "test": float((probs.argmax(1) == y_test).mean()), "seed": config.seed + i})
            val_probs = model.predict(splits.x_val, batch_size=1024, verbose=0)
            member_curves = curves
            curves = [[{"epoch": epochs, "train_s": sum(m["train_s"] for m in members),
                        "val": float((val_probs.argmax(1) == splits.y_val).mean()), "test": None}]]
    curve = curves[-1]
    probs = model.predict(x_test, batch_size=1024, verbose=0)
    final_test = float((probs.argmax(1) == y_test).mean())
    if curve[-1]["test"] is None:
        curve[-1]["test"] = final_test
    train_s = curve[-1]["train_s"]
    np.save(run_dir / "test_probs.npy", probs.astype(np.float32))
    flops = model_flops_per_image(model)
    config.save(run_dir)
    # Metrics as `digitlab train` writes them, so `digitlab evaluate` can complete the run.
    atomic_write_json(run_dir / "metrics.json", {
        "preset": preset, "interrupted": False, "epochs_planned": epochs, "epochs_completed": epochs,
        "train_seconds": train_s, "seconds_per_epoch": sum(epoch_s) / max(1, len(epoch_s)),
        "n_train": n_train, "n_val": n_val,
    })

    # Inference: Keras' predict vs a direct compiled call (tf.function), batch and single image; ONNX Runtime.
    fn = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32)])
    fn(x_test[:1024])
    fn(x_test[:1])
    model.predict(x_test[:1024], batch_size=1024, verbose=0)
    model.predict(x_test[:1], verbose=0)

    def timed(f, reps):
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return median(times)

    batches = [tf.constant(x_test[i:i + 1024]) for i in range(0, len(x_test), 1024)]
    infer = {
        "predict_img_s": len(x_test) / timed(lambda: model.predict(x_test, batch_size=1024, verbose=0), 3),
        "direct_img_s": len(x_test) / timed(lambda: [fn(b).numpy() for b in batches], 3),
        "direct_1_ms": 1000 * timed(lambda: fn(x_test[:1]).numpy(), 200),
        "onnx_1_ms": onnx_latency_ms(run_dir),
    }
    out = {
        "preset": preset, "seed": BASE_SEED + index, "index": index, "run_dir": str(run_dir.relative_to(ROOT)),
        "curve": curve, "member_curves": member_curves, "members": members,
        "train_s": train_s, "epochs": epochs, "epoch_s": epoch_s,
        "final_val": curve[-1]["val"], "final_test": final_test,
        "params": int(model.count_params()), "flops_per_image": flops,
        "train_img_s": n_train * epochs * max(1, len(members)) / train_s,
        # forward+backward (x3) on every training image, forward on every validation image
        "gflops_s": (3 * flops * n_train + flops * n_val) * epochs / train_s / 1e9,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "recipe": {k: v for k, v in config.to_dict().items()
                   if k in ("epochs", "batch_size", "learning_rate", "schedule", "precision", "members")},
        **infer,
    }
    result_file.write_text(json.dumps(out))
    (run_dir / "bench.json").write_text(json.dumps(out))


def matmul_peak() -> float:
    """Measured float32 matmul GFLOP/s of this machine (median of 5, 2048x2048, all cores)."""
    code = (
        "import time,statistics,sys; sys.path.insert(0, {!r})\n"
        "from digitlab.models import backend; tf = backend.tensorflow()\n"
        "a = tf.random.uniform((2048, 2048)); b = tf.random.uniform((2048, 2048)); n = 2048\n"
        "f = tf.function(lambda: tf.matmul(a, b)); f().numpy()\n"
        "ts = []\n"
        "for _ in range(5):\n"
        "    t = time.perf_counter(); [f() for _ in range(4)][-1].numpy(); ts.append((time.perf_counter() - t) / 4)\n"
        "print(2 * n**3 / statistics.median(ts) / 1e9)\n".format(str(ROOT / "src"))
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def time_digitlab_run(preset: str, smoke: bool) -> dict:
    """Wall time of the whole `digitlab run --preset P` in a new process (bench_run's measurement)."""
    from bench_run import one_run

    with tempfile.TemporaryDirectory() as tmp:
        r = one_run(Path(tmp), ["--preset", preset] + (["--limit", "1000", "--epochs", "1"] if smoke else []))
    return {"wall_s": r["wall_s"], "fit_s": r["fit_s"], "test": r["accuracy_score"]}


# --------------------------------------------------------------- parent side
def fmt_ms(values: list[float], unit: str = "", digits: int = 1) -> str:
    if not values:
        return "n/a"
    if len(values) >= 3:
        return f"{mean(values):.{digits}f} ± {stdev(values):.{digits}f}{unit}"
    return f"{mean(values):.{digits}f}{unit}" + ("" if len(values) == 1 else f" (n={len(values)})")


def time_to(curve: list[dict], key: str, threshold: float) -> float | None:
    for point in curve:
        if point[key] is not None and point[key] >= threshold - 1e-9:
            return point["train_s"]
    return None


def mean_time_to(runs: list[dict], threshold: float) -> float | None:
    """Mean training time to `threshold` test accuracy, or None unless every seed reached it."""
    times = [time_to(r["curve"], "test", threshold) for r in runs]
    return None if not times or None in times else mean(times)


def reach_cell(runs: list[dict], threshold: float) -> str:
    times = [time_to(r["curve"], "test", threshold) for r in runs]
    hit = [t for t in times if t is not None]
    if not hit:
        return "—"
    cell = fmt_ms(hit, " s")
    return cell if len(hit) == len(runs) else f"{cell} ({len(hit)}/{len(runs)} seeds)"


def describe(preset: str, runs: list[dict]) -> str:
    """What was trained, in a few words (architecture and recipe), for the table."""
    if preset == PEER:
        return "Keras example: Adam 1e-3, batch 128, 15 epochs"
    r = runs[0]["recipe"]
    text = f"{r['epochs']} ep, batch {r['batch_size']}, {r['schedule']} {r['learning_rate']:g}"
    if r.get("precision", "float32") != "float32":
        text += ", bf16"
    if r.get("members", 1) > 1:
        text = f"soft vote of {r['members']} members (seeds {runs[0]['seed']}..), each {text}"
    return text


def table(results: dict[str, list[dict]], peak: float) -> str:
    pct = lambda v: [100 * x for x in v]  # noqa: E731
    head = ("| preset | recipe | seeds | params | final val % | final test % | "
            + " | ".join(f"to {100 * t:.1f}% test" for t in THRESHOLDS)
            + " | train s | s/epoch (median) | train img/s | GFLOP/s (% of peak) | peak RSS MiB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for preset, runs in results.items():
        reach = [reach_cell(runs, t) for t in THRESHOLDS]
        epoch_s = [median(r["epoch_s"]) for r in runs]
        gf = [r["gflops_s"] for r in runs]
        lines.append(
            f"| {preset} | {describe(preset, runs)} | {len(runs)} | {runs[0]['params']:,} | "
            f"{fmt_ms(pct([r['final_val'] for r in runs]), '', 2)} | {fmt_ms(pct([r['final_test'] for r in runs]), '', 2)} | "
            + " | ".join(reach)
            + f" | {fmt_ms([r['train_s'] for r in runs])} | {fmt_ms(epoch_s, '', 2)} | "
            f"{fmt_ms([r['train_img_s'] for r in runs], '', 0)} | {fmt_ms(gf)} ({100 * mean(gf) / peak:.0f}%) | "
            f"{max(r['peak_rss_mib'] for r in runs):.0f} |"
        )
    inf = ["", "Inference on the 10,000 test images (median of repeats, batch 1024) and on one image:", "",
           "| preset | MFLOP/image (fwd) | `model.predict` img/s | direct `tf.function` img/s | direct 1 image ms | "
           "ONNX Runtime 1 image ms |",
           "|---|---:|---:|---:|---:|---:|"]
    for preset, runs in results.items():
        r = lambda k, runs=runs: median(x[k] for x in runs)  # noqa: E731
        inf.append(f"| {preset} | {runs[0]['flops_per_image'] / 1e6:.1f} | {r('predict_img_s'):,.0f} | "
                   f"{r('direct_img_s'):,.0f} | {r('direct_1_ms'):.3f} | {r('onnx_1_ms'):.3f} |")
    return "\n".join(lines + inf)


def soft_votes(results: dict[str, list[dict]], y_test) -> list[str]:
    """The soft vote of the seeds of each preset (seeds share one split: an ensemble of that size)."""
    import numpy as np

    out = []
    for preset, runs in results.items():
        if len(runs) >= 2 and preset not in REFERENCES and not runs[0]["members"]:
            probs = np.mean([np.load(ROOT / r["run_dir"] / "test_probs.npy") for r in runs], axis=0)
            acc = float((probs.argmax(1) == y_test).mean())
            best = max(r["final_test"] for r in runs)
            out.append(f"- Soft vote of the {len(runs)} `{preset}` seeds above: {100 * acc:.2f}% test "
                       f"({100 * (acc - best):+.2f} points over its best seed).")
    for run in results.get("ensemble", []):
        ms = run["members"]
        best = max(m["test"] for m in ms)
        out.append(f"- `ensemble` seed {run['seed']}: {100 * run['final_test']:.2f}% test (val {100 * run['final_val']:.2f}%); "
                   "members " + ", ".join(f"{100 * m['test']:.2f}%" for m in ms)
                   + f"; gain over its best member {100 * (run['final_test'] - best):+.2f} points.")
    return out


def goals(results: dict[str, list[dict]], run_wall: dict | None) -> list[str]:
    """Every goal of the issue: measured value, goal, ratio (measured / goal; for accuracies, error / allowed error)."""
    def mark(ok: bool) -> str:
        return "met" if ok else "**NOT met**"

    def err_ratio(acc: float, goal: float) -> float:
        return (1 - acc) / (1 - goal)

    rows = ["| goal | measured | ratio to goal | status |", "| --- | --- | --- | --- |"]
    preset, acc, limit = GOAL_FAST
    if preset in results:
        t = mean_time_to(results[preset], acc)
        rows.append(f"| `{preset}`: >= {100 * acc:.1f}% test within {limit:g} s of training | "
                    + ("not reached | — | **NOT met** |" if t is None else
                       f"{t:.1f} s | {t / limit:.2f}x | {mark(t <= limit)} |"))
    if run_wall is not None:
        w = run_wall["wall_s"]
        rows.append(f"| whole `digitlab run --preset {RUN_PRESET}` (data, training, evaluation, figures, report) "
                    f"<= {GOAL_RUN_S:g} s wall | {w:.1f} s (fit {run_wall['fit_s']:.1f} s, test "
                    f"{100 * run_wall['test']:.2f}%) | {w / GOAL_RUN_S:.2f}x | {mark(w <= GOAL_RUN_S)} |")
    acc, limit = GOAL_995
    reach = {p: mean_time_to(runs, acc) for p, runs in results.items() if p not in REFERENCES}
    reach = {p: t for p, t in reach.items() if t is not None}
    if reach:
        p = min(reach, key=reach.get)
        rows.append(f"| a preset reaches >= {100 * acc:.1f}% test within {limit:g} s | `{p}`: {reach[p]:.1f} s | "
                    f"{reach[p] / limit:.2f}x | {mark(reach[p] <= limit)} |")
    else:
        rows.append(f"| a preset reaches >= {100 * acc:.1f}% test within {limit:g} s | no preset reached it | — | **NOT met** |")
    preset, acc, limit = GOAL_STRONG
    if preset in results:
        a = mean(r["final_test"] for r in results[preset])
        t = mean(r["train_s"] for r in results[preset])
        rows.append(f"| `{preset}`: single-model mean test >= {100 * acc:.2f}% | {100 * a:.2f}% | "
                    f"error {err_ratio(a, acc):.2f}x | {mark(a >= acc - 1e-9)} |")
        rows.append(f"| `{preset}`: training <= {limit / 60:g} min | {t:.0f} s | {t / limit:.2f}x | {mark(t <= limit)} |")
    preset, acc = GOAL_ENSEMBLE
    if preset in results:
        a = mean(r["final_test"] for r in results[preset])
        gain = mean(r["final_test"] - max(m["test"] for m in r["members"]) for r in results[preset])
        rows.append(f"| `{preset}`: >= {100 * acc:.2f}% test (members differ) | {100 * a:.2f}% "
                    f"({100 * gain:+.2f} points over its best member) | error {err_ratio(a, acc):.2f}x | "
                    f"{mark(a >= acc - 1e-9)} |")
    slowest = max(((p, median(r["onnx_1_ms"] for r in runs)) for p, runs in results.items() if p not in REFERENCES),
                  key=lambda x: x[1], default=None)
    if slowest:
        p, ms = slowest
        rows.append(f"| ONNX Runtime, one image <= {GOAL_ONNX_MS:g} ms for every preset (ensemble included) | "
                    f"slowest `{p}`: {ms:.3f} ms | {ms / GOAL_ONNX_MS:.2f}x | {mark(ms <= GOAL_ONNX_MS)} |")
    if "seed" in results:
        tutorial = {"epochs": 10, "batch_size": 128, "learning_rate": 1e-3, "schedule": "constant",
                    "precision": "float32", "members": 1}
        ok = results["seed"][0]["params"] == 121_930 and results["seed"][0]["recipe"] == tutorial
        rows.append(f"| `seed` stays the tutorial's model | {results['seed'][0]['params']:,} parameters, "
                    f"{results['seed'][0]['recipe']['epochs']} epochs, batch {results['seed'][0]['recipe']['batch_size']} "
                    f"(layers asserted by tests/test_models.py) | — | {mark(ok)} |")
    return rows


def versus_peer(results: dict[str, list[dict]]) -> list[str]:
    """Each preset against the Keras example: time to the example's own final accuracy, final accuracy."""
    if PEER not in results:
        return []
    peer = results[PEER]
    peer_acc = mean(r["final_test"] for r in peer)
    peer_t = mean(r["train_s"] for r in peer)
    out = [f"Against the Keras example ({100 * peer_acc:.2f}% test after {peer_t:.0f} s of training):"]
    for p, runs in results.items():
        if p == PEER:
            continue
        t = mean_time_to(runs, peer_acc)
        a = mean(r["final_test"] for r in runs)
        out.append(f"- `{p}`: reaches the example's {100 * peer_acc:.2f}% in "
                   + ("— (never)" if t is None else f"{t:.1f} s ({peer_t / t:.1f}x sooner)" if t <= peer_t
                      else f"{t:.1f} s ({t / peer_t:.1f}x later)")
                   + f"; final {100 * a:.2f}% ({100 * (a - peer_acc):+.2f} points), test errors "
                   f"{(1 - a) / (1 - peer_acc):.2f}x the example's.")
    return out


COLORS = {"seed": "tab:gray", PEER: "black", "fast": "tab:blue", "balanced": "tab:green", "strong": "tab:red",
          "ensemble": "tab:purple"}


def plot(results: dict[str, list[dict]], path: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.5, 5.2), dpi=120)
    ax = fig.add_subplot()
    for preset, runs in results.items():
        for i, r in enumerate(runs):
            xs, ys = [p["train_s"] for p in r["curve"]], [100 * p["test"] for p in r["curve"]]
            style = dict(color=COLORS.get(preset), alpha=0.9 if i == 0 else 0.45, label=preset if i == 0 else None)
            if len(xs) == 1:  # an ensemble: one point after its last member
                ax.plot(xs, ys, marker="*", ms=12, ls="none", **style)
            else:
                ax.plot(xs, ys, marker="o", ms=3, ls="--" if preset == PEER else "-", **style)
    for t in THRESHOLDS:
        ax.axhline(100 * t, color="black", lw=0.5, ls=":")
    for seconds, color, label in ((GOAL_FAST[2], "tab:blue", "99.0% goal"), (GOAL_995[1], "tab:green", "99.5% goal")):
        ax.axvline(seconds, color=color, lw=0.6, ls=":")
        ax.text(seconds * 1.03, 98.05, f"{seconds:g} s: {label}", color=color, fontsize=8, rotation=90, va="bottom")
    ax.set_xscale("log")
    ax.set_ylim(98.0, 100)
    ax.set_xlabel("training time (s, log scale; test evaluation excluded)")
    ax.set_ylabel("test accuracy (%) after each epoch")
    ax.set_title("digitlab presets and the Keras example on a 2-core CPU")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default=f"seed,{PEER},fast,balanced,strong,ensemble")
    ap.add_argument("--seeds", type=int, default=1, help="seeds per preset (fast, balanced, strong)")
    ap.add_argument("--reference-seeds", type=int, default=1, help=f"seeds for `seed` and `{PEER}`")
    ap.add_argument("--ensemble-seeds", type=int, default=1, help="trainings of the `ensemble` preset")
    ap.add_argument("--no-run", action="store_true", help=f"skip timing the whole `digitlab run --preset {RUN_PRESET}`")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md and docs/presets.png")
    ap.add_argument("--smoke", action="store_true", help="1,000 images, 1-2 epochs: test the harness itself")
    ap.add_argument("--aggregate-only", action="store_true",
                    help="rebuild the table from runs/bench-presets/*/bench.json without training")
    ap.add_argument("--child", nargs=3, metavar=("PRESET", "INDEX", "RESULT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), Path(args.child[2]), smoke=args.smoke)
        return
    import numpy as np

    if args.smoke and args.write:
        raise SystemExit("--smoke numbers mean nothing: not writing them to BENCHMARKS.md")
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
            n = (args.reference_seeds if preset in REFERENCES else
                 args.ensemble_seeds if preset == "ensemble" else args.seeds)
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
                      f"in {r['train_s']:.1f} s, ONNX 1 image {r['onnx_1_ms']:.3f} ms; curve " + ", ".join(
                          f"{p['train_s']:.0f}s:{100 * p['val']:.2f}/{100 * p['test']:.2f}" for p in r["curve"]), flush=True)
    if not args.aggregate_only:
        if not args.no_run:
            facts["run"] = time_digitlab_run(RUN_PRESET, args.smoke)
            print(f"digitlab run --preset {RUN_PRESET}: {facts['run']['wall_s']:.1f} s wall", flush=True)
        facts.update(load_after=load_average(), date=time.strftime("%Y-%m-%d %H:%M"), total_s=time.perf_counter() - t_all)
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        facts_file.write_text(json.dumps(facts))
    from digitlab.data.mnist import load_mnist_data

    y_test = np.asarray(load_mnist_data().y_test)
    from digitlab.models import backend

    keras, tf = backend.keras(), backend.tensorflow()

    body = "\n".join([
        f"Command: `{facts['command']}` (all presets and the Keras example in this one run, one after another, "
        f"each in its own process). Training clock: wall time inside `fit` (validation included, the per-epoch "
        f"test evaluation excluded). Seeds {BASE_SEED}.. on the train/validation split of seed {BASE_SEED} "
        f"(48,000 / 12,000); ± is the standard deviation over seeds (shown when there are ≥ 3). Hyperparameters "
        f"were chosen on the validation split only. `{PEER}` is {PEER_SOURCE}, run as published: its own "
        f"`fit` on NumPy arrays, all 60,000 training images with `validation_split=0.1` (so its val column is "
        f"its own 6,000 images), timed by the same callback.",
        "",
        table(results, peak),
        "",
        *soft_votes(results, y_test),
        "",
        "Goals of issue 12 (means over the seeds above; ratio = measured / goal, for accuracies the test error "
        "over the allowed error):",
        "",
        *goals(results, facts.get("run")),
        "",
        *versus_peer(results),
        "",
        f"- GFLOP/s: analytic Conv2D/Dense FLOPs (forward ×3 for training images, ×1 for validation) per second of "
        f"training, against the measured float32 `tf.matmul` peak of **{peak:.0f} GFLOP/s** (2048², median of 5); "
        f"bfloat16 presets can exceed the float32 share.",
        f"- ONNX Runtime: the model exported by `digitlab export` (parity-checked), one image per call, default "
        f"threads as `digitlab predict` uses them, median of {ONNX_CALLS} calls.",
        f"- Versions: digitlab {__import__('digitlab').__version__}, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"NumPy {np.__version__}.",
        f"- Machine: {machine()}; load average {facts['load_before']} before, {facts['load_after']} after; "
        f"measured {facts['date']}, total {facts['total_s']:.0f} s.",
        "- Plot: [docs/presets.png](docs/presets.png).",
    ])
    print(body)
    if args.write:
        plot(results, PLOT)
        write_section("bench_presets", "## Presets: accuracy and time", body)
        print(f"wrote {PLOT}")
    elif args.smoke:
        plot(results, OUT_DIR / "presets-smoke.png")


if __name__ == "__main__":
    main()
