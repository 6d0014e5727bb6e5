"""Session fixture: the runtime test models (built in :mod:`runtime_models`)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from runtime_models import Models, conv_net, images


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> Models:
    pytest.importorskip("ai_edge_litert")
    from edgequant import quantize
    from edgequant.export.tflite.export import export_tflite

    root = tmp_path_factory.mktemp("runtime_models")
    f = root / "float.onnx"
    onnx.save(conv_net(), f)
    qm = quantize(f, "w8a8", calibration={"x": images(16, seed=0)})
    q = qm.save(root / "qdq.onnx")
    t = export_tflite(q, root / "q.tflite").path
    t8 = export_tflite(q, root / "q_int8.tflite", io="int8").path
    return Models(f, Path(q), Path(t), Path(t8), images())
