"""Seeded fuzzing of .tflite reading: mutated int8 models through ``inspect`` and ``verify``.

Oracle: the exit-code contract of the CLI (0, verify's 1 = a clean mismatch report, or 2 with
one ``error:`` line that says what is wrong), a per-command alarm for hangs, the output folder
left empty, inputs byte-identical afterwards.
"""

from __future__ import annotations

import pytest
from fuzz_run import assert_clean, run_fuzz


def test_fuzz_tflite_fast():
    summary = run_fuzz("tflite", 40, seed=11, timeout=600)
    assert_clean(summary)
    assert any("subgraph" in m or "model." in m for m in summary["messages"])


@pytest.mark.slow
def test_fuzz_tflite_300():
    summary = run_fuzz("tflite", 300, seed=1234, timeout=3600)
    assert summary["cases"] == 300
    assert_clean(summary)
