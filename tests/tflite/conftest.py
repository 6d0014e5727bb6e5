"""Session fixtures: float ONNX test models, their onnxruntime QDQ versions, input data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tflite_models as M


@dataclass
class Case:
    """A float model, its QDQ int8 twin (onnxruntime quantizer) and its inputs."""

    name: str
    float_path: Path
    qdq_path: Path
    x: np.ndarray  # (samples, …) float32


#: Calibration / evaluation samples per model (small: the machine is shared).
SAMPLES = 16


def _case(root: Path, name: str, module, shape, data) -> Case:
    f = M.export_onnx(module, shape, root / f"{name}.onnx")
    q = M.quantize_qdq(f, root / f"{name}_qdq.onnx", data)
    return Case(name, f, q, data)


@pytest.fixture(scope="session")
def tfl_models(tmp_path_factory) -> dict[str, Case]:
    """mnist (tutorial CNN), ops (conv/dw/pool/residual/concat/GAP/FC/softmax), stride."""
    root = tmp_path_factory.mktemp("tflite_models")
    rng = np.random.default_rng(0)
    cases = [
        _case(root, "mnist", M.MnistCnn(), (1, 1, 28, 28), M.mnist_images(SAMPLES)),
        _case(root, "ops", M.OpsNet(), (1, 3, 16, 16),
              rng.standard_normal((SAMPLES, 3, 16, 16)).astype(np.float32)),
        _case(root, "stride", M.StrideNet(), (1, 3, 15, 15),
              rng.standard_normal((SAMPLES, 3, 15, 15)).astype(np.float32)),
    ]
    return {c.name: c for c in cases}
