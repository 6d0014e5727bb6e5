"""One self-contained HTML report: tables, bar charts, precision per layer, Pareto plots.

The page is built from plain rows (lists of dicts) that the stages already produce:

| field         | rows (keys used)                                                            |
|---------------|-----------------------------------------------------------------------------|
| ``summary``   | ``analysis.compare.rows_to_json`` rows: model, bytes, size_ratio, accuracy, … |
| ``sensitivity`` | ranked layers: ``layer``, ``op_type``, ``drop`` (metric lost), ``suggestion`` |
| ``sqnr``      | ``tensor``, ``kind`` (weight / activation), ``sqnr_db``                     |
| ``precision`` | ``layer``, ``op_type``, ``precision`` (see :mod:`edgequant.report.precision`) |
| ``candidates``| ``name``, ``bytes``, ``metric``, ``latency_ms`` (every mix tried)            |

Charts are inline SVG (matplotlib); the only script makes tables sortable. Nothing is
fetched: the file opens offline. Text from models (node names) is HTML-escaped.
"""

from __future__ import annotations

import html
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgequant.report import charts
from edgequant.report.render import format_cell, to_jsonable

_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px
solid #ddd;padding-bottom:.2em}table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left}th{background:#f4f4f4;
cursor:pointer}td[data-v]{text-align:right}figure{margin:1em 0}
.sub{color:#666}.note{color:#8a5a00}.tag{display:inline-block;padding:0 .4em;border-radius:3px;
color:#fff}.charts{display:flex;flex-wrap:wrap;gap:1em}
"""

#: Sortable tables: click a header to sort by that column (numbers numerically).
_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v || a.cells[col].textContent;
      var y = b.cells[col].dataset.v || b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
document.body.dataset.ready = String(document.querySelectorAll('figure.chart svg').length);
"""


@dataclass
class HtmlReport:
    """The content of one report page; every section is optional except the title."""

    title: str
    subtitle: str = ""
    summary: list[dict] = field(default_factory=list)
    sensitivity: list[dict] = field(default_factory=list)
    sensitivity_metric: str = "metric drop"
    sqnr: list[dict] = field(default_factory=list)
    precision: list[dict] = field(default_factory=list)
    candidates: list[dict] = field(default_factory=list)
    candidate_metric: str = "metric"
    notes: list[str] = field(default_factory=list)


def render_html(report: HtmlReport) -> str:
    """The whole page as one string (UTF-8, no external resources)."""
    parts = [f"<h1>{_e(report.title)}</h1>",
             f"<p class='sub'>{_e(report.subtitle)} · edgequant {_e(_version())}</p>"]
    if report.summary:
        parts += ["<h2>Size, accuracy and latency</h2>", table(report.summary)]
    if report.sensitivity:
        parts += ["<h2>Per-layer sensitivity</h2>", _figure("sensitivity", charts.bar_chart(
            [r["layer"] for r in report.sensitivity], [r.get("drop") for r in report.sensitivity],
            title="quantizing this layer alone costs", xlabel=report.sensitivity_metric)),
            table(report.sensitivity)]
    if report.sqnr:
        parts.append("<h2>Quantization SQNR per tensor</h2><div class='charts'>")
        for kind in ("weight", "activation"):
            rows = [r for r in report.sqnr if r.get("kind") == kind]
            if rows:
                parts.append(_figure(f"sqnr-{kind}", charts.bar_chart(
                    [r["tensor"] for r in rows], [r.get("sqnr_db") for r in rows],
                    title=f"{kind} SQNR (higher is better)", xlabel="dB")))
        parts += ["</div>", table(report.sqnr)]
    if report.precision:
        parts += ["<h2>Precision chosen per layer</h2>", _precision_section(report.precision)]
    if report.candidates:
        metric = report.candidate_metric
        parts += ["<h2>Candidates tried</h2><div class='charts'>",
                  _figure("pareto-size", charts.scatter_chart(
                      [{**c, "mib": c["bytes"] / 2**20} if isinstance(c.get("bytes"), int | float)
                       else c for c in report.candidates], x="mib", y="metric",
                      xlabel="size (MiB)", ylabel=metric, title=f"size vs {metric}")),
                  _figure("pareto-latency", charts.scatter_chart(
                      report.candidates, x="latency_ms", y="metric", xlabel="latency (ms)",
                      ylabel=metric, title=f"latency vs {metric}")),
                  "</div>", table(report.candidates)]
    if report.notes:
        parts += ["<h2>Notes</h2><ul>"] + [f"<li class='note'>{_e(n)}</li>"
                                            for n in report.notes] + ["</ul>"]
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>{_e(report.title)}</title><style>{_STYLE}</style></head>\n<body>\n{body}\n"
            f"<script>{_SCRIPT}</script>\n</body></html>\n")


def write_html(path: str | os.PathLike, report: HtmlReport, inputs=()) -> Path:
    """Render ``report`` and write it atomically to ``path`` (never onto one of ``inputs``)."""
    from edgequant.outputs import write_text

    text = render_html(report)  # render first: a chart error leaves no file behind
    return write_text(path, text, inputs)


def table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A sortable HTML table of ``rows``; columns default to the keys in first-seen order."""
    cols = list(columns or dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = to_jsonable(r.get(c))
            if isinstance(v, dict | list):
                v = str(v)
            sort = f" data-v='{v}'" if isinstance(v, int | float) and not isinstance(v, bool) else ""
            cells.append(f"<td{sort}>{_e(format_cell(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<table class='sortable'><thead><tr>{head}</tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


def _precision_section(rows: Sequence[dict]) -> str:
    counts = Counter(r["precision"] for r in rows)
    labels = sorted(counts, key=lambda p: -counts[p])
    chart = charts.bar_chart(labels, [counts[p] for p in labels], title="layers per precision",
                             xlabel="layers",
                             colours=[charts.PRECISION_COLOURS.get(p.split()[0], "#999")
                                      for p in labels])
    return _figure("precision", chart) + table(rows)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgequant")
    except PackageNotFoundError:  # running from a source tree
        return "(source)"


def _figure(name: str, svg: str) -> str:
    return f"<figure class='chart' data-chart='{_e(name)}'>{svg}</figure>"


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)
