"""Load test for `digitlab serve`: single-image predictions over loopback.

Starts `digitlab serve` on 127.0.0.1:<free port> (never any other address),
then a small asyncio HTTP/1.1 client (keep-alive connections, one request in
flight per connection; no third-party client, so the client costs as little
CPU as possible: it shares the machine's cores with the server) sends
`POST /api/predict` with a PNG at each concurrency for a fixed time.
Records requests/s, p50/p99 latency, errors (must be 0) and the server's RSS.

    python benchmarks/bench_server.py [--duration 20] [--concurrency 1 8 32]
                                      [--image mnist|canvas] [--model PATH] [--workers N] [--write]

--write replaces the section between the bench_server markers in BENCHMARKS.md
(appending a "## Serving" section when they are missing).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
from _common import cpu_name, write_section
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except Exception:  # noqa: BLE001 - psutil missing: read /proc
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def make_image(kind: str) -> tuple[bytes, int]:
    """A test digit as PNG: 'mnist' = the 28x28 original; 'canvas' = 280x280 black on white, like the page sends."""
    from PIL import Image

    from digitlab.data import load_mnist_data

    d = load_mnist_data()
    x, y = d.x_test[0], int(d.y_test[0])
    img = Image.fromarray(x) if kind == "mnist" else Image.fromarray(255 - x).resize((280, 280), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue(), y


class Server:
    def __init__(self, model: str | None, workers: int):
        self.port = free_port()
        cmd = [sys.executable, "-m", "digitlab.cli", "serve", "--host", HOST, "--port", str(self.port),
               "--workers", str(workers), "--log-level", "warning", "--no-access-log"]
        if model:
            cmd += ["--model", model]
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise SystemExit(f"server exited ({self.proc.returncode}):\n{self.log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}/api/health", timeout=2) as r:
                    self.health = r.read().decode()
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit("server did not come up within 120 s") from None
                time.sleep(0.25)

    def pids(self) -> list[int]:
        pids = [self.proc.pid]
        try:
            import psutil

            pids += [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
        except Exception:  # noqa: BLE001
            pass
        return pids

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids())

    def rss(self) -> float:
        return sum(rss_mib(p) for p in self.pids())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


async def worker(port: int, request: bytes, expect: bytes, stop_at: float, lat: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            writer.write(request)
            status = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            dt = time.perf_counter() - t0
            if not status.startswith(b"HTTP/1.1 200") or expect not in body:
                errors.append(status.decode(errors="replace").strip() + " " + body[:120].decode(errors="replace"))
                if len(errors) > 50:
                    return
            else:
                lat.append(dt)
    finally:
        writer.close()


async def load(port: int, png: bytes, label: int, concurrency: int, duration: float) -> dict:
    request = (f"POST /api/predict HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: image/png\r\n"
               f"Content-Length: {len(png)}\r\n\r\n").encode() + png
    expect = f'"label":{label}'.encode()
    # Warm-up (connections, first requests), not counted.
    warm: list[float] = []
    await asyncio.gather(*(worker(port, request, expect, time.perf_counter() + 1.0, warm, []) for _ in range(concurrency)))
    lat: list[float] = []
    errors: list[str] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(port, request, expect, t0 + duration, lat, errors) for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    a = np.array(lat) * 1000 if lat else np.array([np.nan])
    return {"concurrency": concurrency, "requests": len(lat), "rps": len(lat) / wall,
            "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "errors": len(errors),
            "warmup": len(warm),
            "first_error": errors[0] if errors else ""}


def table(rows: list[dict]) -> str:
    out = ["| concurrency | requests | req/s | p50 ms | p99 ms | errors | server CPU ms/request | server RSS MiB |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['concurrency']} | {r['requests']} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} "
                   f"| {r['errors']} | {r['cpu_ms']:.2f} | {r['rss']:.0f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per concurrency level (default 20)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--image", choices=["mnist", "canvas"], default="mnist")
    ap.add_argument("--model", default=None, help="model path (default: the shipped pretrained model)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args()

    png, label = make_image(args.image)
    server = Server(args.model, args.workers)
    rows = []
    try:
        print(f"server up on {HOST}:{server.port}: {server.health}", flush=True)
        for c in args.concurrency:
            cpu0 = server.cpu()
            r = asyncio.run(load(server.port, png, label, c, args.duration))
            r["rss"] = server.rss()
            # Server CPU per request (warm-up included in both): robust to a busy machine, unlike req/s.
            r["cpu_ms"] = (server.cpu() - cpu0) * 1000 / max(1, r["requests"] + r.get("warmup", 0))
            rows.append(r)
            print(f"concurrency {c}: {r['rps']:.0f} req/s, p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, "
                  f"server CPU {r['cpu_ms']:.2f} ms/request, "
                  f"errors {r['errors']} {r['first_error']}", flush=True)
    finally:
        server.stop()

    import json

    health = json.loads(server.health)
    cmd = "python benchmarks/bench_server.py " + " ".join(sys.argv[1:])
    text = "\n".join([
        f"Load test of `digitlab serve` over loopback: `POST /api/predict` with one PNG "
        f"({args.image}: {'28x28 MNIST original' if args.image == 'mnist' else '280x280 black-on-white, like the page'}, "
        f"{len(png)} bytes), {args.duration:g} s per concurrency level, keep-alive HTTP/1.1, asyncio client in the same machine.",
        "",
        table(rows),
        "",
        f"- Command: `{cmd}`",
        f"- Server: {args.workers} uvicorn worker(s), runtime `{health.get('runtime')}`, model `{health.get('model_id')}` "
        f"({health.get('preset')}), digitlab {health.get('version')}",
        f"- Machine: {cpu_name()}, {os.cpu_count()} CPUs (shared by client and server), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average {os.getloadavg()[0]:.1f} at the end (the machine "
        f"was shared with other work, e.g. a training job: req/s moves with it, server CPU per request much less)",
        f"- Measured {time.strftime('%Y-%m-%d %H:%M')}",
    ])
    print()
    print(table(rows))
    if args.write:
        write_section("bench_server", "## Serving", text)
    if any(r["errors"] for r in rows):
        raise SystemExit("errors during the load test")


if __name__ == "__main__":
    main()
