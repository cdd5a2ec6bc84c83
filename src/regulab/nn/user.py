"""A user's own network, given the layer-level techniques regulab's own networks are built with.

``model.factory`` names an ``nn.Module`` class or a function returning one (``rl.train(cfg,
model=...)`` takes the object itself, or a network); ``make_network`` calls it with
``model.args`` under a seeded global RNG, so the network's own initialization (PyTorch's
defaults, or whatever the user wrote) is the same for the same ``train.seed``. ``adapt`` then
changes it in place, keeping the user's class and module names (so layer selection by name,
transfer by name prefix and ``state_dict`` keys read as the user wrote them):

* dropout -- every ``nn.Dropout`` becomes regulab's ``Dropout`` (same probability, or
  ``model.dropout``'s: one number for all, or one per module in model order), so the classic
  rule ``y = (1 - p) x`` at inference and Monte-Carlo / geometric-mean inference
  (``regulab.regularize.mc_dropout``) work on it; channel dropout (``nn.Dropout1d/2d/3d``)
  becomes regulab's ``ChannelDropout`` alike. Both then draw from the run's noise generator, not
  PyTorch's global RNG, so a run is the same run each time it trains (and resumes).
* DropConnect (Wan et al., 2013) and weight noise -- every ``nn.Linear`` and ``nn.Conv1d/2d/3d``
  is wrapped (``DropConnect``, ``WeightNoise``: ``y = layer(x; M * W / (1 - p))``,
  ``y = layer(x; W + eps)``), so its parameters read ``<name>.layer.weight``.
* input noise, input dropout and the modality's augmentation -- layers in front of the
  network, held as its child ``regulab_inputs`` and run by a forward pre-hook:
  ``net(x) = user_forward(augment -> noise -> dropout(x))``; a ``state_dict`` then has
  ``regulab_inputs.*`` keys only for the ones that hold tensors.
* ``model.init`` other than "default" re-initializes every Linear/Conv and batch norm
  (``regulab.nn.init``); "default" keeps the network's own initialization.

Keys that describe regulab's own architectures (``model.kind``, ``hidden``, ``channels``, ...)
cannot apply to a user's network: ``ModelConfig`` refuses them (``USER_NETWORK_KEYS``).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from regulab.errors import ConfigError
from regulab.nn.init import init_weights
from regulab.nn.layers import ChannelDropout, DropConnect, Dropout, WeightNoise
from regulab.nn.models import Regularizers

__all__ = ["make_network", "adapt", "dropout_layers", "factory_label", "check_callable", "INPUTS",
           "WEIGHT_LAYERS"]

INPUTS = "regulab_inputs"       # the child that holds the layers in front of a user's network
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CHANNEL_DROPOUT = {nn.Dropout1d: 1, nn.Dropout2d: 2, nn.Dropout3d: 3}      # -> spatial dimensions


def _label(factory: Any) -> str:
    return getattr(factory, "__qualname__", None) or type(factory).__qualname__


def make_network(factory: Any, args: dict, seed: int, spec: str | None = None) -> nn.Module:
    """The user's network: ``factory(**args)`` with the global RNG seeded by ``seed`` (and put
    back after), or a copy of ``factory`` when it is a network already. ``spec`` (how the
    config names the factory) goes into errors."""
    name = spec or _label(factory)
    if isinstance(factory, nn.Module):
        if args:
            raise ConfigError(f"config key 'model.args' is for a factory; model.factory is a network "
                              f"({name}), got args {args!r}")
        return copy.deepcopy(factory)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            net = factory(**args)
        except Exception as e:
            raise ConfigError(f"config key 'model.factory': calling {name} with model.args {args!r} "
                              f"raised {type(e).__name__}: {' '.join(str(e).split())}") from None
    if not isinstance(net, nn.Module):
        raise ConfigError(f"config key 'model.factory' must give an nn.Module; {name} returned "
                          f"{type(net).__name__}")
    return net


def dropout_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """``net``'s own dropout modules (``nn.Dropout``, channel dropout, regulab's), in model order."""
    return [(n, m) for n, m in net.named_modules()
            if isinstance(m, (nn.Dropout, *_CHANNEL_DROPOUT, Dropout, ChannelDropout))]


def _replace(net: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, child, new)


def _set_dropout(net: nn.Module, dropout: float | Sequence[float], mode: str) -> None:
    layers = dropout_layers(net)
    if isinstance(dropout, (list, tuple)):
        if len(dropout) != len(layers):
            raise ConfigError(f"config key 'model.dropout' must have one probability per dropout module "
                              f"of the network ({len(layers)}: {', '.join(n for n, _ in layers) or 'none'}); "
                              f"got {list(dropout)!r}")
        probs = [float(p) for p in dropout]
    else:
        if dropout > 0 and not layers:
            raise ConfigError(f"config key 'model.dropout' sets the probability of the network's own "
                              f"dropout modules; the network ({type(net).__name__}) has none; got "
                              f"{dropout} (add nn.Dropout layers where it should drop)")
        probs = [float(dropout) if dropout > 0 else _prob(m) for _, m in layers]
    for (name, m), p in zip(layers, probs):
        dims = m.dims if isinstance(m, ChannelDropout) else \
            next((d for cls, d in _CHANNEL_DROPOUT.items() if isinstance(m, cls)), None)
        if dims is not None:
            _replace(net, name, ChannelDropout(p, dims, mode=mode))
        else:
            _replace(net, name, Dropout(p, mode=mode))


def _prob(m: nn.Module) -> float:
    return float(m.drop_prob if isinstance(m, (Dropout, ChannelDropout)) else m.p)


def _wrap_weights(net: nn.Module, reg: Regularizers) -> None:
    for name, m in [(n, m) for n, m in net.named_modules() if isinstance(m, WEIGHT_LAYERS)]:
        if reg.dropconnect > 0:
            per_example = reg.dropconnect_per_example and isinstance(m, nn.Linear)
            _replace(net, name, DropConnect(m, reg.dropconnect, per_example=per_example))
        elif reg.weight_noise > 0:
            _replace(net, name, WeightNoise(m, reg.weight_noise))


def _run_inputs(module: nn.Module, args: tuple) -> tuple:
    """The forward pre-hook: the first argument through ``module.regulab_inputs``."""
    return (getattr(module, INPUTS)(args[0]), *args[1:])


def adapt(net: nn.Module, reg: Regularizers, *, init: str = "default",
          generator: torch.Generator | None = None, augment: nn.Module | None = None) -> nn.Module:
    """``net`` (a user's network) with regulab's layer-level techniques put in, in place (module
    docstring); ``reg`` as ``regulab.nn.models.regularizers`` builds it from the config."""
    if any(name == INPUTS for name, _ in net.named_children()):
        raise ConfigError(f"config key 'model.factory': the network already has a child named "
                          f"{INPUTS!r}, which regulab uses; rename it")
    if init != "default":
        init_weights(net, init, generator)
    _set_dropout(net, reg.dropout, reg.dropout_mode)
    _wrap_weights(net, reg)
    front: list[tuple[str, nn.Module]] = [("augment", augment)] if augment is not None else []
    front += reg.inputs()
    if front:
        net.add_module(INPUTS, nn.Sequential(OrderedDict(front)))
        net.register_forward_pre_hook(_run_inputs)
    return net


def factory_label(factory: Any) -> str:
    """How errors name a factory: its spec string, or the object's name."""
    return factory if isinstance(factory, str) else _label(factory)


def check_callable(factory: Any) -> Callable[..., nn.Module]:
    """``factory`` when it makes fresh networks (a class or function), for a study or sweep,
    whose runs each need one; a network object is refused."""
    if isinstance(factory, nn.Module):
        raise ConfigError(f"config key 'model.factory' must be a class or function for a study or "
                          f"sweep (each run trains a fresh network); got a network, "
                          f"{type(factory).__name__}(...); pass its class or a function")
    return factory
