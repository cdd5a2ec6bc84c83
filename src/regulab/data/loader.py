"""Minibatches from tensors that stay on the device.

``TensorLoader`` holds the whole split as two tensors on the training device and yields
minibatches by indexing them with a shuffled permutation: one ``randperm`` per epoch and
one gather per batch, no per-sample Python and no host-to-device copies in the loop. The
permutation comes from an explicit ``torch.Generator``, so the order is the same for the
same seed, and the generator's state is what a checkpoint saves to resume mid-run.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

__all__ = ["TensorLoader"]


class TensorLoader:
    """Iterate ``(x, y)`` minibatches of ``X``/``y`` (same first dimension) in shuffled order.

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> loader = TensorLoader(torch.randn(10, 3), torch.arange(10), batch_size=4, generator=g)
        >>> [len(yb) for _, yb in loader]
        [4, 4, 2]
    """

    def __init__(self, X: Tensor, y: Tensor, batch_size: int, *, shuffle: bool = True,
                 generator: torch.Generator | None = None, drop_last: bool = False):
        if len(X) != len(y):
            raise ValueError(f"X and y must have the same length; got {len(X)} and {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        self.X, self.y = X, y
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.generator = generator

    def __len__(self) -> int:
        n, b = len(self.X), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.X)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=self.X.device)
        else:
            order = torch.arange(n, device=self.X.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start:start + self.batch_size]
            yield self.X[idx], self.y[idx]
