"""A newcomer's first commands: what `make run` tells them to try next works, and the default
install (no extras) serves and exports."""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _hint_commands() -> list[str]:
    """The commands the `make run` hint suggests (the lines `@echo`ed after `digitlab run`)."""
    recipe = re.search(r"^run:.*?\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    echoed = [line.split("@echo", 1)[1].strip().strip('"') for line in recipe.splitlines() if "@echo" in line]
    commands = [c.strip() for line in echoed if line.lstrip().startswith("digitlab")
                for c in line.split("|")]
    assert any("activate" in line for line in echoed), echoed  # how to reach the command at all
    return commands


def test_the_make_run_hint_names_working_commands():
    commands = _hint_commands()
    assert {c.split()[1] for c in commands} >= {"predict", "serve"}, commands
    for command in commands:
        if command.split()[1] == "serve":
            continue  # below: a server runs until stopped
        args = shlex.split(command)
        proc = subprocess.run([str(BIN / "digitlab"), *args[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (command, proc.stderr)
        assert "Traceback" not in proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_digitlab_serve_answers_after_the_default_install():
    port = _free_port()
    proc = subprocess.Popen([str(BIN / "digitlab"), "serve", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5) as r:
                    health = json.loads(r.read())
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[0]
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)
        assert health["status"] == "ok" and health["runtime"] == "onnx"
        image = (ROOT / "examples" / "seven.jpg").read_bytes()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/predict", data=image,
                                         headers={"Content-Type": "image/jpeg"})
        with urllib.request.urlopen(request, timeout=30) as r:
            assert json.loads(r.read())["label"] == 7
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _unconditional_requirements() -> set[str]:
    names = set()
    for req in metadata.requires("digitlab") or []:
        if "extra ==" in req:
            continue
        names.add(re.split(r"[ ;<>=!~\[]", req, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_the_default_install_brings_what_serve_and_export_need():
    # `pip install digitlab` (what `make run` does) must give every command the README shows.
    needed = {"fastapi", "fastapi-offline", "uvicorn", "python-multipart", "onnxruntime", "tf2onnx", "onnx",
              "ai-edge-litert", "rich", "typer"}
    assert needed <= _unconditional_requirements()


def test_the_readme_examples_answer_as_the_readme_shows():
    """`digitlab predict examples/ --json`, the README's first try: every example image (made from
    MNIST *test* digits, or drawn by examples/make_examples.py) gets the answer the README prints,
    and the README's listing names every file in the folder."""
    proc = subprocess.run([str(BIN / "digitlab"), "predict", str(ROOT / "examples"), "--json"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    results = {Path(r["file"]).name: r for r in json.loads(proc.stdout)}
    expected = {"seven.jpg": 7, "canvas-3.png": 3, "chalk-5.png": 5, "tiny-4.png": 4}
    for name, label in expected.items():
        r = results[name]
        assert r["label"] == label and not (r["uncertain"] or r["not_digit"] or r["no_digit"]), r
    assert results["year.png"]["text"] == "2024" and not results["year.png"]["uncertain"]
    assert results["letter-A.png"]["not_digit"], results["letter-A.png"]
    assert results["blank.png"]["no_digit"], results["blank.png"]
    readme = (ROOT / "README.md").read_text()
    listing = readme[readme.index("$ digitlab predict examples/"):]
    listing = listing[:listing.index("```")]
    assert sorted(re.findall(r"examples/(\S+)", listing)) == sorted(results), "README listing != examples/"
