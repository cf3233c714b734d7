"""`digitlab predict SOURCE --out FILE`: streaming, resumable batch recognition (predict/batch.py).

Real runs of the shipped model on MNIST test digits written as PNG files: a run killed with
-9 in the middle and re-run gives every image exactly once, with the answers of an in-process
Predictor; a truncated last row is repaired; tar and zip archives give the folder's answers.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

N_IMAGES = 2000  # enough that a run lasts a few seconds on 2 workers, so a kill lands mid-run


@pytest.fixture(scope="module")
def digits(tmp_path_factory, mnist):
    """N_IMAGES MNIST test digits as black-on-white PNGs in sub-folders, named NNNNN_LABEL.png."""
    from PIL import Image

    root = tmp_path_factory.mktemp("stream") / "digits"
    for i in range(N_IMAGES):
        folder = root / f"part{i // 500}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(255 - mnist.x_test[i]).save(folder / f"{i:05d}_{int(mnist.y_test[i])}.png")
    return root


@pytest.fixture(scope="module")
def reference(digits):
    """{path: answer} from Predictor.predict_stream in this process (the in-process path); the
    answer is the digit, or the number where auto mode reads several digits."""
    from digitlab.predict.inputs import expand_inputs
    from digitlab.predict.predictor import Predictor

    predictor = Predictor.load()
    outcomes = predictor.predict_stream(expand_inputs([str(digits)]), mode="auto")
    return {o.source: getattr(o.result, "text", None) or o.result.name for o in outcomes}


def _answer(row: dict) -> str:
    """A JSONL record's answer, as `reference` gives it (the CSV's "prediction" column)."""
    return row["text"] if row["kind"] == "number" else row["name"]


def _jsonl(path: Path) -> list[dict]:
    """Every line parsed (a broken line fails the test)."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    return [json.loads(line) for line in raw.decode().splitlines()]


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digitlab", "predict", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_kill_9_mid_run_then_resume_gives_every_image_once(digits, reference, tmp_path):
    import psutil

    out = tmp_path / "results.jsonl"
    cmd = [sys.executable, "-m", "digitlab", "predict", str(digits), "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 300:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert len(workers) >= 2  # the worker processes (and multiprocessing's resource tracker)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    # Orphaned workers notice their parent is gone and exit (nobody else would stop them).
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, alive
    interrupted = out.read_bytes()
    assert 300 <= interrupted.count(b"\n") < N_IMAGES  # really stopped in the middle

    again = _cli(str(digits), "--out", str(out), "--workers", "2")
    assert again.returncode == 0, again.stderr
    assert "already there" in again.stdout
    rows = _jsonl(out)
    files = [r["file"] for r in rows]
    assert len(files) == len(set(files)) == N_IMAGES  # no duplicate, none missing
    assert set(files) == set(reference)
    assert {r["file"]: _answer(r) for r in rows} == reference
    # Every complete row the killed run wrote is kept as it was.
    kept = interrupted[: interrupted.rfind(b"\n") + 1]
    assert out.read_bytes().startswith(kept)
    # Accuracy sanity: these are MNIST test digits, named with their true label.
    right = sum(r.get("label") == int(Path(r["file"]).stem.split("_")[1]) for r in rows)
    assert right / N_IMAGES >= 0.97, right


def test_csv_resume_repairs_a_truncated_last_row(digits, reference, tmp_path):
    from digitlab.predict.batch import predict_to_file
    from digitlab.predict.present import csv_header

    part = digits / "part1"
    out = tmp_path / "results.csv"
    first = predict_to_file(str(part), out, workers=1, progress=False)
    assert first.images == 500 and first.failed == 0
    whole = out.read_bytes()
    lines = whole.splitlines(keepends=True)
    # As if killed while writing: the last 40 rows gone, the row before them cut in the middle.
    cut = b"".join(lines[:-41]) + lines[-41][:25]
    out.write_bytes(cut)
    second = predict_to_file(str(part), out, workers=0, progress=False)
    assert second.resumed == 459 and second.images == 41
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == csv_header(10)
    body = rows[1:]
    assert all(len(r) == len(rows[0]) for r in body)
    assert sorted(r[0] for r in body) == sorted(str(p) for p in part.glob("*.png"))
    assert {r[0]: r[2] for r in body} == {k: v for k, v in reference.items() if "/part1/" in k}
    # The CSV rows are those of `--csv`: the same file row for row (the order is the listing's), every
    # field but the raw probabilities exact. Those may differ in the last bits (~1e-11): the resumed
    # images are a smaller batch, and an ensemble's graph (the shipped model) sums in another order.
    raw = [i for i, name in enumerate(csv_header(10)) if name.startswith("p") and name[1:].isdigit()]
    before = {r[0]: r for r in csv.reader(io.StringIO(whole.decode()))}
    for r in body:
        assert [v for i, v in enumerate(r) if i not in raw] == [v for i, v in enumerate(before[r[0]]) if i not in raw]
        np.testing.assert_allclose([float(r[i]) for i in raw], [float(before[r[0]][i]) for i in raw], rtol=0, atol=1e-7)


def test_a_bad_image_is_one_error_row_and_the_exit_code_says_so(digits, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for src in sorted((digits / "part0").glob("*.png"))[:20]:
        (folder / src.name).write_bytes(src.read_bytes())
    (folder / "broken.png").write_bytes(os.urandom(3000))
    (folder / "empty.png").write_bytes(b"")
    out = tmp_path / "mixed.jsonl"
    proc = _cli(str(folder), "--out", str(out), "--workers", "1")
    assert proc.returncode == 1, proc.stderr
    rows = _jsonl(out)
    assert len(rows) == 22
    errors = {r["file"]: r["error"] for r in rows if "error" in r}
    assert set(errors) == {str(folder / "broken.png"), str(folder / "empty.png")}
    assert "not an image" in errors[str(folder / "broken.png")] and "empty" in errors[str(folder / "empty.png")]
    assert ": 22 images in" in proc.stdout and " 2 errors" in proc.stdout
    assert "error: " in proc.stderr and "Traceback" not in proc.stderr


def test_tar_and_zip_archives_give_the_folders_answers(digits, reference, tmp_path):
    from digitlab.predict.batch import predict_to_file

    part = digits / "part2"
    names = sorted(part.glob("*.png"))[:250]
    tar_path, zip_path = tmp_path / "digits.tar.gz", tmp_path / "digits.zip"
    with tarfile.open(tar_path, "w:gz") as tf:
        for p in names:
            tf.add(p, arcname=f"part2/{p.name}")
    with zipfile.ZipFile(zip_path, "w") as zf:
        for p in names:
            zf.write(p, f"part2/{p.name}")
    want = {f"part2/{p.name}": reference[str(p)] for p in names}
    for archive, workers in ((tar_path, 2), (zip_path, 0)):
        out = tmp_path / f"{archive.name}.jsonl"
        summary = predict_to_file(str(archive), out, workers=workers, progress=False)
        assert summary.images == 250 and summary.failed == 0
        rows = _jsonl(out)
        prefix = f"{archive}:"
        assert all(r["file"].startswith(prefix) for r in rows)
        assert {r["file"][len(prefix):]: _answer(r) for r in rows} == want
        assert not list(tmp_path.glob("part2"))  # streamed, never extracted
        # Resuming an archive skips its done members.
        assert predict_to_file(str(archive), out, workers=0, progress=False).resumed == 250


def test_parquet_parts_resume_and_match_the_jsonl(digits, reference, tmp_path, monkeypatch):
    pq = pytest.importorskip("pyarrow.parquet")
    from digitlab.predict import sinks
    from digitlab.predict.batch import predict_to_file

    monkeypatch.setattr(sinks, "PART_ROWS", 200)  # several parts from 500 images: 200, 200, 100
    part = digits / "part3"
    out = tmp_path / "results.parquet"
    assert predict_to_file(str(part), out, workers=0, progress=False, chunk=100).images == 500
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == 3
    parts[-1].unlink()  # as if killed before the last part was written
    again = predict_to_file(str(part), out, workers=0, progress=False)
    assert again.resumed == 400 and again.images == 100
    table = pq.read_table(out).to_pylist()
    assert len(table) == len({r["file"] for r in table}) == 500
    assert {r["file"]: r["prediction"] for r in table} == \
        {k: v for k, v in reference.items() if "/part3/" in k}
    assert all(isinstance(r["uncertain"], bool) and isinstance(r["confidence"], float) for r in table)


def test_iter_inputs_lists_lazily_in_expand_inputs_order(digits, tmp_path, monkeypatch):
    from digitlab.predict.inputs import count_inputs, expand_inputs, iter_inputs

    odd = tmp_path / "odd"
    for name in ("b/x.png", "b-1.png", "b.png", "a/c/d.png", "z.txt"):
        (odd / name).parent.mkdir(parents=True, exist_ok=True)
        (odd / name).write_bytes(b"x")
    for root in (odd, digits):
        assert [i.label for i in iter_inputs([str(root)])] == [i.label for i in expand_inputs([str(root)])]
    assert count_inputs([str(digits)]) == N_IMAGES
    # @LIST: one path a line, relative to the current directory; blank lines skipped, missing ones errors.
    monkeypatch.chdir(digits)
    (tmp_path / "list.txt").write_text("part0/00000_7.png\n\npart1/00500_3.png\r\nnope.png\n")
    items = list(iter_inputs([f"@{tmp_path / 'list.txt'}"]))
    assert [(i.label, i.error) for i in items] == [("part0/00000_7.png", None), ("part1/00500_3.png", None),
                                                   ("nope.png", "no such file")]
    # Resuming: skipped labels are never read.
    assert [i.label for i in iter_inputs([str(odd)], skip=lambda s: s.endswith("b.png"))] == \
        [str(odd / "a/c/d.png"), str(odd / "b-1.png"), str(odd / "b/x.png")]


def _main(capsys, *args: str) -> tuple[int, str]:
    from digitlab.cli.commands import main

    with pytest.raises(SystemExit) as info:
        main(["predict", *args])
    return info.value.code, capsys.readouterr().err


def test_bad_usage_is_one_line(digits, tmp_path, capsys):
    for args, says in ((["--out", str(tmp_path / "x.txt")], "use .jsonl, .csv or .parquet"),
                       (["--out", str(tmp_path / "x.jsonl"), "--json"], "--out writes the format"),
                       (["--workers", "2"], "go with --out"),
                       (["--out", str(tmp_path / "x.jsonl"), "--engine", "spark"], "unknown engine"),
                       (["--out", str(tmp_path / "nodir" / "x.jsonl")], "no directory")):
        code, err = _main(capsys, str(digits / "part0"), *args)
        assert code == 2 and says in err and len(err.splitlines()) == 1, (args, err)
    # A file that is not ours is never appended to.
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text("hello\n")
    code, err = _main(capsys, str(digits / "part0"), "--out", str(foreign))
    assert code == 2 and "not a result row" in err
    assert foreign.read_text() == "hello\n"


def test_ctrl_c_stops_between_batches_and_the_same_command_goes_on(digits, reference, tmp_path):
    out = tmp_path / "results.csv"
    args = [str(digits / "part0"), str(digits / "part1"), "--out", str(out), "--workers", "1"]
    # The default SIGINT handling, even when the suite runs as a background job (inherited as ignored).
    proc = subprocess.Popen([sys.executable, "-m", "digitlab", "predict", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") > 100:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "the same command goes on" in err and "Traceback" not in err
    stopped = out.read_bytes()
    assert stopped.endswith(b"\n") and stopped.count(b"\n") < 1001  # whole rows only, stopped early
    again = _cli(*args)
    assert again.returncode == 0, again.stderr
    with open(out, newline="") as fh:
        body = list(csv.reader(fh))[1:]
    assert len(body) == len({r[0] for r in body}) == 1000
    assert {r[0]: r[2] for r in body} == {k: v for k, v in reference.items() if "/part0/" in k or "/part1/" in k}
