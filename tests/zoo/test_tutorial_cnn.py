"""The demo model trains deterministically to the tutorial's accuracy on the MNIST split."""

import numpy as np
import pytest
import torch

from edgequant_zoo.mnist import load_mnist
from edgequant_zoo.training import accuracy, predict_logits
from edgequant_zoo.tutorial_cnn import TutorialCNN, train_tutorial_cnn

# Measured 95.5 % with the default schedule (seed 0); the tutorial reports ~96-98 % on the
# full 60 k MNIST, we train on 4 k images. One point of slack for BLAS/thread differences.
MIN_TEST_ACCURACY = 0.945


@pytest.fixture(scope="module")
def split():
    return load_mnist(seed=0)


def test_tutorial_cnn_architecture():
    model = TutorialCNN()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(1, 12, (3, 3))]
    assert model.fc.in_features == 12 * 13 * 13 and model.fc.out_features == 10


def test_training_reaches_tutorial_accuracy(split):
    model = train_tutorial_cnn(split, seed=0)
    assert not model.training
    acc = accuracy(predict_logits(model, split.x_test), split.y_test)
    assert acc >= MIN_TEST_ACCURACY, f"test accuracy {acc:.3f}"


def test_training_is_deterministic_and_keeps_global_rng(split):
    small = type(split)(split.x_train[:512], split.y_train[:512], split.x_test, split.y_test)
    state = torch.random.get_rng_state()
    a = train_tutorial_cnn(small, epochs=1, seed=3)
    b = train_tutorial_cnn(small, epochs=1, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        np.testing.assert_array_equal(pa.numpy(), pb.numpy(), err_msg=name)
    c = train_tutorial_cnn(small, epochs=1, seed=4)
    assert not torch.equal(a.fc.weight, c.fc.weight)
