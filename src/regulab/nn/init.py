"""Weight initialization schemes, drawn from an explicit generator.

For a weight tensor with ``fan_in`` inputs and ``fan_out`` outputs per unit (for a
convolution, channels times kernel size), the schemes of the notes are:

==================  =====================================  =============================
scheme              distribution                           variance
==================  =====================================  =============================
``normal_0.01``     N(0, 0.01^2)                           1e-4 (vanishing signals)
``normal_1``        N(0, 1)                                1 (saturating signals)
``glorot_uniform``  U(-a, a), a = sqrt(6 / (fan_in+fan_out))  2 / (fan_in + fan_out)
``glorot_normal``   N(0, 2 / (fan_in + fan_out))           2 / (fan_in + fan_out)
``he_normal``       N(0, 2 / fan_in)                       2 / fan_in
``he_uniform``      U(-a, a), a = sqrt(6 / fan_in)         2 / fan_in
``default``         PyTorch's: U(-b, b), b = 1/sqrt(fan_in) 1 / (3 fan_in)
==================  =====================================  =============================

Glorot & Bengio (2010), "Understanding the difficulty of training deep feedforward neural
networks"; He et al. (2015), "Delving deep into rectifiers". Biases start at zero, except
under ``default``, which draws them like PyTorch from U(-b, b). Batch-norm layers start at
gamma = 1, beta = 0 and fresh running statistics.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from regulab.config.sections import INIT_SCHEMES

__all__ = ["init_tensor", "init_weights", "fans", "INIT_SCHEMES"]

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)


def fans(weight: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear (out, in) or Conv (out, in, *kernel) weight."""
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


@torch.no_grad()
def init_tensor(weight: Tensor, scheme: str, generator: torch.Generator | None = None) -> Tensor:
    """Fill ``weight`` in place by ``scheme`` (see the module table) and return it."""
    fan_in, fan_out = fans(weight)
    if scheme == "normal_0.01":
        return weight.normal_(0.0, 0.01, generator=generator)
    if scheme == "normal_1":
        return weight.normal_(0.0, 1.0, generator=generator)
    if scheme == "glorot_uniform":
        a = math.sqrt(6.0 / (fan_in + fan_out))
        return weight.uniform_(-a, a, generator=generator)
    if scheme == "glorot_normal":
        return weight.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)), generator=generator)
    if scheme == "he_normal":
        return weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
    if scheme == "he_uniform":
        a = math.sqrt(6.0 / fan_in)
        return weight.uniform_(-a, a, generator=generator)
    if scheme == "default":
        b = 1.0 / math.sqrt(fan_in)
        return weight.uniform_(-b, b, generator=generator)
    raise ValueError(f"init scheme must be one of {', '.join(INIT_SCHEMES)}; got {scheme!r}")


@torch.no_grad()
def init_weights(model: nn.Module, scheme: str, generator: torch.Generator | None = None) -> nn.Module:
    """(Re)initialize every Linear/Conv and batch-norm layer of ``model``, in module order."""
    for m in model.modules():
        if isinstance(m, _WEIGHTED):
            init_tensor(m.weight, scheme, generator)
            if m.bias is not None:
                if scheme == "default":
                    b = 1.0 / math.sqrt(fans(m.weight)[0])
                    m.bias.uniform_(-b, b, generator=generator)
                else:
                    m.bias.zero_()
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_parameters()
    return model
