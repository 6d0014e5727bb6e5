"""onnxruntime's float kernels as ``kernels="onnxruntime"`` emulates them, against onnxruntime.

The oracle is onnxruntime itself (CPU execution provider, default graph optimizations, opened
like every edgequant session) running small float graphs with dynamic leading dimensions, as
the converted models have them: a bias Add + Gelu (fused to ``BiasGelu``), Softmax over the
last axis with an additive padding mask, a MatMul with a constant weight + bias Add (MLAS
SGEMM, K-blocked), LayerNormalization. Each check also asserts that torch's own op differs
from onnxruntime on the same inputs (the difference the emulation removes), and the trained
2-layer encoder's eval forward is compared with the converted model tensor by tensor.

The kernels are what runs on x86-64 with AVX-512F + FMA (onnxruntime 1.31.1); other CPUs
dispatch other MLAS kernels.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from encoder_models import token_batch, trained_encoder
from onnx import TensorProto, helper, numpy_helper

from edgequant.runtime.runners import open_runner
from edgequant.runtime.sessions import ort_session
from edgequant.torch.integer_sim_ort_float import (
    fma32,
    mlas_sgemm,
    mlas_softmax,
    ort_gelu,
    ort_layer_norm,
)

IR_VERSION = 10  # onnxruntime 1.31 reads IR ≤ 13


def _run(nodes, x: np.ndarray, inits: dict[str, np.ndarray], outputs=("y",), tmp_path=None
         ) -> tuple[list[np.ndarray], list[str]]:
    """Run a float graph on input ``x`` (leading dims dynamic, last dim fixed); returns the
    outputs and the op types onnxruntime ran after its optimizations."""
    dims = [f"d{i}" for i in range(x.ndim - 1)] + [x.shape[-1]]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)],
                              ir_version=IR_VERSION)
    path = tmp_path / "opt.onnx"
    session = ort_session(model.SerializeToString(), optimized_model_path=path)
    ran = [n.op_type for n in onnx.load(path).graph.node]
    return session.run(None, {"x": x}), ran


def test_fma32_rounds_once():
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(100_000).astype(np.float32) for _ in range(3))
    ld = (a.astype(np.longdouble) * b + c).astype(np.float32)  # 64-bit significand
    got = fma32(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)).numpy()
    assert np.array_equal(got, ld)
    # a·b = 2⁻²⁴·(1 + 3.6e-10): 1 + a·b rounds to float64 exactly on the float32 midpoint
    # 1 + 2⁻²⁴; one rounding (the long double check) goes up, float64-then-float32 to even
    a, b = np.float32(1.429774), np.float32(4.1688157e-08)
    exact = (np.longdouble(a) * np.longdouble(b) + 1).astype(np.float32)
    assert exact == np.float32(1.0 + 2.0 ** -23)
    assert np.float32(np.float64(a) * np.float64(b) + 1.0) != exact
    assert float(fma32(torch.tensor([a]), torch.tensor([b]), torch.tensor([1.0]))) == exact


def test_gelu_equals_onnxruntime_bias_gelu(tmp_path):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((16, 32, 1536)) * 1.6).astype(np.float32)  # (N, S, F)
    x[0, 0, :512] = np.linspace(-7.0, 7.0, 512)  # erf's split (|x|/√2 = 0.92) and clamp
    bias = (0.3 * rng.standard_normal(1536)).astype(np.float32)
    (y,), ran = _run([helper.make_node("Add", ["x", "b"], ["v"]),
                      helper.make_node("Gelu", ["v"], ["y"])], x, {"b": bias},
                     tmp_path=tmp_path)
    assert ran == ["BiasGelu"]
    v = torch.from_numpy(x) + torch.from_numpy(bias)  # float32, as BiasGelu adds
    assert np.array_equal(ort_gelu(v).numpy(), y)
    assert not np.array_equal(torch.nn.functional.gelu(v).numpy(), y)


def test_softmax_equals_onnxruntime(tmp_path):
    rng = np.random.default_rng(2)
    for s, spread in ((32, 3), (7, 3), (50, 3), (32, 40)):  # 16 lanes: whole, partial, 48 + 2
        # spread 40: exp(x − max) down to the clamp and subnormal results
        x = (rng.standard_normal((8, 12, s, s)) * spread).astype(np.float32)  # (N, H, S, S)
        pad = rng.random((8, 1, 1, s)) < 0.3
        x = x + np.where(pad, np.finfo(np.float32).min, 0).astype(np.float32)  # mask
        (y,), ran = _run([helper.make_node("Softmax", ["x"], ["y"], axis=-1)], x, {},
                         tmp_path=tmp_path)
        assert ran == ["Softmax"]
        assert np.array_equal(mlas_softmax(torch.from_numpy(x)).numpy(), y), s
        assert not np.array_equal(torch.softmax(torch.from_numpy(x), -1).numpy(), y)


def test_matmul_equals_onnxruntime_sgemm(tmp_path):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 32, 1536)).astype(np.float32)  # (N, S, K): GELU output
    w = (0.03 * rng.standard_normal((1536, 384))).astype(np.float32)
    bias = (0.1 * rng.standard_normal(384)).astype(np.float32)
    (y,), ran = _run([helper.make_node("MatMul", ["x", "w"], ["m"]),
                      helper.make_node("Add", ["m", "b"], ["y"])], a, {"w": w, "b": bias},
                     tmp_path=tmp_path)
    assert ran == ["MatMul", "Add"]
    at, wt, bt = torch.from_numpy(a), torch.from_numpy(w), torch.from_numpy(bias)
    assert np.array_equal((mlas_sgemm(at, wt) + bt).numpy(), y)
    assert not np.array_equal((at @ wt + bt).numpy(), y)
    assert not np.array_equal((mlas_sgemm(at, wt, stride_k=128) + bt).numpy(), y)


def test_layer_norm_equals_onnxruntime(tmp_path):
    rng = np.random.default_rng(4)
    for width, eps in ((384, 1e-12), (16, 1e-5)):  # MiniLM; the test encoder
        x = (rng.standard_normal((16, 32, width)) * 2 + 0.3).astype(np.float32)
        x[..., 7] += 30.0  # an outlier dimension, as in MiniLM's residual stream
        g = (1 + 0.1 * rng.standard_normal(width)).astype(np.float32)
        b = (0.1 * rng.standard_normal(width)).astype(np.float32)
        (y,), ran = _run([helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"],
                                           epsilon=eps)], x, {"g": g, "b": b},
                         tmp_path=tmp_path)
        assert ran == ["LayerNormalization"]
        xt, gt, bt = torch.from_numpy(x), torch.from_numpy(g), torch.from_numpy(b)
        assert np.array_equal(ort_layer_norm(xt, gt, bt, eps).numpy(), y), width
        ref = torch.nn.functional.layer_norm(xt, (width,), gt, bt, eps).numpy()
        assert not np.array_equal(ref, y)


IDS, MASK = token_batch(48)


@pytest.fixture(scope="module")
def trained():
    return trained_encoder(IDS, MASK)


def test_encoder_float_tensors_before_quantize_equal_onnxruntime(trained):
    """Every float tensor a QuantizeLinear reads in the converted encoder, as onnxruntime
    computes it, against the ``kernels="onnxruntime"`` eval forward: LayerNorm and Softmax
    outputs and the bias Adds, bit for bit (the integer codes:
    ``test_integer_sim_transformer.py``)."""
    qat, result = trained
    model = result.model
    producer = {o: n for n in model.graph.node for o in n.output}
    tensors = [n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"
               and n.input[0] in producer
               and producer[n.input[0]].op_type in ("LayerNormalization", "Softmax", "Add")]
    kinds = {producer[t].op_type for t in tensors}
    assert kinds == {"LayerNormalization", "Softmax", "Add"}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for t in tensors:  # float outputs of float ops: extra graph outputs fuse nothing away
        probe.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
    feeds = dict(zip(qat.input_names, (IDS.numpy(), MASK.numpy()), strict=True))
    got = dict(zip(tensors, open_runner(probe).run(feeds)[1:], strict=True))
    seen: dict[str, torch.Tensor] = {}
    quantize = qat._quantize

    def record(name, x):  # the float value each fake quantizer (each Q) reads
        seen[name] = x.detach().clone()
        return quantize(name, x)

    qat._quantize = record
    try:
        qat.eval()
        qat.kernels = "onnxruntime"
        with torch.no_grad():
            qat(IDS, MASK)
    finally:
        del qat._quantize
    for t in tensors:
        ours = seen[t].numpy()
        ort = np.asarray(got[t]).reshape(ours.shape)
        assert np.array_equal(ours, ort), t
    # the oracle can tell: torch's LayerNorm / softmax of onnxruntime's own inputs differ
    ln = [t for t in tensors if producer[t].op_type == "LayerNormalization"]
    sm = next(t for t in tensors if producer[t].op_type == "Softmax")
    probe = with_outputs(probe, [producer[t].input[0] for t in [*ln, sm]])
    ins = open_runner(probe).run(feeds)[-len(ln) - 1:]
    scores = torch.from_numpy(np.asarray(ins[-1]))
    assert not np.array_equal(torch.softmax(scores, -1).numpy(), np.asarray(got[sm]))
    inits = {i.name: torch.from_numpy(numpy_helper.to_array(i)) for i in model.graph.initializer}
    differs = []
    for t, x in zip(ln, ins[:-1], strict=True):
        node = producer[t]
        eps = next(helper.get_attribute_value(a) for a in node.attribute if a.name == "epsilon")
        g, b = inits[node.input[1]], inits[node.input[2]]
        ref = torch.nn.functional.layer_norm(torch.from_numpy(np.asarray(x)), g.shape, g, b, eps)
        differs.append(not np.array_equal(ref.numpy(), np.asarray(got[t]).reshape(ref.shape)))
    assert any(differs)


def with_outputs(model: onnx.ModelProto, tensors: list[str]) -> onnx.ModelProto:
    """``model`` with the float ``tensors`` as extra (last) graph outputs."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None)
                          for t in tensors)
    return m
