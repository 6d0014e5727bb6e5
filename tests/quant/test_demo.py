"""The embedded demo end to end: every recipe within its accuracy bar, LiteRT equal to ONNX,
files and reports written."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("ai_edge_litert")

from edgequant_zoo.demo import DEMO_RECIPES, TFLITE_RECIPES, run_demo


def test_demo_meets_every_bar(tmp_path):
    report = run_demo(tmp_path)
    assert report["failures"] == []
    rows = {(r["mode"], r["format"]) for r in report["rows"]}
    assert {(m, "onnx") for m in DEMO_RECIPES} <= rows
    assert {(m, "tflite") for m in TFLITE_RECIPES} <= rows
    assert ("w8a8_qat", "onnx (QAT)") in rows and ("w8a8_qop", "onnx (qop)") in rows
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert [(r["mode"], r["accuracy"]) for r in on_disk["rows"]] == \
        [(r["mode"], r["accuracy"]) for r in report["rows"]]
    assert (tmp_path / "report.md").read_text().count("|") > 20
    for m in DEMO_RECIPES:
        assert (tmp_path / f"model_{m}.onnx").is_file()
