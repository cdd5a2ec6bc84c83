"""Models built from ``[model]``: softmax regression, MLP and CNN (1-D or 2-D).

Every model maps a batch of samples ``(B, *sample_shape)`` to ``(B, n_outputs)`` scores
(logits for classification, predictions for regression). Hidden blocks are
``Linear -> [BatchNorm] -> activation -> [Dropout]`` (Ioffe & Szegedy, 2015, place batch
norm before the nonlinearity). A CNN treats a 1-D sample ``(L,)`` as one channel ``(1, L)``
and uses ``Conv1d``; a ``(C, H, W)`` sample uses ``Conv2d``. Each conv block is
``Conv(k, padding=k//2) -> [BatchNorm] -> activation -> MaxPool(2)``; the flattened
features then go through the dense hidden layers and the output layer.

``build_model`` constructs the layers on the ``meta`` device (no memory, no use of the
global RNG) and initializes them on the CPU from an explicit generator, so the same seed
gives the same weights on every device.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from .init import init_weights
from .layers import Dropout

__all__ = ["MLP", "CNN", "LinearModel", "Pipeline", "build_model", "activation"]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
                "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "gelu": nn.GELU}


def activation(name: str) -> nn.Module:
    return _ACTIVATIONS[name]()


def _per_layer(dropout: float | Sequence[float], n: int) -> list[float]:
    if isinstance(dropout, (int, float)):
        return [float(dropout)] * n
    if len(dropout) != n:
        raise ValueError(f"dropout must have one probability per hidden layer ({n}); got {list(dropout)}")
    return [float(p) for p in dropout]


def _dense_blocks(in_features: int, hidden: Sequence[int], act: str,
                  dropout: float | Sequence[float], batchnorm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for width, p in zip(hidden, _per_layer(dropout, len(hidden))):
        layers.append(nn.Linear(in_features, width, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(activation(act))
        if p > 0:
            layers.append(Dropout(p))
        in_features = width
    return layers


class MLP(nn.Sequential):
    """Multilayer perceptron: flatten, ``len(hidden)`` hidden blocks, a linear output layer.

    Example::

        >>> net = MLP(40, [100, 100], 10, activation="relu", dropout=0.3)
        >>> net(torch.zeros(8, 40)).shape
        torch.Size([8, 10])
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, *,
                 activation: str = "relu", dropout: float | Sequence[float] = 0.0,
                 batchnorm: bool = False):
        blocks = _dense_blocks(in_features, hidden, activation, dropout, batchnorm)
        last = hidden[-1] if hidden else in_features
        super().__init__(nn.Flatten(), *blocks, nn.Linear(last, out_features))


class LinearModel(nn.Sequential):
    """Logistic / softmax regression (or linear regression): ``y = W x + b`` on the flattened input."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(nn.Flatten(), nn.Linear(in_features, out_features))


class CNN(nn.Sequential):
    """Conv blocks (1-D or 2-D by the sample's shape), then dense hidden layers and the output."""

    def __init__(self, sample_shape: Sequence[int], channels: Sequence[int], out_features: int, *,
                 kernel_size: int = 5, hidden: Sequence[int] = (), activation: str = "relu",
                 dropout: float | Sequence[float] = 0.0, batchnorm: bool = False):
        shape = list(sample_shape)
        if len(shape) == 1:
            shape = [1, shape[0]]
        if len(shape) not in (2, 3):
            raise ValueError(f"a cnn takes samples of shape (L,), (C, L) or (C, H, W); got {tuple(sample_shape)}")
        two_d = len(shape) == 3
        conv, bn, pool = ((nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if two_d
                          else (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d))
        layers: list[nn.Module] = [] if len(sample_shape) > 1 else [nn.Unflatten(1, (1, shape[1]))]
        in_ch, spatial = shape[0], shape[1:]
        for ch in channels:
            layers.append(conv(in_ch, ch, kernel_size, padding=kernel_size // 2, bias=not batchnorm))
            if batchnorm:
                layers.append(bn(ch))
            layers.append(_ACTIVATIONS[activation]())
            # 'same' padding keeps an odd kernel's size; an even kernel adds one
            spatial = [s + 2 * (kernel_size // 2) - kernel_size + 1 for s in spatial]
            if min(spatial) >= 2:
                layers.append(pool(2))
                spatial = [s // 2 for s in spatial]
            in_ch = ch
        flat = in_ch * math.prod(spatial)
        layers += [nn.Flatten(), *_dense_blocks(flat, hidden, activation, dropout, batchnorm)]
        layers.append(nn.Linear(hidden[-1] if hidden else flat, out_features))
        super().__init__(*layers)


class Pipeline(nn.Module):
    """A fitted preprocessor followed by the network: what ``model.safetensors`` holds.

    Training feeds the network data that was preprocessed once, up front; the pipeline is
    the model to use on raw inputs afterwards.
    """

    def __init__(self, preprocess: nn.Module, net: nn.Module):
        super().__init__()
        self.preprocess = preprocess
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.preprocess(x))


def build_model(cfg: ModelConfig, sample_shape: Sequence[int], n_outputs: int,
                generator: torch.Generator | None = None) -> nn.Module:
    """The network ``cfg`` describes, initialized on the CPU by ``cfg.init`` from ``generator``."""
    in_features = math.prod(sample_shape)
    with torch.device("meta"):
        if cfg.kind == "linear":
            net: nn.Module = LinearModel(in_features, n_outputs)
        elif cfg.kind == "mlp":
            net = MLP(in_features, cfg.hidden, n_outputs, activation=cfg.activation,
                      dropout=cfg.dropout, batchnorm=cfg.batchnorm)
        else:
            net = CNN(sample_shape, cfg.channels, n_outputs, kernel_size=cfg.kernel_size,
                      hidden=cfg.hidden, activation=cfg.activation, dropout=cfg.dropout,
                      batchnorm=cfg.batchnorm)
    net = net.to_empty(device="cpu")
    return init_weights(net, cfg.init, generator)
