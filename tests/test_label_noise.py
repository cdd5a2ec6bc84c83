"""Symmetric label noise: exact count, only flipped labels change, and always to another class,
uniformly; reproducible from the seed."""

from __future__ import annotations

import numpy as np
import pytest

from regulab.data.label_noise import flip_labels
from regulab.errors import ConfigError, DataError


def labels(n: int = 1000, k: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, k, size=n)


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.1, 0.2, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("k", [2, 4, 10])
def test_exactly_round_fraction_n_labels_change_to_another_class(fraction, k):
    y = labels(1000, k)
    y_before = y.copy()
    noisy, flipped = flip_labels(y, fraction, k, seed=1)
    assert np.array_equal(y, y_before)                        # input untouched
    assert len(flipped) == round(fraction * 1000)
    assert len(np.unique(flipped)) == len(flipped)            # without replacement
    assert np.array_equal(flipped, np.sort(flipped))
    assert noisy.dtype == y.dtype and noisy.shape == y.shape
    assert (noisy[flipped] != y[flipped]).all()
    kept = np.setdiff1d(np.arange(len(y)), flipped)
    assert np.array_equal(noisy[kept], y[kept])
    assert ((0 <= noisy) & (noisy < k)).all()
    assert (noisy != y).sum() == len(flipped)


def test_count_uses_round():
    y = labels(7, 3)
    assert len(flip_labels(y, 0.5, 3, seed=0)[1]) == round(3.5)     # Python rounds half to even: 4
    assert len(flip_labels(y, 0.3, 3, seed=0)[1]) == 2


def test_fraction_zero_is_identity():
    y = labels(50, 3)
    noisy, flipped = flip_labels(y, 0.0, 3, seed=0)
    assert np.array_equal(noisy, y) and len(flipped) == 0


def test_new_labels_are_uniform_over_the_other_classes():
    # all examples of class 2 flipped, K = 5: targets uniform over {0, 1, 3, 4}
    k, n = 5, 8000
    y = np.full(n, 2)
    noisy, _ = flip_labels(y, 1.0, k, seed=3)
    counts = np.bincount(noisy, minlength=k)
    assert counts[2] == 0
    expected = n / (k - 1)
    chi2 = ((counts[[0, 1, 3, 4]] - expected) ** 2 / expected).sum()
    assert chi2 < 16.27               # chi-square, 3 degrees of freedom, p = 0.001

    # and the transition matrix of mixed labels: P(j | i) ~ 1/(K-1) for every j != i
    y = labels(20000, k, seed=4)
    noisy, flipped = flip_labels(y, 0.5, k, seed=5)
    for i in range(k):
        targets = noisy[flipped][y[flipped] == i]
        freq = np.bincount(targets, minlength=k) / len(targets)
        assert freq[i] == 0
        np.testing.assert_allclose(np.delete(freq, i), 1 / (k - 1), atol=0.03)


def test_flipped_examples_are_chosen_uniformly():
    # over many seeds every index is flipped with probability ~ fraction
    y = labels(40, 3)
    hits = np.zeros(40)
    for seed in range(2000):
        hits[flip_labels(y, 0.25, 3, seed=seed)[1]] += 1
    np.testing.assert_allclose(hits / 2000, 0.25, atol=0.04)


def test_reproducible_from_the_seed():
    y = labels(500, 6)
    a = flip_labels(y, 0.2, 6, seed=7)
    b = flip_labels(y, 0.2, 6, seed=7)
    c = flip_labels(y, 0.2, 6, seed=8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("fraction", [-0.1, 1.01, float("nan"), "0.1", None])
def test_bad_fraction_is_rejected(fraction):
    with pytest.raises(ConfigError, match=r"config key 'data\.label_noise' must be a number >= 0\.0 "
                                          r"and <= 1\.0; got"):
        flip_labels(labels(10, 3), fraction, 3, seed=0)


@pytest.mark.parametrize("k", [1, 0, 2.0, True])
def test_bad_num_classes_is_rejected(k):
    with pytest.raises(DataError, match="num_classes to be an integer >= 2; got"):
        flip_labels(np.zeros(10, dtype=int), 0.1, k, seed=0)


@pytest.mark.parametrize("y, message", [
    (np.array([0, 1, 3]), r"labels in \[0, 3\); got labels from 0 to 3"),
    (np.array([-1, 1, 2]), r"labels in \[0, 3\)"),
    (np.array([0.0, 1.0]), "integer class labels"),
    (np.zeros((2, 2), dtype=int), "1-D integer class labels"),
])
def test_bad_labels_are_rejected(y, message):
    with pytest.raises(DataError, match=message):
        flip_labels(y, 0.5, 3, seed=0)
