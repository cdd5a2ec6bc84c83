"""The run directory: made whole, registered once in the run store, and what a kill leaves.

``open_run`` makes the directory under a temporary name beside it
(``.NAME.xxxxxxxx.regulab-partial``, with ``config.toml`` and an empty ``checkpoint/`` inside)
and renames it into place, so it appears whole or not at all; then ``register`` adds the run's
row to the store (or finds the row a killed start already made, by the resolved directory)
and writes ``checkpoint/run.json``. While it makes one, a process holds a shared ``flock`` on
the folder (``paths.making``); ``paths.remove_partial`` takes it exclusive, without waiting, so
it removes the temporary directories a killed start left only when no process is making one
there.

A kill -9 at any moment (``tests/test_kill_moments.py`` kills at each) leaves, and is recovered
by, the following; the recovered run equals the uninterrupted one bit for bit, and the store
holds one row for it, completed, with one epoch row per epoch:

- before the rename (process start, the checks, ``prepare``, the temporary directory, its
  ``checkpoint/`` and config.toml): no run directory and no row -- at most the hidden
  temporary directory, which nothing reads; the next ``regulab train``, ``resume`` or ``runs``
  in that folder removes it (``remove_partial``). ``regulab train`` with the same ``--out``
  starts afresh.
- after the rename, before the row or before ``run.json``: ``regulab resume RUN_DIR``
  registers the run (the row a killed start made is found, not made twice) and trains from
  the start. ``regulab train --out RUN_DIR`` is refused: the directory is not empty.
- during training (``metrics.csv``'s rows, the store's epoch rows, a checkpoint's temporary
  file, its rename): resume loads the last complete checkpoint (``io.save_state`` leaves the
  old file or the new one), rewrites ``metrics.csv`` from its history, deletes the store's
  epoch rows after its epoch and trains again from there, to the same numbers.
- after the last epoch, during the final writes (``model.safetensors``, ``model.json``,
  ``evaluation.json``): the last checkpoint holds the last epoch; resume trains no epoch and
  writes them all again (``runs.evaluate.finish``).
- after ``results.json``, before the row is completed (or when completing it failed: a full
  disk): the run is done, its store row is not; resume completes the row from
  ``results.json`` (``runs.run.resume``), training nothing.
- after the row is completed: the run is finished; resume refuses it ("already complete").

Each checkpoint records the config it was written under (``recorded_config``: the config as
``config.toml`` holds it); ``config_difference`` compares it with the run's ``config.toml``
before ``resume`` loads anything, so an edited ``config.toml``, or a checkpoint copied from
another run, is refused naming the first key that differs. Keys that do not change training
(``RESUME_MAY_DIFFER``: the name, progress, threads, checkpoint cadence, data workers, the
final evaluation, logging) and ``train.nproc`` (``regulab resume --nproc``) may differ; a key
the checkpoint does not record (added to regulab after it was written) must hold its default.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from regulab.config.core import Config, to_toml
from regulab.config.files import flatten
from regulab.engine.population.eligibility import IGNORED_KEYS, TAGS
from regulab.errors import CheckpointError, OutputError, reason
from regulab.io import atomic_write, new_dir, read_regular
from regulab.paths import PARTIAL, making, remove_partial, shown
from regulab.verify import short
from regulab.runs.store import RunStore
from regulab.runs.viewers import check_store

__all__ = ["WRITE_ERRORS", "output_error", "check_outputs", "run_info", "open_run", "register",
           "RESUME_MAY_DIFFER", "recorded_config", "config_difference"]


WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def output_error(e: OSError, run_dir: Path) -> OutputError:
    """The one line of a run whose files could not be written (``WRITE_ERRORS``): what and
    where, and that ``regulab resume`` continues from the last good checkpoint."""
    where = f" ({shown(e.filename)})" if e.filename else ""
    return OutputError(e.errno, f"cannot write the run's files: {e.strerror}{where}; the last good "
                       f"checkpoint is kept: free space or fix permissions, then run "
                       f"'regulab resume {run_dir}'")


def check_outputs(name: str, out: str | Path | None, store: RunStore) -> None:
    """Refuse, before any work, outputs that could not be written: ``out`` (new or empty,
    writable), else the name and ``runs/``, and the store (``RunStore.check``)."""
    new_dir(name, out)
    store.check()


def run_info(run_dir: Path) -> dict[str, Any]:
    """``checkpoint/run.json``, checked (a run id >= 1 and a store URL); {} when the run has no
    checkpoint/ directory or no run.json yet (killed right after it started: it starts over);
    ``checkpoint`` that is not a directory, or a damaged run.json, raises ``CheckpointError``."""
    ckpt = run_dir / "checkpoint"
    if os.path.lexists(ckpt) and (ckpt.is_symlink() or not ckpt.is_dir()):
        raise CheckpointError(f"checkpoint directory '{ckpt}' must be a directory; it is "
                              f"{'a symbolic link' if ckpt.is_symlink() else 'a file'}")
    path = ckpt / "run.json"
    if not os.path.lexists(path):
        return {}
    try:
        info = json.loads(read_regular(path, 2**16))
        if not (isinstance(info, dict) and type(info.get("run_id")) is int and info["run_id"] >= 1
                and isinstance(info.get("db"), str)):
            raise ValueError(f"it must hold a run_id >= 1 and a db URL; got {info!r}"[:200])
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"checkpoint file '{path}' is corrupted ({reason(e)})") from None
    return info


def open_run(cfg: Config, out: str | Path | None, store: RunStore) -> tuple[Path, int]:
    """Create the run directory (``out``, else a new ``runs/<name>-<timestamp>``) with
    ``config.toml`` inside, and the run's row in ``store``: (run directory, run id)."""
    check_store(cfg, store)
    run_dir = new_dir(cfg.name, out)
    # the directory appears whole, config.toml inside, or not at all
    tmp = None
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_partial(run_dir.parent)
        with making(run_dir.parent):
            tmp = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", suffix=PARTIAL, dir=run_dir.parent))
            (tmp / "checkpoint").mkdir()
            atomic_write(tmp / "config.toml", to_toml(cfg))
            if run_dir.exists():
                run_dir.rmdir()     # an empty --out directory
            tmp.rename(run_dir)
    except OSError as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if e.errno in WRITE_ERRORS:
            raise OutputError(e.errno, f"cannot create the run directory {shown(run_dir)}: {e.strerror}"
                              f"{f' ({shown(e.filename)})' if e.filename else ''}; nothing was written") from None
        raise
    return run_dir, register(run_dir, store, cfg)


def register(run_dir: Path, store: RunStore, cfg: Config) -> int:
    """The run's row in the store (made once, found again after a kill) and ``checkpoint/run.json``."""
    run_id = store.find_run(str(run_dir.resolve()))
    if run_id is None:
        run_id = store.create_run(cfg.name, str(run_dir.resolve()), cfg.to_dict(portable=True))
    atomic_write(run_dir / "checkpoint" / "run.json", json.dumps({"run_id": run_id, "db": store.url}))
    return run_id


# -- the config a checkpoint records -----------------------------------------------------------

# keys a resumed run may hold other values of than its checkpoint: those that do not change
# training (IGNORED), but train.eval_train (its clean_train_* columns are in the history), and
# the process count (``regulab resume --nproc``; the same result within float tolerance)
RESUME_MAY_DIFFER = frozenset({*IGNORED_KEYS, "train.nproc"} - {"train.eval_train"})


def recorded_config(cfg: Config) -> dict[str, Any]:
    """What a checkpoint records of ``cfg``: each dotted key (``optim.lr``) and its value as
    config.toml holds it (a user's objects by their reference: ``Config.to_dict(portable=True)``)."""
    return flatten(cfg.to_dict(portable=True), "config")


def _canonical(v: Any) -> str | None:
    """``v`` as JSON text with sorted keys (a tuple as a list), None when JSON cannot hold it."""
    try:
        return json.dumps(v, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None


def config_difference(recorded: Any, cfg: Config) -> str | None:
    """Why a checkpoint that recorded ``recorded`` (``recorded_config``) was not written under
    ``cfg`` (the run's config.toml): the first key that differs with both values, or None
    when they agree but for ``RESUME_MAY_DIFFER``."""
    if not isinstance(recorded, dict):
        return f"'config' must be a table of the run's config keys; got {short(recorded)}"
    ours = recorded_config(cfg)
    for key in [*ours, *(k for k in recorded if k not in ours)]:
        if key in RESUME_MAY_DIFFER:
            continue
        if key not in ours:
            return f"'config' records the key {short(key)}, which this regulab's config does not have"
        mine = _canonical(ours[key])
        if key not in recorded:     # recorded before the key existed: it held its default
            if mine != _canonical(TAGS[key][1]):
                return (f"'{key}' is not recorded in the checkpoint (written before the key existed, "
                        f"so as its default {short(TAGS[key][1])}) and is {short(ours[key])} in config.toml")
            continue
        theirs = _canonical(recorded[key])
        if theirs is None or theirs != mine:
            return (f"'{key}' is {short(recorded[key])} in the checkpoint and {short(ours[key])} in "
                    "config.toml (config.toml was edited after the checkpoint was written, or the "
                    "checkpoint is another run's)")
    return None
