"""Max-norm constraint: cap the L2 norm of each unit's incoming weight vector.

Srivastava et al., 2014, "Dropout: a simple way to prevent neural networks from
overfitting" (JMLR 15), section 5.1: for every hidden unit, constrain its incoming
weight vector w to ``||w||_2 <= c``. After each optimizer step, a w that left the ball
is projected back onto it,

    w <- w * c / ||w||_2     if ||w||_2 > c,     else unchanged,

so the weights cannot grow without bound even with a large learning rate. The paper uses
it together with dropout and large, decaying learning rates (with momentum); typical
values of c are 3 to 4.

"Incoming weight vector" in torch's layouts: a row of a Linear weight ``(out, in)``; for a
Conv weight ``(out, in, *k)`` the whole ``(in, *k)`` slice of each output channel. This is
``torch.renorm(w, p=2, dim=0, maxnorm=c)`` except that renorm divides by ``norm + 1e-7``;
here vectors over the limit get norm exactly c (up to rounding) and the others are left
bit-for-bit unchanged. Keras: ``kernel_constraint=MaxNorm(c)`` (per column, its layout).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from regulab.checks import number
from regulab.regularize.penalties import check_names, find_layers

__all__ = ["max_norm_", "max_norm_layers", "MaxNorm"]

# layers whose weight is (out, in, *k) with one incoming vector per output unit along dim 0
# (ConvTranspose weights are (in, out, *k), so they are not among them)
_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def unit_norms(weight: Tensor) -> Tensor:
    """The L2 norm of each unit's incoming weight vector: ``(out,)`` for ``(out, in, *k)``."""
    return torch.linalg.vector_norm(weight.flatten(1), dim=1)


@torch.no_grad()
def max_norm_(weight: Tensor, max_norm: float) -> Tensor:
    """In place: rescale each incoming weight vector ``weight[i]`` to L2 norm <= ``max_norm``.

    ``weight``: ``(out, in)`` or ``(out, in, *k)``. Returns ``weight``.
    """
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) \
            or not math.isfinite(max_norm) or max_norm <= 0:
        raise ValueError(f"max_norm must be a number > 0; got {max_norm!r}")
    if weight.dim() < 2:
        raise ValueError(f"max_norm_ needs a weight of shape (out, in, ...); got shape {tuple(weight.shape)}")
    norms = unit_norms(weight)
    # c / max(norm, c): exactly 1.0 for vectors within the ball, c / norm for the others
    scale = max_norm / norms.clamp(min=max_norm)
    return weight.mul_(scale.view(-1, *[1] * (weight.dim() - 1)))


def max_norm_layers(model: nn.Module, layers: Sequence[str] | None = None) -> list[nn.Module]:
    """The layers max-norm constrains: every Linear/Conv of ``model`` (or those under ``layers``);
    a frozen one (a transferred layer that does not learn) is left as it is."""
    return [layer for _, layer in find_layers(model, layers, lambda m: isinstance(m, _LAYERS),
                                              "MaxNorm.layers", kind="argument")
            if layer.weight.requires_grad]


class MaxNorm:
    """``model -> None``: ``max_norm_`` on every Linear/Conv weight (or those under ``layers``).

    For ``Trainer(constraints=...)``, which applies it after every optimizer step.
    max_norm: the radius c (> 0; the paper's typical 3-4). layers: module names, as in
    ``model.named_modules()`` (default: every Linear/Conv layer, the output layer included).

    Example::

        >>> trainer = Trainer(model, optimizer, loss_fn, constraints=[MaxNorm(3.0)])
    """

    def __init__(self, max_norm: float, layers: Sequence[str] | None = None):
        self.max_norm = number(gt=0.0)("regularization.max_norm", max_norm)
        self.layers = check_names(layers, "MaxNorm.layers", kind="argument")

    def _layers(self, model: nn.Module) -> list[nn.Module]:
        return max_norm_layers(model, self.layers)

    def __call__(self, model: nn.Module) -> None:
        for layer in self._layers(model):
            max_norm_(layer.weight, self.max_norm)

    @torch.no_grad()
    def largest_norm(self, model: nn.Module) -> float:
        """The largest unit norm among the constrained layers (<= max_norm after a step)."""
        return max((float(unit_norms(layer.weight).max()) for layer in self._layers(model)), default=0.0)

    def get_config(self) -> dict:
        """Plain values; ``MaxNorm(**c.get_config())`` rebuilds ``c``."""
        return {"max_norm": self.max_norm, "layers": None if self.layers is None else list(self.layers)}

    def __repr__(self) -> str:
        return f"MaxNorm(max_norm={self.max_norm!r}, layers={self.layers!r})"
