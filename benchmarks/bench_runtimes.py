"""Benchmark the inference runtimes: Keras (tf.function), Keras model.predict, ONNX Runtime, LiteRT.

For each runtime, on the shipped pretrained model (exported to ONNX and
LiteRT into a temporary directory first):

- cold start: a new Python process that opens the runner and predicts one
  image, wall time from spawn to exit (median of --cold repeats); and the
  wall time of the real `digitlab predict one.png --runtime R` command;
- single-image latency: median of --calls calls on one image each;
- batch throughput: images per second at batch 256;
- peak RSS of the measuring process;
- model file size.

    python benchmarks/bench_runtimes.py [--cold 3] [--calls 300] [--write]

--write replaces the section between the bench_runtimes markers in
BENCHMARKS.md (appending a "## Runtimes" section if it has none).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

from _common import machine, write_section

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "src" / "digitlab" / "pretrained"

RUNTIMES = {  # row label -> (runtime for open_runner, model file, quantization or None)
    "keras (tf.function)": ("keras", "model.keras", None),
    "keras model.predict (reference)": ("keras-predict", "model.keras", None),
    "onnx (ONNX Runtime)": ("onnx", "model.onnx", None),
    "litert (ai-edge-litert)": ("litert", "model.tflite", None),
    "onnx int8 (static QDQ)": ("onnx", "model.int8.onnx", "int8"),
    "litert float16 weights": ("litert", "model.float16.tflite", "float16"),
    "litert int8": ("litert", "model.int8.tflite", "int8"),
}
BATCH = 256


# --------------------------------------------------------------------------- child process side


def _open(runtime: str, model_path: str):
    if runtime == "keras-predict":
        from digitlab.models.architectures import load_model

        model, _ = load_model(model_path)
        return lambda x: model.predict(x, verbose=0)
    from digitlab.export.runtimes import open_runner

    return open_runner(model_path, runtime)


def worker(runtime: str, model_dir: str, mode: str, calls: int) -> None:
    """Runs in the child: `cold` = open + one prediction; `full` = latency, throughput, RSS."""
    import resource

    import numpy as np

    run = _open(runtime, model_dir)
    first = run(np.zeros((1, 28, 28, 1), np.float32))
    assert first.shape == (1, 10)
    if mode == "cold":
        print(json.dumps({"tensorflow_imported": "tensorflow" in sys.modules}))
        return
    from digitlab.data.mnist import load_mnist_data
    from digitlab.preprocess import to_model_input

    mnist = load_mnist_data()
    x = to_model_input(mnist.x_test[: BATCH * 4])
    for i in range(20):  # warm-up
        run(x[i:i + 1])
    lat = []
    for i in range(calls):
        one = x[i % len(x): i % len(x) + 1]
        t0 = time.perf_counter()
        run(one)
        lat.append(time.perf_counter() - t0)
    run(x[:BATCH])
    n_batches, t0 = 0, time.perf_counter()
    while n_batches < 8 or time.perf_counter() - t0 < 2.0:
        run(x[(n_batches % 4) * BATCH:(n_batches % 4 + 1) * BATCH])
        n_batches += 1
    throughput = n_batches * BATCH / (time.perf_counter() - t0)
    x_all = to_model_input(mnist.x_test)
    pred = np.concatenate([run(x_all[i:i + BATCH]) for i in range(0, len(x_all), BATCH)]).argmax(1)
    accuracy = float((pred == mnist.y_test).mean())
    print(json.dumps({
        "latency_ms": median(lat) * 1e3,
        "latency_p90_ms": sorted(lat)[int(0.9 * len(lat))] * 1e3,
        "throughput": throughput,
        "accuracy": accuracy,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tensorflow_imported": "tensorflow" in sys.modules,
    }))


# --------------------------------------------------------------------------- parent side


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("tensorflow-cpu", "keras", "onnxruntime", "ai-edge-litert", "numpy"):
        try:
            out.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            pass
    return ", ".join(out)


def _describe(model_dir: Path) -> str:
    """'shipped pretrained strong model' or 'model in DIR (preset P)', from its config.json."""
    preset = json.loads((model_dir / "config.json").read_text()).get("preset", "?")
    if model_dir.resolve() == PRETRAINED.resolve():
        return f"shipped pretrained {preset} model"
    return f"model in {model_dir} (preset {preset})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cold", type=int, default=3, help="cold-start repeats per runtime (median)")
    ap.add_argument("--calls", type=int, default=300, help="single-image calls for the latency median")
    ap.add_argument("--model", default=str(PRETRAINED), help="model directory with model.keras + config.json")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    ap.add_argument("--worker", nargs=3, metavar=("RUNTIME", "MODEL_DIR", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker, calls=args.calls)
        return

    env = {k: v for k, v in os.environ.items() if k != "DIGITLAB_VERBOSE"}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-runtimes-") as tmp:
        model_dir = Path(tmp) / "model"
        model_dir.mkdir()
        for name in ("model.keras", "config.json", "metrics.json"):
            shutil.copy2(Path(args.model) / name, model_dir / name)
        for fmt, quantize in (("onnx", "none"), ("litert", "none"), ("onnx", "int8"), ("litert", "float16"),
                              ("litert", "int8")):
            _timed([sys.executable, "-m", "digitlab", "export", str(model_dir), "--format", fmt,
                    "--quantize", quantize], env)
        # one MNIST test digit as a PNG, for the `digitlab predict` command
        png = Path(tmp) / "one.png"
        _timed([sys.executable, "-c", "from PIL import Image; from digitlab.data import load_mnist_data; "
                f"Image.fromarray(load_mnist_data().x_test[0]).save({str(png)!r})"], env)

        rows = []
        for label, (runtime, file, quantize) in RUNTIMES.items():
            target = model_dir if quantize is None else model_dir / file
            me = [sys.executable, str(Path(__file__).resolve()), "--calls", str(args.calls), "--worker", runtime, str(target)]
            colds = [_timed(me + ["cold"], env)[0] for _ in range(args.cold)]
            cli = None
            if runtime != "keras-predict" and quantize is None:
                cli = median(_timed([sys.executable, "-m", "digitlab", "predict", str(png), "--model",
                                     str(model_dir), "--runtime", runtime], env)[0] for _ in range(args.cold))
            _, out = _timed(me + ["full"], env)
            full = json.loads(out.strip().splitlines()[-1])
            rows.append({"label": label, "cold_s": median(colds), "cli_s": cli,
                         "size_mb": (model_dir / file).stat().st_size / 1e6, **full})
            print(json.dumps(rows[-1]), flush=True)
    load_after = os.getloadavg()[0]

    def fmt_cli(r: dict) -> str:
        return "n/a" if r["cli_s"] is None else f"{r['cli_s']:.2f} s"

    lines = [
        f"Command: `python benchmarks/bench_runtimes.py --cold {args.cold} --calls {args.calls}"
        + (" --write" if args.write else "") + f"` on the {_describe(Path(args.model))} "
        "(exported first with `digitlab export` to ONNX and LiteRT, float32 and quantized).",
        "",
        f"Machine: {machine()}; {_versions()}; date {time.strftime('%Y-%m-%d')}. "
        f"Load average {load_before:.1f} before, {load_after:.1f} after"
        + (" (machine busy: other jobs were running, numbers are pessimistic)" if max(load_before, load_after) > 1.0 else "")
        + ".",
        "",
        "| runtime | cold start: open + predict 1 image (new process) | `digitlab predict one.png` wall | "
        f"single image (median / p90) | batch {BATCH} throughput | peak RSS | model file | test accuracy (10k) "
        "| imports TensorFlow |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['label']} | {r['cold_s']:.2f} s | {fmt_cli(r)} | {r['latency_ms']:.3f} / {r['latency_p90_ms']:.3f} ms "
                     f"| {r['throughput']:,.0f} img/s | {r['peak_rss_mib']:.0f} MiB | {r['size_mb']:.2f} MB "
                     f"| {r['accuracy'] * 100:.2f}% | {'yes' if r['tensorflow_imported'] else 'no'} |")
    onnx = next(r for r in rows if r["label"].startswith("onnx"))
    keras = next(r for r in rows if r["label"].startswith("keras (tf"))
    lines += [
        "",
        f"Targets with ONNX Runtime: cold start <= 1.5 s (measured {onnx['cold_s']:.2f} s: "
        f"{'met' if onnx['cold_s'] <= 1.5 else 'NOT met'}), single image <= 1 ms (measured "
        f"{onnx['latency_ms']:.3f} ms: {'met' if onnx['latency_ms'] <= 1.0 else 'NOT met'}). "
        f"ONNX Runtime starts {keras['cold_s'] / onnx['cold_s']:.1f}x faster than Keras and uses "
        f"{keras['peak_rss_mib'] / onnx['peak_rss_mib']:.1f}x less memory.",
        "Cold start = Python start-up, imports, opening the model and one prediction, until the process exits; "
        "the `digitlab predict` column is the whole CLI command (PNG decoding and preprocessing included).",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section("bench_runtimes", "## Runtimes", text)


if __name__ == "__main__":
    main()
