"""What the command line prints beyond one line per step: a run's summary, class counts, a data
set, an export, one shown test image, and a usage error as one line. Plain text on stdout (errors on stderr), for people and for logs.
"""

from __future__ import annotations

from typing import Any

import typer


def say(msg: str) -> None:
    typer.echo(msg)


def print_run_summary(result: Any, *, what: str) -> None:
    m = result.metrics
    if result.interrupted:
        if result.stopped_in == "evaluation":
            say(f"Interrupted during evaluation; the trained model is saved in {result.run_dir} "
                f"and set as the latest run (metrics.json says evaluation: interrupted).")
            say(f"Finish it with: digitlab evaluate {result.run_dir}")
        elif m.get("epochs_completed"):
            say(f"Interrupted after {m['epochs_completed']}/{m['epochs_planned']} epochs; "
                f"model saved in {result.run_dir} (marked interrupted in metrics.json).")
            say(f"Evaluate it with: digitlab evaluate {result.run_dir}")
        else:
            say("Interrupted before the first epoch finished; nothing was saved.")
        return
    members = m.get("ensemble") if isinstance(m.get("ensemble"), list) else None
    if members:
        say(f"{what} finished: {len(members)} models voting")
        for i, e in enumerate(members):
            say(f"  member {i}: {e.get('model')} (preset {e.get('preset')}), test accuracy {_pct(e.get('test_accuracy'))}")
    else:
        say(f"{what} finished: preset {m.get('preset')}, {m.get('epochs_completed', '?')} epochs"
            + (f" in {m['train_seconds']:.1f} s" if m.get("train_seconds") is not None else ""))
    say(f"  test accuracy   {m['test_accuracy'] * 100:.2f}%  (model.evaluate)")
    say(f"  accuracy_score  {m['accuracy_score'] * 100:.2f}%  (sklearn, on argmax predictions)")
    say(f"  test loss       {m['test_loss']:.4f}")
    if m.get("device"):
        say(f"  trained on      {m['device']}")
    finetune = m.get("finetune")
    if isinstance(finetune, dict):
        from ..models.finetune import TEST_SET_NAMES, budget_line

        for name, entry in (finetune.get("test_sets") or {}).items():
            say(f"  fine-tuned: {TEST_SET_NAMES.get(name, name):<24} {_pct(entry.get('before'))} -> "
                f"{_pct(entry.get('after'))}  ({entry.get('n', 0):,} images)")
        if isinstance(finetune.get("mnist_validation"), dict):
            say(f"  {budget_line(finetune['mnist_validation'])}")
    say(f"  run directory   {result.run_dir}")
    if result.report is not None:
        say(f"  report          {result.report}")


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def print_comparison(c: Any) -> None:
    """A `report.compare.Comparison` as a table, the verdict, and the files written."""
    a, b = c.a, c.b
    width = max(12, len(a.name), len(b.name))
    mb = lambda n: "-" if n is None else f"{n / 1e6:.2f} MB"  # noqa: E731
    secs = lambda v: "-" if v is None else f"{v:.1f} s"  # noqa: E731
    rows = [("test accuracy", _pct(a.accuracy), _pct(b.accuracy)), ("errors", f"{a.errors:,}", f"{b.errors:,}"),
            ("macro F1", f"{a.macro_f1:.4f}", f"{b.macro_f1:.4f}"), ("ECE", f"{a.ece:.4f}", f"{b.ece:.4f}"),
            ("model file", mb(a.model_bytes), mb(b.model_bytes)),
            ("training", secs(a.train_seconds), secs(b.train_seconds)),
            ("ms per image", f"{a.predict_ms:.3f}", f"{b.predict_ms:.3f}")]
    say(f"{len(c.y_true):,} test images ({c.data_source})")
    say(f"{'':<16}{a.name:>{width}}  {b.name:>{width}}")
    for label, va, vb in rows:
        say(f"{label:<16}{va:>{width}}  {vb:>{width}}")
    say(f"F1 per class    {' '.join(f'{k}:{b.f1[k] - a.f1[k]:+.3f}' for k in c.classes[:12])}  (B - A)")
    say(f"they disagree on {c.counts.disagree:,} images; {c.verdict}")
    for path in c.files.values():
        say(f"wrote {path}")


def print_class_counts(classes: list[str], train: list[int], test: list[int]) -> None:
    """Images per class and split: one column per class (digits), or one line per class (others)."""
    if all(len(c) <= 6 for c in classes) and len(classes) <= 12:
        say("class      " + " ".join(f"{c:>6}" for c in classes))
        for split, counts in (("train", train), ("test", test)):
            say(f"{split:<10} " + " ".join(f"{n:>6d}" for n in counts))
        return
    width = min(24, max(len(c) for c in classes))
    say(f"{'class':<{width}}  {'train':>7}  {'test':>7}")
    for name, a, b in zip(classes, train, test):
        say(f"{name:<{width}}  {a:>7,}  {b:>7,}")


def usage_error_line(exc: Any) -> str:
    """A usage error (bad option value, unknown command) as one line, with where to look."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return f"error: {message}{where}"


def print_explored(counts: dict[str, list[int]], figures: dict[str, Any], source: str) -> None:
    """`digitlab explore`: the totals, the counts per class, the figures written."""
    say(f"{sum(counts['train']):,} training and {sum(counts['test']):,} test images, 28x28 uint8; {source}")
    print_class_counts(counts["classes"], counts["train"], counts["test"])
    for path in figures.values():
        say(f"wrote {path}")


def print_shown(shown: Any) -> None:
    """`digitlab show`: the test image's true label, the answer and the top 3."""
    names = shown.classes or tuple(str(d) for d in range(10))
    say(f"test image #{shown.index}: true label {names[shown.true]}, predicted {names[shown.predicted]} with "
        f"{shown.confidence * 100:.1f}% confidence" + ("" if shown.predicted == shown.true else "  <- WRONG"))
    say("top-3: " + ", ".join(f"{names[c]} ({p * 100:.1f}%)" for c, p in shown.top3))
    if shown.figure is not None:
        say(f"wrote {shown.figure}")


def print_dataset(d: Any) -> None:
    """`digitlab data`: what would be trained on, what was verified, what was skipped."""
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


def print_export(path: Any, fmt: str, quantize: str) -> None:
    """`digitlab export`: the file, its size, the parity check against Keras, the metadata."""
    from ..export.exporter import read_metadata

    meta = read_metadata(path)
    size = meta.get("file", {}).get("bytes")
    check = meta.get("export_check") or {}
    say(f"wrote {path}" + (f" ({size / 1e6:.2f} MB)" if size else "")
        + f": {fmt}" + ("" if quantize == "none" else f", {quantize}"))
    if check:
        say(f"  check vs Keras on {check['images']} {check.get('inputs', 'inputs')}: max |dp| {check['max_abs_diff']:.1e}, "
            f"same top class {check['argmax_agreement'] * 100:.1f}%")
    say(f"  metadata (with the model's config) in {path.name}.json")


def print_index(path: Any, index: Any) -> None:
    """`digitlab neighbours`: the index file, its size and whether it holds every training image."""
    say(f"{path}: {index.size:,} training images, {index.dims} dimensions"
        + (f" (the first {index.per_class:,} of each class)" if index.per_class else "") + "; current")


def print_ray_summary(summary: dict[str, Any]) -> None:
    """`predict --engine ray`: rows, format, where, how fast, how many errors."""
    rate = f" ({summary['images_per_s']:,.0f} images/s)" if summary["images_per_s"] else ""
    say(f"wrote {summary['images']:,} rows ({summary['format']}) to {summary['out']} in {summary['seconds']:.1f} s"
        f"{rate}; {summary['errors']:,} errors")
