"""Batch normalization of K members at once: each member's own batch statistics and running ones.

Batch norm (Ioffe & Szegedy, 2015) normalizes each feature f of a layer over the batch,

    y = gamma_f (h_f - mean_B(h_f)) / sqrt(var_B(h_f) + eps) + beta_f,

with the biased variance in training, and keeps running estimates for evaluation,

    running_mean <- (1 - m) running_mean + m mean_B,   running_var <- (1 - m) running_var + m var_B',

``var_B'`` the unbiased variance (``nn.BatchNorm1d``, momentum ``m = 0.1``); evaluation uses
the running estimates. In a population member k's features ``h[k]: (B, F)`` are normalized
over its own batch: the ``(K, B, F)`` activations are seen as ``(B, K F)`` -- K F features of
one batch -- and one ``F.batch_norm`` (torch's kernel, the one a member's ``BatchNorm1d`` calls)
normalizes every member's every feature with its own gamma, beta and running statistics, so a
member's values are those of its network alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["StackedBatchNorm", "batchnorm_signature"]


def batchnorm_signature(bn: nn.BatchNorm1d) -> tuple:
    """What must be equal across members: the width and the layer's options."""
    return ("batchnorm", bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)


class StackedBatchNorm:
    """The members' ``BatchNorm1d`` layers ``modules`` (one each, equal options, affine, with
    running statistics and a momentum), with gamma and beta the stacked ``weight`` and ``bias``
    ``(K, F)``. The running statistics are held here, ``(K F,)`` each, and ``write_back`` puts
    member k's into its own layer."""

    def __init__(self, modules: Sequence[nn.BatchNorm1d], weight: Tensor, bias: Tensor):
        first = modules[0]
        if not (first.affine and first.track_running_stats and first.momentum is not None):
            raise ValueError("batch norm stacks only with affine=True, running statistics and a momentum")
        self.modules = list(modules)
        self.weight, self.bias = weight, bias
        self.momentum, self.eps = first.momentum, first.eps
        with torch.no_grad():
            self.mean = torch.stack([m.running_mean for m in modules]).view(-1)     # (K F,)
            self.var = torch.stack([m.running_var for m in modules]).view(-1)
            self.tracked = torch.stack([m.num_batches_tracked for m in modules])    # (K,)

    def __call__(self, h: Tensor, training: bool) -> Tensor:
        """``h: (K, B, F)`` -> each member's batch norm of its own ``(B, F)`` (training: its
        batch's statistics, and the running ones updated; else the running ones)."""
        K, B, F = h.shape
        x = h.transpose(0, 1).reshape(B, K * F)
        y = nn.functional.batch_norm(x, self.mean, self.var, self.weight.view(-1), self.bias.view(-1),
                                     training, self.momentum, self.eps)
        if training:
            self.tracked += 1
        return y.view(B, K, F).transpose(0, 1)

    @torch.no_grad()
    def write_back(self, k: int) -> None:
        """Member k's running statistics into its own layer."""
        own, K = self.modules[k], len(self.modules)
        own.running_mean.copy_(self.mean.view(K, -1)[k])
        own.running_var.copy_(self.var.view(K, -1)[k])
        own.num_batches_tracked.copy_(self.tracked[k])
