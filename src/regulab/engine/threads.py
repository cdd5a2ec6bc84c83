"""How many intra-op threads a run computes with (``train.threads``).

PyTorch splits each CPU kernel over ``torch.get_num_threads()`` OpenMP threads, by default one
per core. That pays for large matrix products, and costs for small ones: a tiny network's
kernels last microseconds, the threads' hand-offs about as long, and when another process
holds one of the cores a thread that waits its turn holds every kernel up -- on 2 cores next
to one busy process the MNIST-1D MLP fits 10x slower with 2 threads than with 1
(BENCHMARKS.md, "Threads").

``train.threads = "auto"`` (the default) gives a run one thread when its work per optimizer
step is small, ``6 * parameters * batch * members`` floating-point operations (a forward and a
backward pass over every weight; for a population, all of its members) under
``SMALL_STEP_FLOPS``, and every core it may use otherwise; a number fixes it. The setting holds
while the run fits and the previous one is restored after (``torch.set_num_threads`` is the
process's). For convolutions the count is a lower bound (each weight is used at every
position), so a convolutional run may get one thread where more would be faster: set
``train.threads`` then.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["SMALL_STEP_FLOPS", "step_flops", "choose", "for_fit", "using"]

SMALL_STEP_FLOPS = 50e6     # below: one thread (calibrated in bench/threads.py)


def cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:      # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def step_flops(net: nn.Module, batch: int, members: int = 1) -> float:
    """``6 * parameters * batch * members``: the multiply-adds of a forward and a backward pass
    over every trainable weight, for ``members`` networks like ``net``."""
    params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return 6.0 * params * batch * members


def choose(setting: int | str, flops: float) -> int:
    """The thread count for ``setting`` (a number, or "auto": one thread below
    ``SMALL_STEP_FLOPS`` per step, else every core)."""
    if setting != "auto":
        return int(setting)
    return 1 if flops < SMALL_STEP_FLOPS else cores()


def for_fit(setting: int | str, net: nn.Module, batch: int, members: int = 1) -> int:
    """The thread count a fit of ``members`` networks like ``net`` on batches of ``batch`` gets
    for ``train.threads = setting`` (``choose`` on their ``step_flops``)."""
    return choose(setting, step_flops(net, batch, members))


@contextlib.contextmanager
def using(threads: int) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` inside the block, the previous count restored after."""
    before = torch.get_num_threads()
    if threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
