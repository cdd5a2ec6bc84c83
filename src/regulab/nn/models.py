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
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from regulab.config.sections import ModelConfig, RegularizationConfig
from regulab.nn.init import init_weights
from regulab.nn.layers import DropConnect, Dropout, GaussianNoise, WeightNoise

__all__ = ["MLP", "CNN", "LinearModel", "MultiHead", "Pipeline", "Regularizers", "build_model", "materialize",
           "activation"]

Outputs = int | Sequence[tuple[str, int]]    # one output layer's width, or named heads' widths

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


@dataclass
class Regularizers:
    """What the layers of a model add to it (see ``regulab.nn.layers``); all off by default."""
    dropout: float | Sequence[float] = 0.0     # drop probability of each hidden layer's output
    dropout_mode: str = "inverted"             # or "classic"
    input_dropout: float = 0.0                 # drop probability of the inputs
    dropconnect: float = 0.0                   # drop probability of hidden dense layers' weights
    dropconnect_per_example: bool = False
    input_noise: float = 0.0                   # std of Gaussian noise on the inputs
    weight_noise: float = 0.0                  # std of Gaussian noise on every weight
    batchnorm: bool = False
    batchnorm_position: str = "before"         # before or after the activation

    def wrap(self, layer: nn.Module, hidden: bool) -> nn.Module:
        """A Linear/Conv layer, wrapped by DropConnect (hidden dense layers) or WeightNoise."""
        if hidden and self.dropconnect > 0 and isinstance(layer, nn.Linear):
            return DropConnect(layer, self.dropconnect, per_example=self.dropconnect_per_example)
        if self.weight_noise > 0:
            return WeightNoise(layer, self.weight_noise)
        return layer

    def inputs(self) -> list[tuple[str, nn.Module]]:
        layers: list[tuple[str, nn.Module]] = []
        if self.input_noise > 0:
            layers.append(("noise_in", GaussianNoise(self.input_noise)))
        if self.input_dropout > 0:
            layers.append(("drop_in", Dropout(self.input_dropout, mode=self.dropout_mode)))
        return layers

    def normalized(self, tag: str, layer: nn.Module, bn: nn.Module, act: str) -> list[tuple[str, nn.Module]]:
        """``layer -> [bn] -> act`` or ``layer -> act -> [bn]``, named by ``tag`` (e.g. "1")."""
        block = [(f"act{tag}", activation(act))]
        if self.batchnorm:
            block.insert(0 if self.batchnorm_position == "before" else 1, (f"bn{tag}", bn))
        return [(tag if tag.startswith("conv") else f"fc{tag}", layer), *block]


class MultiHead(nn.ModuleDict):
    """Several linear heads on the same features, outputs side by side: ``(B, K_1 + ... + K_H)``.

    Multi-task learning with hard parameter sharing (``regulab.regularize.multitask``): head
    ``t`` computes ``z_t = W_t h + b_t``. Named like a dict, so ``state_dict`` keys read
    ``out.main.weight``, ``out.parity.weight``.
    """

    def __init__(self, in_features: int, heads: Sequence[tuple[str, int]], reg: Regularizers):
        super().__init__({name: reg.wrap(nn.Linear(in_features, k), hidden=False) for name, k in heads})

    def forward(self, h: Tensor) -> Tensor:
        return torch.cat([head(h) for head in self.values()], dim=-1)


def _output(in_features: int, out: Outputs, reg: Regularizers) -> nn.Module:
    """The output layer: one linear layer, or a ``MultiHead`` for named heads."""
    if isinstance(out, int):
        return reg.wrap(nn.Linear(in_features, out), hidden=False)
    return MultiHead(in_features, out, reg)


def _dense_blocks(in_features: int, hidden: Sequence[int], act: str,
                  reg: Regularizers) -> list[tuple[str, nn.Module]]:
    layers: list[tuple[str, nn.Module]] = []
    for i, (width, p) in enumerate(zip(hidden, _per_layer(reg.dropout, len(hidden))), start=1):
        linear = reg.wrap(nn.Linear(in_features, width, bias=not reg.batchnorm), hidden=True)
        layers += reg.normalized(str(i), linear, nn.BatchNorm1d(width), act)
        if p > 0:
            layers.append((f"drop{i}", Dropout(p, mode=reg.dropout_mode)))
        in_features = width
    return layers


class MLP(nn.Sequential):
    """Multilayer perceptron: flatten, ``len(hidden)`` hidden blocks, a linear output layer.

    Layers are named ``fc1, bn1, act1, drop1, ..., out`` (and ``noise_in``, ``drop_in`` on the
    inputs), so ``state_dict`` keys read ``fc1.weight``. Example::

        >>> net = MLP(40, [100, 100], 10, activation="relu", dropout=0.3)
        >>> net(torch.zeros(8, 40)).shape
        torch.Size([8, 10])
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: Outputs, *,
                 activation: str = "relu", dropout: float | Sequence[float] = 0.0,
                 batchnorm: bool = False, regularizers: Regularizers | None = None):
        reg = regularizers or Regularizers(dropout=dropout, batchnorm=batchnorm)
        blocks = _dense_blocks(in_features, hidden, activation, reg)
        last = hidden[-1] if hidden else in_features
        super().__init__(OrderedDict([("flatten", nn.Flatten()), *reg.inputs(), *blocks,
                                      ("out", _output(last, out_features, reg))]))


class LinearModel(nn.Sequential):
    """Logistic / softmax regression (or linear regression): ``y = W x + b`` on the flattened input."""

    def __init__(self, in_features: int, out_features: Outputs, regularizers: Regularizers | None = None):
        reg = regularizers or Regularizers()
        super().__init__(OrderedDict([("flatten", nn.Flatten()), *reg.inputs(),
                                      ("out", _output(in_features, out_features, reg))]))


class CNN(nn.Sequential):
    """Conv blocks (1-D or 2-D by the sample's shape), then dense hidden layers and the output.

    Layers: ``conv1, bnconv1, actconv1, pool1, ..., flatten, fc1, ..., out``.
    """

    def __init__(self, sample_shape: Sequence[int], channels: Sequence[int], out_features: Outputs, *,
                 kernel_size: int = 5, hidden: Sequence[int] = (), activation: str = "relu",
                 dropout: float | Sequence[float] = 0.0, batchnorm: bool = False,
                 regularizers: Regularizers | None = None):
        reg = regularizers or Regularizers(dropout=dropout, batchnorm=batchnorm)
        shape = list(sample_shape)
        if len(shape) == 1:
            shape = [1, shape[0]]
        if len(shape) not in (2, 3):
            raise ValueError(f"a cnn takes samples of shape (L,), (C, L) or (C, H, W); got {tuple(sample_shape)}")
        two_d = len(shape) == 3
        conv, bn, pool = ((nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if two_d
                          else (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d))
        layers: list[tuple[str, nn.Module]] = reg.inputs()
        if len(sample_shape) == 1:
            layers.append(("unflatten", nn.Unflatten(1, (1, shape[1]))))
        in_ch, spatial = shape[0], shape[1:]
        for i, ch in enumerate(channels, start=1):
            layer = reg.wrap(conv(in_ch, ch, kernel_size, padding=kernel_size // 2,
                                  bias=not reg.batchnorm), hidden=False)
            layers += reg.normalized(f"conv{i}", layer, bn(ch), activation)
            # 'same' padding keeps an odd kernel's size; an even kernel adds one
            spatial = [s + 2 * (kernel_size // 2) - kernel_size + 1 for s in spatial]
            if min(spatial) >= 2:
                layers.append((f"pool{i}", pool(2)))
                spatial = [s // 2 for s in spatial]
            in_ch = ch
        flat = in_ch * math.prod(spatial)
        layers += [("flatten", nn.Flatten()), *_dense_blocks(flat, hidden, activation, reg)]
        layers.append(("out", _output(hidden[-1] if hidden else flat, out_features, reg)))
        super().__init__(OrderedDict(layers))


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


def regularizers(cfg: ModelConfig, reg: RegularizationConfig | None = None) -> Regularizers:
    """The layer-level regularizers that ``[model]`` and ``[regularization]`` ask for."""
    reg = reg or RegularizationConfig()
    return Regularizers(dropout=cfg.dropout, dropout_mode=cfg.dropout_mode,
                        input_dropout=cfg.input_dropout, dropconnect=cfg.dropconnect,
                        dropconnect_per_example=cfg.dropconnect_per_example,
                        input_noise=reg.input_noise, weight_noise=reg.weight_noise,
                        batchnorm=cfg.batchnorm, batchnorm_position=cfg.batchnorm_position)


def build_model(cfg: ModelConfig, sample_shape: Sequence[int], n_outputs: Outputs,
                generator: torch.Generator | None = None,
                reg: RegularizationConfig | None = None) -> nn.Module:
    """The network ``cfg`` (and ``reg``'s noise) describes, initialized on the CPU by ``cfg.init``
    from ``generator``. ``n_outputs``: the output width, or ``[(name, width), ...]`` for the
    heads of a multi-task network."""
    in_features = math.prod(sample_shape)
    extras = regularizers(cfg, reg)
    with torch.device("meta"):
        if cfg.kind == "linear":
            net: nn.Module = LinearModel(in_features, n_outputs, regularizers=extras)
        elif cfg.kind == "mlp":
            net = MLP(in_features, cfg.hidden, n_outputs, activation=cfg.activation,
                      regularizers=extras)
        else:
            net = CNN(sample_shape, cfg.channels, n_outputs, kernel_size=cfg.kernel_size,
                      hidden=cfg.hidden, activation=cfg.activation, regularizers=extras)
    return init_weights(materialize(net), cfg.init, generator)


def materialize(net: nn.Module) -> nn.Module:
    """``net``, built on the meta device (no memory, no draw from the global RNG), with every
    parameter and buffer given uninitialized CPU memory of its shape and dtype, in place --
    what ``net.to_empty(device="cpu")`` does, without its ``empty_like`` on meta tensors, whose
    first call imports torch's symbolic-shape machinery and SymPy (0.6 s of a run's start)."""
    for module in net.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            setattr(module, name, nn.Parameter(torch.empty(p.shape, dtype=p.dtype), p.requires_grad))
        for name, b in list(module.named_buffers(recurse=False)):
            setattr(module, name, torch.empty(b.shape, dtype=b.dtype))
    return net
