"""``train(cfg)`` and ``resume(run_dir)``: a whole run, from config to run directory.

A run happens in two phases. ``prepare`` does everything that can fail on bad input --
load and split the data, fit the preprocessor, build the model and pass one batch through
it -- and writes nothing. Only then is the run directory created and a row added to the
run store, so a rejected config leaves no trace.

Run directory (DESIGN.md)::

    config.toml        the fully resolved config
    metrics.csv        one row per epoch
    results.json       final metrics and split sizes, written last (marks a finished run)
    evaluation.json    per-class precision/recall/F1 and confusion matrices (val, test)
    model.safetensors  preprocessor + network weights (the best epoch's, when restored)
    checkpoint/        state.safetensors (what resume needs, and the config it was written
                       under) and run.json (store row)
    tensorboard/       [log] tensorboard: the event files (``runs.viewers``)
    mlflow.json        [log] mlflow: the MLflow run a resume continues (``runs.viewers``)

A kill -9 at any moment is recovered by ``regulab resume RUN_DIR`` once the run directory is
in place, else by the same ``regulab train`` again: ``runs.rundir`` says what each moment leaves.

Seeds: ``data.seed`` fixes the split; ``train.seed`` is expanded with NumPy's
``SeedSequence`` into independent seeds for initialization, shuffling and dropout masks.

Data-parallel runs (``train.nproc`` > 1, or under ``torchrun``; ``distributed``): the config is
validated and the run directory made once, here; then every rank prepares the same run, trains
on its shard of each batch, and only rank 0 writes metrics, checkpoints and results. Data given
from Python (``train(data=...)``), which config.toml cannot hold, goes to the new processes
pickled; an object that cannot be pickled is refused before anything is written. A process
that dies or raises ends the job in one error (``distributed.spawn``); the launcher marks the
store row failed (rank 0 may have been stopped before it could) and the checkpoint stays whole.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import io
import json
import logging
import os
import pickle
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import exc as sa_exc

from regulab.callbacks import Callback, ProgressBar
from regulab.config.core import Config, load_config
from regulab.engine import distributed, threads
from regulab.engine.trainer import Trainer
from regulab.errors import CheckpointError, ConfigError, DivergedError, RegulabInputError, reason
from regulab.io import atomic_write, load_state, load_tensors, save_state
from regulab.paths import remove_partial, writable_dir
from regulab.runs.evaluate import Run, finish
from regulab.runs.rundir import (WRITE_ERRORS, check_outputs, config_difference, open_run, output_error,
                                 recorded_config, register, run_info)
from regulab.runs.prepare import Prepared, extra_columns, metric_columns, prepare, resolve_device
from regulab.runs.store import RunStore
from regulab.runs.viewers import end, viewers

__all__ = ["Run", "train", "resume", "run_log", "RunLog", "STATE_FILE", "state_bytes"]

STATE_FILE = "state.safetensors"
CONFIG = "config"           # the checkpoint's entry beside the trainer's state: the run's config
CHECKPOINT_SECONDS = 10.0   # train.checkpoint_every = "auto": at most this much training lost to a kill
STORE_SECONDS = 2.0         # epoch rows reach the run store at least this often (and at each checkpoint)


# -- run directory -----------------------------------------------------------------------------

class RunLog(Callback):
    """Writes ``metrics.csv`` and the store's epoch rows after each epoch, and checkpoints:
    every ``every`` epochs, or with ``every = "auto"`` at the first epoch's end that comes
    ``CHECKPOINT_SECONDS`` or more after the last checkpoint (or the fit's start), and
    always at the last epoch. Resuming from any checkpoint gives the uninterrupted run's
    numbers, so the cadence only bounds the work a kill loses; "auto" keeps a tiny network's
    0.05 s epochs (or a population's 64 members' epochs) from each paying a checkpoint of
    several milliseconds, as Lightning's ``ModelCheckpoint(train_time_interval=...)``.

    The store's epoch rows are written in one transaction every ``STORE_SECONDS`` (a commit
    costs a tiny network's epoch about 2 ms, 5-10 % of it), before each checkpoint (so the
    store holds every epoch a resume starts after) and when the fit ends, however it ends;
    ``metrics.csv`` gets every epoch as it ends."""

    stackable = True

    def __init__(self, run_dir: Path, store: RunStore, run_id: int, columns: list[str],
                 every: int | str, config: dict[str, Any] | None = None):
        self.run_dir, self.store, self.run_id = run_dir, store, run_id
        self.columns, self.every = columns, every
        self.config = config or {}      # recorded in each checkpoint (runs.rundir.recorded_config)
        self.saved_at = self.flushed_at = time.monotonic()
        self.pending: list[tuple[int, int, dict[str, float]]] = []     # epoch rows not yet in the store

    def on_fit_start(self, trainer: Trainer) -> None:
        self.saved_at = self.flushed_at = time.monotonic()

    def flush(self) -> None:
        """Write the pending epoch rows to the store, in one transaction."""
        if self.pending:
            self.store.log_epochs(self.pending)
            self.pending = []
        self.flushed_at = time.monotonic()

    def on_fit_end(self, trainer: Trainer) -> None:
        self.flush()

    def due(self, epoch: int) -> bool:
        """Whether the end of ``epoch`` (not the last) checkpoints."""
        if self.every == "auto":
            return time.monotonic() - self.saved_at >= CHECKPOINT_SECONDS
        return epoch % self.every == 0

    def _rows(self, rows: list[dict[str, float]], header: bool) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, self.columns, extrasaction="ignore", lineterminator="\n")
        if header:
            writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()

    def write_csv(self, history: list[dict[str, float]]) -> None:
        """Rewrite ``metrics.csv`` from the history (at the start of a run or a resume)."""
        atomic_write(self.run_dir / "metrics.csv", self._rows(history, header=True))

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        # appended, not fsynced: a resume rewrites the file from the checkpoint's history
        with open(self.run_dir / "metrics.csv", "a", encoding="utf-8") as f:
            f.write(self._rows([logs], header=False))
        self.pending.append((self.run_id, trainer.epoch, dict(logs)))
        last = trainer.stop_training or trainer.epoch >= trainer.max_epochs
        checkpoint = last or self.due(trainer.epoch)
        if checkpoint or time.monotonic() - self.flushed_at >= STORE_SECONDS:
            self.flush()
        if checkpoint:
            save_state(self.run_dir / "checkpoint" / STATE_FILE, {**trainer.state_dict(), CONFIG: self.config})
            self.saved_at = time.monotonic()


def run_log(p: Prepared, run_dir: Path, store: RunStore, run_id: int) -> RunLog:
    """The run's ``RunLog``, with ``metrics.csv`` rewritten from the trainer's history (a
    resumed run drops the rows written after its checkpoint); a batch size larger than the
    training split (taken whole, as one batch) is said on the "regulab" logger."""
    log = RunLog(run_dir, store, run_id, metric_columns(p.task, extra_columns(p.cfg), "val" in p.splits,
                                                  p.cfg.train.eval_train), p.cfg.train.checkpoint_every,
                 recorded_config(p.cfg))
    log.write_csv(p.trainer.history)
    if p.loader.rows_per_batch < p.cfg.train.batch_size:
        logging.getLogger("regulab").warning(
            "run %s: train.batch_size %d is more than the %d training rows; each epoch is one batch of "
            "all of them (full-batch gradient descent; results.json: batch_size_used)", p.cfg.name,
            p.cfg.train.batch_size, p.loader.rows_per_batch)
    return log


def _fit(p: Prepared, run_dir: Path, store: RunStore | None, run_id: int,
         progress: bool | None) -> Run:
    """Train and finish; ``store`` None: a data-parallel rank other than 0 (no files, no bar)."""
    t = p.trainer
    views = viewers(p.cfg, run_dir) if store is not None else []
    if store is not None:
        t.callbacks.append(run_log(p, run_dir, store, run_id))
        t.callbacks += views
    show = progress if p.cfg.train.progress and store is not None else False
    t.callbacks.append(ProgressBar(enabled=show, desc=p.cfg.name))
    seconds_before = sum(h["seconds"] for h in t.history)
    # a data-parallel rank keeps its share of the cores (engine.distributed)
    n = torch.get_num_threads() if t.data_parallel is not None else \
        threads.for_fit(p.cfg.train.threads, t.model, p.cfg.train.batch_size)
    with threads.using(n):
        try:
            for view in views:
                view.on_run_start(t.history)
            start = time.perf_counter()
            t.fit(p.loader, p.splits.get("val"), epochs=p.cfg.train.epochs)
            run = finish(p, run_dir, store, run_id, seconds_before + time.perf_counter() - start)
        except BaseException as e:
            if store is not None:
                _mark(store, run_id, "diverged" if isinstance(e, DivergedError) else "failed")
            end(views, history=t.history, error=e)
            disk = _disk_error(e)
            if disk is not None:
                raise output_error(disk, run_dir) from None
            raise
    end(views, run.results, run.history)
    return run


def _disk_error(e: BaseException) -> OSError | None:
    """``e`` as the OSError of a write that failed for want of space or permission: an
    OSError itself, or SQLite saying so of the run store ("database or disk is full",
    "attempt to write a readonly database")."""
    if isinstance(e, OSError):
        return e if e.errno in WRITE_ERRORS else None
    text = str(getattr(e, "orig", "")).lower()
    for words, code in (("disk is full", errno.ENOSPC), ("readonly database", errno.EROFS)):
        if isinstance(e, sa_exc.OperationalError) and words in text:
            return OSError(code, f"{os.strerror(code)} (the run store: {text})")
    return None


def _mark(store: RunStore, run_id: int, status: str) -> None:
    """Set the run's status, unless the store itself cannot be written (a full disk may hold
    it too): the error that ended the run is the one to report."""
    try:
        store.set_status(run_id, status)
    except Exception as e:      # noqa: BLE001 -- reported, never hides the run's own error
        logging.getLogger("regulab").warning("run %s: its status could not be set to %s in the "
                                             "run store (%s)", run_id, status, str(e).splitlines()[0])


def train(cfg: Config, out: str | Path | None = None, db: str | None = None,
          progress: bool | None = None, callbacks: list[Callback] | None = None, *,
          model: Any = None, data: Any = None) -> Run:
    """Train one run of ``cfg`` and write its run directory; see the module docstring.
    ``callbacks`` run after the config's own (a sweep's pruning, say) and before the log.
    ``model``: the user's network -- an ``nn.Module``, its class, or a function returning one
    (``model.factory``); ``data``: the user's data (``data.dataset``; ``regulab.runs.prepare``).
    ``train.nproc`` > 1: data-parallel in that many new processes; inside a ``torchrun`` job,
    this process is one rank of it (``regulab.train.distributed``)."""
    cfg = cfg.with_code(model, data)
    store = RunStore(db)
    if not distributed.in_job():     # in a job, rank 0 checks when it makes the directory
        check_outputs(cfg.name, out, store)
    if callbacks and cfg.train.nproc > 1 and not distributed.in_job():
        raise ConfigError(f"config key 'train.nproc' must be 1 when train() is given callbacks "
                          f"(they live in this process); got {cfg.train.nproc}")
    with _job(cfg) as cfg:
        p = prepare(cfg)
        p.trainer.callbacks += callbacks or []
        return _launch(p, store, progress, lambda: open_run(cfg, out, store))


# -- data-parallel runs (distributed.py) -------------------------------------------------------

@contextlib.contextmanager
def _job(cfg: Config) -> Iterator[Config]:
    """Inside a ``torchrun`` job: joined to it, and ``cfg`` with ``train.nproc`` its size
    (recorded in config.toml, so ``regulab resume`` takes as many); else just ``cfg``."""
    if not distributed.in_job():
        yield cfg
        return
    with distributed.process_group(resolve_device(cfg.train.device)):
        world = distributed.world_size()
        if cfg.train.nproc not in (1, world):
            raise ConfigError(f"config key 'train.nproc' must be 1 or the size of the torchrun job "
                              f"({world}); got {cfg.train.nproc}")
        yield dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, nproc=world))


def _launch(p: Prepared, store: RunStore, progress: bool | None,
            start: Callable[[], tuple[Path, int]], restore: bool = False) -> Run:
    """``start()`` makes the run directory and store row -- once: on rank 0 in a job -- then
    the run is fitted here, by every rank of this job, or by ``train.nproc`` new processes
    (which load the checkpoint again when ``restore``)."""
    if distributed.in_job():
        run_dir, run_id = distributed.on_main(start)
        return _rank_fit(p, run_dir, store, run_id, progress)
    n, gpus = p.cfg.train.nproc, torch.cuda.device_count()
    if n > 1 and p.device.type == "cuda" and n > gpus:
        raise ConfigError(f"config key 'train.nproc' must be <= the number of CUDA devices ({gpus}) "
                          f"on train.device cuda (one per process); got {n}")
    # objects given from Python, which config.toml only names: the ranks get them pickled
    data = None if isinstance(p.cfg.data.dataset, str) else p.cfg.data.dataset
    model = None if isinstance(p.cfg.model.factory, (str, type(None))) else p.cfg.model.factory
    for what, obj in (("data=", data), ("model=", model)):
        try:
            if n > 1 and obj is not None:
                pickle.dumps(obj)
        except Exception as e:
            raise ConfigError(f"config key 'train.nproc' must be 1 when {what} is an object that cannot be "
                              f"pickled for the other processes ({type(e).__name__}: {e}); got {n}") from None
    run_dir, run_id = start()
    if n == 1:
        return _fit(p, run_dir, store, run_id, progress)
    try:
        distributed.spawn(_spawned_rank, n, p.device, run_dir, store.url, run_id, progress, restore, data, model)
    except BaseException as e:      # rank 0 may have died before it could say so
        _mark(store, run_id, "diverged" if isinstance(e, DivergedError) else "failed")
        if isinstance(e, distributed.RankFailed):
            raise distributed.RankFailed(f"{e}; the run is stopped, its last good checkpoint kept: "
                                         f"continue with 'regulab resume {run_dir}'") from None
        raise
    return _collect(p, run_dir)


def _rank_fit(p: Prepared, run_dir: Path, store: RunStore, run_id: int,
              progress: bool | None) -> Run:
    """Fit as one rank of a data-parallel job: a shard of every batch; only rank 0 writes."""
    p.trainer.data_parallel = distributed.DataParallel(distributed.rank(),
                                                       distributed.world_size(), p.noise)
    if p.streamed:      # each rank reads only its rows of every global batch
        p.loader.shard(distributed.rank(), distributed.world_size())
    return _fit(p, run_dir, store if distributed.is_main() else None, run_id, progress)


def _spawned_rank(run_dir: Path, db: str, run_id: int, progress: bool | None,
                  restore: bool, data: Any = None, model: Any = None) -> None:
    """One process of ``spawn``: the run prepared again from its config.toml (and checkpoint);
    ``data``, ``model``: the objects given from Python (``train(data=..., model=...)``), which
    config.toml only names."""
    p = prepare(load_config(run_dir / "config.toml").with_code(model=model, data=data))
    if restore:
        _restore(p, run_dir)
    _rank_fit(p, run_dir, RunStore(db), run_id, progress)


def _collect(p: Prepared, run_dir: Path) -> Run:
    """The ``Run`` of spawned processes, read back from what rank 0 wrote (non-finite
    results are None, as in results.json)."""
    _restore(p, run_dir)     # history and epoch
    p.pipeline.load_state_dict(load_tensors(run_dir / "model.safetensors")[0])
    results, evaluation = (json.loads((run_dir / f).read_text())
                           for f in ("results.json", "evaluation.json"))
    return Run(p.cfg, results, p.trainer.history, p.pipeline, run_dir, evaluation)


def state_bytes(p: Prepared) -> int:
    """The most a checkpoint of ``p``'s run can hold: its network's weights 16 times over (they
    are there with the optimizer's moments, an EMA's shadow, early stopping's best weights and
    the live ones a restore keeps), plus 64 MiB for the generators and the history."""
    weights = sum(t.numel() * t.element_size() for t in p.trainer.model.state_dict().values())
    return 16 * weights + 2**26 + 4096 * p.cfg.train.epochs


def _restore(p: Prepared, run_dir: Path) -> bool:
    """Load the run's last checkpoint into ``p.trainer``, verified first (``io.load_state``'s
    checksums, the config it recorded against the run's, ``runs.rundir.config_difference``,
    then ``Trainer.check_state`` against the run's network, optimizer, callbacks,
    ``train.epochs`` and steps per epoch); False when it has none yet. A checkpoint that fails
    raises ``CheckpointError`` naming the file and the problem, with nothing loaded."""
    state_path = run_dir / "checkpoint" / STATE_FILE
    if not os.path.lexists(state_path):     # a dangling link is there, and refused
        return False
    state = load_state(state_path, state_bytes(p))
    try:
        if isinstance(state, dict):     # else check_state says what it must be
            if CONFIG not in state:
                raise ValueError(f"'{CONFIG}' is missing: the checkpoint does not record the config it was "
                                 "written under (a regulab before checkpoints did), so it cannot be checked "
                                 f"against config.toml; remove {STATE_FILE} to train the run again from its start")
            difference = config_difference(state.pop(CONFIG), p.cfg)
            if difference is not None:
                raise ValueError(difference)
        p.trainer.check_state(state, p.cfg.train.epochs, len(p.loader))
        p.trainer.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"checkpoint file '{state_path}' does not fit the run of "
                              f"{run_dir / 'config.toml'}: {reason(e, 300)}") from None   # torch's span lines
    return True


def _complete(run_dir: Path, store: RunStore, model: Any, data: Any) -> Run:
    """A run with ``results.json`` (written last, so every file of the run is whole): its
    store row completed from it, when a kill (or a full disk) came before ``finish`` did
    that; refused when the row says completed already, or the store holds none."""
    run_id = store.find_run(str(run_dir.resolve()))
    if run_id is None or store.get_run(run_id)["status"] == "completed":
        raise CheckpointError(f"run directory '{run_dir}' is already complete (results.json exists)")
    run = _collect(prepare(load_config(run_dir / "config.toml").with_code(model, data)), run_dir)
    store.finish(run_id, "completed", run.results)
    end(viewers(run.config, run_dir), run.results, run.history)
    return run


def resume(run_dir: str | Path, db: str | None = None, progress: bool | None = None,
           nproc: int | str | None = None, *, model: Any = None, data: Any = None) -> Run:
    """Continue a stopped or killed run from its last checkpoint (or from the start if none),
    with the run's ``train.nproc`` processes unless ``nproc`` is given (a different count gives
    the same result within float tolerance, not bitwise). ``model``, ``data``: the objects the
    run was given from Python, again (config.toml only names them). A run killed after
    ``results.json`` but before its store row was completed gets the row completed, nothing
    trained (``runs.rundir`` lists what a kill at each moment leaves)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise CheckpointError(f"run directory '{run_dir}' has no config.toml; is it a regulab run?")
    info = run_info(run_dir)
    if (run_dir / "results.json").is_file():
        return _complete(run_dir, RunStore(db or info.get("db")), model, data)
    writable_dir(run_dir, "run directory", error=CheckpointError)
    cfg = load_config(run_dir / "config.toml", None if nproc is None else [f"train.nproc={nproc}"])
    cfg = cfg.with_code(model, data)
    with _job(cfg) as cfg:
        p = prepare(cfg)
        restore = _restore(p, run_dir)
        store = RunStore(db or info.get("db"))
        store.check()
        if info and not db:
            try:
                store.get_run(info["run_id"])
            except RegulabInputError:
                raise CheckpointError(f"checkpoint file '{run_dir / 'checkpoint' / 'run.json'}' names run "
                                      f"{info['run_id']}, which its run store does not hold") from None

        def start() -> tuple[Path, int]:
            remove_partial(run_dir.parent)      # what a start killed before its rename left there
            (run_dir / "checkpoint").mkdir(exist_ok=True)    # removed: the run starts over
            run_id = info["run_id"] if info and not db else register(run_dir, store, p.cfg)
            store.truncate_epochs(run_id, p.trainer.epoch)
            store.set_status(run_id, "running")
            return run_dir, run_id
        return _launch(p, store, progress, start, restore)
