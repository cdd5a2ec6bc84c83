"""The sections of a config: one dataclass per TOML table (``[data]``, ``[model]``, ...).

Each key is declared on one line with its default, its constraint and its meaning
(``regulab.checks.key``); constructing a section validates every key, so
``OptimConfig(lr=-1)`` fails as the TOML would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import difflib
from dataclasses import field
from typing import Mapping

from regulab.errors import ConfigError
from regulab.modalities.audio.section import AudioAugmentConfig
from regulab.modalities.image.section import ImageAugmentConfig
from regulab.modalities.text.section import TextAugmentConfig
from regulab.modalities.video.section import VideoAugmentConfig
from regulab.checks import (_key, _Section, boolean, choice, label_maps, layer_count, list_of, number,
                            number_or_list, optional, string, train_size)

__all__ = ["DataConfig", "ModelConfig", "RegularizationConfig", "MultitaskConfig", "TransferConfig",
           "OptimConfig", "TrainConfig", "EvalConfig", "SECTIONS", "ACTIVATIONS", "INIT_SCHEMES",
           "OPTIMIZERS", "PREPROCESS", "AugmentConfig", "SUBSECTIONS"]

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


SUBSECTIONS: dict[str, type] = {"image": ImageAugmentConfig, "audio": AudioAugmentConfig,
                                "text": TextAugmentConfig, "video": VideoAugmentConfig}


@dataclass
class AugmentConfig:
    """``[augment]``: one table per modality."""
    image: ImageAugmentConfig = field(default_factory=ImageAugmentConfig)
    audio: AudioAugmentConfig = field(default_factory=AudioAugmentConfig)
    text: TextAugmentConfig = field(default_factory=TextAugmentConfig)
    video: VideoAugmentConfig = field(default_factory=VideoAugmentConfig)

    @classmethod
    def from_tables(cls, values: Any, section_of) -> "AugmentConfig":
        """From ``{"image": {...}, ...}``; ``section_of(name, cls, table)`` validates each table."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"config key 'augment' must be a table of tables "
                              f"({', '.join(SUBSECTIONS)}); got {values!r}")
        kwargs = {}
        for name, table in values.items():
            if name not in SUBSECTIONS:
                hint = difflib.get_close_matches(str(name), SUBSECTIONS, n=1)
                extra = f"; did you mean '{hint[0]}'?" if hint else ""
                raise ConfigError(f"unknown config key 'augment.{name}'{extra} (tables of [augment]: "
                                  f"{', '.join(SUBSECTIONS)})")
            kwargs[name] = section_of(f"augment.{name}", SUBSECTIONS[name], table)
        return cls(**kwargs)

    def changed(self, name: str) -> bool:
        """Whether table ``name`` differs from its defaults (the modality is configured)."""
        return getattr(self, name) != SUBSECTIONS[name]()
