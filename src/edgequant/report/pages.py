"""Build :class:`~edgequant.report.html.HtmlReport` pages from what the commands produce.

* :func:`compare_page`: ``edgequant compare`` rows (table + candidates plotted size/latency
  against accuracy, top-1 agreement or cosine — the first the rows have).
* :func:`quantize_page`: one ``quantize`` report (precision per layer, float nodes, notes).
* :func:`demo_page`: the demo's compare rows plus the w8a8 model's precision per layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgequant.report.html import HtmlReport

#: Fidelity metrics plotted against size and latency, in order of preference.
CANDIDATE_METRICS = ("accuracy", "top1_agreement", "cosine")


def candidates_from_rows(rows: Sequence[dict]) -> tuple[list[dict], str]:
    """Compare rows → Pareto candidates (name, bytes, metric, latency_ms) and the metric used."""
    metric = next((m for m in CANDIDATE_METRICS if any(r.get(m) is not None for r in rows)),
                  "cosine")
    return [{"name": Path(str(r["model"])).name, "bytes": r.get("bytes"), "metric": r.get(metric),
             "latency_ms": r.get("latency_ms")} for r in rows], metric


def compare_page(rows: Sequence[dict], reference: str, title: str | None = None) -> HtmlReport:
    """A page for ``compare`` rows (``analysis.compare.rows_to_json``) against ``reference``."""
    candidates, metric = candidates_from_rows(rows)
    return HtmlReport(title=title or f"edgequant compare: {Path(reference).name}",
                      subtitle=f"reference {reference}", summary=list(rows),
                      candidates=candidates, candidate_metric=metric)


def quantize_page(report: dict, source: str, output: str,
                  compare_rows: Sequence[dict] | None = None) -> HtmlReport:
    """A page for one ``quantize`` report (``QuantizedModel.report``)."""
    summary = [{"model": Path(source).name, "role": "float input"},
               {"model": Path(output).name, "role": f"{report['recipe']} ({report['mode']})",
                "speedup_vs_float": report.get("speedup_vs_float")}]
    page = HtmlReport(title=f"edgequant quantize: {Path(source).name} → {Path(output).name}",
                      subtitle=f"recipe {report['recipe']}, {report['plan']['quantized_nodes']} "
                               "node(s) quantized",
                      summary=list(compare_rows) if compare_rows else summary,
                      precision=list(report.get("precision", [])),
                      notes=[f"warning: {w}" for w in report.get("warnings", [])]
                      + list(report.get("notes", [])))
    page.notes += [f"{f['node']} ({f['op_type']}) kept in float: {f['reason']}"
                   for f in report["plan"]["float_nodes"]]
    if compare_rows:
        page.candidates, page.candidate_metric = candidates_from_rows(compare_rows)
    return page


def demo_page(report: dict) -> HtmlReport:
    """The demo's page: every recipe's size / accuracy / latency, and w8a8's precision."""
    candidates = [{"name": f"{r['mode']} {r['format']} ({r['runtime']})", "bytes": r["bytes"],
                   "metric": r["accuracy"], "latency_ms": r["latency_ms"]} for r in report["rows"]]
    w8a8 = report.get("quantize_reports", {}).get("w8a8", {})
    return HtmlReport(title=report["title"],
                      subtitle=f"{report['test_images']} MNIST test images, seed {report['seed']}",
                      summary=list(report["rows"]), precision=list(w8a8.get("precision", [])),
                      candidates=candidates, candidate_metric="accuracy (%)",
                      notes=[f"failure: {f}" for f in report.get("failures", [])])
