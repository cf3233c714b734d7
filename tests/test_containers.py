"""The container images (docker/): no Docker engine runs here, so nothing is built; instead:

- the serving image's dependency set is enough: `digitlab serve` runs in a subprocess where every
  distribution outside docker/requirements-serve.txt (TensorFlow, Keras, tf2onnx above all) cannot be
  imported, answers /api/health, the page and /api/predict with a real image, and imports nothing
  beyond that list (read from sys.modules when it exits);
- every package the list names can be imported there, and the list is closed under dependencies;
- the Dockerfiles are linted for structure: pinned base image, non-root user, EXPOSE, HEALTHCHECK,
  every file they COPY exists and passes their .dockerignore.

The versions checked are the test environment's; the image pins its own (see requirements-serve.txt).
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
SERVE_REQUIREMENTS = DOCKER / "requirements-serve.txt"
FULL_CONSTRAINTS = DOCKER / "constraints-full.txt"
DOCKERFILES = {"serve": DOCKER / "Dockerfile.serve", "full": DOCKER / "Dockerfile"}
TF_FAMILY = ("tensorflow", "keras", "tf2onnx", "tf_keras", "tensorboard")  # import names
VENV_BASE = {"pip", "setuptools", "digitlab"}  # in every image's venv besides the list


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """`name==version` lines -> {canonical name: (version, extras)}."""
    pins = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)(?:\[([A-Za-z0-9_,.-]+)\])?==([A-Za-z0-9.+!-]+)", line)
        assert m, f"{path.name}: not a pinned requirement: {raw!r}"
        pins[canonical(m[1])] = (m[3], frozenset(canonical(e) for e in (m[2] or "").split(",") if e))
    return pins


# --------------------------------------------------------------------------- the slim image in a subprocess

BOOTSTRAP = textwrap.dedent('''
    """Run like the slim image: only stdlib, digitlab and the listed distributions can be imported."""
    import atexit, importlib.abc, importlib.metadata, json, os, re, sys

    def canonical(name):
        return re.sub(r"[-_.]+", "-", name).lower()

    ALLOWED = set(json.loads(os.environ["SLIM_ALLOWED"]))
    TF_FAMILY = set(json.loads(os.environ["SLIM_TF_FAMILY"]))
    OWNERS = {top: {canonical(d) for d in dists} for top, dists in importlib.metadata.packages_distributions().items()}
    blocked = []

    class SlimImage(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            owners = OWNERS.get(top, set())
            if top in TF_FAMILY or (owners and not owners & ALLOWED):
                blocked.append(name)
                raise ModuleNotFoundError(f"No module named {name!r} (not in the serving image)", name=name)
            return None

    sys.meta_path.insert(0, SlimImage())

    def imported():
        tops = {m.partition(".")[0] for m in list(sys.modules)}
        stdlib = set(sys.stdlib_module_names)
        foreign = {t for t in tops if t not in stdlib and t.lstrip("_") not in stdlib}
        # A namespace package (opentelemetry) is owned by every distribution that adds to it; when one
        # owner is in the image, that one is what was imported (ray's extras add the others to the venv).
        owned = {d for t in foreign for d in (OWNERS.get(t, set()) & ALLOWED or OWNERS.get(t, ()))}
        return {"modules": sorted(tops), "dists": sorted(owned),
                "unowned": sorted(t for t in foreign if t not in OWNERS), "blocked": blocked}

    def report():
        with open(os.environ["SLIM_REPORT"], "w") as fh:
            json.dump(imported(), fh)

    if sys.argv[1] == "serve":
        atexit.register(report)
        from digitlab.cli.commands import main
        sys.exit(main(sys.argv[1:]))
    else:  # import every top-level module of every listed distribution
        failures = {}
        for dist in sorted(ALLOWED - {"digitlab", "pip", "setuptools"}):
            tops = sorted(t for t, owners in OWNERS.items() if dist in owners and not t.startswith("__"))
            if not tops:
                failures[dist] = "no importable module found"
            for top in tops:
                try:
                    __import__(top)
                except Exception as exc:  # noqa: BLE001 - report every failure, whatever it is
                    failures[f"{dist} ({top})"] = f"{type(exc).__name__}: {exc}"
        report_data = imported()
        report_data["failures"] = failures
        with open(os.environ["SLIM_REPORT"], "w") as fh:
            json.dump(report_data, fh)
''')


def slim_env(tmp_path: Path) -> dict[str, str]:
    allowed = set(read_pins(SERVE_REQUIREMENTS)) | VENV_BASE
    return {**os.environ, "SLIM_ALLOWED": json.dumps(sorted(allowed)), "SLIM_TF_FAMILY": json.dumps(TF_FAMILY),
            "SLIM_REPORT": str(tmp_path / "report.json"), "DIGITLAB_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def user_png(digit28: np.ndarray) -> bytes:
    from PIL import Image

    img = Image.fromarray(255 - digit28).resize((112, 112), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def multipart(field: str, filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = "digitlab-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), boundary


@pytest.fixture
def mounted_model(tmp_path):
    """A model directory as a user would mount it into the image: model.onnx and its metadata only."""
    from digitlab.predict.predictor import pretrained_dir

    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.onnx", "model.onnx.json"):
        (folder / name).write_bytes((pretrained_dir() / name).read_bytes())
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("which", ["shipped", "mounted"])
def test_the_serving_image_serves_without_tensorflow(tmp_path, mnist, mounted_model, which):
    port = free_port()
    boot = tmp_path / "boot.py"
    boot.write_text(BOOTSTRAP, encoding="utf-8")
    # The image's command: ENTRYPOINT + CMD of docker/Dockerfile.serve, on a local port.
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--runtime", "onnx", "--no-access-log"]
    if which == "mounted":
        args += ["--model", str(mounted_model)]
    proc = subprocess.Popen([sys.executable, str(boot), *args], cwd=tmp_path, env=slim_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = json.loads(urllib.request.urlopen(base + "/api/health", timeout=2).read())
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"the server did not start:\n{proc.communicate()[0].decode(errors='replace')[-3000:]}")
                time.sleep(0.2)
        assert health["status"] == "ok" and health["runtime"] == "onnx" and health["preset"] == "strong"
        page = urllib.request.urlopen(base + "/", timeout=5)
        assert page.status == 200 and b"<canvas" in page.read()
        index = int(np.flatnonzero(mnist.y_test == 3)[0])  # a test digit, sent as a person would
        request = urllib.request.Request(base + "/api/predict", data=user_png(mnist.x_test[index]),
                                         headers={"Content-Type": "image/png"})
        answer = json.loads(urllib.request.urlopen(request, timeout=10).read())
        assert answer["label"] == 3 and answer["confidence"] > 0.5 and len(answer["probabilities"]) == 10
        # The page's file upload is multipart: python-multipart, which FastAPI looks for quietly.
        seven = int(np.flatnonzero(mnist.y_test == 7)[0])
        body, boundary = multipart("file", "seven.png", user_png(mnist.x_test[seven]))
        request = urllib.request.Request(base + "/api/predict", data=body,
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert json.loads(urllib.request.urlopen(request, timeout=10).read())["label"] == 7
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # uvicorn shuts down cleanly; the report is written at exit
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    output = proc.stdout.read().decode(errors="replace")
    report = json.loads((tmp_path / "report.json").read_text())
    assert not set(TF_FAMILY) & set(report["modules"]), output
    tried = [m for m in report["blocked"] if m.partition(".")[0] in TF_FAMILY]
    assert not tried, f"the serving path tried to import {tried}"
    # Nothing else was wanted either: an optional import that falls back quietly (uvicorn without
    # uvloop, FastAPI without python-multipart until a form arrives) would make the image slower or
    # break a feature, so every attempt outside the list counts.
    assert report["blocked"] == [], f"the serving path tried to import modules outside the list: {report['blocked']}"
    listed = set(read_pins(SERVE_REQUIREMENTS)) | VENV_BASE
    missing = set(report["dists"]) - listed
    assert not missing, f"imported by the serving path but missing from {SERVE_REQUIREMENTS.name}: {missing}"
    # It must need the list, not just be allowed it: the big ones are really used.
    assert {"onnxruntime", "fastapi", "uvicorn", "numpy", "pillow", "typer"} <= set(report["dists"])


@pytest.mark.slow
def test_every_listed_package_imports_in_the_slim_set(tmp_path):
    boot = tmp_path / "boot.py"
    boot.write_text(BOOTSTRAP, encoding="utf-8")
    done = subprocess.run([sys.executable, str(boot), "import-all"], cwd=tmp_path, env=slim_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["failures"] == {}
    assert not set(TF_FAMILY) & set(report["modules"])
    assert set(report["dists"]) >= set(read_pins(SERVE_REQUIREMENTS)) - {"pip", "setuptools"}


def test_the_serving_list_is_closed_under_dependencies():
    """`pip install -r requirements-serve.txt` pulls nothing unpinned: every requirement of a listed
    package (on Linux, with the extras asked for) is listed too."""
    import importlib.metadata as md

    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    pins = read_pins(SERVE_REQUIREMENTS)
    env = {**default_environment(), "sys_platform": "linux", "platform_system": "Linux"}
    unlisted = {}
    for name, (_, extras) in pins.items():
        for text in md.requires(name) or []:
            req = Requirement(text)
            if req.marker and not any(req.marker.evaluate({**env, "extra": e}) for e in ("", *extras)):
                continue
            if canonical(req.name) not in pins:
                unlisted.setdefault(canonical(req.name), []).append(name)
    assert not unlisted, f"required but not pinned in {SERVE_REQUIREMENTS.name}: {unlisted}"
    assert not {canonical(n) for n in TF_FAMILY} & set(pins)
    assert "onnxruntime" in pins and pins["uvicorn"][1] == {"standard"}


def test_the_full_image_constraints_agree_with_the_serving_pins():
    serve, full = read_pins(SERVE_REQUIREMENTS), read_pins(FULL_CONSTRAINTS)
    differ = {n: (serve[n][0], full[n][0]) for n in set(serve) & set(full) if serve[n][0] != full[n][0]}
    assert not differ, f"serve vs full pins differ: {differ}"
    assert {"tensorflow", "keras", "tf2onnx"} <= set(full)


# --------------------------------------------------------------------------- Dockerfile lint


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        pending += " " + line[:-1] if line.endswith("\\") else " " + line
        if not line.endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def stages(path: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions(path):
        if ins[0] == "FROM":
            result.append([])
        assert result, f"{path.name}: {ins[0]} before the first FROM"
        result[-1].append(ins)
    return result


def ignored(path: str, rules: list[str]) -> bool:
    """Whether a .dockerignore (its rules in order, last match wins) leaves `path` out of the context."""
    from fnmatch import fnmatch

    out = False
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule[1:] if negate else rule
        pattern = pattern.rstrip("/")
        if fnmatch(path, pattern) or path.startswith(pattern + "/") or (pattern == "*" and path):
            out = not negate
    return out


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_structure(kind):
    path = DOCKERFILES[kind]
    all_stages = stages(path)
    for stage in all_stages:
        image = stage[0][1].split()[0]
        assert "@sha256:" in image or re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", image), \
            f"{path.name}: base image {image!r} is not pinned to a full version (or a digest)"
    final = dict((k, v) for k, v in all_stages[-1])  # last value per instruction in the final stage
    user = final.get("USER", "root")
    assert user not in ("root", "0") and not user.startswith("0:"), f"{path.name}: the image runs as root"
    assert final.get("EXPOSE") == "8000"
    health = final.get("HEALTHCHECK", "")
    assert "CMD" in health and "/api/health" in health and "--timeout" in health
    assert "ENTRYPOINT" in final
    rules = [r.strip() for r in (path.parent / (path.name + ".dockerignore")).read_text().splitlines()
             if r.strip() and not r.startswith("#")]
    copied = []
    for stage in all_stages:
        for word, args in stage:
            if word in ("COPY", "ADD"):
                parts = [p for p in shlex.split(args) if not p.startswith("--")]
                if "--from=" in args:
                    continue
                for src in parts[:-1]:
                    copied.append(src)
                    assert (ROOT / src).exists(), f"{path.name}: COPY {src}: no such file in the repository"
                    assert not ignored(src.rstrip("/"), rules), f"{path.name}: COPY {src} is excluded by its .dockerignore"
    assert ignored(".venv", rules) and ignored("runs", rules), "the build context should leave out .venv and runs/"
    runs = " ".join(args for stage in all_stages for word, args in stage if word == "RUN")
    if kind == "serve":
        assert "docker/requirements-serve.txt" in copied and "-r /tmp/requirements-serve.txt" in runs
        assert "--no-deps" in runs and "tensorflow" not in runs.lower()
        assert json.loads(final["ENTRYPOINT"])[:4] == ["digitlab", "serve", "--host", "0.0.0.0"]
    else:
        assert "docker/constraints-full.txt" in copied and "-c /tmp/constraints-full.txt" in runs
        assert json.loads(final["ENTRYPOINT"]) == ["digitlab"]


def test_the_lint_catches_what_it_checks(tmp_path):
    """The Dockerfile checks above are not vacuous: a root, unpinned, unchecked image fails them."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nCOPY . /src\nRUN pip install /src\nCMD [\"digitlab\"]\n")
    (tmp_path / "Dockerfile.dockerignore").write_text("*\n")
    image = stages(bad)[0][0][1]
    assert not re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", image)
    final = dict(stages(bad)[-1])
    assert "USER" not in final and "HEALTHCHECK" not in final and "EXPOSE" not in final
    assert ignored("src", ["*"]) and not ignored("src", ["*", "!src/"]) and ignored("src/a/__pycache__", ["**/__pycache__"])
