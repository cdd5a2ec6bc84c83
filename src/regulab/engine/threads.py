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

Workers on one machine split its cores. A sweep or study worker registers itself for as long
as it runs (``worker()``: a file in ``workers_dir()`` that it holds an exclusive ``flock`` on,
released by the kernel when the process ends, however it ends), and "auto" then gives a fit
every core *its share*: ``cores() // workers_here()`` (at least 1), counted again at each fit,
so two sweep workers on 2 cores fit with one thread each instead of four threads fighting for
two cores. A file whose lock nobody holds is a dead worker's: it is removed and not counted.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

__all__ = ["SMALL_STEP_FLOPS", "step_flops", "choose", "for_fit", "using", "worker", "workers_here",
           "workers_dir", "share"]

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
    ``SMALL_STEP_FLOPS`` per step, else this worker's share of the cores)."""
    if setting != "auto":
        return int(setting)
    return 1 if flops < SMALL_STEP_FLOPS else share()


def workers_dir() -> Path:
    """Where this machine's workers register (one directory per user)."""
    return Path(tempfile.gettempdir()) / f"regulab-workers-{os.getuid() if hasattr(os, 'getuid') else 0}"


def _held(path: Path) -> bool:
    """Whether a live process holds ``path``'s lock (else: its worker is gone)."""
    import fcntl
    try:
        with open(path, "rb") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:     # removed meanwhile
        return False
    return False


_REGISTERED: list[Path] = []     # this process's registration, while one is held


def workers_here() -> int:
    """The live workers registered on this machine (1 when this process is not one, or
    where ``flock`` does not exist)."""
    try:
        import fcntl  # noqa: F401 -- Linux and macOS
    except ImportError:     # pragma: no cover - Windows
        return 1
    live = 0
    for path in workers_dir().glob("*.lock"):
        if path in _REGISTERED or _held(path):
            live += 1
        else:
            path.unlink(missing_ok=True)
    return max(1, live) if _REGISTERED else 1


def share() -> int:
    """This process's share of the cores: ``cores() // workers_here()``, at least 1."""
    return max(1, cores() // workers_here())


@contextlib.contextmanager
def worker() -> Iterator[None]:
    """Register this process as a worker of this machine for the block (module docstring);
    once, however deeply nested."""
    try:
        import fcntl
    except ImportError:     # pragma: no cover - Windows: every worker takes every core
        yield
        return
    if _REGISTERED:
        yield
        return
    folder = workers_dir()
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"{os.getpid()}-{id(folder):x}.lock"
    with open(path, "wb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        _REGISTERED.append(path)
        try:
            yield
        finally:
            _REGISTERED.remove(path)
            path.unlink(missing_ok=True)


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
