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
                  compare_rows: Sequence[dict] | None = None, auto: dict | None = None
                  ) -> HtmlReport:
    """A page for one ``quantize`` report (``QuantizedModel.report``); ``auto`` is the
    ``--recipe auto`` search (``AutoResult.to_dict()``): its candidates are plotted."""
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
    if auto:
        page.candidates = [{"name": c["name"], "kind": c["kind"], "bytes": c["bytes"],
                            "metric": -c["search_drop"], "held_apart_drop": c["held_apart_drop"],
                            "latency_ms": c["latency_ms"], "meets_budget": c["meets_budget"]}
                           for c in auto["candidates"]]
        page.candidate_metric = f"-{auto['metric']} drop (points)"
        held = next((c["held_apart_drop"] for c in auto["candidates"]
                     if c["name"] == auto["chosen"]), None)
        page.notes.insert(0, f"--recipe auto: chose {auto['chosen']} for a budget of "
                             f"{auto['max_drop']} {auto['metric']} points ({auto['objective']}); "
                             f"held-apart drop {held}: "
                             + ("within budget" if auto["meets_budget_held_apart"]
                                else "MISSES the budget"))
    return page


def analyze_page(sens: dict) -> HtmlReport:
    """A page for ``edgequant analyze`` (``SensitivityReport.to_dict()``): ranked layers,
    the drop of quantizing each alone, and weight / activation SQNR per layer."""
    layers = sens["layers"]
    rows = [{"rank": r["rank"], "layer": r["node"], "op_type": r["op_type"],
             "drop": r["single_drop"], "all_but_one_drop": r["all_but_one_drop"],
             "int4_drop": r.get("int4_drop"), "suggestion": r["suggestion"], "reason": r["reason"]}
            for r in layers]
    sqnr = [{"tensor": r["node"], "kind": "weight", "sqnr_db": r["weight_sqnr_db"]}
            for r in layers if r.get("weight_sqnr_db") is not None]
    sqnr += [{"tensor": r["node"], "kind": "activation", "sqnr_db": r["activation_sqnr_db"]}
             for r in layers if r.get("activation_sqnr_db") is not None]
    return HtmlReport(
        title=f"edgequant analyze: {Path(str(sens['model'])).name}",
        subtitle=f"{sens['recipe']} costs {sens['base_drop']:.3f} {sens['metric']} points on "
                 f"{sens['samples']} samples (float score {sens['float_score']:.2f})",
        summary=[{"model": "float", "bytes": sens["float_bytes"], sens["metric"]: sens["float_score"]},
                 {"model": sens["recipe"], "bytes": sens["base_bytes"],
                  sens["metric"]: sens["float_score"] - sens["base_drop"]}],
        sensitivity=rows, sensitivity_metric=f"{sens['metric']} points lost", sqnr=sqnr)


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
