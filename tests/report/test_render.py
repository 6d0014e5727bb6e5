"""write_report / markdown_table: strict JSON round trip, Markdown tables, atomic writes."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from edgequant.report.render import format_cell, markdown_table, write_report


def test_markdown_table_layout_and_formatting():
    rows = [{"model": "a.onnx", "cosine": 0.999912345, "sqnr_db": math.inf, "accuracy": None},
            {"model": "b|c", "cosine": np.float32(0.5), "sqnr_db": 12.0, "accuracy": 0.97}]
    text = markdown_table(rows, ["model", "cosine", "sqnr_db", "accuracy"])
    assert text.splitlines() == [
        "| model | cosine | sqnr_db | accuracy |",
        "|---|---|---|---|",
        "| a.onnx | 0.9999 | ∞ | — |",
        "| b\\|c | 0.5 | 12 | 0.97 |",
    ]
    assert markdown_table([], ["x"]).splitlines() == ["| x |", "|---|"]


def test_format_cell():
    assert format_cell(-math.inf) == "-∞"
    assert format_cell(True) == "true"
    assert format_cell({"a": 1}) == '{"a": 1}'


def test_write_report_json_is_strict_and_complete(tmp_path):
    report = {
        "title": "t",
        "rows": [{"model": "m", "sqnr_db": math.inf, "bytes": np.int64(7)}],
        "scales": np.array([0.5, 0.25], np.float32),
        "meta": {"recipe": "w8a8"},
        "n": 3,
    }
    j, md = write_report(tmp_path / "sub" / "report", report)
    assert (j.name, md.name) == ("report.json", "report.md")
    text = j.read_text()
    back = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert back == {"title": "t", "rows": [{"model": "m", "sqnr_db": "inf", "bytes": 7}],
                    "scales": [0.5, 0.25], "meta": {"recipe": "w8a8"}, "n": 3}
    body = md.read_text()
    assert body.startswith("# t\n")
    assert "| model | sqnr_db | bytes |" in body and "| m | ∞ | 7 |" in body
    assert "| recipe | w8a8 |" in body and "**n**: 3" in body
    assert sorted(os.listdir(j.parent)) == ["report.json", "report.md"]  # no temp files left


def test_failed_write_keeps_previous_report(tmp_path):
    write_report(tmp_path / "r", {"a": 1})
    with pytest.raises(TypeError):
        write_report(tmp_path / "r", {"a": object()})  # not JSON-able
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1}
    assert sorted(os.listdir(tmp_path)) == ["r.json", "r.md"]
