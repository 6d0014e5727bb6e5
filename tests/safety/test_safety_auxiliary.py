"""Auxiliary steps never fail the main command: the speed check and the report file."""

from __future__ import annotations

import errno

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from safety_cli import images, invoke

from edgequant.ptq.auxiliary import MAX_TIMING_INPUT_MIB, timing_input_mib
from edgequant.ptq.quantizer import quantize


def huge_input_model(dim: int = 10**8) -> onnx.ModelProto:
    """x (1, dim) float32 → Mul by a constant: batch-1 input of ``4 * dim`` bytes."""
    w = numpy_helper.from_array(np.array([0.5], np.float32), "w")
    g = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"], name="mul")], "huge",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, dim])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, dim])],
                          initializer=[w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])


def test_size_check_before_allocating():
    m = huge_input_model()
    assert timing_input_mib(m) == pytest.approx(4 * 10**8 / 2**20)
    qm = quantize(m, "fp16", check_speed=True)  # would need 381 MiB of ones to time it
    assert qm.report["speedup_vs_float"] is None
    (w,) = [w for w in qm.report["warnings"] if w.startswith("speed check skipped")]
    assert "MemoryError" in w and f"limit {MAX_TIMING_INPUT_MIB}" in w


@pytest.mark.parametrize("error", ["ort", "memory", "numpy"])
def test_any_speed_check_error_becomes_a_warning(monkeypatch, error):
    import onnxruntime as ort

    import edgequant.ptq.speed_guard as sc

    def broken(*a, **k):
        if error == "ort":  # what onnxruntime raises for a corrupted-but-loadable model
            return ort.InferenceSession(b"not a model")
        if error == "memory":
            raise MemoryError("Unable to allocate 29.8 GiB for an array")
        return np.ones((2, 3)) @ np.ones((4, 5))  # numpy's own ValueError

    monkeypatch.setattr(sc, "ort_session", broken)
    from float_models import cnn_bn

    qm = quantize(cnn_bn(), "w8a8", {"input": images(8)}, check_speed=True)
    (w,) = [w for w in qm.report["warnings"] if w.startswith("speed check skipped")]
    assert {"memory": "MemoryError", "numpy": "ValueError"}.get(error, "speed check") in w
    assert qm.report["speedup_vs_float"] is None and qm.model.graph.node  # the model is there


def test_report_write_failure_is_a_warning(work, monkeypatch):
    import edgequant.ptq.quantizer as qz

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(qz, "save_report", full_disk)
    res = invoke("quantize", work / "model.onnx", "-o", work / "q.onnx", "--recipe", "fp16",
                 "--no-speed-check", "--report", work / "r.json")
    assert res.exit_code == 0, (res.stderr, res.exception)
    assert "report" in res.stderr and "No space left on device" in res.stderr
    assert (work / "q.onnx").is_file() and not (work / "r.json").exists()
