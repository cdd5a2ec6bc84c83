"""Transfer learning: start a network from the first layers of one trained on a source task.

As in the notes (Yosinski et al., 2014, "How transferable are features in deep neural
networks?", NeurIPS; Razavian et al., 2014, "CNN features off-the-shelf: an astounding
baseline for recognition", CVPR workshops): copy the first ``k`` layers ``theta_1..k`` of a
network trained on the source task, give the network a new head for the target task, then

* feature extraction -- freeze the copied layers, so only the new ones learn::

      y = head(f_k(...f_1(x; theta_1)...; theta_k); phi),   phi <- phi - lr * dL/dphi

* fine-tuning -- train them too, usually with their own, smaller learning rate::

      theta <- theta - transfer_lr * dL/dtheta,   phi <- phi - lr * dL/dphi

Yosinski et al. find first layers general and last ones specific to the source task, and
that fine-tuning copied layers helps even on a large target set; Razavian et al. show that
frozen features with a new linear classifier on top are already a strong baseline.

A *layer* ("unit") here is a top-level child of a regulab ``nn.Sequential`` that owns a
weight (``fc1``, ``conv2``, possibly wrapped by DropConnect or WeightNoise), together with
its batch norm (``bn1``, ``bnconv2``): both its parameters and its buffers (running mean and
variance) are copied. The head ``out`` is never copied. Keys are matched without wrapper
segments (``fc1.layer.weight`` == ``fc1.weight``), so a source trained with DropConnect can
feed a target without it and vice versa.

A frozen batch norm (all its parameters frozen) runs in inference mode for good: it
normalizes with the running statistics and does not update them, even under
``model.train()`` -- what Keras does for ``trainable = False`` -- so the frozen features do
not drift with the target task's batch statistics.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from regulab.checks import layer_count, number
from regulab.config.core import Config, load_config
from regulab.errors import CheckpointError, ConfigError
from regulab.io import load_tensors

__all__ = ["SourceRun", "load_source", "transfer_units", "unit_modules", "canonical",
           "transfer_weights", "transfer_by_name", "freeze_", "param_groups"]

HEAD = "out"
RUN_DIR = "a finished regulab run directory (with config.toml and model.safetensors)"
_UNIT = re.compile(r"(conv|fc)(\d+)")


def transfer_units(net: nn.Module) -> list[str]:
    """Names of ``net``'s top-level children that own a weight (a parameter with ``dim() >= 2``,
    also inside a wrapper), in model order, without the head ``out``.

    ``MLP(hidden=[100, 100])`` -> ``["fc1", "fc2"]``; a CNN with channels ``[8, 8]`` and
    hidden ``[32]`` -> ``["conv1", "conv2", "fc1"]``; a linear model -> ``[]``.
    """
    return [name for name, child in net.named_children()
            if name != HEAD and any(p.dim() >= 2 for p in child.parameters())]


def unit_modules(unit: str) -> list[str]:
    """The children that go with ``unit``: ``"fc1"`` -> ``["fc1", "bn1"]``, ``"conv2"`` ->
    ``["conv2", "bnconv2"]`` (regulab's naming); any other name -> ``[unit]``."""
    if _UNIT.fullmatch(unit):
        return [unit, "bn" + (unit[2:] if unit.startswith("fc") else unit)]
    return [unit]


def canonical(key: str) -> str:
    """A ``state_dict`` key without a wrapper segment: ``"fc1.layer.weight"`` -> ``"fc1.weight"``.

    Only a ``layer`` segment right after the top-level child's name is a wrapper's
    (DropConnect, WeightNoise); other keys are returned unchanged.
    """
    parts = key.split(".")
    if len(parts) >= 3 and parts[1] == "layer":
        del parts[1]
    return ".".join(parts)


@dataclass
class SourceRun:
    """A trained run to transfer from: its config and its weights, split off ``model.safetensors``.

    net_state: the network's tensors, keys without ``net.``; preprocess_state: the fitted
    preprocessor's ``shift``/``scale``, keys without ``preprocess.``.
    """
    config: Config
    net_state: dict[str, Tensor]
    preprocess_state: dict[str, Tensor]
    path: Path


def _bad_source(value: object, why: str) -> ConfigError:
    shown = f"'{value}'" if isinstance(value, (str, os.PathLike)) else repr(value)
    return ConfigError(f"config key 'transfer.source' must be {RUN_DIR}; got {shown} ({why})")


def load_source(path: str | os.PathLike) -> SourceRun:
    """Read the run directory ``path`` (``config.toml`` and ``model.safetensors``; never unpickles).

    A missing directory or file raises ``ConfigError`` naming 'transfer.source'; a corrupted
    or foreign ``model.safetensors`` raises ``CheckpointError`` naming the file.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise _bad_source(path, "not a path")
    run = Path(path)
    if not run.is_dir():
        raise _bad_source(path, "not a directory" if run.exists() else "no such directory")
    for name in ("config.toml", "model.safetensors"):
        if not (run / name).is_file():
            raise _bad_source(path, f"no {name} in it")
    try:
        config = load_config(run / "config.toml")
    except ConfigError as e:
        raise _bad_source(path, "its config.toml is invalid: " + " ".join(str(e).split())) from None
    file = run / "model.safetensors"
    tensors, _ = load_tensors(file)
    parts: dict[str, dict[str, Tensor]] = {"net": {}, "preprocess": {}}
    for key, t in tensors.items():
        head, _, rest = key.partition(".")
        if head not in parts or not rest:
            raise CheckpointError(f"checkpoint file '{file}' has key {key!r}, outside 'net.' and "
                                  "'preprocess.'; it is not a regulab model.safetensors")
        parts[head][rest] = t
    if not parts["net"]:
        raise CheckpointError(f"checkpoint file '{file}' holds no network weights (no 'net.' keys); "
                              "it is not a regulab model.safetensors")
    return SourceRun(config, parts["net"], parts["preprocess"], run)


def _state_units(state: dict[str, Tensor]) -> list[str]:
    """``transfer_units`` of the network a state dict came from: the children holding a tensor
    with ``dim() >= 2``, ordered as regulab builds them (conv1, conv2, ..., fc1, fc2, ...)."""
    names = {k.split(".")[0] for k, t in state.items() if t.dim() >= 2} - {HEAD, "augment"}

    def order(name: str) -> tuple:
        m = _UNIT.fullmatch(name)
        return (0 if m[1] == "conv" else 1, int(m[2]), "") if m else (2, 0, name)
    return sorted(names, key=order)


def _unit_state(state: dict[str, Tensor], unit: str) -> dict[str, dict[str, Tensor]]:
    """Per module of ``unit`` (present in ``state``), its tensors by canonical key."""
    out: dict[str, dict[str, Tensor]] = {}
    for key, t in state.items():
        if (top := key.split(".")[0]) in unit_modules(unit):
            out.setdefault(top, {})[canonical(key)] = t
    return out


def transfer_weights(net: nn.Module, source: SourceRun, layers: str | int) -> list[str]:
    """Copy the first ``layers`` units (``"all"``: every unit below the source's head) of
    ``source`` into ``net``, parameters and buffers, batch norm included; return the names
    (as in ``net.named_parameters()``) of the parameters that were copied.

    Everything is checked before anything is copied; a count too large for either network,
    units that differ in kind or shape, or a batch norm present in only one network raise
    ``ConfigError`` naming 'transfer.layers'. The head ``out`` is never copied.
    """
    layer_count("transfer.layers", layers)
    src_units, tgt_units = _state_units(source.net_state), transfer_units(net)
    if not src_units:
        raise ConfigError(f"config key 'transfer.layers' must select layers below the head, but the "
                          f"source run '{source.path}' has none (only '{HEAD}'); got {layers!r}")
    k = len(src_units) if layers == "all" else layers
    if k > len(tgt_units) or k > len(src_units):
        raise ConfigError(
            f"config key 'transfer.layers' must be at most {min(len(src_units), len(tgt_units))}, the "
            f"layers below the head in the source run '{source.path}' ({len(src_units)}: "
            f"{', '.join(src_units) or 'none'}) and in the target ({len(tgt_units)}: "
            f"{', '.join(tgt_units) or 'none'}); got {layers!r}" + (f" ({k})" if layers == "all" else ""))
    target = net.state_dict(keep_vars=True)
    what = f"config key 'transfer.layers' = {layers!r}"
    copies: list[tuple[Tensor, Tensor]] = []
    modules: list[str] = []
    for su, tu in zip(src_units[:k], tgt_units[:k]):
        if su != tu:
            raise ConfigError(f"{what} pairs the source's layer '{su}' with the target's '{tu}'; the "
                              f"copied layers must match (source: {', '.join(src_units)}; target: "
                              f"{', '.join(tgt_units)}; source run '{source.path}')")
        src, tgt = _unit_state(source.net_state, su), _unit_state(target, tu)
        for m in unit_modules(su)[1:]:
            if (m in src) != (m in tgt):
                where = ("the source run '{}' but not in the target" if m in src
                         else "the target but not in the source run '{}'").format(source.path)
                raise ConfigError(f"{what} copies layer '{su}', whose batch norm '{m}' exists in {where}; "
                                  "source and target must agree on model.batchnorm for the copied layers")
        for m in (m for m in unit_modules(su) if m in src):
            if src[m].keys() != tgt[m].keys():
                raise ConfigError(f"{what} copies layer '{su}', whose tensors are {sorted(src[m])} in the "
                                  f"source run '{source.path}' but {sorted(tgt[m])} in the target")
            for key, t in tgt[m].items():
                s = src[m][key]
                if s.shape != t.shape:
                    raise ConfigError(f"{what} copies layer '{su}', but '{key}' has shape {tuple(s.shape)} "
                                      f"in the source run '{source.path}' and {tuple(t.shape)} in the "
                                      "target; copied layers must have the same shapes")
                copies.append((t, s))
            modules.append(m)
    with torch.no_grad():
        for t, s in copies:
            t.copy_(s)
    return [name for name, _ in net.named_parameters() if name.split(".")[0] in modules]


def _key(name: str) -> str:
    """A ``state_dict`` key without wrapper segments anywhere: ``"block.conv.layer.weight"`` ->
    ``"block.conv.weight"`` (a user's network is wrapped in place, at any depth)."""
    parts = name.split(".")
    return ".".join(p for i, p in enumerate(parts) if not (p == "layer" and 0 < i == len(parts) - 2))


def transfer_by_name(net: nn.Module, source: SourceRun, layers: str | int | list[str]) -> list[str]:
    """Copy tensors of ``source`` into ``net`` by module name (a user's network, or a list of
    names): ``layers`` a list of module names copies every tensor under them (``"block1"``
    copies ``block1.conv1.weight``, its batch norm's statistics, ...); an int k, the first k
    top-level children that own a weight; ``"all"``, every tensor whose name and shape are
    the same in both networks (a new head of another width is not). Returns the names of the
    copied parameters. A named module missing from either network, or a tensor whose shape
    differs, raises ``ConfigError`` naming 'transfer.layers' before anything is copied."""
    layers = layer_count("transfer.layers", layers)
    target = {_key(k): t for k, t in net.state_dict(keep_vars=True).items()}
    src = {_key(k): t for k, t in source.net_state.items()}
    what = f"config key 'transfer.layers' = {layers!r}"
    if layers == "all":
        keys = [k for k in target if k in src and src[k].shape == target[k].shape]
    else:
        prefixes = layers if isinstance(layers, list) else \
            [n for n, c in net.named_children() if any(p.dim() >= 2 for p in c.parameters())][:layers]
        keys = []
        for prefix in prefixes:
            mine = [k for k in target if k.startswith(prefix + ".")]
            if not mine or not all(k in src for k in mine):
                theirs = sorted({k.split(".")[0] for k in src})
                raise ConfigError(f"{what} names module '{prefix}', which the target network and the "
                                  f"source run '{source.path}' must both have (the source's top-level "
                                  f"modules: {', '.join(theirs)})")
            for k in mine:
                if src[k].shape != target[k].shape:
                    raise ConfigError(f"{what} copies '{k}', whose shape is {tuple(src[k].shape)} in the "
                                      f"source run '{source.path}' and {tuple(target[k].shape)} in the target")
            keys += mine
    if not keys:
        raise ConfigError(f"{what} copies nothing: no tensor of the source run '{source.path}' has a "
                          f"name and shape of the target network")
    with torch.no_grad():
        for k in keys:
            target[k].copy_(src[k])
    copied = set(keys)
    return [name for name, _ in net.named_parameters() if _key(name) in copied]


class _FrozenBatchNorm:
    """Mixin of a frozen batch norm: ``train(mode)`` always means ``train(False)``."""

    def train(self, mode: bool = True):
        return super().train(False)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", frozen"


_FROZEN: dict[type, type] = {}


def _frozen_class(cls: type) -> type:
    """``Frozen<cls>``, made once per batch norm class and kept here, so pickle can find it."""
    if cls not in _FROZEN:
        name = f"Frozen{cls.__name__}"
        frozen = type(name, (_FrozenBatchNorm, cls), {"__module__": __name__, "__qualname__": name})
        _FROZEN[cls] = globals()[name] = frozen
    return _FROZEN[cls]


def _named(net: nn.Module, names: Iterable[str]) -> list[Tensor]:
    params, names = dict(net.named_parameters()), list(names)
    if unknown := [n for n in names if n not in params]:
        raise ValueError(f"parameter names must be those of the model ({', '.join(params)}); got {unknown!r}")
    return [params[n] for n in names]


def freeze_(net: nn.Module, param_names: Iterable[str]) -> None:
    """Freeze the named parameters (``requires_grad=False``), in place.

    Every batch norm whose parameters are all frozen then stays in inference mode, whatever
    ``net.train()`` says (module docstring): its class becomes ``Frozen<BatchNorm..>``,
    whose ``train(mode)`` is ``train(False)``; ``state_dict`` keys are unchanged and the
    ``repr`` says ``frozen``. A batch norm without parameters (``affine=False``) is left as is.
    """
    for p in _named(net, param_names):
        p.requires_grad_(False)
    for m in net.modules():
        params = list(m.parameters())
        if (isinstance(m, _BatchNorm) and not isinstance(m, _FrozenBatchNorm)
                and params and not any(p.requires_grad for p in params)):
            m.__class__ = _frozen_class(type(m))
            m.train(False)


def param_groups(net: nn.Module, transferred: Iterable[str], lr: float,
                 transfer_lr: float | None = None) -> list[dict]:
    """``torch.optim`` parameter groups: the transferred parameters that still learn at
    ``transfer_lr`` (``lr`` when None), every other trainable parameter at ``lr``.

    Frozen parameters are left out and empty groups omitted. Each group is
    ``{"params": [...], "lr": ..., "name": "transferred" | "new"}``. Example::

        >>> opt = torch.optim.Adam(param_groups(net, copied, lr=1e-3, transfer_lr=1e-4))
    """
    lr = number(gt=0.0)("optim.lr", lr)
    transfer_lr = lr if transfer_lr is None else number(gt=0.0)("transfer.lr", transfer_lr)
    moved = {id(p) for p in _named(net, transferred)}
    groups = {"transferred": [], "new": []}
    for p in net.parameters():
        if p.requires_grad:
            groups["transferred" if id(p) in moved else "new"].append(p)
    rates = {"transferred": transfer_lr, "new": lr}
    return [{"params": ps, "lr": rates[name], "name": name} for name, ps in groups.items() if ps]
