"""The attention-mask path: found in SDPA and eager exports, -inf made finite without
changing the float model, all-padding rows finite instead of NaN."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from tiny_bert import LAYERS, tokens

from edgequant.graph.passes.mask_path import MASK_FILL, finite_mask_constants, mask_adds
from edgequant.recipes.transformer import attention_matmuls, is_transformer

#: Float outputs of the clamped model vs the original: the same ops on the same values,
#: except masked logits that underflow to exactly 0 either way.
FLOAT_ATOL = 1e-6


def run(model: onnx.ModelProto, feeds) -> np.ndarray:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feeds)[0]


def test_mask_adds_found_one_per_layer(bert_onnx):
    m = onnx.load(bert_onnx)
    adds = mask_adds(m)
    assert len(adds) == LAYERS
    assert all(a.op_type == "Add" for a in adds)
    assert len(attention_matmuls(m)) == LAYERS
    assert is_transformer(m)


def test_inf_mask_made_finite_same_float_outputs(bert_onnx):
    m = onnx.load(bert_onnx)
    feeds = tokens(8, seed=3)
    before = run(m, feeds)
    fixed, notes = finite_mask_constants(onnx.load(bert_onnx))
    assert len(notes) == 1 and "-inf" in notes[0]
    consts = [onnx.numpy_helper.to_array(t) for t in fixed.graph.initializer]
    assert all(np.isfinite(c).all() for c in consts if c.dtype == np.float32)
    assert any((c == np.float32(MASK_FILL)).any() for c in consts if c.dtype == np.float32)
    np.testing.assert_allclose(run(fixed, feeds), before, atol=FLOAT_ATOL)


def test_all_padding_row_finite_after_clamp(bert_onnx):
    feeds = tokens(4, seed=1)
    feeds["attention_mask"][2] = 0  # a row that is all padding
    fixed, _ = finite_mask_constants(onnx.load(bert_onnx))
    out = run(fixed, feeds)
    assert np.isfinite(out).all()


def test_data_tensors_are_not_mask(bert_onnx):
    """Embedding Gathers read int ids and a constant table: data, not mask."""
    from edgequant.graph.passes.mask_path import mask_tensors

    m = onnx.load(bert_onnx)
    masks = mask_tensors(m)
    gathers = [n.output[0] for n in m.graph.node if n.op_type == "Gather"]
    assert gathers and not set(gathers) & masks
    assert not any(n.op_type in ("Softmax", "LayerNormalization")
                   for n in m.graph.node if n.output[0] in masks)
