"""``[log] tensorboard = true``: TensorBoard event files under the run directory, read back with
TensorBoard's own ``EventAccumulator`` (``regulab.runs.viewers``)."""

from __future__ import annotations

import csv
import importlib.util

import pytest

import regulab as rl
from regulab.callbacks import Callback
from regulab.errors import ConfigError
from regulab.runs.population import train_population

from .conftest import assert_refused

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

TINY = ["data.dataset=moons", "data.n_samples=300", "model.hidden=[8]", "train.epochs=4",
        "train.early_stopping=false", "train.progress=false", "train.checkpoint_every=1",
        "log.tensorboard=true"]


def events(run_dir) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return acc


def csv_rows(run_dir) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def assert_scalars_are_the_csv(run_dir) -> None:
    """Every metrics.csv column but the epoch is a scalar, one event per epoch, step = epoch,
    the same value (TensorBoard keeps float32)."""
    acc, rows = events(run_dir), csv_rows(run_dir)
    for column in rows[0]:
        if column == "epoch" or rows[0][column] == "":
            continue
        got = acc.Scalars(column)
        assert [e.step for e in got] == [int(r["epoch"]) for r in rows], column
        assert [e.value for e in got] == pytest.approx([float(r[column]) for r in rows], rel=1e-6), column


def test_each_epochs_scalars_and_the_hyperparameters(tmp_path):
    run = rl.train(rl.load_config(None, TINY + ["optim.lr=0.02", "model.dropout=0.1"]),
                   out=tmp_path / "run", db=f"sqlite:///{tmp_path}/r.db", progress=False)
    assert_scalars_are_the_csv(run.run_dir)
    acc = events(run.run_dir)
    assert {"train_loss", "val_acc", "lr", "penalty"} <= set(acc.Tags()["scalars"])
    # the HParams view: the config as hyperparameters, the last validation scores as metrics
    start = plugin_data_pb2.HParamsPluginData.FromString(
        acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["optim.lr"].number_value == pytest.approx(0.02)
    assert start.hparams["model.dropout"].number_value == pytest.approx(0.1)
    assert start.hparams["data.dataset"].string_value == "moons"
    assert acc.Scalars("hparam/val_acc")[-1].value == pytest.approx(run.history[-1]["val_acc"], rel=1e-6)


def test_a_resumed_run_shows_each_epoch_once(tmp_path):
    """Killed after epoch 2 (checkpointed), resumed: the events after the checkpoint are purged
    and written again, so each epoch has one value -- the uninterrupted run's."""
    class Stop(Callback):
        def on_epoch_end(self, trainer, logs):
            if trainer.epoch == 3:
                raise KeyboardInterrupt

    cfg = rl.load_config(None, TINY)
    with pytest.raises(KeyboardInterrupt):
        rl.train(cfg, out=tmp_path / "killed", db=f"sqlite:///{tmp_path}/r.db", progress=False,
                 callbacks=[Stop()])
    resumed = rl.resume(tmp_path / "killed", progress=False)
    whole = rl.train(cfg, out=tmp_path / "whole", db=f"sqlite:///{tmp_path}/r.db", progress=False)
    assert_scalars_are_the_csv(resumed.run_dir)
    got = [e.value for e in events(resumed.run_dir).Scalars("val_loss")]
    assert got == [e.value for e in events(whole.run_dir).Scalars("val_loss")] and len(got) == 4


def test_population_members_write_their_own(tmp_path):
    cfgs = [rl.load_config(None, TINY + [f"train.seed={s}", f"name=m{s}"]) for s in (0, 1)]
    runs = train_population(cfgs, [tmp_path / "m0", tmp_path / "m1"], db=f"sqlite:///{tmp_path}/r.db")
    for run in runs:
        assert_scalars_are_the_csv(run.run_dir)
    a, b = (events(r.run_dir).Scalars("train_loss")[0].value for r in runs)
    assert a != b       # two members, two seeds


def test_without_the_tensorboard_package_the_key_is_refused(workdir, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard"
                        else real(name, *a))
    with pytest.raises(ConfigError, match="log.tensorboard.*regulab\\[tensorboard\\]"):
        rl.train(rl.load_config(None, TINY), out=workdir / "run", progress=False)
    assert not (workdir / "run").exists()
    from regulab.cli import main

    from .conftest import write
    cfg = write(workdir / "c.toml", "[log]\ntensorboard = true\n[train]\nepochs = 1\n")
    code = main(["train", str(cfg), "--out", "out", "--quiet"])
    assert_refused(capsys, code, ["log.tensorboard", "tensorboard package"], workdir)
