"""Float clean-up passes keep the model's outputs (onnxruntime as the oracle)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from float_models import cnn_bn, images

from edgequant.graph.passes.fold import fold_batchnorm, prepare_float

#: BN folding reassociates float32 products: a few ULP of the logits' magnitude.
FOLD_ATOL = 1e-5


def run(model, x):
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"input": x})[0]


def test_fold_batchnorm_removes_bn_and_keeps_outputs():
    model = cnn_bn()
    x = images(32)
    want = run(model, x)
    folded = fold_batchnorm(cnn_bn())
    assert "BatchNormalization" not in [n.op_type for n in folded.graph.node]
    np.testing.assert_allclose(run(folded, x), want, atol=FOLD_ATOL)


def test_prepare_float_keeps_outputs_and_opset():
    model = cnn_bn()
    x = images(8)
    prepared = prepare_float(cnn_bn())
    assert next(o.version for o in prepared.opset_import if o.domain == "") >= 21
    np.testing.assert_allclose(run(prepared, x), run(model, x), atol=FOLD_ATOL)
