"""Real photos (disjoint calibration / evaluation sets) and EfficientNet-Lite0's real weights."""

import numpy as np
import pytest

from edgequant_zoo.photos import CALIBRATION_PHOTOS, EVALUATION_PHOTOS, calibration_crops, crops

#: ImageNet classes 281–285 are the domestic cats (tabby … Egyptian cat).
CAT_CLASSES = range(281, 286)


def test_calibration_and_evaluation_photos_are_disjoint():
    assert not set(CALIBRATION_PHOTOS) & set(EVALUATION_PHOTOS)


def test_crops_are_deterministic_normalised_nchw():
    a, b = calibration_crops(6, size=64), calibration_crops(6, size=64)
    assert a.shape == (6, 3, 64, 64) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert -2.5 < a.min() < 0 < a.max() < 2.8  # ImageNet normalisation of [0, 1] pixels


def test_unknown_photo_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match=r"nope\.png"):
        crops(("nope.png",), 1)


def test_efficientnet_lite0_real_weights_recognise_the_cat():
    torch = pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    from edgequant_zoo.efficientnet import efficientnet_lite0

    model = efficientnet_lite0()
    with torch.no_grad():
        logits = model(torch.from_numpy(crops(("chelsea.png",), 4, seed=3))).numpy()
    assert sum(int(c) in CAT_CLASSES for c in logits.argmax(1)) >= 3
