"""The parameters of K networks in one flat buffer, so that an update is one kernel over it.

Parameter i of every member sits side by side, ``(K, *shape_i)``, in one contiguous tensor, as
do the gradients; an optimizer step (``StackedOptimizer``) or a moving average
(``StackedEMA``) is then a handful of elementwise kernels whatever the number of layers and
members, with per-member values spread to one per element (``per_element``, ``per_param``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["FlatParams"]


class FlatParams:
    """The parameters of K members in one flat buffer ``data``, gradients in ``grad``.

    Parameter i of all members is the contiguous view ``params[i]: (K, *shape_i)`` of ``data``
    (a leaf that requires grad, its ``.grad`` the same view of ``grad``, so backward adds into
    ``grad`` in place); ``member[j]`` is the member that element j of ``data`` belongs to.
    ``members[k]`` lists member k's own tensors, whose values the buffer starts from.
    """

    def __init__(self, members: Sequence[Sequence[Tensor]]):
        K, first = len(members), members[0]
        self.members = [list(ps) for ps in members]
        sizes = [p.numel() for p in first]
        self.sizes = sizes
        like = first[0]
        self.data = torch.empty(K * sum(sizes), dtype=like.dtype, device=like.device)
        self.grad = torch.zeros_like(self.data)
        self.member = torch.cat([torch.arange(K, device=like.device).repeat_interleave(n) for n in sizes])
        self.params: list[Tensor] = []
        start = 0
        for i, (p0, n) in enumerate(zip(first, sizes)):
            view = self.data[start:start + K * n].view(K, *p0.shape)
            with torch.no_grad():
                view.copy_(torch.stack([ps[i].detach() for ps in members]))
            view.requires_grad_()
            view.grad = self.grad[start:start + K * n].view(K, *p0.shape)
            self.params.append(view)
            start += K * n

    def zero_grad(self) -> None:
        self.grad.zero_()

    def per_element(self, values: Tensor) -> Tensor:
        """(K,) per-member values -> (numel,) one per element of ``data``."""
        return values.to(self.data.device, self.data.dtype)[self.member]

    def per_param(self, values: Tensor) -> Tensor:
        """(K, P) values of each member's parameter i -> (numel,) one per element of ``data``."""
        values = values.to(self.data.device, self.data.dtype)
        return torch.cat([values[:, i].repeat_interleave(n) for i, n in enumerate(self.sizes)])

    def view(self, t: Tensor, i: int) -> Tensor:
        """Parameter i's part of a buffer shaped like ``data`` (a state, an average), as
        ``(K, *shape_i)``."""
        p = self.params[i]
        offset = p.storage_offset() - self.data.storage_offset()
        return t[offset:offset + p.numel()].view(p.shape)
