"""Data that does not fit in memory: read per item, streamed to the device in batches.

``Rows`` is a lazy ``(N, *sample_shape)`` float32 "array" over a map-style source of inputs
(a user's ``torch.utils.data.Dataset``, the files of ``images:DIR``): indexing it with an index
array or a mask selects rows without reading them (so a split, a subsample or a bootstrap draw
costs an index array), and only a slice -- a few rows, e.g. the sample the model is checked
with -- or ``np.asarray`` reads them. Labels and targets are small and stay in memory as arrays.

``place(ds, resident, budget)`` decides where the data lives (``data.resident``,
``data.memory_budget``): resident data is collated once into arrays and takes today's path
(tensors on the device, ``TensorLoader``); streamed data stays ``Rows``. "auto" streams when the
collated size, one sample's bytes times N, exceeds the budget (default: a quarter of the
machine's physical memory).

``Streamed`` is one split of streamed inputs on the device: a ``torch.utils.data.DataLoader``
over its ``Rows`` with ``data.workers`` worker processes, pinned memory on CUDA and prefetch;
each batch is moved to the device and then transformed there (the fitted ``Preprocessor``).
``StreamLoader`` iterates the training split like ``TensorLoader``: the same ``randperm`` of
the same explicit generator (so the same order as resident data for the same seed, and the
generator's state is what a checkpoint saves), batches of that order read by the workers.
In data-parallel training (``shard``) each rank reads only its rows of each global batch.
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from regulab.data.loader import TensorLoader

__all__ = ["Rows", "Streamed", "StreamLoader", "place", "chunks", "default_budget", "default_workers",
           "return_freed_batches", "MIB"]

MIB = 2 ** 20


def default_budget() -> int:
    """Bytes of collated data that stay resident under ``data.memory_budget`` auto: a quarter
    of the machine's physical memory (4 GiB where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (AttributeError, ValueError, OSError):
        return 4 * 2 ** 30


def default_workers() -> int:
    """DataLoader worker processes of streamed data under ``data.workers`` auto: min(4, CPUs)."""
    return min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class Rows:
    """Rows ``rows`` (all when None) of ``items``, a map-style source whose ``items[j]`` is one
    input of shape ``sample_shape`` (array or tensor); see the module docstring.

    Example::

        >>> r = Rows(np.arange(12, dtype=np.float32).reshape(6, 2), (2,))
        >>> sub = r[np.array([4, 1])]           # lazy: nothing read
        >>> sub.shape, sub[:1].tolist()         # a slice reads its rows
        ((2, 2), [[8.0, 9.0]])
    """

    dtype = np.dtype(np.float32)

    def __init__(self, items: Any, sample_shape: tuple, rows: np.ndarray | None = None):
        self.items, self.sample_shape = items, tuple(sample_shape)
        self.rows = np.arange(len(items)) if rows is None else np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple:
        return (len(self), *self.sample_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.sample_shape)

    @property
    def nbytes(self) -> int:
        """The collated size: N times one sample's float32 bytes."""
        return len(self) * math.prod(self.sample_shape) * 4

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):      # one input, as a DataLoader asks for it
            return torch.as_tensor(np.asarray(self.items[int(self.rows[key])], dtype=np.float32))
        if isinstance(key, slice):                  # a few rows, read
            return np.stack([self[i].numpy() for i in range(*key.indices(len(self)))]) \
                if len(range(*key.indices(len(self)))) else np.empty((0, *self.sample_shape), np.float32)
        key = np.asarray(key)
        if key.dtype == bool:
            key = np.flatnonzero(key)
        return Rows(self.items, self.sample_shape, self.rows[key])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        X = np.empty(self.shape, dtype=np.float32)
        for i in range(len(self)):
            X[i] = self[i].numpy()
        return X if dtype is None else X.astype(dtype)


def place(ds, resident: bool | str, budget_mib: float | None):
    """``(ds, None)`` with lazy inputs collated into arrays when they are to be resident, or
    ``(ds, why)`` with ``Rows`` kept and the reason they stream; arrays are resident already."""
    lazy = [k for k in ("X", "X_val", "X_test") if isinstance(getattr(ds, k), Rows)]
    if not lazy or resident is True:
        return dataclasses.replace(ds, **{k: np.asarray(getattr(ds, k)) for k in lazy}), None
    size = sum(getattr(ds, k).nbytes for k in lazy)
    if resident is False:
        return ds, "data.resident = false"
    budget = default_budget() if budget_mib is None else int(budget_mib * MIB)
    if size <= budget:
        return dataclasses.replace(ds, **{k: np.asarray(getattr(ds, k)) for k in lazy}), None
    return ds, (f"its collated size {size / MIB:.0f} MiB exceeds data.memory_budget "
                f"{budget / MIB:.0f} MiB")


M_MMAP_THRESHOLD = -3      # glibc's mallopt parameter (malloc.h)


def return_freed_batches() -> bool:
    """Make glibc serve every allocation of 1 MiB or more with its own ``mmap``, given back to
    the system when freed (``mallopt(M_MMAP_THRESHOLD, 1 MiB)``; what ``MALLOC_MMAP_THRESHOLD_=
    1048576`` does). By default glibc raises that threshold to the largest block freed so far and
    then keeps batch-sized blocks in the heap of each thread that freed one, so a streamed run's
    resident memory could grow by several times the few batches alive at once. Called when data
    streams (the DataLoader workers, forked after, inherit it); False where it is not glibc."""
    try:
        return bool(ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MIB))
    except (OSError, AttributeError):
        return False


def _loader(rows: Rows, batches: Iterable[list[int]], workers: int, pin: bool):
    """A DataLoader reading ``rows`` in the given batches of indices (fork: the workers inherit
    the source, which need not pickle)."""
    ctx = "fork" if workers > 0 and "fork" in torch.multiprocessing.get_all_start_methods() else None
    return torch.utils.data.DataLoader(rows, batch_sampler=batches, num_workers=workers,
                                       pin_memory=pin, multiprocessing_context=ctx,
                                       prefetch_factor=2 if workers > 0 else None)


class Streamed:
    """One split of streamed inputs on ``device``: ``batches(...)`` reads them with ``workers``
    DataLoader workers and yields ``transform(batch on the device)``."""

    def __init__(self, rows: Rows, transform: Callable[[Tensor], Tensor], device: torch.device,
                 workers: int):
        self.rows, self.transform, self.device, self.workers = rows, transform, torch.device(device), workers

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple:
        return self.rows.shape

    def __getitem__(self, key: slice) -> Tensor:
        """A few rows (a slice), read now, on the device and transformed."""
        with torch.no_grad():
            return self.transform(torch.as_tensor(self.rows[key]).to(self.device))

    def batches(self, batch_size: int, order: Iterable[list[int]] | None = None) -> Iterator[Tensor]:
        """The inputs in ``order`` (lists of row indices; default: in order, ``batch_size`` at a
        time), each batch ``(B, *sample_shape)`` on the device and transformed."""
        if order is None:
            order = [list(range(i, min(i + batch_size, len(self)))) for i in range(0, len(self), batch_size)]
        pin = self.device.type == "cuda"
        for xb in _loader(self.rows, order, self.workers, pin):
            with torch.no_grad():   # not around the yield: the caller's grad mode is its own
                xb = self.transform(xb.to(self.device, non_blocking=pin))
            yield xb


def chunks(X: Tensor | Streamed, batch_size: int) -> Iterator[Tensor]:
    """``X`` in order, ``batch_size`` rows at a time: slices of a tensor, or a streamed split's
    batches read by its workers."""
    if isinstance(X, Streamed):
        return X.batches(batch_size)
    return (X[i:i + batch_size] for i in range(0, len(X), batch_size))


class StreamLoader(TensorLoader):
    """``TensorLoader``'s minibatches of a streamed split ``X`` and its targets ``y`` (a tensor
    on the device): the same shuffled order for the same generator, the inputs read by the
    workers. ``shard(rank, world)``: each batch is this rank's rows of the global batch (``share``
    is their fraction of it), as ``regulab.engine.distributed`` takes them from resident data."""

    sharded = False
    share = 1.0

    def shard(self, rank: int, world: int) -> StreamLoader:
        self.rank, self.world, self.sharded = rank, world, True
        return self

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.X)
        if self.shuffle:    # exactly TensorLoader's draw
            order = torch.randperm(n, generator=self.generator, device=self.X.device)
        else:
            order = torch.arange(n, device=self.X.device)
        rank, world = (self.rank, self.world) if self.sharded else (0, 1)
        parts = []          # (this rank's rows of each global batch, the global batch's size)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start:start + self.batch_size]
            lo, hi = rank * len(idx) // world, (rank + 1) * len(idx) // world
            parts.append((idx[lo:hi], len(idx)))
        mine = [p.tolist() for p, _ in parts if len(p)]
        inputs = self.X.batches(self.batch_size, mine)
        for idx, total in parts:
            self.share = len(idx) / total
            xb = next(inputs) if len(idx) else torch.empty((0, *self.X.shape[1:]), device=self.X.device)
            yield xb, self.y[idx]
