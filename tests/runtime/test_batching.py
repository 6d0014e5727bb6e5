"""batching: the one rule that splits samples into the calls a model accepts.

Oracles: numpy (``x @ w``), per-sample onnxruntime sessions, and a dynamic-batch twin of a
fixed-batch model calibrated on the same data.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from runtime_models import conv_net, fixed_matmul, images

from edgequant.runtime.batching import batches, fixed_batch_size, num_samples, run_batched
from edgequant.runtime.runners import open_runner

#: float32 MatMul / Conv vs numpy or another batch size: only the summation order differs.
RTOL, ATOL = 1e-5, 1e-6


def _x(n: int) -> np.ndarray:
    return np.arange(n * 3, dtype=np.float32).reshape(n, 3)  # (n, 3)


def test_fixed_batch_size_reads_first_dims():
    assert fixed_batch_size({"x": (None, 3)}) is None
    assert fixed_batch_size({"x": (-1, 3)}) is None  # Paddle-style -1 is dynamic
    assert fixed_batch_size({"x": (4, 3), "y": (None,)}) == 4
    assert fixed_batch_size({"x": (1, 3), "y": (2, 5)}) == 1
    assert fixed_batch_size({"s": ()}) is None


def test_dynamic_model_runs_batch_size_samples_per_call():
    got = list(batches({"x": _x(10)}, {"x": (None, 3)}, batch_size=4))
    assert [b.count for b in got] == [4, 4, 2]
    assert [len(b.feeds["x"]) for b in got] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b.feeds["x"] for b in got]), _x(10))
    assert [b.count for b in batches({"x": _x(10)}, {"x": (None, 3)}, batch_size=None)] == [10]


def test_fixed_batch_pads_the_last_batch_with_the_last_sample():
    got = list(batches({"x": _x(10)}, {"x": (4, 3)}, batch_size=32))
    assert [b.count for b in got] == [4, 4, 2]
    last = got[-1].feeds["x"]
    assert last.shape == (4, 3)
    np.testing.assert_array_equal(last[:2], _x(10)[8:])
    np.testing.assert_array_equal(last[2:], np.repeat(_x(10)[-1:], 2, axis=0))
    with pytest.raises(ValueError, match="multiple of 4"):
        list(batches({"x": _x(10)}, {"x": (4, 3)}, pad=False))


def test_bad_feeds_are_refused():
    with pytest.raises(ValueError, match="number of samples"):
        num_samples({"a": _x(3), "b": _x(4)})
    with pytest.raises(ValueError, match="feeds are empty"):
        num_samples({})
    with pytest.raises(ValueError, match="batch_size=0"):
        list(batches({"x": _x(3)}, {}, batch_size=0))


@pytest.mark.parametrize("batch", [1, 4])
def test_fixed_batch_onnx_model_runs_any_sample_count(tmp_path, batch):
    model, w = fixed_matmul(batch)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    runner = open_runner(path)
    assert runner.input_shapes["x"] == (batch, 3)
    x = _x(10)
    for got in (run_batched(runner, {"x": x})[0],  # the batching function
                runner.run({"x": x})[0]):  # run() routes a mismatched count through it
        assert got.shape == (10, 2)
        np.testing.assert_allclose(got, x @ w, rtol=RTOL, atol=ATOL)


def test_batch_size_does_not_change_results(tmp_path):
    path = tmp_path / "c.onnx"
    onnx.save(conv_net(), path)
    x = images(9)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
    runner = open_runner(path)
    for bs in (1, 4, None):
        np.testing.assert_allclose(run_batched(runner, {"x": x}, bs)[0], want, rtol=RTOL,
                                   atol=ATOL)


def test_calibration_of_a_batch_1_model_equals_the_dynamic_one(tmp_path):
    """Calibration batches through the same rule: a batch-1 model sees every sample once,
    so its (min/max) activation qparams equal the dynamic-batch model's."""
    from edgequant import quantize

    cal = {"x": images(5, seed=4)}
    fixed, dynamic = tmp_path / "fixed.onnx", tmp_path / "dynamic.onnx"
    onnx.save(conv_net(batch=1), fixed)
    onnx.save(conv_net(), dynamic)

    def scales(path):
        m = quantize(path, "w8a8", calibration=cal).model
        return {t.name: onnx.numpy_helper.to_array(t).tolist() for t in m.graph.initializer
                if "scale" in t.name}

    got, want = scales(fixed), scales(dynamic)
    assert got and got == want


def test_calibration_refuses_a_partial_fixed_batch(tmp_path):
    from edgequant import quantize

    model, _ = fixed_matmul(4)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    with pytest.raises(ValueError, match="multiple of 4"):
        quantize(path, "w8a8", calibration={"x": _x(6)})
