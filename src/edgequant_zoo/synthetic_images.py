"""Procedural training images for label-free distillation: dead leaves and 1/f colour noise.

Distillation needs inputs, not labels, and the teacher labels whatever it is shown. A few
calibration photos of objects teach a quantized student little about textures, micrographs
or text, which the evaluation photos are full of. Procedural images with the statistics of
natural images — occlusion, edges at every scale, a 1/f power spectrum — cover that ground
with no download and no evaluation photo (Baradad et al. 2021, "Learning to See by Looking at
Noise"; the dead-leaves model of Matheron / Lee, Mumford & Huang 2001):

- dead leaves: discs and axis-aligned rectangles of random colour dropped one over another,
  radii drawn from a power law (``p(r) ∝ r⁻³``: scale invariant), so the result has edges,
  occlusions and flat regions at every scale;
- 1/f noise: Gaussian noise shaped to a ``1/f^α`` amplitude spectrum (α ∈ [1, 2]), each
  channel correlated with the others, a texture like grass, gravel or clouds;
- blends of both (a dead-leaves image with a noise texture laid over it).

Images come out in [0, 1], (size, size, 3) float32, for :func:`edgequant_zoo.photos.augmented_crops`.
"""

from __future__ import annotations

import numpy as np

#: The generators :func:`synthetic_image` picks from, with equal probability.
KINDS = ("dead_leaves", "noise", "blend")


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A random RGB colour in [0, 1] (uniform in RGB, sometimes grey)."""
    if rng.random() < 0.2:
        return np.full(3, rng.random(), np.float32)
    return rng.random(3).astype(np.float32)


def dead_leaves(rng: np.random.Generator, size: int, r_min: float = 0.01,
                r_max: float = 0.4, leaves: int = 400) -> np.ndarray:
    """A dead-leaves image: ``leaves`` discs / rectangles of random colour, radii (as a
    fraction of ``size``) from ``p(r) ∝ r⁻³`` on [``r_min``, ``r_max``], later ones on top.
    Returns (size, size, 3) float32 in [0, 1]."""
    img = np.empty((size, size, 3), np.float32)
    img[:] = _colour(rng)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size  # (size, size) each
    # inverse CDF of p(r) ∝ r^-3 on [r_min, r_max]
    u = rng.random(leaves)
    radii = (r_min ** -2 - u * (r_min ** -2 - r_max ** -2)) ** -0.5  # (leaves,)
    for r in radii:
        cy, cx = rng.uniform(-r, 1 + r, 2)
        if rng.random() < 0.7:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            ar = rng.uniform(0.3, 1.0)
            mask = (np.abs(yy - cy) <= r * ar) & (np.abs(xx - cx) <= r / ar)
        img[mask] = _colour(rng)
    return img


def colour_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Gaussian noise with a ``1/f^α`` amplitude spectrum (α ~ U(1, 2)), channels mixed by a
    random colour matrix, stretched to [0, 1]: (size, size, 3) float32."""
    alpha = rng.uniform(1.0, 2.0)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fy * fy + fx * fx)                               # (size, size // 2 + 1)
    f[0, 0] = 1.0
    amp = f ** -alpha
    amp[0, 0] = 0.0
    spec = amp[None] * (rng.standard_normal((3, *f.shape))
                        + 1j * rng.standard_normal((3, *f.shape)))  # (3, size, size//2+1)
    planes = np.fft.irfft2(spec, s=(size, size))                 # (3, size, size)
    mix = rng.normal(0.0, 1.0, (3, 3)) + np.eye(3) * rng.uniform(0.0, 2.0)
    img = np.tensordot(planes, mix, axes=([0], [0]))             # (size, size, 3)
    lo, hi = np.percentile(img, [1, 99])
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)


def synthetic_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """One procedural image of a random kind (:data:`KINDS`): (size, size, 3) float32 in
    [0, 1]."""
    kind = KINDS[rng.integers(len(KINDS))]
    if kind == "dead_leaves":
        return dead_leaves(rng, size)
    if kind == "noise":
        return colour_noise(rng, size)
    w = rng.uniform(0.2, 0.6)
    return np.clip((1 - w) * dead_leaves(rng, size) + w * colour_noise(rng, size), 0.0, 1.0)


__all__ = ["KINDS", "colour_noise", "dead_leaves", "synthetic_image"]
