"""scikit-learn estimators over regulab: ``RegulabClassifier`` and ``RegulabRegressor``.

Every config key that makes sense for an array ``X`` is a constructor parameter named
``section__key`` -- ``model__hidden``, ``model__dropout``, ``regularization__l2``,
``optim__lr``, ``train__epochs``, ``data__split`` -- with the config's default (a list default
is written as a tuple, as scikit-learn wants immutable defaults), so ``GridSearchCV`` and
``Pipeline`` search regulab's regularizers like any other hyperparameter::

    from sklearn.model_selection import GridSearchCV
    from regulab.sklearn import RegulabClassifier
    grid = GridSearchCV(RegulabClassifier(train__epochs=30),
                        {"regularization__l2": [0.0, 1e-3], "model__dropout": [0.0, 0.3]})
    grid.fit(X, y).best_params_

``model`` is the user's network (``model.factory``: an ``nn.Module`` class or a function
returning one -- not a network object, as every fit starts from a fresh one; its keyword
arguments in ``model__args``); None: regulab's own ``model__kind``. ``to_config()`` is the
``Config`` the parameters make.

Left out, as they do not apply to arrays handed to ``fit``: the modality sections
(``[image]``, ``[audio]``, ``[text]``, ``[video]``), ``[multitask]`` and ``[transfer]`` (a
source run directory), ``data.dataset``/``target``/``n_samples``/``task`` (the data is ``X``,
``y``; the task is the estimator's), ``data.classes``/``folds``/``fold`` (subsets and
cross-validation are scikit-learn's job), ``train.checkpoint_every``/``progress``/``nproc`` and
``eval.test``/``noise_snr`` (nothing is written, no bar is shown, one process).

Splits: regulab holds out a validation split by default (the one early stopping watches, as
``MLPClassifier(early_stopping=True, validation_fraction=0.1)`` does), so the default
``data__split`` is ``(0.9, 0.1, 0.0)``: 90% trains, 10% validates, no test split (score on
your own held-out data). Early stopping is on, as in regulab, watching the estimator's score
(``train__monitor = "auto"``: validation accuracy, or R^2 for the regressor; ``train__patience``,
``train__restore_best``); ``history_`` holds each epoch's metrics.
``data__split=(1.0, 0.0, 0.0)`` with ``train__early_stopping=False`` fits on every row.

``fit`` validates the parameters like a config file (scikit-learn's convention: nothing is
checked in ``__init__``): a bad value is the one-line ``ConfigError``, e.g. ``config key
'regularization.l2' must be a number >= 0.0; got -1.0``. Training writes no run directory and
no run-store row (``regulab.runs.prepare.prepare``, then ``Trainer.fit``); predictions use the
fitted preprocessor and network in eval mode, by weight scaling or Monte-Carlo dropout
(``eval__dropout_inference``). ``train__seed`` and ``data__seed`` make a fit deterministic.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from regulab.config.core import Config, apply_overrides, config_from_dict
from regulab.config.sections import SECTIONS
from regulab.data.dataset import Dataset
from regulab.errors import DataError, did_you_mean, unknown
from regulab.regularize.mc_dropout import mc_predict
from regulab.runs.prepare import prepare

__all__ = ["RegulabClassifier", "RegulabRegressor", "PARAMS"]

INCLUDED = ("data", "model", "regularization", "optim", "train", "eval")    # array-input sections
EXCLUDED = {"data": ("dataset", "target", "n_samples", "task", "classes", "folds", "fold"),
            "model": ("factory",),          # the ``model`` parameter
            "train": ("checkpoint_every", "progress", "nproc"),
            "eval": ("test", "noise_snr")}
DEFAULTS = {"data__split": (0.9, 0.1, 0.0)}   # no test split: scikit-learn scores held-out data


def _immutable(v: Any) -> Any:
    """A config default as scikit-learn accepts it: lists as tuples, an empty table as None."""
    if isinstance(v, list):
        return tuple(v)
    return None if v == {} else v


def _params() -> dict[str, Any]:
    """``section__key`` -> default, for every key of the array-input sections, plus ``model``."""
    params: dict[str, Any] = {"model": None}
    for section in INCLUDED:
        defaults = SECTIONS[section]()
        for f in dataclasses.fields(defaults):
            if f.name not in EXCLUDED.get(section, ()):
                params[f"{section}__{f.name}"] = _immutable(getattr(defaults, f.name))
    return {**params, **DEFAULTS}


PARAMS = _params()


def _init(self, **params: Any) -> None:
    """Store every parameter as given; ``fit`` validates them (scikit-learn's convention)."""
    for name in params:
        if name not in PARAMS:
            raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument "
                            f"{name!r}{did_you_mean(name, PARAMS)}")
    for name, default in PARAMS.items():
        setattr(self, name, params.get(name, default))


# scikit-learn's get_params reads the signature of __init__ and refuses **kwargs: give it one
_init.__signature__ = inspect.Signature(   # type: ignore[attr-defined]
    [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    + [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=d) for name, d in PARAMS.items()])


def _plain(v: Any) -> Any:
    """NumPy scalars (a grid from ``np.logspace``) as Python numbers, tuples as lists."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    return v


class _RegulabEstimator(BaseEstimator):
    """What both estimators share: the parameters, the config they make, fit and outputs."""

    __init__ = _init
    _task = ""

    def set_params(self, **params: Any):
        """Set parameters by name. ``model__dropout`` is this estimator's own parameter, not
        ``dropout`` of a sub-estimator ``model`` as scikit-learn's ``__`` would read it."""
        for name, value in params.items():
            if name not in PARAMS:
                raise unknown(name, PARAMS, f"parameters of {type(self).__name__}", kind="parameter")
            setattr(self, name, value)
        return self

    def to_config(self) -> Config:
        """The config these parameters make (validated: a bad value is a ``ConfigError``)."""
        overrides = {name.replace("__", "."): _plain(getattr(self, name))
                     for name in PARAMS if name != "model"}
        overrides["model.args"] = overrides["model.args"] or {}
        overrides["train.progress"] = False
        cfg = config_from_dict(apply_overrides({}, overrides))
        return cfg.with_code(model=self.model)

    def _fit(self, X: np.ndarray, y: np.ndarray, classes: list[str] | None):
        cfg = self.to_config()
        ds = Dataset(name="sklearn", X=X, y=y, task=self._task, classes=classes)
        p = prepare(cfg.with_code(data=ds))
        self.history_ = p.trainer.fit(p.loader, p.splits.get("val"), epochs=cfg.train.epochs)
        self.model_ = p.pipeline.eval()
        self.config_ = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, dataset="sklearn"))
        return self

    @torch.no_grad()
    def _outputs(self, X: Any) -> torch.Tensor:
        """The network's outputs on ``X`` (logits; log-probabilities under Monte-Carlo dropout)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, reset=False)
        e, pipe = self.config_.eval, self.model_
        device = next(pipe.parameters()).device
        X = pipe.preprocess(torch.as_tensor(X, device=device))
        batches = [X[i:i + e.batch_size] for i in range(0, len(X), e.batch_size)]
        if e.dropout_inference == "scale":
            return torch.cat([pipe.net(b) for b in batches]).cpu()
        aggregate = "mean" if e.dropout_inference == "mc_mean" else "geometric"
        noise = torch.Generator(device=device).manual_seed(self.config_.train.seed)
        probs = torch.cat([mc_predict(pipe.net, b, e.mc_samples, aggregate=aggregate, generator=noise)
                           for b in batches])
        return probs.clamp_min(1e-12).log().cpu()


class RegulabClassifier(ClassifierMixin, _RegulabEstimator):
    """A regulab network as a scikit-learn classifier; see the module docstring.

    Labels may be anything ``np.unique`` sorts (ints, strings): ``classes_`` holds them and
    the network sees ``0..C-1``. ``score`` is accuracy. Fitted: ``classes_``, ``n_features_in_``,
    ``model_`` (the preprocessor and network, an ``nn.Module``), ``config_``, ``history_``.
    """

    _task = "classification"

    def fit(self, X: Any, y: Any) -> RegulabClassifier:
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        self.classes_, labels = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise DataError(f"y must hold at least 2 classes to train a classifier; got 1 class "
                            f"({self.classes_[0]!r})")
        return self._fit(X, labels.astype(np.int64), [str(c) for c in self.classes_])

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(N, C)``, columns in the order of ``classes_``."""
        out = self._outputs(X).double()
        if out.shape[1] == 1:       # train.loss = "bce": one logit, p(classes_[1])
            p = torch.sigmoid(out[:, 0])
            return torch.stack([1 - p, p], dim=1).numpy()
        return torch.softmax(out, dim=1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        best = self.predict_proba(X).argmax(axis=1)     # first: NotFittedError before fit
        return self.classes_[best]


class RegulabRegressor(RegressorMixin, _RegulabEstimator):
    """A regulab network as a scikit-learn regressor; see the module docstring.

    ``y`` of shape ``(N,)`` or ``(N, k)`` (several targets); ``predict`` returns the same
    shape. ``score`` is R^2. Fitted: ``n_features_in_``, ``model_``, ``config_``, ``history_``.
    """

    _task = "regression"

    def fit(self, X: Any, y: Any) -> RegulabRegressor:
        X, y = validate_data(self, X, y, dtype=np.float32, multi_output=True, y_numeric=True)
        y = y.astype(np.float32)
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        self._one_target = y.ndim == 1
        return self._fit(X, y, None)

    def predict(self, X: Any) -> np.ndarray:
        out = self._outputs(X).numpy().astype(np.float64)    # scikit-learn predicts float64
        return out[:, 0] if self._one_target else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


for _cls in (RegulabClassifier, RegulabRegressor):   # the parameters in help() and the docs
    _cls.__doc__ += "\n    Parameters: " + ", ".join(
        f"``{n}={d!r}``" for n, d in PARAMS.items()) + ".\n"
