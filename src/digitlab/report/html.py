"""HTML building blocks of the report: escaping, number formats, tables, inlined figures, the CSS.

Everything a report section needs to turn values into safe HTML, kept apart
from what the sections say (`report.py`). Every value is escaped unless it is
`Raw` (HTML built here); a missing or non-finite number prints as a dash.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .figurekit import FigureInfo

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

CSS = """
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


class Raw(str):
    """HTML we built ourselves, to be inserted without escaping."""


def esc(value: Any) -> str:
    """Escape anything for HTML text or a quoted attribute (Raw passes through)."""
    if isinstance(value, Raw):
        return value
    # Control characters (ANSI colour codes in a model summary, say) are not
    # allowed in HTML; drop them rather than emit an invalid document.
    return html.escape(_CONTROL.sub("", str(value)), quote=True)


def num(value: Any) -> float | None:
    """A finite float, or None for missing / non-numeric / NaN values."""
    if value is None or isinstance(value, (bool, str)):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def integer(value: Any) -> int | None:
    v = num(value)
    return int(round(v)) if v is not None else None


def fmt(value: Any, digits: int = 4) -> str:
    v = num(value)
    return "—" if v is None else f"{v:.{digits}f}"


def pct(value: Any, digits: int = 2) -> str:
    v = num(value)
    return "—" if v is None else f"{100 * v:.{digits}f}%"


def count(value: Any) -> str:
    v = integer(value)
    return "—" if v is None else f"{v:,}"


def seconds(value: Any) -> str:
    v = num(value)
    if v is None:
        return "—"
    if v < 60:
        return f"{v:.2f} s"
    minutes, secs = divmod(round(v), 60)
    return f"{v:.1f} s ({minutes} min {secs} s)"


def plain(value: Any) -> str:
    """A config/extra value as readable text (JSON for anything but strings)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


_TEXT = ' class="text"'


def table(headers: Sequence[Any], rows: Iterable[Sequence[Any]], *, cls: str = "",
           row_classes: Sequence[str] | None = None, text_cols: Iterable[int] = (0,)) -> str:
    """A table in a horizontally scrolling wrapper (phones). Cells are escaped."""
    text_cols = set(text_cols)
    head = "".join(f'<th{_TEXT if i in text_cols else ""}>{esc(h)}</th>' for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        rc = row_classes[r] if row_classes and r < len(row_classes) and row_classes[r] else ""
        cells = "".join(f'<td{_TEXT if i in text_cols else ""}>{esc(c)}</td>' for i, c in enumerate(row))
        body.append(f'<tr class="{esc(rc)}">{cells}</tr>' if rc else f"<tr>{cells}</tr>")
    cls_attr = f' class="{esc(cls)}"' if cls else ""
    return (f'<div class="table-wrap"><table{cls_attr}><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def kv_table(items: Iterable[tuple[Any, Any]]) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items)
    return f'<div class="table-wrap"><table class="kv"><tbody>{rows}</tbody></table></div>'


def first(key: str, *sources: Mapping[str, Any] | None) -> Any:
    for source in sources:
        if source and source.get(key) is not None:
            return source[key]
    return None


def figure(info: FigureInfo, figures: Mapping[str, Any]) -> str:
    """An inlined <figure>, or a note saying why the figure is missing."""
    path = figures.get(info.name)
    if path is None:
        return f"<h3>{esc(info.title)}</h3>" + note(f"Figure {info.name} was not produced for this run.")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return f"<h3>{esc(info.title)}</h3>" + note(f"Figure {info.name} could not be read: {exc.strerror or exc}.")
    if not data.startswith(PNG_SIGNATURE):
        return f"<h3>{esc(info.title)}</h3>" + note(f"Figure {info.name} is not a PNG file; skipped.")
    b64 = base64.b64encode(data).decode("ascii")
    anchor = "fig-" + "".join(c if c.isalnum() else "-" for c in Path(info.name).stem)
    return (f'<figure id="{esc(anchor)}"><h3>{esc(info.title)}</h3>'
            f'<img src="data:image/png;base64,{b64}" alt="{esc(info.title)}">'
            f"<figcaption>{esc(info.caption)}</figcaption></figure>")


def section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{esc(title)}</h2>\n{body}\n</section>'
