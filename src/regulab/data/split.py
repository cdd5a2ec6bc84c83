"""Train / validation / test splits and K folds, shuffled, stratified and seeded.

The notes' default split is 80 / 15 / 5 percent. A dataset that ships its own test set
keeps it as *the* test set; its pool is then split into train and validation in the ratio
``train : val`` (the test fraction is not used). Splits are made once per ``data.seed`` so
that runs with different training seeds see the same examples. The test set is evaluated
once, at the end of a run. The shuffled splits are ``shuffle_split``'s, in NumPy, with the
draws of scikit-learn's ``train_test_split`` (the same rows for the same seed, without its
import). K-fold cross-validation uses scikit-learn's
``StratifiedKFold`` / ``KFold`` (``data.folds``, ``data.fold``): the held-out fold is the test
split, and the validation split that early stopping watches comes from the other folds.
A validation fraction of 0 (``data.split = [1, 0, 0]`` or ``[0.9, 0, 0.1]``) gives an empty
validation split: every row of the pool not held out for testing is trained on.
A dataset's own test set takes no part in cross-validation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from regulab.errors import DataError

__all__ = ["SplitIndices", "shuffle_split", "split_indices", "fold_indices", "subsample", "kfold"]


@dataclass
class SplitIndices:
    """Row indices into the dataset pool; ``test`` is None when the dataset brings its own test set."""
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray | None


def shuffle_split(n: int, second: float | int, seed: int,
                  y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(first, second)`` of a shuffled split of ``n`` rows, the second part of
    ``ceil(second * n)`` rows (a fraction) or ``second`` rows (a count), stratified by ``y``
    when given: each class keeps its share in both parts as closely as whole rows allow.

    The same draws as scikit-learn's ``train_test_split(..., random_state=seed, shuffle=True,
    stratify=y)`` (a ``np.random.RandomState(seed)``; stratified: the rows per class are the
    approximate mode of the multivariate hypergeometric, ties broken at random, then each
    class's rows permuted and both parts permuted again), so splits made before this function
    replaced it are the same rows -- without importing scikit-learn, SciPy and pandas (a second
    of every run's start). Raises ``ValueError`` saying why the split cannot be made."""
    n_second = math.ceil(second * n) if isinstance(second, float) else int(second)
    n_first = n - n_second
    if not 0 < n_second < n or (isinstance(second, float) and not 0 < second < 1):
        raise ValueError(f"with n_samples={n}, a part of {second} leaves one part empty")
    rng = np.random.RandomState(seed)
    if y is None:
        order = rng.permutation(n)
        return order[n_second:], order[:n_second]
    if y.ndim == 2:     # one class per distinct row
        y = np.array([" ".join(row.astype("str")) for row in y])
    classes, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    if counts.min() < 2:
        raise ValueError(f"class {classes[counts.argmin()].item()!r} has only 1 row; stratifying needs 2 or more")
    if min(n_first, n_second) < len(classes):
        raise ValueError(f"a part of {min(n_first, n_second)} rows cannot hold all {len(classes)} classes")
    by_class = np.split(np.argsort(codes, kind="stable"), np.cumsum(counts)[:-1])
    first_k = _rows_per_class(counts, n_first, rng)
    second_k = _rows_per_class(counts - first_k, n_second, rng)
    first, rest = [], []
    for rows, a, b in zip(by_class, first_k, second_k):
        rows = rows[rng.permutation(len(rows))]
        first.extend(rows[:a])
        rest.extend(rows[a:a + b])
    return rng.permutation(first), rng.permutation(rest)


def _rows_per_class(counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Whole rows per class summing to ``draws``, proportional to ``counts``: each class's
    share ``draws * c_i / sum(c)`` floored, the rows left over going to the largest
    remainders first, ties broken by ``rng``."""
    share = counts / counts.sum() * draws
    rows = np.floor(share)
    missing = int(draws - rows.sum())
    remainder = share - rows
    for value in np.sort(np.unique(remainder))[::-1]:
        if missing <= 0:
            break
        tied = np.flatnonzero(remainder == value)
        take = min(len(tied), missing)
        rows[rng.choice(tied, size=take, replace=False)] += 1
        missing -= take
    return rows.astype(int)


def _split(idx: np.ndarray, y: np.ndarray | None, second: float | int, seed: int, what: str,
           key: str = "data.split"):
    """Split ``idx`` in two, the second part of size ``second`` (fraction or count); a
    second part of size 0 is empty (``data.split = [1, 0, 0]``: no validation split)."""
    if second == 0:
        return idx, idx[:0]
    try:
        first, rest = shuffle_split(len(idx), second, seed, None if y is None else y[idx])
    except ValueError as e:
        hint = " or set data.stratify = false" if y is not None else ""
        raise DataError(f"{key}: cannot make the {what} split of {len(idx)} examples "
                        f"({e}); use a larger fraction{hint}") from None
    return idx[first], idx[rest]


def split_indices(y: np.ndarray, fractions: list[float], *, stratify: bool, seed: int,
                  has_test: bool) -> SplitIndices:
    """Shuffled (stratified when ``stratify``) train/val/test indices of ``len(y)`` examples."""
    train_f, val_f, test_f = fractions
    strat = y if stratify else None
    idx = np.arange(len(y))
    test = None
    if not has_test and test_f > 0:
        idx, test = _split(idx, strat, test_f, seed, "test")
    rest = val_f / (train_f + val_f)
    train, val = _split(idx, strat, rest, seed + 1, "validation")
    return SplitIndices(np.sort(train), np.sort(val), None if test is None else np.sort(test))


def fold_indices(y: np.ndarray, fractions: list[float], k: int, fold: int, *, stratify: bool,
                 seed: int) -> SplitIndices:
    """Fold ``fold`` of ``k`` held out as the test split; the other folds split into train and
    validation in the ratio ``train : val`` (the *inner* split early stopping watches), so
    nothing of the held-out fold reaches training, preprocessing or early stopping."""
    rest, held_out = kfold(y, k, stratify=stratify, seed=seed)[fold]
    train_f, val_f, _ = fractions
    train, val = _split(rest, y if stratify else None, val_f / (train_f + val_f), seed + 1,
                        "inner validation")
    return SplitIndices(np.sort(train), np.sort(val), np.sort(held_out))


def subsample(train: np.ndarray, y: np.ndarray, size: float | int, *, stratify: bool,
              seed: int) -> np.ndarray:
    """A seeded subset of the training indices: ``size`` is a fraction in (0, 1] or a count."""
    if isinstance(size, float) and size == 1.0:
        return train
    if isinstance(size, int) and size >= len(train):
        if size > len(train):
            raise DataError(f"data.train_size: {size} is more than the {len(train)} training examples")
        return train
    kept, _ = _split(train, y if stratify else None, 1.0 - size if isinstance(size, float)
                     else len(train) - size, seed, "train_size", "data.train_size")
    return np.sort(kept)


def kfold(y: np.ndarray, k: int, *, stratify: bool = True, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, held-out) index pairs; every example is held out exactly once."""
    if k < 2 or k > len(y):
        raise DataError(f"kfold: k must be between 2 and the number of examples ({len(y)}); got {k}")
    from sklearn.model_selection import KFold, StratifiedKFold
    splitter = (StratifiedKFold if stratify else KFold)(n_splits=k, shuffle=True, random_state=seed)
    try:
        return list(splitter.split(np.zeros(len(y)), y))
    except ValueError as e:
        raise DataError(f"kfold: cannot make {k} stratified folds ({e}); use fewer folds "
                        "or stratify = false") from None
