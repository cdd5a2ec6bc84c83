"""Evaluation metrics as pure tensor functions (any device, no loop over samples).

Classification (conventions of scikit-learn, so numbers can be checked against it):

- accuracy = (1/N) * sum_i [pred_i == y_i]
- confusion matrix ``cm[t, p]`` = number of samples of true class t predicted as p
  (rows = true class, columns = predicted class), built as ``bincount(y * C + pred)``
- per class c, with TP = cm[c, c], FP = sum_t cm[t, c] - TP, FN = sum_p cm[c, p] - TP:
  precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2 P R / (P + R);
  a ratio whose denominator is 0 is 0 (sklearn's ``zero_division=0``)
- macro average = unweighted mean over all C classes, including classes with no
  samples (for F1 the mean of the per-class F1, not the F1 of the mean P and R)

Regression (for targets ``(N,)`` or ``(N, k)``; each output scored, then averaged):

- MSE = mean((pred - y)^2), MAE = mean(|pred - y|)
- R^2 = 1 - SS_res / SS_tot with SS_res = sum_i (y_i - pred_i)^2 and
  SS_tot = sum_i (y_i - mean(y))^2, per output, then the uniform average over the k
  outputs (sklearn's ``multioutput="uniform_average"``). A constant target
  (SS_tot = 0) scores 1.0 when predicted exactly and 0.0 otherwise (sklearn's
  ``force_finite=True``). ``r2_from_sums`` is that rule from the sums of squares, the one
  definition of R^2: evaluation.json's ``r2`` and the per-epoch ``*_r2`` of the Trainer and
  the population (results.json, metrics.csv) both use it.

Predictions from model outputs (``predictions``): logits ``(N, C)`` with C > 1 -> argmax;
binary logits ``(N,)`` or ``(N, 1)`` of a floating dtype -> ``logit > 0``; an integer
``(N,)`` tensor is taken as class predictions already.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "predictions",
    "accuracy",
    "confusion_matrix",
    "precision_recall_f1",
    "mse",
    "mae",
    "r2",
    "r2_from_sums",
    "classification_report",
    "regression_report",
]


def predictions(logits_or_pred: Tensor) -> Tensor:
    """Class predictions ``(N,)`` int64 from logits ``(N, C)``, binary logits or predictions."""
    out = logits_or_pred.detach()
    if out.dim() == 2 and out.shape[1] > 1:
        return out.argmax(dim=1)  # (N, C) -> (N,)
    if out.dim() == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.dim() != 1:
        raise ValueError(
            f"logits_or_pred must have shape (N, C), (N, 1) or (N,); got {tuple(out.shape)}"
        )
    if out.is_floating_point():
        return (out > 0).long()  # binary logit: sigmoid(z) > 0.5  <=>  z > 0
    if out.is_complex():
        raise ValueError(f"logits_or_pred has dtype {out.dtype}; allowed: float, int or bool")
    return out.long()  # already class predictions


def _labels(y: Tensor, n: int) -> Tensor:
    """Targets as ``(N,)`` int64; ``(N, 1)`` is accepted."""
    y = y.detach()
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dim() != 1 or y.shape[0] != n:
        raise ValueError(f"y must have shape ({n},) to match the predictions; got {tuple(y.shape)}")
    if y.is_floating_point() and not bool(torch.all(y == y.round())):
        raise ValueError("y must hold integer class labels; got non-integer floats")
    return y.long()


def accuracy(logits_or_pred: Tensor, y: Tensor) -> Tensor:
    """Fraction of correct predictions, a 0-dim float tensor on the input's device.

    ``logits_or_pred``: logits ``(N, C)`` (argmax), binary logits ``(N,)``/``(N, 1)``
    (threshold at 0) or integer predictions ``(N,)``. ``y``: class labels ``(N,)``.
    Example: ``accuracy(torch.tensor([[2., 1.], [0., 3.]]), torch.tensor([0, 0]))`` -> 0.5.
    """
    pred = predictions(logits_or_pred)
    y = _labels(y, pred.shape[0])
    if pred.shape[0] == 0:
        raise ValueError("accuracy needs at least one sample; got N = 0")
    return (pred == y.to(pred.device)).float().mean()


def confusion_matrix(pred: Tensor, y: Tensor, num_classes: int) -> Tensor:
    """``(C, C)`` int64 counts: ``cm[t, p]`` = samples of true class t predicted as p.

    Computed as ``bincount(y * C + pred, minlength=C*C).view(C, C)``; ``pred`` may also be
    logits (see ``predictions``). Labels and predictions must lie in ``[0, C)``.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1; got {num_classes!r}")
    pred = predictions(pred)
    y = _labels(y, pred.shape[0]).to(pred.device)
    for name, t in (("pred", pred), ("y", y)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
            raise ValueError(
                f"{name} must hold class indices in [0, {num_classes}); "
                f"got values in [{int(t.min())}, {int(t.max())}]"
            )
    flat = y * num_classes + pred  # (N,) index of cell (true, predicted)
    counts = torch.bincount(flat, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """num / den, and 0 where den == 0 (sklearn's zero_division=0)."""
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))


def precision_recall_f1(cm: Tensor) -> dict[str, Tensor]:
    """Per-class precision, recall, F1 (float64) and support (int64), plus macro averages.

    From a confusion matrix with rows = true class: TP = diag, predicted count = column
    sums, true count (support) = row sums; P = TP/(TP+FP), R = TP/(TP+FN),
    F1 = 2PR/(P+R), each 0 where undefined. Keys: ``precision``, ``recall``, ``f1``,
    ``support`` (each ``(C,)``) and ``macro_precision``, ``macro_recall``, ``macro_f1``
    (0-dim, unweighted means over all C classes).
    """
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square (C, C) matrix; got shape {tuple(cm.shape)}")
    cm64 = cm.detach().to(torch.float64)
    tp = cm64.diagonal()
    predicted = cm64.sum(dim=0)  # TP + FP per class
    support = cm64.sum(dim=1)  # TP + FN per class
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": cm.detach().sum(dim=1).long(),
        "macro_precision": precision.mean(),
        "macro_recall": recall.mean(),
        "macro_f1": f1.mean(),
    }


def _regression_pair(pred: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Both as float64 ``(N, k)``; ``(N,)`` against ``(N, 1)`` is accepted (no broadcasting)."""
    pred, y = pred.detach(), y.detach()
    if pred.shape != y.shape:
        if pred.numel() == y.numel() and pred.squeeze(-1).shape == y.squeeze(-1).shape:
            pred = pred.reshape(y.shape)
        else:
            raise ValueError(
                f"pred and y must have the same shape; got {tuple(pred.shape)} and {tuple(y.shape)}"
            )
    if y.dim() not in (1, 2) or y.shape[0] == 0:
        raise ValueError(f"y must have shape (N,) or (N, k) with N >= 1; got {tuple(y.shape)}")
    y = y.to(torch.float64).reshape(y.shape[0], -1)
    pred = pred.to(device=y.device, dtype=torch.float64).reshape(y.shape)
    return pred, y


def mse(pred: Tensor, y: Tensor) -> Tensor:
    """Mean squared error, mean((pred - y)^2) over all samples and outputs (float64, 0-dim)."""
    pred, y = _regression_pair(pred, y)
    return ((pred - y) ** 2).mean()


def mae(pred: Tensor, y: Tensor) -> Tensor:
    """Mean absolute error, mean(|pred - y|) over all samples and outputs (float64, 0-dim)."""
    pred, y = _regression_pair(pred, y)
    return (pred - y).abs().mean()


def r2(pred: Tensor, y: Tensor) -> Tensor:
    """Coefficient of determination R^2 = 1 - SS_res/SS_tot, averaged over outputs (float64).

    Per output j: SS_res = sum_i (y_ij - pred_ij)^2, SS_tot = sum_i (y_ij - mean_i y_ij)^2.
    If SS_tot = 0 the score is 1.0 when SS_res = 0, else 0.0 (as sklearn's default).
    Example: predicting the mean of y everywhere gives 0; a perfect fit gives 1.
    """
    pred, y = _regression_pair(pred, y)
    ss_res = ((y - pred) ** 2).sum(dim=0)  # (k,)
    ss_tot = ((y - y.mean(dim=0)) ** 2).sum(dim=0)  # (k,)
    return r2_from_sums(ss_res, ss_tot)


def r2_from_sums(ss_res: Tensor, ss_tot: Tensor) -> Tensor:
    """R^2 of k outputs from their sums of squares ``(k,)`` (or both divided by the same n:
    mean squared error and variance), the uniform average over outputs (sklearn's default)::

        R^2 = (1/k) sum_j (1 - SS_res_j / SS_tot_j)

    An output with SS_tot_j = 0 (a constant target) scores 1.0 when SS_res_j = 0, else 0.0
    (sklearn's ``force_finite=True``). Example: ``r2_from_sums(torch.tensor([1.0, 0.0]),
    torch.tensor([4.0, 0.0]))`` -> (0.75 + 1.0) / 2 = 0.875.
    """
    ss_res, ss_tot = ss_res.reshape(-1), ss_tot.reshape(-1)
    constant = torch.where(ss_res == 0, torch.ones_like(ss_res), torch.zeros_like(ss_res))
    score = torch.where(ss_tot > 0, 1 - ss_res / ss_tot.clamp_min(1e-300), constant)
    return score.mean()


def classification_report(logits: Tensor, y: Tensor, classes: list[str]) -> dict:
    """JSON-ready summary: accuracy, per-class P/R/F1/support, macro averages, confusion matrix.

    ``classes`` names the C classes in label order (C = 2 for binary logits). Returns
    ``{"accuracy": float, "classes": [...], "per_class": {name: {"precision", "recall",
    "f1", "support"}}, "macro": {"precision", "recall", "f1"}, "confusion_matrix": [[int]]}``.
    """
    classes = [str(c) for c in classes]
    if len(set(classes)) != len(classes) or not classes:
        raise ValueError(f"classes must be non-empty and unique; got {classes}")
    if logits.dim() == 2 and logits.shape[1] > 1 and logits.shape[1] != len(classes):
        raise ValueError(
            f"classes has {len(classes)} names but logits have {logits.shape[1]} columns"
        )
    pred = predictions(logits)
    cm = confusion_matrix(pred, y, len(classes))
    prf = precision_recall_f1(cm)
    per_class = {
        name: {
            "precision": float(prf["precision"][c]),
            "recall": float(prf["recall"][c]),
            "f1": float(prf["f1"][c]),
            "support": int(prf["support"][c]),
        }
        for c, name in enumerate(classes)
    }
    return {
        "accuracy": float(accuracy(pred, y)),
        "classes": classes,
        "per_class": per_class,
        "macro": {
            "precision": float(prf["macro_precision"]),
            "recall": float(prf["macro_recall"]),
            "f1": float(prf["macro_f1"]),
        },
        "confusion_matrix": cm.cpu().tolist(),
    }


def regression_report(pred: Tensor, y: Tensor) -> dict:
    """JSON-ready ``{"mse": float, "r2": float, "mae": float}`` (formulas in the module doc)."""
    return {"mse": float(mse(pred, y)), "r2": float(r2(pred, y)), "mae": float(mae(pred, y))}
