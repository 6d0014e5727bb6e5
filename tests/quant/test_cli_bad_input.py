"""Bad input through the real CLI: one line naming the problem, exit code 2, no output file."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from float_models import cnn_bn, images
from onnx import numpy_helper

EXIT_USER_ERROR = 2


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgequant.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture()
def work(tmp_path):
    onnx.save(cnn_bn(), tmp_path / "model.onnx")
    np.savez(tmp_path / "cal.npz", input=images(32))
    return tmp_path


def assert_user_error(res, pattern: str, out=None):
    assert res.returncode == EXIT_USER_ERROR, res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) >= 1 and "Traceback" not in res.stderr
    assert pattern in " ".join(lines), res.stderr
    if out is not None:
        assert not out.exists()
        assert not list(out.parent.glob(f".{out.name}.*"))  # no temp file left


def test_truncated_model(work):
    data = (work / "model.onnx").read_bytes()
    (work / "trunc.onnx").write_bytes(data[: len(data) // 3])
    out = work / "o.onnx"
    res = cli("quantize", work / "trunc.onnx", "-o", out, "--recipe", "fp16")
    assert_user_error(res, "not a readable ONNX model", out)


def test_not_onnx(work):
    (work / "notes.onnx").write_text("hello, I am a text file\n" * 20)
    out = work / "o.onnx"
    assert_user_error(cli("quantize", work / "notes.onnx", "-o", out, "--recipe", "fp16"),
                      "notes.onnx", out)


@pytest.mark.parametrize("arrays,pattern", [
    ({"input": np.zeros((4, 1, 10, 10), np.float32)}, "axis 2 must be 12"),
    ({"input": np.zeros((4, 1, 12, 12), np.int32)}, "dtype int32"),
    ({"input": np.zeros((0, 1, 12, 12), np.float32)}, "is empty"),
    ({"x": np.zeros((4, 1, 12, 12), np.float32), "y": np.zeros(3)}, "missing model input"),
    ({"input": np.full((4, 1, 12, 12), np.nan, np.float32)}, "NaN"),
])
def test_bad_calibration(work, arrays, pattern):
    np.savez(work / "bad.npz", **arrays)
    out = work / "o.onnx"
    res = cli("quantize", work / "model.onnx", "-o", out, "--recipe", "w8a8",
              "--calibration", work / "bad.npz")
    assert_user_error(res, pattern, out)


def test_missing_calibration_for_static_recipe(work):
    out = work / "o.onnx"
    assert_user_error(cli("quantize", work / "model.onnx", "-o", out, "--recipe", "w8a8"),
                      "give calibration data", out)


def test_nan_weights(work):
    m = cnn_bn()
    w = numpy_helper.to_array(m.graph.initializer[0]).copy()
    w.flat[0] = np.inf
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, m.graph.initializer[0].name))
    onnx.save(m, work / "nan.onnx")
    out = work / "o.onnx"
    assert_user_error(cli("quantize", work / "nan.onnx", "-o", out, "--recipe", "fp16"),
                      "initializer 'conv.w' holds 1 NaN/Inf", out)


def test_output_equal_to_input_is_refused(work):
    before = (work / "model.onnx").read_bytes()
    res = cli("quantize", work / "model.onnx", "-o", work / "model.onnx", "--recipe", "fp16")
    assert_user_error(res, "is the input model")
    assert (work / "model.onnx").read_bytes() == before


def test_external_data_outside_folder_is_refused(work):
    inner = work / "inner"
    inner.mkdir()
    m = cnn_bn()
    onnx.save(m, inner / "m.onnx", save_as_external_data=True, location="w.bin",
              size_threshold=0)
    m2 = onnx.load(inner / "m.onnx", load_external_data=False)
    for t in m2.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../w.bin"
    onnx.save(m2, inner / "escape.onnx")
    res = cli("quantize", inner / "escape.onnx", "-o", work / "o.onnx", "--recipe", "fp16")
    assert_user_error(res, "outside the model's folder", work / "o.onnx")


def test_unknown_recipe_and_io(work):
    out = work / "o.onnx"
    assert_user_error(cli("quantize", work / "model.onnx", "-o", out, "--recipe", "w3a3"),
                      "w3a3", out)
    assert_user_error(cli("quantize", work / "model.onnx", "-o", out, "--recipe", "w8a8",
                          "--calibration", work / "cal.npz", "--io", "int4"), "io='int4'", out)


def test_quantize_inspect_compare_happy_path(work):
    out = work / "q.onnx"
    res = cli("quantize", work / "model.onnx", "-o", out, "--recipe", "w8a8", "--calibration",
              work / "cal.npz", "--io", "uint8")
    assert res.returncode == 0, res.stderr
    assert "integer I/O" in res.stdout and "input" in res.stdout
    res = cli("inspect", out, "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert "QuantizeLinear" in json.dumps(summary)
    np.savez(work / "test.npz", input=images(20, seed=5))
    np.save(work / "labels.npy", np.arange(20) % 10)
    fp16 = work / "h.onnx"
    assert cli("quantize", work / "model.onnx", "-o", fp16, "--recipe", "fp16").returncode == 0
    res = cli("compare", work / "model.onnx", out, fp16, "--data", work / "test.npz",
              "--labels", work / "labels.npy", "--json", "--repeats", "3")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)["rows"]
    assert len(rows) == 3
    assert set(rows[1]) >= {"bytes", "size_ratio", "accuracy", "top1_agreement", "cosine",
                            "sqnr_db", "latency_ms", "speedup"}
    assert rows[1]["bytes"] == out.stat().st_size
    assert rows[2]["top1_agreement"] == 1.0
