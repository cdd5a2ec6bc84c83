"""The objective both engines train on and score with: the loss, the hits and the epoch summary.

One network's outputs are ``(B, ...)``; a population's are ``(K, B, ...)``, member k's in row
k, and its label smoothing is a ``(K,)`` tensor, one eps per member. ``Objective`` is the one
place these are computed, for the ``Trainer`` and the ``Population`` alike.

Losses, each the mean over the batch (per member for a population):

* ``cross_entropy`` -- logits ``(B, C)``, labels ``(B,)``. With label smoothing eps
  (Szegedy et al., 2016, "Rethinking the Inception architecture for computer vision",
  section 7) the target is ``(1 - eps) * onehot(y) + eps / C``, so with ``p = softmax(z)``::

      CE_eps = (1 - eps) * (-log p_y) + eps * mean_c(-log p_c)

  which is ``F.cross_entropy(z, y, label_smoothing=eps)``; one network uses exactly that.
* ``bce`` -- one logit per example ``(B, 1)``, 0/1 labels:
  ``-[y log s(z) + (1 - y) log(1 - s(z))]``, s the sigmoid.
* ``mse`` -- ``mean_{i,j} (out_ij - y_ij)^2`` over the batch and the k outputs.
* multi-task -- delegated to ``regulab.regularize.multitask.Tasks``: the objective is the
  weighted sum of the heads' cross-entropies, and each head's loss is logged.

Hits, summed over a batch and then over an epoch: the number of correct predictions (argmax
of the logits; ``z > 0`` for bce), or for ``mse`` the summed squared error of each output
``SSE_j = sum_i (out_ij - y_ij)^2``, shape ``(k,)``.

Summary of an epoch from the summed (batch-size weighted) losses and hits over n examples:
``{prefix}_loss = loss_sum / n`` and ``{prefix}_acc = hits / n``; or ``{prefix}_mse =
sum_j SSE_j / (n k)`` and ``{prefix}_r2`` from ``regulab.metrics.r2_from_sums`` with
``SSE_j / n`` and ``Var(y_j)`` -- the uniform average over outputs, as ``metrics.r2`` and
sklearn's ``r2_score`` compute it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from regulab.metrics import r2_from_sums

if TYPE_CHECKING:
    from regulab.regularize.multitask import Tasks

__all__ = ["LOSSES", "Objective", "loss_function", "member_cross_entropy"]

LOSSES = ("cross_entropy", "bce", "mse")


def member_cross_entropy(logits: Tensor, y: Tensor, eps: float | Tensor = 0.0) -> Tensor:
    """Each member's mean cross-entropy with label smoothing (module docstring): ``logits
    (K, B, C)``, ``y (K, B)``, eps a float or ``(K,)`` -> ``(K,)``; row k equals
    ``F.cross_entropy(logits[k], y[k], label_smoothing=eps[k])``, what member k alone computes."""
    K, B, C = logits.shape
    if not isinstance(eps, Tensor) and eps == 0:       # torch's kernel, as a separate run
        return F.cross_entropy(logits.reshape(K * B, C), y.reshape(-1), reduction="none").view(K, B).mean(1)
    logp = logits.log_softmax(-1)                                           # (K, B, C)
    nll = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1).mean(1)             # (K,)
    return (1 - eps) * nll + eps * (-logp.mean(-1)).mean(1)


class Objective:
    """The loss, hits and summary of one network, or of ``members`` networks side by side.

    loss: "cross_entropy", "bce" or "mse" -- also how outputs are scored (argmax, ``z > 0``,
    squared error). label_smoothing: eps of the cross-entropy; for a population a sequence
    or ``(K,)`` tensor, one per member. tasks: a ``Tasks`` (multi-task heads), which then
    computes the losses, hits and summary. custom: a user's loss ``(out, y) -> mean`` used
    in place of the named one (outputs are still scored as ``loss`` says).

    Example::

        >>> obj = Objective("cross_entropy", label_smoothing=0.1)
        >>> obj(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]))     # log 3 whatever eps
        tensor(1.0986)
    """

    def __init__(self, loss: str = "cross_entropy", label_smoothing: float | Sequence[float] | Tensor = 0.0,
                 tasks: Tasks | None = None, custom: Callable[[Tensor, Tensor], Tensor] | None = None,
                 members: int | None = None):
        if loss not in LOSSES:
            raise ValueError(f"loss must be cross_entropy, bce or mse; got {loss!r}")
        if members is not None and (loss == "bce" or tasks is not None):
            raise ValueError(f"a population's objective is cross_entropy or mse, without tasks; got {loss!r}"
                             + (" with tasks" if tasks is not None else ""))
        self.loss, self.tasks, self.custom, self.members = loss, tasks, custom, members
        if members is None:
            self.label_smoothing: float | Tensor = float(label_smoothing)
        else:
            eps = torch.as_tensor(label_smoothing, dtype=torch.float32).expand(members).clone()
            # all zero: the plain kernel, which a separate run's loss equals bit for bit
            self.label_smoothing = eps if bool(eps.any()) else 0.0
        self._batch = 0 if members is None else 1      # the batch dimension of outputs

    def to(self, device) -> Objective:
        """The per-member label smoothing on ``device`` (where the outputs are)."""
        if isinstance(self.label_smoothing, Tensor):
            self.label_smoothing = self.label_smoothing.to(device)
        return self

    def __call__(self, out: Tensor, y: Tensor) -> Tensor:
        """The mean loss: ``()``, or ``(K,)`` for a population."""
        if self.tasks is not None:
            return self.tasks.loss(out, y)
        if self.custom is not None:
            return self.custom(out, y)
        if self.members is not None:
            if self.loss == "cross_entropy":
                return member_cross_entropy(out, y, self.label_smoothing)
            return (out - y).pow(2).flatten(1).mean(1)
        if self.loss == "cross_entropy":
            return F.cross_entropy(out, y, label_smoothing=self.label_smoothing)
        if self.loss == "bce":
            return F.binary_cross_entropy_with_logits(out.squeeze(1), y.to(out.dtype))
        return F.mse_loss(out, y)

    def losses(self, out: Tensor, y: Tensor, log_probs: bool = False) -> tuple[Tensor, Tensor]:
        """(objective, logged loss): the same mean loss, or with multi-task heads their weighted
        sum and each head's ``(H,)``. ``log_probs``: ``out`` holds log-probabilities (Monte-Carlo
        dropout), scored by their negative log-likelihood, without smoothing."""
        if self.tasks is not None:
            parts = self.tasks.losses(out, y, log_probs)
            return parts @ self.tasks.weights.to(parts.device, parts.dtype), parts
        loss = F.nll_loss(out, y) if log_probs else self(out, y)
        return loss, loss

    def hits(self, out: Tensor, y: Tensor) -> Tensor:
        """Per batch: correct predictions ``()`` (per head ``(H,)``; per member ``(K,)``), or the
        squared error summed over the batch per output ``(k,)`` (per member ``(K, k)``)."""
        if self.tasks is not None:
            return self.tasks.hits(out, y)
        classes = self._batch + 1                      # the dimension after the batch
        if self.loss == "mse":
            return (out - y).pow(2).sum(self._batch)
        pred = (out.squeeze(classes) > 0).long() if self.loss == "bce" else out.argmax(classes)
        correct = pred == y.long()
        return correct.sum() if self.members is None else correct.flatten(1).sum(1)

    def summary(self, prefix: str, loss_sum: Tensor, hits: Tensor, n: int, y: Tensor) -> dict[str, float]:
        """One network's (or member's) epoch logs from its summed losses and hits over the
        ``n`` examples of targets ``y`` (module docstring)."""
        if self.tasks is not None:
            return self.tasks.summarize(prefix, loss_sum, hits, n)
        logs = {f"{prefix}_loss": float(loss_sum) / n}
        if self.loss != "mse":
            logs[f"{prefix}_acc"] = float(hits) / n
            return logs
        sse = hits.reshape(-1)                                              # (k,)
        var = (y - y.mean(0)).pow(2).mean(0).reshape(-1)                    # (k,) Var(y_j)
        logs[f"{prefix}_mse"] = float(sse.sum()) / (n * len(sse))
        logs[f"{prefix}_r2"] = float(r2_from_sums(sse.double() / n, var.double()))
        return logs


def loss_function(name: str, label_smoothing: float = 0.0) -> Objective:
    """The mean loss of one network, ``(out, y) -> ()``: ``cross_entropy`` (logits, int labels;
    with label smoothing), ``bce`` (one logit per example, 0/1 labels) or ``mse``."""
    return Objective(name, label_smoothing)
