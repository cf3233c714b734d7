"""The command line's options, defined once: one table of every option of every command (like
ultralytics' defaults table), which commands take which, and the Typer plumbing that turns a
command's names into its signature and finishes the help pages. `commands` holds the commands,
each a few lines over one API call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, NamedTuple, Optional

import typer

from ..config.presets import DEFAULT_PRESET
from ..server import settings as serving  # light (no FastAPI): the serve defaults live there


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

class Option(NamedTuple):
    """One option (or, with no flags, a positional argument) of the table."""

    param: str  # the parameter name the command's function receives
    field: str | None  # the Config field a training option sets (None: not a Config field)
    type: Any
    default: Any  # None (False for flags) means "not given": the preset's / API's default stays
    flags: tuple[str, ...]  # () for a positional argument
    metavar: str
    help: Any  # a text, or a function giving it (texts that need an import)


REQUIRED = inspect.Parameter.empty  # the default of an argument that must be given


def _o(param: str, tp: Any, default: Any, flags: tuple[str, ...], metavar: str, help_text: Any,
       field: str | None = None) -> Option:
    return Option(param, field, tp, default, flags, metavar, help_text)


MODEL_HELP = ("Run directory, model directory or model file; 'latest' = the latest run under --runs-dir. "
              "(default: the shipped pretrained model)")

# Every option of every command, once. Keys are unique; a flag that means different things in
# two commands (--out: the runs directory, the figures directory, an export's path) has one
# entry per meaning, and the same parameter name.
OPTIONS: dict[str, Option] = {
    # The training options of `run` and `train` (Config fields; --set reaches every other one).
    "preset": _o("preset", Optional[str], None, ("--preset", "-p"), "NAME", _presets_help),
    "epochs": _o("epochs", Optional[int], None, ("--epochs", "-e"), "N",
                 "Training epochs. (default: the preset's, 10 for seed)", "epochs"),
    "batch_size": _o("batch_size", Optional[int], None, ("--batch-size", "-b"), "N",
                     "Batch size. (default: the preset's, 128 for seed)", "batch_size"),
    "lr": _o("lr", Optional[float], None, ("--lr",), "X", "Peak learning rate. (default: the preset's, 1e-3 for seed)",
             "learning_rate"),
    "seed": _o("seed", Optional[int], None, ("--seed",), "N", "Random seed for split, init and shuffling. (default: 42)",
               "seed"),
    "limit": _o("limit", Optional[int], None, ("--limit",), "N",
                "Use only the first N training images (quick looks). (default: all)", "limit"),
    "members": _o("members", Optional[int], None, ("--members",), "N",
                  "Train N models (seeds seed..seed+N-1) and save their soft vote as one model. (default: the preset's)",
                  "members"),
    "val_fraction": _o("val_fraction", Optional[float], None, ("--val-fraction",), "X",
                       "Validation share of the training images. (default: 0.2)", "val_fraction"),
    "stratify": _o("stratify", bool, False, ("--stratify",), "", "Stratify the train/validation split by class.",
                   "stratify"),
    "data": _o("data", Optional[str], None, ("--data", "-d"), "SPEC", DATA_HELP, "data"),
    "init": _o("init", Optional[str], None, ("--init",), "MODEL", INIT_HELP, "init"),
    "data_dir": _o("data_dir", Optional[str], None, ("--data-dir",), "DIR", DATA_DIR_HELP, "data_dir"),
    "download": _o("download", bool, False, ("--download",), "",
                   "Use MNIST downloaded from the public mirrors into the user cache.", "download"),
    "out": _o("out", Optional[str], None, ("--out", "-o"), "DIR", RUNS_HELP, "out"),
    "name": _o("name", Optional[str], None, ("--name",), "NAME", "Run name. (default: <preset>-<timestamp>)", "name"),
    "set": _o("set", Optional[list[str]], None, ("--set", "-s"), "KEY=VALUE",
              "Set any Config field, e.g. --set schedule=cosine --set rotation=10 (repeatable; see config/settings.py)."),
    # Looking at runs and data.
    "run": _o("run", Optional[str], None, (), "RUN", "Run directory or name. (default: the latest run)"),
    "eval_data": _o("data", Optional[str], None, ("--data", "-d"), "SPEC",
                    "Test on this data's test split instead of the run's own (same classes as the model)."),
    "explore_out": _o("out", str, "runs/explore", ("--out", "-o"), "DIR", "Directory for the figures."),
    "explore_seed": _o("seed", int, 0, ("--seed",), "N", "Seed for the random-sample grid."),
    "index": _o("index", Optional[int], None, ("--index",), "I", "Test image index (0-9999). (default: random)"),
    "show_seed": _o("seed", Optional[int], None, ("--seed",), "N", "Seed for picking the random test image."),
    "save": _o("save", Optional[str], None, ("--save",), "PNG", "Also save the figure (image + probabilities) as this PNG."),
    "data_download": _o("download", bool, False, ("--download",), "", "Use MNIST downloaded into the user cache."),
    # predict
    "paths": _o("paths", Optional[list[str]], None, (), "IMAGES",
                "Image files, directories (searched recursively), glob patterns, or - for stdin; with --out also "
                "@LIST (a file naming one image a line, relative to the current directory) and tar / zip "
                "archives (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz, .zip; members are read, not extracted)."),
    "model": _o("model", Optional[str], None, ("--model", "-m"), "PATH", MODEL_HELP),
    "runtime": _o("runtime", str, "auto", ("--runtime",), "NAME", "Inference runtime: auto, keras, onnx or litert."),
    "number": _o("number", bool, False, ("--number", "-n"), "",
                 "Read whole numbers (digits left to right). Automatic when an image holds several digits."),
    "as_json": _o("as_json", bool, False, ("--json",), "", "Print a JSON list, one object per file."),
    "as_csv": _o("as_csv", bool, False, ("--csv",), "", "Print CSV with a header row."),
    "threshold": _o("threshold", Optional[float], None, ("--threshold",), "X",
                    "Flag answers below this confidence as uncertain (0-1). (default: the model's own, chosen when it "
                    "was calibrated; 0.6 for a model without one)"),
    "annotate": _o("annotate", Optional[str], None, ("--annotate",), "DIR",
                   "Write each input with its prediction drawn on it (PNG) into this directory."),
    "show_input": _o("show_input", Optional[str], None, ("--show-input",), "DIR",
                     "Save the 28x28 image(s) the model saw, enlarged 8x, into this directory."),
    "runs_dir": _o("runs_dir", Optional[str], None, ("--runs-dir",), "DIR", RUNS_HELP),
    "predict_out": _o("out", Optional[str], None, ("--out", "-o"), "FILE",
                      "Write the results to FILE (.jsonl, .csv or .parquet, by the suffix) as they come, using all "
                      "cores, with a progress bar, for any number of images. Re-running the same command after an "
                      "interruption skips what FILE already holds."),
    "predict_workers": _o("workers", Optional[int], None, ("--workers", "-w"), "N",
                          "With --out: processes that decode and preprocess (0: all in one process). "
                          "(default: the number of cores)"),
    "engine": _o("engine", Optional[str], None, ("--engine",), "NAME",
                 "With --out: where the work runs; local (this machine's cores, --out FILE) or ray (Ray Data "
                 "actors, the `ray` extra; --out is a new directory, or URI, of JSONL files; --csv: CSV; a name "
                 "ending in .parquet: Parquet). (default: local)"),
    "address": _o("address", Optional[str], None, ("--address",), "ADDRESS",
                  "With --engine ray: the Ray cluster, e.g. ray://host:10001. (default: a local Ray)"),
    "neighbours_dir": _o("neighbours_dir", Optional[str], None, ("--neighbours",), "DIR",
                         "Write a picture per input into DIR: for each of the top-3 classes, the 5 training images "
                         "nearest to it in the model's embedding (the index is built beside the model on first use)."),
    "explain": _o("explain", Optional[str], None, ("--explain",), "DIR",
                  "Save each input's 28x28 image(s) with a heatmap of the pixels that drove the answer over them "
                  "(red: for it, blue: against), enlarged 8x, into this directory."),
    "explain_method": _o("explain_method", str, "occlusion", ("--explain-method",), "NAME",
                         "How --explain finds the pixels: occlusion (any runtime), integrated_gradients or gradcam "
                         "(these two load the Keras model)."),
    # neighbours
    "index_model": _o("model", Optional[str], None, (), "MODEL",
                      "Run directory or name, model directory, or 'latest'. (default: the shipped pretrained model)"),
    "per_class": _o("per_class", Optional[int], None, ("--per-class",), "N",
                    "Index only the first N training images of each class (a smaller file). (default: all)"),
    "rebuild": _o("rebuild", bool, False, ("--rebuild",), "", "Build it again even if it is current."),
    # compare
    "run_a": _o("run_a", str, REQUIRED, (), "RUN_A", "First run (directory, name or 'latest')."),
    "run_b": _o("run_b", str, REQUIRED, (), "RUN_B", "Second run."),
    "compare_out": _o("out", Optional[str], None, ("--out", "-o"), "DIR",
                      "Also write compare.html, compare.json and disagreements.png into DIR (created if missing)."),
    # ensemble
    "ensemble_models": _o("models", list[str], REQUIRED, (), "MODELS",
                          "Two or more trained models: 'pretrained', runs (name, directory or 'latest'), model "
                          "directories or .keras files, trained with the same validation split."),
    # export
    "source": _o("source", Optional[str], None, (), "SOURCE",
                 "Run directory or name, model directory, or .keras file. (default: the latest run)"),
    "format": _o("format", str, "onnx", ("--format", "-f"), "NAME", "onnx, litert (.tflite), savedmodel or keras."),
    "export_out": _o("out", Optional[str], None, ("--out", "-o"), "PATH",
                     "Output file (directory for savedmodel), or an existing directory to put it in. "
                     "(default: beside the source model: model.onnx, model.tflite, savedmodel/; "
                     "quantized: model.int8.onnx etc.; required for keras)"),
    "quantize": _o("quantize", str, "none", ("--quantize", "-q"), "NAME", "none, float16 or int8 (onnx and litert only)."),
    # serve
    "serve_model": _o("model", Optional[str], None, ("--model", "-m"), "PATH",
                      "Model directory or file. (default: the shipped pretrained model)"),
    "serve_runtime": _o("runtime", str, "auto", ("--runtime",), "NAME", "Inference runtime: auto picks the fastest available."),
    "host": _o("host", str, "127.0.0.1", ("--host",), "ADDRESS", "Address to bind; 0.0.0.0 exposes the server to the network."),
    "port": _o("port", int, 8000, ("--port",), "N", "TCP port."),
    "workers": _o("workers", int, 1, ("--workers",), "N", "Worker processes (each loads the model once)."),
    "log_level": _o("log_level", str, "info", ("--log-level",), "LEVEL", "uvicorn log level: critical, error, warning, info, debug."),
    "access_log": _o("access_log", bool, True, ("--access-log/--no-access-log",), "", "Log every request."),
    "limit_concurrency": _o("limit_concurrency", int, serving.DEFAULT_LIMIT_CONCURRENCY, ("--limit-concurrency",), "N",
                            "Open connections per worker; more are answered 503 and closed at once "
                            "(a flood cannot use up file descriptors)."),
    "timeout_keep_alive": _o("timeout_keep_alive", float, serving.DEFAULT_TIMEOUT_KEEP_ALIVE, ("--timeout-keep-alive",),
                             "SECONDS", "An idle kept-alive connection is closed after this long."),
    "timeout_headers": _o("timeout_headers", float, serving.DEFAULT_TIMEOUT_HEADERS, ("--timeout-headers",), "SECONDS",
                          "A client must send a request's headers within this long (else 408 and close: slow-loris)."),
    "timeout_body": _o("timeout_body", float, serving.DEFAULT_TIMEOUT_BODY, ("--timeout-body",), "SECONDS",
                       "A client must send a request's body within this long after its headers (else 408 and close)."),
    "allowed_host": _o("allowed_host", Optional[list[str]], None, ("--allowed-host",), "NAME",
                       "Also answer requests whose Host header names NAME (repeatable; '*': any). Bound to loopback, "
                       "only localhost, 127.0.0.1 and ::1 are answered otherwise (DNS rebinding); bound to another "
                       "address, any name unless some are given."),
    "corrections": _o("corrections", Optional[str], None, ("--corrections",), "DIR",
                      "Save the page's corrections (\"wrong? it's a 7\": POST /api/corrections) in DIR, one sub-folder "
                      "per class, ready for `digitlab train --data DIR --init pretrained`. (default: off; the server "
                      "keeps nothing people send)"),
    "corrections_max": _o("corrections_max", int, serving.DEFAULT_CORRECTIONS_MAX, ("--corrections-max",), "N",
                          "At most N samples in the corrections folder; then 409 until it is emptied."),
    "serve_engine": _o("engine", str, "local", ("--engine",), "NAME",
                       "local: uvicorn (--workers); ray: Ray Serve (the `ray` extra), --replicas replicas behind its "
                       "proxy."),
    "replicas": _o("replicas", int, 1, ("--replicas",), "N", "With --engine ray: replicas (each loads the model once)."),
    "corrections_max_mb": _o("corrections_max_mb", float, serving.DEFAULT_CORRECTIONS_MAX_BYTES / 2**20,
                             ("--corrections-max-mb",), "MB", "At most this many megabytes in the corrections folder."),
}

TRAINING = ("preset", "epochs", "batch_size", "lr", "seed", "limit", "members", "val_fraction", "stratify", "data",
            "init", "data_dir", "download", "out", "name", "set")
# Which options each command takes, in the order --help lists them.
COMMANDS: dict[str, tuple[str, ...]] = {
    "run": TRAINING,
    "train": TRAINING,
    "evaluate": ("run", "out", "eval_data", "data_dir"),
    "explore": ("explore_out", "data", "data_dir", "data_download", "explore_seed"),
    "show": ("run", "out", "index", "show_seed", "save"),
    "presets": (),
    "data": ("data", "data_dir", "data_download"),
    "predict": ("paths", "model", "runtime", "number", "as_json", "as_csv", "threshold", "annotate", "show_input",
                "explain", "explain_method", "neighbours_dir", "predict_out", "predict_workers", "engine", "address", "runs_dir"),
    "neighbours": ("index_model", "out", "per_class", "rebuild"),
    "export": ("source", "format", "export_out", "quantize", "runs_dir"),
    "ensemble": ("ensemble_models", "name", "out"),
    "compare": ("run_a", "run_b", "compare_out", "runs_dir", "runtime"),
    "serve": ("serve_model", "serve_runtime", "host", "port", "workers", "log_level", "access_log", "limit_concurrency",
              "timeout_keep_alive", "timeout_headers", "timeout_body", "allowed_host", "corrections", "corrections_max",
              "corrections_max_mb", "serve_engine", "replicas", "address"),
}
# The training options as (parameter, Config field, type, default, flags, metavar, help) rows.
TRAINING_OPTIONS = tuple(tuple(OPTIONS[name]) for name in TRAINING)


def with_options(command: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give `func(ctx, **options)` the Typer signature of `command`'s options (see COMMANDS)."""

    def decorate(func: Callable[..., None]) -> Callable[..., None]:
        params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
        for key in COMMANDS[command]:
            o = OPTIONS[key]
            help_text = o.help() if callable(o.help) else o.help
            if o.flags:
                spec = typer.Option(*o.flags, help=help_text, metavar=o.metavar, show_default=o.default not in (None, False, REQUIRED))
            else:
                spec = typer.Argument(help=help_text, metavar=o.metavar, show_default=False)
            params.append(inspect.Parameter(o.param, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=o.default,
                                            annotation=Annotated[o.type, spec]))
        func.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        func.__annotations__ = {p.name: p.annotation for p in params}
        return func

    return decorate


def training_config(options: dict[str, Any]) -> Any:
    """The Config of `run`/`train` options: preset defaults, then the given options, then --set."""
    from ..config.settings import parse_overrides
    from ..pipeline import make_config

    given = {o.field: options[o.param] for o in map(OPTIONS.get, TRAINING)
             if o.field is not None and options.get(o.param) not in (None, o.default)}
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
