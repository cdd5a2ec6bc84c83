"""Data-parallel training with ``torch.distributed``: N processes, one global batch.

``train.nproc = N`` (``regulab train CONFIG --nproc N``) runs one training on N processes --
gloo on CPU, NCCL on CUDA (rank r on ``cuda:LOCAL_RANK``) -- that gives the run of one process
with the same global batch, within float tolerance:

* every rank holds the whole training split and draws the same shuffle (the same seeded
  generator), so all ranks see the same global minibatch of B = ``train.batch_size`` rows;
* rank r of N takes the contiguous rows [r*B//N, (r+1)*B//N) of it (b_r rows: uneven when N
  does not divide B, possibly none in a last batch shorter than N) and backpropagates its
  mean loss weighted by b_r / B; summing the gradients over ranks (one all-reduce) gives

      sum_r (b_r / B) * grad mean_{i in r} loss_i = grad (1/B) sum_i loss_i,

  the gradient of the global batch's mean loss, on every rank;
* streamed data (``regulab.data.stream.StreamLoader.shard``): no rank holds the split; each
  draws the same shuffle and reads only its rows [r*B//N, (r+1)*B//N) of each global batch --
  the rows it would take from resident data -- so the sums below are the same;
* penalties (L1/L2) depend on the weights alone, which every rank holds identically: each
  rank adds their gradient after the sum, so they count once;
* every rank takes the same optimizer step, keeps the same weights and optimizer state, runs
  the same validation on the whole validation split and so makes the same early-stopping
  decision; the logged training loss and accuracy are those of the global batches.

Where it is not exact:

* dropout and noise: rank r draws its masks from the dropout family's generator reseeded
  from (its seed, epoch, r) at each epoch -- independent across ranks, reproducible, resumed
  exactly -- but not the draws of one process, so such runs agree in distribution only;
* batch normalization normalizes each shard by its own statistics (``SyncBatchNorm`` works
  on GPUs only in PyTorch 2.x); the running statistics are averaged over the ranks after
  every step, which keeps the ranks identical. A shard needs at least 2 rows in training.

Launching: ``spawn`` starts N processes (start method spawn) that join a job on 127.0.0.1
through a ``TCPStore`` the launcher itself holds, bound to a port the system chose (port 0):
no other process can take the port between its choice and the job's start, and no other job
can join this one. (A port chosen free, closed, then bound by rank 0 seconds later could be
taken meanwhile -- rank 0 then failed with EADDRINUSE, and another job's ranks could join the
wrong store, the likely cause of a rank once lost to SIGABRT under the fuzz suite.) Under
``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` set)
each process is already one rank and joins that job instead.

A rank that fails ends the job: the launcher waits ``GRACE_SECONDS`` for the others to end
on their own (a bad input or a divergence ends every rank at the same step), kills those
still waiting on the lost one, reaps them all, and raises one error -- the rank's own
regulab error (bad input, divergence, a disk that filled up) when it raised one, else
``RankFailed`` naming the rank and how it ended (a signal, an exit code, an exception).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing.connection
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from regulab.errors import DivergedError, OutputError, RegulabInputError, RunFailed, reason

__all__ = ["DataParallel", "rank", "world_size", "is_main", "in_job", "process_group", "on_main",
           "spawn", "RankFailed", "GRACE_SECONDS"]

_JOB_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
GRACE_SECONDS = 3.0     # after a rank fails, how long the others may take to end on their own
_STORE_TIMEOUT = timedelta(minutes=5)


class RankFailed(RunFailed):
    """A process of a data-parallel job died (a signal, an exit code) or raised an error that is
    not regulab's own: one line naming the process and how it ended."""


def _joined() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the job (0 outside one)."""
    return dist.get_rank() if _joined() else 0


def world_size() -> int:
    """The number of processes in the job (1 outside one)."""
    return dist.get_world_size() if _joined() else 1


def is_main() -> bool:
    """Rank 0: the one process that writes the run directory and the store's rows."""
    return rank() == 0


def in_job() -> bool:
    """Whether this process is one rank of a job of 2 or more processes: joined already, or
    started by ``torchrun`` (or ``spawn``), which set the job's environment variables."""
    if _joined():
        return dist.get_world_size() > 1
    return all(k in os.environ for k in _JOB_ENV) and int(os.environ["WORLD_SIZE"]) > 1


@contextlib.contextmanager
def process_group(device: torch.device, store: dist.Store | None = None) -> Iterator[None]:
    """Join the job the environment describes (gloo on CPU; NCCL on CUDA, on device
    ``cuda:LOCAL_RANK``), through ``store`` when given (``spawn``'s), and leave it after; a
    process already in a job stays in it."""
    if _joined():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if store is None:
        dist.init_process_group(backend)
    else:
        dist.init_process_group(backend, store=store, rank=int(os.environ["RANK"]),
                                world_size=int(os.environ["WORLD_SIZE"]))
    try:
        yield
    finally:
        dist.destroy_process_group()


def _portable(e: BaseException) -> tuple[type, tuple]:
    """An error as (class, arguments), to raise again in another process."""
    if isinstance(e, DivergedError):
        return type(e), (e.epoch, e.step, e.value)
    if isinstance(e, OSError):
        return type(e), (e.errno, e.strerror)
    return type(e), (str(e),)


def on_main(fn: Callable[[], Any]) -> Any:
    """``fn()`` on rank 0 only (the writes: run directory, store rows); its result, or the
    bad-input error it raised, on every rank."""
    box: list[Any] = [None]
    if is_main():
        try:
            box[0] = (None, fn())
        except RegulabInputError as e:
            box[0] = (_portable(e), None)
            dist.broadcast_object_list(box, src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    error, value = box[0]
    if error is not None:
        cls, args = error
        raise cls(*args)
    return value


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the one that spawned it dies (kill -9 included), so no
    orphaned rank goes on writing a run directory that ``regulab resume`` takes over."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _rank_main(local_rank: int, env: dict[str, str], device: torch.device, errors: Any,
               fn: Callable[..., Any], args: tuple) -> None:
    """Rank ``local_rank`` of ``spawn``'s job: ``fn(*args)``; an error it raises is put on
    ``errors`` as (rank, (class, arguments)), regulab's own to be raised again by the launcher,
    any other as ``RankFailed`` naming it."""
    _die_with_parent()
    os.environ.update(env, RANK=str(local_rank), LOCAL_RANK=str(local_rank))
    if device.type == "cpu":    # the ranks share the cores; each would otherwise use all of them
        torch.set_num_threads(max(1, torch.get_num_threads() // int(env["WORLD_SIZE"])))
    reported = False
    try:
        store = dist.TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), is_master=False,
                              timeout=_STORE_TIMEOUT)
        with process_group(device, store):
            try:
                fn(*args)
            except Exception as e:      # said before the group is left, so before the peers see
                errors.put((local_rank, _reported(e)))    # their connections close: causes first
                reported = True
                raise
    except DivergedError:       # raised by every rank at the same step: all end here
        pass
    except Exception as e:
        if not reported:
            errors.put((local_rank, _reported(e)))
        raise


def _reported(e: Exception) -> tuple[type, tuple]:
    """A rank's error as ``spawn`` raises it again: regulab's own as it is, any other as
    ``RankFailed`` naming it."""
    if isinstance(e, (DivergedError, RegulabInputError, OutputError)):
        return _portable(e)
    return RankFailed, (f"raised {type(e).__name__}: {reason(e, 300)}",)


def _ended(process: Any) -> str:
    """How a process that failed ended: by which signal, or with which exit code."""
    code = process.exitcode
    if code is not None and code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _join(processes: list[Any]) -> set[int]:
    """Wait for ``processes`` until all ended, or one failed: then the others have
    ``GRACE_SECONDS`` to end on their own, and are killed. Every process is reaped either
    way (none is left running, none a zombie); returns the indices of those killed here."""
    killed: set[int] = set()
    try:
        waiting = {p.sentinel: i for i, p in enumerate(processes)}
        while waiting:
            for sentinel in multiprocessing.connection.wait(list(waiting)):
                i = waiting.pop(sentinel)
                processes[i].join()
                if processes[i].exitcode != 0:
                    deadline = time.monotonic() + GRACE_SECONDS
                    for p in processes:
                        p.join(max(0.0, deadline - time.monotonic()))
                    return killed
        return killed
    finally:        # also when the launcher itself is interrupted
        for i, p in enumerate(processes):
            if p.is_alive():
                p.kill()    # a rank waiting on a lost one: its last checkpoint is whole (io.save_state)
                killed.add(i)
            p.join()


def spawn(fn: Callable[..., Any], nproc: int, device: torch.device, *args: Any) -> None:
    """Run ``fn(*args)`` in ``nproc`` new processes, ranks 0..nproc-1 of a job on this machine;
    return when all are done. A failed rank ends the job (module docstring): its regulab error
    (bad input, divergence, ``OutputError``) is raised here again, else ``RankFailed``; ``fn``
    must be importable (start method spawn)."""
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    # the job's store, on a port the system picks and this process holds until the job ends
    store = dist.TCPStore("127.0.0.1", 0, None, True, timeout=_STORE_TIMEOUT, wait_for_workers=False)
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(store.port), "WORLD_SIZE": str(nproc)}
    context = mp.start_processes(_rank_main, args=(env, device, errors, fn, args), nprocs=nproc,
                                 start_method="spawn", join=False)
    try:
        killed = _join(context.processes)
    finally:
        for path in context.error_files:    # torch's traceback files: the error is on ``errors``
            with contextlib.suppress(OSError):
                os.unlink(path)
        del store
    reported: dict[int, tuple] = {}     # in the order the ranks put them: causes before effects
    while not errors.empty():
        rank_, error = errors.get()
        reported.setdefault(rank_, error)
    failed = [i for i, p in enumerate(context.processes) if p.exitcode != 0 and i not in killed]
    if not failed and not reported:
        return
    # what to say, most telling first: a regulab error of any rank (every rank raises a
    # divergence or a bad input alike); a rank killed by a signal (which its peers then see
    # as a connection reset); the first error a rank raised; the first rank that failed
    ours = [e for e in reported.values() if not issubclass(e[0], RankFailed)]
    if ours:
        cls, error_args = ours[0]
        raise cls(*error_args) from None
    signalled = [i for i in failed if context.processes[i].exitcode < 0 and i not in reported]
    if signalled:
        rank_, how = signalled[0], _ended(context.processes[signalled[0]])
    elif reported:
        rank_, (_, (how,)) = next(iter(reported.items()))
    else:
        rank_, how = failed[0], _ended(context.processes[failed[0]])
    raise RankFailed(f"data-parallel process {rank_} of {nproc} {how}") from None


class DataParallel:
    """This rank's part in data-parallel training, as the ``Trainer`` calls it (its
    ``data_parallel``); see the module docstring for the semantics.

    ``noise`` is the generator of the dropout family, reseeded per (epoch, rank).
    """

    def __init__(self, rank: int, world: int, noise: torch.Generator | None = None):
        self.rank, self.world, self.noise = rank, world, noise
        self.noise_seed = noise.initial_seed() if noise is not None else 0

    def start_epoch(self, epoch: int) -> None:
        """Reseed the noise generator from (its seed, ``epoch``, rank)."""
        if self.noise is not None:
            seq = np.random.SeedSequence([self.noise_seed, epoch, self.rank])
            self.noise.manual_seed(int(seq.generate_state(1)[0]))

    def shard(self, xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor, float]:
        """This rank's contiguous rows of the global batch, and their share b_r / B of it."""
        n = len(xb)
        lo, hi = self.rank * n // self.world, (self.rank + 1) * n // self.world
        return xb[lo:hi], yb[lo:hi], (hi - lo) / n

    def backward(self, model: nn.Module, loss: Tensor, share: float, penalty: Tensor | None) -> None:
        """Every rank's gradients := those of the global batch's mean loss plus the penalty;
        batch norm's running statistics := their mean over the ranks. One all-reduce."""
        if share > 0:       # an empty shard adds nothing
            (loss * share).backward()
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        stats = [s for m in model.modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
                 for s in (m.running_mean, m.running_var)]
        tensors = [p.grad for p in params] + stats
        flat = torch.cat([p.grad.reshape(-1) for p in params] + [s.reshape(-1) / self.world for s in stats])
        dist.all_reduce(flat)
        for t, new in zip(tensors, flat.split([t.numel() for t in tensors])):
            t.copy_(new.view_as(t))
        if penalty is not None:
            penalty.backward()

    def gather_epoch(self, losses: Tensor, parts: Tensor | None, hits: Tensor,
                     sizes: list[int]) -> tuple[Tensor, Tensor | None, Tensor, list[int]]:
        """The epoch's per-step mean losses ``(steps,)`` (and heads' losses ``(steps, H)``),
        summed hits and batch sizes of the global batches, from this rank's shards' -- the
        same on every rank. One all-reduce of the sums, in float64."""
        n = torch.tensor(sizes, dtype=torch.float64, device=losses.device)

        def sums(t: Tensor) -> Tensor:    # shard means -> sums; an empty shard's NaN mean adds 0
            w = n.view(-1, *[1] * (t.dim() - 1))
            return torch.where(w > 0, t.double() * w, 0.0)
        pieces = [n, sums(losses), hits.double()] + ([sums(parts)] if parts is not None else [])
        flat = torch.cat([t.reshape(-1) for t in pieces])
        dist.all_reduce(flat)
        n, loss_sums, hit_sums, *part_sums = flat.split([t.numel() for t in pieces])
        losses = (loss_sums / n).to(losses.dtype)
        if parts is not None:
            parts = (part_sums[0].view(parts.shape) / n[:, None]).to(parts.dtype)
        return losses, parts, hit_sums.view(hits.shape).to(hits.dtype), [int(k) for k in n.tolist()]
