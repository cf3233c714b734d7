"""Command line: a thin layer over the Python API (pipeline, predict, export, server).

Like ultralytics' modes, each command is a few lines over one API call. The
training options are defined once (`cli_options.TRAINING_OPTIONS`) and shared by `run`
and `train`, and `--set key=value` reaches every Config field, validated by
Config itself. Heavy imports happen inside commands, so `digitlab --help`
answers at once. Every user-fixable problem, usage errors included, is one
line `error: ...` on stderr and exit 2; Ctrl-C is exit 130.
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import Annotated, Any, Optional

import typer

from .. import __version__
from ..errors import DigitlabError
from ..files.layout import default_runs_dir
from ..server import settings as serving  # light (no FastAPI): the serve defaults live there
from .options import DATA_DIR_HELP, DATA_HELP, RUNS_HELP, fill_metavars, training_config, with_training_options
from .output import print_class_counts, print_run_summary, say, usage_error_line

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


def _training_job(ctx: typer.Context, options: dict[str, Any], *, full_report: bool) -> None:
    from ..pipeline import run as run_pipeline

    config = training_config(options)
    result = run_pipeline(config, command=_command_line(ctx), full_report=full_report, log=say)
    print_run_summary(result, what="Run" if full_report else "Training")
    if result.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if not full_report:
        say(f"Figures and report: digitlab evaluate {result.run_dir}")


@with_training_options
def _run(ctx: typer.Context, **options: Any) -> None:
    """The main job: explore the data, train, evaluate, draw every figure, write the report."""
    _training_job(ctx, options, full_report=True)


@with_training_options
def _train(ctx: typer.Context, **options: Any) -> None:
    """Train a model and save it with its config, history and test metrics (no figures/report)."""
    _training_job(ctx, options, full_report=False)


app.command("run")(_run)
app.command("train")(_train)

RunArg = Annotated[Optional[str], typer.Argument(help="Run directory or name. (default: the latest run)",
                                                 metavar="RUN", show_default=False)]
RunsOpt = Annotated[Optional[str], typer.Option("--out", "-o", help=RUNS_HELP, metavar="DIR")]
DataDirOpt = Annotated[Optional[str], typer.Option("--data-dir", help=DATA_DIR_HELP, metavar="DIR")]
DownloadOpt = Annotated[bool, typer.Option("--download", help="Use MNIST downloaded into the user cache.")]


DataOpt = Annotated[Optional[str], typer.Option("--data", "-d", help=DATA_HELP, metavar="SPEC")]


@app.command()
def evaluate(ctx: typer.Context, run: RunArg = None, out: RunsOpt = None, data: Annotated[Optional[str], typer.Option(
        "--data", "-d", metavar="SPEC", help="Test on this data's test split instead of the run's own (same "
        "classes as the model).")] = None, data_dir: DataDirOpt = None) -> None:
    """Evaluate a saved run on the test set and (re)write its metrics, figures and report."""
    from ..pipeline import evaluate_run

    result = evaluate_run(run, out=out, data=data, data_dir=data_dir, command=_command_line(ctx))
    print_run_summary(result, what="Evaluation")


@app.command()
def explore(
    out: Annotated[str, typer.Option("--out", "-o", help="Directory for the figures.", metavar="DIR")] = "runs/explore",
    data: DataOpt = None,
    data_dir: DataDirOpt = None,
    download: DownloadOpt = False,
    seed: Annotated[int, typer.Option(help="Seed for the random-sample grid.", metavar="N")] = 0,
) -> None:
    """Look at the data: counts per class and the exploration figures."""
    from ..report.explore import explore as explore_data

    counts, figures, source = explore_data(out, data=data, data_dir=data_dir, download=download, seed=seed)
    say(f"{sum(counts['train']):,} training and {sum(counts['test']):,} test images, 28x28 uint8; {source}")
    print_class_counts(counts["classes"], counts["train"], counts["test"])
    for path in figures.values():
        say(f"wrote {path}")


@app.command()
def show(
    run: RunArg = None,
    out: RunsOpt = None,
    index: Annotated[Optional[int], typer.Option(help="Test image index (0-9999). (default: random)", metavar="I")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for picking the random test image.", metavar="N")] = None,
    save: Annotated[Optional[str], typer.Option(help="Also save the figure (image + probabilities) as this PNG.",
                                                metavar="PNG")] = None,
) -> None:
    """Predict one test image (random by default): true label, predicted label, confidence."""
    from ..report.explore import show_test_image

    shown = show_test_image(run, out=out, index=index, seed=seed, save=save)
    names = shown.classes or tuple(str(d) for d in range(10))
    say(f"test image #{shown.index}: true label {names[shown.true]}, predicted {names[shown.predicted]} with "
        f"{shown.confidence * 100:.1f}% confidence" + ("" if shown.predicted == shown.true else "  <- WRONG"))
    say("top-3: " + ", ".join(f"{names[c]} ({p * 100:.1f}%)" for c, p in shown.top3))
    if shown.figure is not None:
        say(f"wrote {shown.figure}")


@app.command()
def presets() -> None:
    """List the model presets."""
    from ..config.presets import describe_presets

    say(describe_presets())


@app.command()
def data(data: DataOpt = None, data_dir: DataDirOpt = None, download: DownloadOpt = False) -> None:
    """Check the data (MNIST by default, or --data SPEC): what would be trained on, its classes and
    counts, what was verified and what was skipped; --download fetches MNIST or a known set."""
    from ..data import load_dataset
    from ..runs.rundata import spec_of

    d = load_dataset(spec_of(data, data_dir), download=download)
    say(f"OK: {len(d.x_train)} training + {len(d.x_test)} test images; {d.source}"
        + (f"; files in {d.location}" if d.location else ""))
    say(f"{len(d.classes)} classes; checksums {'verified' if d.verified else 'not verified (not a known set)'}")
    print_class_counts(list(d.classes), d.class_counts("train"), d.class_counts("test"))
    for note in d.notes:
        say(f"note: {note}")
    for skipped in d.skipped[:20]:
        say(f"skipped {skipped.path}: {skipped.reason}")
    if len(d.skipped) > 20:
        say(f"... and {len(d.skipped) - 20} more skipped")


@app.command()
def predict(
    paths: Annotated[Optional[list[str]], typer.Argument(
        help="Image files, directories (searched recursively), glob patterns, or - for stdin.",
        metavar="IMAGES", show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", metavar="PATH", help=(
        "Run directory, model directory or model file; 'latest' = the latest run under --runs-dir. "
        "(default: the shipped pretrained model)"))] = None,
    runtime: Annotated[str, typer.Option(help="Inference runtime: auto, keras, onnx or litert.", metavar="NAME")] = "auto",
    number: Annotated[bool, typer.Option("--number", "-n", help=(
        "Read whole numbers (digits left to right). Automatic when an image holds several digits."))] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list, one object per file.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV with a header row.")] = False,
    threshold: Annotated[Optional[float], typer.Option(help=(
        "Flag answers below this confidence as uncertain (0-1). (default: the model's own, chosen when it "
        "was calibrated; 0.6 for a model without one)"), metavar="X", show_default=False)] = None,
    annotate: Annotated[Optional[str], typer.Option("--annotate", metavar="DIR", help=(
        "Write each input with its prediction drawn on it (PNG) into this directory."))] = None,
    show_input: Annotated[Optional[str], typer.Option("--show-input", metavar="DIR", help=(
        "Save the 28x28 image(s) the model saw, enlarged 8x, into this directory."))] = None,
    runs_dir: Annotated[Optional[str], typer.Option("--runs-dir", help=RUNS_HELP, metavar="DIR")] = None,
    engine: Annotated[str, typer.Option(help=(
        "local: this process; ray: Ray Data actors (the `ray` extra), rows written to --out DIR."),
        metavar="NAME")] = "local",
    results: Annotated[Optional[str], typer.Option("--out", "-o", metavar="DIR", help=(
        "With --engine ray: a new directory (or URI) for the rows, JSONL (--csv: CSV; a DIR ending in "
        ".parquet: Parquet)."))] = None,
    address: Annotated[Optional[str], typer.Option(metavar="ADDRESS", help=(
        "With --engine ray: the Ray cluster, e.g. ray://host:10001. (default: a local Ray)"))] = None,
) -> None:
    """Recognise digits and whole numbers in your own images (photos, scans, drawings)."""
    from ..errors import ConfigError
    from ..files.atomic import check_writable_dir
    from ..predict.inputs import expand_inputs
    from ..predict.predictor import Predictor
    from ..predict.present import Printer

    if as_json and as_csv:
        raise ConfigError("choose one of --json and --csv")
    if not paths:
        raise ConfigError("no inputs: give image files, directories, glob patterns, or - for stdin")
    if engine not in ("local", "ray"):
        raise ConfigError(f"--engine must be local or ray (got {engine!r})")
    if engine == "ray":
        _predict_on_ray(paths, results, model=model, runtime=runtime, address=address, as_csv=as_csv,
                        number=number, threshold=threshold, runs_dir=runs_dir)
        return
    if results:
        raise ConfigError("--out DIR is for --engine ray; the local engine prints its rows (--json, --csv)")
    out = runs_dir
    dirs = [check_writable_dir(d) if d else None for d in (annotate, show_input)]
    predictor = Predictor.load(model, runtime=runtime, threshold=threshold, out=out)
    items = expand_inputs(paths)
    with Printer("json" if as_json else "csv" if as_csv else "table", total=len(items),
                 annotate_dir=dirs[0], input_dir=dirs[1], classes=predictor.classes) as printer:
        for outcome in predictor.predict_stream(items, mode="number" if number else "auto",
                                                keep_image=annotate is not None):
            printer.add(outcome)
    if printer.failed:
        raise typer.Exit(1)


def _predict_on_ray(paths: list[str], out: Optional[str], *, model: Optional[str], runtime: str,
                    address: Optional[str], as_csv: bool, number: bool, threshold: Optional[float],
                    runs_dir: Optional[str]) -> None:
    """`predict --engine ray`: the rows go to --out DIR through Ray Data (predict.ray_engine)."""
    from ..errors import ConfigError
    from ..predict.ray_engine import INSTALL_HINT, predict_with_ray, ray_available
    from ..runs.artifacts import resolve_model

    if not ray_available():
        raise ConfigError(INSTALL_HINT)
    if not out:
        raise ConfigError("--engine ray writes its rows to a directory: give --out DIR")
    summary = predict_with_ray(paths, out, model=None if model is None else str(resolve_model(model, runs_dir)),
                               runtime=runtime, address=address, fmt="csv" if as_csv else None,
                               mode="number" if number else "auto", threshold=threshold)
    rate = f" ({summary['images_per_s']:,.0f} images/s)" if summary["images_per_s"] else ""
    say(f"wrote {summary['images']:,} rows ({summary['format']}) to {summary['out']} in {summary['seconds']:.1f} s"
        f"{rate}; {summary['errors']:,} errors")
    if summary["errors"]:
        raise typer.Exit(1)


@app.command()
def export(
    source: Annotated[Optional[str], typer.Argument(
        help="Run directory or name, model directory, or .keras file. (default: the latest run)",
        metavar="SOURCE", show_default=False)] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="onnx, litert (.tflite), savedmodel or keras.",
                                        metavar="NAME")] = "onnx",
    out: Annotated[Optional[str], typer.Option("--out", "-o", metavar="PATH", help=(
        "Output file (directory for savedmodel), or an existing directory to put it in. "
        "(default: beside the source model: model.onnx, model.tflite, savedmodel/; "
        "quantized: model.int8.onnx etc.; required for keras)"))] = None,
    quantize: Annotated[str, typer.Option("--quantize", "-q", help="none, float16 or int8 (onnx and litert only).",
                                          metavar="NAME")] = "none",
    runs_dir: Annotated[Optional[str], typer.Option("--runs-dir", help=RUNS_HELP, metavar="DIR")] = None,
) -> None:
    """Export a trained model to ONNX, LiteRT, SavedModel or Keras, with metadata, checked against Keras."""
    from ..export.exporter import export_model, read_metadata

    path = export_model(source, format, out=out, quantize=quantize, runs_dir=runs_dir or default_runs_dir())
    meta = read_metadata(path)
    size = meta.get("file", {}).get("bytes")
    check = meta.get("export_check") or {}
    say(f"wrote {path}" + (f" ({size / 1e6:.2f} MB)" if size else "")
        + f": {format}" + ("" if quantize == "none" else f", {quantize}"))
    if check:
        say(f"  check vs Keras on {check['images']} {check.get('inputs', 'inputs')}: max |dp| {check['max_abs_diff']:.1e}, "
            f"same top class {check['argmax_agreement'] * 100:.1f}%")
    say(f"  metadata (with the model's config) in {path.name}.json")


@app.command()
def serve(
    model: Annotated[Optional[str], typer.Option("--model", "-m", metavar="PATH", help=(
        "Model directory or file. (default: the shipped pretrained model)"))] = None,
    runtime: Annotated[str, typer.Option(help="Inference runtime: auto picks the fastest available.",
                                         metavar="NAME")] = "auto",
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes the server to the network.",
                                      metavar="ADDRESS")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", metavar="N")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (each loads the model once).", metavar="N")] = 1,
    log_level: Annotated[str, typer.Option("--log-level", metavar="LEVEL", help=(
        "uvicorn log level: critical, error, warning, info, debug."))] = "info",
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", help="Log every request.")] = True,
    limit_concurrency: Annotated[int, typer.Option("--limit-concurrency", metavar="N", help=(
        "Open connections per worker; more are answered 503 and closed at once "
        "(a flood cannot use up file descriptors)."))] = serving.DEFAULT_LIMIT_CONCURRENCY,
    timeout_keep_alive: Annotated[float, typer.Option("--timeout-keep-alive", metavar="SECONDS", help=(
        "An idle kept-alive connection is closed after this long."))] = serving.DEFAULT_TIMEOUT_KEEP_ALIVE,
    timeout_headers: Annotated[float, typer.Option("--timeout-headers", metavar="SECONDS", help=(
        "A client must send a request's headers within this long "
        "(else 408 and close: slow-loris)."))] = serving.DEFAULT_TIMEOUT_HEADERS,
    timeout_body: Annotated[float, typer.Option("--timeout-body", metavar="SECONDS", help=(
        "A client must send a request's body within this long after its headers "
        "(else 408 and close)."))] = serving.DEFAULT_TIMEOUT_BODY,
    allowed_host: Annotated[Optional[list[str]], typer.Option("--allowed-host", metavar="NAME", help=(
        "Also answer requests whose Host header names NAME (repeatable; '*': any). Bound to loopback, "
        "only localhost, 127.0.0.1 and ::1 are answered otherwise (DNS rebinding); bound to another "
        "address, any name unless some are given."))] = None,
    corrections: Annotated[Optional[str], typer.Option("--corrections", metavar="DIR", help=(
        "Save the page's corrections (\"wrong? it's a 7\": POST /api/corrections) in DIR, one sub-folder per "
        "class, ready for `digitlab train --data DIR --init pretrained`. (default: off; the server keeps "
        "nothing people send)"))] = None,
    corrections_max: Annotated[int, typer.Option("--corrections-max", metavar="N", help=(
        "At most N samples in the corrections folder; then 409 until it is emptied."))] = serving.DEFAULT_CORRECTIONS_MAX,
    corrections_max_mb: Annotated[float, typer.Option("--corrections-max-mb", metavar="MB", help=(
        "At most this many megabytes in the corrections folder."))] = serving.DEFAULT_CORRECTIONS_MAX_BYTES / 2**20,
    engine: Annotated[str, typer.Option(metavar="NAME", help=(
        "local: uvicorn (--workers); ray: Ray Serve (the `ray` extra), --replicas replicas behind its proxy."))] = "local",
    replicas: Annotated[int, typer.Option(metavar="N", help="With --engine ray: replicas (each loads the model once).")] = 1,
    address: Annotated[Optional[str], typer.Option(metavar="ADDRESS", help=(
        "With --engine ray: the Ray cluster, e.g. ray://host:10001. (default: a local Ray)"))] = None,
) -> None:
    """Serve the drawing page at / and the REST API at /api (OpenAPI docs at /docs)."""
    from ..server import serve as run_server

    run_server(model, runtime, host=host, port=port, workers=workers, log_level=log_level, access_log=access_log,
               limit_concurrency=limit_concurrency, timeout_keep_alive=timeout_keep_alive,
               timeout_headers=timeout_headers, timeout_body=timeout_body, allowed_hosts=allowed_host or (),
               corrections=corrections, corrections_max=corrections_max,
               corrections_max_bytes=int(corrections_max_mb * 2**20), say=say, engine=engine, replicas=replicas,
               address=address)

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
