"""Command line: a thin layer over the Python API (pipeline, data, models).

Heavy imports happen inside commands, so `digitlab --help` answers at once.
Every user-fixable problem is a DigitlabError: printed as one line, exit 2.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from . import __version__
from .errors import DigitlabError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # the shell convention for "stopped by Ctrl-C"

app = typer.Typer(
    name="digitlab",
    help="Train, inspect and use handwritten-digit recognizers (MNIST, Keras 3).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _preset_help() -> str:
    from .models import describe_presets

    return "Model preset. " + "; ".join(describe_presets().splitlines())


# Options shared by `run` and `train`. None means "not given": the preset's
# default (see config.Config and models.PRESETS) stays in force.
Preset = Annotated[str, typer.Option("--preset", "-p", help=_preset_help(), show_default=True)]
Epochs = Annotated[Optional[int], typer.Option(help="Training epochs (>= 1). (default: preset's, 10 for seed)")]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", "-b", help="Batch size (>= 1). (default: preset's, 128 for seed)")]
Seed = Annotated[Optional[int], typer.Option(help="Random seed for split, init and shuffling. (default: 42)")]
Limit = Annotated[Optional[int], typer.Option(help="Use only the first N training images (quick looks). (default: all)")]
Out = Annotated[str, typer.Option("--out", "-o", help="Directory that holds run directories.")]
Name = Annotated[Optional[str], typer.Option(help="Run name. (default: <preset>-<timestamp>)")]
DataDir = Annotated[Optional[str], typer.Option("--data-dir", help="Directory with the four MNIST IDX files (raw or .gz) or an mnist.npz. (default: the packaged copy)")]
Download = Annotated[bool, typer.Option("--download", help="Use MNIST downloaded from the public mirrors into the user cache.")]
ValFraction = Annotated[Optional[float], typer.Option("--val-fraction", help="Validation share of the training images. (default: 0.2)")]
Stratify = Annotated[bool, typer.Option("--stratify", help="Stratify the train/validation split by class.")]
LearningRate = Annotated[Optional[float], typer.Option("--lr", help="Adam learning rate. (default: preset's, 1e-3 for seed)")]


def _command_line(ctx: typer.Context) -> str:
    """The exact command that was run, for the report's "reproduce" section."""
    argv = (ctx.obj or {}).get("argv", sys.argv[1:])
    return " ".join(shlex.quote(a) for a in ["digitlab", *argv])


def _config(preset: str, **options: Any) -> Any:
    from .config import make_config

    return make_config(preset, **options)


def _say(msg: str) -> None:
    typer.echo(msg)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"digitlab {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show TensorFlow's own log output.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    if verbose:
        from .backend import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"


def _print_run_summary(result: Any, *, what: str) -> None:
    m = result.metrics
    if result.interrupted:
        if m.get("epochs_completed"):
            _say(f"Interrupted after {m['epochs_completed']}/{m['epochs_planned']} epochs; "
                 f"model saved in {result.run_dir} (marked interrupted in metrics.json).")
            _say(f"Evaluate it with: digitlab evaluate {result.run_dir}")
        else:
            _say(f"Interrupted before the first epoch finished; no model was saved ({result.run_dir}).")
        return
    _say(f"{what} finished: preset {m.get('preset')}, {m.get('epochs_completed', '?')} epochs"
         + (f" in {m['train_seconds']:.1f} s" if m.get("train_seconds") is not None else ""))
    _say(f"  test accuracy   {m['test_accuracy'] * 100:.2f}%  (model.evaluate)")
    _say(f"  accuracy_score  {m['accuracy_score'] * 100:.2f}%  (sklearn, on argmax predictions)")
    _say(f"  test loss       {m['test_loss']:.4f}")
    _say(f"  run directory   {result.run_dir}")
    if result.report is not None:
        _say(f"  report          {result.report}")


@app.command()
def run(
    ctx: typer.Context,
    preset: Preset = "seed", epochs: Epochs = None, batch_size: BatchSize = None, seed: Seed = None,
    limit: Limit = None, out: Out = "runs", name: Name = None, data_dir: DataDir = None,
    download: Download = False, val_fraction: ValFraction = None, stratify: Stratify = False,
    lr: LearningRate = None,
) -> None:
    """The main job: explore the data, train, evaluate, draw every figure, write the report."""
    from .pipeline import run as run_pipeline

    config = _config(preset, epochs=epochs, batch_size=batch_size, seed=seed, limit=limit, out=out, name=name,
                     data_dir=data_dir, download=download or None, val_fraction=val_fraction,
                     stratify=stratify or None, learning_rate=lr)
    result = run_pipeline(config, command=_command_line(ctx))
    _print_run_summary(result, what="Run")
    if result.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)


@app.command()
def train(
    ctx: typer.Context,
    preset: Preset = "seed", epochs: Epochs = None, batch_size: BatchSize = None, seed: Seed = None,
    limit: Limit = None, out: Out = "runs", name: Name = None, data_dir: DataDir = None,
    download: Download = False, val_fraction: ValFraction = None, stratify: Stratify = False,
    lr: LearningRate = None,
) -> None:
    """Train a model and save it with its config, history and test metrics (no figures/report)."""
    from .pipeline import run as run_pipeline

    config = _config(preset, epochs=epochs, batch_size=batch_size, seed=seed, limit=limit, out=out, name=name,
                     data_dir=data_dir, download=download or None, val_fraction=val_fraction,
                     stratify=stratify or None, learning_rate=lr)
    result = run_pipeline(config, command=_command_line(ctx), full_report=False)
    _print_run_summary(result, what="Training")
    if not result.interrupted:
        _say(f"Figures and report: digitlab evaluate {result.run_dir}")
    else:
        raise typer.Exit(EXIT_INTERRUPTED)


@app.command()
def evaluate(
    ctx: typer.Context,
    run: Annotated[Optional[str], typer.Argument(help="Run directory or name. (default: the latest run)")] = None,
    out: Out = "runs",
    data_dir: DataDir = None,
) -> None:
    """Evaluate a saved run on the test set and (re)write its metrics, figures and report."""
    from .pipeline import evaluate_run

    result = evaluate_run(run, out=out, data_dir=data_dir, command=_command_line(ctx))
    _print_run_summary(result, what="Evaluation")


@app.command()
def explore(
    out: Annotated[str, typer.Option("--out", "-o", help="Directory for the figures.")] = "runs/explore",
    data_dir: DataDir = None,
    download: Download = False,
    seed: Annotated[int, typer.Option(help="Seed for the random-sample grid.")] = 0,
) -> None:
    """Look at the data: counts per class and the exploration figures."""
    from . import plots
    from .data import load_mnist_data
    from .runs import check_writable_dir

    out_dir = check_writable_dir(out)
    data = load_mnist_data(data_dir, download=download)
    import numpy as np

    _say(f"MNIST: {len(data.x_train)} training and {len(data.x_test)} test images, "
         f"{data.x_train.shape[1]}x{data.x_train.shape[2]} uint8; source: {data.source}")
    _say("class      " + " ".join(f"{c:>6d}" for c in range(10)))
    _say("train      " + " ".join(f"{n:>6d}" for n in np.bincount(data.y_train, minlength=10)))
    _say("test       " + " ".join(f"{n:>6d}" for n in np.bincount(data.y_test, minlength=10)))
    figures = plots.explore_figures(data.x_train, data.y_train, data.y_test, out_dir, seed=seed)
    for path in figures.values():
        _say(f"wrote {path}")


@app.command()
def show(
    run: Annotated[Optional[str], typer.Argument(help="Run directory or name. (default: the latest run)")] = None,
    out: Out = "runs",
    index: Annotated[Optional[int], typer.Option(help="Test image index (0-9999). (default: random)")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for picking the random test image.")] = None,
    save: Annotated[Optional[str], typer.Option(help="Also save the figure (image + probabilities) as this PNG.")] = None,
) -> None:
    """Predict one test image (random by default): true label, predicted label, confidence."""
    import numpy as np

    from .data import load_mnist_data
    from .errors import ConfigError
    from .evaluate import predict_proba
    from .models import load_model
    from .runs import resolve_run

    run_dir = resolve_run(run, out)
    model, config = load_model(run_dir)
    data = load_mnist_data(config.data_dir, download=config.download)
    n = len(data.x_test)
    if index is None:
        index = int(np.random.default_rng(seed).integers(n))
    elif not 0 <= index < n:
        raise ConfigError(f"--index must be between 0 and {n - 1} (got {index})")
    probs = predict_proba(model, data.x_test[index:index + 1], scale=config.scale)[0]
    pred, true = int(probs.argmax()), int(data.y_test[index])
    _say(f"test image #{index}: true label {true}, predicted {pred} with {probs[pred] * 100:.1f}% confidence"
         + ("" if pred == true else "  <- WRONG"))
    top = np.argsort(probs)[::-1][:3]
    _say("top-3: " + ", ".join(f"{int(c)} ({probs[c] * 100:.1f}%)" for c in top))
    if save:
        from .plots import plot_random_prediction

        _say(f"wrote {plot_random_prediction(data.x_test[index], true, probs, Path(save))}")


@app.command()
def presets() -> None:
    """List the model presets."""
    from .models import describe_presets

    _say(describe_presets())


@app.command()
def data(
    data_dir: DataDir = None,
    download: Download = False,
) -> None:
    """Check the MNIST files (checksums, headers) and say where they come from; --download fetches them."""
    from .data import load_mnist_data

    d = load_mnist_data(data_dir, download=download)
    _say(f"OK: {len(d.x_train)} training + {len(d.x_test)} test images; {d.source}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turning user errors into exit 2."""
    try:
        # Non-standalone mode lets our own errors through (click would print
        # them as tracebacks); click then returns exit codes instead of exiting.
        argv = sys.argv[1:] if argv is None else list(argv)
        rc = app(args=argv, standalone_mode=False, obj={"argv": argv})
    except DigitlabError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        # Usage errors (bad option values, unknown commands). Typer >= 0.22
        # vendors click, older versions use the click package: duck-type both.
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
