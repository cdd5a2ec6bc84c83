"""Optimizers of the notes, as ``torch.optim`` objects built from ``[optim]``.

=============  ===================================================================
name           update (torch.optim's form; g = gradient, lr = learning rate)
=============  ===================================================================
``sgd``        w <- w - lr * g
``momentum``   v <- mu * v + g;  w <- w - lr * v      (Polyak, 1964)
``nesterov``   v <- mu * v + g;  w <- w - lr * (g + mu * v)   (Sutskever et al., 2013)
``rmsprop``    s <- alpha * s + (1 - alpha) * g^2;  w <- w - lr * g / (sqrt(s) + eps)
``adam``       m, v moving averages of g, g^2 with bias correction (Kingma & Ba, 2015)
``adamw``      Adam with decoupled weight decay (Loshchilov & Hutter, 2019)
=============  ===================================================================

The notes write momentum as ``v <- mu * v - lr * g; w <- w + v``; with a constant learning
rate the two forms give the same weights (torch's v is the notes' v divided by -lr).
``weight_decay`` is the optimizer's own decay term, not the ``l2`` penalty in the loss.
"""

from __future__ import annotations

from typing import Iterable

import torch

from regulab.config.sections import OptimConfig

__all__ = ["build_optimizer"]


def build_optimizer(cfg: OptimConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    wd = cfg.weight_decay
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=wd)
    if cfg.name in ("momentum", "nesterov"):
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.name == "nesterov", weight_decay=wd)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, weight_decay=wd)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=wd)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=wd)
    raise ValueError(f"optim.name must be sgd, momentum, nesterov, rmsprop, adam or adamw; got {cfg.name!r}")
