"""Symmetric label noise: a fixed fraction of the training labels flipped to another class.

Label noise is how double descent is made visible: Nakkiran et al. (2019), "Deep double
descent: where bigger models and more data hurt", show that with 10-20% of the training
labels flipped the test error peaks sharply where the model is just able to interpolate
(fit every training label, noisy ones included) and falls again as the model grows. It is
also a robustness test for a regularizer: a good one keeps the network from memorizing the
flipped labels.

It is applied to the TRAINING split only: validation and test labels stay clean, so they
measure how well the true labels are predicted.

The noise is "symmetric": exactly ``round(fraction * n)`` examples, chosen uniformly
without replacement, each get a label drawn uniformly from the other ``num_classes - 1``
classes (never their own), so P(noisy = j | clean = i) = fraction / (K - 1) for j != i.
"""

from __future__ import annotations

import numpy as np

from regulab.checks import number
from regulab.errors import DataError

__all__ = ["flip_labels"]

_check_fraction = number(ge=0.0, le=1.0)


def flip_labels(y: np.ndarray, fraction: float, num_classes: int,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(noisy labels, sorted indices of the flipped examples) for integer labels ``y`` in [0, K).

    ``fraction`` in [0, 1] (``data.label_noise``); ``num_classes`` K >= 2; the draws come from
    ``np.random.default_rng(seed)``, so the same seed flips the same examples the same way.
    ``y`` itself is not modified. Example::

        >>> noisy, flipped = flip_labels(np.array([0, 1, 2, 0, 1]), 0.4, 3, seed=0)
        >>> len(flipped), bool((noisy[flipped] != np.array([0, 1, 2, 0, 1])[flipped]).all())
        (2, True)
    """
    fraction = _check_fraction("data.label_noise", fraction)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise DataError(f"label noise needs num_classes to be an integer >= 2; got {num_classes!r}")
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"label noise needs 1-D integer class labels; got shape {y.shape}, dtype {y.dtype}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"label noise needs labels in [0, {num_classes}); "
                        f"got labels from {y.min()} to {y.max()}")
    rng = np.random.default_rng(seed)
    n = len(y)
    flipped = np.sort(rng.choice(n, size=int(round(fraction * n)), replace=False))
    # an offset in 1..K-1 added mod K: uniform over the K-1 other classes
    offset = rng.integers(1, num_classes, size=len(flipped))
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + offset) % num_classes
    return noisy, flipped
