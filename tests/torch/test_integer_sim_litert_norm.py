"""LiteRT's float RSQRT, QUANTIZE and SOFTMAX as ``kernels="litert"`` emulates them, against
LiteRT itself (XNNPACK delegate).

Oracles: one-op ``.tflite`` files (written with the exporter's flatbuffer builder) run by
LiteRT, and a trained 2-layer encoder's ``.tflite`` export with its LayerNorm and Softmax
outputs as extra outputs. Each test also shows that the oracle tells the emulation from what
was there before (``1/sqrt``, ``round(x / s)``, torch's softmax). The kernels emulated are
XNNPACK's AVX-512 ones: skipped on a CPU without AVX-512F, where LiteRT runs others.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from encoder_models import encoder, token_batch
from onnx import TensorProto, helper, numpy_helper

import edgequant.torch as eqt
from edgequant.export.tflite.export import export_tflite
from edgequant.recipes.builtin import get_recipe
from edgequant.runtime.runners import open_runner
from edgequant.torch.capture import capture, qat_from_capture
from edgequant.torch.integer_sim_litert_norm import (
    layer_norm_decomposed,
    rsqrt14,
    xnnpack_quantize,
    xnnpack_reduce_l2,
    xnnpack_rsqrt,
    xnnpack_sqrt,
)
from edgequant.torch.integer_sim_litert_softmax import xnnpack_softmax

pytest.importorskip("ai_edge_litert")
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from edgequant.export.tflite.builder import Quant, TFLiteBuilder


def _avx512f() -> bool:
    try:
        return " avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _avx512f(), reason="XNNPACK's AVX-512 kernels are emulated")
OP = schema.BuiltinOperator


def _one_op(code: int, x: np.ndarray, out_dtype=np.float32, out_quant: Quant | None = None,
            options: tuple = (0, None)) -> np.ndarray:
    """LiteRT's output of a one-op ``.tflite`` (input ``x``, same-shaped output)."""
    b = TFLiteBuilder()
    i = b.add_tensor("x", x.shape, x.dtype)
    o = b.add_tensor("y", x.shape, out_dtype, quant=out_quant)
    b.add_op(code, [i], [o], *options)
    b.inputs, b.outputs = [i], [o]
    it = Interpreter(model_content=b.finish(), num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


def test_rsqrt14_known_values():
    """Exact powers of four are exact; the estimate is within Intel's 2⁻¹⁴ bound."""
    x = np.array([1.0, 4.0, 0.25, 2.0 ** -100, 0.0, np.inf], np.float32)
    assert np.array_equal(rsqrt14(x), [1.0, 0.5, 2.0, 2.0 ** 50, np.inf, 0.0])
    v = np.random.default_rng(0).uniform(1e-3, 1e3, 10000).astype(np.float32)
    rel = np.abs(rsqrt14(v) * np.sqrt(v.astype(np.float64)) - 1)
    assert rel.max() < 2.0 ** -14 and rel.max() > 2.0 ** -17  # an estimate, not 1/sqrt


def test_rsqrt_equals_litert_bit_for_bit():
    """Every 8th float32 of [1, 4) (the two binades that fix the table) and random bit
    patterns of every exponent (subnormals flushed, as XNNPACK runs)."""
    m = np.arange(0, 1 << 23, 8, dtype=np.uint32)
    bits = np.concatenate([(127 << 23) | m, (128 << 23) | m, np.random.default_rng(1).integers(
        0, 0x7F800000, 1 << 18, dtype=np.uint32), np.array([0, 0x7F800000], np.uint32)])
    x = bits.view(np.float32)
    got = _one_op(OP.RSQRT, x)
    ours = xnnpack_rsqrt(torch.from_numpy(x)).numpy()
    assert np.array_equal(ours.view(np.uint32), got.view(np.uint32))
    normal = x > np.finfo(np.float32).tiny
    before = (np.float32(1) / np.sqrt(x[normal])).astype(np.float32)  # the old emulation
    assert np.mean(before != got[normal]) > 0.2


def test_sqrt_equals_litert_bit_for_bit():
    """XNNPACK's SQRT is ``x · rsqrt(x)`` with the refined estimate, not correctly rounded."""
    m = np.arange(0, 1 << 23, 16, dtype=np.uint32)
    bits = np.concatenate([(127 << 23) | m, (128 << 23) | m, np.random.default_rng(3).integers(
        0, 0x7F800000, 1 << 16, dtype=np.uint32), np.array([0], np.uint32)])
    x = bits.view(np.float32)
    got = _one_op(OP.SQRT, x)
    assert np.array_equal(xnnpack_sqrt(torch.from_numpy(x)).numpy().view(np.uint32),
                          got.view(np.uint32))
    assert np.mean(np.sqrt(x) != got) > 0.2


def _float_model(node: onnx.NodeProto, shape: tuple, out_shape: tuple, inits: list
                 ) -> onnx.ModelProto:
    graph = helper.make_graph([node], "m", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, shape)], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, out_shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("width", [16, 100, 384])
def test_layer_norm_equals_litert_bit_for_bit(tmp_path, width):
    """A float LayerNormalization exported (MEAN, SUB, MUL, MEAN, ADD ε, RSQRT, MUL, MUL γ,
    ADD β) and run by LiteRT: XNNPACK turns ``MEAN(d·d)`` into a fused mean of squares (FMAs)
    — above 64 values wide that differs from MEAN of the products — and RSQRT is the
    refined hardware estimate."""
    rng = np.random.default_rng(width)
    shape = (4, 32, width)
    gamma = rng.uniform(0.5, 1.5, width).astype(np.float32)
    beta = (rng.standard_normal(width) * 0.1).astype(np.float32)
    node = helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1,
                            epsilon=1e-12)
    path = tmp_path / "ln.tflite"
    export_tflite(_float_model(node, shape, shape, [numpy_helper.from_array(gamma, "g"),
                                                    numpy_helper.from_array(beta, "b")]), path)
    x = (rng.standard_normal(shape) * 2 + 0.3).astype(np.float32)
    x[..., 3] += 30.0  # an outlier dimension, as in MiniLM's residual stream
    got = np.asarray(open_runner(path).run({"x": x})[0]).reshape(shape)
    g, b = torch.from_numpy(gamma), torch.from_numpy(beta)
    ours = layer_norm_decomposed(torch.from_numpy(x), g, b, 1e-12).numpy()
    assert np.array_equal(ours, got)
    x_t = torch.from_numpy(x)
    assert not np.array_equal(torch.nn.functional.layer_norm(x_t, (width,), g, b, 1e-12)
                              .numpy(), got)


def test_l2_norm_equals_litert_bit_for_bit(tmp_path):
    """ReduceL2 over the last axis (the sentence embedding's norm): MUL, SUM (rewritten to a
    fused sum of squares), SQRT."""
    x = (np.random.default_rng(4).standard_normal((64, 384)) * 0.3).astype(np.float32)
    node = helper.make_node("ReduceL2", ["x", "axes"], ["y"], keepdims=1)
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    path = tmp_path / "l2.tflite"
    export_tflite(_float_model(node, x.shape, (64, 1), [axes]), path)
    got = np.asarray(open_runner(path).run({"x": x})[0]).reshape(64, 1)
    ours = xnnpack_reduce_l2(torch.from_numpy(x), 1, True).numpy()
    assert np.array_equal(ours, got)
    assert not np.array_equal(np.sqrt((x * x).sum(1, keepdims=True)), got)


def test_quantize_equals_litert_bit_for_bit():
    """float → int8 QUANTIZE near every rounding boundary: ``round(x · fl(1/s))``."""
    rng = np.random.default_rng(2)
    wrong = 0
    for s, zp in ((0.0173, 3), (0.0049, -128), (0.121, -7), (0.00392157, 0)):
        s = np.float32(s)
        k = rng.integers(-140, 140, 50000).astype(np.float32) + np.float32(0.5)
        x = ((k * s).view(np.int32) + rng.integers(-2, 3, k.shape).astype(np.int32)
             ).view(np.float32)  # within 2 ULP of a half step
        got = _one_op(OP.QUANTIZE, x, np.int8, Quant.of(s, zp)).astype(np.float32)
        ours = xnnpack_quantize(torch.from_numpy(x), s, zp, -128, 127).numpy()
        assert np.array_equal(ours, got)
        wrong += int(np.sum(np.clip(np.rint(x / s) + zp, -128, 127) != got))
    assert wrong > 1000  # fake quantization's round(x / s) lands elsewhere


@pytest.mark.parametrize("width", [8, 32, 100])
def test_softmax_equals_litert_bit_for_bit(width):
    """Attention-like rows: masked columns at float32's minimum, and logits wide enough to
    push exponentials into flushed subnormals."""
    rng = np.random.default_rng(width)
    x = (rng.standard_normal((600, width)) * 4).astype(np.float32)
    x[::3, width // 2:] += np.finfo(np.float32).min  # additive padding mask
    x[1::3] *= 8
    opt = schema.SoftmaxOptionsT()
    opt.beta = 1.0
    got = _one_op(OP.SOFTMAX, x, options=(schema.BuiltinOptions.SoftmaxOptions, opt))
    ours = xnnpack_softmax(torch.from_numpy(x)).numpy()
    assert np.array_equal(ours, got)
    assert np.mean(torch.softmax(torch.from_numpy(x), -1).numpy() != got) > 0.2


IDS, MASK = token_batch(48)


def test_encoder_layernorm_and_softmax_equal_litert(tmp_path, monkeypatch):
    """A calibrated 2-layer encoder: every LayerNorm and Softmax output of the ``"litert"`` eval
    forward (before its fake quantization) equals LiteRT's float tensor bit for bit, and so do
    the embeddings (mean pooling's SUM in XNNPACK's order). torch's LayerNorm / softmax on
    LiteRT's own inputs do not reproduce LiteRT (before: embeddings 3.6e-7 apart)."""
    torch.manual_seed(0)
    cap = capture(encoder(), (IDS[:2], MASK[:2]))
    qat = qat_from_capture(cap, get_recipe("w8a8"), calibration=[(IDS[:32], MASK[:32])])
    result = eqt.convert(qat)
    ops = {n.outputs[0]: n for n in qat.nodes if n.op_type in ("LayerNormalization", "Softmax")}
    inputs = [n.inputs[0] for n in ops.values()]
    tensors = [*ops, *inputs]
    probe = onnx.ModelProto()
    probe.CopyFrom(result.model)
    for t in tensors:  # float tensors of the QDQ graph as extra LiteRT outputs
        probe.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT,
                                                                     None))
    fixed = {d.dim_param: int(IDS.shape[i]) for vi in result.model.graph.input
             for i, d in enumerate(vi.type.tensor_type.shape.dim) if d.dim_param}
    path = replace(result, model=probe).save(tmp_path / "probe.tflite", fixed_dims=fixed)
    out = open_runner(path).run(dict(zip(qat.input_names, (IDS.numpy(), MASK.numpy()),
                                         strict=True)))
    got = dict(zip(tensors, out[1:], strict=True))
    raw: dict[str, torch.Tensor] = {}  # each tensor before its fake quantization
    quantize = qat._quantize
    monkeypatch.setattr(qat, "_quantize", lambda name, x: raw.setdefault(name, x) is None or
                        quantize(name, x))
    qat.eval()
    qat.kernels = "litert"
    with torch.no_grad():
        emb = qat(IDS, MASK).numpy()
    assert len(ops) == 7  # 2 × (LayerNorm, Softmax, LayerNorm) + the embedding LayerNorm
    for t in ops:
        assert np.array_equal(raw[t].numpy(), np.asarray(got[t]).reshape(raw[t].shape)), t
    assert np.array_equal(emb, np.asarray(out[0]).reshape(emb.shape))  # pooling SUM included
    # the oracle can tell: torch's kernels on LiteRT's own inputs
    differ = 0
    with torch.no_grad():
        for t, node in ops.items():
            x = torch.from_numpy(np.asarray(got[node.inputs[0]]))
            if node.op_type == "Softmax":
                y = torch.softmax(x, -1)
            else:
                y = torch.nn.functional.layer_norm(x, x.shape[-1:], qat.value(node.inputs[1]),
                                                   qat.value(node.inputs[2]))
            differ += not np.array_equal(y.numpy(), np.asarray(got[t]).reshape(y.shape))
    assert differ == len(ops)
