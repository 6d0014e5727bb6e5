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

import edgequant.torch as eqt
from edgequant.recipes.builtin import get_recipe
from edgequant.runtime.runners import open_runner
from edgequant.torch.capture import capture, qat_from_capture
from edgequant.torch.integer_sim_litert_norm import rsqrt14, xnnpack_quantize, xnnpack_rsqrt
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
