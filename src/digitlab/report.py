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

import base64
import datetime as _dt
import html
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .calibration_plots import CALIBRATION_FIGURES
from .layout import REPORT_FILE
from .plots import EVAL_FIGURES, EXPLORE_FIGURES, FigureInfo
from .runs import atomic_write_text

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

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg-alt: #f6f8fa;
        --accent: #0969da; --good: #1a7f37; --bad: #cf222e; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: var(--fg); background: #fff; line-height: 1.5;
       font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 60rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.6rem; margin: 0.5rem 0 0.25rem; }
h2 { font-size: 1.3rem; margin: 0 0 0.75rem; padding-bottom: 0.3rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.25rem 0 0.5rem; }
section { margin: 2rem 0; }
nav { display: flex; flex-wrap: wrap; gap: 0.25rem 0.9rem; margin: 0.5rem 0 1rem; font-size: 0.95rem; }
a { color: var(--accent); }
.sub, .note, figcaption, footer { color: var(--muted); }
.note { font-style: italic; }
.banner { border: 2px solid var(--bad); background: #ffebe9; color: #82071e; padding: 0.75rem 1rem;
          border-radius: 6px; margin: 1rem 0; font-weight: 600; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(11rem, 1fr)); gap: 0.75rem; margin: 1rem 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 0.6rem 0.8rem; }
.card .label { font-size: 0.85rem; color: var(--muted); }
.card .value { font-size: 1.5rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.agree { color: var(--good); }
.disagree { color: var(--bad); font-weight: 600; }
.table-wrap { overflow-x: auto; -webkit-overflow-scrolling: touch; margin: 0.5rem 0 1rem; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 0.92rem; }
th, td { border: 1px solid var(--line); padding: 0.3rem 0.6rem; text-align: right; white-space: nowrap; }
th { background: var(--bg-alt); }
td.text, th.text { text-align: left; white-space: normal; }
table.kv th { text-align: left; }
table.kv td { text-align: left; white-space: normal; overflow-wrap: anywhere; }
tr.best td { background: #dafbe1; }
tr.total td { font-weight: 600; }
td.diag { background: #ddf4ff; font-weight: 600; }
td.worst { background: #ffebe9; font-weight: 600; }
pre { background: var(--bg-alt); border: 1px solid var(--line); border-radius: 6px; padding: 0.75rem;
      overflow-x: auto; font-size: 0.8rem; line-height: 1.35; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace; }
figure { margin: 1rem 0 1.5rem; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { font-size: 0.9rem; margin-top: 0.35rem; }
footer { border-top: 1px solid var(--line); margin-top: 2rem; padding-top: 0.5rem; font-size: 0.85rem; }
@media print {
  nav { display: none; }
  main { max-width: none; padding: 0; }
  body { font-size: 11pt; }
  figure, table, pre, .cards { break-inside: avoid; }
  h2, h3 { break-after: avoid; }
  pre { white-space: pre-wrap; overflow-wrap: anywhere; }
  .table-wrap { overflow: visible; }
  a { color: inherit; text-decoration: none; }
}
"""


_CONTROL = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class _Raw(str):
    """HTML we built ourselves, to be inserted without escaping."""


def _e(value: Any) -> str:
    """Escape anything for HTML text or a quoted attribute (_Raw passes through)."""
    if isinstance(value, _Raw):
        return value
    # Control characters (ANSI colour codes in a model summary, say) are not
    # allowed in HTML; drop them rather than emit an invalid document.
    return html.escape(_CONTROL.sub("", str(value)), quote=True)


def _num(value: Any) -> float | None:
    """A finite float, or None for missing / non-numeric / NaN values."""
    if value is None or isinstance(value, (bool, str)):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _int(value: Any) -> int | None:
    v = _num(value)
    return int(round(v)) if v is not None else None


def _fmt(value: Any, digits: int = 4) -> str:
    v = _num(value)
    return "—" if v is None else f"{v:.{digits}f}"


def _pct(value: Any, digits: int = 2) -> str:
    v = _num(value)
    return "—" if v is None else f"{100 * v:.{digits}f}%"


def _count(value: Any) -> str:
    v = _int(value)
    return "—" if v is None else f"{v:,}"


def _seconds(value: Any) -> str:
    v = _num(value)
    if v is None:
        return "—"
    if v < 60:
        return f"{v:.2f} s"
    minutes, secs = divmod(round(v), 60)
    return f"{v:.1f} s ({minutes} min {secs} s)"


def _plain(value: Any) -> str:
    """A config/extra value as readable text (JSON for anything but strings)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


_TEXT = ' class="text"'


def _table(headers: Sequence[Any], rows: Iterable[Sequence[Any]], *, cls: str = "",
           row_classes: Sequence[str] | None = None, text_cols: Iterable[int] = (0,)) -> str:
    """A table in a horizontally scrolling wrapper (phones). Cells are escaped."""
    text_cols = set(text_cols)
    head = "".join(f'<th{_TEXT if i in text_cols else ""}>{_e(h)}</th>' for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        rc = row_classes[r] if row_classes and r < len(row_classes) and row_classes[r] else ""
        cells = "".join(f'<td{_TEXT if i in text_cols else ""}>{_e(c)}</td>' for i, c in enumerate(row))
        body.append(f'<tr class="{_e(rc)}">{cells}</tr>' if rc else f"<tr>{cells}</tr>")
    cls_attr = f' class="{_e(cls)}"' if cls else ""
    return (f'<div class="table-wrap"><table{cls_attr}><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _kv_table(items: Iterable[tuple[Any, Any]]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in items)
    return f'<div class="table-wrap"><table class="kv"><tbody>{rows}</tbody></table></div>'


def _first(key: str, *sources: Mapping[str, Any] | None) -> Any:
    for source in sources:
        if source and source.get(key) is not None:
            return source[key]
    return None


# --------------------------------------------------------------------------
# figures


def _figure(info: FigureInfo, figures: Mapping[str, Any]) -> str:
    """An inlined <figure>, or a note saying why the figure is missing."""
    path = figures.get(info.name)
    if path is None:
        return f"<h3>{_e(info.title)}</h3>" + _note(f"Figure {info.name} was not produced for this run.")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return f"<h3>{_e(info.title)}</h3>" + _note(f"Figure {info.name} could not be read: {exc.strerror or exc}.")
    if not data.startswith(_PNG_SIGNATURE):
        return f"<h3>{_e(info.title)}</h3>" + _note(f"Figure {info.name} is not a PNG file; skipped.")
    b64 = base64.b64encode(data).decode("ascii")
    anchor = "fig-" + "".join(c if c.isalnum() else "-" for c in Path(info.name).stem)
    return (f'<figure id="{_e(anchor)}"><h3>{_e(info.title)}</h3>'
            f'<img src="data:image/png;base64,{b64}" alt="{_e(info.title)}">'
            f"<figcaption>{_e(info.caption)}</figcaption></figure>")


# --------------------------------------------------------------------------
# sections


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{_e(title)}</h2>\n{body}\n</section>'


def _accuracy_note(evaluate_acc: float | None, score_acc: float | None, n_test: int | None) -> str:
    if evaluate_acc is None or score_acc is None:
        return _note("Only one of the two accuracies is available, so they cannot be cross-checked.")
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
    return (f'<p class="disagree">⚠ The two accuracies differ by {100 * diff:.2f} percentage points{_e(images)}: '
            f"model.evaluate and the predictions did not see the same images or preprocessing.</p>")


def _summary(run_name: str, config: Mapping, metrics: Mapping, extra: Mapping, interrupted: bool) -> str:
    parts = []
    if interrupted:
        parts.append('<div class="banner" role="alert">INTERRUPTED: this run was stopped before it finished. '
                     "The numbers below describe the model as it was when it stopped.</div>")
    evaluate_acc, score_acc = _num(metrics.get("test_accuracy")), _num(metrics.get("accuracy_score"))
    n_test = _int(_first("n_test", metrics, extra))
    cards = [
        ("Test accuracy (model.evaluate)", _pct(evaluate_acc)),
        ("Test accuracy (accuracy_score)", _pct(score_acc)),
        ("Test loss", _fmt(metrics.get("test_loss"))),
        ("Test images", _count(n_test)),
    ]
    parts.append('<div class="cards">' + "".join(
        f'<div class="card"><div class="label">{_e(label)}</div><div class="value">{_e(value)}</div></div>'
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
    parts.append(_kv_table(rows))
    finetune = _mapping(metrics.get("finetune"))
    if finetune:
        parts.append(_finetune_table(finetune))
    return "\n".join(parts)


def _mapping(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


_TEST_SET_NAMES = {"data": "the run's own test split", "mnist": "MNIST test set"}


def _finetune_table(finetune: Mapping) -> str:
    """Accuracy before and after fine-tuning, on each test set (metrics' `finetune`)."""
    rows = []
    for name, entry in _mapping(finetune.get("test_sets")).items():
        entry = _mapping(entry)
        before, after = _num(entry.get("before")), _num(entry.get("after"))
        change = "—" if before is None or after is None else f"{100 * (after - before):+.2f} points"
        rows.append([_TEST_SET_NAMES.get(str(name), str(name)), _count(entry.get("n")), _pct(before), _pct(after),
                     change])
    replay = _num(finetune.get("replay"))
    how = (f"MNIST replay: {_pct(replay, 0)} of each batch ({_count(finetune.get('replay_per_batch'))} images)"
           if replay else "no replay")
    return ("<h3>Fine-tuning: accuracy before and after</h3>"
            + _table(["test set", "images", "before", "after", "change"], rows, text_cols=(0,))
            + _note(f"Started from {finetune.get('init', '?')} (model {finetune.get('init_model_id', '?')}); "
                    f"{_count(finetune.get('n_user_train'))} training images of the run's data; {how}."))


def _data(data_source: str, config: Mapping, metrics: Mapping, extra: Mapping, figures: Mapping) -> str:
    sizes = [
        ("Source", data_source or metrics.get("data_source") or "—"),
        ("Training images", _count(_first("n_train", extra, metrics, config))),
        ("Validation images", _count(_first("n_val", extra, metrics, config))),
        ("Test images", _count(_first("n_test", extra, metrics, config))),
    ]
    if config.get("val_fraction") is not None:
        sizes.append(("Validation fraction", _plain(config["val_fraction"])))
    if config.get("limit") is not None:
        sizes.append(("Training limit", _plain(config["limit"])))
    classes = config.get("classes")
    if isinstance(classes, (list, tuple)) and classes:
        shown = ", ".join(str(c) for c in classes[:30]) + (f" … ({len(classes)} in all)" if len(classes) > 30 else "")
        sizes.append(("Classes", shown))
    notes = metrics.get("data_notes")
    if isinstance(notes, (list, tuple)) and notes:
        sizes.append(("Notes", "; ".join(str(n) for n in notes)))
    return _kv_table(sizes) + "\n" + "\n".join(_figure(info, figures) for info in EXPLORE_FIGURES)


def _model(model_summary: str | None, metrics: Mapping, extra: Mapping) -> str:
    parts = []
    params = _first("params", metrics, extra)
    if isinstance(params, Mapping) and params:
        total, trainable = _int(params.get("total")), _int(params.get("trainable"))
        rows = [("Total parameters", _count(total)), ("Trainable parameters", _count(trainable))]
        non_trainable = params.get("non_trainable")
        if non_trainable is None and total is not None and trainable is not None:
            non_trainable = total - trainable
        rows.append(("Non-trainable parameters", _count(non_trainable)))
        parts.append(_kv_table(rows))
    if model_summary:
        parts.append(f"<pre>{_e(model_summary)}</pre>")
    else:
        parts.append(_note("No model summary available."))
    return "\n".join(parts)


_HISTORY_COLUMNS = (
    ("loss", "loss", 4), ("accuracy", "accuracy", 4),
    ("val_loss", "val_loss", 4), ("val_accuracy", "val_accuracy", 4), ("epoch_seconds", "seconds", 2),
)


def _training_facts(metrics: Mapping) -> str:
    """Epochs and time as recorded by training (metrics written by the pipeline)."""
    rows = []
    done, planned = _int(metrics.get("epochs_completed")), _int(metrics.get("epochs_planned"))
    if done is not None or planned is not None:
        rows.append(("Epochs", f"{_count(done)} of {_count(planned)}" if planned is not None else _count(done)))
    if metrics.get("best_epoch") is not None:
        rows.append(("Best epoch (validation)", _count(metrics["best_epoch"])))
    if metrics.get("train_seconds") is not None:
        rows.append(("Training time (model build, epochs, checkpoints)", _seconds(metrics["train_seconds"])))
    if metrics.get("seconds_per_epoch") is not None:
        rows.append(("Mean time per epoch", _seconds(metrics["seconds_per_epoch"])))
    return _kv_table(rows) if rows else ""


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
        note = _note("No training history: this report comes from evaluating an existing model.")
        # A curves figure made elsewhere is still worth showing.
        return facts + note + (_figure(info, figures) if info.name in figures else "")
    series = {key: _series(history.get(key)) for key, _, _ in _HISTORY_COLUMNS}
    columns = [(key, head, digits) for key, head, digits in _HISTORY_COLUMNS if series[key]]
    parts = [facts, _figure(info, figures)]
    if not columns:
        return "\n".join(parts + [_note("The history holds no per-epoch values.")])
    n_epochs = max(len(series[key]) for key, _, _ in columns)
    rows = []
    for i in range(n_epochs):
        row: list[Any] = [i + 1]
        for key, _, digits in columns:
            values = series[key]
            row.append(_fmt(values[i], digits) if i < len(values) else "—")
        rows.append(row)
    row_classes = None
    val_acc = [_num(v) for v in series["val_accuracy"]]
    if any(v is not None for v in val_acc):
        best = max(range(len(val_acc)), key=lambda i: -math.inf if val_acc[i] is None else val_acc[i])
        row_classes = ["best" if i == best else "" for i in range(n_epochs)]
        parts.append(_note(f"Best validation accuracy: {_pct(val_acc[best])} at epoch {best + 1} (highlighted)."))
    parts.append("<h3>Per epoch</h3>" + _table(["epoch"] + [head for _, head, _ in columns], rows,
                                              row_classes=row_classes, text_cols=()))
    return "\n".join(parts)


def _class_key(key: Any) -> tuple[int, Any]:
    try:
        return (0, int(key))
    except (TypeError, ValueError):
        return (1, str(key))


def _class_word(keys: Sequence[str]) -> str:
    return "digit" if all(len(k) == 1 and k.isdigit() for k in keys) else "class"


def _evaluation(metrics: Mapping, figures: Mapping, classes: Sequence[str] | None = None) -> str:
    parts = []
    overall = [
        ("Test loss (model.evaluate)", _fmt(metrics.get("test_loss"))),
        ("Test accuracy (model.evaluate)", _pct(metrics.get("test_accuracy"))),
        ("Test accuracy (accuracy_score)", _pct(metrics.get("accuracy_score"))),
        ("Test images", _count(metrics.get("n_test"))),
    ]
    if metrics.get("errors") is not None:
        overall.append(("Misclassified test images", _count(metrics["errors"])))
    parts.append("<h3>Overall</h3>" + _kv_table(overall))
    averages = [(name, metrics.get(key)) for name, key in (("macro average", "macro_avg"),
                                                           ("weighted average", "weighted_avg"))]
    averages = [(name, avg) for name, avg in averages if isinstance(avg, Mapping)]
    if averages:
        parts.append(_table(["average", "precision", "recall", "F1"],
                            [[name, _fmt(a.get("precision")), _fmt(a.get("recall")), _fmt(a.get("f1"))]
                             for name, a in averages]))

    per_class = metrics.get("per_class")
    if isinstance(per_class, Mapping) and per_class:
        keys = sorted(per_class, key=_class_key)
        rows, f1s = [], []
        for key in keys:
            m = per_class[key] if isinstance(per_class[key], Mapping) else {}
            rows.append([key, _fmt(m.get("precision")), _fmt(m.get("recall")), _fmt(m.get("f1")),
                         _count(m.get("support"))])
            f1s.append(_num(m.get("f1")))
        word = _class_word([str(k) for k in keys])
        parts.append("<h3>Per class</h3>" + _table([word, "precision", "recall", "F1", "support"], rows))
        if any(f is not None for f in f1s):
            worst = min((i for i, f in enumerate(f1s) if f is not None), key=lambda i: f1s[i])
            parts.append(_note(f"Weakest {word}: {keys[worst]} (F1 {_fmt(f1s[worst])})."))
    else:
        parts.append(_note("No per-class metrics available."))

    parts.append(_figure(EVAL_FIGURES[1], figures))
    parts.append(_confusion_table(metrics.get("confusion_matrix"), classes))
    parts.append(_calibration(metrics, figures))
    return "\n".join(parts)


def _calibration(metrics: Mapping, figures: Mapping) -> str:
    """How far the confidence can be trusted: temperature, ECE, NLL, risk-coverage, thresholds."""
    test = metrics.get("calibration")
    fit = metrics.get("calibration_fit") if isinstance(metrics.get("calibration_fit"), Mapping) else {}
    parts = ["<h3>Calibration</h3>"]
    if not isinstance(test, Mapping):
        return parts[0] + _note("No calibration metrics for this run.")
    rows: list[tuple[Any, Any]] = []
    if fit.get("temperature") is not None:
        val = fit.get("validation") if isinstance(fit.get("validation"), Mapping) else {}
        rows.append(("Temperature (fitted on the validation split)", _fmt(fit.get("temperature"))))
        rows.append(("Validation NLL before / after", f"{_fmt(val.get('nll_before'))} / {_fmt(val.get('nll_after'))}"))
        rows.append(("Validation ECE before / after", f"{_pct(val.get('ece_before'))} / {_pct(val.get('ece_after'))}"))
    else:
        rows.append(("Temperature", "not calibrated"))
    rows.append((f"Test ECE ({_plain(test.get('ece_bins', 15))} bins)", _pct(test.get("ece"))))
    rows.append(("Test NLL", _fmt(test.get("nll"))))
    rows.append(("Test AURC (mean error over all coverages)", _pct(test.get("aurc"), 3)))
    at = test.get("accuracy_at_coverage")
    if isinstance(at, Mapping):
        for cov, acc in at.items():
            try:
                share = _pct(float(cov), 0)
            except (TypeError, ValueError):
                share = str(cov)
            rows.append((f"Accuracy of the {share} most confident answers", _pct(acc, 3)))
    rows.append(("Answers with confidence >= 99%", _pct(test.get("share_confidence_at_least_99"))))
    if test.get("uncertain_below") is not None:
        rows.append(("Uncertain below (the model's threshold)", _fmt(test.get("uncertain_below"))))
    if test.get("not_digit_above") is not None:
        rows.append(("Not a digit above (normalised entropy)", _fmt(test.get("not_digit_above"))))
    if test.get("flagged") is not None:
        rows.append(("Test digits flagged (uncertain / not a digit / either)",
                     f"{_pct(test.get('flagged_uncertain'))} / {_pct(test.get('flagged_not_digit'))} / "
                     f"{_pct(test.get('flagged'))}"))
        rows.append(("Accuracy of the answers not flagged", _pct(test.get("accuracy_not_flagged"), 3)))
    parts.append(_kv_table(rows))
    parts += [_figure(info, figures) for info in CALIBRATION_FIGURES]
    return "\n".join(parts)


def _confusion_table(cm: Any, classes: Sequence[str] | None = None) -> str:
    try:
        rows = [[int(v) for v in row] for row in cm]
    except (TypeError, ValueError):
        return _note("No confusion matrix counts available.")
    if not rows or any(len(row) != len(rows) for row in rows):
        return _note("No confusion matrix counts available.")
    k = len(rows)
    names = [str(c) for c in classes] if classes is not None and len(classes) == k else [str(i) for i in range(k)]
    worst, worst_count = None, 0
    for t in range(k):
        for p in range(k):
            if t != p and rows[t][p] > worst_count:
                worst, worst_count = (t, p), rows[t][p]
    head = "<th>true \\ predicted</th>" + "".join(f"<th>{_e(names[p])}</th>" for p in range(k))
    body = []
    for t, row in enumerate(rows):
        cells = []
        for p, v in enumerate(row):
            cls = ' class="diag"' if t == p else (' class="worst"' if (t, p) == worst else "")
            cells.append(f"<td{cls}>{v:,}</td>")
        body.append(f"<tr><th>{_e(names[t])}</th>{''.join(cells)}</tr>")
    out = ("<h3>Confusion matrix counts</h3>"
           f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')
    if worst is not None:
        out += _note(f"Most frequent confusion: true {names[worst[0]]} predicted as {names[worst[1]]} "
                     f"({worst_count:,} images, highlighted).")
    return out


def _predictions(figures: Mapping) -> str:
    parts = [_figure(info, figures) for info in EVAL_FIGURES[2:]]
    known = {info.name for info in EXPLORE_FIGURES + EVAL_FIGURES + CALIBRATION_FIGURES}
    others = [name for name in figures if name not in known]
    if others:
        # Figures this module has no caption for are still shown.
        parts.append("<h3>Other figures</h3>")
        parts += [_figure(FigureInfo(name, name, ""), figures) for name in others]
    return "\n".join(parts)


def _timings(timings: Mapping[str, Any]) -> str:
    if not timings:
        return _note("No timings recorded.")
    # Steps only: a "total" entry is the total row, and ratios such as
    # "outside_fit_share" are not seconds, so neither is summed as a step.
    values = [(name, _num(v)) for name, v in timings.items()
              if name != "total" and not str(name).endswith(("_share", "_fraction", "_ratio"))]
    if not values:
        return _note("No timings recorded.")
    total = _num(timings.get("total"))
    if total is None:
        total = sum(v for _, v in values if v is not None)
    rows = [[name, _seconds(v), "—" if v is None or total <= 0 else f"{100 * v / total:.1f}%"]
            for name, v in values]
    rows.append(["total", _seconds(total), ""])
    classes = [""] * (len(rows) - 1) + ["total"]
    return _table(["step", "time", "share"], rows, row_classes=classes)


def _config(config: Mapping) -> str:
    if not config:
        return _note("No configuration recorded.")
    return _kv_table((k, _plain(v)) for k, v in config.items())


def _reproduce(command: str, config: Mapping, extra: Mapping) -> str:
    if command:
        version = config.get("version") or "the same version"
        parts = [f"<pre><code>{_e(command)}</code></pre>",
                 _note(f"Run from the same working directory with digitlab {version}; "
                       f"the seed in the configuration makes the run repeatable.")]
    else:
        parts = [_note("The command line was not recorded.")]
    plain = []
    for key, value in extra.items():
        if key in _EXTRA_KEYS:
            continue
        if isinstance(value, Mapping):
            parts.append(f"<h3>{_e(str(key).replace('_', ' ').capitalize())}</h3>"
                         + _kv_table((k, _plain(v)) for k, v in value.items()))
        else:
            plain.append((key, _plain(value)))
    if plain:
        parts.append("<h3>More details</h3>" + _kv_table(plain))
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
        "evaluation": _evaluation(metrics, figures, config.get("classes")),
        "predictions": _predictions(figures),
        "timings": _timings(timings),
        "config": _config(config),
        "reproduce": _reproduce(command, config, extra),
    }
    nav = "".join(f'<a href="#{sid}">{_e(title)}</a>' for sid, title in SECTIONS)
    sections = "\n".join(_section(sid, title, bodies[sid]) for sid, title in SECTIONS)
    status = " (INTERRUPTED)" if interrupted else ""
    version = config.get("version") or "unknown"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>digitlab report: {_e(run_name)}{status}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<header>
<h1>digitlab report: {_e(run_name)}{status}</h1>
<p class="sub">Preset {_e(config.get("preset", "—"))} · test accuracy {_e(_pct(metrics.get("accuracy_score",
    metrics.get("test_accuracy"))))} · digitlab {_e(version)}</p>
<nav>{nav}</nav>
</header>
{sections}
<footer>Written by digitlab {_e(version)}. This file is self-contained: it needs no network.</footer>
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
