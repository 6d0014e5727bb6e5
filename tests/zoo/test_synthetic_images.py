"""Procedural distillation images (dead leaves, 1/f noise) and their use in augmented crops."""

import numpy as np
import pytest

from edgequant_zoo.photos import augmented_crops
from edgequant_zoo.synthetic_images import colour_noise, dead_leaves, synthetic_image


def _spectral_slope(img: np.ndarray) -> float:
    """Least-squares slope of log radial amplitude vs log frequency of the grey image."""
    g = img.mean(axis=-1)                                     # (n, n)
    amp = np.abs(np.fft.fft2(g - g.mean()))                   # (n, n)
    n = g.shape[0]
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    band = (f > 2 / n) & (f < 0.25)
    return float(np.polyfit(np.log(f[band]), np.log(amp[band]), 1)[0])


def test_images_are_deterministic_in_unit_range():
    for fn in (dead_leaves, colour_noise, synthetic_image):
        a, b = fn(np.random.default_rng(1), 64), fn(np.random.default_rng(1), 64)
        assert a.shape == (64, 64, 3) and a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
        assert 0.0 <= a.min() and a.max() <= 1.0
        assert not np.array_equal(a, fn(np.random.default_rng(2), 64))


def test_noise_has_a_one_over_f_spectrum():
    """Oracle: numpy's FFT of the output — the amplitude falls as f^-α with α in [1, 2]
    (clipping at the 1st / 99th percentiles bends it a little, hence the margin)."""
    slopes = [_spectral_slope(colour_noise(np.random.default_rng(s), 128)) for s in range(6)]
    assert all(-2.3 < s < -0.7 for s in slopes), slopes


def test_dead_leaves_are_flat_patches_of_few_colours():
    img = dead_leaves(np.random.default_rng(0), 96, leaves=50)
    colours = np.unique(img.reshape(-1, 3), axis=0)
    assert 2 <= len(colours) <= 51                             # background + ≤ 50 leaves
    same_as_right = np.all(img[:, 1:] == img[:, :-1], axis=-1)  # (96, 95): flat regions
    assert same_as_right.mean() > 0.8


def test_augmented_crops_mix_in_synthetic_images():
    photos = augmented_crops(6, 32, seed=3)
    np.testing.assert_array_equal(photos, augmented_crops(6, 32, seed=3, synthetic=0.0))
    mixed = augmented_crops(6, 32, seed=3, synthetic=1.0)
    np.testing.assert_array_equal(mixed, augmented_crops(6, 32, seed=3, synthetic=1.0))
    assert mixed.shape == photos.shape and not np.array_equal(mixed, photos)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=f"synthetic={bad}"):
            augmented_crops(1, 32, synthetic=bad)
