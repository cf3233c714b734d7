"""Benchmark preprocessing cost on adversarial images at 25 MP and at the 40 MP cap.

    python benchmarks/bench_preprocess.py [--sizes 25,40] [--repeats 5] [--write]

Each image is made in memory, saved as a PNG (JPEG for the photo) and read
back, so decoding (`load_image`) is timed apart from preprocessing
(`find_digit`, the default `digitlab predict` path, and `segment_digits`,
number mode, on the decoded image). Contents: a filled square, full-frame
noise, a checkerboard, dense text-like strokes, a smooth photo-like gradient
with a digit (RGB), a thin-stroke (1 px) digit, and the filled square with
an alpha channel (RGBA: the slowest mode to reduce). Memory: the peak of the
process's resident set above its level just before the call (sampled every
0.5 ms in a thread) and the tracemalloc peak (numpy's allocations; Pillow's
own buffers are not traced). Timings are medians of --repeats calls, each
case in its own process. With --write, replaces the bench_preprocess section
of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
from _common import load_average, machine, write_section  # noqa: E402

HEADING = "## Preprocessing cost (adversarial images)"
KINDS = ("filled-square", "noise", "checkerboard", "text-strokes", "photo-gradient-digit", "thin-stroke-digit",
         "filled-square-rgba")
SHAPES = {25: (5000, 5000), 40: (8000, 5000)}  # 40 MP: exactly digitlab's MAX_PIXELS


def make(kind: str, w: int, h: int):
    """The adversarial image `kind` at w x h (a PIL image) and the format it is saved in."""
    from PIL import Image, ImageDraw

    from digitlab.data.mnist import load_mnist_data

    rng = np.random.default_rng(0)
    if kind in ("filled-square", "filled-square-rgba"):
        img = Image.new("L", (w, h), 255)
        ImageDraw.Draw(img).rectangle([w // 10, h // 10, w - w // 10, h - h // 10], fill=0)
        if kind.endswith("rgba"):
            img = Image.merge("RGBA", (img, img, img, Image.new("L", (w, h), 255)))
        return img, "PNG"
    if kind == "noise":
        return Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)), "PNG"
    if kind == "checkerboard":
        cell = 16  # about 3 px at the working resolution: the most runs and one 8-connected component
        yy, xx = np.ogrid[:h, :w]
        return Image.fromarray((((yy // cell + xx // cell) % 2) * 255).astype(np.uint8)), "PNG"
    if kind == "text-strokes":
        img = Image.new("L", (w, h), 255)
        draw = ImageDraw.Draw(img)
        step, stroke = max(w, h) // 120, max(2, max(w, h) // 1000)
        for y in range(step, h - step, step):  # lines of short random strokes, like handwriting
            x = step
            while x < w - 2 * step:
                pts = [(x + rng.integers(0, step), y + rng.integers(-step // 3, step // 3)) for _ in range(3)]
                draw.line(pts, fill=0, width=stroke)
                x += int(step * rng.uniform(0.6, 1.2))
        return img, "PNG"
    if kind == "photo-gradient-digit":
        digit = load_mnist_data().x_test[0]
        side = min(w, h) // 2
        big = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC), np.float32) / 255
        yy, xx = np.mgrid[0:h:4, 0:w:4]  # a quarter-resolution light field, enlarged: smooth
        light = (0.45 + 0.5 * (xx / w) * (0.7 + 0.3 * yy / h)).astype(np.float32)
        light = np.asarray(Image.fromarray(light).resize((w, h), Image.Resampling.BILINEAR))
        ink = np.zeros((h, w), np.float32)
        ink[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2] = big
        g = light * (1 - 0.85 * ink)
        rgb = np.clip(np.stack([g, g * 0.96, g * 0.88], -1) * 255, 0, 255).astype(np.uint8)
        return Image.fromarray(rgb), "JPEG"
    if kind == "thin-stroke-digit":
        img = Image.new("L", (w, h), 255)
        s = min(w, h)
        ImageDraw.Draw(img).line([(w / 2 - s / 4, h / 2 - s / 3), (w / 2 + s / 4, h / 2 - s / 3), (w / 2 - s / 10, h / 2 + s / 3)],
                                 fill=0, width=1)  # a 1-px "7"
        return img, "PNG"
    raise ValueError(kind)


class _RssSampler:
    """The peak resident set size while running, sampled from /proc/self/statm."""

    def __init__(self, interval: float = 0.0005):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self._page

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def measure(kind: str, mp: int, repeats: int) -> dict:
    """One case, in this process: decode and preprocessing times, memory, and what was found."""
    from digitlab.preprocess import find_digit, load_image, segment_digits

    w, h = SHAPES[mp]
    img, fmt = make(kind, w, h)
    buf = io.BytesIO()
    img.save(buf, fmt, **({"compress_level": 1} if fmt == "PNG" else {"quality": 90}))
    data = buf.getvalue()
    del img, buf
    decode = []
    for _ in range(repeats):
        t = time.perf_counter()
        decoded = load_image(data)
        decode.append(time.perf_counter() - t)
    out = {"kind": kind, "mp": w * h / 1e6, "mode": decoded.mode, "file_mb": len(data) / 2**20,
           "image_mb": w * h * len(decoded.getbands()) / 2**20}
    del data
    find_digit(decoded)  # warm up (imports, caches)
    for name, fn in (("find", find_digit), ("segment", segment_digits)):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            result = fn(decoded)
            times.append(time.perf_counter() - t)
        with _RssSampler() as rss:
            tracemalloc.start()
            fn(decoded)
            traced = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        found = result if name == "segment" else ([] if result is None else [result])
        out[name] = {"ms": statistics.median(times) * 1e3, "rss_mb": (rss.peak - rss.base) / 2**20,
                     "traced_mb": traced / 2**20, "digits": len(found),
                     "empty": sum(int(a.max() == 0) for _, a in found)}
    out["decode_ms"] = statistics.median(decode) * 1e3
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="25,40", help="megapixels, from 25 and 40 (default both)")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # "kind:mp": measure one case and print JSON (child process)
    args = ap.parse_args()
    if args.one:
        kind, mp = args.one.split(":")
        print(json.dumps(measure(kind, int(mp), args.repeats)))
        return
    rows = []
    load = load_average()
    for mp in (int(s) for s in args.sizes.split(",")):
        for kind in args.kinds.split(","):
            proc = subprocess.run([sys.executable, __file__, "--one", f"{kind}:{mp}", "--repeats", str(args.repeats)],
                                  capture_output=True, text=True, check=True)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(r)
            f, s = r["find"], r["segment"]
            print(f"{mp} MP {kind:22s} {r['mode']:5s} decode {r['decode_ms']:7.1f} ms | find {f['ms']:6.1f} ms "
                  f"rss +{f['rss_mb']:5.1f} MB traced {f['traced_mb']:5.1f} MB digits {f['digits']} | segment "
                  f"{s['ms']:6.1f} ms rss +{s['rss_mb']:5.1f} MB traced {s['traced_mb']:5.1f} MB digits {s['digits']} "
                  f"(empty {f['empty'] + s['empty']})", flush=True)
    cmd = "python benchmarks/bench_preprocess.py" + (f" --sizes {args.sizes}" if args.sizes != "25,40" else "") + \
        (f" --repeats {args.repeats}" if args.repeats != 5 else "") + " --write"
    lines = [
        f"Command: `{cmd}` (each case in its own process)",
        "",
        f"Machine: {machine()}; load average before the run {load} (1 min); median of {args.repeats} calls. "
        "Target (issue 9): preprocessing of a 25 MP image <= 50 ms and <= 100 MB beyond the decoded image.",
        "",
        "Preprocessing = `find_digit` (what `digitlab predict` does by default) or `segment_digits` (number mode) "
        "on the decoded image; decode = `load_image` of the file's bytes (PNG, level 1; the photo as JPEG q90). "
        "RSS: peak resident set above its level before the call (sampled every 0.5 ms); traced: tracemalloc "
        "peak (numpy's arrays; Pillow's buffers are not traced). Digits: how many 28x28 inputs came out (none empty).",
        "",
        "| image | MP | mode (decoded MB) | decode ms | find_digit ms | RSS + MB | traced MB "
        "| segment_digits ms | RSS + MB | traced MB | digits (find / segment) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        f, s = r["find"], r["segment"]
        lines.append(f"| {r['kind']} | {r['mp']:.0f} | {r['mode']} ({r['image_mb']:.0f}) | {r['decode_ms']:.0f} | {f['ms']:.1f} | "
                     f"{f['rss_mb']:.1f} | {f['traced_mb']:.1f} | {s['ms']:.1f} | {s['rss_mb']:.1f} | "
                     f"{s['traced_mb']:.1f} | {f['digits']} / {s['digits']} |")
    for mp in sorted({round(r["mp"]) for r in rows}):
        at = [r for r in rows if round(r["mp"]) == mp]
        plain = [r for r in at if r["mode"] != "RGBA"]
        slow = max(plain, key=lambda r: max(r["find"]["ms"], r["segment"]["ms"]))
        big = max(at, key=lambda r: max(r["find"]["rss_mb"], r["segment"]["rss_mb"], r["find"]["traced_mb"]))
        rgba = [r for r in at if r["mode"] == "RGBA"]
        lines.append("")
        lines.append(
            f"{mp} MP: slowest opaque image {slow['kind']} at "
            f"{max(slow['find']['ms'], slow['segment']['ms']):.0f} ms; most memory {big['kind']} at "
            f"{max(big['find']['rss_mb'], big['segment']['rss_mb'], big['find']['traced_mb']):.0f} MB"
            + (f"; with alpha (RGBA, premultiplied and reduced band by band) "
               f"{max(rgba[0]['find']['ms'], rgba[0]['segment']['ms']):.0f} ms." if rgba else "."))
    table = "\n".join(lines)
    print(table)
    if args.write:
        write_section("bench_preprocess", HEADING, table)


if __name__ == "__main__":
    main()
