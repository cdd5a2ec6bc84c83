"""K-fold cross-validation (data.folds / data.fold) leaks nothing of the held-out fold.

The held-out fold is the run's test split. The training split *and* the validation split that
early stopping watches come from the other K-1 folds, and the preprocessor is fitted on the
training split only. Checked on a data set whose first feature is the row's id: a hook on the
network records every example it sees while training and early stopping run.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from sklearn.model_selection import StratifiedKFold

import regulab as rl
from regulab.data.split import fold_indices
from regulab.errors import ConfigError
from regulab.runs.prepare import prepare

run_module = importlib.import_module("regulab.runs.run")

K = 4


@pytest.fixture
def id_data(workdir):
    """120 rows of 3 classes; feature 0 is the row id, the others carry the class."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    X = np.column_stack([np.arange(120), y[:, None] + rng.normal(0, 0.3, (120, 3))]).astype(np.float32)
    path = workdir / "ids.npz"
    np.savez(path, X=X, y=y)
    return path, X, y


def _cfg(path, fold, **extra):
    over = {"data.dataset": f"npz:{path}", "data.folds": K, "data.fold": fold,
            "data.split": [0.75, 0.25, 0.0], "model.hidden": [8], "train.epochs": 6,
            "train.patience": 2, "train.batch_size": 16, "train.progress": False, **extra}
    return rl.load_config(None, over)


def _held_out(y, fold):
    """The held-out fold, recomputed with scikit-learn directly."""
    splitter = StratifiedKFold(n_splits=K, shuffle=True, random_state=0)
    return set(list(splitter.split(np.zeros(len(y)), y))[fold][1].tolist())


def test_every_example_held_out_once_and_splits_partition_the_pool(id_data):
    _, X, y = id_data
    seen = []
    for fold in range(K):
        idx = fold_indices(y, [0.75, 0.25, 0.0], K, fold, stratify=True, seed=0)
        train, val, test = set(idx.train), set(idx.val), set(idx.test)
        assert test == _held_out(y, fold)
        assert not (train & val) and not (train & test) and not (val & test)
        assert train | val | test == set(range(len(y)))
        assert abs(len(val) / (len(train) + len(val)) - 0.25) < 0.03   # the inner split
        seen += sorted(test)
    assert sorted(seen) == list(range(len(y)))


def test_held_out_fold_never_reaches_training_or_early_stopping(id_data, monkeypatch):
    path, X, y = id_data
    fold = 1
    held = _held_out(y, fold)
    seen = {"fit": set(), "final": set()}
    phase = {"now": "fit"}

    def spy_prepare(cfg):
        p = prepare(cfg)
        p.pipeline.net.register_forward_pre_hook(
            lambda mod, args: seen[phase["now"]].update(args[0][:, 0].round().long().tolist()))
        return p

    real_finish = run_module.finish

    def spy_finish(*args, **kwargs):
        phase["now"] = "final"
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(run_module, "prepare", spy_prepare)
    monkeypatch.setattr(run_module, "finish", spy_finish)
    run = run_module.train(_cfg(path, fold, **{"train.early_stopping": True}), out="out")
    assert seen["fit"], "the hook saw nothing"
    assert not (seen["fit"] & held), sorted(seen["fit"] & held)     # no leak while training
    assert seen["fit"] == set(range(len(y))) - held                 # train + inner validation
    assert held <= seen["final"]                                    # evaluated once, at the end
    assert run.results["n_test"] == len(held)
    assert run.results["n_train"] + run.results["n_val"] + run.results["n_test"] == len(y)


def test_preprocessor_fitted_on_the_training_folds_only(id_data):
    path, X, y = id_data
    p = prepare(_cfg(path, 2, **{"data.preprocess": "standardize"}))
    train_X = p.splits["train"][0]
    ids = set(np.round(train_X[:, 0].numpy() * p.pipeline.preprocess.scale[0].item()
                       + p.pipeline.preprocess.shift[0].item()).astype(int).tolist())
    assert not ids & _held_out(y, 2)
    rows = X[sorted(ids)].astype(np.float64)
    np.testing.assert_allclose(p.pipeline.preprocess.shift.numpy(), rows.mean(0), rtol=1e-5)
    np.testing.assert_allclose(p.pipeline.preprocess.scale.numpy(), rows.std(0), rtol=1e-5)


def test_dataset_test_set_takes_no_part(workdir):
    p = prepare(rl.load_config(None, {"data.dataset": "mnist1d", "data.folds": 5, "data.fold": 0,
                                      "train.progress": False}))
    n = sum(len(p.splits[s][0]) for s in ("train", "val", "test"))
    assert n == 4000 and len(p.splits["test"][0]) == 800     # the 4,000-example pool, fold of 800


@pytest.mark.parametrize("over, words", [
    ({"data.folds": 5}, ["data.folds", "data.fold", "folds=5", "fold=None"]),
    ({"data.fold": 1}, ["data.folds", "fold=1"]),
    ({"data.folds": 3, "data.fold": 3}, ["0 <= fold < folds", "fold=3"]),
    ({"data.folds": 1, "data.fold": 0}, ["data.folds", ">= 2", "1"]),
])
def test_bad_fold_keys(over, words):
    with pytest.raises(ConfigError) as e:
        rl.load_config(None, over)
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    assert "\n" not in str(e.value)


def test_same_fold_same_run(id_data):
    path, _, _ = id_data
    a, b = prepare(_cfg(path, 3)), prepare(_cfg(path, 3))
    for s in ("train", "val", "test"):
        assert torch.equal(a.splits[s][0], b.splits[s][0])
