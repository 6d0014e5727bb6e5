"""TFLite conventions applied by the exporter (and only there), read back from the file:
narrow-range symmetric int8 weights, per-channel axes (CONV_2D axis 0 of OHWI, DEPTHWISE
axis 3 of 1HWC), int32 bias with scale = input scale × weight scale and zero point 0,
asymmetric int8 activations; NHWC layout with the ONNX layout kept at the boundary."""

from __future__ import annotations

import numpy as np
import onnx

from edgequant.export.tflite import export_tflite
from edgequant.export.tflite.builder import load_model
from edgequant.export.tflite.layout import flatten_permutation, padding_mode
from edgequant.export.tflite.weights import narrow_int8, quantized_bias
from edgequant.graph.read_qdq import QConst
from edgequant.interp.tflite.reference import OP_NAMES
from edgequant.qparams import QParams
from edgequant.spec import PerChannel, QType


def _ops(path):
    m = load_model(path.read_bytes())
    sub = m.subgraphs[0]
    for op in sub.operators:
        name = OP_NAMES[m.operatorCodes[op.opcodeIndex].builtinCode]
        yield name, [sub.tensors[int(i)] if i >= 0 else None for i in op.inputs], \
            sub.tensors[int(op.outputs[0])], m


def test_weight_bias_conventions(tfl_models, tmp_path):
    res = export_tflite(onnx.load(tfl_models["ops"].qdq_path), tmp_path / "ops.tflite")
    seen = set()
    for name, ins, out, m in _ops(res.path):
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        seen.add(name)
        x, w, b = ins
        wv = np.frombuffer(bytes(m.buffers[w.buffer].data), np.int8).reshape(w.shape)
        assert wv.min() >= -127 and wv.max() <= 127  # narrow range
        assert not np.any(w.quantization.zeroPoint)  # symmetric
        axis = 3 if name == "DEPTHWISE_CONV_2D" else 0
        assert w.quantization.quantizedDimension == axis
        assert len(w.quantization.scale) == w.shape[axis]  # per channel
        bias_scale = (np.float32(x.quantization.scale[0]) *
                      np.asarray(w.quantization.scale, np.float32)).astype(np.float32)
        assert np.array_equal(np.asarray(b.quantization.scale, np.float32), bias_scale)
        assert b.type == 2 and not np.any(b.quantization.zeroPoint)  # INT32, zero point 0
        assert x.type == 9 and out.type == 9  # int8 activations
    assert seen == {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


def test_nchw_public_layout_single_transpose(tfl_models, tmp_path):
    """The public input keeps NCHW; one TRANSPOSE at the input, none around convolutions."""
    res = export_tflite(onnx.load(tfl_models["ops"].float_path), tmp_path / "f.tflite")
    assert res.ops.get("TRANSPOSE") == 1
    m = load_model(res.path.read_bytes())
    assert list(m.subgraphs[0].tensors[int(m.subgraphs[0].inputs[0])].shape) == [1, 3, 16, 16]


def _per_channel(scale: np.ndarray) -> QParams:
    return QParams(scale, np.zeros(scale.shape, np.int8), QType(8, True), PerChannel(0))


def test_wide_weights_requantized_to_narrow_range():
    """An ONNX int8 weight using −128 is requantized to [−127, 127], scale max|w|/127."""
    rng = np.random.default_rng(0)
    vals = rng.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8)
    vals[:, 0, 0, 0] = -128
    scale = rng.uniform(0.01, 0.02, 4).astype(np.float32)
    w = QConst(vals, _per_channel(scale))
    q, s = narrow_int8(w, 0, "w")
    assert q.min() >= -127
    assert np.allclose(s, 128 * scale / 127, rtol=1e-6)
    err = np.abs(q * s[:, None, None, None] - w.dequantized())
    assert np.all(err <= s[:, None, None, None] / 2 + 1e-9)
    # already narrow + symmetric: copied bit for bit
    vals = np.clip(vals, -127, 127)
    q2, s2 = narrow_int8(QConst(vals, _per_channel(scale)), 0, "w")
    assert np.array_equal(q2, vals) and np.array_equal(s2, scale)


def test_bias_requantized_when_scale_differs():
    w_scale = np.array([0.01, 0.02], np.float32)
    q, s = quantized_bias(np.array([0.5, -0.25], np.float32), 2, 0.1, w_scale)
    assert np.array_equal(s, (np.float32(0.1) * w_scale).astype(np.float32))
    assert q.tolist() == [500, -125] and q.dtype == np.int32


def test_flatten_permutation_matches_numpy():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # (N, C, H, W)
    perm = flatten_permutation(3, 4, 5)
    nhwc_flat = x.transpose(0, 2, 3, 1).reshape(2, -1)
    assert np.array_equal(nhwc_flat, x.reshape(2, -1)[:, perm])


def test_padding_mode():
    assert padding_mode((16, 16), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)) == "SAME"
    assert padding_mode((16, 16), (3, 3), (2, 2), (1, 1), (0, 0, 1, 1)) == "SAME"
    assert padding_mode((15, 15), (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)) == "SAME"
    assert padding_mode((16, 16), (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)) is None  # torch-style
    assert padding_mode((16, 16), (3, 3), (1, 1), (1, 1), (0, 0, 0, 0)) == "VALID"
