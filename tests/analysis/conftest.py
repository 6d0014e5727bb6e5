"""Fixtures of the analysis tests: the digits CNN (float) and its QDQ int8 version, built by
``digits_models.py``."""

from __future__ import annotations

import onnx
import pytest
from digits_models import build_digits_cnn, digits, quantize_qdq


@pytest.fixture(scope="session")
def digits_models(tmp_path_factory):
    """Paths of the float digits CNN and its QDQ int8 version, plus the data."""
    d = tmp_path_factory.mktemp("digits")
    x, y = digits()
    fp32 = d / "digits_fp32.onnx"
    onnx.save(build_digits_cnn(), fp32)
    qdq = d / "digits_int8.onnx"
    quantize_qdq(str(fp32), str(qdq), x)
    return {"fp32": fp32, "int8": qdq, "x": x, "y": y, "dir": d}


@pytest.fixture(scope="session")
def digits_cnn_builder():
    """:func:`build_digits_cnn` itself, for tests that need a variant (e.g. fixed batch)."""
    return build_digits_cnn


@pytest.fixture(scope="session")
def planted():
    """The digits CNN with a planted sensitive head (see ``sensitivity_models``)."""
    from sensitivity_models import planted_model

    return planted_model()
