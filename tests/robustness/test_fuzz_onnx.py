"""Seeded fuzzing of ONNX and DATA.npz reading: mutated float / QDQ models through ``inspect``,
``quantize`` and ``verify``, mutated calibration files through ``quantize`` and ``verify``.

Oracle: as in ``test_fuzz_tflite.py`` (exit-code contract, one meaningful error line, no hang,
no leftover output, inputs unchanged).
"""

from __future__ import annotations

import pytest
from fuzz_run import assert_clean, run_fuzz


def test_fuzz_onnx_fast():
    assert_clean(run_fuzz("onnx", 30, seed=21, timeout=600))


def test_fuzz_data_fast():
    summary = run_fuzz("data", 20, seed=31, timeout=600)
    assert_clean(summary)
    assert any(".npz" in m for m in summary["messages"])


@pytest.mark.slow
def test_fuzz_onnx_300():
    summary = run_fuzz("onnx", 300, seed=4321, timeout=3600)
    assert summary["cases"] == 300
    assert_clean(summary)


@pytest.mark.slow
def test_fuzz_data_300():
    assert_clean(run_fuzz("data", 300, seed=999, timeout=3600))
