"""Stochastic layers that draw from an explicit ``torch.Generator``.

Inverted dropout (Srivastava et al., 2014, "Dropout: a simple way to prevent neural networks
from overfitting", JMLR 15): during training each unit is kept with probability ``1 - p``
and the kept units are scaled by ``1 / (1 - p)``, so that ``E[output] = input``; at
inference the layer is the identity. With the mask ``m_i ~ Bernoulli(1 - p)``::

    y_i = m_i * x_i / (1 - p)

``drop_prob`` (``p``) is always the probability of *dropping* a unit, never of keeping it.

Unlike ``torch.nn.Dropout`` these layers take their randomness from ``self.generator``
when one is set (the Trainer sets one per run), so a run is reproducible and resumable
without touching PyTorch's global RNG.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["dropout", "Dropout", "set_generator"]


def dropout(x: Tensor, drop_prob: float, training: bool = True,
            generator: torch.Generator | None = None) -> Tensor:
    """Inverted dropout: zero each element with probability ``drop_prob``, scale the rest by 1/(1-p)."""
    if not 0.0 <= drop_prob < 1.0:
        raise ValueError(f"dropout drop_prob must be in [0, 1); got {drop_prob!r}")
    if not training or drop_prob == 0.0:
        return x
    keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) >= drop_prob
    return x * keep / (1.0 - drop_prob)


class Dropout(nn.Module):
    """Inverted dropout with ``drop_prob`` the probability of dropping (see module docstring).

    Example::

        >>> layer = Dropout(0.5); layer.generator = torch.Generator().manual_seed(0)
        >>> y = layer(torch.ones(4, 8))   # about half zeros, the rest 2.0
    """

    def __init__(self, drop_prob: float = 0.5):
        super().__init__()
        dropout(torch.zeros(()), drop_prob, training=False)   # validates drop_prob
        self.drop_prob = float(drop_prob)
        self.generator: torch.Generator | None = None

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.drop_prob, self.training, self.generator)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def set_generator(model: nn.Module, generator: torch.Generator | None) -> None:
    """Give every stochastic layer of ``model`` (those with a ``generator`` attribute) one generator."""
    for m in model.modules():
        if hasattr(m, "generator"):
            m.generator = generator
