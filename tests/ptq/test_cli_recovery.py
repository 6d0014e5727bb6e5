"""``edgequant quantize --cle / --bias-correction`` through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
from small_nets import conv_chain, images


def cli(*args):
    return subprocess.run([sys.executable, "-m", "edgequant.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_cli_flags_reach_the_recipe(tmp_path):
    onnx.save(conv_chain("Relu", seed=2), tmp_path / "m.onnx")
    np.savez(tmp_path / "cal.npz", x=images(16, seed=1))
    res = cli("quantize", tmp_path / "m.onnx", "-o", tmp_path / "q.onnx", "--recipe", "w8a8",
              "--calibration", tmp_path / "cal.npz", "--cle", "--bias-correction", "empirical",
              "--report", tmp_path / "r.json", "--no-speed-check")
    assert res.returncode == 0, res.stderr
    rec = json.loads((tmp_path / "r.json").read_text())["recovery"]
    assert rec["techniques"] == ["cle", "bias_correction (empirical)"]
    assert {r["node"] for r in rec["layers"]} == {"c1", "dw", "c3", "fc"}


def test_cli_bad_bias_correction_value(tmp_path):
    onnx.save(conv_chain("Relu"), tmp_path / "m.onnx")
    np.savez(tmp_path / "cal.npz", x=images(4, seed=1))
    res = cli("quantize", tmp_path / "m.onnx", "-o", tmp_path / "q.onnx", "--calibration",
              tmp_path / "cal.npz", "--bias-correction", "analytic")
    assert res.returncode == 2
    assert "bias_correction" in res.stderr and "'analytic' is not allowed" in res.stderr
    assert not (tmp_path / "q.onnx").exists()


def test_cli_weight_clip_and_keep_int8_flags(tmp_path):
    onnx.save(conv_chain("Relu", seed=2), tmp_path / "m.onnx")
    np.savez(tmp_path / "cal.npz", x=images(16, seed=1))
    res = cli("quantize", tmp_path / "m.onnx", "-o", tmp_path / "q.onnx", "--recipe", "w4a8",
              "--calibration", tmp_path / "cal.npz", "--weight-clip", "mse", "--w4-keep-int8",
              "first_last", "--bias-correction", "none", "--report", tmp_path / "r.json",
              "--no-speed-check")
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "r.json").read_text())["recovery"]["weight_clip"]["weights"] == 4
    types = {t.name: t.data_type for t in onnx.load(tmp_path / "q.onnx").graph.initializer}
    assert types["c1.w_quantized"] == onnx.TensorProto.INT8  # first layer kept at 8 bits
    assert types["dw.w_quantized"] == onnx.TensorProto.INT4
    bad = cli("quantize", tmp_path / "m.onnx", "-o", tmp_path / "q2.onnx", "--recipe", "w4a8",
              "--calibration", tmp_path / "cal.npz", "--w4-keep-int8", "everything")
    assert bad.returncode == 2 and "w4_keep_int8" in bad.stderr
