"""``regulab.sklearn``: the estimators pass scikit-learn's own checks and work in its tools."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits, make_regression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from regulab.config.sections import SECTIONS
from regulab.errors import ConfigError
from regulab.sklearn import DEFAULTS, PARAMS, RegulabClassifier, RegulabRegressor

# Small and fast. The checks' data sets have 10-20 examples of up to 3 classes: too few for a
# stratified 10% validation split (one example per class), so the checks split unstratified.
SMALL = dict(train__epochs=10, train__patience=3, model__hidden=(32,), optim__lr=1e-2, train__device="cpu")
CHECKED = dict(SMALL, data__stratify=False)


@parametrize_with_checks([RegulabClassifier(**CHECKED), RegulabRegressor(**CHECKED)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def digits(n: int = 600):
    X, y = load_digits(return_X_y=True)
    return X[:n], y[:n]


def test_every_parameter_defaults_to_its_config_key():
    for name, default in PARAMS.items():
        if name == "model" or name in DEFAULTS:
            continue
        section, key = name.split("__")
        value = getattr(SECTIONS[section](), key)
        assert default == (tuple(value) if isinstance(value, list) else None if value == {} else value), name
    assert PARAMS["data__split"] == (0.9, 0.1, 0.0)
    assert {"model__dropout", "regularization__l2", "optim__lr", "train__epochs", "train__seed",
            "eval__dropout_inference"} <= set(PARAMS)
    assert not {n for n in PARAMS if n.split("__")[0] in ("image", "audio", "text", "video",
                                                          "multitask", "transfer")}


def test_grid_search_over_l2_and_dropout_in_a_pipeline():
    X, y = digits()
    pipe = Pipeline([("scale", StandardScaler()), ("clf", RegulabClassifier(**SMALL))])
    grid = GridSearchCV(pipe, {"clf__regularization__l2": [0.0, 1e-3], "clf__model__dropout": [0.0, 0.3]},
                        cv=2)
    grid.fit(X, y)
    assert grid.best_score_ > 0.7       # chance is 0.1
    assert set(grid.best_params_) == {"clf__regularization__l2", "clf__model__dropout"}
    assert len(grid.cv_results_["mean_test_score"]) == 4
    fitted = grid.best_estimator_.named_steps["clf"]
    assert fitted.regularization__l2 == grid.best_params_["clf__regularization__l2"]
    assert (grid.predict(X[:50]) == y[:50]).mean() > 0.7


def test_cross_val_score_of_a_regressor_and_several_targets():
    X, y = make_regression(n_samples=300, n_features=8, noise=1.0, random_state=0)
    y = y / y.std()
    scores = cross_val_score(RegulabRegressor(**SMALL), X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.5     # R^2
    Y = np.stack([y, -y], axis=1)
    reg = RegulabRegressor(**SMALL).fit(X, Y)
    assert reg.predict(X).shape == (300, 2) and reg.n_outputs_ == 2
    assert RegulabRegressor(**SMALL).fit(X, y).predict(X).shape == (300,)


def test_labels_of_any_kind_come_back_as_given():
    X, y = digits(300)
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = RegulabClassifier(**SMALL).fit(X, names[y])
    assert list(clf.classes_) == sorted(names)
    assert set(clf.predict(X)) <= set(names) and clf.score(X, names[y]) > 0.7
    proba = clf.predict_proba(X)
    assert proba.shape == (300, 10) and np.allclose(proba.sum(axis=1), 1.0)
    odd = RegulabClassifier(**SMALL).fit(X, y * 10 + 5)         # ints, not 0..C-1
    assert list(odd.classes_) == list(range(5, 100, 10)) and odd.n_features_in_ == 64


def test_clone_and_get_set_params_round_trip():
    clf = RegulabClassifier(model__dropout=0.3, model__hidden=(16, 8))
    assert clf.get_params()["model__dropout"] == 0.3
    copy = clone(clf)
    assert copy.get_params() == clf.get_params() and copy is not clf
    assert clf.set_params(regularization__l2=1e-3, train__seed=4) is clf
    assert clf.get_params()["regularization__l2"] == 1e-3 and clf.train__seed == 4
    pipe = Pipeline([("clf", clf)]).set_params(clf__model__dropout=0.1)
    assert pipe.named_steps["clf"].model__dropout == 0.1
    with pytest.raises(ConfigError, match="parameter 'model__dropuot'; did you mean 'model__dropout'"):
        clf.set_params(model__dropuot=0.5)
    with pytest.raises(TypeError, match="'model__hiden'; did you mean 'model__hidden'"):
        RegulabClassifier(model__hiden=(8,))


def test_the_users_network_and_its_arguments_reach_the_config():
    class Net(torch.nn.Module):
        def __init__(self, width: int = 4):
            super().__init__()
            self.layer = torch.nn.LazyLinear(width)

    clf = RegulabClassifier(model=Net, model__args={"width": 8}, regularization__l2=np.float64(1e-3))
    cfg = clf.to_config()
    assert cfg.model.factory is Net and cfg.model.args == {"width": 8} and cfg.regularization.l2 == 1e-3
    assert RegulabClassifier(model__hidden=np.array([16, 8])).to_config().model.hidden == [16, 8]  # NumPy as Python's
    with pytest.raises(ConfigError, match="'model.hidden' cannot apply to a user's network"):
        RegulabClassifier(model=Net, model__hidden=[16, 8]).to_config()
    assert clone(clf).model is Net and RegulabClassifier().to_config().model.args == {}
    with pytest.raises(ConfigError, match="config key 'model.factory' must be"):
        RegulabClassifier(model=3).to_config()


def test_a_fit_trains_the_users_network():
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)

    def net(width: int = 8) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                                   torch.nn.Linear(width, 10))
    clf = RegulabClassifier(model=net, model__args={"width": 32}, model__dropout=0.2, train__epochs=5,
                            optim__lr=0.01).fit(X[:600] / 16, y[:600])
    first = clf.model_.net[0]
    assert isinstance(clf.model_.net, torch.nn.Sequential) and first.out_features == 32
    assert clf.model_.net[2].drop_prob == 0.2                     # its own dropout, made regulab's
    assert clf.score(X[600:900] / 16, y[600:900]) > 0.5


def test_a_bad_value_is_the_one_line_config_error_at_fit():
    X, y = digits(100)
    clf = RegulabClassifier(regularization__l2=-1.0)       # stored as given: checked by fit
    with pytest.raises(ConfigError) as e:
        clf.fit(X, y)
    assert str(e.value) == "config key 'regularization.l2' must be a number >= 0.0; got -1.0"
    with pytest.raises(ConfigError, match="'data.split' must sum to 1"):
        RegulabClassifier(data__split=(0.5, 0.1, 0.0)).fit(X, y)


def test_fits_are_seeded_and_write_nothing(workdir):
    X, y = digits(300)
    a = RegulabClassifier(**SMALL, model__dropout=0.2).fit(X, y).predict_proba(X)
    b = RegulabClassifier(**SMALL, model__dropout=0.2).fit(X, y).predict_proba(X)
    c = RegulabClassifier(**SMALL, model__dropout=0.2, train__seed=1).fit(X, y).predict_proba(X)
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert list(workdir.iterdir()) == []        # no run directory, no run store


def test_monte_carlo_dropout_and_a_binary_logit():
    X, y = digits(300)
    mc = RegulabClassifier(**SMALL, model__dropout=0.3, eval__dropout_inference="mc_mean",
                           eval__mc_samples=5).fit(X, y)
    p = mc.predict_proba(X)
    assert np.allclose(p.sum(axis=1), 1.0) and np.array_equal(p, mc.predict_proba(X))
    assert not np.allclose(p, RegulabClassifier(**SMALL, model__dropout=0.3).fit(X, y).predict_proba(X))
    binary = RegulabClassifier(**SMALL, train__loss="bce").fit(X, y % 2 == 0)
    assert binary.predict_proba(X).shape == (300, 2) and set(binary.predict(X)) <= {False, True}
    assert binary.model_.net.out.out_features == 1


def test_fitted_state_says_how_training_went():
    X, y = digits(300)
    clf = RegulabClassifier(**{**SMALL, "train__epochs": 3}).fit(X, y)
    assert [h["epoch"] for h in clf.history_] == [1, 2, 3] and "val_acc" in clf.history_[0]
    assert clf.config_.train.epochs == 3 and clf.config_.data.dataset == "sklearn"
    assert dataclasses.asdict(clf.config_.model)["hidden"] == [32]


def test_importing_regulab_does_not_import_the_estimators():
    code = ("import sys, regulab; assert 'regulab.sklearn' not in sys.modules; "
            "assert regulab.RegulabClassifier.__module__ == 'regulab.sklearn'")
    subprocess.run([sys.executable, "-c", code], check=True)
