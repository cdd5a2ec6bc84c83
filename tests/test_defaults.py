"""The defaults (issue 14, "Good defaults"): early stopping watches the task's score.

``train.monitor = "auto"`` (the default) is validation accuracy for a classification run (a
multi-task run's main head) and validation R^2 for a regression run; an explicit name is kept.
The resolved name is what the run's early stopper watches and what ``results.json`` records
(``monitor``; null without early stopping). The figures the defaults reach on published
baselines are in BENCHMARKS.md ("Defaults against published baselines", ``bench/defaults.py``).
"""

from __future__ import annotations

import json

import pytest

import regulab as rl
from regulab.callbacks import EarlyStopping, monitor_mode, task_monitor
from regulab.cli import main
from regulab.config.sections import TrainConfig
from regulab.engine.population.eligibility import population_key
from regulab.errors import ConfigError
from regulab.runs.prepare import prepare

from .conftest import write

# small and fast; the defaults under test are train.monitor (and patience, epochs) left unset
DIGITS = {"data.dataset": "digits", "data.train_size": 200, "model.hidden": [16],
          "train.epochs": 2, "train.progress": False, "train.device": "cpu"}
SINE = {"data.dataset": "sine", "model.hidden": [16], "train.epochs": 2, "train.progress": False,
        "train.device": "cpu"}


def stopper(overrides: dict) -> EarlyStopping:
    p = prepare(rl.load_config(None, overrides))
    found = [cb for cb in p.trainer.callbacks if isinstance(cb, EarlyStopping)]
    assert len(found) == 1, p.trainer.callbacks
    return found[0]


def test_the_default_monitor_is_auto():
    assert TrainConfig().monitor == "auto"
    assert rl.load_config(None, {}).train.monitor == "auto"


@pytest.mark.parametrize("monitor, task, resolved", [
    ("auto", "classification", "val_acc"),
    ("auto", "regression", "val_r2"),
    ("val_loss", "classification", "val_loss"),
    ("val_loss", "regression", "val_loss"),
    ("val_acc", "classification", "val_acc"),
    ("val_mse", "regression", "val_mse"),
    ("val_r2", "regression", "val_r2"),
])
def test_task_monitor(monitor, task, resolved):
    assert task_monitor(monitor, task) == resolved


def test_auto_is_a_score_that_improves_upwards():
    # the task's score is maximized: a stopper on it must not keep the worst epoch
    assert monitor_mode(task_monitor("auto", "classification")) == "max"
    assert monitor_mode(task_monitor("auto", "regression")) == "max"


def test_classification_run_with_defaults_watches_validation_accuracy(workdir):
    s = stopper(DIGITS)
    assert (s.monitor, s.mode) == ("val_acc", "max")
    assert (s.patience, s.min_delta, s.restore_best) == (TrainConfig().patience, 0.0, True)


def test_regression_run_with_defaults_watches_validation_r2(workdir):
    s = stopper(SINE)
    assert (s.monitor, s.mode) == ("val_r2", "max")


def test_multitask_run_with_defaults_watches_the_main_heads_accuracy(workdir):
    s = stopper({**DIGITS, "multitask.tasks": ["parity"]})
    assert s.monitor == "val_acc"


@pytest.mark.parametrize("base, monitor, mode", [
    (DIGITS, "val_loss", "min"), (DIGITS, "val_acc", "max"),
    (SINE, "val_loss", "min"), (SINE, "val_mse", "min"), (SINE, "val_r2", "max"),
])
def test_an_explicit_monitor_is_kept(workdir, base, monitor, mode):
    s = stopper({**base, "train.monitor": monitor})
    assert (s.monitor, s.mode) == (monitor, mode)


def test_results_record_the_resolved_monitor(workdir):
    run = rl.train(rl.load_config(None, DIGITS), out=workdir / "cls", progress=False)
    assert run.results["monitor"] == "val_acc"
    assert json.loads((workdir / "cls" / "results.json").read_text())["monitor"] == "val_acc"
    # the epoch kept is the one with the best validation accuracy, first of equals
    accs = [h["val_acc"] for h in run.history]
    assert run.results["best_epoch"] == accs.index(max(accs)) + 1
    run = rl.train(rl.load_config(None, SINE), out=workdir / "reg", progress=False)
    assert run.results["monitor"] == "val_r2"
    run = rl.train(rl.load_config(None, {**DIGITS, "train.early_stopping": False}), out=workdir / "off",
                   progress=False)
    assert run.results["monitor"] is None


def test_population_members_resolve_auto_alike_and_watch_the_score(workdir):
    # train.monitor is SHARED: equal data gives equal tasks, so "auto" means the same for all
    cfgs = [rl.load_config(None, {**DIGITS, "train.seed": k, "model.dropout": 0.1 * k}) for k in range(2)]
    assert population_key(cfgs[0]) == population_key(cfgs[1]) is not None
    runs = rl.train_population(cfgs, [workdir / f"m{k}" for k in range(2)], progress=False)
    for run in runs:
        accs = [h["val_acc"] for h in run.history]
        assert run.results["monitor"] == "val_acc"
        assert run.results["best_epoch"] == accs.index(max(accs)) + 1


def test_cli_summary_names_the_monitor(workdir, capsys):
    cfg = write(workdir / "digits.toml", '[data]\ndataset = "digits"\ntrain_size = 200\n'
                '[model]\nhidden = [16]\n[train]\nepochs = 2\ndevice = "cpu"\n')
    assert main(["train", str(cfg), "--out", "out", "--quiet"]) == 0
    assert " monitor=val_acc " in capsys.readouterr().out


@pytest.mark.parametrize("base, monitor, logged", [
    (DIGITS, "val_r2", "train_loss, train_acc, val_loss, val_acc, lr, penalty"),
    (DIGITS, "val_f1", "train_loss, train_acc, val_loss, val_acc, lr, penalty"),
    (SINE, "val_acc", "train_loss, train_mse, train_r2, val_loss, val_mse, val_r2, lr, penalty"),
    ({**DIGITS, "regularization.l2": 1e-3}, "clean_train_acc",
     "train_loss, train_acc, val_loss, val_acc, lr, penalty, l2_penalty"),
])
def test_a_monitor_the_run_does_not_log_is_refused(workdir, base, monitor, logged):
    with pytest.raises(ConfigError, match=rf"^config key 'train.monitor' must be auto or a metric this "
                                          rf"(classification|regression) run logs \({logged}\); got '{monitor}'$"):
        prepare(rl.load_config(None, {**base, "train.monitor": monitor}))


@pytest.mark.parametrize("extra, monitor, mode", [
    ({"train.eval_train": True}, "clean_train_acc", "max"),
    ({}, "train_loss", "min"),
    ({"multitask.tasks": ["parity"]}, "val_parity_acc", "max"),
    ({"multitask.tasks": ["parity"]}, "val_total_loss", "min"),
])
def test_any_logged_metric_can_be_monitored(workdir, extra, monitor, mode):
    """Early stopping watches any metric the run logs, in the direction its name says; the
    run's best epoch is the one that metric liked best."""
    cfg = rl.load_config(None, {**DIGITS, **extra, "train.monitor": monitor, "train.epochs": 6,
                                "train.patience": 2})
    run = rl.train(cfg, out="run", progress=False)
    stopper = next(cb for cb in prepare(cfg).trainer.callbacks if isinstance(cb, EarlyStopping))
    assert (stopper.monitor, stopper.mode) == (monitor, mode)
    values = [h[monitor] for h in run.history]
    best = (max if mode == "max" else min)(values)
    assert run.results["best_epoch"] == values.index(best) + 1
