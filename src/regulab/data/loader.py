"""Minibatches from tensors that stay on the device.

``TensorLoader`` holds the whole split as two tensors on the training device and yields
minibatches by indexing them with a shuffled permutation: one ``randperm`` per epoch, one
gather per block of batches (up to ``GATHER_BYTES`` of rows: the whole split of a small
dataset, a few batches of a large one) and the batches as views of it -- the same batches as
a gather per batch, with two fewer kernels per step -- and no per-sample Python and no
host-to-device copies in the loop. The
permutation comes from an explicit ``torch.Generator``, so the order is the same for the
same seed, and the generator's state is what a checkpoint saves to resume mid-run.

A ``batch_size`` larger than the split takes the whole split as one batch (full-batch
gradient descent; ``rows_per_batch``), as Keras does; ``lone_row_batch`` finds the batch
sizes that would leave batch norm a single row to normalize.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from regulab.errors import ConfigError

__all__ = ["TensorLoader", "GATHER_BYTES", "lone_row_batch", "check_batch_norm_rows"]

GATHER_BYTES = 32 * 2**20      # rows gathered at once, at most (at least one batch)


def lone_row_batch(n: int, batch_size: int, world: int = 1) -> int | None:
    """A batch of an epoch over ``n`` rows in batches of ``batch_size`` (a full one, at most
    ``n`` rows, or the last, shorter one) that gives one of ``world`` processes exactly one row
    -- rows [r*b//world, (r+1)*b//world) of a batch of b (``engine.distributed``) -- which batch
    norm cannot normalize in training; None when there is none."""
    full = min(batch_size, n)
    for b in sorted({full, n % full} - {0}):
        if any((r + 1) * b // world - r * b // world == 1 for r in range(world)):
            return b
    return None


def check_batch_norm_rows(n: int, batch_size: int, world: int = 1) -> None:
    """Refuse (``ConfigError``) a ``train.batch_size`` whose batches of the ``n`` training rows
    leave a network with batch norm one row (``lone_row_batch``), naming a batch size near it
    that does not, when there is one."""
    lone = lone_row_batch(n, batch_size, world)
    if lone is None:
        return
    near = next((c for k in range(1, 1000) for c in (batch_size - k, batch_size + k)
                 if world <= c <= n and lone_row_batch(n, c, world) is None), None)
    each, over = (" on each process", f" over {world} processes") if world > 1 else ("", "")
    raise ConfigError(f"config key 'train.batch_size' must leave batch norm >= 2 rows of every batch{each}; "
                      f"got {batch_size}: the {n} training rows give a batch of {lone} row(s){over}"
                      f"{f' (try {near})' if near else ''}")


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

    @property
    def rows_per_batch(self) -> int:
        """The rows of a full batch: ``batch_size``, or the whole split when it is smaller."""
        return min(self.batch_size, len(self.X))

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.X)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=self.X.device)
        else:
            order = torch.arange(n, device=self.X.device)
        b = self.batch_size
        row = self.X[:1].nbytes + self.y[:1].nbytes
        block = max(1, GATHER_BYTES // max(row * b, 1)) * b
        stop = min(len(self) * b, n)
        for first in range(0, stop, block):
            idx = order[first:min(first + block, stop)]
            X, y = self.X[idx], self.y[idx]
            for start in range(0, len(idx), b):
                yield X[start:start + b], y[start:start + b]
