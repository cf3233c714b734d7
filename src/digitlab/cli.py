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
# Default of `run` and `train`: `fast` beats the tutorial's `seed` on accuracy AND time (BENCHMARKS.md).
DEFAULT_PRESET = "fast"
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
Members = Annotated[Optional[int], typer.Option("--members", help="Train N models (seeds seed..seed+N-1) and save their average (soft vote) as one model. (default: preset's, 1; 5 for ensemble)")]


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


def _train_job(ctx: typer.Context, options: dict[str, Any], *, full_report: bool) -> None:
    """`run` and `train` share their options (Typer needs them spelled out in each
    signature) and this body; `train` stops before figures and report."""
    from .pipeline import run as run_pipeline

    o = options
    config = _config(o["preset"], epochs=o["epochs"], batch_size=o["batch_size"], seed=o["seed"], limit=o["limit"],
                     out=o["out"], name=o["name"], data_dir=o["data_dir"], download=o["download"] or None,
                     val_fraction=o["val_fraction"], stratify=o["stratify"] or None, learning_rate=o["lr"],
                     members=o["members"])
    result = run_pipeline(config, command=_command_line(ctx), full_report=full_report)
    _print_run_summary(result, what="Run" if full_report else "Training")
    if result.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if not full_report:
        _say(f"Figures and report: digitlab evaluate {result.run_dir}")


@app.command()
def run(
    ctx: typer.Context,
    preset: Preset = DEFAULT_PRESET, epochs: Epochs = None, batch_size: BatchSize = None, seed: Seed = None,
    limit: Limit = None, out: Out = "runs", name: Name = None, data_dir: DataDir = None,
    download: Download = False, val_fraction: ValFraction = None, stratify: Stratify = False,
    lr: LearningRate = None, members: Members = None,
) -> None:
    """The main job: explore the data, train, evaluate, draw every figure, write the report."""
    _train_job(ctx, locals(), full_report=True)


@app.command()
def train(
    ctx: typer.Context,
    preset: Preset = DEFAULT_PRESET, epochs: Epochs = None, batch_size: BatchSize = None, seed: Seed = None,
    limit: Limit = None, out: Out = "runs", name: Name = None, data_dir: DataDir = None,
    download: Download = False, val_fraction: ValFraction = None, stratify: Stratify = False,
    lr: LearningRate = None, members: Members = None,
) -> None:
    """Train a model and save it with its config, history and test metrics (no figures/report)."""
    _train_job(ctx, locals(), full_report=False)


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


@app.command()
def predict(
    paths: Annotated[Optional[list[str]], typer.Argument(
        help="Image files, directories (searched recursively), glob patterns, or - for stdin.", show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Run directory, model directory or model file; 'latest' = the latest run under --out. (default: the shipped pretrained model)")] = None,
    runtime: Annotated[str, typer.Option(help="Inference runtime: auto, keras, or another installed one.")] = "auto",
    number: Annotated[bool, typer.Option("--number", "-n", help="Read whole numbers (digits left to right). Automatic when an image holds several digits.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list, one object per file.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV with a header row.")] = False,
    threshold: Annotated[float, typer.Option(help="Flag answers below this confidence as uncertain (0-1).")] = 0.6,
    annotate: Annotated[Optional[str], typer.Option("--annotate", help="Write each input with its prediction drawn on it (PNG) into this directory.")] = None,
    show_input: Annotated[Optional[str], typer.Option("--show-input", help="Save the 28x28 image(s) the model saw, enlarged 8x, into this directory.")] = None,
    out: Out = "runs",
) -> None:
    """Recognise digits and whole numbers in your own images (photos, scans, drawings)."""
    import csv
    import json
    import warnings

    from PIL import Image

    from . import predict as P
    from .errors import ConfigError, ImageError
    from .runs import atomic_path, check_writable_dir

    if as_json and as_csv:
        raise ConfigError("choose one of --json and --csv")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold must be between 0 and 1 (got {threshold})")
    if not paths:
        raise ConfigError("no inputs: give image files, directories, glob patterns, or - for stdin")
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own, lower limit answers instead
    items = P.expand_inputs(paths)
    dirs = {d: check_writable_dir(d) for d in (annotate, show_input) if d}
    predictor = P.Predictor.load(model, runtime=runtime, threshold=threshold, out=out)
    mode = "number" if number else "auto"
    fmt = "json" if as_json else "csv" if as_csv else "table"
    records: list[Any] = []
    rows: list[tuple[str, ...]] = []
    writer = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
    if writer:
        writer.writerow(P.CSV_HEADER)
    failed, done, used = 0, 0, {d: set() for d in dirs}
    progress = sys.stderr.isatty() and len(items) >= 50

    def report(label: str, result: Any) -> None:
        nonlocal failed
        auto = mode == "auto" and isinstance(result, P.NumberPrediction)
        if isinstance(result, ImageError):
            failed += 1
            if fmt != "json":
                typer.echo(f"error: {label}: {P._strip_label(str(result), label)}", err=True)
        if fmt == "json":
            records.append(P.record(label, result, auto=auto))
        elif writer:
            writer.writerow(P.csv_row(label, result, auto))
        elif not isinstance(result, ImageError):
            rows.append(P.table_row(label, result, auto))

    for start in range(0, len(items), P.CHUNK):
        chunk = items[start:start + P.CHUNK]
        prepared: list[Any] = []
        for item in chunk:
            if item.error is not None:
                prepared.append(ImageError(f"{item.label}: {item.error}"))
                continue
            try:
                prepared.append(predictor.prepare(item.source, mode=mode, source=item.label, keep_image=annotate is not None))
            except ImageError as exc:
                prepared.append(exc)
        good = iter(predictor.finish([p for p in prepared if not isinstance(p, ImageError)]))
        for item, prep in zip(chunk, prepared):
            result = prep if isinstance(prep, ImageError) else next(good)
            report(item.label, result)
            if not isinstance(result, ImageError):
                for d, picture in ((annotate, lambda: P.annotate_image(prep.image, result)),
                                   (show_input, lambda: P.input_picture(result))):
                    if d:
                        with atomic_path(dirs[d] / P.output_name(item.label, used[d])) as tmp:
                            picture().save(tmp, format="PNG")
        done += len(chunk)
        if progress:
            typer.echo(f"\r{done}/{len(items)} images", err=True, nl=False)
    if progress:
        typer.echo("", err=True)
    if fmt == "json":
        typer.echo(json.dumps(records, indent=2))
    elif fmt == "table" and rows:
        typer.echo(P.format_table(rows))
    if failed:
        raise typer.Exit(1)


@app.command()
def export(
    source: Annotated[Optional[str], typer.Argument(
        help="Run directory or name, model directory, or .keras file. (default: the latest run)")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="onnx, litert (.tflite), savedmodel or keras.")] = "onnx",
    out: Annotated[Optional[str], typer.Option("--out", "-o", help=(
        "Output file (directory for savedmodel), or an existing directory to put it in. "
        "(default: beside the source model: model.onnx, model.tflite, savedmodel/; "
        "quantized: model.int8.onnx etc.; required for keras)"))] = None,
    quantize: Annotated[str, typer.Option("--quantize", "-q", help="none, float16 or int8 (onnx and litert only).")] = "none",
    runs_dir: Annotated[str, typer.Option("--runs-dir", help="Directory that holds run directories.")] = "runs",
) -> None:
    """Export a trained model to ONNX, LiteRT, SavedModel or Keras, with metadata, checked against Keras."""
    from .export import export_model, read_metadata

    path = export_model(source, format, out=out, quantize=quantize, runs_dir=runs_dir)
    meta = read_metadata(path)
    size = meta.get("file", {}).get("bytes")
    check = meta.get("export_check") or {}
    _say(f"wrote {path}" + (f" ({size / 1e6:.2f} MB)" if size else "")
         + f": {format}" + ("" if quantize == "none" else f", {quantize}"))
    if check:
        _say(f"  check vs Keras on {check['images']} {check.get('inputs', 'inputs')}: max |dp| {check['max_abs_diff']:.1e}, "
             f"same top class {check['argmax_agreement'] * 100:.1f}%")
    _say(f"  metadata {path.name}.json; config.json beside it")


from .server import settings as serving  # noqa: E402 - light (no FastAPI); the defaults live there


@app.command()
def serve(
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model directory or file. (default: the shipped pretrained model)")] = None,
    runtime: Annotated[str, typer.Option(help="Inference runtime: auto picks the fastest available.")] = "auto",
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes the server to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (each loads the model once).")] = 1,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level: critical, error, warning, info, debug.")] = "info",
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", help="Log every request.")] = True,
    limit_concurrency: Annotated[int, typer.Option("--limit-concurrency", help="Open connections per worker; more are answered 503 and closed at once.")] = serving.DEFAULT_LIMIT_CONCURRENCY,
    timeout_keep_alive: Annotated[float, typer.Option("--timeout-keep-alive", help="Seconds an idle kept-alive connection stays open.")] = serving.DEFAULT_TIMEOUT_KEEP_ALIVE,
    timeout_headers: Annotated[float, typer.Option("--timeout-headers", help="Seconds a client has to send a request's headers (then 408 and close).")] = serving.DEFAULT_TIMEOUT_HEADERS,
    timeout_body: Annotated[float, typer.Option("--timeout-body", help="Seconds a client has to send a request's body (then 408 and close).")] = serving.DEFAULT_TIMEOUT_BODY,
    allowed_host: Annotated[Optional[list[str]], typer.Option("--allowed-host", help="Also accept this Host name (repeatable; '*' for any). Bound to loopback, only localhost, 127.0.0.1 and ::1 are accepted otherwise (DNS rebinding).")] = None,
) -> None:
    """Serve the drawing page at / and the REST API at /api (OpenAPI docs at /docs)."""
    from .server import serve as run_server

    run_server(model, runtime, host=host, port=port, workers=workers, log_level=log_level, access_log=access_log,
               limit_concurrency=limit_concurrency, timeout_keep_alive=timeout_keep_alive,
               timeout_headers=timeout_headers, timeout_body=timeout_body, allowed_hosts=allowed_host or (), say=_say)



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
