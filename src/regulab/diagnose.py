"""Over/underfitting diagnosis from train and validation metrics.

The rule (classification, accuracies in [0, 1]; regression uses R^2 the same way):

- **overfit**   when train - validation > ``GAP`` (0.05): the model fits the training data
  much better than unseen data (high variance);
- **underfit**  otherwise, when train < ``FLOOR`` (0.90): it does not even fit the training
  data (high bias);
- **good fit**  otherwise.

The notes' remedies: for overfitting, more data, augmentation, a smaller network, L1/L2
penalties, dropout, early stopping; for underfitting, more capacity or longer training.
"""

from __future__ import annotations

import math

__all__ = ["diagnose", "GAP", "FLOOR", "REMEDIES"]

GAP = 0.05
FLOOR = 0.90

REMEDIES = {
    "overfit": "more data, data augmentation, a smaller network, L1/L2 penalties, dropout, early stopping",
    "underfit": "a larger network, longer training, less regularization",
    "good fit": "",
}


def diagnose(train_score: float, val_score: float, gap: float = GAP, floor: float = FLOOR) -> str:
    """'overfit', 'underfit' or 'good fit' from train and validation accuracy (or R^2)."""
    if math.isnan(train_score) or math.isnan(val_score):
        return "underfit"
    if train_score - val_score > gap:
        return "overfit"
    if train_score < floor:
        return "underfit"
    return "good fit"
