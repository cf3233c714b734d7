"""The HTML report: complete, self-contained, escaped, and robust to missing pieces."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from digitlab.report import figures as plots
from digitlab.report import sections as report

SECTION_IDS = ["summary", "data", "model", "training", "evaluation", "predictions", "timings", "config",
               "reproduce"]
ALL_FIGURES = [f.name for f in plots.EXPLORE_FIGURES + plots.EVAL_FIGURES]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class StrictParser(HTMLParser):
    """Fails on mismatched tags; collects ids, src/href and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.ids: list[str] = []
        self.urls: list[str] = []
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        for key in ("src", "href"):
            if key in attrs:
                self.urls.append(attrs[key])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        assert self.stack, f"</{tag}> without an open tag"
        assert self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1]}>"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(text: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(text)
    parser.close()
    assert parser.stack == [], f"unclosed tags: {parser.stack}"
    return parser


def make_png(path: Path, color: str) -> Path:
    Image.new("RGB", (40, 30), color).save(path, format="PNG")
    return path


@pytest.fixture
def figures(tmp_path) -> dict[str, Path]:
    fig_dir = tmp_path / "figs"
    fig_dir.mkdir()
    colors = ["red", "green", "blue", "white", "black", "gray", "yellow", "purple"]
    return {name: make_png(fig_dir / name, c) for name, c in zip(ALL_FIGURES, colors)}


def metrics(**changes):
    per_class = {str(d): {"precision": 0.98 + d / 1000, "recall": 0.97, "f1": 0.975 + d / 2000,
                          "support": 1000} for d in range(10)}
    cm = [[980 if t == p else (2 if p == (t + 1) % 10 else 0) for p in range(10)] for t in range(10)]
    cm[4][9] = 12
    base = {
        "test_loss": 0.0312, "test_accuracy": 0.98910001, "accuracy_score": 0.9891, "n_test": 10000,
        "per_class": per_class,
        "macro_avg": {"precision": 0.989, "recall": 0.989, "f1": 0.989},
        "weighted_avg": {"precision": 0.989, "recall": 0.989, "f1": 0.989},
        "confusion_matrix": cm,
        "confusion_matrix_normalized": [[v / 1000 for v in row] for row in cm],
        "params": {"total": 121930, "trainable": 121930}, "interrupted": False,
    }
    base.update(changes)
    return base


HISTORY = {"accuracy": [0.91, 0.97], "val_accuracy": [0.96, 0.975], "loss": [0.3, 0.1],
           "val_loss": [0.14, 0.09], "epoch_seconds": [8.1, 7.9]}
TIMINGS = {"load_data": 0.4, "explore_figures": 1.2, "train": 80.1, "evaluate": 1.0, "figures": 2.0,
           "report": 0.1}
SUMMARY = "Model: \"seed\"\n┏━━━━━━━━┓\n┃ Layer  ┃\n Total params: 121,930\n"


def config(**changes):
    base = {"preset": "seed", "epochs": 2, "batch_size": 128, "seed": 42, "val_fraction": 0.2, "limit": None,
            "version": "0.1.0"}
    base.update(changes)
    return base


def build(tmp_path, figures, **changes) -> tuple[Path, str]:
    kwargs = dict(config=config(), metrics=metrics(), history=HISTORY, model_summary=SUMMARY, figures=figures,
                  timings=TIMINGS, command="digitlab run --epochs 2", data_source="packaged MNIST (offline)",
                  extra={"n_train": 48000, "n_val": 12000})
    kwargs.update(changes)
    run_dir = tmp_path / "seed-20240101-120000"
    path = report.write_report(run_dir, **kwargs)
    return path, path.read_text(encoding="utf-8")


def test_full_report(tmp_path, figures):
    path, text = build(tmp_path, figures)
    assert path == tmp_path / "seed-20240101-120000" / "report.html"
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temp files left
    parsed = parse(text)
    for sid in SECTION_IDS:
        assert sid in parsed.ids
    assert text.count("data:image/png;base64,") == len(figures)
    assert "seed-20240101-120000" in text
    assert "98.91%" in text  # both accuracies, as percentages
    assert "model.evaluate" in text and "accuracy_score" in text
    assert "agree" in text
    assert "INTERRUPTED" not in text
    assert "121,930" in text
    assert "48,000" in text and "12,000" in text and "10,000" in text
    assert "digitlab run --epochs 2" in text
    assert "┏━━━━━━━━┓" in text  # Keras' box drawing survives (UTF-8)
    assert '<meta name="viewport"' in text
    assert "<pre>" in text


def test_self_contained(tmp_path, figures):
    _, text = build(tmp_path, figures)
    parsed = parse(text)
    for url in parsed.urls:
        assert url.startswith(("#", "data:image/png;base64,")), url
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "<script" not in text.lower()
    assert "<link" not in text.lower()
    assert "@import" not in text and "url(" not in text


def test_accuracies_disagree(tmp_path, figures):
    _, text = build(tmp_path, figures, metrics=metrics(test_accuracy=0.9891, accuracy_score=0.9791))
    assert "98.91%" in text and "97.91%" in text
    assert "differ by 1.00 percentage points" in text


def test_escaping(tmp_path, figures):
    evil = "<script>alert('x')</script>"
    _, text = build(tmp_path, figures, config=config(note=evil, preset="<b>seed</b>"),
                    command=f"digitlab run --name '{evil}'", data_source=evil, extra={"comment": evil},
                    model_summary=evil)
    assert "<script>" not in text
    assert "<b>seed</b>" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "&lt;b&gt;seed&lt;/b&gt;" in text
    parse(text)


def test_interrupted_banner(tmp_path, figures):
    _, text = build(tmp_path, figures, metrics=metrics(interrupted=True))
    assert "INTERRUPTED" in text
    assert 'class="banner"' in text
    _, text = build(tmp_path, figures, config=config(interrupted=True))
    assert 'class="banner"' in text


def test_evaluate_only_report(tmp_path, figures):
    figures = {k: v for k, v in figures.items() if k != "training_curves.png"}
    _, text = build(tmp_path, figures, history=None, model_summary=None, timings={}, extra=None)
    parsed = parse(text)
    assert all(sid in parsed.ids for sid in SECTION_IDS)
    assert text.count("data:image/png;base64,") == len(figures)
    assert "No training history" in text


def test_missing_and_broken_pieces(tmp_path, figures):
    figures = dict(figures)
    figures["confusion_matrix.png"] = tmp_path / "does-not-exist.png"
    (tmp_path / "bad.png").write_text("not a png")
    figures["test_predictions.png"] = tmp_path / "bad.png"
    del figures["confident_mistakes.png"]
    figures["extra_plot.png"] = make_png(tmp_path / "extra_plot.png", "orange")  # unknown names still shown
    sparse = {"test_accuracy": 0.5}  # no accuracy_score, per-class, matrix or params
    history = {"loss": [0.5], "accuracy": [0.8]}  # one epoch, no validation, no timing
    _, text = build(tmp_path, figures, metrics=sparse, history=history, command="", config={})
    parse(text)
    assert text.count("data:image/png;base64,") == len(figures) - 2
    assert "could not be read" in text
    assert "not a PNG" in text
    assert "was not produced" in text
    assert "extra_plot.png" in text
    assert "50.00%" in text


def test_numbers_in_odd_shapes(tmp_path, figures):
    np = pytest.importorskip("numpy")
    history = {k: np.asarray(v, dtype=np.float32) for k, v in HISTORY.items()}
    m = metrics(test_accuracy=np.float32(0.9891), n_test=np.int64(10000), test_loss=float("nan"),
                confusion_matrix=np.eye(10, dtype=np.int64) * 1000)
    _, text = build(tmp_path, figures, history=history, metrics=m)
    parse(text)
    assert "agree" in text
    assert "Best validation accuracy: 97.50% at epoch 2" in text


def test_timings_total(tmp_path, figures):
    _, text = build(tmp_path, figures, timings={"train": 80.0, "evaluate": 20.0})
    assert "100.0 s (1 min 40 s)" in text and "80.0%" in text and "20.00 s" in text


def test_overwrites_atomically(tmp_path, figures):
    path, _ = build(tmp_path, figures)
    path2, text = build(tmp_path, figures, command="digitlab run --epochs 3")
    assert path2 == path and "--epochs 3" in text
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]


def test_timings_with_total_and_ratios(tmp_path, figures):
    timings = {"train": 80.0, "evaluate": 10.0, "total": 100.0, "outside_fit_share": 0.2}
    _, text = build(tmp_path, figures, timings=timings)
    assert "100.0 s (1 min 40 s)" in text  # the given total, not the 90 s sum
    assert "outside_fit_share" not in text


def test_pipeline_extras(tmp_path, figures):
    m = metrics(epochs_planned=10, epochs_completed=7, best_epoch=6, train_seconds=61.0, errors=109,
                n_train=48000, n_val=12000)
    env = {"python": "3.11.9", "tensorflow": "2.17.0", "cpu_count": 2}
    _, text = build(tmp_path, figures, metrics=m, extra={"environment": env},
                    model_summary="Model \x1b[1mseed\x1b[0m\x07")
    parse(text)
    assert "7 of 10" in text and "109" in text and "48,000" in text
    assert "Environment" in text and "2.17.0" in text
    assert "\x1b" not in text and "\x07" not in text and "Model seed" in text


def test_calibration_in_the_evaluation_section(tmp_path, figures):
    from digitlab.report.calibration_figures import CALIBRATION_FIGURES

    fig_dir = tmp_path / "figs"
    extra = {info.name: make_png(fig_dir / info.name, "orange") for info in CALIBRATION_FIGURES}
    m = metrics(calibration={"ece": 0.0021, "ece_bins": 15, "nll": 0.0128, "aurc": 0.00005,
                             "accuracy_at_coverage": {"0.95": 0.99968, "0.98": 0.99959, "0.99": 0.9989},
                             "share_confidence_at_least_99": 0.95, "uncertain_below": 0.52, "not_digit_above": 0.76,
                             "flagged_uncertain": 0.0016, "flagged_not_digit": 0.0004, "flagged": 0.0016,
                             "accuracy_not_flagged": 0.9971},
                calibration_fit={"temperature": 1.2615, "validation": {"nll_before": 0.0184, "nll_after": 0.0174,
                                                                       "ece_before": 0.0025, "ece_after": 0.0015}})
    _, text = build(tmp_path, {**figures, **extra}, metrics=m)
    parse(text)
    evaluation = text[text.index('<section id="evaluation">'):text.index('<section id="predictions">')]
    for needle in ("Calibration", "1.2615", "0.21%", "Accuracy of the 95% most confident answers", "99.968%",
                   "Reliability diagram", "Risk-coverage curve", "0.5200", "0.16% / 0.04% / 0.16%"):
        assert needle in evaluation, needle
    assert evaluation.count("data:image/png;base64,") == 1 + len(CALIBRATION_FIGURES)  # + the confusion matrix
    assert "Other figures" not in text  # the report knows the calibration figures
    _, plain = build(tmp_path / "old", figures)
    assert "No calibration metrics for this run." in plain
