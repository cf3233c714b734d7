"""Shared fixtures: MNIST loaded once, one tiny end-to-end run reused by many tests."""

from __future__ import annotations

import os

import pytest

# Tests must never write to the user's cache or reach the network by accident.
os.environ.setdefault("DIGITLAB_CACHE_DIR", os.path.join(os.path.dirname(__file__), ".cache-never-used"))


@pytest.fixture(scope="session")
def mnist():
    """The packaged MNIST (verified), loaded once per test session."""
    from digitlab.data.mnist import load_mnist_data

    return load_mnist_data()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One real `digitlab run --preset seed` on 2,000 images for 1 epoch (about 15 s), shared by the CLI tests."""
    from digitlab.cli.commands import main

    out = tmp_path_factory.mktemp("runs")
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--limit", "2000", "--epochs", "1", "--out", str(out), "--name", "tiny", "--preset", "seed"])
    assert exit_info.value.code == 0
    return out / "tiny"
