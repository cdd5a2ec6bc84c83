"""``sweep(spec)``: one worker of an Optuna hyperparameter sweep (Bergstra et al., 2011, TPE;
Li et al., 2017, Hyperband). Start as many workers as you like, on one machine or several:
they share the sweep through its storage and stop when its budget is spent.

Storage: Optuna's ``RDBStorage`` on the run store's database (``--db``, default
``sqlite:///runs/regulab.db``); Optuna's tables (``studies``, ``trials``, ``trial_*``, ...)
sit beside regulab's ``runs`` and ``epochs`` without a clash. The Optuna study is named
after the sweep, so every worker started with the same sweep file and URL joins it.

Exact budget: a worker takes a cross-process lock (``pg_advisory_lock`` on PostgreSQL,
``flock`` on a file beside a SQLite database), fails the trials whose heartbeat is stale,
counts the trials spent, and only then asks for a new trial; the lock is released when
the objective starts. Spent = every trial but those superseded by a retry, so failed
trials (an error, a diverged run) count, and a worker that was killed costs nothing.

Retry: a running trial beats every ``heartbeat`` seconds; one silent for ``grace`` seconds
is failed by the next worker that looks, and re-queued (``WAITING``, same params) by
``RetryHeartbeatStaleTrialCallback`` up to ``retries`` times; a waiting trial is taken first.

Populations: when the space holds only population member keys (learning rate, dropout, L1/L2,
noise, ...; ``regulab.engine.population.eligibility``), a worker asks up to ``[sweep] population`` trials at
once (within the budget), trains them as one batched model, sends their heartbeats from a
thread, and tells each its own value; each member is pruned by its own pruner decisions (it
stops, the others go on). Members of one population cannot prune against each other -- as
with that many parallel workers -- so the pruner compares with the trials finished before.

A trial is an ordinary regulab run in ``<sweep dir>/trials/trial-<number>`` that never
scores the test split (``eval.test = false``); a pruned one stops early and is marked
"pruned" in the run store. When the budget is spent and no trial runs, one worker scores
the best trial's saved model on the test split -- once for the whole sweep -- and keeps the
result in the study; every worker then writes ``best.toml`` and ``best.json``.

Sweep directory (``--out`` or ``runs/sweep-<name>-<timestamp>``; workers on one machine may
share it)::

    sweep.json    the spec and the storage URL (password masked)
    trials/       one run directory per trial
    best.toml     the best trial's full config (test scoring on), ready for ``regulab train``
    best.json     trial number, params, value, run dir and test scores
    report.html   the trials and Optuna's plots of the study (``regulab.sweeps.report``)
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import warnings
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.trial import TrialState

from regulab.callbacks import Callback
from regulab.config.core import Config, apply_overrides, to_toml
from regulab.engine.population.eligibility import MEMBER_KEYS, population_key
from regulab.engine import threads
from regulab.errors import ConfigError, DivergedError, RegulabInputError
from regulab.io import atomic_write, new_dir
from regulab.paths import writable_dir
from regulab.nn.user import check_callable
from regulab.runs.evaluate import evaluate
from regulab.runs.population import train_population
from regulab.runs.run import train
from regulab.runs.store import RunStore, mask_url
from regulab.sweeps.locks import sweep_lock
from regulab.sweeps.report import write_report
from regulab.sweeps.spec import SweepSpec

__all__ = ["SweepResult", "sweep", "trial_rows", "format_trials"]

_DONE = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class SweepResult:
    """What a worker returns: where it wrote, every trial of the sweep, and the best one."""
    sweep_dir: Path
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None


class Pruning(Callback):
    """Reports ``metric`` to the trial after each epoch; when the pruner says so, stops the run
    (it finishes normally, so its run directory is whole) and remembers why."""

    stackable = True

    def __init__(self, trial: optuna.Trial, metric: str):
        self.trial, self.metric = trial, metric
        self.pruned_at: int | None = None

    def on_epoch_end(self, trainer, logs: dict[str, float]) -> None:
        self.trial.report(float(logs[self.metric]), trainer.epoch)
        if self.trial.should_prune():
            self.pruned_at = trainer.epoch
            trainer.stop_training = True


# -- storage -----------------------------------------------------------------------------------

def _storage(spec: SweepSpec, url: str, store: RunStore) -> optuna.storages.RDBStorage:
    """Optuna's storage on the run store's database; a killed trial's store row -> "killed"."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=spec.retries)

    def stale(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        retry(study, trial)
        run_id = store.find_run(trial.user_attrs.get("run_dir", "")) if "run_dir" in trial.user_attrs else None
        if run_id is not None:
            store.set_status(run_id, "killed")

    sqlite = sa.engine.make_url(url).get_backend_name() == "sqlite"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs={"connect_args": {"timeout": 30}} if sqlite else {},
                heartbeat_interval=spec.heartbeat, grace_period=spec.grace,
                heartbeat_stale_trial_callback=stale)
    except (sa.exc.SQLAlchemyError, ImportError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise RegulabInputError(f"--db: cannot open the sweep storage {mask_url(url)!r} ({first})") from None


def _sampler(spec: SweepSpec, n: int) -> optuna.samplers.BaseSampler:
    """The sampler for the sweep's ``n``-th ask: seeded from (seed, n), so workers that share
    ``seed`` still draw different points, and one worker's sweep is reproducible. The grid keeps
    ``seed``: it shuffles the grid with it, and every worker must see the same order."""
    if spec.sampler == "grid":
        grid = {k: d.optuna_choices() for k, d in spec.space.items()}
        return optuna.samplers.GridSampler(grid, seed=spec.seed)
    seed = None if spec.seed is None else (spec.seed * 1_000_003 + n) % 2**32     # NumPy's seeds: < 2^32
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.startup, n_warmup_steps=spec.warmup)
    if spec.pruner == "hyperband":
        epochs = spec.config({}, spec.name).train.epochs
        return optuna.pruners.HyperbandPruner(min_resource=max(1, spec.warmup), max_resource=epochs)
    return optuna.pruners.NopPruner()


def _spent(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Trials that count against the budget: all but those a retry has replaced."""
    replaced = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return sum(t.number not in replaced for t in trials)


# -- the sweep directory ------------------------------------------------------------------------

def _sweep_dir(spec: SweepSpec, out: str | Path | None) -> Path:
    """``out`` or a new ``runs/sweep-<name>-<timestamp>``; an existing directory of the same
    sweep is joined (several workers on one machine). Checked only: nothing is made."""
    if out is not None:
        writable_dir(out, "--out")      # the right kind, creatable and writable
    path = Path(out) if out is not None else new_dir(f"sweep-{spec.name}", None)
    info = path / "sweep.json"
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"--out: '{path}' is a file; choose a new path")
        same = info.is_file() and json.loads(info.read_text())["spec"]["name"] == spec.name
        if any(path.iterdir()) and not same:
            raise ConfigError(f"--out: '{path}' is not empty and not a directory of sweep "
                              f"'{spec.name}'; choose a new path")
    return path


def _make_sweep_dir(path: Path, spec: SweepSpec, url: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if not (path / "sweep.json").is_file():
        atomic_write(path / "sweep.json", json.dumps({"spec": spec.to_dict(), "storage": mask_url(url)},
                                                     indent=2))


# -- the worker --------------------------------------------------------------------------------

def _start_trial(spec: SweepSpec, trial: optuna.Trial, sweep_dir: Path) -> tuple[Config, Path]:
    """A trial's config and run directory; the directory and this worker go in its user attrs
    (first, so a config the trial's params break still says where it ran)."""
    params = {k: d.suggest(trial) for k, d in spec.space.items()}
    run_dir = sweep_dir / "trials" / f"trial-{trial.number}"
    trial.set_user_attr("run_dir", str(run_dir.resolve()))
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    return spec.config(params, f"{spec.name}-{trial.number}"), run_dir


def _mark_pruned(store: RunStore, run_dir: Path) -> None:
    run_id = store.find_run(str(run_dir.resolve()))
    if run_id is not None:
        store.set_status(run_id, "pruned")


def _objective(spec: SweepSpec, sweep_dir: Path, store: RunStore, lock):
    def objective(trial: optuna.Trial) -> float:
        lock.release()      # the trial exists (RUNNING): other workers may ask now
        cfg, run_dir = _start_trial(spec, trial, sweep_dir)
        pruning = Pruning(trial, spec.metric)
        run = train(cfg, out=run_dir, db=store.url, progress=False, callbacks=[pruning])
        if pruning.pruned_at is not None:
            _mark_pruned(store, run_dir)
            raise optuna.TrialPruned(f"{spec.metric} at epoch {pruning.pruned_at}")
        return float(run.results[spec.metric])
    return objective


def _pooled(spec: SweepSpec) -> bool:
    """Whether a worker trains ``spec.population`` trials at once as one population: the space
    holds only population member keys (lr, dropout, L1/L2, noise, ...; see ``population``) and
    the base network has a stacked form."""
    return (spec.population > 1 and set(spec.space) <= set(MEMBER_KEYS)
            and population_key(spec.config({}, spec.name)) is not None)


class _Heartbeat:
    """Records the heartbeat of ``trials`` every ``interval`` seconds in a thread while a batch
    trains (``study.optimize`` does this for one trial; a batch is asked and told by hand),
    through the storage's public API (each trial's id found from the study's name and the
    trial's number)."""

    def __init__(self, storage: optuna.storages.RDBStorage, study: optuna.Study,
                 trials: list[optuna.Trial], interval: int):
        import threading
        study_id = storage.get_study_id_from_name(study.study_name)
        self.ids = [storage.get_trial_id_from_study_id_trial_number(study_id, t.number) for t in trials]
        self.storage, self.interval = storage, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="regulab-heartbeat")

    def _beat(self) -> None:
        while True:
            for trial_id in self.ids:
                self.storage.record_heartbeat(trial_id)
            if self.stop.wait(self.interval):
                return

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def _train_batch(spec: SweepSpec, study: optuna.Study, storage: optuna.storages.RDBStorage,
                 trials: list[optuna.Trial], sweep_dir: Path, store: RunStore) -> None:
    """Train asked ``trials`` as one population (``train_population``) and tell each its value,
    or pruned (its own pruner decision, epoch by epoch), or failed."""
    with _Heartbeat(storage, study, trials, spec.heartbeat):
        cfgs, outs, prunings, live = [], [], [], []
        for t in trials:
            t.set_user_attr("population", len(trials))
            try:
                cfg, run_dir = _start_trial(spec, t, sweep_dir)
            except RegulabInputError:
                _tell(study, t, state=TrialState.FAIL)
                continue
            cfgs.append(cfg)
            outs.append(run_dir)
            prunings.append(Pruning(t, spec.metric))
            live.append(t)
        try:
            runs = train_population(cfgs, outs, db=store.url, callbacks=[[p] for p in prunings],
                                    return_errors=True) if live else []
        except RegulabInputError:
            runs = [None] * len(live)
    for t, pruning, run, out in zip(live, prunings, runs, outs):
        if run is None or isinstance(run, BaseException):
            _tell(study, t, state=TrialState.FAIL)
        elif pruning.pruned_at is not None:
            _mark_pruned(store, out)
            _tell(study, t, state=TrialState.PRUNED)
        else:
            _tell(study, t, float(run.results[spec.metric]))


def _tell(study: optuna.Study, trial: optuna.Trial, value: float | None = None, **state) -> None:
    """``study.tell``; the grid sampler's ``study.stop()`` on the last grid point, meant for
    ``optimize``, raises outside it -- after the trial's state is stored -- and is ignored
    (the budget loop stops the worker)."""
    try:
        study.tell(trial, value, **state)
    except RuntimeError as e:
        if "Study.stop" not in str(e):
            raise


def _progress(enabled: bool | None, spec: SweepSpec):
    if not (sys.stderr.isatty() if enabled is None else enabled):
        return None
    from tqdm.auto import tqdm
    return tqdm(total=spec.trials, desc=spec.name, unit="trial", dynamic_ncols=True)


def sweep(spec: SweepSpec, out: str | Path | None = None, db: str | None = None,
          progress: bool | None = None, *, model: Any = None, data: Any = None) -> SweepResult:
    """Run trials of ``spec`` until its budget is spent and no trial runs; see the module docstring.
    ``model`` (a class or function returning the user's network) and ``data`` (the user's data)
    go into every trial's config, as in ``rl.train``. The worker registers itself on this
    machine for its duration: workers on one machine split its cores (``engine.threads``)."""
    with threads.worker():
        return _sweep(spec, out, db, progress, model, data)


def _sweep(spec: SweepSpec, out: str | Path | None, db: str | None, progress: bool | None,
           model: Any, data: Any) -> SweepResult:
    code = {k: v for k, v in (("model.factory", None if model is None else check_callable(model)),
                              ("data.dataset", data)) if v is not None}
    if code:
        spec = dataclasses.replace(spec, base=apply_overrides(spec.base, code))
    store = RunStore(db)
    store.check()       # before any work: a store that cannot be written
    _sweep_dir(spec, out)       # and a sweep directory that cannot be made (checked again below)
    url = store.url
    if sa.engine.make_url(url).get_backend_name() == "sqlite" and store.sqlite_path is None:
        raise RegulabInputError(f"--db: a sweep needs a database file or server; got {mask_url(url)!r}")
    lock = sweep_lock(url, spec.name)
    lock.acquire()
    try:        # under the lock: workers starting together race for the tables and the directory
        sweep_dir = _sweep_dir(spec, out)
        storage = _storage(spec, url, store)
        study = optuna.create_study(storage=storage, study_name=spec.name, load_if_exists=True,
                                    direction=spec.direction, pruner=_pruner(spec))
        known = study.user_attrs.get("spec")
        if known is None:
            study.set_user_attr("spec", spec.identity())
        elif known != spec.identity():
            raise ConfigError(f"sweep.name: the storage already holds a sweep '{spec.name}' with "
                              "another space, base, sampler or metric; choose another name")
        _make_sweep_dir(sweep_dir, spec, url)
    finally:
        lock.release()
    objective = _objective(spec, sweep_dir, store, lock)
    pooled = _pooled(spec)
    bar = _progress(progress, spec)
    while True:
        lock.acquire()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            waiting = sum(t.state == TrialState.WAITING for t in trials)
            ask = waiting > 0 or _spent(trials) < spec.trials
            batch = []
            if ask and pooled:      # up to ``population`` trials at once, within the budget
                for i in range(min(spec.population, waiting + max(0, spec.trials - _spent(trials)))):
                    study.sampler = _sampler(spec, len(trials) + i)
                    with warnings.catch_warnings():     # heartbeats: ``_Heartbeat`` sends them
                        warnings.simplefilter("ignore", UserWarning)
                        batch.append(study.ask())
            elif ask:   # a trial the config or the data rejects, or that diverges, is failed
                study.sampler = _sampler(spec, len(trials))
                study.optimize(objective, n_trials=1, catch=(RegulabInputError, DivergedError))
            running = any(t.state == TrialState.RUNNING for t in trials)
        finally:
            lock.release()
        if batch:
            _train_batch(spec, study, storage, batch, sweep_dir, store)
        if bar is not None:
            bar.n = min(spec.trials, len(study.get_trials(deepcopy=False, states=_DONE)))
            bar.refresh()
        if not ask and not running:
            break
        if not ask:
            time.sleep(spec.heartbeat)      # others still run trials; one may die and be retried
    if bar is not None:
        bar.close()
    best = _best(spec, study, lock, store)
    if best is not None:
        _write_best(spec, sweep_dir, best)
    rows = trial_rows(spec, study)
    write_report(spec, study, sweep_dir, rows, best)
    return SweepResult(sweep_dir, rows, best)


# -- the best trial, scored on the test split once ----------------------------------------------

def _test_scores(spec: SweepSpec, trial: optuna.trial.FrozenTrial, store: RunStore) -> dict[str, float]:
    """The test scores of the trial's saved model, or of its config trained again when its run
    directory is on another machine (same seeds: the same model on the same device)."""
    run_dir = Path(trial.user_attrs["run_dir"])
    if not (run_dir / "model.safetensors").is_file():
        cfg = spec.config(spec.params(trial.params), f"{spec.name}-best", test=True)
        run = train(cfg, out=run_dir.parent.parent / "best-run", db=store.url, progress=False)
        return {k: v for k, v in run.results.items() if k.startswith("test_")}
    base = spec.config({}, spec.name)      # the user's objects, when given from Python
    return evaluate(run_dir, ("test",), model=base.model.factory, data=base.data.dataset)


def _best(spec: SweepSpec, study: optuna.Study, lock, store: RunStore) -> dict[str, Any] | None:
    """The study's best trial with its test scores, computed by the first worker to get here."""
    lock.acquire()
    try:
        best = study.user_attrs.get("best")
        if best is not None or not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            return best
        t = study.best_trial
        best = {"trial": t.number, "metric": spec.metric, "direction": spec.direction,
                "value": t.value, "params": spec.params(t.params), "run_dir": t.user_attrs["run_dir"],
                "test": _test_scores(spec, t, store)}
        study.set_user_attr("best", best)
        return best
    finally:
        lock.release()


def _write_best(spec: SweepSpec, sweep_dir: Path, best: dict[str, Any]) -> None:
    cfg = spec.config(best["params"], f"{spec.name}-best", test=True)
    atomic_write(sweep_dir / "best.toml", to_toml(cfg))
    atomic_write(sweep_dir / "best.json", json.dumps(best, indent=2))


def trial_rows(spec: SweepSpec, study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial: number, state, params (config values), value, run_dir."""
    return [{"number": t.number, "state": t.state.name.lower(), "params": spec.params(t.params),
             "value": t.value, "run_dir": t.user_attrs.get("run_dir")}
            for t in study.get_trials(deepcopy=False)]


def format_trials(rows: list[dict[str, Any]], metric: str) -> str:
    """A fixed-width table: trial, state, value, then one column per parameter."""
    keys = list(dict.fromkeys(k for r in rows for k in r["params"]))

    def fmt(v):
        return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else json.dumps(v)
    table = [["trial", "state", metric, *keys]]
    table += [[str(r["number"]), r["state"], fmt(r["value"]), *(fmt(r["params"].get(k)) for k in keys)]
              for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in table)
