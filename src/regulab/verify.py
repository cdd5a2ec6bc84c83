"""Checks of a checkpoint's values before anything is loaded: each object that has state
(``Trainer``, the optimizer, each callback) verifies its own with these, next to its
``load_state_dict``.

Each check raises ``ValueError`` with one line naming the entry (a dotted path inside the
checkpoint, ``optimizer.state.3.exp_avg``), what it must be and what it is; ``runs.run``
turns it into a ``CheckpointError`` naming the file. A checkpoint is read with
``io.load_state``, which has already checked its checksums: these catch what a checksum
cannot -- a file written wrong, or one made by hand -- so that nothing non-finite, of the
wrong shape or type, or out of range ever reaches the network, the optimizer or the run store.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from regulab.errors import quote, reason

__all__ = ["whole", "number", "table", "tensor_like", "tensors_like", "generator_state", "short"]

PREFIX = 60     # characters of a bad value quoted in a message


def short(value: Any) -> str:
    """``value`` as a message quotes it: a tensor by its dtype and shape, anything else by
    ``errors.quote`` cut to ``PREFIX`` characters (a checkpoint may hold a huge value)."""
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    return quote(value, PREFIX)


def whole(where: str, value: Any, lo: int = 0, hi: int | None = None) -> int:
    """``value`` as an int in ``lo..hi`` (not a bool, not a float, however round)."""
    if type(value) is not int or value < lo or (hi is not None and value > hi):
        span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"'{where}' must be an integer {span}; got {short(value)}")
    return value


def number(where: str, value: Any, lo: float = -math.inf, *, none: bool = False) -> float | None:
    """``value`` as a finite number >= ``lo`` (an int or float, not a bool; None when ``none``)."""
    if value is None and none:
        return None
    if type(value) not in (int, float) or not math.isfinite(value) or value < lo:
        bound = "" if lo == -math.inf else f" >= {lo}"
        raise ValueError(f"'{where}' must be a finite number{bound}{' or null' if none else ''}; "
                         f"got {short(value)}")
    return value


def table(where: str, value: Any, keys: Any = None) -> Mapping[str, Any]:
    """``value`` as a mapping; with ``keys``, holding exactly those keys."""
    if not isinstance(value, Mapping):
        raise ValueError(f"'{where}' must be a table; got {short(value)}")
    if keys is not None and set(value) != set(keys):
        missing, extra = sorted(map(str, set(keys) - set(value))), sorted(map(str, set(value) - set(keys)))
        raise ValueError(f"'{where}' must hold the keys {', '.join(sorted(map(str, keys))) or 'none'}; "
                         f"missing: {', '.join(missing) or 'none'}, unknown: {', '.join(extra) or 'none'}")
    return value


def tensor_like(where: str, value: Any, like: torch.Tensor, *, lo: float | None = None) -> torch.Tensor:
    """``value`` as a tensor of ``like``'s shape and dtype, finite when floating, >= ``lo``."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"'{where}' must be a tensor; got {short(value)}")
    if value.shape != like.shape or value.dtype != like.dtype:
        raise ValueError(f"'{where}' must be a {str(like.dtype).removeprefix('torch.')} tensor of shape "
                         f"{tuple(like.shape)}; got {short(value)}")
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"'{where}' must be finite; got {int((~torch.isfinite(value)).sum())} NaN or "
                         f"infinite value(s)")
    if lo is not None and value.numel() and float(value.min()) < lo:
        raise ValueError(f"'{where}' must be >= {lo}; got a minimum of {float(value.min())}")
    return value


def tensors_like(where: str, value: Any, like: Mapping[str, torch.Tensor]) -> None:
    """``value`` as a mapping of exactly ``like``'s names, each ``tensor_like`` its tensor
    (a network's ``state_dict``: weights of the right shape and dtype, all finite)."""
    table(where, value, like)
    for name, t in like.items():
        tensor_like(f"{where}.{name}", value[name], t)


def generator_state(where: str, value: Any, generator: torch.Generator) -> None:
    """``value`` as a state ``generator`` accepts (a uint8 tensor of its state's size, which
    a scratch generator of the same device takes)."""
    tensor_like(where, value, generator.get_state())
    try:
        torch.Generator(device=generator.device).set_state(value)
    except RuntimeError as e:
        raise ValueError(f"'{where}' is not a valid generator state ({reason(e, PREFIX)})") from None
