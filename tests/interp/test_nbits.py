"""MatMulNBits (int4 blockwise weights) and the DequantizeLinear(int4) → MatMul fusion
onnxruntime applies, vs onnxruntime.

The int8-activation path (accuracy_level 4) is exact up to the float32 accumulation of the
per-block products, whose order inside MLAS's SIMD kernel is not reproduced: results agree to
NBITS_RTOL of the output's magnitude (measured ≤ 1e-6 relative), not bit for bit. Without the
mirrored fusion the interpreter would be 0.06 (single op) / 0.002 (CNN logits) away.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from single_op import run_ort, run_ref

from edgequant.interp.fusions import fuse_dq_matmul_nbits
from edgequant.runtime.verify import run_onnxruntime, verify

#: float32 accumulation order of ~K/block partial products differs from MLAS: a few ulp of
#: the output's largest magnitude (measured 1e-6 relative; 10× margin).
NBITS_RTOL = 1e-5
#: the same models computed with float activations differ by ~1e-2 relative: the tolerance
#: above is far below what a wrong activation quantization would produce.
FLOAT_ACTIVATION_GAP = 1e-3


def nbits_model(k, n, block, accuracy, packed, scales, zp=None, m=5):
    inputs = ["A", "B", "S"] + (["Z"] if zp is not None else [])
    node = helper.make_node("MatMulNBits", inputs, ["Y"], domain="com.microsoft", K=k, N=n,
                            bits=4, block_size=block, accuracy_level=accuracy)
    inits = [numpy_helper.from_array(packed, "B"), numpy_helper.from_array(scales, "S")]
    if zp is not None:
        inits.append(numpy_helper.from_array(zp, "Z"))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("A", TensorProto.FLOAT,
                                                                         [m, k])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])],
                              initializer=inits)
    return helper.make_model(graph, ir_version=10, opset_imports=[
        helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), accuracy=st.sampled_from([0, 4]),
       with_zp=st.booleans(), block=st.sampled_from([16, 32, 128]))
def test_matmulnbits_vs_ort(seed, accuracy, with_zp, block):
    rng = np.random.default_rng(seed)
    k, n = int(rng.integers(8, 400)), int(rng.integers(1, 12))
    blocks = -(-k // block)
    codes = rng.integers(0, 16, (n, blocks * block)).astype(np.uint8)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).reshape(n, blocks, block // 2)
    scales = rng.uniform(0.01, 0.1, n * blocks).astype(np.float32)
    zp = None
    if with_zp:
        z = rng.integers(0, 16, (n, blocks + blocks % 2)).astype(np.uint8)
        zp = (z[:, 0::2] | (z[:, 1::2] << 4)).astype(np.uint8)
    a = rng.normal(0, 1, (5, k)).astype(np.float32)
    model = nbits_model(k, n, block, accuracy, packed, scales, zp)
    ours, theirs = run_ref(model, {"A": a})[0], run_ort(model, {"A": a})[0]
    scale = float(np.abs(theirs).max()) or 1.0
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=NBITS_RTOL * scale)


@pytest.fixture(scope="module")
def w4_model():
    from cnn_models import float_cnn, images

    from edgequant import quantize

    return quantize(float_cnn(), "w4a16_g128", calibration={"x": images(8)}).model


def test_fusion_mirrors_onnxruntime(w4_model):
    """ORT on our fused graph gives exactly what ORT gives on the QDQ graph it fuses itself."""
    from cnn_models import images

    fused = fuse_dq_matmul_nbits(w4_model)
    assert fused is not None and any(n.op_type == "MatMulNBits" for n in fused.graph.node)
    feeds = {"x": images(8, seed=2)}
    a, b = run_onnxruntime(w4_model, feeds), run_onnxruntime(fused, feeds)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_verify_weight_only_int4(w4_model):
    from cnn_models import images

    feeds = {"x": images(8, seed=2)}
    shipped = verify(w4_model, feeds)
    assert shipped.lowered
    scale = float(np.abs(run_onnxruntime(w4_model, feeds)["logits"]).max())
    assert shipped.ok(0, float_atol=NBITS_RTOL * scale)
    as_float = verify(w4_model, feeds, lower_qdq=False)  # float activations: visibly off
    assert as_float.outputs[0].max_diff > FLOAT_ACTIVATION_GAP * scale


def test_no_fusion_without_int4_matmul():
    from single_op import single_op_model

    model = single_op_model("Relu", {"x": np.ones(3, np.float32)}, {}, ["x"])
    assert fuse_dq_matmul_nbits(model) is None
    assert isinstance(model, onnx.ModelProto)
