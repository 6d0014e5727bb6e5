"""A digits CNN with a planted sensitive layer, for the sensitivity and auto-recipe tests.

The head Gemm reads a hidden unit that ReLU keeps at zero on every input; its weights for
that unit are set to ``PLANTED`` (1000x the others). The float model computes exactly the same
function, but per-channel int8 weights of the head now have a step of ~8 while its real
weights are ~0.1: they all round to zero, so quantizing the head alone ruins the model.
"""

from __future__ import annotations

import numpy as np
import onnx
from digits_models import build_digits_cnn, digits
from onnx import numpy_helper as nh

PLANTED = 1000.0
DEAD_UNIT = 7


def planted_model() -> onnx.ModelProto:
    """The digits CNN (named nodes) with the planted outlier in the head ``fc3``."""
    m = build_digits_cnn()
    for node, name in zip(m.graph.node, ("conv1", "relu1", "flatten", "fc2", "relu2", "fc3"),
                          strict=True):
        node.name = name
    inits = {t.name: t for t in m.graph.initializer}
    w2, b2 = nh.to_array(inits["w2"]).copy(), nh.to_array(inits["b2"]).copy()
    w3 = nh.to_array(inits["w3"]).copy()
    w2[DEAD_UNIT] = 0.0
    b2[DEAD_UNIT] = -1.0  # relu(−1) = 0 on every input: the unit is dead
    w3[:, DEAD_UNIT] = PLANTED
    for name, arr in (("w2", w2), ("b2", b2), ("w3", w3)):
        inits[name].CopyFrom(nh.from_array(arr.astype(np.float32), name))
    onnx.checker.check_model(m)
    return m


def splits() -> dict[str, np.ndarray]:
    """Disjoint calibration / search / held-apart digits (with labels)."""
    x, y = digits()
    return {"cal": x[:128], "data": x[128:512], "labels": y[128:512],
            "check": x[512:896], "check_labels": y[512:896]}
