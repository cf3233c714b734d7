"""Benchmark the Ray Data engine (`digitlab predict --engine ray`) against the local one.

    python benchmarks/bench_ray.py [--n 2000] [--actors N] [--write]

Writes --n user-style PNGs (MNIST test digits, black on white, 100x100) to a temporary
directory, then measures on a local Ray (`ray.init(num_cpus=<cores>)`):
(a) the cold start: `ray.init` alone, and `ray.init` to the first row out of the actor
pool (an actor starts and loads the model; nothing is written), (b) throughput of
`predict_with_ray` over all files into a JSONL directory (Ray already running), and
(c) the local engine (`Predictor.predict_stream`, one process) over the same files, so
the two are compared within one run. With --write, replaces the bench_ray section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import load_average, machine, write_section

HEADING = "## Ray Data engine (digitlab predict --engine ray)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--actors", type=int, default=None, help="a fixed actor pool (default: the engine's own choice)")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args()

    import ray
    import ray.data
    from PIL import Image

    from digitlab.data.mnist import load_mnist_data
    from digitlab.predict.inputs import expand_inputs
    from digitlab.predict.predictor import Predictor
    from digitlab.predict.ray_engine import _pool, _Recognise, predict_with_ray

    data = load_mnist_data()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for i in range(args.n):
            Image.fromarray(255 - data.x_test[i % len(data.x_test)]).resize((100, 100)).save(folder / f"{i:05d}.png")

        t0 = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        init_s = time.perf_counter() - t0
        ray.data.DataContext.get_current().enable_progress_bars = False
        compute, cpus = _pool(ray, args.actors)
        ds = ray.data.read_binary_files(sorted(str(p) for p in folder.glob("*.png"))[:64], include_paths=True)
        first = ds.map_batches(_Recognise, batch_size=64, batch_format="numpy", compute=compute, num_cpus=cpus,
                               fn_constructor_kwargs=dict(model=None, runtime="auto", threshold=None, mode="auto",
                                                          base=tmp))
        next(iter(first.iter_rows()))
        first_s = time.perf_counter() - t0

        summary = predict_with_ray(str(folder), Path(tmp) / "rows", actors=args.actors)
        ray_s = summary["seconds"]
        ray.shutdown()

        predictor = Predictor.load()
        t1 = time.perf_counter()
        local_n = sum(1 for _ in predictor.predict_stream(expand_inputs([str(folder)]), mode="auto"))
        local_s = time.perf_counter() - t1

    assert summary["images"] == local_n == args.n and summary["errors"] == 0
    ray_rate, local_rate = args.n / ray_s, args.n / local_s
    command = "python benchmarks/bench_ray.py" + (f" --n {args.n}" if args.n != 2000 else "") + \
        (f" --actors {args.actors}" if args.actors else "") + " --write"
    body = f"""Command: `{command}` (Ray {ray.__version__}, a local Ray with num_cpus={cores})
Machine: {machine()}; load average {load_average()} when it finished.

| what | value |
| --- | --- |
| `ray.init` (local instance) | {init_s:.1f} s |
| cold start: `ray.init` to the first row (an actor starts, loads the model, answers 64 images) | {first_s:.1f} s |
| Ray Data engine, {args.n:,} PNGs to JSONL (Ray running; actors {args.actors or 'auto'}) | {ray_s:.1f} s, {ray_rate:,.0f} images/s |
| local engine (`predict_stream`, one process), same files | {local_s:.1f} s, {local_rate:,.0f} images/s |
| Ray / local throughput | {ray_rate / local_rate:.2f}x |

On one machine Ray adds its start-up (ray.init, actor processes, each loading the model)
and the hand-over of every batch through the object store; with no other machines to
spread over, that is all it adds. What it offers, actors spread over a cluster's
machines and sources Ray reads directly (s3://, gs://), was not measured here (no
cluster). The machine is shared: compare the ratio, not the absolute numbers.
"""
    print(body)
    if args.write:
        write_section("bench_ray", HEADING, body)


if __name__ == "__main__":
    main()
