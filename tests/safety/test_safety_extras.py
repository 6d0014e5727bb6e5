"""A missing optional dependency is one line naming the extra, checked before any work."""

from __future__ import annotations

import sys

import pytest
from safety_cli import assert_one_line_error, invoke, snapshot

from edgequant.extras import MissingExtraError, require


def test_require_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    with pytest.raises(MissingExtraError, match=r"writing \.tflite needs the tflite extra: "
                                                r"pip install 'edgequant\[tflite\]'"):
        require("ai_edge_litert", what="writing .tflite")
    assert require("json").__name__ == "json"


def test_quantize_to_tflite_without_litert(work, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    before = snapshot(work)
    # w8a8 without --calibration: had any work started, the error would be about calibration
    res = invoke("quantize", work / "model.onnx", "-o", work / "m.tflite")
    assert_one_line_error(res, "needs the tflite extra", "pip install 'edgequant[tflite]'")
    assert snapshot(work) == before  # no .tflite, no temp file


def test_run_tflite_without_litert(work, monkeypatch):
    (work / "m.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(24))
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    before = snapshot(work)
    for engine in ("litert", "reference"):
        res = invoke("run", work / "m.tflite", "--data", work / "cal.npz", "-o", work / "o.npz",
                     "--engine", engine)
        assert_one_line_error(res, "running m.tflite needs the tflite extra")
    res = invoke("inspect", work / "m.tflite")
    assert_one_line_error(res, "inspecting m.tflite needs the tflite extra")
    assert snapshot(work) == before


def test_edgequant_torch_without_torch(monkeypatch):
    for name in [m for m in sys.modules if m == "edgequant.torch" or m.startswith("edgequant.torch.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'edgequant\[torch\]'"):
        import edgequant.torch  # noqa: F401


def test_demo_without_its_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    res = invoke("demo", "--out", tmp_path / "d")
    assert_one_line_error(res, "edgequant demo needs the demo extra", "edgequant[demo]")
    assert not (tmp_path / "d").exists()
