"""The QAT claims on MNIST (examples/qat_mnist.py via bench/qat.py): slow, a few minutes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_qat_mnist_claims():
    spec = importlib.util.spec_from_file_location("bench_qat", ROOT / "bench" / "qat.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    torch.set_num_threads(1)
    ex = bench.load_example()
    results = [*bench.check(ex.run()), bench.torch_quantize_equals_onnx_path(ex)]
    failed = [f"{claim}: {numbers}" for claim, ok, numbers in results if not ok]
    assert not failed, failed
