"""Stochastic layers -- the dropout family -- that draw from an explicit ``torch.Generator``.

``drop_prob`` (``p``) is always the probability of *dropping* a unit or weight, never of
keeping it. With the mask ``m_i ~ Bernoulli(1 - p)`` (the notes: draw ``v ~ U[0, 1)``, drop
where ``v < p``):

* Inverted dropout (the default; what PyTorch and most frameworks do)::

      train:  y = m * x / (1 - p)          inference:  y = x

* Classic dropout (Hinton et al., 2012, arXiv:1207.0580; Srivastava et al., 2014, "Dropout:
  a simple way to prevent neural networks from overfitting", JMLR 15)::

      train:  y = m * x                    inference:  y = (1 - p) * x

  The inference rule is the notes' "weight scaling inference rule" ``a := a * (1 - p)``.

  Both conventions give the same expected activation at inference: ``E[y_train] = y_eval``.
* ``ChannelDropout`` (spatial dropout; Tompson et al., 2015, "Efficient object localization
  using convolutional networks", CVPR): one mask entry per channel of a feature map,
  ``y[n, c] = m[n, c] * x[n, c] / (1 - p)``, so a whole channel is kept or dropped -- what
  ``nn.Dropout1d/2d/3d`` do, here from the layer's generator.
* ``DropConnect`` (Wan et al., 2013, "Regularization of neural networks using DropConnect",
  ICML): drops *weights* instead of activations, ``W~ = M * W / (1 - p)``, ``M_ij ~
  Bernoulli(1 - p)``; the bias is kept.
* ``GaussianNoise``: ``y = x + eps``, ``eps ~ N(0, std^2)`` (input noise injection; Bishop,
  1995, "Training with noise is equivalent to Tikhonov regularization", Neural Comput. 7).
* ``WeightNoise``: the forward pass uses ``W + eps``, ``eps ~ N(0, std^2)``, while the
  stored weights stay unchanged (An, 1996, Neural Comput. 8; Graves, 2011, NeurIPS).

Every layer here is a ``StochasticLayer`` with two attributes:

* ``generator``: the ``torch.Generator`` it draws from; ``None`` means PyTorch's global RNG
  (``set_generator`` gives one generator to every layer of a model);
* ``sampling``: when ``True`` the layer draws noise even in eval mode, as in training
  (Monte-Carlo dropout; see ``regulab.regularize.ensemble``), so MC inference never needs
  ``model.train()``, which would also switch batch norm to batch statistics.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.func import functional_call

__all__ = ["dropout", "gaussian_noise", "StochasticLayer", "Dropout", "ChannelDropout", "DropConnect",
           "GaussianNoise", "WeightNoise", "set_generator", "DROPOUT_MODES"]

DROPOUT_MODES = ("inverted", "classic")
_WRAPPABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


def check_drop_prob(owner: str, drop_prob: float) -> float:
    if not 0.0 <= drop_prob < 1.0:   # also rejects NaN
        raise ValueError(f"{owner} drop_prob must be in [0, 1) (the probability of dropping); "
                         f"got {drop_prob!r}")
    return float(drop_prob)


def _check_std(owner: str, std: float) -> float:
    if not 0.0 <= std < math.inf:
        raise ValueError(f"{owner} std must be a finite number >= 0; got {std!r}")
    return float(std)


def _check_mode(owner: str, mode: str) -> str:
    if mode not in DROPOUT_MODES:
        raise ValueError(f"{owner} mode must be one of {', '.join(map(repr, DROPOUT_MODES))}; "
                         f"got {mode!r}")
    return mode


def _check_layer(owner: str, layer: nn.Module) -> nn.Module:
    if not isinstance(layer, _WRAPPABLE):
        raise TypeError(f"{owner} layer must be an nn.Linear, nn.Conv1d or nn.Conv2d; "
                        f"got {type(layer).__name__}")
    return layer


def dropout(x: Tensor, drop_prob: float, training: bool = True,
            generator: torch.Generator | None = None, mode: str = "inverted") -> Tensor:
    """Zero each element of ``x`` with probability ``drop_prob`` (see the module docstring).

    ``mode="inverted"``: train ``x * m / (1 - p)``, otherwise ``x``.
    ``mode="classic"``: train ``x * m``, otherwise ``x * (1 - p)`` (weight scaling rule).
    Nothing is drawn when ``training`` is False or ``drop_prob`` is 0.
    """
    drop_prob = check_drop_prob("dropout", drop_prob)
    _check_mode("dropout", mode)
    if drop_prob == 0.0:
        return x
    if not training:
        return x if mode == "inverted" else x * (1.0 - drop_prob)
    keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) >= drop_prob
    return x * keep / (1.0 - drop_prob) if mode == "inverted" else x * keep


def gaussian_noise(x: Tensor, std: float, training: bool = True,
                   generator: torch.Generator | None = None) -> Tensor:
    """``x + eps`` with ``eps ~ N(0, std^2)`` elementwise when ``training``; otherwise ``x``."""
    std = _check_std("gaussian_noise", std)
    if not training or std == 0.0:
        return x
    return x + std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


class StochasticLayer(nn.Module):
    """Base of the dropout family: holds ``generator`` and ``sampling`` (module docstring)."""

    def __init__(self):
        super().__init__()
        self.generator: torch.Generator | None = None
        self.sampling: bool = False

    @property
    def drawing(self) -> bool:
        """Whether this forward pass draws noise: in training, or in eval when ``sampling``."""
        return self.training or self.sampling

    def _sampling_repr(self) -> str:
        return ", sampling=True" if self.sampling else ""


class Dropout(StochasticLayer):
    """Dropout on activations, ``drop_prob`` the probability of dropping (not keeping).

    ``mode="inverted"``: ``y = m * x / (1 - p)`` in training, ``y = x`` at inference.
    ``mode="classic"``: ``y = m * x`` in training, ``y = (1 - p) * x`` at inference
    (Srivastava et al., 2014). With ``sampling=True`` the training rule is applied in eval
    mode too (Monte-Carlo dropout).

    Example::

        >>> layer = Dropout(0.5); layer.generator = torch.Generator().manual_seed(0)
        >>> y = layer(torch.ones(4, 8))   # about half zeros, the rest 2.0
    """

    def __init__(self, drop_prob: float = 0.5, mode: str = "inverted"):
        super().__init__()
        self.drop_prob = check_drop_prob("Dropout", drop_prob)
        self.mode = _check_mode("Dropout", mode)

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.drop_prob, self.drawing, self.generator, self.mode)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, mode={self.mode!r}{self._sampling_repr()}"


class ChannelDropout(StochasticLayer):
    """Channel (spatial) dropout, ``nn.Dropout1d/2d/3d``'s rule drawn from ``generator``.

    For an input ``(N, C, *S)`` with ``dims`` spatial dimensions (``(C, *S)`` unbatched), one
    ``m[n, c] ~ Bernoulli(1 - p)`` per channel, broadcast over ``S``: ``y = m * x / (1 - p)``
    in training (inverted), ``y = x`` at inference; ``mode="classic"``: ``y = m * x``, then
    ``(1 - p) x``. The uniforms are drawn as ``dropout``'s, ``v ~ U[0, 1)`` of the mask's shape
    ``(N, C, 1, ...)``, dropping where ``v < p``.
    """

    def __init__(self, drop_prob: float = 0.5, dims: int = 2, mode: str = "inverted"):
        super().__init__()
        if dims not in (1, 2, 3):
            raise ValueError(f"ChannelDropout dims must be 1, 2 or 3 (spatial dimensions); got {dims!r}")
        self.drop_prob = check_drop_prob("ChannelDropout", drop_prob)
        self.dims = dims
        self.mode = _check_mode("ChannelDropout", mode)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() not in (self.dims + 1, self.dims + 2):
            raise ValueError(f"ChannelDropout(dims={self.dims}) takes (N, C, ...) or (C, ...) with "
                             f"{self.dims} spatial dimensions; got shape {tuple(x.shape)}")
        channels = x.dim() - self.dims                       # (N, C) or (C,)
        keep = torch.ones(*x.shape[:channels], *[1] * self.dims, device=x.device, dtype=x.dtype)
        return x * dropout(keep, self.drop_prob, self.drawing, self.generator, self.mode)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, dims={self.dims}, mode={self.mode!r}{self._sampling_repr()}"


class DropConnect(StochasticLayer):
    """DropConnect (Wan et al., 2013): drop each *weight* of ``layer`` with probability ``p``.

    In training ``y = layer(x; W~)`` with ``W~ = M * W / (1 - p)``, ``M_ij ~ Bernoulli(1 - p)``
    (inverted convention); the bias is never dropped. At inference ``y = layer(x; W)``, the
    mean network, as with inverted dropout. (The paper instead approximates the inference
    distribution of each unit by a Gaussian with matched moments and samples from it.)

    ``per_example=False``: one mask for the whole batch per forward pass. ``per_example=True``
    (``nn.Linear`` only): each example ``b`` of the batch gets its own mask ``M_b``, computed
    batched as ``y_b = x_b @ W~_b^T + bias`` with masks of shape ``(B, out, in)``.

    The wrapped layer is ``self.layer``, so its parameters are ``<name>.layer.weight`` in a
    ``state_dict``.
    """

    def __init__(self, layer: nn.Module, drop_prob: float = 0.5, per_example: bool = False):
        super().__init__()
        self.layer = _check_layer("DropConnect", layer)
        self.drop_prob = check_drop_prob("DropConnect", drop_prob)
        if per_example and not isinstance(layer, nn.Linear):
            raise ValueError(f"DropConnect per_example=True needs an nn.Linear layer; "
                             f"got {type(layer).__name__}")
        self.per_example = bool(per_example)

    def forward(self, x: Tensor) -> Tensor:
        if not self.drawing or self.drop_prob == 0.0:
            return self.layer(x)
        w = self.layer.weight
        if not self.per_example:
            return functional_call(self.layer, {"weight": dropout(w, self.drop_prob, True, self.generator)}, (x,))
        if x.dim() < 2:
            raise ValueError(f"DropConnect per_example=True needs a batch (B, ..., in); got shape {tuple(x.shape)}")
        w = dropout(w.expand(x.shape[0], *w.shape), self.drop_prob, True, self.generator)  # (B, out, in)
        y = torch.einsum("b...i,boi->b...o", x, w)
        return y if self.layer.bias is None else y + self.layer.bias

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, per_example={self.per_example}{self._sampling_repr()}"


class GaussianNoise(StochasticLayer):
    """Additive Gaussian noise ``y = x + eps``, ``eps ~ N(0, std^2)``, in training; ``y = x`` in eval.

    Noise on the inputs of a network trained with squared error is, for small ``std``,
    equivalent to a Tikhonov (smoothness) penalty (Bishop, 1995).
    """

    def __init__(self, std: float):
        super().__init__()
        self.std = _check_std("GaussianNoise", std)

    def forward(self, x: Tensor) -> Tensor:
        return gaussian_noise(x, self.std, self.drawing, self.generator)

    def extra_repr(self) -> str:
        return f"std={self.std}{self._sampling_repr()}"


class WeightNoise(StochasticLayer):
    """Gaussian weight noise: training uses ``layer(x; W + eps)``, ``eps ~ N(0, std^2)``.

    The stored weights are not changed, and since ``d(W + eps)/dW = I`` the gradient reaches
    ``W`` as if no noise were added. In eval mode ``y = layer(x; W)`` (An, 1996; Graves, 2011).
    The bias gets no noise. The wrapped layer is ``self.layer``.
    """

    def __init__(self, layer: nn.Module, std: float):
        super().__init__()
        self.layer = _check_layer("WeightNoise", layer)
        self.std = _check_std("WeightNoise", std)

    def forward(self, x: Tensor) -> Tensor:
        if not self.drawing or self.std == 0.0:
            return self.layer(x)
        w = gaussian_noise(self.layer.weight, self.std, True, self.generator)
        return functional_call(self.layer, {"weight": w}, (x,))

    def extra_repr(self) -> str:
        return f"std={self.std}{self._sampling_repr()}"


def set_generator(model: nn.Module, generator: torch.Generator | None) -> None:
    """Give every stochastic layer of ``model`` (those with a ``generator`` attribute) one generator."""
    for m in model.modules():
        if hasattr(m, "generator"):
            m.generator = generator
