"""Train/val/test splits, subsets and K folds: sizes, disjointness, strata, seeds and errors."""

from __future__ import annotations

import numpy as np
import pytest

from regulab.data.split import SplitIndices, kfold, shuffle_split, split_indices, subsample
from regulab.errors import DataError

FRACTIONS = [0.8, 0.15, 0.05]


def _labels(counts, seed=0):
    """Labels with the given class counts, in shuffled order."""
    y = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).permutation(y)


def _random_labels(n=1001, k=4, seed=0):
    return np.random.default_rng(seed).integers(0, k, n)


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


# --- split_indices ----------------------------------------------------------------------------

@pytest.mark.parametrize("stratify", [True, False])
@pytest.mark.parametrize("n, fractions", [
    (1000, [0.8, 0.15, 0.05]),
    (1000, [0.6, 0.2, 0.2]),
    (537, [0.7, 0.2, 0.1]),
    (200, [0.5, 0.5, 0.0]),
])
def test_sizes_follow_fractions_and_partition(n, fractions, stratify):
    y = _random_labels(n, k=3)
    s = split_indices(y, fractions, stratify=stratify, seed=0, has_test=False)
    assert isinstance(s, SplitIndices)
    test = s.test if s.test is not None else np.array([], dtype=int)
    for part, f in ((s.train, fractions[0]), (s.val, fractions[1]), (test, fractions[2])):
        assert abs(len(part) - f * n) <= 1, (len(part), f * n)
    # disjoint and covering every row exactly once
    everything = np.concatenate([s.train, s.val, test])
    np.testing.assert_array_equal(np.sort(everything), np.arange(n))
    # returned sorted
    for part in (s.train, s.val, test):
        np.testing.assert_array_equal(part, np.sort(part))


def test_default_split_of_1000():
    s = split_indices(_random_labels(1000), FRACTIONS, stratify=True, seed=0, has_test=False)
    assert (abs(len(s.train) - 800) <= 1 and abs(len(s.val) - 150) <= 1
            and abs(len(s.test) - 50) <= 1)
    assert len(s.train) + len(s.val) + len(s.test) == 1000
    assert not (set(s.train) & set(s.val) or set(s.train) & set(s.test) or set(s.val) & set(s.test))


@pytest.mark.parametrize("y", [
    _labels([500, 300, 200]),
    _random_labels(1001, k=4, seed=1),
    _labels([900, 100], seed=2),
], ids=["500-300-200", "random4", "imbalanced"])
def test_stratified_proportions_per_class(y):
    s = split_indices(y, FRACTIONS, stratify=True, seed=0, has_test=False)
    counts = np.bincount(y)
    for part, f in ((s.train, 0.8), (s.val, 0.15), (s.test, 0.05)):
        got = np.bincount(y[part], minlength=len(counts))
        assert np.all(np.abs(got - f * counts) <= 1), (got, f * counts)


def test_seed_reproducible_and_different():
    y = _random_labels(500)
    a = split_indices(y, FRACTIONS, stratify=True, seed=7, has_test=False)
    b = split_indices(y, FRACTIONS, stratify=True, seed=7, has_test=False)
    c = split_indices(y, FRACTIONS, stratify=True, seed=8, has_test=False)
    for x, z in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        np.testing.assert_array_equal(x, z)
    assert not np.array_equal(a.val, c.val)
    assert not np.array_equal(a.test, c.test)


@pytest.mark.parametrize("stratify", [True, False])
def test_has_test_keeps_train_val_ratio(stratify):
    n = 1000
    y = _random_labels(n, k=3)
    s = split_indices(y, FRACTIONS, stratify=stratify, seed=0, has_test=True)
    assert s.test is None
    assert len(s.train) + len(s.val) == n
    # train : val = 0.8 : 0.15 of the whole pool
    assert abs(len(s.val) - n * 0.15 / 0.95) <= 1
    assert abs(len(s.train) - n * 0.8 / 0.95) <= 1
    np.testing.assert_array_equal(np.sort(np.concatenate([s.train, s.val])), np.arange(n))


def test_zero_test_fraction_gives_empty_or_none_test():
    y = _random_labels(100)
    s = split_indices(y, [0.8, 0.2, 0.0], stratify=True, seed=0, has_test=False)
    assert s.test is None or len(s.test) == 0
    assert len(s.train) + len(s.val) == 100


@pytest.mark.parametrize("y", [
    np.array([0] * 8 + [1]),          # a class with a single member
    np.arange(10) % 5,                # 5 classes, a test split of 1 example
    np.array([0, 1, 2, 0, 1, 2]),     # too few of each class for three splits
], ids=["singleton", "too-many-classes", "tiny"])
def test_impossible_stratification(y):
    msg = _error(split_indices, y, FRACTIONS, stratify=True, seed=0, has_test=False)
    assert "data.split" in msg
    assert "data.stratify = false" in msg
    assert str(len(y)) in msg


def test_a_singleton_class_is_named_as_a_number():
    """Found by the fuzz suite: the class was quoted as NumPy's repr, np.int64(1)."""
    msg = _error(split_indices, np.array([0] * 8 + [1]), FRACTIONS, stratify=True, seed=0, has_test=False)
    assert "class 1 has only 1 row" in msg and "np." not in msg


def test_unstratified_tiny_split_works():
    y = np.array([0] * 8 + [1])
    s = split_indices(y, [0.6, 0.2, 0.2], stratify=False, seed=0, has_test=False)
    assert len(s.train) + len(s.val) + len(s.test) == 9


# --- shuffle_split against scikit-learn's train_test_split --------------------------------------

def _sklearn_split(n, second, seed, y):
    from sklearn.model_selection import train_test_split
    return train_test_split(np.arange(n), test_size=second, random_state=seed, shuffle=True,
                            stratify=y)


@pytest.mark.parametrize("stratify", [True, False])
@pytest.mark.parametrize("n, second, counts", [
    (1000, 0.05, [100] * 10),
    (1000, 0.15 / 0.95, [97, 103, 250, 50, 500]),
    (537, 0.2, [200, 200, 137]),
    (101, 0.3, [34, 33, 34]),          # ties in the remainders: broken at random
    (40, 0.5, [13, 13, 14]),
    (9, 3, [3, 3, 3]),                 # a count, not a fraction
    (800, 0.4, [2, 398, 400]),         # a rare class
    (4000, 1.0 - 0.37, [400] * 10),    # train_size's complement
])
@pytest.mark.parametrize("seed", [0, 1, 17, 12345])
def test_shuffle_split_draws_what_scikit_learn_draws(n, second, counts, stratify, seed):
    """The same rows in the same order as scikit-learn's ``train_test_split`` (the splits
    every run made before the NumPy version replaced it), labels in shuffled order."""
    y = _labels(counts, seed=seed)[:n] if stratify else None
    first, rest = shuffle_split(n, second, seed, y)
    want_first, want_rest = _sklearn_split(n, second, seed, y)
    np.testing.assert_array_equal(first, want_first)
    np.testing.assert_array_equal(rest, want_rest)


def test_shuffle_split_stratifies_string_and_two_column_labels_as_scikit_learn_does():
    y = np.array(list("aabbbccccddddd") * 7)
    np.testing.assert_array_equal(np.concatenate(shuffle_split(len(y), 0.3, 5, y)),
                                  np.concatenate(_sklearn_split(len(y), 0.3, 5, y)))
    y2 = np.stack([np.arange(60) % 2, np.arange(60) % 3], axis=1)
    np.testing.assert_array_equal(np.concatenate(shuffle_split(60, 0.25, 2, y2)),
                                  np.concatenate(_sklearn_split(60, 0.25, 2, y2)))


@pytest.mark.parametrize("n, second, y", [
    (10, 1.0, None), (10, 10, None), (10, 0.95, None),           # an empty part
    (9, 0.3, np.array([0] * 8 + [1])),                          # a class of one row
    (10, 0.2, np.arange(10) % 5),                               # 2 rows cannot hold 5 classes
])
def test_shuffle_split_refuses_what_scikit_learn_refuses(n, second, y):
    with pytest.raises(ValueError):
        _sklearn_split(n, second, 0, y)
    with pytest.raises(ValueError):
        shuffle_split(n, second, 0, y)


# --- subsample --------------------------------------------------------------------------------

def _pool():
    y = _labels([600, 300, 100], seed=3)
    train = np.sort(np.random.default_rng(4).choice(len(y), 800, replace=False))
    return train, y


@pytest.mark.parametrize("size, expected", [(0.5, 400), (0.25, 200), (300, 300), (800, 800),
                                            (1.0, 800)])
def test_subsample_size_and_strata(size, expected):
    train, y = _pool()
    kept = subsample(train, y, size, stratify=True, seed=0)
    assert abs(len(kept) - expected) <= 1
    assert np.all(np.isin(kept, train)) and len(np.unique(kept)) == len(kept)
    # class proportions of the subset follow those of the training split
    base = np.bincount(y[train], minlength=3) / len(train)
    got = np.bincount(y[kept], minlength=3)
    assert np.all(np.abs(got - base * len(kept)) <= 1), (got, base * len(kept))


def test_subsample_seeded():
    train, y = _pool()
    a = subsample(train, y, 100, stratify=True, seed=1)
    b = subsample(train, y, 100, stratify=True, seed=1)
    c = subsample(train, y, 100, stratify=True, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert len(subsample(train, y, 100, stratify=False, seed=1)) == 100


def test_subsample_count_too_large():
    train, y = _pool()
    msg = _error(subsample, train, y, 801, stratify=True, seed=0)
    assert "data.train_size" in msg and "801" in msg and "800" in msg


def test_subsample_too_small_for_strata_names_train_size():
    train, y = _pool()
    msg = _error(subsample, train, y, 2, stratify=True, seed=0)
    assert "data.train_size" in msg and "data.stratify = false" in msg


# --- kfold ------------------------------------------------------------------------------------

@pytest.mark.parametrize("stratify", [True, False])
@pytest.mark.parametrize("n, k", [(100, 5), (103, 4), (20, 10), (50, 2)])
def test_kfold_each_index_held_out_once(n, k, stratify):
    y = np.arange(n) % 2
    folds = kfold(y, k, stratify=stratify, seed=0)
    assert len(folds) == k
    held = np.concatenate([h for _, h in folds])
    np.testing.assert_array_equal(np.sort(held), np.arange(n))
    for tr, h in folds:
        assert len(np.intersect1d(tr, h)) == 0
        np.testing.assert_array_equal(np.sort(np.concatenate([tr, h])), np.arange(n))
        assert abs(len(h) - n / k) <= 1


def test_kfold_leave_one_out():
    folds = kfold(np.arange(7), 7, stratify=False, seed=0)
    assert sorted(h.item() for _, h in folds) == list(range(7))
    assert all(len(tr) == 6 for tr, _ in folds)


def test_kfold_stratified_proportions():
    y = _labels([500, 300, 200], seed=5)
    k = 5
    counts = np.bincount(y)
    for _, held in kfold(y, k, stratify=True, seed=0):
        got = np.bincount(y[held], minlength=3)
        assert np.all(np.abs(got - counts / k) <= 1), got


def test_kfold_seeded():
    y = _random_labels(200)
    a = kfold(y, 4, seed=3)
    b = kfold(y, 4, seed=3)
    c = kfold(y, 4, seed=4)
    for (ta, ha), (tb, hb) in zip(a, b):
        np.testing.assert_array_equal(ha, hb)
        np.testing.assert_array_equal(ta, tb)
    assert not all(np.array_equal(ha, hc) for (_, ha), (_, hc) in zip(a, c))


@pytest.mark.parametrize("k", [1, 0, -3, 11])
def test_kfold_bad_k(k):
    msg = _error(kfold, np.arange(10) % 2, k)
    assert "k" in msg and str(k) in msg and "10" in msg


def test_kfold_stratified_impossible():
    # every class has fewer members than folds
    msg = _error(kfold, np.array([0, 0, 1, 1, 2, 2]), 3 + 1)
    assert "stratify = false" in msg
    assert len(kfold(np.array([0, 0, 1, 1, 2, 2]), 4, stratify=False)) == 4
