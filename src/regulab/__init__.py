"""regulab: train neural networks that generalize, and measure what each regularizer does.

Quick start::

    import regulab as rl
    cfg = rl.load_config("examples/quickstart.toml", overrides={"model.dropout": 0.3})
    run = rl.train(cfg)          # -> Run: results, history, model, run_dir
    res = rl.study(cfg, variants={"l2": {"regularization.l2": 1e-3}}, seeds=3)   # -> StudyResult
    best = rl.sweep(rl.load_sweep("examples/sweeps/tpe_digits.toml")).best   # Optuna search
    clf = rl.RegulabClassifier(model__dropout=0.3).fit(X, y)   # a scikit-learn estimator
"""

from regulab import nn
from regulab.callbacks import Callback, EarlyStopping
from regulab.config.core import Config, load_config
from regulab.data.loader import TensorLoader
from regulab.engine.trainer import Trainer
from regulab.errors import ConfigError, DataError, DivergedError, RegulabInputError
from regulab.modalities.sources import load_dataset
from regulab.runs.population import train_population
from regulab.runs.predict import load_model
from regulab.runs.run import Run, resume, train
from regulab.studies.spec import load_study
from regulab.studies.study import StudyResult, run_study, study
from regulab.version import __version__ as __version__

__all__ = ["nn", "Config", "load_config", "load_dataset", "train", "resume", "Run", "Trainer",
           "TensorLoader", "Callback", "EarlyStopping", "ConfigError", "DataError",
           "DivergedError", "RegulabInputError", "study", "run_study", "load_study", "StudyResult",
           "sweep", "load_sweep", "train_population", "load_model", "RegulabClassifier",
           "RegulabRegressor"]

_LAZY = {"sweep": "regulab.sweeps.worker", "load_sweep": "regulab.sweeps.spec",   # Optuna on use
         "RegulabClassifier": "regulab.sklearn", "RegulabRegressor": "regulab.sklearn"}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
