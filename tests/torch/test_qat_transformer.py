"""Whole-graph QAT on a BERT-like encoder (tests/torch/encoder_models.py): the plan is PTQ's
(transformer rules, int8 embedding tables), training deploys bit-for-bit within 1 LSB on
onnxruntime and the reference interpreter, float ops stay float, and bad input is refused
with errors naming the module and the op."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from encoder_models import TinyEncoder, encoder, token_batch

import edgequant
import edgequant.torch as eqt
from edgequant.errors import RecipeError, UnsupportedOpError
from edgequant.recipes.builtin import get_recipe
from edgequant.recipes.transformer import attention_matmuls
from edgequant.runtime.runners import open_runner
from edgequant.torch.capture import SKIP_RULE, capture, qat_from_capture

IDS, MASK = token_batch(48)
#: fake quant vs deployed integer codes: kernels accumulate in another order (onnxruntime:
#: exact int32 GEMM then a float32 multiplier; training: float32 GEMM), so a value within
#: float32 rounding of a rounding boundary may land one step apart — never more.
CODE_TOL = 1
#: Ops with no integer kernel that must compute in float in training and after convert.
FLOAT_OPS = {"LayerNormalization", "Softmax", "Gelu"}


@pytest.fixture(scope="module")
def cap():
    """The 2-layer encoder captured once (exporting is the slow part)."""
    return capture(encoder(), (IDS[:2], MASK[:2]))


def _feeds(qat, n: int | None = None) -> dict[str, np.ndarray]:
    return dict(zip(qat.input_names, (IDS[:n].numpy(), MASK[:n].numpy()), strict=True))


def _fq_codes(qat, tensors: list[str]) -> dict[str, np.ndarray]:
    """Integer codes of ``tensors`` in the eval-mode fake-quant forward."""
    qps = qat.activation_qparams()
    keep, qat.output_names = qat.output_names, tensors
    try:
        qat.eval()
        with torch.no_grad():
            vals = qat(IDS, MASK)
    finally:
        qat.output_names = keep
    vals = vals if isinstance(vals, tuple) else (vals,)
    return {t: np.round(v.numpy() / np.float32(qps[t].scale)) + np.asarray(qps[t].zero_point)
            for t, v in zip(tensors, vals, strict=True)}


def _deployed_codes(model: onnx.ModelProto, tensors: list[str], feeds: dict, engine=None
                    ) -> dict[str, np.ndarray]:
    """Outputs of each tensor's QuantizeLinear in the converted model, run on ``engine``."""
    q = {n.input[0]: n for n in model.graph.node if n.op_type == "QuantizeLinear"}
    types = {t.name: t.data_type for t in model.graph.initializer}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    for t in tensors:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(
            q[t].output[0], types[q[t].input[2]], None))
    out = open_runner(probe, engine).run(feeds)
    return {t: np.asarray(v).astype(np.float64) for t, v in zip(tensors, out, strict=True)}


def test_untrained_qat_converts_to_the_ptq_model(cap):
    """Same plan as edgequant.quantize: transformer rules, int8 embedding tables, qparams."""
    qat = qat_from_capture(cap, get_recipe("w8a8"), calibration=[(IDS[:32], MASK[:32])])
    ours = eqt.convert(qat)
    # QAT keeps the FFN-output MatMul float (per-row dynamic int8 is not simulated)
    w8a8 = get_recipe("w8a8").with_options(transformer_ffn_output="float")
    ptq = edgequant.quantize(cap.graph, w8a8, calibration=_feeds(qat, 32))
    assert set(ours.qparams) == set(ptq.qparams)
    assert all(ours.qparams[k] == ptq.qparams[k] for k in ptq.qparams)
    tables = [d.tensor for d in qat.plan.quantized("weight") if d.mode == "weight_only"]
    assert "tok.weight" in tables and set(tables) <= set(ours.qparams)  # int8 rows, as PTQ
    feeds = _feeds(qat)
    np.testing.assert_array_equal(open_runner(ours.model).run(feeds)[0],
                                  open_runner(ptq.model).run(feeds)[0])


def test_masked_fill_attention_is_recognised_and_deploys():
    """``scores.masked_fill(~mask, -inf)`` (a Where between Q·Kᵀ and Softmax) gets the
    transformer plan: the −inf fill becomes MASK_FILL (finite weights), Where / Softmax stay
    float, PTQ and untrained QAT give the same model, and the deployed model matches the float
    module (padded positions included: no NaN) in onnxruntime."""
    float_module = encoder(mask="masked_fill")
    cap_mf = capture(float_module, (IDS[:2], MASK[:2]))
    wheres = [n for n in cap_mf.graph.graph.node if n.op_type == "Where"]
    assert wheres and attention_matmuls(cap_mf.graph)
    qat = qat_from_capture(cap_mf, get_recipe("w8a8"), calibration=[(IDS[:32], MASK[:32])])
    assert {"Where", "Softmax"} <= {d.op_type for d in qat.plan.float_nodes()}
    ours = eqt.convert(qat)
    w8a8 = get_recipe("w8a8").with_options(transformer_ffn_output="float")
    ptq = edgequant.quantize(cap_mf.graph, w8a8, calibration=_feeds(qat, 32))
    feeds = _feeds(qat)
    got = open_runner(ours.model).run(feeds)[0]
    np.testing.assert_array_equal(got, open_runner(ptq.model).run(feeds)[0])
    with torch.no_grad():
        ref = float_module(IDS, MASK).numpy()
    cos = np.sum(got * ref, 1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert np.isfinite(got).all() and cos.min() > 0.99, cos.min()


def test_plan_keeps_the_attention_core_and_norms_float(cap):
    qat = qat_from_capture(cap, get_recipe("w8a8"))
    floats = {d.node: d for d in qat.plan.float_nodes()}
    ops = {d.op_type for d in floats.values()}
    assert FLOAT_OPS <= ops
    assert any("attention-mask path" in d.reason for d in floats.values())
    # Q/K/V/O and FFN-in MatMuls are int8 (8 of the 2 layers' 10 Linears + 4 attention
    # MatMuls); the MatMul after GELU stays float (transformer rule)
    static_mm = [d for d in qat.plan.nodes if d.op_type == "MatMul" and d.action == "quantize"]
    float_mm = [d for d in floats.values() if d.op_type == "MatMul"]
    assert len(static_mm) == 2 * (5 + 2) and len(float_mm) == 2
    # a weight quantizer per int8 Linear (Q, K, V, O, FFN-in) and one for the token table
    # (the position rows of a static length fold to a constant)
    assert len(qat.weight_quant) == 2 * 5 + 1


def test_trained_encoder_deploys_within_one_lsb(cap):
    qat = qat_from_capture(cap, get_recipe("w8a8"), calibration=[(IDS[:32], MASK[:32])])
    before = {k: v.detach().clone() for k, v in qat.named_parameters()}
    batches = [(IDS[s:s + 8], MASK[s:s + 8]) for s in range(0, 48, 8)]
    eqt.fit_qat(qat, batches, teacher=encoder(), labels=False, distill="mse", lr=1e-3,
                show_progress=False, freeze_observers_step=3)
    moved = [k for k, v in qat.named_parameters() if not torch.equal(v, before[k])]
    assert any("ff1" in k or k.startswith("params") for k in moved)  # training changed weights
    result = eqt.convert(qat)
    tensors = [k for k, d in qat.plan.tensors.items() if k in qat.activation_qparams()
               and k == d.tensor]
    assert len(tensors) >= 20
    fq = _fq_codes(qat, tensors)
    for engine, n in (("onnxruntime", None), ("reference", 8)):
        got = _deployed_codes(result.model, tensors, _feeds(qat, n),
                              None if engine == "onnxruntime" else engine)
        worst = {t: float(np.max(np.abs(got[t] - fq[t][:len(got[t])]))) for t in tensors}
        bad = {t: w for t, w in worst.items() if w > CODE_TOL}
        assert not bad, (engine, bad)
    ops = [n.op_type for n in result.model.graph.node]
    # float in both: the converted graph still computes LayerNorm / Softmax / Gelu in float,
    # between DequantizeLinear and QuantizeLinear, exactly as many as the float graph has
    float_count = {op: sum(n.op_type == op for n in cap.graph.graph.node) for op in FLOAT_OPS}
    assert {op: ops.count(op) for op in FLOAT_OPS} == float_count


def test_skip_keeps_a_transformer_block_float(cap):
    qat = qat_from_capture(cap, get_recipe("w8a8"), skip=["blocks.1.attn"])
    skipped = {d.op_type for d in qat.plan.float_nodes() if SKIP_RULE in d.reason}
    assert "MatMul" in skipped
    assert not any(k.startswith("blocks.1.attn") for k in
                   (d.tensor for d in qat.plan.quantized("weight")))


def test_skip_naming_nothing_lists_the_valid_names():
    with pytest.raises(RecipeError, match=r"'blocks\.0\.atn' matches no module.*'blocks\.0\.attn'"):
        eqt.prepare_qat(encoder(layers=1), "w8a8", example_inputs=(IDS[:2], MASK[:2]),
                        skip=["blocks.0.atn"])


class _CumPool(torch.nn.Module):
    """Pooling by a running sum: exports a CumSum, an op QAT has no torch kernel for."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(h, 1)[:, -1]


class _CumEncoder(TinyEncoder):
    def __init__(self) -> None:
        super().__init__(layers=1)
        self.pool = _CumPool()

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.pool(self.ln0(self.tok(ids)))


def test_an_op_qat_does_not_know_names_the_module_and_op():
    with pytest.raises(UnsupportedOpError, match=r"\(CumSum\) in module 'pool'"):
        eqt.prepare_qat(_CumEncoder().eval(), "w8a8", example_inputs=(IDS[:2], MASK[:2]))


class _EarlyExit(TinyEncoder):
    """Skips the blocks when every sequence is short: data-dependent Python control flow."""

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln0(self.tok(ids))
        if mask.sum() > 4:
            h = self.blocks[0](h, mask > 0)
        return h.mean(1)


@pytest.mark.slow
def test_an_encoder_export_cannot_capture_is_a_clear_error():
    with pytest.raises(eqt.TorchExportError, match="_EarlyExit cannot be exported"):
        eqt.prepare_qat(_EarlyExit(layers=1).eval(), "w8a8", example_inputs=(IDS[:2], MASK[:2]))
