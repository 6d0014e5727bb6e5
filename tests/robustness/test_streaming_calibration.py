"""Calibration streamed from DATA.npz: the batches are the file's samples in order (stored and
deflated members, .npy files), quantize(path) equals quantize(dict) exactly, and a bad batch
deep in the file is named."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgequant as eq
from edgequant.errors import CalibrationError
from edgequant.runtime.feed_stream import stream_feeds
from edgequant.runtime.feeds import first_batch, model_inputs


def _model(batch=None):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(6, 5)).astype(np.float32), "w")
    dim = batch if batch else "N"
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"]),
                           helper.make_node("Relu", ["h"], ["y"])], "m",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [dim, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [dim, 5])], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


@pytest.mark.parametrize("save", ["savez", "savez_compressed", "npy"])
def test_stream_yields_the_file_in_order(tmp_path, save):
    x = np.random.default_rng(1).normal(size=(70, 6)).astype(np.float32)
    path = tmp_path / ("d.npy" if save == "npy" else "d.npz")
    if save == "npy":
        np.save(path, x)
    else:
        getattr(np, save)(path, x=x)
    stream = stream_feeds(path, model_inputs(_model()), 32)
    parts = [b["x"] for b in stream]
    assert stream.total == 70 and [len(p) for p in parts] == [32, 32, 6]
    np.testing.assert_array_equal(np.concatenate(parts), x)
    np.testing.assert_array_equal(first_batch(path, model_inputs(_model()), 4)["x"], x[:4])


def test_fixed_batch_model_streams_in_its_batch(tmp_path):
    x = np.random.default_rng(2).normal(size=(12, 6)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    stream = stream_feeds(tmp_path / "d.npz", model_inputs(_model(batch=4)), 32)
    assert [len(b["x"]) for b in stream] == [4, 4, 4]
    np.savez(tmp_path / "odd.npz", x=x[:10])
    with pytest.raises(CalibrationError, match="10 samples do not fill batches of 4"):
        stream_feeds(tmp_path / "odd.npz", model_inputs(_model(batch=4)), 32)


def test_quantize_from_file_equals_quantize_from_dict(tmp_path):
    x = np.random.default_rng(3).normal(size=(100, 6)).astype(np.float32)
    np.savez_compressed(tmp_path / "d.npz", x=x)
    a = eq.quantize(_model(), "w8a8", tmp_path / "d.npz", batch_size=16)
    b = eq.quantize(_model(), "w8a8", {"x": x}, batch_size=16)
    assert a.qparams.keys() == b.qparams.keys()
    assert all(a.qparams[k] == b.qparams[k] for k in a.qparams)
    np.testing.assert_array_equal(a.sample["x"], x[:1])


def test_nan_deep_in_the_file_is_named(tmp_path):
    x = np.ones((90, 6), np.float32)
    x[80, 3] = np.nan
    np.savez(tmp_path / "d.npz", x=x)
    with pytest.raises(CalibrationError, match="input 'x' contains NaN"):
        eq.quantize(_model(), "w8a8", tmp_path / "d.npz", batch_size=16)


def test_header_shape_checked_before_reading(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((50, 7), np.float32))
    with pytest.raises(CalibrationError, match=r"shape \(50, 7\); axis 1 must be 6"):
        stream_feeds(tmp_path / "d.npz", model_inputs(_model()), 16)
