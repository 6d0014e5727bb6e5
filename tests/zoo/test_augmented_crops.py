"""Augmented training crops of the calibration photos (QAT / distillation data)."""

import numpy as np
import pytest

from edgequant_zoo.photos import (
    CALIBRATION_PHOTOS,
    EVALUATION_PHOTOS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    augmented_crops,
    calibration_crops,
)

#: normalised values of pixels clipped to [0, 1]: (0 − mean) / std … (1 − mean) / std
LO = float(np.min(-IMAGENET_MEAN / IMAGENET_STD))
HI = float(np.max((1 - IMAGENET_MEAN) / IMAGENET_STD))


def test_augmented_crops_are_deterministic_normalised_nchw():
    a, b = augmented_crops(8, 48, seed=4), augmented_crops(8, 48, seed=4)
    assert a.shape == (8, 3, 48, 48) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert LO - 1e-5 <= a.min() and a.max() <= HI + 1e-5
    assert not np.array_equal(a, augmented_crops(8, 48, seed=5))


def test_augmented_crops_are_distinct_images():
    a = augmented_crops(16, 32, seed=0)
    flat = a.reshape(16, -1)
    # (16, 16) pairwise distances: no two crops are the same image
    d = np.linalg.norm(flat[:, None] - flat[None], axis=-1)
    assert np.all(d[~np.eye(16, dtype=bool)] > 1.0)
    assert not np.array_equal(a, calibration_crops(16, 32, seed=0))


def test_augmented_crops_refuse_evaluation_photos():
    with pytest.raises(ValueError, match=EVALUATION_PHOTOS[0].replace(".", r"\.")):
        augmented_crops(1, 32, names=(CALIBRATION_PHOTOS[0], EVALUATION_PHOTOS[0]))
