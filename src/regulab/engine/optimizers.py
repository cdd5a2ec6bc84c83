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

Weight decay. ``weight_decay`` is the optimizer's own decay term, not the ``l2`` penalty in
the loss (SGD and Adam add ``wd * w`` to the gradient; AdamW shrinks ``w <- w - lr * wd * w``
apart from the adaptive step, Loshchilov & Hutter, 2019). It acts on the parameters the L2
penalty acts on, and only on those: ``regulab.regularize.penalties.selected_parameters`` --
the weights (tensors with ``dim() >= 2``) of the layers ``regularization.penalty_layers``
names (default: all), their biases too with ``regularization.penalty_bias``, never batch
norm's gamma and beta nor frozen parameters. ``decay_groups`` puts them in a parameter
group with ``weight_decay`` and the rest in one with ``weight_decay = 0`` (as nanoGPT's
``configure_optimizers`` and timm's ``param_groups_weight_decay`` do), so for every choice of
layers and biases::

    SGD(weight_decay = wd)  ==  SGD on  loss + (wd / 2) * sum_{selected w} w^2   (l2 = wd / 2)

With ``weight_decay = 0`` the groups are left as given (nothing decays).

Adam and AdamW run torch's fused kernel (``fused=True``: one pass over each parameter's
elements instead of a dozen kernels) on the devices that have it -- the same update, rounded
in another order; on a network as small as the clinic's the optimizer's kernels are a large
part of a step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from regulab.config.sections import OptimConfig

__all__ = ["build_optimizer", "decay_groups"]


def decay_groups(params: Iterable[Any], decay: Iterable[Tensor] | None,
                 weight_decay: float) -> list[dict]:
    """``params`` (tensors, or parameter groups as dicts) as parameter groups in which only the
    tensors in ``decay`` have ``weight_decay``: each group split in a decayed one and a
    ``weight_decay = 0`` one named ``<name>_no_decay`` (empty groups omitted; other keys, such
    as a group's own lr, kept in both). ``decay`` None: the tensors with ``dim() >= 2``.
    ``weight_decay = 0``: the groups unchanged."""
    groups = list(params)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    if weight_decay == 0:
        return groups
    chosen = None if decay is None else {id(p) for p in decay}
    out = []
    for group in groups:
        members = list(group["params"])
        flags = [p.dim() >= 2 if chosen is None else id(p) in chosen for p in members]
        decayed = [p for p, d in zip(members, flags) if d]
        kept = [p for p, d in zip(members, flags) if not d]
        if decayed:
            out.append({**group, "params": decayed, "weight_decay": weight_decay})
        if kept:
            name = group.get("name")
            out.append({**group, "params": kept, "weight_decay": 0.0,
                        "name": f"{name}_no_decay" if name else "no_decay"})
    return out


def _fusable(groups: list[dict[str, Any]]) -> bool | None:
    """True when every parameter is a floating-point tensor on a CPU or CUDA device (torch's
    fused Adam handles those), else None (torch's default)."""
    params = [p for g in groups for p in g["params"]]
    ok = params and all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64)
                        for p in params)
    return True if ok else None


def build_optimizer(cfg: OptimConfig, params: Iterable[Any],
                    decay: Iterable[Tensor] | None = None) -> torch.optim.Optimizer:
    """The ``[optim]`` optimizer over ``params`` (tensors or parameter groups), weight decay
    on the tensors in ``decay`` only (None: those with ``dim() >= 2``; module docstring)."""
    wd = cfg.weight_decay
    # each group's params as a list (torch takes one tensor or an iterable), the dicts copies
    groups = [{**g, "params": [g["params"]] if isinstance(g["params"], Tensor) else list(g["params"])}
              for g in decay_groups(params, decay, wd)]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, weight_decay=wd)
    if cfg.name in ("momentum", "nesterov"):
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.name == "nesterov", weight_decay=wd)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, weight_decay=wd)
    if cfg.name in ("adam", "adamw"):
        kind = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
        return kind(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=wd,
                    fused=_fusable(groups))
    raise ValueError(f"optim.name must be sgd, momentum, nesterov, rmsprop, adam or adamw; got {cfg.name!r}")
