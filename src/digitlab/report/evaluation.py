"""The report's Evaluation section: test scores, per-class metrics, the confusion matrix and
calibration, from a run's metrics.json (`evaluate`, `calibration`). Like the rest of the report
(`report`), it escapes every value and turns a missing piece into a short note.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import html as h
from .calibration_figures import CALIBRATION_FIGURES
from .figures import EVAL_FIGURES


def _class_key(key: Any) -> tuple[int, Any]:
    try:
        return (0, int(key))
    except (TypeError, ValueError):
        return (1, str(key))


def _class_word(keys: Sequence[str]) -> str:
    return "digit" if all(len(k) == 1 and k.isdigit() for k in keys) else "class"


def evaluation_section(metrics: Mapping, figures: Mapping, classes: Sequence[str] | None = None) -> str:
    """The report's Evaluation section: overall and per-class scores, the confusion matrix (figure and
    counts) and how far the confidence can be trusted (calibration)."""
    parts = []
    overall = [
        ("Test loss (model.evaluate)", h.fmt(metrics.get("test_loss"))),
        ("Test accuracy (model.evaluate)", h.pct(metrics.get("test_accuracy"))),
        ("Test accuracy (accuracy_score)", h.pct(metrics.get("accuracy_score"))),
        ("Test images", h.count(metrics.get("n_test"))),
    ]
    if metrics.get("errors") is not None:
        overall.append(("Misclassified test images", h.count(metrics["errors"])))
    parts.append("<h3>Overall</h3>" + h.kv_table(overall))
    averages = [(name, metrics.get(key)) for name, key in (("macro average", "macro_avg"),
                                                           ("weighted average", "weighted_avg"))]
    averages = [(name, avg) for name, avg in averages if isinstance(avg, Mapping)]
    if averages:
        parts.append(h.table(["average", "precision", "recall", "F1"],
                            [[name, h.fmt(a.get("precision")), h.fmt(a.get("recall")), h.fmt(a.get("f1"))]
                             for name, a in averages]))

    per_class = metrics.get("per_class")
    if isinstance(per_class, Mapping) and per_class:
        keys = sorted(per_class, key=_class_key)
        rows, f1s = [], []
        for key in keys:
            m = per_class[key] if isinstance(per_class[key], Mapping) else {}
            rows.append([key, h.fmt(m.get("precision")), h.fmt(m.get("recall")), h.fmt(m.get("f1")),
                         h.count(m.get("support"))])
            f1s.append(h.num(m.get("f1")))
        word = _class_word([str(k) for k in keys])
        parts.append("<h3>Per class</h3>" + h.table([word, "precision", "recall", "F1", "support"], rows))
        if any(f is not None for f in f1s):
            worst = min((i for i, f in enumerate(f1s) if f is not None), key=lambda i: f1s[i])
            parts.append(h.note(f"Weakest {word}: {keys[worst]} (F1 {h.fmt(f1s[worst])})."))
    else:
        parts.append(h.note("No per-class metrics available."))

    parts.append(h.figure(EVAL_FIGURES[1], figures))
    parts.append(_confusion_table(metrics.get("confusion_matrix"), classes))
    parts.append(_calibration(metrics, figures))
    return "\n".join(parts)


def _calibration(metrics: Mapping, figures: Mapping) -> str:
    """How far the confidence can be trusted: temperature, ECE, NLL, risk-coverage, thresholds."""
    test = metrics.get("calibration")
    fit = metrics.get("calibration_fit") if isinstance(metrics.get("calibration_fit"), Mapping) else {}
    parts = ["<h3>Calibration</h3>"]
    if not isinstance(test, Mapping):
        return parts[0] + h.note("No calibration metrics for this run.")
    rows: list[tuple[Any, Any]] = []
    if fit.get("temperature") is not None:
        val = fit.get("validation") if isinstance(fit.get("validation"), Mapping) else {}
        rows.append(("Temperature (fitted on the validation split)", h.fmt(fit.get("temperature"))))
        rows.append(("Validation NLL before / after", f"{h.fmt(val.get('nll_before'))} / {h.fmt(val.get('nll_after'))}"))
        rows.append(("Validation ECE before / after", f"{h.pct(val.get('ece_before'))} / {h.pct(val.get('ece_after'))}"))
    else:
        rows.append(("Temperature", "not calibrated"))
    rows.append((f"Test ECE ({h.plain(test.get('ece_bins', 15))} bins)", h.pct(test.get("ece"))))
    rows.append(("Test NLL", h.fmt(test.get("nll"))))
    rows.append(("Test AURC (mean error over all coverages)", h.pct(test.get("aurc"), 3)))
    at = test.get("accuracy_at_coverage")
    if isinstance(at, Mapping):
        for cov, acc in at.items():
            try:
                share = h.pct(float(cov), 0)
            except (TypeError, ValueError):
                share = str(cov)
            rows.append((f"Accuracy of the {share} most confident answers", h.pct(acc, 3)))
    rows.append(("Answers with confidence >= 99%", h.pct(test.get("share_confidence_at_least_99"))))
    if test.get("uncertain_below") is not None:
        rows.append(("Uncertain below (the model's threshold)", h.fmt(test.get("uncertain_below"))))
    if test.get("not_digit_above") is not None:
        rows.append(("Not a digit above (normalised entropy)", h.fmt(test.get("not_digit_above"))))
    if test.get("flagged") is not None:
        rows.append(("Test digits flagged (uncertain / not a digit / either)",
                     f"{h.pct(test.get('flagged_uncertain'))} / {h.pct(test.get('flagged_not_digit'))} / "
                     f"{h.pct(test.get('flagged'))}"))
        rows.append(("Accuracy of the answers not flagged", h.pct(test.get("accuracy_not_flagged"), 3)))
    parts.append(h.kv_table(rows))
    parts += [h.figure(info, figures) for info in CALIBRATION_FIGURES]
    return "\n".join(parts)


def _confusion_table(cm: Any, classes: Sequence[str] | None = None) -> str:
    try:
        rows = [[int(v) for v in row] for row in cm]
    except (TypeError, ValueError):
        return h.note("No confusion matrix counts available.")
    if not rows or any(len(row) != len(rows) for row in rows):
        return h.note("No confusion matrix counts available.")
    k = len(rows)
    names = [str(c) for c in classes] if classes is not None and len(classes) == k else [str(i) for i in range(k)]
    worst, worst_count = None, 0
    for t in range(k):
        for p in range(k):
            if t != p and rows[t][p] > worst_count:
                worst, worst_count = (t, p), rows[t][p]
    head = "<th>true \\ predicted</th>" + "".join(f"<th>{h.esc(names[p])}</th>" for p in range(k))
    body = []
    for t, row in enumerate(rows):
        cells = []
        for p, v in enumerate(row):
            cls = ' class="diag"' if t == p else (' class="worst"' if (t, p) == worst else "")
            cells.append(f"<td{cls}>{v:,}</td>")
        body.append(f"<tr><th>{h.esc(names[t])}</th>{''.join(cells)}</tr>")
    out = ("<h3>Confusion matrix counts</h3>"
           f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')
    if worst is not None:
        out += h.note(f"Most frequent confusion: true {names[worst[0]]} predicted as {names[worst[1]]} "
                     f"({worst_count:,} images, highlighted).")
    return out
