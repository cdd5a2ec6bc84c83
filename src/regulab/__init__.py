"""regulab: train neural networks that generalize, and measure what each regularizer does.

Quick start::

    import regulab as rl
    cfg = rl.load_config("examples/quickstart.toml", overrides={"model.dropout": 0.3})
    run = rl.train(cfg)          # -> Run: results, history, model, run_dir
    res = rl.study(cfg, variants={"l2": {"regularization.l2": 1e-3}}, seeds=3)   # -> StudyResult
    best = rl.sweep(rl.load_sweep("examples/sweeps/tpe_digits.toml")).best   # Optuna search
    clf = rl.RegulabClassifier(model__dropout=0.3).fit(X, y)   # a scikit-learn estimator

Every public name is imported on first use (PEP 562 ``__getattr__``), so that ``import regulab``
and the command line's ``--help`` and ``--version`` load neither torch nor anything heavier.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from regulab.version import __version__ as __version__

if TYPE_CHECKING:
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
    from regulab.sklearn import RegulabClassifier, RegulabRegressor
    from regulab.studies.spec import load_study
    from regulab.studies.study import StudyResult, run_study, study
    from regulab.sweeps.spec import load_sweep
    from regulab.sweeps.worker import sweep

__all__ = ["nn", "Config", "load_config", "load_dataset", "train", "resume", "Run", "Trainer",
           "TensorLoader", "Callback", "EarlyStopping", "ConfigError", "DataError",
           "DivergedError", "RegulabInputError", "study", "run_study", "load_study", "StudyResult",
           "sweep", "load_sweep", "train_population", "load_model", "RegulabClassifier",
           "RegulabRegressor"]

# public name -> the module that defines it ("regulab.nn" is the name itself, a subpackage)
_LAZY = {"nn": "regulab.nn",
         "Callback": "regulab.callbacks", "EarlyStopping": "regulab.callbacks",
         "Config": "regulab.config.core", "load_config": "regulab.config.core",
         "TensorLoader": "regulab.data.loader", "Trainer": "regulab.engine.trainer",
         "ConfigError": "regulab.errors", "DataError": "regulab.errors",
         "DivergedError": "regulab.errors", "RegulabInputError": "regulab.errors",
         "load_dataset": "regulab.modalities.sources",
         "train_population": "regulab.runs.population", "load_model": "regulab.runs.predict",
         "Run": "regulab.runs.run", "resume": "regulab.runs.run", "train": "regulab.runs.run",
         "load_study": "regulab.studies.spec",
         "StudyResult": "regulab.studies.study", "run_study": "regulab.studies.study",
         "study": "regulab.studies.study",
         "sweep": "regulab.sweeps.worker", "load_sweep": "regulab.sweeps.spec",     # Optuna
         "RegulabClassifier": "regulab.sklearn", "RegulabRegressor": "regulab.sklearn"}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module
    found = import_module(module)
    value = found if module == f"{__name__}.{name}" else getattr(found, name)
    globals()[name] = value      # the next use skips __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
