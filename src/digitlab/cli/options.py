"""The command line's options, defined once: the training options `run` and `train` share (one
table, like ultralytics' defaults), their help texts, and the Typer plumbing that turns the table
into a signature and finishes the help pages. `cli` holds the commands.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer

from ..config.presets import DEFAULT_PRESET


def _presets_help() -> str:
    from ..config.presets import describe_presets

    return (f"Model preset (default: {DEFAULT_PRESET}; with --init, the model's). "
            + "; ".join(describe_presets().splitlines()))


RUNS_HELP = "Directory that holds run directories. (default: $DIGITLAB_RUNS, else ./runs)"
DATA_DIR_HELP = "Directory with the four MNIST IDX files (raw or .gz) or an mnist.npz. (default: the packaged copy)"
DATA_HELP = ("What to train on: a folder of images with one sub-folder per class (DIR/CLASS/*.png, or "
             "DIR/train/ and DIR/test/), IDX or .npz files, or a known set: fashion-mnist, kmnist, "
             "emnist-digits (NAME or NAME:PATH). (default: MNIST)")
INIT_HELP = ("Fine-tune a trained model instead of starting from random weights: 'pretrained' (the shipped "
             "model), a run (name, directory or 'latest') or a .keras file. Its architecture, classes and "
             "preprocessing are kept; few epochs at a low learning rate (override with --epochs, --lr); a digit "
             "model gets MNIST mixed into every batch (--set replay=SHARE) and keeps within a forgetting budget "
             "on MNIST (--set forgetting_budget=SHARE).")

# The training options of `run` and `train`, defined once: (parameter, Config field, type,
# default, option names, metavar, help). None (or False for flags) means "not given", so the
# preset's default stays in force.
TRAINING_OPTIONS: tuple[tuple[str, str | None, Any, Any, tuple[str, ...], str, str], ...] = (
    ("preset", None, Optional[str], None, ("--preset", "-p"), "NAME", _presets_help),
    ("epochs", "epochs", Optional[int], None, ("--epochs", "-e"), "N",
     "Training epochs. (default: the preset's, 10 for seed)"),
    ("batch_size", "batch_size", Optional[int], None, ("--batch-size", "-b"), "N",
     "Batch size. (default: the preset's, 128 for seed)"),
    ("lr", "learning_rate", Optional[float], None, ("--lr",), "X",
     "Peak learning rate. (default: the preset's, 1e-3 for seed)"),
    ("seed", "seed", Optional[int], None, ("--seed",), "N", "Random seed for split, init and shuffling. (default: 42)"),
    ("limit", "limit", Optional[int], None, ("--limit",), "N",
     "Use only the first N training images (quick looks). (default: all)"),
    ("members", "members", Optional[int], None, ("--members",), "N",
     "Train N models (seeds seed..seed+N-1) and save their soft vote as one model. (default: the preset's)"),
    ("val_fraction", "val_fraction", Optional[float], None, ("--val-fraction",), "X",
     "Validation share of the training images. (default: 0.2)"),
    ("stratify", "stratify", bool, False, ("--stratify",), "", "Stratify the train/validation split by class."),
    ("data", "data", Optional[str], None, ("--data", "-d"), "SPEC", DATA_HELP),
    ("init", "init", Optional[str], None, ("--init",), "MODEL", INIT_HELP),
    ("data_dir", "data_dir", Optional[str], None, ("--data-dir",), "DIR", DATA_DIR_HELP),
    ("download", "download", bool, False, ("--download",), "",
     "Use MNIST downloaded from the public mirrors into the user cache."),
    ("out", "out", Optional[str], None, ("--out", "-o"), "DIR", RUNS_HELP),
    ("name", "name", Optional[str], None, ("--name",), "NAME", "Run name. (default: <preset>-<timestamp>)"),
    ("set", None, Optional[list[str]], None, ("--set", "-s"), "KEY=VALUE",
     "Set any Config field, e.g. --set schedule=cosine --set rotation=10 (repeatable; see config.py)."),
)


def with_training_options(func: Callable[..., None]) -> Callable[..., None]:
    """Give `func(ctx, **options)` the shared training options as its Typer signature."""
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    for name, _, tp, default, flags, metavar, help_text in TRAINING_OPTIONS:
        help_text = help_text() if callable(help_text) else help_text
        option = typer.Option(*flags, help=help_text, metavar=metavar, show_default=False)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=Annotated[tp, option]))
    func.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    func.__annotations__ = {p.name: p.annotation for p in params}
    return func


def training_config(options: dict[str, Any]) -> Any:
    """The Config of `run`/`train` options: preset defaults, then the given options, then --set."""
    from ..config.settings import parse_overrides
    from ..pipeline import make_config

    given = {field: options[name] for name, field, _, default, *_ in TRAINING_OPTIONS
             if field is not None and options.get(name) not in (None, default)}
    given.update(parse_overrides(options.get("set") or ()))
    preset = options.get("preset")
    if given.get("init") is None and preset is None:
        preset = DEFAULT_PRESET
    return make_config(preset, **given)


def fill_metavars(command: Any) -> None:
    """Typer >= 0.22 shows a parameter's Python type (`<bool>`, `<str>`) where no metavar is
    set, so a flag looks as if it took a value. Flags get none; other values a plain word."""
    for param in getattr(command, "params", ()):
        if getattr(param, "param_type_name", "") == "argument":
            # An argument's name column already shows its metavar; its type column is noise.
            param.display_type_rich = lambda ctx: None
        if param.metavar is None:
            if getattr(param, "is_flag", False) or getattr(param, "count", False):
                param.metavar = ""
            else:
                kind = param.bare_type() if hasattr(param, "bare_type") else getattr(param.type, "name", "")
                param.metavar = {"int": "N", "integer": "N", "float": "X"}.get(str(kind).lower(), "TEXT")
    help_option = command.get_help_option  # made on first use, per command

    def get_help_option(ctx: Any) -> Any:
        option = help_option(ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        fill_metavars(sub)
