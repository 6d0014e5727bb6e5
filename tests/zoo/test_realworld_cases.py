"""The real-world feature models are valid ONNX that onnxruntime runs (the oracle)."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgequant_zoo.realworld import CASES


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_is_valid_and_runs_in_onnxruntime(name):
    case = CASES[name]()
    onnx.checker.check_model(case.model, full_check=True)
    sess = ort.InferenceSession(case.model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {k: (v if v.ndim == 0 else np.take(v, [0], axis=case.batch_axes[k]))
             for k, v in case.feeds.items()}
    outs = sess.run(None, feeds)
    assert all(np.isfinite(o).all() for o in outs)
    for k, ax in case.batch_axes.items():  # the stated batch axis really indexes samples
        assert case.feeds[k].shape[ax] >= 16
