"""What a run trains and tests on: the `--data` spec of a config, loaded as a `datasets.Dataset`.

`--data-dir DIR` (MNIST's files, the option from before `--data`) is spelled "mnist:DIR" here,
so every command that reads data (run, train, evaluate, explore, show, data) names it one way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from ..config.settings import Config

Log = Callable[[str], None]
PROGRESS_FROM = 2000  # images in a folder from which reading it reports progress (1-10 ms an image)


def spec_of(data: str | None, data_dir: str | None = None) -> str | None:
    """The `--data` spec for a `--data` and a `--data-dir` option (at most one of them; None: MNIST)."""
    if data is not None and data_dir is not None:
        raise ConfigError("give either --data or --data-dir, not both (--data mnist:DIR is the same as --data-dir DIR)")
    return data if data is not None else (f"mnist:{data_dir}" if data_dir else None)


def load_data(config: Config, *, conform: bool = True, data_dir: str | None = None,
              log: Log | None = None) -> Any:
    """The `datasets.Dataset` a config trains and tests on (`config.data`, else MNIST; `data_dir`
    replaces both with MNIST's files there), its labels conformed to `config.classes` when `conform`
    (a trained model's classes, or the classes of the model being fine-tuned)."""
    from ..data import load_dataset

    spec = spec_of(None, data_dir) if data_dir is not None else spec_of(config.data, config.data_dir)
    return load_dataset(spec, seed=config.seed, download=config.download,
                        classes=config.classes if conform else None, progress=_image_progress(log))


def _image_progress(say: Log | None) -> Callable[[int, int], None]:
    """A progress callback for image folders: a line at each quarter of a large folder."""
    state = {"next": 0.25}

    def progress(done: int, total: int) -> None:
        if say is not None and total >= PROGRESS_FROM and done >= state["next"] * total:
            say(f"reading images: {done:,} of {total:,}")
            state["next"] += 0.25

    return progress
