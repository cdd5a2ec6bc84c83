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

``Steps`` is how the ``Trainer`` steps and clears the gradients. For a plain fused Adam/AdamW
(no step hooks, no AMSGrad, not maximizing, not differentiable, ``step`` not wrapped) it calls
torch's fused Adam kernel itself, on the same state tensors
(``optimizer.state[p]``: ``step``, ``exp_avg``, ``exp_avg_sq``, created as ``Adam`` creates them)
with each group's current hyperparameters -- the same kernel, so the same weights and the
same ``state_dict`` bit for bit, without ``Optimizer.step``'s wrapping (grad-mode and profiler
wrappers, graph-capture checks, per-group list building, grouping by device and its import of
``torch._dynamo``): about a fifth of a step of the MNIST-1D MLP on one CPU thread. Any other
optimizer is stepped by its own ``step()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from regulab.config.sections import OptimConfig
from regulab.verify import number, short, table, tensor_like

__all__ = ["build_optimizer", "decay_groups", "Steps", "no_dynamo_import", "state_keys", "check_state"]


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


def state_keys(optimizer: torch.optim.Optimizer, group: dict[str, Any]) -> set[str] | None:
    """The keys of a parameter's state in ``group`` of ``optimizer`` once it has stepped (as
    torch's ``_init_group`` creates them), or None for an optimizer regulab does not build."""
    kind = type(optimizer)
    if kind in (torch.optim.Adam, torch.optim.AdamW):
        return {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if group["amsgrad"] else set())
    if kind is torch.optim.SGD:
        return {"momentum_buffer"} if group["momentum"] else set()
    if kind is torch.optim.RMSprop:
        return ({"step", "square_avg"} | ({"momentum_buffer"} if group["momentum"] else set())
                | ({"grad_avg"} if group["centered"] else set()))
    return None


NONNEGATIVE = ("exp_avg_sq", "max_exp_avg_sq", "square_avg")    # averages of g^2


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types; a tuple equals a list (JSON has no tuples)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def check_state(optimizer: torch.optim.Optimizer, saved: Any, steps: int) -> None:
    """Raise ``ValueError`` unless ``saved`` is a state ``optimizer`` (built from the run's
    config, not stepped yet) may load after ``steps`` steps: its groups' parameters and
    hyperparameters the config's (the learning rate a finite number >= 0, which a schedule
    changes), and every trainable parameter's state complete once it has stepped: the keys
    ``state_keys`` names, each tensor of its parameter's shape and dtype and finite, the
    averages of g^2 >= 0, the step count a whole number in 1..``steps``."""
    ours = optimizer.state_dict()
    table("optimizer", saved, ("state", "param_groups"))
    groups = saved["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(ours["param_groups"]):
        raise ValueError(f"'optimizer.param_groups' must be a list of {len(ours['param_groups'])} group(s) "
                         f"(was the run started by another version of regulab?); got {short(groups)}")
    params = {}
    for i, (group, mine, live) in enumerate(zip(groups, ours["param_groups"], optimizer.param_groups)):
        where = f"optimizer.param_groups.{i}"
        table(where, group, set(mine) | ({"initial_lr"} if "initial_lr" in group else set()))
        number(f"{where}.lr", group["lr"], 0.0)
        for key, value in mine.items():
            expected = mine["lr"] if key == "initial_lr" else value
            if key != "lr" and not _same(group[key], expected):
                raise ValueError(f"'{where}.{key}' must be {short(expected)} (the run's config); "
                                 f"got {short(group[key])}")
        if "initial_lr" in group and not _same(group["initial_lr"], mine["lr"]):
            raise ValueError(f"'{where}.initial_lr' must be {mine['lr']!r} (the run's optim.lr); "
                             f"got {short(group['initial_lr'])}")
        params.update({index: (p, live) for index, p in zip(mine["params"], live["params"])})
    state = table("optimizer.state", saved["state"])
    unknown = [k for k in state if k not in params]
    if unknown:
        raise ValueError(f"'optimizer.state' has state for parameter(s) {short(unknown)} this network "
                         f"does not have (it has 0..{len(params) - 1})")
    for index, (p, group) in params.items():
        keys = state_keys(optimizer, group)
        if index not in state:
            if steps and keys and p.requires_grad:
                raise ValueError(f"'optimizer.state' must hold the state of every trainable parameter "
                                 f"after {steps} step(s); parameter {index} has none")
            continue
        entry = table(f"optimizer.state.{index}", state[index], keys)
        for key, value in entry.items():
            where = f"optimizer.state.{index}.{key}"
            if key == "step":
                count = float(value) if isinstance(value, torch.Tensor) and value.dim() == 0 else math.nan
                if not (count.is_integer() and value.is_floating_point() and 1 <= count <= steps):
                    raise ValueError(f"'{where}' must be a floating-point scalar tensor holding a whole "
                                     f"number 1..{steps} (the steps taken); "
                                     f"got {short(value) if math.isnan(count) else count}")
            elif keys is not None or value is not None:
                tensor_like(where, value, p, lo=0.0 if key in NONNEGATIVE else None)


def _plain_fused_adam(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` is an Adam/AdamW whose ``step`` is exactly one fused ``adam`` call
    per group: no step hooks (its own or global), ``step`` not replaced on the instance (as a
    torch learning-rate scheduler does), every group fused, no AMSGrad, maximize,
    differentiable, capturable or tensor learning rate. When torch's attributes are not where
    this looks, False: ``optimizer.step()`` is always right."""
    from torch.optim import optimizer as base
    hooks = [getattr(optimizer, "_optimizer_step_pre_hooks", None),
             getattr(optimizer, "_optimizer_step_post_hooks", None),
             getattr(base, "_global_optimizer_pre_hooks", None),
             getattr(base, "_global_optimizer_post_hooks", None)]
    return (type(optimizer) in (torch.optim.Adam, torch.optim.AdamW) and "step" not in vars(optimizer)
            and all(h is not None and len(h) == 0 for h in hooks)
            and all(g.get("fused") and not (g["amsgrad"] or g["maximize"] or g["differentiable"]
                                            or g["capturable"] or isinstance(g["lr"], Tensor)
                                            or any(isinstance(b, Tensor) for b in g["betas"]))
                    and "decoupled_weight_decay" in g for g in optimizer.param_groups))


class Steps:
    """``step()`` and ``zero_grad()`` of ``optimizer`` as the training loop calls them each
    batch: a plain fused Adam/AdamW stepped on its own state (module docstring; the same
    numbers as ``optimizer.step()``), any other optimizer by its ``step()``. ``zero_grad``
    sets every gradient to None (``zero_grad(set_to_none=True)``). Build it where the loop
    starts: it reads the optimizer's groups and hooks then.

    A group whose tensors share one device and dtype (every group of regulab's networks) goes
    straight to the kernel ``optimizer.step()`` ends in -- ``torch._fused_adam_`` (AdamW:
    ``torch._fused_adamw_``) after the step counts' ``+1`` -- skipping the functional
    ``adam``'s grouping of the tensors by device and dtype; a mixed group, or a torch without
    those kernels, goes through ``torch.optim.adam.adam``."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.step: Callable[[], Any] = self._adam if _plain_fused_adam(optimizer) else optimizer.step
        self.kernels = [_kernel(g) for g in optimizer.param_groups]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def _adam(self) -> None:
        state = self.optimizer.state
        for group, kernel in zip(self.optimizer.param_groups, self.kernels):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if not state[p]:        # as Adam._init_group creates it, on the first step
                    state[p].update(step=torch.zeros((), dtype=torch.float32, device=p.device),
                                    exp_avg=torch.zeros_like(p, memory_format=torch.preserve_format),
                                    exp_avg_sq=torch.zeros_like(p, memory_format=torch.preserve_format))
            tensors = (params, [p.grad for p in params], [state[p]["exp_avg"] for p in params],
                       [state[p]["exp_avg_sq"] for p in params], [], [state[p]["step"] for p in params])
            beta1, beta2 = group["betas"]
            hyper = dict(amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"],
                         weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)
            if kernel is not None:
                torch._foreach_add_(tensors[-1], 1)
                kernel(*tensors, grad_scale=None, found_inf=None, **hyper)
            else:
                from torch.optim.adam import adam
                adam(*tensors, fused=True, decoupled_weight_decay=group["decoupled_weight_decay"], **hyper)


def _kernel(group: dict[str, Any]) -> Callable[..., None] | None:
    """The fused kernel a group of one device and dtype steps with (None: mixed, or absent)."""
    kinds = {(p.device, p.dtype) for p in group["params"]}
    name = "_fused_adamw_" if group.get("decoupled_weight_decay") else "_fused_adam_"
    return getattr(torch, name, None) if len(kinds) == 1 else None


_DYNAMO_WRAPPED = ("add_param_group", "state_dict", "load_state_dict", "zero_grad")


def no_dynamo_import() -> None:
    """Let this process build, save and load optimizers without importing ``torch._dynamo``
    (about 1 s of CPU: dynamo, SymPy and the FX shape machinery), for a command line that
    compiles nothing around an optimizer (``regulab train``, ``regulab resume``).

    ``Optimizer.add_param_group``, ``state_dict``, ``load_state_dict`` and ``zero_grad`` are
    wrapped by ``torch._disable_dynamo``, which imports dynamo on their first call only to make
    a copy that a compiled region skips; it keeps that copy on the function as
    ``__dynamo_disable``. Setting it to the function itself skips the import: outside a compiled
    region the calls are exactly the same; inside one, dynamo would trace them instead of
    skipping them, which is why only commands that compile nothing call this (never ``import
    regulab``, so a user's own process is left as torch made it). ``Steps`` already avoids
    ``Optimizer.step`` (which imports dynamo on every call). A torch whose wrapper is not where
    this looks is left alone (the import then costs its second, nothing else changes)."""
    for name in _DYNAMO_WRAPPED:
        fn = getattr(getattr(torch.optim.Optimizer, name, None), "__wrapped__", None)
        if fn is not None and getattr(fn, "__dynamo_disable", None) is None:
            setattr(fn, "__dynamo_disable", fn)
