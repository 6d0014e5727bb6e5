"""Plain ``w8a8`` on SDPA / eager BERT exports with a -inf mask: no Inf calibration error,
embeddings int8, dynamic dims kept, 0 LSB against onnxruntime, bad inputs handled."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from tiny_bert import tokens

import edgequant as eq
from edgequant.errors import CalibrationError

#: Mean cosine of the tiny random BERT's pooled output to float (random weights quantize
#: well; the real MiniLM bars are in the slow test and bench/transformer_int8.py).
MIN_COSINE = 0.99
#: int8 tables and weights: the file shrinks at least this much (LayerNorm params,
#: biases and scales stay float on a 64-wide model).
MAX_SIZE_RATIO = 0.4


def run(model, feeds) -> np.ndarray:
    data = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    s = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return s.run(None, feeds)[0]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def quantized(bert_onnx):
    return eq.quantize(bert_onnx, "w8a8", tokens(32, seed=0))


def test_w8a8_runs_and_matches_float(bert_onnx, quantized):
    feeds = tokens(24, seed=7)
    c = cosines(run(onnx.load(bert_onnx), feeds), run(quantized.model, feeds))
    assert c.mean() >= MIN_COSINE
    notes = " ".join(quantized.report["notes"])
    assert "transformer rule" in notes and "attention-mask constant" in notes


def test_embedding_tables_int8_and_size(bert_onnx, quantized, tmp_path):
    gathers = [n for n in quantized.model.graph.node if n.op_type == "Gather"]
    inits = {t.name: t for t in quantized.model.graph.initializer}
    tables = [inits[n.input[0]] for n in gathers if n.input[0] in inits
              and len(inits[n.input[0]].dims) == 2 and inits[n.input[0]].dims[1] > 1]
    assert len(tables) == 3 and all(t.data_type == onnx.TensorProto.INT8 for t in tables)
    out = quantized.save(tmp_path / "q.onnx")
    import os
    assert os.path.getsize(out) / os.path.getsize(bert_onnx) <= MAX_SIZE_RATIO


def test_dynamic_batch_and_sequence_dims_kept(quantized):
    for vi in quantized.model.graph.input:
        dims = [d.dim_param for d in vi.type.tensor_type.shape.dim]
        assert dims == ["batch", "sequence"], vi.name
    for n, seq in ((1, 5), (3, 11)):
        out = run(quantized.model, tokens(n, seq=seq, seed=n))
        assert out.shape[0] == n and np.isfinite(out).all()


def test_verifies_at_zero_lsb(quantized):
    report = eq.verify(quantized.model, tokens(6, seed=5), isolate_integer=True)
    assert report.max_lsb == 0


def test_mixed_length_calibration_batches(bert_onnx):
    batches = [tokens(8, seq=6, seed=1), tokens(8, seq=16, seed=2), tokens(4, seq=11, seed=3)]
    qm = eq.quantize(bert_onnx, "w8a8", iter(batches))
    c = cosines(run(onnx.load(bert_onnx), tokens(8, seed=9)), run(qm.model, tokens(8, seed=9)))
    assert c.mean() >= MIN_COSINE


def test_mismatched_sequence_lengths_refused(bert_onnx):
    bad = tokens(4, seq=16)
    bad["attention_mask"] = bad["attention_mask"][:, :8]
    with pytest.raises(CalibrationError, match=r"attention_mask.*sequence|sequence.*attention_mask"):
        eq.quantize(bert_onnx, "w8a8", [bad])


def test_all_padding_rows_stay_finite(quantized):
    feeds = tokens(4, seed=2)
    feeds["attention_mask"][1] = 0
    feeds["input_ids"][1] = 0
    out = run(quantized.model, feeds)
    assert np.isfinite(out).all()


def test_transformer_rules_off_collapses_onto_the_mask(bert_onnx):
    """Without the rules the -inf (now -1e30) mask is calibrated into the scores' grid."""
    r = eq.get_recipe("w8a8").with_options(transformer_rules="off")
    qm = eq.quantize(bert_onnx, r, tokens(16, seed=0))
    feeds = tokens(16, seed=7)
    c = cosines(run(onnx.load(bert_onnx), feeds), run(qm.model, feeds))
    assert c.mean() < MIN_COSINE


def test_model_without_mask_input(tmp_path):
    """No attention_mask input (Hugging Face builds an all-ones mask from the shape)."""
    from tiny_bert import export, tiny_bert

    path = export(tiny_bert("sdpa", with_mask=False), tmp_path / "nomask.onnx",
                  names=("input_ids",))
    ids = {"input_ids": tokens(16, seed=0)["input_ids"]}
    qm = eq.quantize(path, "w8a8", ids)
    assert any("transformer rule" in n for n in qm.report["notes"])
    ev = {"input_ids": tokens(8, seed=4)["input_ids"]}
    assert cosines(run(onnx.load(path), ev), run(qm.model, ev)).mean() >= MIN_COSINE
