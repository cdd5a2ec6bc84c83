"""Over/underfitting diagnosis from train and validation scores: bias and variance, graded.

For a score s in [0, 1] (accuracy; R^2 for regression, which can be negative) and the score a
perfect fit reaches, ``reference`` (1.0 unless configured: a task whose best possible accuracy
is known to be lower says so)::

    bias     = reference - train score          (how far the model is from fitting its data)
    variance = train score - validation score   (the generalization gap)

Each is graded on its own (``grade``): bias **low** <= 0.10 < **moderate** <= 0.25 < **high**
(``BIAS_GRADES``); variance **low** <= 0.05 < **moderate** <= 0.15 < **high**
(``VARIANCE_GRADES``). The diagnosis (``diagnose``) names what is not low:

- **overfit**               variance > ``GAP`` (0.05): it fits the training data much better
  than unseen data;
- **underfit**              train < ``FLOOR`` (0.90), i.e. bias > reference - FLOOR: it does not
  even fit the training data;
- **underfit and overfit**  both at once (a strong regularizer that costs train fit and still
  leaves a gap);
- **good fit**              neither.

Against a baseline (``against``): the fraction of the baseline's gap a variant closes,
(gap_base - gap) / gap_base (1: no gap left; negative: a wider gap), and its cost in train fit,
train_base - train.

The notes' remedies (``REMEDIES``): for overfitting, more data, augmentation, a smaller network,
L1/L2 penalties, dropout, early stopping; for underfitting, more capacity or longer training.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["diagnose", "assess", "against", "grade", "GAP", "FLOOR", "BIAS_GRADES",
           "VARIANCE_GRADES", "REMEDIES"]

GAP = 0.05
FLOOR = 0.90
BIAS_GRADES = (0.10, 0.25)        # low <= 0.10 < moderate <= 0.25 < high
VARIANCE_GRADES = (GAP, 0.15)     # low <= 0.05 < moderate <= 0.15 < high
EPS = 1e-9     # a difference that equals a threshold in decimals (0.90 - 0.85) stays on its side

REMEDIES = {
    "overfit": "more data, data augmentation, a smaller network, L1/L2 penalties, dropout, early stopping",
    "underfit": "a larger network, longer training, less regularization",
    "underfit and overfit": "a better-suited network or features: regularizing more costs train fit, "
                            "regularizing less widens the gap",
    "good fit": "",
}


def grade(value: float, thresholds: tuple[float, float]) -> str:
    """'low' when value <= thresholds[0], 'moderate' up to thresholds[1], else 'high'
    (nan: 'high', nothing is known to be fine)."""
    if math.isnan(value) or value > thresholds[1] + EPS:
        return "high"
    return "moderate" if value > thresholds[0] + EPS else "low"


def diagnose(train_score: float, val_score: float, gap: float = GAP, floor: float = FLOOR) -> str:
    """'overfit', 'underfit', 'underfit and overfit' or 'good fit' from train and validation
    accuracy (or R^2): overfit when train - val > ``gap``, underfit when train < ``floor``."""
    if math.isnan(train_score) or math.isnan(val_score):
        return "underfit"
    over, under = train_score - val_score > gap + EPS, train_score < floor - EPS
    return ("underfit and overfit" if over and under else "overfit" if over
            else "underfit" if under else "good fit")


def assess(train_score: float, val_score: float, reference: float = 1.0) -> dict[str, Any]:
    """Bias and variance with their grades and the diagnosis, with ``reference`` the score of a
    perfect fit: ``diagnose`` with floor = reference - 0.10, so underfit is bias above low and
    overfit is variance above low."""
    bias, variance = reference - train_score, train_score - val_score
    b, v = grade(bias, BIAS_GRADES), grade(variance, VARIANCE_GRADES)
    return {"diagnosis": diagnose(train_score, val_score, GAP, reference - BIAS_GRADES[0]),
            "bias": bias, "bias_grade": b, "variance": variance, "variance_grade": v,
            "reference": reference}


def against(fit: dict[str, Any], base: dict[str, Any]) -> dict[str, float | None]:
    """``gap_closed``: the fraction of the baseline's gap (variance) that ``fit`` closes, None
    when the baseline has no gap; ``train_cost``: how much train score it gives up (bias minus
    the baseline's bias, the same reference)."""
    gb, g = base["variance"], fit["variance"]
    closed = (gb - g) / gb if math.isfinite(gb) and gb > 0 and math.isfinite(g) else None
    return {"gap_closed": closed, "train_cost": fit["bias"] - base["bias"]}
