"""``analyze`` sweeps only the layers ``quantize`` really quantizes: on an encoder the
transformer rule set keeps the post-GELU MatMuls float, so they are not sensitivity layers."""

from __future__ import annotations

import onnx

from edgequant.analysis.layers import find_layers
from edgequant.graph.info import GraphInfo
from edgequant.graph.passes.fold import prepare_float
from edgequant.recipes import get_recipe
from edgequant.recipes.transformer import ffn_output_matmuls


def test_post_gelu_matmuls_kept_float_are_not_layers(bert_onnx):
    model = prepare_float(onnx.load(bert_onnx), [])
    post_gelu = set(ffn_output_matmuls(model, GraphInfo.build(model)))
    assert post_gelu  # the tiny BERT has them (one per layer)
    layers = {la.node for la in find_layers(model, get_recipe("w8a8"))}
    assert layers and not layers & post_gelu
    off = get_recipe("w8a8").with_options(transformer_rules="off")
    assert post_gelu <= {la.node for la in find_layers(model, off)}
