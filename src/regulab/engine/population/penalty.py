"""The members' norm penalties of a population: ``l1_k * sum |w| + l2_k * sum w^2``.

Member k's penalty acts on its slices ``w[k]`` of the penalized parameters (the weights its
``NormPenalty`` selects), whose gradient ``l1_k sign(w) + 2 l2_k w`` the optimizer step adds
without a backward pass through it. In a study's population a few members have a penalty
among many that have none, so the work is done on runs of consecutive members that share a
coefficient (``w[k0:k1]``, a view): the members without a penalty cost nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["StackedNormPenalty", "member_runs"]


def member_runs(values: Sequence[float]) -> list[tuple[float, int, int]]:
    """``(value, k0, k1)`` for each run of consecutive members ``k0 <= k < k1`` with the same
    nonzero value (members with 0 are in none)."""
    runs: list[tuple[float, int, int]] = []
    for k, v in enumerate(values):
        if v == 0:
            continue
        if runs and runs[-1][0] == v and runs[-1][2] == k:
            runs[-1] = (v, runs[-1][1], k + 1)
        else:
            runs.append((v, k, k + 1))
    return runs


class StackedNormPenalty:
    """Penalties ``l1[k]``, ``l2[k]`` on ``params`` (each ``(K, ...)``, member k's in row k),
    whose gradients are the matching ``grads`` (module docstring)."""

    def __init__(self, params: Sequence[Tensor], grads: Sequence[Tensor], l1: Sequence[float],
                 l2: Sequence[float]):
        self.params, self.grads = list(params), list(grads)
        self.K = len(l1)
        self.l1, self.l2 = member_runs(l1), member_runs(l2)

    @torch.no_grad()
    def value(self) -> Tensor:
        """(K,): ``l1_k * sum_i ||w_i[k]||_1 + l2_k * sum_i ||w_i[k]||_2^2``, 0 without a penalty."""
        device = self.params[0].device if self.params else None
        out = torch.zeros(self.K, device=device)
        norm = torch.linalg.vector_norm
        for runs, order in ((self.l1, 1), (self.l2, 2)):
            for value, a, b in runs:
                total = sum(norm(w[a:b].flatten(1), order, dim=1) ** order for w in self.params)
                out[a:b] += value * total
        return out

    @torch.no_grad()
    def add_gradient(self) -> None:
        """``grad += l1_k sign(w) + 2 l2_k w`` on each penalized member's slices, in place."""
        for w, g in zip(self.params, self.grads):
            for value, a, b in self.l1:
                g[a:b].add_(w[a:b].sign(), alpha=value)        # d(l1 |w|)/dw = l1 sign(w)
            for value, a, b in self.l2:
                g[a:b].add_(w[a:b], alpha=2 * value)           # d(l2 w^2)/dw = 2 l2 w
