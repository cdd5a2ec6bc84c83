"""Input preprocessing fitted on the training split only, saved with the model.

The notes' three rescalings, computed per feature over the training examples:

- ``minmax``       x' = (x - min(x)) / (max(x) - min(x))       -> [0, 1] on the training split
- ``standardize``  x' = (x - mean(x)) / std(x)                  (population std, as scikit-learn)
- ``unit_norm``    x' = x / ||x||_2                             (per example; nothing to fit)
- ``none``         x' = x

A feature that is constant on the training split gets a scale of 1 (so it maps to 0), as
scikit-learn's scalers do. ``Preprocessor`` is an ``nn.Module`` whose fitted ``shift`` and
``scale`` are buffers, so they travel in ``model.safetensors`` with the network weights.
Fitting on the training split alone keeps validation and test statistics out of training.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from regulab.config.sections import PREPROCESS

__all__ = ["Preprocessor"]


class Preprocessor(nn.Module):
    """``x' = (x - shift) / scale`` per feature, or per-example unit norm; ``fit`` on training data."""

    def __init__(self, kind: str, sample_shape: tuple[int, ...]):
        super().__init__()
        if kind not in PREPROCESS:
            raise ValueError(f"preprocess must be one of {', '.join(PREPROCESS)}; got {kind!r}")
        self.kind = kind
        self.register_buffer("shift", torch.zeros(sample_shape))
        self.register_buffer("scale", torch.ones(sample_shape))

    @torch.no_grad()
    def fit(self, X: Tensor) -> Preprocessor:
        """Learn ``shift``/``scale`` from the training examples ``X`` of shape ``(N, *sample_shape)``."""
        X = X.to(torch.float64)   # float32 sums leave a constant feature a tiny nonzero std
        if self.kind == "minmax":
            lo, hi = X.amin(0), X.amax(0)
            self.shift.copy_(lo)
            self.scale.copy_(torch.where(hi > lo, hi - lo, torch.ones_like(hi)))
        elif self.kind == "standardize":
            std = X.std(0, correction=0)
            self.shift.copy_(X.mean(0))
            self.scale.copy_(torch.where(std > 0, std, torch.ones_like(std)))
        return self

    @torch.no_grad()
    def fit_batches(self, batches: Iterable[Tensor]) -> Preprocessor:
        """``fit`` in one pass over batches of the training examples (streamed data): min and
        max, or mean and variance merged batch by batch in float64 (Chan, Golub and LeVeque,
        1979: ``M2 = M2_a + M2_b + delta^2 n_a n_b / n``), the population std as ``fit``'s."""
        if self.kind not in ("minmax", "standardize"):
            return self
        # the running statistics are updated in place: no new long-lived tensor per batch
        n, lo, hi, mean, m2 = 0, None, None, None, None
        for xb in batches:
            if len(xb) == 0:
                continue
            xb = xb.to(torch.float64, copy=True)   # changed in place below
            if self.kind == "minmax":
                if lo is None:
                    lo, hi = xb.amin(0), xb.amax(0)
                else:
                    torch.minimum(lo, xb.amin(0), out=lo)
                    torch.maximum(hi, xb.amax(0), out=hi)
                continue
            nb, mb = len(xb), xb.mean(0)
            m2b = xb.sub_(mb).square_().sum(0)
            if mean is None:
                n, mean, m2 = nb, mb, m2b
                continue
            delta, total = mb.sub_(mean), n + nb
            mean.add_(delta, alpha=nb / total)
            m2.add_(m2b).add_(delta.square_(), alpha=n * nb / total)
            n = total
        if self.kind == "minmax":
            self.shift.copy_(lo)
            self.scale.copy_(torch.where(hi > lo, hi - lo, torch.ones_like(hi)))
        else:
            std = (m2 / n).sqrt()
            self.shift.copy_(mean)
            self.scale.copy_(torch.where(std > 0, std, torch.ones_like(std)))
        return self

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "unit_norm":
            norm = x.flatten(1).norm(dim=1).clamp_min(1e-12)
            return x / norm.view(-1, *([1] * (x.dim() - 1)))
        if self.kind == "none":
            return x
        return (x - self.shift) / self.scale

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
