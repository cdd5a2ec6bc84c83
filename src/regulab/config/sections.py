"""The sections of a config: one dataclass per TOML table (``[data]``, ``[model]``, ...); the
modality sections (``[image]``, ``[audio]``, ``[text]``, ``[video]``) live with their modality
(``regulab.modalities.<name>.section``) and are listed here.

Each key is declared on one line with its default, its constraint and its meaning
(``regulab.checks.key``); constructing a section validates every key, so
``OptimConfig(lr=-1)`` fails as the TOML would.
"""

from __future__ import annotations

import dataclasses
import urllib.parse

from dataclasses import dataclass
from typing import Any

from regulab.checks import (IGNORED, MAX_CLASSES, MEMBER, SHARED, Section, auto_or_count, blocks, boolean, choice, key,
                            kind_of, label_maps, layer_count, list_of, number, number_or_list, optional, seed,
                            string, train_size)
from regulab.errors import ConfigError, invalid, mask_password
from regulab.user_code import FORM, OBJECT, is_spec
from regulab.modalities.audio.section import AudioConfig
from regulab.modalities.image.section import ImageConfig
from regulab.modalities.text.section import TextConfig
from regulab.modalities.video.section import VideoConfig

__all__ = ["DataConfig", "ModelConfig", "RegularizationConfig", "MultitaskConfig", "TransferConfig",
           "OptimConfig", "TrainConfig", "EvalConfig", "LogConfig", "SECTIONS", "ACTIVATIONS", "INIT_SCHEMES",
           "OPTIMIZERS", "PREPROCESS", "MODALITIES", "SECTION_MODALITIES", "MAX_SAMPLES", "MAX_WIDTH",
           "MAX_LAYERS", "MAX_KERNEL", "MAX_EPOCHS", "MLFLOW_DATABASES", "MAX_EXPERIMENT", "tracking_uri",
           "mlflow_uri_ok", "ImageConfig", "AudioConfig", "TextConfig", "VideoConfig"]

ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "elu", "gelu")
INIT_SCHEMES = ("default", "normal_0.01", "normal_1", "glorot_uniform", "glorot_normal",
                "he_normal", "he_uniform")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
PREPROCESS = ("none", "minmax", "standardize", "unit_norm")
MAX_SAMPLES = 1_000_000     # data.n_samples: rows a built-in generates (mnist1d takes ~1 min per 10^5)
MAX_WIDTH = 65_536          # model.hidden, model.channels: units of one layer (a 65536^2 layer is 17 GB)
MAX_LAYERS = 1_000          # model.hidden, model.channels, model.dropout: layers of a network
MAX_KERNEL = 1_024          # model.kernel_size
MAX_EPOCHS = 100_000        # train.epochs: each checkpoint holds a history row per epoch (~0.3 KB)


def user_data(key: str, v: Any) -> Any:
    """A dataset's name or spec (a non-empty string), or in Python the data itself (an object,
    turned into a ``Dataset`` or streamed when the run is prepared)."""
    return string(key, v) if isinstance(v, str) or v is None else v


thread_count = auto_or_count('"auto" or a whole number from 1 to 1024', 1024)
checkpoint_cadence = auto_or_count('"auto" or a whole number of epochs from 1')


def resident_choice(key: str, v: Any) -> Any:
    """true, false or "auto"."""
    if v is True or v is False or v == "auto":
        return v
    raise invalid(key, 'true, false or "auto"', v)


def user_factory(key: str, v: Any) -> Any:
    """``FILE.py:NAME`` or ``package.module:NAME`` (``python-object:...``: written for an object
    given from Python), or in Python a class or function returning an ``nn.Module``."""
    if isinstance(v, str) and (is_spec(v) or v.startswith(OBJECT)):
        return v
    if callable(v) and not isinstance(v, str):
        return v
    raise invalid(key, f"{FORM} (in Python: an nn.Module class or a function returning one)", v)


def keyword_args(key: str, v: Any) -> dict:
    """A table of keyword arguments ``NAME = value``."""
    if not isinstance(v, dict) or not all(isinstance(k, str) and k.isidentifier() for k in v):
        raise invalid(key, "a table of keyword arguments NAME = value", v)
    return dict(v)


@dataclass
class DataConfig(Section):
    """``[data]``: which dataset, how it is split and preprocessed."""
    dataset: Any = key("mnist1d", user_data, "built-in name, or csv:PATH, npz:PATH, images:DIR, "
                       "python:FILE.py:NAME (in Python: the data itself)", population=SHARED)
    split: list = key([0.8, 0.15, 0.05], list_of(number(ge=0.0, le=1.0), min_len=3, max_len=3,
                      allowed="a list of 3 fractions [train, val, test]"),
                      "train/validation/test fractions; sum to 1", population=SHARED)
    stratify: bool = key(True, boolean, "keep class proportions in every split", population=SHARED)
    seed: int = key(0, seed, "seed of the split (fixed across train.seed); 0..2^31-1 (checks.MAX_SEED)",
                    population=SHARED)
    preprocess: str = key("none", choice(*PREPROCESS), "fitted on the training split only", population=SHARED)
    train_size: Any = key(None, optional(train_size), "subset of the training split", population=SHARED)
    target: Any = key(None, optional(string), "target column of a csv dataset", population=SHARED)
    split_column: Any = key(None, optional(string), "column of a csv dataset saying each row's split "
                            "(train, val or test; not a feature): the split kept as given",
                            population=SHARED)
    task: str = key("auto", choice("auto", "classification", "regression"), "learning task",
                    population=SHARED)
    n_samples: Any = key(None, optional(number(ge=10, le=MAX_SAMPLES, integer=True)),
                         "size of a generated dataset (mnist1d, moons, sine), at most MAX_SAMPLES "
                         "(10^6)", population=SHARED)
    label_noise: float = key(0.0, number(ge=0.0, le=1.0),
                             "fraction of training labels flipped to another class", population=SHARED)
    bootstrap: bool = key(False, boolean, "train on a bootstrap resample of the training split "
                                          "(bagging; drawn with train.seed)", population=MEMBER)
    classes: Any = key(None, optional(list_of(number(ge=0, lt=MAX_CLASSES, integer=True), min_len=2,
                       max_len=MAX_CLASSES, allowed="a list of at least 2 class labels")),
                       "keep only these classes, relabeled 0, 1, ... in this order", population=SHARED)
    folds: Any = key(None, optional(number(ge=2, integer=True)),
                     "K-fold cross-validation: hold out fold data.fold of K as the test split",
                     population=SHARED)
    fold: Any = key(None, optional(number(ge=0, integer=True)), "which fold is held out (0..K-1)",
                    population=SHARED)
    resident: Any = key("auto", resident_choice, "true: the data on the device as tensors; false: "
                        "streamed through a DataLoader; auto: streamed when its collated size exceeds "
                        "data.memory_budget", population=blocks(True))
    memory_budget: Any = key(None, optional(number(gt=0)), "MiB of collated data kept resident "
                             "(data.resident auto); default a quarter of physical memory",
                             population=SHARED)
    workers: Any = key(None, optional(number(ge=0, le=256, integer=True)), "DataLoader worker processes "
                       "of streamed data; default min(4, CPUs)", population=IGNORED)


# the [model] keys that describe regulab's own networks, and why each cannot apply to a user's
USER_NETWORK_KEYS = {
    "kind": "the factory is the architecture",
    "hidden": "the factory sets the layer widths",
    "channels": "the factory sets the conv channels",
    "kernel_size": "the factory sets the kernel sizes",
    "activation": "the factory chooses the activations",
    "batchnorm": "regulab cannot know where batch norm goes in it (add nn.BatchNorm layers to it)",
    "batchnorm_position": "regulab cannot know where batch norm goes in it",
}


@dataclass
class ModelConfig(Section):
    """``[model]``: the architecture and its initialization."""
    kind: str = key("mlp", choice("mlp", "cnn", "linear"), "architecture",
                    population=SHARED)  # a CNN's runs stack with torch.func (engine.population.functional)
    hidden: list = key([100, 100], list_of(number(ge=1, le=MAX_WIDTH, integer=True), max_len=MAX_LAYERS,
                       allowed="a list of layer widths >= 1"), "widths of the dense hidden layers "
                       "(each at most MAX_WIDTH, 65536; at most MAX_LAYERS, 1000, layers)", population=SHARED)
    channels: list = key([32, 32], list_of(number(ge=1, le=MAX_WIDTH, integer=True), min_len=1,
                         max_len=MAX_LAYERS, allowed="a non-empty list of channel counts >= 1"),
                         "cnn: conv channels (each at most MAX_WIDTH)", population=SHARED)
    kernel_size: int = key(5, number(ge=1, le=MAX_KERNEL, integer=True), "cnn: kernel size",
                           population=SHARED)
    activation: str = key("relu", choice(*ACTIVATIONS), "hidden activation", population=SHARED)
    init: str = key("default", choice(*INIT_SCHEMES), "weight initialization scheme", population=SHARED)
    batchnorm: bool = key(False, boolean, "batch normalization in each hidden layer", population=SHARED)
    batchnorm_position: str = key("before", choice("before", "after"),
                                  "batch norm before or after the activation", population=SHARED)
    dropout: Any = key(0.0, number_or_list(number(ge=0.0, lt=1.0),
                       "a drop probability in [0, 1) or a list of them, one per hidden layer"),
                        "drop probability of each hidden layer's output", population=MEMBER)
    dropout_mode: str = key("inverted", choice("inverted", "classic"),
                            "inverted: scale by 1/(1-p) in training; classic: by (1-p) at inference",
                            population=SHARED)
    input_dropout: float = key(0.0, number(ge=0.0, lt=1.0), "drop probability of the inputs",
                               population=MEMBER)
    dropconnect: float = key(0.0, number(ge=0.0, lt=1.0),
                             "drop probability of each hidden dense layer's weights", population=MEMBER)
    dropconnect_per_example: bool = key(False, boolean, "a DropConnect mask per example", population=SHARED)
    factory: Any = key(None, optional(user_factory), "the user's network: FILE.py:NAME or "
                       "package.module:NAME, an nn.Module class or a function returning one",
                       population=SHARED)     # its runs stack with torch.func (engine.population.functional)
    args: dict = key({}, keyword_args, "keyword arguments of model.factory", population=SHARED)

    def relations(self) -> None:
        if self.factory is None:     # model.args without one: refused when the run is prepared,
            return                   # as a factory may still come from Python (Config.with_code)
        for name, why in USER_NETWORK_KEYS.items():
            f = next(f for f in dataclasses.fields(self) if f.name == name)
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if getattr(self, name) != default:
                raise ConfigError(f"config key 'model.{name}' cannot apply to a user's network "
                                  f"(model.factory): {why}; got {getattr(self, name)!r}")


@dataclass
class RegularizationConfig(Section):
    """``[regularization]``: penalties, constraints and noise added to training."""
    l1: float = key(0.0, number(ge=0.0), "coefficient of sum |w| added to the loss", population=MEMBER)
    l2: float = key(0.0, number(ge=0.0), "coefficient of sum w^2 (squared Frobenius norms)",
                    population=MEMBER)
    penalty_layers: Any = key(None, optional(list_of(string, min_len=1,
                              allowed="a non-empty list of layer names")),
                              "layers whose weights l1/l2 penalize (default: all)", population=blocks())
    penalty_bias: bool = key(False, boolean, "penalize biases too", population=SHARED)
    max_norm: Any = key(None, optional(number(gt=0.0)), "max L2 norm of each unit's incoming weights",
                        population=MEMBER)
    input_noise: float = key(0.0, number(ge=0.0), "std of Gaussian noise added to the inputs",
                             population=MEMBER)
    weight_noise: float = key(0.0, number(ge=0.0), "std of Gaussian noise added to the weights",
                              population=MEMBER)
    label_smoothing: float = key(0.0, number(ge=0.0, lt=1.0), "label smoothing epsilon", population=MEMBER)
    ema: float = key(0.0, number(ge=0.0, lt=1.0), "decay of the weights' moving average (0: off)",
                     population=MEMBER)


@dataclass
class MultitaskConfig(Section):
    """``[multitask]``: auxiliary heads on the shared network (``regulab.regularize.multitask``)."""
    tasks: list = key([], list_of(string, allowed="a list of task names"),
                      "auxiliary tasks: parity, greater_than_4 or a name defined in groups",
                      population=blocks())
    weights: Any = key(None, optional(list_of(number(ge=0.0), min_len=1,
                       allowed="a list of loss weights >= 0, one per task")),
                       "loss weight of each auxiliary head (default 1 each)", population=SHARED)
    main_weight: float = key(1.0, number(gt=0.0), "loss weight of the main head", population=SHARED)
    groups: dict = key({}, label_maps, "own tasks: NAME = [label of class 0, label of class 1, ...]",
                       population=SHARED)


@dataclass
class TransferConfig(Section):
    """``[transfer]``: start from another run's weights (``regulab.regularize.transfer``)."""
    source: Any = key(None, optional(string), "a finished run directory to take the layers from",
                      population=blocks())
    layers: Any = key("all", layer_count, "'all' (every layer but the head) or the first k layers",
                      population=SHARED)
    freeze: bool = key(True, boolean, "true: feature extraction (transferred layers fixed); "
                                      "false: fine-tune them", population=SHARED)
    lr: Any = key(None, optional(number(gt=0.0)), "learning rate of the transferred layers when "
                                                  "fine-tuning (default: optim.lr)", population=SHARED)
    preprocess: str = key("source", choice("source", "refit"),
                          "source: the source run's fitted preprocessing; refit: fit data.preprocess anew",
                          population=SHARED)


@dataclass
class OptimConfig(Section):
    """``[optim]``: the optimizer (torch.optim)."""
    name: str = key("adam", choice(*OPTIMIZERS), "optimizer", population=SHARED)
    lr: float = key(0.01, number(gt=0.0), "learning rate; 0.01, the MNIST-1D paper's Adam rate: on "
                    "the small built-in data it beat 0.001 (BENCHMARKS.md)", population=MEMBER)
    momentum: float = key(0.9, number(ge=0.0, lt=1.0), "momentum term of 'momentum' and 'nesterov' (others ignore it)",
                          population=SHARED)
    betas: list = key([0.9, 0.999], list_of(number(ge=0.0, lt=1.0), min_len=2, max_len=2,
                      allowed="a list of 2 numbers in [0, 1)"), "Adam's beta1, beta2", population=SHARED)
    alpha: float = key(0.99, number(gt=0.0, lt=1.0), "RMSprop's decay of the squared gradient",
                       population=SHARED)
    eps: float = key(1e-8, number(gt=0.0), "Adam/RMSprop epsilon", population=SHARED)
    weight_decay: float = key(0.0, number(ge=0.0), "the optimizer's weight decay (not l2)", population=MEMBER)
    schedule: str = key("none", choice("none", "step", "cosine", "plateau"),
                        "learning-rate schedule per epoch (regulab.engine.schedules): none, step "
                        "(times gamma every step_size epochs), cosine (to min_lr over train.epochs) "
                        "or plateau (times gamma when train.monitor stalls)", population=MEMBER)
    warmup_epochs: int = key(0, number(ge=0, integer=True), "epochs of linear warm-up from lr / "
                             "warmup_epochs to lr before the schedule", population=MEMBER)
    step_size: int = key(30, number(ge=1, integer=True), "epochs between the step schedule's cuts",
                         population=MEMBER)
    gamma: float = key(0.1, number(gt=0.0, le=1.0), "the step and plateau schedules' factor",
                       population=MEMBER)
    plateau_patience: int = key(10, number(ge=0, integer=True), "epochs without improvement of "
                                "train.monitor the plateau schedule tolerates before a cut",
                                population=MEMBER)
    min_lr: float = key(0.0, number(ge=0.0), "the lowest rate a schedule gives", population=MEMBER)

    def relations(self) -> None:
        if self.name == "nesterov" and self.momentum == 0:     # torch.optim.SGD refuses it too
            raise ConfigError(f"config key 'optim.momentum' must be > 0 with optim.name 'nesterov' (its "
                              f"step looks ahead along the momentum); got {self.momentum!r}")


@dataclass
class TrainConfig(Section):
    """``[train]``: the training loop."""
    epochs: int = key(200, number(ge=1, le=MAX_EPOCHS, integer=True), "maximum number of epochs: a cap "
                      "early stopping reaches first on the built-in data; at most MAX_EPOCHS, 100000",
                      population=SHARED)
    batch_size: int = key(100, number(ge=1, integer=True), "minibatch size: rows of each step; a "
                          "training split smaller than it is taken whole as one batch (full-batch "
                          "gradient descent, said on the regulab logger and in results.json as "
                          "batch_size_used); with batch norm, no batch may leave it one row",
                          population=SHARED)
    seed: int = key(0, seed, "seed of init, shuffling and dropout; 0..2^31-1 (checks.MAX_SEED)",
                    population=MEMBER)
    device: str = key("auto", choice("auto", "cpu", "cuda"), "auto: cuda when available", population=SHARED)
    loss: str = key("auto", choice("auto", "cross_entropy", "bce", "mse"),
                    "auto: cross_entropy (classes), mse (regression)",
                    population=blocks("cross_entropy", "mse"))
    early_stopping: bool = key(True, boolean, "stop when the monitored metric stalls", population=SHARED)
    patience: int = key(30, number(ge=1, integer=True), "epochs without improvement before stopping: "
                        "a validation score stalls for 10-20 epochs and climbs again", population=SHARED)
    min_delta: float = key(0.0, number(ge=0.0), "smallest change counted as improvement", population=SHARED)
    monitor: str = key("auto", string, "metric early stopping (and the plateau schedule) watches; "
                       "auto: the task's score (val_acc, or val_r2 for regression), as a classifier's "
                       "val_loss turns up while its accuracy still climbs; or any metric the run "
                       "logs in metrics.csv (val_loss, a multi-task head's val_<task>_acc, "
                       "clean_train_acc, ...): those ending in acc or r2 are maximized, the others "
                       "minimized", population=SHARED)
    restore_best: bool = key(True, boolean, "keep the best epoch's weights at the end", population=SHARED)
    start_from_epoch: int = key(0, number(ge=0, integer=True), "epochs early stopping does not "
                                "watch at first (Keras's start_from_epoch)", population=SHARED)
    baseline: Any = key(None, optional(number()), "a score the monitored metric must beat for an "
                        "epoch to restart the patience (Keras's baseline)", population=SHARED)
    checkpoint_every: Any = key("auto", checkpoint_cadence, "epochs between checkpoints, or auto: "
                                "one at least every 10 s of training (runs.run.CHECKPOINT_SECONDS) "
                                "and at the end", population=IGNORED)
    progress: bool = key(True, boolean, "progress bar (only on a terminal)", population=IGNORED)
    nproc: int = key(1, number(ge=1, le=1024, integer=True),
                     "processes for data-parallel training (torch.distributed); each takes a "
                     "share of every batch of train.batch_size", population=blocks())
    threads: Any = key("auto", thread_count, "intra-op CPU threads while the run fits "
                       "(regulab.engine.threads): auto (1 for a small network's steps, else every "
                       "core, split among the study and sweep workers on the machine) or a number", population=IGNORED)
    eval_train: bool = key(False, boolean,
                           "after each epoch also score the train split in eval mode, as validation "
                           "is (no dropout, noise or augmentation): clean_train_loss, clean_train_acc "
                           "(or _mse, _r2)", population=IGNORED)


@dataclass
class EvalConfig(Section):
    """``[eval]``: final evaluation."""
    batch_size: int = key(1024, number(ge=1, integer=True), "batch size of evaluation", population=IGNORED)
    dropout_inference: str = key("scale", choice("scale", "mc_mean", "mc_geometric"),
                                 "weight scaling, or Monte-Carlo masks averaged", population=IGNORED)
    mc_samples: int = key(30, number(ge=1, le=10_000, integer=True), "masks sampled by mc_* inference",
                          population=IGNORED)
    noise_snr: Any = key(None, optional(number()), "audio: also score the test split with white "
                         "noise at this SNR (dB): test_noisy_acc, a robustness check", population=IGNORED)
    test: bool = key(True, boolean, "score the test split at the end (a sweep's trials do not)",
                     population=IGNORED)


MLFLOW_DATABASES = ("sqlite", "postgresql", "mysql", "mssql")   # MLflow's SQL stores (a driver after +)
MAX_EXPERIMENT = 500        # characters of an MLflow experiment's name (MLflow's own limit)
TRACKING_URIS = ('"" (off) or an MLflow tracking URI: sqlite:///FILE.db, postgresql://HOST/DB (or mysql://, '
                 'mssql://), http(s)://HOST[:PORT], databricks[://PROFILE], file:///DIR or a directory path')


def mlflow_uri_ok(v: str) -> bool:
    """Whether ``v`` has a form of tracking URI MLflow opens (``tracking_uri``)."""
    if v == "databricks":
        return True
    if v != v.strip() or not v.isprintable():
        return False
    try:
        parts = urllib.parse.urlsplit(v)
        host, _ = parts.hostname, parts.port
    except ValueError:      # a bad port or IPv6 address
        return False
    scheme, remote = parts.scheme.lower(), "://" in v
    if len(scheme) <= 1:    # a directory path (or a Windows drive's): a file store
        return True
    if scheme == "file":
        return parts.path not in ("", "/") and parts.netloc in ("", "localhost")
    if scheme in ("http", "https"):
        return bool(host)
    if scheme == "databricks":          # databricks://PROFILE
        return remote and bool(parts.netloc)
    if scheme.split("+")[0] == "sqlite":    # a file (not in memory): sqlite:///FILE
        return v.lower().startswith(f"{scheme}:///") and parts.path not in ("/", "/:memory:")
    return scheme.split("+")[0] in MLFLOW_DATABASES and remote and bool(host or parts.path.strip("/"))


def tracking_uri(key: str, v: Any) -> Any:
    """``log.mlflow``: "" (off) or a tracking URI in a form MLflow opens (``mlflow.MlflowClient``):
    a database (``sqlite:///FILE``, relative to the working directory, ``sqlite:////ABS``; a server
    database, with a driver after ``+``), a tracking server (``http(s)://HOST``), Databricks, or a
    file store (``file:///DIR`` or a plain directory path). Only the form is checked here; what
    the machine must have (the package, a writable folder) is checked when a run is prepared
    (``regulab.runs.viewers.check``). An error shows a password in the URI as ``***``."""
    if not isinstance(v, str):
        raise invalid(key, TRACKING_URIS, v)
    if v and not mlflow_uri_ok(v):
        raise invalid(key, TRACKING_URIS, mask_password(v))
    return v


tracking_uri.schema = {"type": "string"}
experiment = kind_of(lambda v: isinstance(v, str) and len(v) <= MAX_EXPERIMENT and v.isprintable(),
                     f"a string of at most {MAX_EXPERIMENT} printable characters (\"\": the study's or "
                     f"sweep's name, else regulab)", {"type": "string", "maxLength": MAX_EXPERIMENT})


@dataclass
class LogConfig(Section):
    """``[log]``: where a run's metrics go besides metrics.csv and the run store (``runs.viewers``)."""
    tensorboard: bool = key(False, boolean, "also write TensorBoard event files under the run "
                            "directory (tensorboard/: each epoch's scalars, the hyperparameters in "
                            "the HParams view; needs the tensorboard package: regulab[tensorboard])",
                            population=IGNORED)
    mlflow: str = key("", tracking_uri, "also log the run to this MLflow tracking URI "
                      "(params, each epoch's scalars, the final results; sqlite:///mlflow.db, "
                      "http://HOST:5000, ...; \"\": off; needs the mlflow package: regulab[mlflow])",
                      population=IGNORED)
    mlflow_experiment: str = key("", experiment, "the MLflow experiment the run goes in (\"\": "
                                 "a study's or sweep's runs in one named after it, others in regulab)",
                                 population=IGNORED)


SECTIONS: dict[str, type] = {
    "data": DataConfig, "model": ModelConfig, "regularization": RegularizationConfig,
    "multitask": MultitaskConfig, "transfer": TransferConfig, "optim": OptimConfig,
    "train": TrainConfig, "eval": EvalConfig, "log": LogConfig,
    "image": ImageConfig, "audio": AudioConfig, "text": TextConfig, "video": VideoConfig,
}
MODALITIES = ("image", "audio", "text", "video")
# the data modalities (Dataset.modality) each modality section applies to: [image] also shifts and
# stretches 1-D signals (mnist1d) and crops and flips a video's frames; the others their own only
SECTION_MODALITIES = {"image": ("image", "signal", "video"), "audio": ("audio",), "text": ("text",),
                      "video": ("video",)}

for _name, _cls in SECTIONS.items():
    _cls.SECTION = _name
