"""Fixtures for the PyTorch front-end tests (helpers live in torch_models.py)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is several times faster than two on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def images() -> torch.Tensor:
    """32 random 8×8 single-channel images."""
    return torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(1))
