"""Typed configuration: the one way anything in regulab is configured.

A ``Config`` holds one dataclass per TOML section (``[data]``, ``[model]``, ``[optim]``,
``[train]``, ...). It is built from a TOML file, a dict, or defaults, plus overrides
(``--set section.key=value`` on the command line, a dict in Python). Every key is declared
with a constraint; validation raises ``ConfigError`` with one line that names the key, the
value received and what is allowed, e.g.::

    config key 'optim.lr' must be a number > 0; got -0.1

Unknown keys get a "did you mean" suggestion. ``to_toml`` writes the fully resolved config,
which ``load_config`` reads back to an equal ``Config``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .augment.config import AugmentConfig
from .checks import (Check, _fail, _key, _Section, boolean, choice, label_maps,  # noqa: F401
                     layer_count, list_of, number, number_or_list, optional, string, train_size)
from .errors import ConfigError

__all__ = [
    "Config", "DataConfig", "ModelConfig", "RegularizationConfig", "MultitaskConfig", "TransferConfig",
    "OptimConfig", "TrainConfig", "EvalConfig",
    "load_config", "config_from_dict", "parse_overrides", "read_toml", "to_toml", "INIT_SCHEMES", "ACTIVATIONS",
]

ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "elu", "gelu")
INIT_SCHEMES = ("default", "normal_0.01", "normal_1", "glorot_uniform", "glorot_normal",
                "he_normal", "he_uniform")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
PREPROCESS = ("none", "minmax", "standardize", "unit_norm")


@dataclass
class DataConfig(_Section):
    """``[data]``: which dataset, how it is split and preprocessed."""
    dataset: str = _key("mnist1d", string, "built-in name, or csv:PATH, npz:PATH, images:DIR")
    split: list = _key([0.8, 0.15, 0.05], list_of(number(ge=0.0, le=1.0), min_len=3,
                       allowed="a list of 3 fractions [train, val, test]"),
                       "train/validation/test fractions; sum to 1")
    stratify: bool = _key(True, boolean, "keep class proportions in every split")
    seed: int = _key(0, number(ge=0, integer=True), "seed of the split (fixed across train.seed)")
    preprocess: str = _key("none", choice(*PREPROCESS), "fitted on the training split only")
    train_size: Any = _key(None, optional(train_size), "subset of the training split")
    target: Any = _key(None, optional(string), "target column of a csv dataset")
    task: str = _key("auto", choice("auto", "classification", "regression"), "learning task")
    n_samples: Any = _key(None, optional(number(ge=10, integer=True)),
                          "size of a generated dataset (mnist1d, moons, sine)")
    label_noise: float = _key(0.0, number(ge=0.0, le=1.0),
                              "fraction of training labels flipped to another class")
    bootstrap: bool = _key(False, boolean, "train on a bootstrap resample of the training split "
                                           "(bagging; drawn with train.seed)")
    classes: Any = _key(None, optional(list_of(number(ge=0, integer=True), min_len=2,
                        allowed="a list of at least 2 class labels")),
                        "keep only these classes, relabeled 0, 1, ... in this order")
    folds: Any = _key(None, optional(number(ge=2, integer=True)),
                      "K-fold cross-validation: hold out fold data.fold of K as the test split")
    fold: Any = _key(None, optional(number(ge=0, integer=True)), "which fold is held out (0..K-1)")


@dataclass
class ModelConfig(_Section):
    """``[model]``: the architecture and its initialization."""
    kind: str = _key("mlp", choice("mlp", "cnn", "linear"), "architecture")
    hidden: list = _key([100, 100], list_of(number(ge=1, integer=True),
                        allowed="a list of layer widths >= 1"), "widths of the dense hidden layers")
    channels: list = _key([32, 32], list_of(number(ge=1, integer=True), min_len=1,
                          allowed="a non-empty list of channel counts >= 1"), "cnn: conv channels")
    kernel_size: int = _key(5, number(ge=1, integer=True), "cnn: kernel size")
    activation: str = _key("relu", choice(*ACTIVATIONS), "hidden activation")
    init: str = _key("default", choice(*INIT_SCHEMES), "weight initialization scheme")
    batchnorm: bool = _key(False, boolean, "batch normalization in each hidden layer")
    batchnorm_position: str = _key("before", choice("before", "after"),
                                   "batch norm before or after the activation")
    dropout: Any = _key(0.0, number_or_list(number(ge=0.0, lt=1.0),
                        "a drop probability in [0, 1) or a list of them, one per hidden layer"),
                        "drop probability of each hidden layer's output")
    dropout_mode: str = _key("inverted", choice("inverted", "classic"),
                             "inverted: scale by 1/(1-p) in training; classic: by (1-p) at inference")
    input_dropout: float = _key(0.0, number(ge=0.0, lt=1.0), "drop probability of the inputs")
    dropconnect: float = _key(0.0, number(ge=0.0, lt=1.0),
                              "drop probability of each hidden dense layer's weights")
    dropconnect_per_example: bool = _key(False, boolean, "a DropConnect mask per example")


@dataclass
class RegularizationConfig(_Section):
    """``[regularization]``: penalties, constraints and noise added to training."""
    l1: float = _key(0.0, number(ge=0.0), "coefficient of sum |w| added to the loss")
    l2: float = _key(0.0, number(ge=0.0), "coefficient of sum w^2 (squared Frobenius norms)")
    penalty_layers: Any = _key(None, optional(list_of(string, min_len=1,
                               allowed="a non-empty list of layer names")),
                               "layers whose weights l1/l2 penalize (default: all)")
    penalty_bias: bool = _key(False, boolean, "penalize biases too")
    max_norm: Any = _key(None, optional(number(gt=0.0)), "max L2 norm of each unit's incoming weights")
    input_noise: float = _key(0.0, number(ge=0.0), "std of Gaussian noise added to the inputs")
    weight_noise: float = _key(0.0, number(ge=0.0), "std of Gaussian noise added to the weights")
    label_smoothing: float = _key(0.0, number(ge=0.0, lt=1.0), "label smoothing epsilon")
    ema: float = _key(0.0, number(ge=0.0, lt=1.0), "decay of the weights' moving average (0: off)")


@dataclass
class MultitaskConfig(_Section):
    """``[multitask]``: auxiliary heads on the shared network (``regulab.regularize.multitask``)."""
    tasks: list = _key([], list_of(string, allowed="a list of task names"),
                       "auxiliary tasks: parity, greater_than_4 or a name defined in groups")
    weights: Any = _key(None, optional(list_of(number(ge=0.0), min_len=1,
                        allowed="a list of loss weights >= 0, one per task")),
                        "loss weight of each auxiliary head (default 1 each)")
    main_weight: float = _key(1.0, number(gt=0.0), "loss weight of the main head")
    groups: dict = _key({}, label_maps, "own tasks: NAME = [label of class 0, label of class 1, ...]")


@dataclass
class TransferConfig(_Section):
    """``[transfer]``: start from another run's weights (``regulab.regularize.transfer``)."""
    source: Any = _key(None, optional(string), "a finished run directory to take the layers from")
    layers: Any = _key("all", layer_count, "'all' (every layer but the head) or the first k layers")
    freeze: bool = _key(True, boolean, "true: feature extraction (transferred layers fixed); "
                                       "false: fine-tune them")
    lr: Any = _key(None, optional(number(gt=0.0)), "learning rate of the transferred layers when "
                                                   "fine-tuning (default: optim.lr)")
    preprocess: str = _key("source", choice("source", "refit"),
                           "source: the source run's fitted preprocessing; refit: fit data.preprocess anew")


@dataclass
class OptimConfig(_Section):
    """``[optim]``: the optimizer (torch.optim)."""
    name: str = _key("adam", choice(*OPTIMIZERS), "optimizer")
    lr: float = _key(1e-3, number(gt=0.0), "learning rate")
    momentum: float = _key(0.9, number(ge=0.0, lt=1.0), "momentum term of 'momentum' and 'nesterov' (others ignore it)")
    betas: list = _key([0.9, 0.999], list_of(number(ge=0.0, lt=1.0), min_len=2,
                       allowed="a list of 2 numbers in [0, 1)"), "Adam's beta1, beta2")
    alpha: float = _key(0.99, number(gt=0.0, lt=1.0), "RMSprop's decay of the squared gradient")
    eps: float = _key(1e-8, number(gt=0.0), "Adam/RMSprop epsilon")
    weight_decay: float = _key(0.0, number(ge=0.0), "the optimizer's weight decay (not l2)")


@dataclass
class TrainConfig(_Section):
    """``[train]``: the training loop."""
    epochs: int = _key(50, number(ge=1, integer=True), "maximum number of epochs")
    batch_size: int = _key(100, number(ge=1, integer=True), "minibatch size")
    seed: int = _key(0, number(ge=0, integer=True), "seed of init, shuffling and dropout")
    device: str = _key("auto", choice("auto", "cpu", "cuda"), "auto: cuda when available")
    loss: str = _key("auto", choice("auto", "cross_entropy", "bce", "mse"),
                     "auto: cross_entropy (classes), mse (regression)")
    early_stopping: bool = _key(True, boolean, "stop when the monitored metric stalls")
    patience: int = _key(10, number(ge=1, integer=True), "epochs without improvement")
    min_delta: float = _key(0.0, number(ge=0.0), "smallest change counted as improvement")
    monitor: str = _key("val_loss", choice("val_loss", "val_acc", "val_mse", "val_r2"),
                        "metric early stopping watches")
    restore_best: bool = _key(True, boolean, "keep the best epoch's weights at the end")
    checkpoint_every: int = _key(1, number(ge=1, integer=True), "epochs between checkpoints")
    progress: bool = _key(True, boolean, "progress bar (only on a terminal)")
    nproc: int = _key(1, number(ge=1, integer=True),
                      "processes for data-parallel training (torch.distributed); each takes a "
                      "share of every batch of train.batch_size")


@dataclass
class EvalConfig(_Section):
    """``[eval]``: final evaluation."""
    batch_size: int = _key(1024, number(ge=1, integer=True), "batch size of evaluation")
    dropout_inference: str = _key("scale", choice("scale", "mc_mean", "mc_geometric"),
                                  "weight scaling, or Monte-Carlo masks averaged")
    mc_samples: int = _key(30, number(ge=1, integer=True), "masks sampled by mc_* inference")
    noise_snr: Any = _key(None, optional(number()), "audio: also score the test split with white "
                          "noise at this SNR (dB): test_noisy_acc, a robustness check")
    test: bool = _key(True, boolean, "score the test split at the end (a sweep's trials do not)")


SECTIONS: dict[str, type] = {
    "data": DataConfig, "model": ModelConfig, "regularization": RegularizationConfig,
    "multitask": MultitaskConfig, "transfer": TransferConfig, "optim": OptimConfig,
    "train": TrainConfig, "eval": EvalConfig,
}


for _name, _cls in SECTIONS.items():
    _cls.SECTION = _name


@dataclass
class Config:
    """A whole run's configuration: ``name`` plus one object per section."""
    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    multitask: MultitaskConfig = field(default_factory=MultitaskConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --- building and validating ------------------------------------------------------------------

def _unknown(key: str, options: list[str], where: str) -> ConfigError:
    hint = difflib.get_close_matches(key.rsplit(".", 1)[-1], options, n=1)
    extra = f"; did you mean '{hint[0]}'?" if hint else ""
    return ConfigError(f"unknown config key '{key}'{extra} (keys of {where}: {', '.join(options)})")


def _section(name: str, cls: type, values: Any) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"config key '{name}' must be a table (section); got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise _unknown(f"{name}.{key}", list(fields), f"[{name}]")
        kwargs[key] = fields[key].metadata["check"](f"{name}.{key}", value)
    return cls(**kwargs)


def _cross_checks(cfg: Config) -> None:
    split = cfg.data.split
    if len(split) != 3:
        raise ConfigError(f"config key 'data.split' must be [train, val, test] (3 fractions); got {split!r}")
    if abs(sum(split) - 1.0) > 1e-6:
        raise ConfigError(f"config key 'data.split' must sum to 1; got {split!r} (sum {sum(split):g})")
    if split[0] <= 0 or split[1] <= 0:
        raise ConfigError(f"config key 'data.split' needs train and validation fractions > 0; got {split!r}")
    d = cfg.data
    if (d.folds is None) != (d.fold is None) or (d.folds is not None and d.fold >= d.folds):
        raise ConfigError(f"config keys 'data.folds' and 'data.fold' go together, with 0 <= fold < "
                          f"folds; got folds={d.folds!r}, fold={d.fold!r}")
    if cfg.model.kind != "linear" and isinstance(cfg.model.dropout, list) \
            and len(cfg.model.dropout) != len(cfg.model.hidden):
        raise ConfigError(
            f"config key 'model.dropout' must have one probability per hidden layer "
            f"({len(cfg.model.hidden)}); got {cfg.model.dropout!r}")
    if cfg.train.nproc > cfg.train.batch_size:
        raise ConfigError(f"config key 'train.nproc' must be <= train.batch_size (each process takes "
                          f"a share of every batch); got nproc={cfg.train.nproc}, "
                          f"batch_size={cfg.train.batch_size}")
    if cfg.model.batchnorm and cfg.train.nproc > 1 and cfg.train.batch_size // cfg.train.nproc < 2:
        raise ConfigError(f"config key 'train.nproc' must leave each process >= 2 rows of a batch "
                          f"for batch norm (train.batch_size // nproc); got nproc={cfg.train.nproc}, "
                          f"batch_size={cfg.train.batch_size}")


def _multitask_checks(m: MultitaskConfig) -> None:
    if len(set(m.tasks)) != len(m.tasks):
        raise ConfigError(f"config key 'multitask.tasks' must not repeat a task; got {m.tasks!r}")
    if m.weights is not None and len(m.weights) != len(m.tasks):
        raise ConfigError(f"config key 'multitask.weights' must have one weight per task "
                          f"({len(m.tasks)}: {m.tasks!r}); got {m.weights!r}")
    unused = [g for g in m.groups if g not in m.tasks]
    if unused:
        raise ConfigError(f"config key 'multitask.groups' defines {unused!r}, which multitask.tasks "
                          f"does not list; got tasks {m.tasks!r}")


def _transfer_checks(t: TransferConfig) -> None:
    if t.source is None:
        changed = [f.name for f in dataclasses.fields(t) if getattr(t, f.name) != f.default]
        if changed:
            raise ConfigError(f"config key 'transfer.{changed[0]}' needs transfer.source (the run "
                              f"to transfer from); got {getattr(t, changed[0])!r} and no source")
    elif t.freeze and t.lr is not None:
        raise ConfigError(f"config key 'transfer.lr' is for fine-tuning; got {t.lr!r} with "
                          "transfer.freeze = true (frozen layers do not learn)")


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    """Validate a nested dict (as read from TOML) into a ``Config``."""
    kwargs: dict[str, Any] = {}
    options = ["name", *SECTIONS, "augment"]
    for key, value in raw.items():
        if key == "name":
            kwargs["name"] = string("name", value)
        elif key == "augment":
            kwargs[key] = AugmentConfig.from_tables(value, _section)
        elif key in SECTIONS:
            kwargs[key] = _section(key, SECTIONS[key], value)
        else:
            raise _unknown(key, options, "the top level")
    cfg = Config(**kwargs)
    _cross_checks(cfg)
    _multitask_checks(cfg.multitask)
    _transfer_checks(cfg.transfer)
    return cfg


def _parse_value(text: str) -> Any:
    """A TOML literal (``0.3``, ``[64, 64]``, ``true``, ``"x"``), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(items: Mapping[str, Any] | list[str] | None) -> dict[str, Any]:
    """``["model.dropout=0.3"]`` or ``{"model.dropout": 0.3}`` -> ``{"model.dropout": 0.3}``."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects section.key=value; got {item!r}")
        out[key.strip()] = _parse_value(value.strip())
    return out


def _copy(raw: Any) -> Any:
    return {k: _copy(v) for k, v in raw.items()} if isinstance(raw, Mapping) else raw


def _apply(raw: dict, overrides: Mapping[str, Any]) -> dict:
    raw = _copy(raw)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        if len(parts) == 1 and parts[0] == "name":
            raw["name"] = value
        elif len(parts) == 2 or (len(parts) == 3 and parts[0] == "augment"):
            table = raw
            for name in parts[:-1]:     # [augment] holds one table per modality
                table = table.setdefault(name, {})
                if not isinstance(table, dict):
                    raise ConfigError(f"config key '{name}' must be a table (section); got {table!r}")
            table[parts[-1]] = value
        else:
            raise ConfigError(f"--set key must look like section.key (or augment.image.key); got '{dotted}'")
    return raw


def load_config(path: str | Path | None = None,
                overrides: Mapping[str, Any] | list[str] | None = None) -> Config:
    """Read a TOML file (or start from defaults when ``path`` is None) and apply overrides."""
    raw = read_toml(path) if path is not None else {}
    return config_from_dict(_apply(raw, parse_overrides(overrides)))


def read_toml(path: str | Path, what: str = "config file") -> dict:
    """A TOML file as a dict; a missing, unreadable or invalid file is a ``ConfigError``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} '{path}' does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{what} '{path}' is not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} '{path}' is not UTF-8 text") from None


# --- writing ----------------------------------------------------------------------------------

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)   # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):     # an inline table; quoted keys are always valid
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")


def to_toml(cfg: Config) -> str:
    """The resolved config as TOML; keys left unset (None) are omitted."""
    d = cfg.to_dict()
    lines = [f"name = {_toml_value(d.pop('name'))}"]
    tables = [(s, v) for s, v in d.items() if s != "augment"]
    tables += [(f"augment.{s}", v) for s, v in d["augment"].items()]
    for section, values in tables:
        lines += ["", f"[{section}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"
