"""``calibration_feeds``: the PyTorch-style calibration shapes QAT / torch PTQ accept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgequant.errors import CalibrationError
from edgequant.torch.calibration import calibration_feeds

IDS = torch.arange(24).reshape(4, 6)  # (4, 6) int64 token ids
MASK = torch.ones(4, 6, dtype=torch.int64)  # (4, 6)
NAMES, SHAPES = ["ids", "mask"], [(6,), (6,)]


def test_one_tuple_of_inputs_is_one_batch():
    feeds = calibration_feeds((IDS, MASK), NAMES, SHAPES)
    np.testing.assert_array_equal(feeds["ids"], IDS.numpy())
    np.testing.assert_array_equal(feeds["mask"], MASK.numpy())


def test_list_of_tuples_is_batches():
    feeds = calibration_feeds([(IDS[:2], MASK[:2]), (IDS[2:], MASK[2:])], NAMES, SHAPES)
    np.testing.assert_array_equal(feeds["ids"], IDS.numpy())
    assert feeds["mask"].shape == (4, 6)


def test_bare_tensor_for_two_inputs_names_them():
    with pytest.raises(CalibrationError, match=r"single Tensor.*\['ids', 'mask'\]"):
        calibration_feeds([IDS, IDS[:3]], NAMES, SHAPES)


def test_one_input_tensor_still_works():
    feeds = calibration_feeds(IDS, ["ids"], [(6,)])
    assert feeds["ids"].shape == (4, 6)
