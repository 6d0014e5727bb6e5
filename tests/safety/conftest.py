"""Fixtures of the output-safety tests: a folder with a small float model and its calibration
data (helpers live in ``safety_cli.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "quant"))  # float_models

from float_models import cnn_bn, images


@pytest.fixture()
def work(tmp_path):
    """A folder with model.onnx (float CNN) and cal.npz (its calibration images)."""
    onnx.save(cnn_bn(), tmp_path / "model.onnx")
    np.savez(tmp_path / "cal.npz", input=images(16))
    return tmp_path
