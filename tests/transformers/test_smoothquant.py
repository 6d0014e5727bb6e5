"""SmoothQuant: the smoothed float model equals the original; the quantized error drops."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from tiny_bert import tokens

import edgequant as eq
from edgequant.errors import RecipeError
from edgequant.graph.passes.fold import prepare_float
from edgequant.graph.passes.mask_path import finite_mask_constants
from edgequant.ptq.transformer import smooth_model
from edgequant.recipes.transformer import with_transformer_rules

#: Smoothing is exact algebra; float32 rounding of γ/s and s·W moves outputs by ~1 ulp.
FLOAT_ATOL = 1e-5


def run(model: onnx.ModelProto, feeds) -> np.ndarray:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feeds)[0]


@pytest.mark.parametrize("alpha", [0.5, "search"])
def test_smoothed_float_model_equals_original(bert_onnx, alpha):
    model = prepare_float(finite_mask_constants(onnx.load(bert_onnx))[0])
    recipe, _ = with_transformer_rules(eq.get_recipe("w8a8"), model)
    before = Counter(n.op_type for n in model.graph.node)
    feeds = tokens(8, seed=4)
    ref = run(model, feeds)
    smoothed, rows = smooth_model(model, recipe, lambda: [tokens(16, seed=0)], alpha)
    after = Counter(n.op_type for n in smoothed.graph.node)
    assert rows and all(r["matmuls"] for r in rows)
    cloned = sum(r["cloned"] for r in rows)
    # post-LN BERT: the LayerNorm output is also the residual, so it is cloned; nothing else
    assert after - before == Counter({"LayerNormalization": cloned}) if cloned else after == before
    np.testing.assert_allclose(run(smoothed, feeds), ref, atol=FLOAT_ATOL, rtol=0)


def test_search_lowers_the_layer_error(bert_onnx):
    r = eq.get_recipe("w8a8").with_options(smoothquant_alpha="search")
    qm = eq.quantize(bert_onnx, r, tokens(32, seed=0))
    rows = qm.report["smoothquant"]
    assert rows and all(r["error_after"] <= r["error_before"] for r in rows)
    # the outlier LayerNorm feature (γ = 12) makes smoothing pay off somewhere
    assert sum(r["error_after"] for r in rows) < 0.8 * sum(r["error_before"] for r in rows)


@pytest.mark.parametrize("bad", [1.5, -0.1, "auto", True])
def test_bad_alpha_refused(bad):
    with pytest.raises(RecipeError, match="smoothquant_alpha"):
        eq.get_recipe("w8a8").with_options(smoothquant_alpha=bad)
