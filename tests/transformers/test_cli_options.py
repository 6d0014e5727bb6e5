"""``edgequant quantize --smoothquant / --outlier-threshold`` reach the recipe and report."""

from __future__ import annotations

import json

import numpy as np
from tiny_bert import tokens
from typer.testing import CliRunner

from edgequant.cli import app

#: The CLI's exit code for user errors.
EXIT_USER_ERROR = 2


def test_cli_smoothquant_and_outliers(bert_onnx, tmp_path):
    data = tmp_path / "cal.npz"
    np.savez(data, **tokens(16, seed=0))
    report = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["quantize", bert_onnx, "-o", str(tmp_path / "q.onnx"),
                                   "--calibration", str(data), "--smoothquant", "search",
                                   "--outlier-threshold", "6", "--report", str(report),
                                   "--no-speed-check"])
    assert res.exit_code == 0, res.output
    r = json.loads(report.read_text())
    assert r["smoothquant"] and r["outliers"]["threshold"] == 6.0
    assert (tmp_path / "q.onnx").stat().st_size > 0


def test_cli_bad_smoothquant_value(bert_onnx, tmp_path):
    res = CliRunner().invoke(app, ["quantize", bert_onnx, "-o", str(tmp_path / "q.onnx"),
                                   "--smoothquant", "lots"])
    assert res.exit_code == EXIT_USER_ERROR
    assert "--smoothquant" in res.output and "search" in res.output
