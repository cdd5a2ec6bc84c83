"""``[log] mlflow = "URI"``: each regulab run as an MLflow run, read back with MLflow's own
``MlflowClient`` (``regulab.runs.viewers``): its params, each epoch's metrics against
metrics.csv, the final results and status, a resume continuing the same MLflow run, population
members, a study's and a sweep's runs; and the one-line refusals."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import tomllib

import pytest

import regulab as rl
from regulab.callbacks import Callback
from regulab.config.sections import SECTIONS
from regulab.errors import ConfigError
from regulab.runs.population import train_population
from regulab.runs.viewers import check

from .conftest import assert_refused, write

pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

TINY = ["data.dataset=moons", "data.n_samples=300", "model.hidden=[8]", "train.epochs=4",
        "train.early_stopping=false", "train.progress=false", "train.checkpoint_every=1"]


@pytest.fixture(scope="module")
def tracking(tmp_path_factory) -> str:
    """One MLflow database for the module (making its tables takes seconds); each test looks
    its runs up by id or by its own experiment."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


def tiny(tracking: str, *more: str) -> rl.Config:
    return rl.load_config(None, [*TINY, f"log.mlflow={tracking}", *more])


def mlflow_run(tracking: str, run_dir):
    """The MLflow run ``run_dir/mlflow.json`` names, read back."""
    saved = json.loads((run_dir / "mlflow.json").read_text())
    return MlflowClient(tracking).get_run(saved["run_id"])


def history(tracking: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in MlflowClient(tracking).get_metric_history(run_id, key)]


def csv_columns(run_dir) -> dict[str, list[tuple[int, float]]]:
    """metrics.csv as MLflow should hold it: each column but the epoch, as (epoch, value)."""
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {c: [(int(r["epoch"]), float(r[c])) for r in rows] for c in rows[0] if c != "epoch" and rows[0][c]}


def assert_metrics_are_the_csv(tracking: str, run_dir, skip: tuple[str, ...] = ()) -> None:
    run = mlflow_run(tracking, run_dir)
    columns = csv_columns(run_dir)
    assert {"train_loss", "val_acc", "lr", "penalty", "seconds"} <= set(columns)
    for column, expected in columns.items():
        got = history(tracking, run.info.run_id, column)
        assert [s for s, _ in got] == [s for s, _ in expected], column    # each epoch once, in order
        if column not in skip:
            assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-12), column


def test_params_metrics_results_and_status(workdir, tracking):
    run = rl.train(tiny(tracking, "optim.lr=0.02", "model.dropout=0.1", "name=mlf"), out=workdir / "run",
                   progress=False)
    got = mlflow_run(tracking, run.run_dir)
    assert got.info.status == "FINISHED" and got.info.run_name == "mlf"
    assert MlflowClient(tracking).get_experiment(got.info.experiment_id).name == "regulab"
    assert got.data.tags["regulab.run_dir"] == str(run.run_dir.resolve())
    assert got.data.tags["regulab.seed"] == "0"
    # params: every key of config.toml (flattened here by hand), its value as JSON, a string as is
    params = got.data.params
    with open(run.run_dir / "config.toml", "rb") as f:
        written = tomllib.load(f)
    flat = {f"{s}.{k}": v for s, table in written.items() if isinstance(table, dict) for k, v in table.items()}
    flat["name"] = written["name"]
    for key, value in flat.items():
        if key != "log.mlflow":
            assert params[key] == (value if isinstance(value, str) else json.dumps(value)), key
    assert "log.mlflow" not in params and params["log.mlflow_experiment"] == ""
    assert (params["optim.lr"], params["model.dropout"], params["model.hidden"]) == ("0.02", "0.1", "[8]")
    declared = {f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)} | {"name"}
    assert set(params) == declared - {"log.mlflow"}     # None-valued keys too (null), not in the TOML
    assert_metrics_are_the_csv(tracking, run.run_dir)
    # the end: results.json's numbers as final/<key>, its words as tags
    results = json.loads((run.run_dir / "results.json").read_text())
    final = got.data.metrics
    for key in ("test_acc", "test_loss", "val_acc", "best_epoch", "epochs_run"):
        assert final[f"final/{key}"] == pytest.approx(results[key]), key
    assert history(tracking, got.info.run_id, "final/test_acc") == [(4, pytest.approx(results["test_acc"]))]
    assert got.data.tags["regulab.diagnosis"] == results["diagnosis"]
    assert got.data.tags["regulab.stopped_early"] == "false"


def test_opening_the_tracking_store_is_not_fit_time(workdir, tracking, monkeypatch):
    """MLflow's import and a new database's tables take seconds: the MLflow run is opened
    before the run's clock starts, so fit_seconds is the fit's alone."""
    import time

    from regulab.runs.viewers import MLflowLog
    real = MLflowLog.open

    def slow(self, history):
        time.sleep(2.0)
        real(self, history)
    monkeypatch.setattr(MLflowLog, "open", slow)
    run = rl.train(tiny(tracking, "train.epochs=2"), out=workdir / "run", progress=False)
    assert mlflow_run(tracking, run.run_dir).info.status == "FINISHED"
    assert run.results["fit_seconds"] < 2.0


def test_a_failed_run_is_marked_failed_with_its_error(workdir, tracking):
    class Boom(Callback):
        def on_epoch_end(self, trainer, logs):
            if trainer.epoch == 2:
                raise RuntimeError("boom at epoch 2")

    with pytest.raises(RuntimeError):
        rl.train(tiny(tracking), out=workdir / "run", progress=False, callbacks=[Boom()])
    got = mlflow_run(tracking, workdir / "run")
    assert got.info.status == "FAILED" and got.data.tags["regulab.error"] == "RuntimeError: boom at epoch 2"
    assert history(tracking, got.info.run_id, "train_loss") == csv_columns(workdir / "run")["train_loss"]


def test_a_resumed_run_continues_its_mlflow_run_each_epoch_once(workdir, tracking):
    """Stopped by Ctrl-C in epoch 4 with a checkpoint after epoch 2 (every 2 epochs) and MLflow
    holding epochs 1-3: the MLflow run is KILLED, then the resume reopens it (same id, one MLflow
    run for the directory), trains epochs 3-4 again and logs only epoch 4 -- each epoch once,
    the uninterrupted run's values."""
    class Stop(Callback):
        def on_epoch_end(self, trainer, logs):
            if trainer.epoch == 4:
                raise KeyboardInterrupt

    cfg = tiny(tracking, "train.checkpoint_every=2", "log.mlflow_experiment=resume")
    with pytest.raises(KeyboardInterrupt):
        rl.train(cfg, out=workdir / "killed", progress=False, callbacks=[Stop()])
    killed = mlflow_run(tracking, workdir / "killed")
    assert killed.info.status == "KILLED"
    assert [s for s, _ in history(tracking, killed.info.run_id, "val_loss")] == [1, 2, 3]
    resumed = rl.resume(workdir / "killed", progress=False)
    whole = rl.train(cfg, out=workdir / "whole", progress=False)
    again = mlflow_run(tracking, resumed.run_dir)
    assert again.info.run_id == killed.info.run_id and again.info.status == "FINISHED"
    # epoch 3's time is the killed run's in MLflow and the resumed run's in metrics.csv
    assert_metrics_are_the_csv(tracking, resumed.run_dir, skip=("seconds",))
    assert history(tracking, again.info.run_id, "val_loss") == history(
        tracking, mlflow_run(tracking, whole.run_dir).info.run_id, "val_loss")
    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("resume").experiment_id
    dirs = [r.data.tags["regulab.run_dir"] for r in client.search_runs([experiment])]
    assert sorted(dirs) == sorted(str((workdir / d).resolve()) for d in ("killed", "whole"))


def test_epochs_a_kill_kept_from_mlflow_come_from_the_checkpoint(workdir, tracking, monkeypatch):
    """A kill -9 loses the epochs still queued (sent every ``FLUSH_SECONDS``): here none was
    sent before the stop in epoch 4 (checkpoint after epoch 3). The resume sends its
    checkpoint's history first, then epoch 4: every epoch once, metrics.csv's values."""
    from regulab.runs.viewers import MLflowLog

    class Stop(Callback):
        def on_epoch_end(self, trainer, logs):
            if trainer.epoch == 4:
                raise KeyboardInterrupt

    with monkeypatch.context() as lost:
        lost.setattr(MLflowLog, "send", lambda self: None)
        with pytest.raises(KeyboardInterrupt):
            rl.train(tiny(tracking), out=workdir / "run", progress=False, callbacks=[Stop()])
    run_id = mlflow_run(tracking, workdir / "run").info.run_id
    assert history(tracking, run_id, "val_loss") == []
    resumed = rl.resume(workdir / "run", progress=False)
    assert mlflow_run(tracking, resumed.run_dir).info.run_id == run_id
    assert_metrics_are_the_csv(tracking, resumed.run_dir)


def test_a_run_stopped_after_its_results_is_completed_by_resume(workdir, tracking, monkeypatch):
    """Ctrl-C between results.json and the store's row (``runs.rundir``'s last moment): the
    resume completes the row and the MLflow run -- its final results, FINISHED -- training
    nothing, so every epoch is still there once."""
    from regulab.runs.store import RunStore
    real = RunStore.finish

    def interrupted(self, *args, **kwargs):
        monkeypatch.setattr(RunStore, "finish", real)
        raise KeyboardInterrupt
    monkeypatch.setattr(RunStore, "finish", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rl.train(tiny(tracking), out=workdir / "run", progress=False)
    assert mlflow_run(tracking, workdir / "run").info.status == "KILLED"
    run = rl.resume(workdir / "run", progress=False)
    got = mlflow_run(tracking, workdir / "run")
    assert got.info.status == "FINISHED" and got.data.metrics["final/test_acc"] == run.results["test_acc"]
    assert_metrics_are_the_csv(tracking, run.run_dir)


def test_population_members_are_runs_of_their_own(workdir, tracking):
    cfgs = [tiny(tracking, f"train.seed={s}", f"name=m{s}", "log.mlflow_experiment=pop") for s in (0, 1)]
    runs = train_population(cfgs, [workdir / "m0", workdir / "m1"])
    got = [mlflow_run(tracking, r.run_dir) for r in runs]
    assert [g.info.run_name for g in got] == ["m0", "m1"] and {g.info.status for g in got} == {"FINISHED"}
    assert [g.data.tags["regulab.seed"] for g in got] == ["0", "1"]
    assert got[0].info.run_id != got[1].info.run_id
    for run in runs:
        assert_metrics_are_the_csv(tracking, run.run_dir)
    a, b = (history(tracking, g.info.run_id, "train_loss")[0] for g in got)
    assert a != b       # two members, two seeds


def one_per_run(tracking: str, experiment: str, run_dirs) -> None:
    """The experiment holds one FINISHED MLflow run per regulab run directory, no other."""
    client = MlflowClient(tracking)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, experiment
    runs = client.search_runs([found.experiment_id])
    assert sorted(r.data.tags["regulab.run_dir"] for r in runs) == sorted(str(d.resolve()) for d in run_dirs)
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_a_study_logs_each_run_in_an_experiment_named_after_it(workdir, tracking):
    cfg = rl.load_config(None, {"data.dataset": "moons", "data.n_samples": 200, "model.hidden": [8],
                                "train.epochs": 2, "train.progress": False, "log.mlflow": tracking})
    res = rl.study(cfg, variants={"l2": {"regularization.l2": 1e-3}}, seeds=2, name="mlf-study", out="s")
    dirs = {workdir / "s" / r["run_dir"] for v in res.results["variants"] for r in v["runs"]}
    assert len(dirs) == 4
    one_per_run(tracking, "mlf-study", dirs)
    assert rl.load_config(next(iter(dirs)) / "config.toml").log.mlflow_experiment == "mlf-study"


def test_a_sweep_logs_each_trial_in_an_experiment_named_after_it(workdir, tracking):
    path = write(workdir / "sweep.toml", f'[sweep]\nname = "mlf-sweep"\ntrials = 2\nseed = 0\n'
                 f'[base]\ndata = {{ dataset = "moons", n_samples = 200 }}\nmodel = {{ hidden = [8] }}\n'
                 f'train = {{ epochs = 2, early_stopping = false, progress = false }}\n'
                 f'log = {{ mlflow = "{tracking}" }}\n'
                 f'[space]\n"optim.lr" = {{ low = 1e-3, high = 1e-1, log = true }}\n')
    result = rl.sweep(rl.load_sweep(path), out="sw", progress=False)
    dirs = [workdir / "sw" / "trials" / d.name for d in (workdir / "sw" / "trials").iterdir() if d.is_dir()]
    assert len(dirs) == len(result.trials) == 2
    one_per_run(tracking, "mlf-sweep", dirs)


@pytest.mark.parametrize("uri", ["sqlite:///mlflow.db", "sqlite:////tmp/x/mlflow.db", "http://localhost:5000",
                                 "https://mlflow.example.org", "postgresql+psycopg://u:p@host/mlflow",
                                 "databricks", "databricks://profile", "file:///tmp/mlruns", "mlruns"])
def test_tracking_uris_in_the_forms_mlflow_opens_are_taken(uri):
    assert rl.load_config(None, [f"log.mlflow={uri}"]).log.mlflow == uri


@pytest.mark.parametrize("uri", ["sqlite://", "sqlite:mlflow.db", "sqlite:///:memory:", "http://", "http://h:99999",
                                 "ftp://host/x", "runs:1", "file://host/dir", "mysql://", "databricks:"])
def test_a_bad_tracking_uri_is_refused_when_the_config_is_built(workdir, capsys, uri):
    with pytest.raises(ConfigError, match="config key 'log.mlflow' must be .*sqlite:///FILE.db.*; got "):
        rl.load_config(None, [f"log.mlflow={uri}"])
    from regulab.cli import main
    code = main(["train", str(write(workdir / "c.toml", f'[log]\nmlflow = "{uri}"\n')), "--out", "out", "--quiet"])
    assert_refused(capsys, code, ["log.mlflow", "tracking URI"], workdir)


def test_a_password_in_a_refused_uri_is_not_shown():
    with pytest.raises(ConfigError) as e:
        rl.load_config(None, ["log.mlflow=ftp://me:s3cret@host/x"])
    assert "s3cret" not in str(e.value) and "me:***@host" in str(e.value)


def test_without_the_mlflow_package_the_key_is_refused(workdir, capsys, monkeypatch, tracking):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow"
                        else real(name, *a))
    with pytest.raises(ConfigError, match="log.mlflow.*regulab\\[mlflow\\]"):
        rl.train(tiny(tracking), out=workdir / "run", progress=False)
    assert not (workdir / "run").exists()
    from regulab.cli import main
    cfg = write(workdir / "c.toml", '[log]\nmlflow = "sqlite:///mlflow.db"\n[train]\nepochs = 1\n')
    code = main(["train", str(cfg), "--out", "out", "--quiet"])
    assert_refused(capsys, code, ["log.mlflow", "mlflow package", "pip install 'regulab[mlflow]'"], workdir)
    assert not (workdir / "mlflow.db").exists()


def test_what_the_machine_must_allow_is_checked_before_anything_is_written(workdir, capsys, monkeypatch):
    from regulab.cli import main
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    cases = [("mlruns", ["log.mlflow", "MLFLOW_ALLOW_FILE_STORE=true"]),      # MLflow 3's file store
             ("sqlite:///no/m.db", ["log.mlflow", "database's folder", "not a directory"]),
             (f"sqlite:///{workdir}/runs/regulab.db", ["log.mlflow", "run store", "runs"])]    # the store's own
    (workdir / "no").write_text("a file, not a folder")
    for uri, words in cases:
        cfg = write(workdir / "c.toml", f'[log]\nmlflow = "{uri}"\n[train]\nepochs = 1\n')
        assert_refused(capsys, main(["train", str(cfg), "--out", "out", "--quiet"]), words, workdir)
    assert sorted(p.name for p in workdir.iterdir()) == ["c.toml", "no"]
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    check(rl.load_config(None, ["log.mlflow=mlruns"]))      # opted in: taken
    with pytest.raises(ConfigError, match="multitask.tasks.*MLflow"):
        check(rl.load_config(None, ["log.mlflow=sqlite:///m.db", "multitask.tasks=['is big?']",
                                    "multitask.groups={'is big?' = [0, 1, 1]}"]))
