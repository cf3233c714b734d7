"""Command line: a thin layer over the Python API (pipeline, predict, export, server).

Like ultralytics' modes, each command is a few lines over one API call. Every
option is defined once, in one table (`options.OPTIONS`; `options.COMMANDS` says which
command takes which), and `--set key=value` reaches every Config field, validated by
Config itself. Heavy imports happen inside commands, so `digitlab --help`
answers at once. Every user-fixable problem, usage errors included, is one
line `error: ...` on stderr and exit 2; Ctrl-C is exit 130.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from .. import __version__
from ..errors import ConfigError, DigitlabError
from ..files.layout import default_runs_dir
from .options import fill_metavars, training_config, with_options
from .output import (
    print_comparison,
    print_dataset,
    print_explored,
    print_export,
    print_index,
    print_ray_summary,
    print_run_summary,
    print_shown,
    say,
    usage_error_line,
)

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


def _command_line(ctx: typer.Context) -> str:
    """The exact command that was run, for the report's "reproduce" section."""
    argv = (ctx.obj or {}).get("argv", sys.argv[1:])
    return " ".join(shlex.quote(a) for a in ["digitlab", *argv])


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
        from ..models.backend import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"


def command(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register `func(ctx, **options)` as command `name`, with its options from the one table."""

    def register(func: Callable[..., None]) -> Callable[..., None]:
        app.command(name)(with_options(name)(func))
        return func

    return register


def _training_job(ctx: typer.Context, options: dict[str, Any], *, full_report: bool) -> None:
    from ..pipeline import run as run_pipeline

    result = run_pipeline(training_config(options), command=_command_line(ctx), full_report=full_report, log=say)
    print_run_summary(result, what="Run" if full_report else "Training")
    if result.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if not full_report:
        say(f"Figures and report: digitlab evaluate {result.run_dir}")


@command("run")
def run(ctx: typer.Context, **o: Any) -> None:
    """The main job: explore the data, train, evaluate, draw every figure, write the report."""
    _training_job(ctx, o, full_report=True)


@command("train")
def train(ctx: typer.Context, **o: Any) -> None:
    """Train a model and save it with its config, history and test metrics (no figures/report)."""
    _training_job(ctx, o, full_report=False)


@command("evaluate")
def evaluate(ctx: typer.Context, **o: Any) -> None:
    """Evaluate a saved run on the test set and (re)write its metrics, figures and report."""
    from ..pipeline import evaluate_run

    print_run_summary(evaluate_run(**o, command=_command_line(ctx)), what="Evaluation")


@command("explore")
def explore(ctx: typer.Context, **o: Any) -> None:
    """Look at the data: counts per class and the exploration figures."""
    from ..report.explore import explore as explore_data

    print_explored(*explore_data(**o))


@command("show")
def show(ctx: typer.Context, **o: Any) -> None:
    """Predict one test image (random by default): true label, predicted label, confidence."""
    from ..report.explore import show_test_image

    print_shown(show_test_image(**o))


@command("presets")
def presets(ctx: typer.Context) -> None:
    """List the model presets."""
    from ..config.presets import describe_presets

    say(describe_presets())


@command("data")
def data(ctx: typer.Context, **o: Any) -> None:
    """Check the data (MNIST by default, or --data SPEC): what would be trained on, its classes and
    counts, what was verified and what was skipped; --download fetches MNIST or a known set."""
    from ..data import load_dataset
    from ..runs.rundata import spec_of

    print_dataset(load_dataset(spec_of(o["data"], o["data_dir"]), download=o["download"]))


@command("predict")
def predict(ctx: typer.Context, **o: Any) -> None:
    """Recognise digits and whole numbers in your own images (photos, scans, drawings)."""
    from ..predict.present import print_predictions

    if not o["paths"]:  # one check for every engine (the APIs check their own arguments too)
        raise ConfigError("no inputs: give image files, directories, glob patterns, or - for stdin")
    out, workers, engine, address = o.pop("out"), o.pop("workers"), o.pop("engine"), o.pop("address")
    if engine == "ray":
        failed = predict_on_ray(out, address=address, **o)
    elif out is None:
        if workers is not None or engine is not None or address is not None:
            raise ConfigError("--workers, --engine and --address go with --out")
        failed = print_predictions(**o).failed
    else:
        if address is not None:
            raise ConfigError("--address goes with --engine ray")
        failed = predict_to_file_command(out, workers=workers, engine=engine, **o)
    if failed:
        raise typer.Exit(1)


def predict_to_file_command(out: str, *, paths: Any, as_json: bool, as_csv: bool, annotate: Any, show_input: Any,
                            neighbours_dir: Any, explain: Any, explain_method: str, number: bool, engine: str | None,
                            **o: Any) -> int:
    """`predict --out FILE`: stream every input's answer into FILE; returns how many inputs failed."""
    from ..predict.batch import predict_to_file

    _refuse_printed_options(as_json=as_json, as_csv=as_csv, annotate=annotate, show_input=show_input,
                            neighbours_dir=neighbours_dir, explain=explain)
    summary = predict_to_file(paths, out, mode="number" if number else "auto", engine=engine or "local", **o)
    say(summary.line())
    return summary.failed


# The predict options that only make sense for results printed to the terminal.
PRINTED_ONLY = {"as_json": "--json", "as_csv": "--csv", "annotate": "--annotate", "show_input": "--show-input",
                "neighbours_dir": "--neighbours", "explain": "--explain"}


def _refuse_printed_options(**given: Any) -> None:
    """--out writes rows: the options for printed results are a usage error there, named."""
    named = [PRINTED_ONLY[k] for k, v in given.items() if v]
    if named:
        raise ConfigError(f"--out writes the format its suffix names (.jsonl, .csv, .parquet); {', '.join(named)}: "
                          "for printed results only")


def predict_on_ray(out: str | None, *, paths: Any, model: Any, runtime: str, address: Any, as_csv: bool, number: bool,
                   threshold: Any, runs_dir: Any, explain_method: str, **unused: Any) -> int:
    """`predict --engine ray`: the rows go to --out DIR through Ray Data (predict.ray_engine); returns the errors."""
    from ..predict.ray_engine import INSTALL_HINT, predict_with_ray, ray_available
    from ..runs.artifacts import resolve_model

    if not ray_available():
        raise ConfigError(INSTALL_HINT)
    if not out:
        raise ConfigError("--engine ray writes its rows to a directory: give --out DIR")
    _refuse_printed_options(**unused)  # --csv stays: it picks the Ray engine's row format
    summary = predict_with_ray(paths, out, model=None if model is None else str(resolve_model(model, runs_dir)),
                               runtime=runtime, address=address, fmt="csv" if as_csv else None,
                               mode="number" if number else "auto", threshold=threshold)
    print_ray_summary(summary)
    return summary["errors"]


@command("neighbours")
def neighbours(ctx: typer.Context, **o: Any) -> None:
    """Build the nearest-training-example index beside a model (neighbours.npz + embedding.onnx), used by
    `predict --neighbours`, the API's neighbours=true and the page; rebuilt when the model changes."""
    from ..predict.neighbours import NeighbourIndex, ensure_index

    path = ensure_index(**o, log=say)
    print_index(path, NeighbourIndex(path.parent))


@command("export")
def export(ctx: typer.Context, **o: Any) -> None:
    """Export a trained model to ONNX, LiteRT, SavedModel or Keras, with metadata, checked against Keras."""
    from ..export.exporter import export_model

    path = export_model(o["source"], o["format"], out=o["out"], quantize=o["quantize"],
                        runs_dir=o["runs_dir"] or default_runs_dir())
    print_export(path, o["format"], o["quantize"])


@command("ensemble")
def ensemble(ctx: typer.Context, **o: Any) -> None:
    """Average trained models into one (their soft vote), calibrated and evaluated in a run directory of its own."""
    from ..combine import combine_models

    print_run_summary(combine_models(o["models"], name=o["name"], out=o["out"], command=_command_line(ctx), log=say), what="Ensemble")


@command("compare")
def compare(ctx: typer.Context, **o: Any) -> None:
    """Two runs side by side on the same test set: accuracy with an exact McNemar test, F1 per
    class, calibration (ECE), size and time, and the images they disagree on."""
    from ..report.compare import compare_runs

    print_comparison(compare_runs(o.pop("run_a"), o.pop("run_b"), **o, log=say))


@command("serve")
def serve(ctx: typer.Context, **o: Any) -> None:
    """Serve the drawing page at / and the REST API at /api (OpenAPI docs at /docs)."""
    from ..server import serve as run_server

    allowed, max_mb = o.pop("allowed_host") or (), o.pop("corrections_max_mb")
    run_server(**o, allowed_hosts=allowed, corrections_max_bytes=int(max_mb * 2**20), say=say)


def build_command() -> Any:
    """The click command behind the app, with its help texts finished (see `_fill_metavars`)."""
    command = typer.main.get_command(app)
    fill_metavars(command)
    return command


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app; user errors are one line and exit 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        # Non-standalone mode lets our own errors through (click would print them as
        # tracebacks); click then returns exit codes instead of exiting.
        rc = build_command().main(args=argv, prog_name="digitlab", standalone_mode=False, obj={"argv": argv})
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
        # Usage errors. Typer >= 0.22 vendors click, older versions use the click package:
        # duck-type both (a UsageError has format_message and an int exit_code).
        if hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int):
            typer.echo(usage_error_line(exc), err=True)
            sys.exit(EXIT_USER_ERROR)
        raise
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
