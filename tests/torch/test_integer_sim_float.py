"""XNNPACK's float kernels as ``kernels="litert"`` emulates them, against LiteRT itself.

The oracle is LiteRT (XNNPACK delegate) running one-op ``.tflite`` files written by the
exporter from float ONNX graphs: MEAN over the last axis (LayerNorm's two reductions). The
float GELU and FULLY_CONNECTED are checked inside a trained encoder
(``test_integer_sim_transformer.py``).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from edgequant.export.tflite.export import export_tflite
from edgequant.runtime.runners import open_runner
from edgequant.torch.integer_sim_litert_norm import xnnpack_mean

pytest.importorskip("ai_edge_litert")


def _mean_model(shape: tuple[int, ...]) -> onnx.ModelProto:
    node = helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=1)
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [len(shape) - 1])
    graph = helper.make_graph([node], "mean", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, shape)], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, (*shape[:-1], 1))], [axes])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


@pytest.mark.parametrize("width", [384, 64])
def test_xnnpack_mean_equals_litert_bit_for_bit(tmp_path, width):
    x = np.random.default_rng(0).standard_normal((1, 32, width)).astype(np.float32) * 3 + 0.5
    x[..., 7] += 40.0  # an outlier dimension, as in MiniLM's residual stream
    path = tmp_path / "mean.tflite"
    export_tflite(_mean_model(x.shape), path)
    got = np.asarray(open_runner(path).run({"x": x})[0]).reshape(1, 32, 1)
    ours = xnnpack_mean(torch.from_numpy(x)).numpy()
    torch_mean = x.mean(-1, keepdims=True)
    assert np.array_equal(ours, got)
    assert not np.array_equal(torch_mean, got)  # the summation order is visible
