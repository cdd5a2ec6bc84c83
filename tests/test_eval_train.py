"""``train.eval_train``: a clean per-epoch train score, measured as validation is (eval mode).

The per-epoch ``train_*`` scores are averaged over the epoch's batches with dropout on;
``clean_train_*`` scores the train split after the epoch in eval mode. Checked against an
independent scoring of the saved model (``load_model`` on the raw train split, loss and
accuracy recomputed with ``F.cross_entropy`` and ``argmax``), and the population's members
against their separate runs.
"""

from __future__ import annotations

import csv
import logging

import pytest
import torch
import torch.nn.functional as F

import regulab as rl
from regulab.data.loader import TensorLoader
from regulab.engine.population.eligibility import population_key
from regulab.engine.trainer import Trainer, loss_function
from regulab.runs.population import train_population
from regulab.runs.predict import load_model
from regulab.runs.prepare import load_data, split_arrays

from .test_population import assert_same_run, config

DROPOUT = {"model__dropout": 0.5, "train__eval_train": True}


def clean_scores(run_dir, cfg) -> tuple[float, float]:
    """(loss, accuracy) of the run's saved model on its raw train split, in eval mode."""
    X, y = split_arrays(cfg, load_data(cfg))["train"]
    pipeline = load_model(run_dir)
    with torch.no_grad():
        logits = pipeline(torch.as_tensor(X, dtype=torch.float32))
    y = torch.as_tensor(y).long()
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).double().mean())


@pytest.mark.parametrize("early", [False, True])
def test_clean_train_score_is_the_eval_mode_score_of_the_model(tmp_path, early):
    """Each epoch logs clean_train_*; the kept epoch's (the last, or the restored best) equals
    the saved model scored independently, and differs from the dropout-on train_acc."""
    over = {**DROPOUT, "train__epochs": 4}
    if early:       # a fast learning rate and patience 1: stops at 7, restores epoch 6
        over.update(train__epochs=10, train__early_stopping=True, train__patience=1,
                    train__monitor="val_loss", optim__lr=0.05)
    cfg = config(**over)
    run = rl.train(cfg, out=tmp_path / "run", progress=False)
    assert (run.results["best_epoch"] < run.results["epochs_run"]) == early
    assert all({"clean_train_loss", "clean_train_acc"} <= set(h) for h in run.history)
    kept = run.history[run.results["best_epoch"] - 1]
    loss, acc = clean_scores(run.run_dir, cfg)
    assert kept["clean_train_acc"] == pytest.approx(acc, abs=1e-6)
    assert kept["clean_train_loss"] == pytest.approx(loss, rel=1e-5)
    assert run.results["train_acc"] == pytest.approx(acc, abs=1e-6)    # the final evaluation agrees
    assert any(h["clean_train_acc"] != h["train_acc"] for h in run.history)
    assert kept["clean_train_acc"] > kept["train_acc"]      # dropout 0.5 hurts the running score
    with open(run.run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["clean_train_acc"]) for r in rows] == \
        pytest.approx([h["clean_train_acc"] for h in run.history])


def test_eval_train_changes_no_training_number(tmp_path):
    """Scoring the train split draws nothing: the history is the same with it or without."""
    on = rl.train(config(**DROPOUT, train__epochs=3), out=tmp_path / "on", progress=False)
    off = rl.train(config(model__dropout=0.5, train__epochs=3), out=tmp_path / "off", progress=False)
    for a, b in zip(on.history, off.history, strict=True):
        assert set(a) - {"clean_train_loss", "clean_train_acc"} == set(b)
        assert all(a[k] == b[k] for k in b if k != "seconds")
    assert "clean_train_acc" not in (off.run_dir / "metrics.csv").read_text().splitlines()[0]
    assert "clean_train_acc" in (on.run_dir / "metrics.csv").read_text().splitlines()[0]


def test_population_members_with_and_without_eval_train_equal_their_runs(tmp_path, caplog):
    """eval_train does not change training (IGNORED): runs that differ in it stack together,
    and each member gives its separate run's numbers, clean_train_* included."""
    db = f"sqlite:///{tmp_path}/runs.db"
    cfgs = [config(**DROPOUT), config(model__dropout=0.2, train__seed=1),
            config(**DROPOUT, regularization__l2=1e-3, train__seed=2)]
    assert len({population_key(c) for c in cfgs}) == 1
    with caplog.at_level(logging.INFO, logger="regulab"):
        members = train_population(cfgs, [tmp_path / f"pop-{k}" for k in range(3)], db=db)
    assert "trains alone" not in caplog.text
    for k, (c, member) in enumerate(zip(cfgs, members)):
        assert ("clean_train_acc" in member.history[-1]) == c.train.eval_train
        assert_same_run(member, rl.train(c, out=tmp_path / f"alone-{k}", db=db, progress=False))


def test_regression_logs_the_val_metric_names():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 3, generator=g)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5]])
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Dropout(0.5),
                                torch.nn.Linear(8, 1))
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.05), loss_function("mse"),
                      task="regression", eval_train=True)
    history = trainer.fit(TensorLoader(X, y, 8, generator=g), (X[:10], y[:10]), epochs=2)
    names = {k.removeprefix("clean_train_") for k in history[-1] if k.startswith("clean_train_")}
    assert names == {k.removeprefix("val_") for k in history[-1] if k.startswith("val_")} \
        == {"loss", "mse", "r2"}
    model.eval()
    with torch.no_grad():
        out = model(X)
    mse = float(((out - y) ** 2).mean())
    r2 = 1 - float(((out - y) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    assert history[-1]["clean_train_mse"] == pytest.approx(mse, rel=1e-5)
    assert history[-1]["clean_train_r2"] == pytest.approx(r2, rel=1e-5)
