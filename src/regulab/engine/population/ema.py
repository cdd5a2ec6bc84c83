"""The moving averages of K members' weights at once (``regularize.ema``), on the flat buffer.

A member with an ``EMACallback`` averages its weights after every optimizer step (``EMA.update``),

    v_k <- d_k v_k + (1 - d_k) w_k          (v_k starts at 0; d_k its decay)

and is evaluated with the bias-corrected average ``v_k / (1 - d_k^t)`` (``EMA.averaged``; t its
updates). In a population the members' shadows ``v`` sit in one buffer shaped like the
parameters' (``FlatParams``), so the update is two elementwise kernels with a per-element decay
for all members (0 for a member without an EMA, whose shadow is then its weights and unused);
evaluation (``swapped``) puts each member's average in place of its weights, the others' live
weights kept; and ``write_back`` hands member k's shadow and count to its own ``EMA``, whose
state is then that of its run alone (its checkpoint, the weights early stopping keeps, the final
model).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from regulab.engine.population.flat import FlatParams
from regulab.regularize.ema import EMA

__all__ = ["StackedEMA"]


class StackedEMA:
    """The ``EMA`` of each member that has one (``emas[k]``, None without) over ``flat``,
    starting from each one's state (its shadow and update count)."""

    def __init__(self, flat: FlatParams, emas: Sequence[EMA | None]):
        self.flat, self.emas = flat, list(emas)
        self.names: list[list[str]] = []    # member k's parameter names, in flat's order
        for k, ema in enumerate(self.emas):
            named = list(ema.model.named_parameters()) if ema is not None else []
            if ema is not None and [id(p) for _, p in named] != [id(p) for p in flat.members[k]]:
                raise ValueError(f"member {k}'s EMA averages another network than the one stacked")
            self.names.append([name for name, _ in named])
        decay = torch.tensor([ema.decay if ema is not None else 0.0 for ema in self.emas], dtype=torch.float64)
        self.decay, self.rest = flat.per_element(decay), flat.per_element(1.0 - decay)     # (numel,)
        self.t = [ema.t if ema is not None else 0 for ema in self.emas]
        self.shadow = torch.zeros_like(flat.data)
        with torch.no_grad():
            for k, ema in enumerate(self.emas):
                for i, name in enumerate(self.names[k]):
                    flat.view(self.shadow, i)[k].copy_(ema.shadow[name])

    @torch.no_grad()
    def update(self) -> None:
        """One step of every member's recurrence, after the optimizer step (and constraints)."""
        self.shadow.mul_(self.decay).addcmul_(self.flat.data, self.rest)
        self.t = [t + 1 for t in self.t]

    @torch.no_grad()
    def averaged(self) -> Tensor:
        """``(numel,)``: member k's ``v_k / (1 - d_k^t)`` (no correction with ``bias_correction``
        off) where it has an EMA that has been updated, its live weights elsewhere."""
        averaging = [ema is not None and t > 0 for ema, t in zip(self.emas, self.t)]
        correction = [1.0 - ema.decay ** t if on and ema.bias_correction else 1.0
                      for ema, t, on in zip(self.emas, self.t, averaging)]
        where = self.flat.per_element(torch.tensor(averaging, dtype=torch.float64)) > 0
        corrected = self.shadow / self.flat.per_element(torch.tensor(correction, dtype=torch.float64))
        return torch.where(where, corrected, self.flat.data)

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """The averaged weights in the flat buffer; the live ones back on exit (also on error)."""
        data = self.flat.data
        with torch.no_grad():
            live = data.clone()
            data.copy_(self.averaged())
        try:
            yield
        finally:
            with torch.no_grad():
                data.copy_(live)

    def write_back(self, k: int) -> None:
        """Member k's shadow and count into its own ``EMA`` (after its network got its weights
        and buffers: the buffers an EMA holds are copies of the live ones)."""
        ema = self.emas[k]
        if ema is None:
            return
        state = dict(ema.model.state_dict())
        state.update({name: self.flat.view(self.shadow, i)[k] for i, name in enumerate(self.names[k])})
        ema.load_state_dict({"t": self.t[k], "shadow": state})
