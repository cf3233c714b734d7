"""Two runs side by side on the same test images (`digitlab compare RUN_A RUN_B`).

    from digitlab.report.compare import compare_runs
    c = compare_runs("runs/a", "runs/b", out="cmp/")   # cmp/compare.html, compare.json, the figure
    c.p_value, c.counts.only_a, c.counts.only_b, c.disagreements

Both models are run here on their test set (the saved metrics hold no per-image answers, and
a paired test needs them). The test sets must be the same images with the same labels and
classes: each run's own data is loaded and compared by content, so a run tested on Fashion-MNIST
or on another MNIST copy with other labels is a clear error, not a meaningless p-value.
The page is `compare_page`'s; the statistics are `models.significance`'s.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ModelError
from ..files.atomic import read_json
from ..files.layout import METRICS_FILE, TIMINGS_FILE
from ..models.significance import PairedCounts, mcnemar_exact, paired_counts

Log = Callable[[str], None]
CHUNK = 1024  # test images per model call: amortises the call, keeps memory flat
SIGNIFICANT = 0.05  # the customary level; the p-value itself is always shown beside the verdict


@dataclass
class RunSide:
    """One run's numbers in a comparison."""

    name: str
    path: Path
    preset: str | None
    runtime: str
    accuracy: float
    errors: int
    ece: float
    f1: dict[str, float]  # per class name
    macro_f1: float
    model_bytes: int
    params: int | None  # from metrics.json (None for a run without one)
    train_seconds: float | None
    timings: dict[str, float]  # timings.json: seconds per phase of the run
    predict_ms: float  # ms per test image here, both runs on this machine at the same time
    probs: np.ndarray = field(repr=False)

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "preset": self.preset, "runtime": self.runtime,
                "accuracy": self.accuracy, "errors": self.errors, "ece": self.ece, "f1": self.f1,
                "macro_f1": self.macro_f1, "model_bytes": self.model_bytes, "params": self.params,
                "train_seconds": self.train_seconds, "timings": self.timings, "predict_ms": self.predict_ms}


@dataclass
class Comparison:
    """Two runs on the same test set: each one's numbers, the paired counts and McNemar's p."""

    a: RunSide
    b: RunSide
    classes: tuple[str, ...]
    data_source: str
    y_true: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    counts: PairedCounts = field(default=None)  # type: ignore[assignment]
    p_value: float = 1.0
    files: dict[str, Path] = field(default_factory=dict)  # what `out` received

    @property
    def disagreements(self) -> np.ndarray:
        """Indices of the test images where the two predictions differ."""
        return np.flatnonzero(self.a.pred != self.b.pred)

    @property
    def verdict(self) -> str:
        """One sentence: which run is better, and whether that could be chance."""
        c = self.counts
        if c.only_a == c.only_b:
            return f"no difference: each is right on {c.only_a} images where the other is wrong (p = 1)"
        better, worse = (self.a, self.b) if c.only_a > c.only_b else (self.b, self.a)
        wins, losses = max(c.only_a, c.only_b), min(c.only_a, c.only_b)
        head = (f"{better.name} is right on {wins} images where {worse.name} is wrong, and wrong on {losses} "
                f"where it is right: exact McNemar p = {self.p_value:.3g}")
        if self.p_value < SIGNIFICANT:
            return f"{head} < {SIGNIFICANT}: {better.name} is better beyond chance"
        return f"{head} >= {SIGNIFICANT}: the difference could be chance"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the disagreeing images by index, with both answers and the truth)."""
        idx = self.disagreements
        return {"a": self.a.to_dict(), "b": self.b.to_dict(), "classes": list(self.classes),
                "data_source": self.data_source, "n_test": int(len(self.y_true)),
                "paired": {"both_right": self.counts.both_right, "only_a": self.counts.only_a,
                           "only_b": self.counts.only_b, "both_wrong": self.counts.both_wrong,
                           "disagree": self.counts.disagree},
                "mcnemar_p": self.p_value, "verdict": self.verdict,
                "disagreements": [{"index": int(i), "true": int(self.y_true[i]), "a": int(self.a.pred[i]),
                                   "b": int(self.b.pred[i])} for i in idx]}


def compare_runs(a: str | os.PathLike, b: str | os.PathLike, *, out: str | os.PathLike | None = None,
                 runs_dir: str | os.PathLike | None = None, runtime: str = "auto",
                 log: Log | None = None) -> Comparison:
    """Compare runs `a` and `b` (names under `runs_dir`, paths, or "latest") on their common test set.

    With `out` (a folder, created if missing), also write compare.html, compare.json and the
    figure of the images they disagree on. Raises ConfigError when the test sets differ."""
    from ..runs.directories import resolve_run

    say = log or (lambda _msg: None)
    dirs = [resolve_run(str(r), runs_dir) for r in (a, b)]
    configs = [_config(d) for d in dirs]
    if tuple(configs[0].classes) != tuple(configs[1].classes):
        raise ConfigError(f"{dirs[0].name} and {dirs[1].name} have different classes "
                          f"({_classes(configs[0])} against {_classes(configs[1])}); only models of one task compare")
    say("loading the test set" + ("" if _same_spec(*configs) else "s"))
    data = _common_test_set(dirs, configs, say)
    sides = []
    for run_dir, config in zip(dirs, configs):
        say(f"predicting the {len(data.y_test):,} test images with {run_dir.name}")
        sides.append(_side(run_dir, config, data.x_test, data.y_test, runtime))
    result = Comparison(a=sides[0], b=sides[1], classes=tuple(configs[0].classes), data_source=data.source,
                        y_true=np.asarray(data.y_test), x_test=data.x_test)
    result.counts = paired_counts(result.y_true, result.a.pred, result.b.pred)
    result.p_value = mcnemar_exact(result.counts.only_a, result.counts.only_b)
    if out is not None:
        from .compare_page import write_comparison

        result.files = write_comparison(result, out)
    return result


def _config(run_dir: Path) -> Any:
    from ..files.layout import MODEL_FILE
    from ..runs.artifacts import load_config

    return load_config(run_dir / MODEL_FILE)


def _classes(config: Any) -> str:
    names = list(config.classes)
    return ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")


def _same_spec(ca: Any, cb: Any) -> bool:
    return (ca.data, ca.data_dir, ca.seed) == (cb.data, cb.data_dir, cb.seed)


def _digest(x: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha256()
    for arr in (x, y):
        arr = np.ascontiguousarray(arr)
        h.update(str((arr.dtype.str, arr.shape)).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _common_test_set(dirs: list[Path], configs: list[Any], say: Log) -> Any:
    """The one test set both runs were tested on; ConfigError when their own test sets differ."""
    from ..runs.rundata import load_data

    first = load_data(configs[0], log=say)
    if _same_spec(*configs):
        return first  # same spec and seed: the same images (a folder's test split is seeded)
    second = load_data(configs[1], log=say)
    if _digest(first.x_test, first.y_test) != _digest(second.x_test, second.y_test):
        raise ConfigError(f"{dirs[0].name} and {dirs[1].name} are tested on different test sets "
                          f"({first.source}: {len(first.y_test):,} images; {second.source}: "
                          f"{len(second.y_test):,} images); a paired comparison needs the same images")
    return first


def _side(run_dir: Path, config: Any, x_test: np.ndarray, y_test: np.ndarray, runtime: str) -> RunSide:
    """Run one model over the test set and collect its numbers."""
    from sklearn.metrics import f1_score

    from ..export.runtimes import open_runner
    from ..models.calibration import expected_calibration_error
    from ..preprocess import to_model_input

    runner = open_runner(run_dir, runtime)
    runner(to_model_input(x_test[:CHUNK], scale=config.scale))  # warm-up: the first call of a size may trace
    t0 = time.perf_counter()
    probs = np.concatenate([runner(to_model_input(x_test[i:i + CHUNK], scale=config.scale))
                            for i in range(0, len(x_test), CHUNK)]) if len(x_test) else np.zeros((0, 1))
    elapsed = time.perf_counter() - t0
    y = np.asarray(y_test).astype(np.int64)
    pred = probs.argmax(axis=1)
    labels = list(range(len(config.classes)))
    f1 = f1_score(y, pred, labels=labels, average=None, zero_division=0)
    metrics = _json_object(run_dir / METRICS_FILE)
    timings = _json_object(run_dir / TIMINGS_FILE)
    params = metrics.get("params")
    params = params.get("total") if isinstance(params, dict) else params  # {"total", "trainable", ...}
    train_seconds = metrics.get("train_seconds")
    return RunSide(
        name=run_dir.name, path=run_dir, preset=config.preset, runtime=runner.name,
        accuracy=float((pred == y).mean()) if len(y) else 0.0, errors=int((pred != y).sum()),
        ece=expected_calibration_error(probs, y), f1={config.classes[k]: float(f1[k]) for k in labels},
        macro_f1=float(np.mean(f1)), model_bytes=Path(runner.path).stat().st_size,
        params=int(params) if isinstance(params, (int, float)) else None,
        train_seconds=float(train_seconds) if isinstance(train_seconds, (int, float)) else None,
        timings={k: float(v) for k, v in timings.items() if isinstance(v, (int, float))},
        predict_ms=1000.0 * elapsed / max(len(x_test), 1), probs=probs)


def _json_object(path: Path) -> dict[str, Any]:
    """A run's JSON file as a dict; missing is empty, damaged is a clear error."""
    value = read_json(path, missing={})
    if not isinstance(value, dict):
        raise ModelError(f"{path}: expected a JSON object; delete or restore it")
    return value
