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


def test_mix_blends_two_crops_by_formula():
    """Oracle: the mixup / cutmix definitions in numpy, with λ drawn from the same seed."""
    from edgequant_zoo.photos import _mix

    g = np.random.default_rng(0)
    a, b = g.random((20, 20, 3), np.float32), g.random((20, 20, 3), np.float32)
    lam = np.random.default_rng(3).uniform(0.0, 1.0)
    np.testing.assert_allclose(_mix(np.random.default_rng(3), a, b, "mixup"),
                               lam * a + (1 - lam) * b, rtol=1e-6)
    out = _mix(np.random.default_rng(3), a, b, "cutmix")
    from_b = np.all(out == b, axis=-1) & ~np.all(out == a, axis=-1)   # (20, 20) pixels of b
    assert np.all(np.all(out == a, axis=-1) | from_b)                  # every pixel: a or b
    ys, xs = np.nonzero(from_b)
    side = round(20 * np.sqrt(1 - lam))
    assert len(ys) == side * side and np.ptp(ys) + 1 == side and np.ptp(xs) + 1 == side


def test_mixed_crops_are_deterministic_in_range_and_checked():
    from edgequant_zoo.photos import EXTRA_TRAINING_PHOTOS

    names = CALIBRATION_PHOTOS + EXTRA_TRAINING_PHOTOS
    assert not set(EXTRA_TRAINING_PHOTOS) & set(EVALUATION_PHOTOS)
    for mix in ("mixup", "cutmix"):
        a = augmented_crops(4, 32, seed=2, names=names, mix=mix)
        np.testing.assert_array_equal(a, augmented_crops(4, 32, seed=2, names=names, mix=mix))
        assert LO - 1e-5 <= a.min() and a.max() <= HI + 1e-5
        assert not np.array_equal(a, augmented_crops(4, 32, seed=2, names=names))
    with pytest.raises(ValueError, match="mix='blend'"):
        augmented_crops(1, 32, mix="blend")
