"""The HTML report: built from real quantize / compare runs, opened in headless Chromium.

Oracles: the browser's own DOM after the page's script ran (every chart is an ``<svg>`` the
script counted), its console (no messages at all: no errors, no warnings), and the rendered
screenshot (not blank); the numbers in the page are the ones ``compare`` computed.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from browser import render
from PIL import Image

import edgequant as eq
from edgequant.analysis.compare import compare, rows_to_json
from edgequant.recipes import Rule, get_recipe
from edgequant.report.charts import pareto_front
from edgequant.report.html import HtmlReport, render_html, write_html
from edgequant.report.pages import compare_page, quantize_page

N_EVAL = 200


@pytest.fixture(scope="module")
def runs(digits_models, tmp_path_factory):
    """Three recipes on the digits CNN: one uniform, one mixed per layer, one fp16."""
    d = tmp_path_factory.mktemp("html")
    m, x = digits_models, digits_models["x"]
    out, reports = [], {}
    mixed = get_recipe("w8a8").with_rules(Rule(op_types=("Gemm",), mode="fp16"))
    for name, rec in (("w8a8", "w8a8"), ("mixed", mixed), ("fp16", "fp16")):
        qm = eq.quantize(m["fp32"], rec, {"x": x[:64]})
        out.append(qm.save(d / f"{name}.onnx"))
        reports[name] = qm.report
    rows = rows_to_json(compare(m["fp32"], out, {"x": x[:N_EVAL]}, labels=m["y"][:N_EVAL],
                                latency_repeats=3))
    return {"dir": d, "rows": rows, "reports": reports, "paths": out}


def test_report_renders_in_chromium_with_charts_and_no_console_messages(runs, tmp_path):
    page = quantize_page(runs["reports"]["mixed"], "digits_fp32.onnx", "mixed.onnx",
                         compare_rows=runs["rows"])
    path = write_html(tmp_path / "report.html", page)
    shown = render(path, tmp_path)
    assert shown.console == []
    # the page's script ran and counted the inline SVG charts: precision bars + 2 Pareto plots
    ready = re.search(r'<body[^>]*data-ready="(\d+)"', shown.dom)
    assert ready and int(ready.group(1)) == 3
    assert shown.dom.count("<figure class=\"chart\"") == 3
    for r in runs["rows"]:  # every model compare measured is in the table, with its accuracy
        assert r["model"].split("/")[-1] in shown.dom
        assert f"{r['accuracy']:.4g}" in shown.dom
    # the mixed recipe's precision per layer: Gemm in fp16, convolutions in int8
    assert "fp16" in shown.dom and "int8 w8a8" in shown.dom
    img = np.asarray(Image.open(shown.screenshot).convert("L"), dtype=np.float32)
    assert img.shape == (3000, 1200)
    ink = (img < 200).mean()  # share of non-background pixels
    assert 0.02 < ink < 0.6, ink


def test_compare_cli_writes_the_html_report(digits_models, runs, tmp_path):
    from typer.testing import CliRunner

    from edgequant.cli import app

    data = tmp_path / "d.npz"
    np.savez(data, x=digits_models["x"][:50])
    html = tmp_path / "cmp.html"
    res = CliRunner().invoke(app, ["compare", str(digits_models["fp32"]), str(runs["paths"][0]),
                                   "--data", str(data), "--repeats", "2", "--html", str(html)])
    assert res.exit_code == 0, res.output
    text = html.read_text()
    assert text.startswith("<!DOCTYPE html>") and "w8a8.onnx" in text
    assert text.count("<svg") == 2  # size- and latency-vs-metric plots


def test_model_text_is_escaped_and_nothing_is_fetched():
    page = HtmlReport("t", precision=[{"layer": "<script>alert(1)</script>", "op_type": "Conv",
                                       "precision": "int8 w8a8"}],
                      notes=["a & b"])
    text = render_html(page)
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)" in text
    assert "a &amp; b" in text
    assert not re.search(r"""(src|href)=["']?https?:""", text)  # self-contained: no URLs


def test_pareto_front_keeps_only_undominated_points():
    pts = [(1.0, 0.90), (2.0, 0.95), (2.5, 0.94), (3.0, 0.99), (3.0, 0.97), (4.0, 0.99)]
    assert pareto_front(pts) == [(1.0, 0.90), (2.0, 0.95), (3.0, 0.99)]


def test_compare_page_prefers_accuracy_then_agreement_then_cosine():
    rows = [{"model": "a/m.onnx", "bytes": 10, "accuracy": None, "top1_agreement": 0.9,
             "cosine": 0.99, "latency_ms": 1.0}]
    page = compare_page(rows, "ref.onnx")
    assert page.candidate_metric == "top1_agreement"
    assert page.candidates == [{"name": "m.onnx", "bytes": 10, "metric": 0.9, "latency_ms": 1.0}]


def test_browser_harness_sees_console_errors(tmp_path):
    """The console check above can fail: a page that logs an error is caught."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>console.error('boom-42'); undefinedCall();</script>"
                    "</body></html>")
    shown = render(page, tmp_path, size=(200, 200))
    assert any("boom-42" in m for m in shown.console)
    assert any("undefinedCall" in m for m in shown.console)


def test_analyze_html_ranks_the_planted_layer_first_in_chromium(planted, tmp_path):
    """``analyze --html``: sensitivity bars + weight / activation SQNR bars, the planted
    head (``fc3``) first in the ranked table, rendered with no console messages."""
    import onnx
    from sensitivity_models import splits
    from typer.testing import CliRunner

    from edgequant.cli import app

    s = splits()
    onnx.save(planted, tmp_path / "m.onnx")
    np.savez(tmp_path / "cal.npz", x=s["cal"])
    np.savez(tmp_path / "data.npz", x=s["data"])
    html = tmp_path / "analyze.html"
    res = CliRunner().invoke(app, ["analyze", str(tmp_path / "m.onnx"), "--calibration",
                                   str(tmp_path / "cal.npz"), "--data", str(tmp_path / "data.npz"),
                                   "--no-cache", "--html", str(html)])
    assert res.exit_code == 0, res.output
    shown = render(html, tmp_path)
    assert shown.console == []
    charts = re.findall(r'data-chart="([\w-]+)"', shown.dom)
    assert charts == ["sensitivity", "sqnr-weight", "sqnr-activation"]
    ready = re.search(r'<body[^>]*data-ready="(\d+)"', shown.dom)
    assert ready and int(ready.group(1)) == 3
    first_row = re.search(r"<tbody><tr><td[^>]*>1</td><td>([^<]+)</td>", shown.dom)
    assert first_row and first_row.group(1) == "fc3"
