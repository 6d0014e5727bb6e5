"""A trained 2-layer BERT-like encoder's eval forward equals the deployed model.

onnxruntime (the oracle): every quantized tensor's integer codes are identical (0 LSB) —
QLinearMatMul emulated for Q/K/V/O, FFN-in, Q·Kᵀ and P·V. LiteRT: the ``.tflite`` export runs
the projections as FULLY_CONNECTED with the bias folded into the int32 accumulator, requantizes
the right-hand BATCH_MATMUL operand to zero point 0 and hands float ops the unrounded float
tensors; with ``kernels="litert"`` emulating that, the embeddings differ only by float32
rounding of the float ops (LayerNorm is decomposed into MEAN / RSQRT / ... in the ``.tflite``).
Without it they were 0.03 apart (several LSB of the int8 tensors).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch
from encoder_models import token_batch, trained_encoder

from edgequant.runtime.runners import open_runner

IDS, MASK = token_batch(48)
#: float32 rounding of the float ops (LayerNorm, Softmax, GELU, pooling) between two engines;
#: one int8 step of any tensor moves the embedding by > 1e-3
FLOAT_TOL = 1e-5


@pytest.fixture(scope="module")
def trained():
    """The encoder captured, QAT-trained a few steps (weights off PTQ's grid) and converted."""
    return trained_encoder(IDS, MASK)


def _feeds(qat) -> dict[str, np.ndarray]:
    return dict(zip(qat.input_names, (IDS.numpy(), MASK.numpy()), strict=True))


def _eval(qat, kernels: str, outputs: list[str] | None = None) -> tuple[torch.Tensor, ...]:
    keep = qat.output_names
    qat.output_names = outputs or keep
    qat.eval()
    qat.kernels = kernels
    try:
        with torch.no_grad():
            y = qat(IDS, MASK)
    finally:
        qat.output_names = keep
    return y if isinstance(y, tuple) else (y,)


def test_every_quantized_tensor_equals_onnxruntime(trained):
    qat, result = trained
    acts = qat.activation_qparams()
    tensors = [k for k, d in qat.plan.tensors.items() if k in acts and k == d.tensor]
    mm = [n for n in qat.nodes if n.op_type == "MatMul" and n.outputs[0] in tensors]
    assert len(tensors) >= 20 and len(mm) == 2 * 7  # Q, K, V, O, FFN-in, Q·Kᵀ, P·V per layer
    q = {n.input[0]: n for n in result.model.graph.node if n.op_type == "QuantizeLinear"}
    types = {t.name: t.data_type for t in result.model.graph.initializer}
    probe = onnx.ModelProto()
    probe.CopyFrom(result.model)
    del probe.graph.output[:]
    for t in tensors:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(
            q[t].output[0], types[q[t].input[2]], None))
    got = open_runner(probe).run(_feeds(qat))
    vals = _eval(qat, "onnxruntime", tensors)
    worst = {}
    for t, v, g in zip(tensors, vals, got, strict=True):
        codes = np.round(v.numpy() / np.float32(acts[t].scale)) + np.asarray(acts[t].zero_point)
        worst[t] = float(np.max(np.abs(codes - np.asarray(g, np.float64))))
    assert not any(worst.values()), {t: w for t, w in worst.items() if w}


def test_litert_kernels_equal_litert_up_to_float_rounding(trained, tmp_path):
    pytest.importorskip("ai_edge_litert")
    qat, result = trained
    fixed = {d.dim_param: int(IDS.shape[i]) for vi in result.model.graph.input
             for i, d in enumerate(vi.type.tensor_type.shape.dim) if d.dim_param}
    runner = open_runner(result.save(tmp_path / "enc.tflite", fixed_dims=fixed))
    got = np.asarray(runner.run(_feeds(qat))[0])  # (48, 16) float32 embeddings
    fq = _eval(qat, "litert")[0].numpy()
    assert float(np.max(np.abs(fq - got))) <= FLOAT_TOL


def _float_ffn_tensors(qat) -> tuple[list[str], list[str]]:
    """(GELU inputs then GELU outputs, FFN-out bias-Add outputs) of every block: the float
    tensors LiteRT computes with XNNPACK's float GELU and FULLY_CONNECTED."""
    by_out = {n.outputs[0]: n for n in qat.nodes}
    gelus = [n for n in qat.nodes if n.op_type == "Gelu"]
    ffn_out = []
    for g in gelus:
        mm = next(n for n in qat.nodes if n.op_type == "MatMul" and n.inputs[0] == g.outputs[0])
        ffn_out.append(next(n.outputs[0] for n in qat.nodes
                            if n.op_type == "Add" and mm.outputs[0] in n.inputs))
    assert all(g.inputs[0] in by_out for g in gelus)
    return [g.inputs[0] for g in gelus] + [g.outputs[0] for g in gelus], ffn_out


def test_litert_float_gelu_and_fully_connected_equal_litert_exactly(trained, tmp_path):
    """The float GELU and the float FFN-out FULLY_CONNECTED (bias folded) of the
    ``kernels="litert"`` forward equal LiteRT's float32 values bit for bit (XNNPACK's rational
    erf and its in-order FMA GEMM, ``torch/integer_sim_float.py``); torch's own GELU and
    GEMM on LiteRT's inputs do not — the difference that flipped int8 codes of MiniLM."""
    pytest.importorskip("ai_edge_litert")
    qat, result = trained
    gelu_io, ffn_out = _float_ffn_tensors(qat)
    tensors = gelu_io + ffn_out
    probe = onnx.ModelProto()
    probe.CopyFrom(result.model)
    for t in tensors:  # float tensors of the QDQ graph, as extra LiteRT outputs
        probe.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT,
                                                                     None))
    fixed = {d.dim_param: int(IDS.shape[i]) for vi in result.model.graph.input
             for i, d in enumerate(vi.type.tensor_type.shape.dim) if d.dim_param}
    path = replace(result, model=probe).save(tmp_path / "probe.tflite", fixed_dims=fixed)
    got = dict(zip(tensors, open_runner(path).run(_feeds(qat))[1:], strict=True))
    emulated = dict(zip(tensors, _eval(qat, "litert", tensors), strict=True))
    for t in tensors:
        assert np.array_equal(emulated[t].numpy(), np.asarray(got[t]).reshape(emulated[t].shape)), t
    # the oracle can tell: torch's float32 GELU / GEMM on LiteRT's own inputs differ
    n = len(ffn_out)
    x = torch.from_numpy(np.asarray(got[gelu_io[0]]))
    assert not np.array_equal(torch.nn.functional.gelu(x).numpy(), got[gelu_io[n]])
    mm = next(m for m in qat.nodes if m.op_type == "MatMul" and m.inputs[0] == gelu_io[n])
    add = next(a for a in qat.nodes if a.op_type == "Add" and mm.outputs[0] in a.inputs)
    bias = add.inputs[1] if add.inputs[0] == mm.outputs[0] else add.inputs[0]
    with torch.no_grad():
        y = torch.from_numpy(np.asarray(got[gelu_io[n]])) @ qat.value(mm.inputs[1]) + \
            qat.value(bias)
    assert not np.array_equal(y.numpy(), np.asarray(got[ffn_out[0]]))
