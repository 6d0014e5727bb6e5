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

import numpy as np
import onnx
import pytest
import torch
from encoder_models import encoder, token_batch

import edgequant.torch as eqt
from edgequant.recipes.builtin import get_recipe
from edgequant.runtime.runners import open_runner
from edgequant.torch.capture import capture, qat_from_capture

IDS, MASK = token_batch(48)
#: float32 rounding of the float ops (LayerNorm, Softmax, GELU, pooling) between two engines;
#: one int8 step of any tensor moves the embedding by > 1e-3
FLOAT_TOL = 1e-5


@pytest.fixture(scope="module")
def trained():
    """The encoder captured, QAT-trained a few steps (weights off PTQ's grid) and converted."""
    cap = capture(encoder(), (IDS[:2], MASK[:2]))
    qat = qat_from_capture(cap, get_recipe("w8a8"), calibration=[(IDS[:32], MASK[:32])])
    batches = [(IDS[s:s + 8], MASK[s:s + 8]) for s in range(0, 48, 8)]
    eqt.fit_qat(qat, batches, teacher=encoder(), labels=False, distill="mse", lr=1e-3,
                show_progress=False, freeze_observers_step=3)
    return qat, eqt.convert(qat)


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
