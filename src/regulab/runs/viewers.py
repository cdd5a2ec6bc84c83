"""What a run writes for the viewers people already use (``[log]``), beside metrics.csv and the
run store: TensorBoard event files (``[log] tensorboard = true``) and an MLflow run
(``[log] mlflow = "URI"``).

``TensorBoardLog`` writes ``<run dir>/tensorboard/``: each epoch's scalars under their metrics.csv
names (``train_loss``, ``val_acc``, ``lr``, ``penalty``, ...) at step = the epoch, and at the fit's
end the run's config as hyperparameters (``section.key``; lists and None as text) with its last
epoch's validation scores, for TensorBoard's HParams view -- so ``tensorboard --logdir runs/``
compares every run, a study's and a sweep's too. A resumed run purges the events after its
checkpoint's epoch (``SummaryWriter(purge_step=...)``), as metrics.csv is rewritten, so each
epoch is shown once. A population's members write their own, as they write their own run.

``MLflowLog`` logs the run to an MLflow tracking URI through ``mlflow.MlflowClient`` (no fluent
``mlflow.start_run`` state: a population holds one MLflow run per member at once). Before the
run's clock starts (``Viewer.on_run_start``: MLflow's import and a new database's tables take
seconds, not fit_seconds) it makes the run, named after the regulab run (``name``), in the experiment
``log.mlflow_experiment`` (a study's or sweep's own by default, ``config.files``), with MLflow's
context tags (user, source; as Lightning's ``MLFlowLogger``) and ``regulab.run_dir``,
``regulab.seed``; the config as params (``section.key`` = its JSON text; ``log.mlflow`` itself,
which may hold a password, left out; a value cut to MLflow's 6000 characters ends in "...").
Each epoch's scalars -- the ones TensorBoard gets -- go as metrics at step = the epoch, sent in
one ``log_batch`` at least every ``FLUSH_SECONDS`` and at the run's end. When the run ends:
results.json's numbers as ``final/<key>`` metrics (``final/test_acc``, ``final/best_epoch``), its
words as ``regulab.<key>`` tags, status FINISHED; a run ended by an error FAILED (KILLED by
Ctrl-C), the error in the tag ``regulab.error``. A tracking store that fails during the fit fails
the run, as a full disk does (``regulab resume`` continues it); one that fails after another error
is reported on the "regulab" logger and the run's own error raised.

``<run dir>/mlflow.json`` holds the resolved tracking URI and the MLflow run's id, so
``regulab resume`` continues the same MLflow run from any working directory. MLflow keeps every
value logged at a step and cannot delete one, so a resumed run sends only the epochs MLflow does
not hold yet (a resumed run's epochs are the uninterrupted run's: those already there are
right), those of its checkpoint's history first: a reader sees each epoch once.

The packages are optional (``pip install 'regulab[tensorboard]'``, ``'regulab[mlflow]'``) and
imported only by a run that asks for them; without one, ``check`` refuses its key when the run
is prepared, before anything is written.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from regulab.callbacks import Callback
from regulab.config.core import Config
from regulab.config.files import flatten
from regulab.errors import CheckpointError, ConfigError, invalid, mask_password, reason
from regulab.io import atomic_write
from regulab.paths import writable_dir

__all__ = ["Viewer", "TensorBoardLog", "MLflowLog", "viewers", "check", "check_store", "end", "hparams",
           "params", "scalars", "tracking_uri", "MLFLOW_FILE", "FLUSH_SECONDS"]

MLFLOW_FILE = "mlflow.json"     # in the run directory: the MLflow run a resume continues
FLUSH_SECONDS = 2.0             # an MLflow run's epoch metrics are sent at least this often


def check(cfg: Config) -> None:
    """Refuse ``[log]`` keys this machine cannot honour (one line, before any work): a missing
    package, an MLflow database or file store in a folder that cannot be written, a file store
    MLflow will not open, a multi-task head whose metric names MLflow refuses."""
    if cfg.log.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise invalid("log.tensorboard", "false, or true with the tensorboard package installed "
                      "(pip install 'regulab[tensorboard]')", True, error=ConfigError)
    uri = cfg.log.mlflow
    if not uri:
        return
    if importlib.util.find_spec("mlflow") is None:
        raise invalid("log.mlflow", '"" (off), or a tracking URI with the mlflow package installed '
                      "(pip install 'regulab[mlflow]')", mask_password(uri), error=ConfigError)
    database, folder = _local(uri)
    if folder is not None and database is None:
        import mlflow.environment_variables as env   # MLflow 3 keeps its file store in maintenance
        allowed = getattr(env, "MLFLOW_ALLOW_FILE_STORE", None)
        if allowed is not None and not allowed.get():
            raise invalid("log.mlflow", "a database or server URI (sqlite:///mlflow.db, http://HOST:PORT, "
                          "...): MLflow opens a file store only with MLFLOW_ALLOW_FILE_STORE=true", uri)
    if folder is not None:
        writable_dir(folder, "log.mlflow: the MLflow " + ("database's folder" if database else "file store"))
    from mlflow.utils.validation import path_not_unique, validate_param_and_metric_name
    for task in cfg.multitask.tasks:
        if not validate_param_and_metric_name(f"val_{task}_acc") or path_not_unique(f"val_{task}_acc"):
            raise invalid("multitask.tasks", "task names MLflow takes in a metric's name (letters, digits, "
                          "_ - . / : and spaces) with log.mlflow on", task)


def check_store(cfg: Config, store: Any) -> None:
    """Refuse an MLflow database that is the run store's (``store``: a ``RunStore``): both keep
    a table named ``runs``."""
    database, _ = _local(cfg.log.mlflow) if cfg.log.mlflow else (None, None)
    if database is not None and store.sqlite_path is not None and database == Path(store.sqlite_path).resolve():
        raise invalid("log.mlflow", f"another database than the run store's ({store.sqlite_path}: "
                      "both keep a table named runs)", cfg.log.mlflow)


def _local(uri: str) -> tuple[Path | None, Path | None]:
    """(the SQLite file, the folder MLflow writes in) of a tracking URI on this machine;
    (None, None) for a server. A file store's folder is the store itself."""
    scheme = urllib.parse.urlsplit(uri).scheme.lower() if uri != "databricks" else "databricks"
    if scheme.split("+")[0] == "sqlite":
        database = Path(make_url(uri).database or "").resolve()
        return database, database.parent
    if len(scheme) <= 1:    # a directory path
        return None, Path(uri).resolve()
    if scheme == "file":
        return None, Path(urllib.parse.unquote(urllib.parse.urlsplit(uri).path)).resolve()
    return None, None


def tracking_uri(uri: str) -> str:
    """``uri`` with a local path made absolute, as ``mlflow.json`` keeps it (a resume from
    another working directory finds the same store)."""
    database, folder = _local(uri)
    if database is not None:
        return make_url(uri).set(database=str(database)).render_as_string(hide_password=False)
    return folder.as_uri() if folder is not None else uri


def hparams(cfg: Config) -> dict[str, Any]:
    """The config as TensorBoard's hyperparameters: ``{"section.key": value}``, each value a
    number, a bool or text (lists, tables and None as their TOML-like text)."""
    return {key: value if isinstance(value, (bool, int, float, str)) else str(value)
            for key, value in flatten(cfg.to_dict(portable=True), "config").items()}


def params(cfg: Config, limit: int) -> dict[str, str]:
    """The config as MLflow's params: ``{"section.key": text}``, a string as it is and any other
    value as JSON (``true``, ``[64, 32]``, ``null``), cut to ``limit`` characters ending in
    "..."; ``log.mlflow`` left out (a URI may hold a password)."""
    out = {}
    for key, value in flatten(cfg.to_dict(portable=True), "config").items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if key != "log.mlflow":
            out[key] = text if len(text) <= limit else text[:limit - 3] + "..."
    return out


def scalars(logs: dict[str, Any]) -> dict[str, float]:
    """An epoch's logs as the viewers show them: every finite number but the epoch (the step)."""
    return {k: v for k, v in logs.items() if k != "epoch" and isinstance(v, (int, float))
            and not isinstance(v, bool) and math.isfinite(v)}


class Viewer(Callback):
    """A callback that shows the run elsewhere. Besides the fit's hooks, ``on_run_start`` comes
    before the run's clock starts (what takes seconds to open is not counted in fit_seconds)
    and ``on_run_end`` hears how the run ended (after ``runs.evaluate.finish``, which the fit's
    callbacks do not see)."""

    stackable = True

    def on_run_start(self, history: list[dict[str, float]]) -> None:
        """The run is about to fit, from the epochs of ``history`` on (a resumed run's)."""

    def on_run_end(self, results: dict[str, Any] | None, history: list[dict[str, float]],
                   error: BaseException | None) -> None:
        """The run ended: with its ``results`` (results.json) and ``history``, or by ``error``."""


class TensorBoardLog(Viewer):
    """Each epoch's scalars and, at the end, the hyperparameters, as TensorBoard event files
    under ``run_dir/tensorboard`` (module docstring)."""

    def __init__(self, run_dir: Path, cfg: Config):
        self.dir, self.cfg, self.writer = Path(run_dir) / "tensorboard", cfg, None
        self.last: dict[str, float] = {}

    def on_fit_start(self, trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter
        # a resumed run: the events after its checkpoint's epoch go, as they are trained again
        self.writer = SummaryWriter(str(self.dir), purge_step=trainer.epoch + 1 if trainer.epoch else None)

    def on_epoch_end(self, trainer, logs: dict[str, float]) -> None:
        for key, value in scalars(logs).items():
            self.writer.add_scalar(key, value, trainer.epoch)
        self.last = dict(logs)

    def on_fit_end(self, trainer) -> None:
        if self.writer is None:
            return
        scores = {f"hparam/{k}": v for k, v in scalars(self.last).items() if k.startswith("val_")}
        if scores:
            self.writer.add_hparams(hparams(self.cfg), scores, run_name=".", global_step=trainer.epoch)
        self.writer.close()
        self.writer = None


class MLflowLog(Viewer):
    """The run as an MLflow run: params, each epoch's metrics, the final results and status,
    continued by a resume (module docstring)."""

    def __init__(self, run_dir: Path, cfg: Config):
        self.run_dir, self.cfg = Path(run_dir), cfg
        self.client: Any = None     # an mlflow.MlflowClient once the MLflow run is open
        self.run_id = ""
        self.logged = 0             # the last epoch MLflow holds
        self.pending: list[Any] = []    # mlflow.entities.Metric not sent yet
        self.sent_at = 0.0

    def on_run_start(self, history: list[dict[str, float]]) -> None:
        self.open(history)      # MLflow's import and a new database's tables: seconds

    def on_fit_start(self, trainer) -> None:
        if self.client is None:
            self.open(trainer.history)

    def on_epoch_end(self, trainer, logs: dict[str, float]) -> None:
        self.add(logs)
        if time.monotonic() - self.sent_at >= FLUSH_SECONDS:
            self.send()

    # no on_fit_end: the epochs still queued go with the end (``on_run_end``), where an error of
    # the tracking store cannot take the place of the error that ended the fit

    def on_run_end(self, results: dict[str, Any] | None, history: list[dict[str, float]],
                   error: BaseException | None) -> None:
        from mlflow.entities import Metric, RunStatus, RunTag
        if self.client is None:
            if error is not None:
                return      # no MLflow run was opened: nothing to mark
            self.open(history)      # a run whose kill came after results.json, completed by resume
        self.send()
        if error is not None:
            status = RunStatus.KILLED if isinstance(error, KeyboardInterrupt) else RunStatus.FAILED
            text = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
            self.client.log_batch(self.run_id, tags=[RunTag("regulab.error", text[:1000])])
        else:
            status, now = RunStatus.FINISHED, _now()
            step = results.get("epochs_run") if isinstance(results.get("epochs_run"), int) else 0
            final = [Metric(f"final/{k}", v, now, step) for k, v in scalars(results).items()]
            words = [RunTag(f"regulab.{k}", str(v).lower() if isinstance(v, bool) else v)
                     for k, v in results.items() if isinstance(v, (bool, str))]
            self._batch(metrics=final, tags=words)
        self.client.set_terminated(self.run_id, RunStatus.to_string(status))

    def open(self, history: list[dict[str, float]]) -> None:
        """Make the MLflow run (or reopen the one ``mlflow.json`` names), log the params and the
        epochs of ``history`` MLflow does not hold yet."""
        from mlflow import MlflowClient
        from mlflow.entities import Param
        from mlflow.tracking.context.registry import resolve_tags
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
        saved = self._saved()
        if saved is not None:
            self.client, self.run_id = MlflowClient(saved["tracking_uri"]), saved["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            self.logged = max((m.step for m in self.client.get_metric_history(self.run_id, "lr")), default=0)
        else:
            uri, (database, _) = tracking_uri(self.cfg.log.mlflow), _local(self.cfg.log.mlflow)
            if database is not None:    # its folder, as a file store makes its own (``check``)
                database.parent.mkdir(parents=True, exist_ok=True)
            self.client = MlflowClient(uri)
            experiment = _experiment(self.client, self.cfg.log.mlflow_experiment or "regulab")
            tags = resolve_tags({"regulab.run_dir": str(self.run_dir.resolve()),
                                 "regulab.seed": str(self.cfg.train.seed)})
            self.run_id = self.client.create_run(experiment, run_name=self.cfg.name, tags=tags).info.run_id
            atomic_write(self.run_dir / MLFLOW_FILE, json.dumps(
                {"tracking_uri": uri, "experiment_id": experiment, "run_id": self.run_id}))
        # the same values again on a resume (params cannot change; a kill may have come before)
        self._batch(params=[Param(k, v) for k, v in params(self.cfg, MAX_PARAM_VAL_LENGTH).items()])
        for logs in history:
            self.add(logs)
        self.send()

    def add(self, logs: dict[str, float]) -> None:
        """Queue an epoch's scalars, unless MLflow holds that epoch already."""
        from mlflow.entities import Metric
        epoch = int(logs["epoch"])
        if epoch > self.logged:
            now = _now()
            self.pending += [Metric(k, v, now, epoch) for k, v in scalars(logs).items()]
            self.logged = epoch

    def send(self) -> None:
        """Send the queued metrics (``log_batch``, in MLflow's batch sizes)."""
        self._batch(metrics=self.pending)
        self.pending, self.sent_at = [], time.monotonic()

    def _batch(self, metrics: Sequence[Any] = (), params: Sequence[Any] = (), tags: Sequence[Any] = ()) -> None:
        """``log_batch`` calls of at most MLflow's batch sizes."""
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH
        for i in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + MAX_METRICS_PER_BATCH])
        for i in range(0, max(len(params), len(tags)), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[i:i + MAX_PARAMS_TAGS_PER_BATCH],
                                  tags=tags[i:i + MAX_PARAMS_TAGS_PER_BATCH])

    def _saved(self) -> dict[str, str] | None:
        """``mlflow.json`` (None before the MLflow run is made), checked."""
        path = self.run_dir / MLFLOW_FILE
        if not path.exists():
            return None
        try:
            saved = json.loads(path.read_text())
            if not (isinstance(saved, dict) and all(isinstance(saved.get(k), str) and saved[k]
                                                    for k in ("tracking_uri", "run_id"))):
                raise ValueError("it must hold a tracking_uri and a run_id")
        except (ValueError, OSError) as e:
            raise CheckpointError(f"file '{path}' is corrupted ({reason(e)})") from None
        return saved


def _now() -> int:
    return int(time.time() * 1000)      # MLflow's timestamps: milliseconds


def _experiment(client: Any, name: str) -> str:
    """The id of the MLflow experiment ``name``, made if new (by this or, racing, another run)."""
    from mlflow.exceptions import MlflowException
    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name)
        except MlflowException:     # made meanwhile by another member or worker
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage != "active":
        raise invalid("log.mlflow_experiment", "an experiment that is not deleted in the tracking store "
                      "(restore it: mlflow experiments restore, or choose another name)", name)
    return found.experiment_id


def viewers(cfg: Config, run_dir: Path) -> list[Viewer]:
    """The viewer callbacks ``[log]`` asks for, for the run in ``run_dir``."""
    return ([TensorBoardLog(run_dir, cfg)] if cfg.log.tensorboard else []) + \
           ([MLflowLog(run_dir, cfg)] if cfg.log.mlflow else [])


def end(views: list[Viewer], results: dict[str, Any] | None = None, history: Sequence[dict[str, float]] = (),
        error: BaseException | None = None) -> None:
    """Tell ``views`` how the run ended. After an error, a viewer that fails too is reported on the
    "regulab" logger: the error that ended the run is the one to raise."""
    for view in views:
        if error is None:
            view.on_run_end(results, list(history), None)
            continue
        try:
            view.on_run_end(None, list(history), error)
        except Exception as e:      # noqa: BLE001 -- reported, never hides the run's own error
            logging.getLogger("regulab").warning("%s could not record how the run ended (%s)",
                                                 type(view).__name__, str(e).splitlines()[0] if str(e) else e)
