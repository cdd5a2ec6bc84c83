"""regulab: train neural networks that generalize, and measure what each regularizer does.

Quick start::

    import regulab as rl
    cfg = rl.load_config("examples/quickstart.toml", overrides={"model.dropout": 0.3})
    run = rl.train(cfg)          # -> Run: results, history, model, run_dir

Names are imported lazily, so ``import regulab`` (and the CLI's start-up) stays cheap until
something that needs PyTorch is used.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "config", "load_config": "config",
    "train": "train.run", "resume": "train.run", "Run": "train.run",
    "Trainer": "train.trainer", "Callback": "train.callbacks", "EarlyStopping": "train.callbacks",
    "TensorLoader": "data.loader", "load_dataset": "data.datasets",
    "ConfigError": "errors", "DataError": "errors", "DivergedError": "errors",
    "RegulabInputError": "errors",
}
__all__ = ["nn", *_EXPORTS]


def __getattr__(name: str):
    if name == "nn":
        return import_module(".nn", __name__)
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'regulab' has no attribute {name!r}")
