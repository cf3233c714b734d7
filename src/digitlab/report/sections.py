"""One self-contained HTML report per run.

The report is a single file with every figure inlined as base64 and the CSS
in a <style> block: no scripts, fonts or links to other sites, so it opens
offline, can be mailed or archived on its own, and prints cleanly. Every
value that comes from outside this module (config, metrics, names, the
command line) is HTML-escaped. Missing pieces, like the training history of
an evaluate-only run or a figure that failed, become a short note, never an
exception: a report is most useful exactly when something went wrong.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..files.atomic import atomic_write_text
from ..files.layout import REPORT_FILE
from ..models.finetune import TEST_SET_NAMES, budget_line
from . import html as h
from .calibration_figures import CALIBRATION_FIGURES
from .evaluation import evaluation_section
from .figurekit import FigureInfo
from .figures import EVAL_FIGURES, EXPLORE_FIGURES

SECTIONS: tuple[tuple[str, str], ...] = (
    ("summary", "Summary"),
    ("data", "Data"),
    ("model", "Model"),
    ("training", "Training"),
    ("evaluation", "Evaluation"),
    ("predictions", "Predictions"),
    ("timings", "Timings"),
    ("config", "Configuration"),
    ("reproduce", "Reproduce"),
)

# Keys of `extra` that have their own place in the report; any other key
# (e.g. "environment") is listed in the reproduce section, so nothing passed in
# is lost.
_EXTRA_KEYS = {"n_train", "n_val", "n_test", "params", "date"}

def _accuracy_note(evaluate_acc: float | None, score_acc: float | None, n_test: int | None) -> str:
    if evaluate_acc is None or score_acc is None:
        return h.note("Only one of the two accuracies is available, so they cannot be cross-checked.")
    diff = abs(evaluate_acc - score_acc)
    # The two are computed independently (Keras' float32 running mean vs.
    # scikit-learn on argmax predictions); they agree when they count the
    # same number of correct images, i.e. differ by less than half an image.
    tolerance = 0.5 / n_test if n_test else 1e-4
    if diff < tolerance:
        detail = ", less than one image" if n_test else ""
        return (f'<p class="agree">✓ The two accuracies agree (difference {100 * diff:.4f} percentage points'
                f"{detail}).</p>")
    images = f" ≈ {diff * n_test:.0f} images" if n_test else ""
    return (f'<p class="disagree">⚠ The two accuracies differ by {100 * diff:.2f} percentage points{h.esc(images)}: '
            f"model.evaluate and the predictions did not see the same images or preprocessing.</p>")


def _summary(run_name: str, config: Mapping, metrics: Mapping, extra: Mapping, interrupted: bool) -> str:
    parts = []
    if interrupted:
        parts.append('<div class="banner" role="alert">INTERRUPTED: this run was stopped before it finished. '
                     "The numbers below describe the model as it was when it stopped.</div>")
    evaluate_acc, score_acc = h.num(metrics.get("test_accuracy")), h.num(metrics.get("accuracy_score"))
    n_test = h.integer(h.first("n_test", metrics, extra))
    cards = [
        ("Test accuracy (model.evaluate)", h.pct(evaluate_acc)),
        ("Test accuracy (accuracy_score)", h.pct(score_acc)),
        ("Test loss", h.fmt(metrics.get("test_loss"))),
        ("Test images", h.count(n_test)),
    ]
    parts.append('<div class="cards">' + "".join(
        f'<div class="card"><div class="label">{h.esc(label)}</div><div class="value">{h.esc(value)}</div></div>'
        for label, value in cards) + "</div>")
    parts.append(_accuracy_note(evaluate_acc, score_acc, n_test))
    date = extra.get("date") or _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()
    rows = [
        ("Run", run_name),
        ("Preset", config.get("preset") or metrics.get("preset") or "—"),
        ("Date", date),
        ("digitlab version", config.get("version") or "unknown"),
        ("Status", "interrupted" if interrupted else "complete"),
    ]
    device = metrics.get("device") or _mapping(extra.get("environment")).get("device")
    if device:
        rows.append(("Trained on", device))
    if config.get("init"):
        rows.append(("Fine-tuned from", config["init"]))
    parts.append(h.kv_table(rows))
    finetune = _mapping(metrics.get("finetune"))
    if finetune:
        parts.append(_finetune_table(finetune))
    return "\n".join(parts)


def _mapping(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _finetune_table(finetune: Mapping) -> str:
    """Accuracy before and after fine-tuning, on each test set (metrics' `finetune`)."""
    rows = []
    for name, entry in _mapping(finetune.get("test_sets")).items():
        entry = _mapping(entry)
        before, after = h.num(entry.get("before")), h.num(entry.get("after"))
        change = "—" if before is None or after is None else f"{100 * (after - before):+.2f} points"
        rows.append([TEST_SET_NAMES.get(str(name), str(name)), h.count(entry.get("n")), h.pct(before), h.pct(after),
                     change])
    replay = h.num(finetune.get("replay"))
    how = (f"MNIST replay: {h.pct(replay, 0)} of each batch ({h.count(finetune.get('replay_per_batch'))} images)"
           if replay else "no replay")
    budget = _mapping(finetune.get("mnist_validation"))
    return ("<h3>Fine-tuning: accuracy before and after</h3>"
            + h.table(["test set", "images", "before", "after", "change"], rows, text_cols=(0,))
            + h.note(f"Started from {finetune.get('init', '?')} (model {finetune.get('init_model_id', '?')}); "
                    f"{h.count(finetune.get('n_user_train'))} training images of the run's data; {how}."
                    + (f" {budget_line(dict(budget))}." if budget else "")))


def _data(data_source: str, config: Mapping, metrics: Mapping, extra: Mapping, figures: Mapping) -> str:
    sizes = [
        ("Source", data_source or metrics.get("data_source") or "—"),
        ("Training images", h.count(h.first("n_train", extra, metrics, config))),
        ("Validation images", h.count(h.first("n_val", extra, metrics, config))),
        ("Test images", h.count(h.first("n_test", extra, metrics, config))),
    ]
    if config.get("val_fraction") is not None:
        sizes.append(("Validation fraction", h.plain(config["val_fraction"])))
    if config.get("limit") is not None:
        sizes.append(("Training limit", h.plain(config["limit"])))
    classes = config.get("classes")
    if isinstance(classes, (list, tuple)) and classes:
        shown = ", ".join(str(c) for c in classes[:30]) + (f" … ({len(classes)} in all)" if len(classes) > 30 else "")
        sizes.append(("Classes", shown))
    notes = metrics.get("data_notes")
    if isinstance(notes, (list, tuple)) and notes:
        sizes.append(("Notes", "; ".join(str(n) for n in notes)))
    return h.kv_table(sizes) + "\n" + "\n".join(h.figure(info, figures) for info in EXPLORE_FIGURES)


def _model(model_summary: str | None, metrics: Mapping, extra: Mapping) -> str:
    parts = []
    params = h.first("params", metrics, extra)
    if isinstance(params, Mapping) and params:
        total, trainable = h.integer(params.get("total")), h.integer(params.get("trainable"))
        rows = [("Total parameters", h.count(total)), ("Trainable parameters", h.count(trainable))]
        non_trainable = params.get("non_trainable")
        if non_trainable is None and total is not None and trainable is not None:
            non_trainable = total - trainable
        rows.append(("Non-trainable parameters", h.count(non_trainable)))
        parts.append(h.kv_table(rows))
    if model_summary:
        parts.append(f"<pre>{h.esc(model_summary)}</pre>")
    else:
        parts.append(h.note("No model summary available."))
    return "\n".join(parts)


_HISTORY_COLUMNS = (
    ("loss", "loss", 4), ("accuracy", "accuracy", 4),
    ("val_loss", "val_loss", 4), ("val_accuracy", "val_accuracy", 4), ("epoch_seconds", "seconds", 2),
)


def _training_facts(metrics: Mapping) -> str:
    """Epochs and time as recorded by training (metrics written by the pipeline)."""
    rows = []
    done, planned = h.integer(metrics.get("epochs_completed")), h.integer(metrics.get("epochs_planned"))
    if done is not None or planned is not None:
        rows.append(("Epochs", f"{h.count(done)} of {h.count(planned)}" if planned is not None else h.count(done)))
    if metrics.get("best_epoch") is not None:
        rows.append(("Best epoch (validation)", h.count(metrics["best_epoch"])))
    if metrics.get("train_seconds") is not None:
        rows.append(("Training time (model build, epochs, checkpoints)", h.seconds(metrics["train_seconds"])))
    if metrics.get("seconds_per_epoch") is not None:
        rows.append(("Mean time per epoch", h.seconds(metrics["seconds_per_epoch"])))
    return h.kv_table(rows) if rows else ""


def _series(value: Any) -> list[Any]:
    """A per-epoch list from a list, tuple or numpy array; [] for anything else."""
    if value is None or isinstance(value, (str, bytes, Mapping)):
        return []
    try:
        return list(value)
    except TypeError:
        return []


def _training(history: Mapping | None, figures: Mapping, metrics: Mapping) -> str:
    info = EVAL_FIGURES[0]
    facts = _training_facts(metrics)
    if not history:
        note = h.note("No training history: this report comes from evaluating an existing model.")
        # A curves figure made elsewhere is still worth showing.
        return facts + note + (h.figure(info, figures) if info.name in figures else "")
    series = {key: _series(history.get(key)) for key, _, _ in _HISTORY_COLUMNS}
    columns = [(key, head, digits) for key, head, digits in _HISTORY_COLUMNS if series[key]]
    parts = [facts, h.figure(info, figures)]
    if not columns:
        return "\n".join(parts + [h.note("The history holds no per-epoch values.")])
    n_epochs = max(len(series[key]) for key, _, _ in columns)
    rows = []
    for i in range(n_epochs):
        row: list[Any] = [i + 1]
        for key, _, digits in columns:
            values = series[key]
            row.append(h.fmt(values[i], digits) if i < len(values) else "—")
        rows.append(row)
    row_classes = None
    val_acc = [h.num(v) for v in series["val_accuracy"]]
    if any(v is not None for v in val_acc):
        best = max(range(len(val_acc)), key=lambda i: -math.inf if val_acc[i] is None else val_acc[i])
        row_classes = ["best" if i == best else "" for i in range(n_epochs)]
        parts.append(h.note(f"Best validation accuracy: {h.pct(val_acc[best])} at epoch {best + 1} (highlighted)."))
    parts.append("<h3>Per epoch</h3>" + h.table(["epoch"] + [head for _, head, _ in columns], rows,
                                              row_classes=row_classes, text_cols=()))
    return "\n".join(parts)


def _predictions(figures: Mapping) -> str:
    parts = [h.figure(info, figures) for info in EVAL_FIGURES[2:]]
    known = {info.name for info in EXPLORE_FIGURES + EVAL_FIGURES + CALIBRATION_FIGURES}
    others = [name for name in figures if name not in known]
    if others:
        # Figures this module has no caption for are still shown.
        parts.append("<h3>Other figures</h3>")
        parts += [h.figure(FigureInfo(name, name, ""), figures) for name in others]
    return "\n".join(parts)


def _timings(timings: Mapping[str, Any]) -> str:
    if not timings:
        return h.note("No timings recorded.")
    # Steps only: a "total" entry is the total row, and ratios such as
    # "outside_fit_share" are not seconds, so neither is summed as a step.
    values = [(name, h.num(v)) for name, v in timings.items()
              if name != "total" and not str(name).endswith(("_share", "_fraction", "_ratio"))]
    if not values:
        return h.note("No timings recorded.")
    total = h.num(timings.get("total"))
    if total is None:
        total = sum(v for _, v in values if v is not None)
    rows = [[name, h.seconds(v), "—" if v is None or total <= 0 else f"{100 * v / total:.1f}%"]
            for name, v in values]
    rows.append(["total", h.seconds(total), ""])
    classes = [""] * (len(rows) - 1) + ["total"]
    return h.table(["step", "time", "share"], rows, row_classes=classes)


def _config(config: Mapping) -> str:
    if not config:
        return h.note("No configuration recorded.")
    return h.kv_table((k, h.plain(v)) for k, v in config.items())


def _reproduce(command: str, config: Mapping, extra: Mapping) -> str:
    if command:
        version = config.get("version") or "the same version"
        parts = [f"<pre><code>{h.esc(command)}</code></pre>",
                 h.note(f"Run from the same working directory with digitlab {version}; "
                       f"the seed in the configuration makes the run repeatable.")]
    else:
        parts = [h.note("The command line was not recorded.")]
    plain = []
    for key, value in extra.items():
        if key in _EXTRA_KEYS:
            continue
        if isinstance(value, Mapping):
            parts.append(f"<h3>{h.esc(str(key).replace('_', ' ').capitalize())}</h3>"
                         + h.kv_table((k, h.plain(v)) for k, v in value.items()))
        else:
            plain.append((key, h.plain(value)))
    if plain:
        parts.append("<h3>More details</h3>" + h.kv_table(plain))
    return "\n".join(parts)


# --------------------------------------------------------------------------


def render_report(run_dir: str | os.PathLike, *, config: Mapping, metrics: Mapping, history: Mapping | None,
                  model_summary: str | None, figures: Mapping[str, os.PathLike | str],
                  timings: Mapping[str, float], command: str, data_source: str = "",
                  extra: Mapping | None = None) -> str:
    """The report as an HTML string (see `write_report`)."""
    config, metrics, extra = config or {}, metrics or {}, extra or {}
    figures, timings = figures or {}, timings or {}
    run_name = Path(run_dir).name
    interrupted = any(bool(source.get("interrupted")) for source in (metrics, config, extra))
    bodies = {
        "summary": _summary(run_name, config, metrics, extra, interrupted),
        "data": _data(data_source, config, metrics, extra, figures),
        "model": _model(model_summary, metrics, extra),
        "training": _training(history, figures, metrics),
        "evaluation": evaluation_section(metrics, figures, config.get("classes")),
        "predictions": _predictions(figures),
        "timings": _timings(timings),
        "config": _config(config),
        "reproduce": _reproduce(command, config, extra),
    }
    nav = "".join(f'<a href="#{sid}">{h.esc(title)}</a>' for sid, title in SECTIONS)
    sections = "\n".join(h.section(sid, title, bodies[sid]) for sid, title in SECTIONS)
    status = " (INTERRUPTED)" if interrupted else ""
    version = config.get("version") or "unknown"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>digitlab report: {h.esc(run_name)}{status}</title>
<style>{h.CSS}</style>
</head>
<body>
<main>
<header>
<h1>digitlab report: {h.esc(run_name)}{status}</h1>
<p class="sub">Preset {h.esc(config.get("preset", "—"))} · test accuracy {h.esc(h.pct(metrics.get("accuracy_score",
    metrics.get("test_accuracy"))))} · digitlab {h.esc(version)}</p>
<nav>{nav}</nav>
</header>
{sections}
<footer>Written by digitlab {h.esc(version)}. This file is self-contained: it needs no network.</footer>
</main>
</body>
</html>
"""


def write_report(run_dir: str | os.PathLike, *, config: Mapping, metrics: Mapping, history: Mapping | None,
                 model_summary: str | None, figures: Mapping[str, os.PathLike | str],
                 timings: Mapping[str, float], command: str, data_source: str = "",
                 extra: Mapping | None = None) -> Path:
    """Write `run_dir/report.html` (atomically) and return its path.

    `figures` maps file names (as in plots.EXPLORE_FIGURES / EVAL_FIGURES) to
    PNG paths. Data-set sizes are read from `extra` (then metrics, then
    config) as n_train / n_val / n_test; other `extra` entries are listed in
    the summary.
    """
    text = render_report(run_dir, config=config, metrics=metrics, history=history, model_summary=model_summary,
                         figures=figures, timings=timings, command=command, data_source=data_source, extra=extra)
    return atomic_write_text(Path(run_dir) / REPORT_FILE, text)
