import os
import stat
from pathlib import Path

import pytest

from digitlab.errors import ModelError
from digitlab.files.atomic import atomic_path, atomic_write_text, check_writable_dir
from digitlab.runs.directories import new_run_dir, resolve_run, set_latest


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.keras"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.name.endswith(".keras")  # writers that pick a format by extension still work
            tmp.write_text("half of a new fi")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["model.keras"]


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "x.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_run_dirs_are_never_reused(tmp_path):
    a = new_run_dir(tmp_path, "exp", "seed")
    b = new_run_dir(tmp_path, "exp", "seed")
    assert a.name == "exp" and b.name == "exp-2"
    auto = new_run_dir(tmp_path, None, "seed")
    assert auto.name.startswith("seed-")


@pytest.mark.parametrize("name", ["../escape", "a/b", "latest", ""])
def test_bad_run_names(tmp_path, name):
    with pytest.raises(ModelError, match="invalid run name"):
        new_run_dir(tmp_path, name, "seed")


def test_latest_pointer_and_resolution(tmp_path):
    with pytest.raises(ModelError, match="no runs found"):
        resolve_run(None, tmp_path)
    first = new_run_dir(tmp_path, "first", "seed")
    set_latest(first)
    second = new_run_dir(tmp_path, "second", "seed")
    set_latest(second)
    assert resolve_run(None, tmp_path) == second.resolve()
    assert resolve_run("first", tmp_path) == first.resolve()
    assert resolve_run(str(first), "elsewhere") == first.resolve()
    with pytest.raises(ModelError, match="run 'nope' not found"):
        resolve_run("nope", tmp_path)


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ModelError, match="file is not a directory"):
        check_writable_dir(blocker / "runs")
    with pytest.raises(ModelError, match="is a file"):
        check_writable_dir(blocker)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):  # root ignores permissions: use a read-only filesystem instead
        locked = Path("/proc")
    with pytest.raises(ModelError, match="not writable"):
        check_writable_dir(locked)


def test_output_folders_are_not_created_with_their_parents(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        check_writable_dir(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
    assert check_writable_dir(tmp_path / "a").is_dir()  # the last level is created


@pytest.mark.parametrize("target, message", [("/proc/x.onnx", "cannot write /proc/x.onnx"),
                                             ("{tmp}/missing/x.onnx", "does not exist"),
                                             ("{tmp}/file/x.onnx", "is not a directory")])
def test_output_paths_are_checked_before_any_work(tmp_path, target, message):
    from digitlab.files.atomic import check_output_path

    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelError, match=message):
        check_output_path(target.format(tmp=tmp_path))
    assert check_output_path(tmp_path / "ok.onnx") == tmp_path / "ok.onnx"


def test_damaged_run_json_is_a_clear_error(tmp_path):
    from digitlab.files.atomic import read_json

    (tmp_path / "m.json").write_text('{"test_accuracy": 0.9')
    with pytest.raises(ModelError, match="m.json: damaged JSON"):
        read_json(tmp_path / "m.json")
    (tmp_path / "n.json").write_text('{"test_accuracy": NaN}')
    with pytest.raises(ModelError, match="damaged JSON"):
        read_json(tmp_path / "n.json")
    assert read_json(tmp_path / "absent.json", missing={}) == {}
    with pytest.raises(ModelError, match="file not found"):
        read_json(tmp_path / "absent.json")
